"""Raw HTTP/1.1 exchanges over real loopback sockets, for the server tests.

The client side uses ptsevent.socket, so it runs cooperatively next to the
server in the same hub: the test's main tasklet sends and reads while the
hub serves.
"""

import random

import ptsevent
import ptsevent.socket as psocket


def splits(data, how):
    """The pieces `data` is sent in: "whole", "bytes" (one byte each), or an
    int seed for random split points."""
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    rng = random.Random(how)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 8)))) if len(data) > 1 else []
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    return pieces


#: The split modes every hostile-input case is run with.
SPLITS = ["whole", "bytes", 1, 2, 3]


def connect(port, timeout=5.0):
    sock = psocket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def exchange(port, data, how="whole", timeout=5.0, shut_write=False):
    """Sends `data` in pieces, then reads until the server closes (or the
    timeout). Returns (response bytes, closed_by_server)."""
    sock = connect(port, timeout)
    try:
        try:
            for piece in splits(data, how):
                sock.sendall(piece)
                # Let the hub poll and serve before the next piece: otherwise
                # the kernel hands the server every piece in one read.
                ptsevent.sleep(0)
                ptsevent.sleep(0)
        except OSError:
            pass  # the server may close early (an error response)
        if shut_write:
            sock.shutdown(psocket.SHUT_WR)
        chunks = []
        closed = False
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks), closed
    finally:
        sock.close()


def parse_responses(data):
    """Splits a byte stream of HTTP/1.1 responses into a list of
    (status, headers dict lower-cased, body). Understands Content-Length and
    chunked framing; a response without either runs to the end."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError(f"incomplete response head: {data[:200]!r}")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.setdefault(name.strip().lower().decode("latin-1"), []).append(
                value.strip().decode("latin-1"))
        headers = {k: ",".join(v) for k, v in headers.items()}
        if status < 200 or status in (204, 304):
            body, data = b"", rest
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body, data = rest[:n], rest[n:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    _, _, rest = rest.partition(b"\r\n")
                    break
                body += rest[:size]
                rest = rest[size + 2:]
            data = rest
        else:
            body, data = rest, b""
        out.append((status, headers, body))
    return out

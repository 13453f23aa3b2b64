"""The client side of the HTTP server tests, over real loopback sockets.

The client uses ptsevent.socket, so it runs cooperatively next to the server
in the same hub: the test's main tasklet (or a spawned one) sends and reads
while the hub serves.

* Raw exchanges for hostile input: `splits`, `exchange`, `parse_responses`.
* A connection with an incremental response reader (`Conn`, behind the
  `connect` fixture of conftest.py), the bytes of one request (`request`,
  `chunked`), and the small apps several test files share.
"""

import json
import random
import time

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


# --- a connection with a response reader, and shared apps --------------------


HOST = "127.0.0.1"


def request(path="/", method="GET", headers=(), body=b"", version="HTTP/1.1",
            host="x"):
    """The bytes of one request. `headers` is a list of (name, value)."""
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*pieces, trailers=b""):
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return out + b"0\r\n" + trailers + b"\r\n"


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(lower-case name, value)] in order
        self.body = body

    def get(self, name):
        values = [v for n, v in self.headers if n == name.lower()]
        return ",".join(values) if values else None

    def count(self, name):
        return sum(1 for n, _ in self.headers if n == name.lower())

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:80]!r}>"


class Conn:
    """A cooperative client connection with an incremental response reader."""

    def __init__(self, port, timeout=5.0):
        self.sock = psocket.create_connection((HOST, port), timeout=timeout)
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def _more(self):
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def read_until(self, sep):
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            start = max(0, len(self.buf) - len(sep) + 1)
            self._more()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self):
        """Everything until the server closes (a reset counts as a close)."""
        try:
            while True:
                self._more()
        except (EOFError, ConnectionResetError):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def response(self, head_request=False):
        raw = self.read_until(b"\r\n\r\n")
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        status = int(status)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        r = Response(version, status, reason, headers, b"")
        if head_request or status < 200 or status in (204, 304):
            return r
        te = r.get("transfer-encoding")
        if te is not None:
            assert te.lower() == "chunked", r
            assert r.get("content-length") is None, r
            body = bytearray()
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self.read_until(b"\r\n") != b"\r\n":
                        pass  # trailer fields
                    break
                body += self.read_exact(size)
                assert self.read_exact(2) == b"\r\n"
            r.body = bytes(body)
        elif r.get("content-length") is not None:
            r.body = self.read_exact(int(r.get("content-length")))
        else:
            r.body = self.read_to_eof()
        return r

    def wait_closed(self, timeout):
        """(bytes received, closed?) within `timeout` seconds."""
        self.sock.settimeout(timeout)
        data = bytes(self.buf)
        self.buf.clear()
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data, True
                data += chunk
        except ConnectionResetError:
            return data, True
        except TimeoutError:
            return data, False

    def close(self):
        self.sock.close()


def get(conn, path="/", **kwargs):
    conn.send(request(path, **kwargs))
    return conn.response(head_request=kwargs.get("method") == "HEAD")


def text_app(body=b"ok", status="200 OK", extra=()):
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain"),
                                ("Content-Length", str(len(body))), *extra])
        return [body]

    return app


def path_app(environ, start_response):
    """Answers with its PATH_INFO (and a Content-Length)."""
    body = environ["PATH_INFO"].encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def read_all_input(inp):
    """The whole request body through read(n) only (wsgiref.validate allows
    nothing else)."""
    out = bytearray()
    while True:
        chunk = inp.read(65536)
        if not chunk:
            return bytes(out)
        out += chunk


def echo_app(environ, start_response):
    """Echoes the request as JSON: what a client sent, as the app saw it."""
    body = read_all_input(environ["wsgi.input"])
    info = {
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "protocol": environ["SERVER_PROTOCOL"],
        "remote_port": environ["REMOTE_PORT"],
        "content_length": environ.get("CONTENT_LENGTH"),
        "content_type": environ.get("CONTENT_TYPE"),
        "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
        "expect": environ.get("HTTP_EXPECT"),
        "body": body.decode("latin-1"),
    }
    out = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]


def capture_app(seen):
    def app(environ, start_response):
        seen.append(dict(environ))
        body = b"captured"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app

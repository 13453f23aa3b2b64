"""ptsevent demo: thousands of tasklets talking over real TCP sockets.

An echo server (one tasklet per connection) and N client tasklets run in one
thread on 127.0.0.1; each client sends M messages and checks every echo.
Sockets are plain non-blocking `socket.socket` objects: a tasklet that would
block waits with ptsevent.wait_read / wait_write, which switches to the
other tasklets instead of blocking the process.

    python examples/demo.py [--clients 2000] [--messages 50]
"""

import argparse
import errno
import resource
import socket
import sys
import time

import ptsevent


def recv_exactly(sock, n):
    chunks = []
    while n:
        try:
            data = sock.recv(n)
        except BlockingIOError:
            ptsevent.wait_read(sock, timeout=30)
            continue
        if not data:
            raise ConnectionError("peer closed the connection")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def send_all(sock, data):
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view):]
        except BlockingIOError:
            ptsevent.wait_write(sock, timeout=30)


def serve_client(conn, size):
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                ptsevent.wait_read(conn)
                continue
            if not data:
                return
            send_all(conn, data)


def accept_loop(listener, size, handlers):
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            ptsevent.wait_read(listener)
            continue
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                ptsevent.sleep(0.01)
                continue
            raise
        conn.setblocking(False)
        handlers.append(ptsevent.spawn(serve_client, conn, size))


def client(address, messages, size, latencies):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    with sock:
        err = sock.connect_ex(address)
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, "connect failed")
        ptsevent.wait_write(sock, timeout=30)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, "connect failed")
        for i in range(messages):
            payload = (b"%08d" % i) * (size // 8)
            start = time.perf_counter()
            send_all(sock, payload)
            if recv_exactly(sock, len(payload)) != payload:
                raise AssertionError("echo mismatch")
            latencies.append(time.perf_counter() - start)
    return messages


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--size", type=int, default=64, help="bytes per message")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.messages < 1 or args.size < 8:
        ap.error("--clients and --messages must be >= 1, --size >= 8")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * args.clients + 64
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    listener.setblocking(False)
    address = listener.getsockname()

    handlers = []
    latencies = []
    server = ptsevent.spawn(accept_loop, listener, args.size, handlers)
    start = time.perf_counter()
    clients = [ptsevent.spawn(client, address, args.messages, args.size,
                              latencies) for _ in range(args.clients)]
    peak = 0
    while not all(c.dead for c in clients):
        peak = max(peak, ptsevent.hub_stats()["tasklets"])
        ptsevent.sleep(0.05)
    elapsed = time.perf_counter() - start
    failed = [c for c in clients if not c.successful()]
    ptsevent.joinall(handlers, timeout=5)
    server.kill()
    listener.close()

    total = sum(c.value for c in clients if c.successful())
    latencies.sort()
    print(f"ptsevent demo: {args.clients} client tasklets and "
          f"{len(handlers)} server tasklets in one OS thread, "
          f"echo over TCP on {address[0]}:{address[1]}")
    print(f"  peak live tasklets:  {peak}")
    print(f"  messages echoed:     {total} x {args.size} bytes "
          f"in {elapsed:.2f} s = {total / elapsed:,.0f} round trips/s")
    if latencies:
        print(f"  round-trip latency:  median {latencies[len(latencies) // 2] * 1e3:.2f} ms, "
              f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.2f} ms")
    print(f"  failed clients:      {len(failed)}")
    print(f"  hub after the run:   {ptsevent.hub_stats()}")
    for c in failed[:3]:
        print(f"    {c!r}: {c.exception!r}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""ptsevent demo: thousands of tasklets talking over real TCP sockets.

An echo server (one tasklet per connection) and N client tasklets run in one
OS thread on 127.0.0.1; each client sends M messages and checks every echo.
The code is plain blocking-style socket code: `ptsevent.socket` sockets
suspend only the calling tasklet when a call would block.

    python examples/tasklets_demo.py [--clients 2000] [--messages 50] [--size 64]
"""

import argparse
import resource
import sys
import time

import ptsevent
from ptsevent import socket


def recv_exactly(sock, n):
    chunks = []
    while n:
        data = sock.recv(n)
        if not data:
            raise ConnectionError("peer closed the connection")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def serve_client(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)


def accept_loop(listener, handlers):
    while True:
        conn, _ = listener.accept()
        handlers.append(ptsevent.spawn(serve_client, conn))


def client(address, messages, size, latencies):
    with socket.create_connection(address, timeout=30) as sock:
        for i in range(messages):
            payload = (b"%08d" % i) * (size // 8)
            start = time.perf_counter()
            sock.sendall(payload)
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

    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    address = listener.getsockname()

    handlers = []
    latencies = []
    server = ptsevent.spawn(accept_loop, listener, handlers)
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

"""One ptsevent echo server process holding N concurrent connections.

Run as `many_connections.py server N` (prints the port, then serves until
every one of N connections has echoed once and all are open at the same
time, then prints a summary) or `many_connections.py client PORT N`
(opens N connections, each echoes once, all stay open until the server has
seen them all, then closes them).
"""

import resource
import sys

import ptsevent
from ptsevent import socket


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def server(n):
    raise_nofile(n)
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    print(listener.getsockname()[1], flush=True)
    open_now = [0]
    peak = [0]
    served = [0]

    def handle(conn):
        with conn:
            open_now[0] += 1
            peak[0] = max(peak[0], open_now[0])
            data = conn.recv(64)
            conn.sendall(data)
            served[0] += 1
            conn.recv(1)  # held open until the client closes
            open_now[0] -= 1

    handlers = []
    def acceptor():
        for _ in range(n):
            conn, _ = listener.accept()
            handlers.append(ptsevent.spawn(handle, conn))
    acc = ptsevent.spawn(acceptor)
    acc.join(timeout=90)
    ptsevent.joinall(handlers, timeout=90)
    listener.close()
    print(f"served {served[0]} peak_open {peak[0]} dead {sum(h.dead for h in handlers)}",
          flush=True)
    return 0 if served[0] == n and peak[0] == n else 1


def client(port, n):
    raise_nofile(n)
    socks = []
    ok = [0]

    def one(i):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        socks.append(s)
        msg = b"%d" % i
        s.sendall(msg)
        if s.recv(64) == msg:
            ok[0] += 1

    ts = [ptsevent.spawn(one, i) for i in range(n)]
    ptsevent.joinall(ts, timeout=90)
    failed = [t for t in ts if not t.successful()]
    print(f"client ok {ok[0]} failed {len(failed)}", flush=True)
    for s in socks:
        s.close()
    return 0 if ok[0] == n else 1


if __name__ == "__main__":
    if sys.argv[1] == "server":
        sys.exit(server(int(sys.argv[2])))
    sys.exit(client(int(sys.argv[2]), int(sys.argv[3])))

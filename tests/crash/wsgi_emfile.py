"""ptsevent.wsgi under descriptor exhaustion (EMFILE), for
tests/test_wsgi_server.py.

The process serves a WSGI app, holds one keep-alive client connection, then
lowers RLIMIT_NOFILE and fills every free descriptor number so that the
server's accept() fails with EMFILE while more clients (sockets created
before the limit was lowered) connect. It checks that the keep-alive
connection goes on being served, measures the CPU time spent over one second
of wall time, then frees the descriptors and checks that the waiting clients
and a new one are served. Prints one JSON object; exits 0 unless something
raised.
"""

import errno
import json
import os
import resource
import select
import sys
import time

import ptsevent
import ptsevent.socket as psocket
from ptsevent.wsgi import WSGIServer

N_PENDING = 10


def app(environ, start_response):
    body = environ["PATH_INFO"].encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def get(sock, path):
    """One GET on an open keep-alive connection; returns the body (or None)."""
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    return read_response(sock)


def read_response(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    if not head.startswith(b"HTTP/1.1 200 "):
        return None
    return rest[:length].decode("latin-1")


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main():
    out = {}
    server = WSGIServer(("127.0.0.1", 0), app, accept_backoff=0.1)
    server.start()
    port = server.server_port

    keep = psocket.create_connection(("127.0.0.1", port), timeout=5)
    out["keep_first"] = get(keep, "/k-first")
    # Sockets of the clients that will connect while descriptors are exhausted:
    # created now, since socket() itself needs a descriptor.
    pending = [psocket.socket(psocket.AF_INET, psocket.SOCK_STREAM) for _ in range(N_PENDING)]
    for s in pending:
        s.settimeout(5)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = max(int(name) for name in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1, hard))
    fillers = []
    try:
        while True:
            fillers.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as e:
        out["fill_errno"] = errno.errorcode.get(e.errno, e.errno)
    try:
        for i, s in enumerate(pending):
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)

        wall0, cpu0 = time.monotonic(), cpu_seconds()
        keep_bodies = []
        while time.monotonic() - wall0 < 1.0:
            keep_bodies.append(get(keep, "/k%d" % len(keep_bodies)))
            ptsevent.sleep(0.1)
        wall1, cpu1 = time.monotonic(), cpu_seconds()
        out["keep_bodies"] = keep_bodies
        out["keep_expected"] = ["/k%d" % i for i in range(len(keep_bodies))]
        out["wall"] = wall1 - wall0
        out["cpu"] = cpu1 - cpu0
        ready, _, _ = select.select(pending, [], [], 0)
        out["pending_answered_while_exhausted"] = len(ready)
        out["stats_exhausted"] = server.stats()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    t0 = time.monotonic()
    out["pending_bodies"] = [read_response(s) for s in pending]
    out["pending_expected"] = ["/p%d" % i for i in range(N_PENDING)]
    fresh = psocket.create_connection(("127.0.0.1", port), timeout=5)
    out["fresh"] = get(fresh, "/fresh")
    out["recovery_seconds"] = time.monotonic() - t0
    out["keep_last"] = get(keep, "/k-last")
    out["stats_after"] = server.stats()
    for s in pending + [fresh, keep]:
        s.close()
    server.close()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

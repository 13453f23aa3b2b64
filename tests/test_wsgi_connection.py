"""One connection over its life: keep-alive and `Connection: close` on
HTTP/1.1 and HTTP/1.0, pipelined requests, the header and keep-alive
timeouts, idle connections that hold no tasklet, slow clients that hold only
their own connection, and a client that resets mid-head.

Real loopback connections to a ptsevent.wsgi server in this process's hub
(the `serve_app` and `connect` fixtures of conftest.py).
"""

import resource
import socket as stdsocket
import struct
import time

import pytest

import ptsevent
import ptsevent.socket as psocket
from _http import HOST, Conn, capture_app, get, path_app, request, text_app
from support import wait_for


# --- keep-alive and close ------------------------------------------------------


def test_http11_keeps_the_connection_alive_by_default(serve_app, connect):
    ports = []

    def app(environ, start_response):
        ports.append(environ["REMOTE_PORT"])
        return text_app()(environ, start_response)

    server = serve_app(app)
    conn = connect(server.server_port)
    for _ in range(3):
        r = get(conn, "/")
        assert r.status == 200 and r.body == b"ok"
        assert (r.get("connection") or "").lower() != "close"
    assert len(set(ports)) == 1
    assert server.stats()["requests"] == 3


def test_http11_connection_close_is_honoured(serve_app, connect):
    server = serve_app(text_app())
    conn = connect(server.server_port)
    r = get(conn, "/", headers=[("Connection", "close")])
    assert r.status == 200 and r.body == b"ok"
    assert r.get("connection").lower() == "close"
    assert conn.wait_closed(2.0) == (b"", True)


def test_app_connection_close_header_closes_after_the_response(serve_app, connect):
    server = serve_app(text_app(extra=[("Connection", "close")]))
    conn = connect(server.server_port)
    r = get(conn, "/")
    assert r.body == b"ok"
    assert r.count("connection") == 1 and r.get("connection").lower() == "close"
    assert conn.wait_closed(2.0) == (b"", True)


def test_http10_closes_unless_keep_alive_is_asked(serve_app, connect):
    server = serve_app(text_app())
    conn = connect(server.server_port)
    r = get(conn, "/", version="HTTP/1.0", host=None)
    assert r.status == 200 and r.body == b"ok"
    assert (r.get("connection") or "close").lower() == "close"
    assert conn.wait_closed(2.0) == (b"", True)


def test_http10_keep_alive_on_request(serve_app, connect):
    server = serve_app(text_app())
    conn = connect(server.server_port)
    for _ in range(3):
        r = get(conn, "/", version="HTTP/1.0", host=None,
                headers=[("Connection", "keep-alive")])
        assert r.status == 200 and r.body == b"ok"
        assert r.get("connection").lower() == "keep-alive"
    # Without the token the connection ends after the next response.
    r = get(conn, "/", version="HTTP/1.0", host=None)
    assert r.body == b"ok"
    assert conn.wait_closed(2.0) == (b"", True)


def test_pipelined_requests_are_answered_in_order(serve_app, connect):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/3":
            ptsevent.sleep(0.05)  # a slow one in the middle keeps its place
        return path_app(environ, start_response)

    server = serve_app(app)
    conn = connect(server.server_port)
    conn.send(b"".join(request(f"/{i}") for i in range(10)))
    bodies = [conn.response().body for _ in range(10)]
    assert bodies == [f"/{i}".encode() for i in range(10)]
    assert get(conn, "/after").body == b"/after"


# --- timeouts ------------------------------------------------------------------


def test_header_timeout_answers_408_or_closes(serve_app, connect):
    server = serve_app(path_app, header_timeout=0.5)
    conn = connect(server.server_port)
    t0 = time.monotonic()
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    data, closed = conn.wait_closed(3.0)
    elapsed = time.monotonic() - t0
    assert closed
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
    assert 0.4 <= elapsed < 2.0, elapsed


def test_header_timeout_is_not_extended_by_a_trickling_head(serve_app, connect):
    server = serve_app(path_app, header_timeout=0.5)
    conn = connect(server.server_port)

    def trickle():
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                conn.sock.sendall(bytes([byte]))
            except OSError:
                return
            ptsevent.sleep(0.05)

    t0 = time.monotonic()
    sender = ptsevent.spawn(trickle)
    try:
        data, closed = conn.wait_closed(3.0)  # the answer (or EOF) arrives
        elapsed = time.monotonic() - t0
    finally:
        sender.kill()
    assert closed
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
    assert 0.4 <= elapsed < 1.5, elapsed


def test_keepalive_timeout_closes_an_idle_connection(serve_app, connect):
    server = serve_app(path_app, keepalive_timeout=0.5)
    conn = connect(server.server_port)
    assert get(conn, "/").status == 200
    t0 = time.monotonic()
    data, closed = conn.wait_closed(3.0)
    elapsed = time.monotonic() - t0
    assert (data, closed) == (b"", True)
    assert 0.4 <= elapsed < 2.0, elapsed
    assert wait_for(lambda: server.stats()["connections"] == 0, timeout=1)


def test_keepalive_timeout_restarts_with_each_request(serve_app, connect):
    server = serve_app(path_app, keepalive_timeout=0.5)
    conn = connect(server.server_port)
    for _ in range(4):  # 1.2 s in all, never 0.5 s idle
        assert get(conn, "/").status == 200
        ptsevent.sleep(0.3)
    assert get(conn, "/still").body == b"/still"


# --- idle, slow and resetting clients ------------------------------------------


def test_idle_keep_alive_connections_hold_no_tasklet(serve_app):
    n = 200
    server = serve_app(path_app)
    conns = []
    try:
        for i in range(n):
            conns.append(Conn(server.server_port))
            if i % 50 == 0:
                ptsevent.sleep(0)
        for i, conn in enumerate(conns):
            conn.send(request(f"/{i}"))
        for i, conn in enumerate(conns):
            assert conn.response().body == f"/{i}".encode()
        assert wait_for(lambda: server.stats()["idle"] == n, timeout=2), server.stats()
        stats = server.stats()
        assert stats["idle"] == n and stats["active"] == 0
        assert stats["connections"] == n and stats["requests"] == n
        hub = ptsevent.hub_stats()
        assert hub["tasklets"] == 0, hub  # only the test's main tasklet runs
        # They are still usable, each with a tasklet only while serving.
        for i in (0, n // 2, n - 1):
            assert get(conns[i], "/again").body == b"/again"
        assert ptsevent.hub_stats()["tasklets"] == 0
    finally:
        for conn in conns:
            conn.close()
    assert wait_for(lambda: server.stats()["connections"] == 0, timeout=2)


def raise_nofile(n):
    """Raises the soft RLIMIT_NOFILE to at least n; returns the old limits."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = old
    if soft != resource.RLIM_INFINITY and soft < n:
        want = n if hard == resource.RLIM_INFINITY else min(n, hard)
        if want < n:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {n}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return old


def test_1000_slowloris_connections_do_not_stop_a_normal_client(serve_app, connect):
    n = 1000
    old = raise_nofile(2 * n + 512)
    slow = []
    try:
        server = serve_app(path_app)
        for i in range(n):
            sock = psocket.create_connection((HOST, server.server_port), timeout=5)
            slow.append(sock)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            if i % 50 == 0:
                ptsevent.sleep(0)  # let the server accept
        assert wait_for(lambda: server.stats()["connections"] >= n, timeout=10), \
            server.stats()
        t0 = time.monotonic()
        conn = connect(server.server_port)
        r = get(conn, "/normal")
        elapsed = time.monotonic() - t0
        assert r.body == b"/normal"
        assert elapsed < 1.0, elapsed
        assert server.stats()["connections"] == n + 1
        # None of the slow ones got an answer.
        sample = slow[::97]
        for sock in sample:
            sock.settimeout(0.001)
            with pytest.raises(TimeoutError):
                sock.recv(1)
    finally:
        for sock in slow:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


@pytest.mark.parametrize("partial", [b"GET /abc", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b"])
def test_part_of_a_head_then_reset_together_closes_the_connection_at_once(serve_app, partial):
    # The client sends part of a head and resets at once: both reach the
    # server on one epoll edge; it must still see the reset and close.
    server = serve_app(capture_app([]))
    sock = stdsocket.create_connection(("127.0.0.1", server.server_port))
    ptsevent.sleep(0.02)  # accepted, nothing to read yet: watched by epoll
    sock.sendall(partial)
    sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    deadline = time.monotonic() + 1
    while server.stats()["connections"] and time.monotonic() < deadline:
        ptsevent.sleep(0.01)
    assert server.stats()["connections"] == 0

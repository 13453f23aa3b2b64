"""The request body as the app reads it: wsgi.input's methods over
Content-Length and chunked bodies, where a body ends, a body the app leaves
unread, `Expect: 100-continue`, the body timeout, wsgi.input read from another
tasklet, and large bodies (exact reads, a client that stops, max_body).

Real loopback connections to a ptsevent.wsgi server in this process's hub
(the `serve_app` and `connect` fixtures of conftest.py).
"""

import json
import socket as stdsocket
import time

import pytest

import ptsevent
import ptsevent.socket as psocket
from _http import chunked, echo_app, get, path_app, request
from support import wait_for


# --- wsgi.input ----------------------------------------------------------------


BODY = b"line1\nline2\nlast"


INPUT_SCRIPTS = {
    "read": (lambda i: [i.read()], [BODY]),
    "read_n": (lambda i: [i.read(3), i.read(3), i.read(0), i.read(100), i.read(5), i.read()],
               [b"lin", b"e1\n", b"", b"line2\nlast", b"", b""]),
    "read_none": (lambda i: [i.read(None)], [BODY]),
    "readline": (lambda i: [i.readline() for _ in range(4)],
                 [b"line1\n", b"line2\n", b"last", b""]),
    "readline_size": (lambda i: [i.readline(3), i.readline(), i.readline(2), i.readline(100),
                                 i.readline(-1), i.readline()],
                      [b"lin", b"e1\n", b"li", b"ne2\n", b"last", b""]),
    "readlines": (lambda i: [i.readlines()], [[b"line1\n", b"line2\n", b"last"]]),
    "readlines_hint": (lambda i: [i.readlines(3), i.readlines()],
                       [[b"line1\n"], [b"line2\n", b"last"]]),
    "iterate": (lambda i: [list(i)], [[b"line1\n", b"line2\n", b"last"]]),
    "mixed": (lambda i: [i.readline(), i.read(2), list(i)],
              [b"line1\n", b"li", [b"ne2\n", b"last"]]),
}


def input_app(script, seen):
    def app(environ, start_response):
        seen.append(script(environ["wsgi.input"]))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    return app


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("delivery", ["whole", "trickle"])
@pytest.mark.parametrize("name", sorted(INPUT_SCRIPTS))
def test_wsgi_input_methods(serve_app, connect, name, framing, delivery):
    script, expected = INPUT_SCRIPTS[name]
    seen = []
    server = serve_app(input_app(script, seen), validate=False)
    conn = connect(server.server_port)
    if framing == "length":
        head = request("/", method="POST", headers=[("Content-Length", str(len(BODY)))])
        body = BODY
    else:
        head = request("/", method="POST", headers=[("Transfer-Encoding", "chunked")])
        body = chunked(b"li", b"ne1\nline", b"2\nla", b"st")
    if delivery == "whole":
        conn.send(head + body)
    else:
        conn.send(head)
        for i in range(0, len(body), 3):
            ptsevent.sleep(0.002)
            conn.send(body[i:i + 3])
    r = conn.response()
    assert r.status == 200, r
    assert seen == [expected]
    # The connection is still usable: the body was consumed exactly.
    assert get(conn, "/again").status == 200


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_wsgi_input_is_bounded_by_the_end_of_the_body(serve_app, connect, framing):
    seen = []

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        if environ["REQUEST_METHOD"] == "POST":
            seen.append((inp.read(), inp.read(), inp.readline(), inp.read(10)))
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    server = serve_app(app, validate=False)
    conn = connect(server.server_port)
    if framing == "length":
        first = request("/first", method="POST", headers=[("Content-Length", "5")],
                        body=b"hello")
    else:
        first = request("/first", method="POST", headers=[("Transfer-Encoding", "chunked")],
                        body=chunked(b"hel", b"lo", trailers=b"X-Trailer: t\r\n"))
    # The next request follows in the same send: it must not leak into the body.
    conn.send(first + request("/next"))
    assert conn.response().body == b"/first"
    assert conn.response().body == b"/next"
    assert seen == [(b"hello", b"", b"", b"")]


def test_wsgi_input_used_after_its_request_ended_raises_value_error(serve_app, connect):
    kept = []

    def app(environ, start_response):
        kept.append(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    server = serve_app(app, validate=False)
    conn = connect(server.server_port)
    conn.send(request("/", method="POST", headers=[("Content-Length", "4")], body=b"data"))
    assert conn.response().status == 200
    (inp,) = kept
    with pytest.raises(ValueError):
        inp.read()
    with pytest.raises(ValueError):
        inp.read(1)
    with pytest.raises(ValueError):
        inp.readline()
    with pytest.raises(ValueError):
        inp.readlines()
    with pytest.raises(ValueError):
        next(iter(inp))


def test_another_tasklet_may_read_the_body_while_the_request_tasklet_waits(serve_app):
    # The body arrives in pieces while a helper tasklet reads wsgi.input and
    # the request's own tasklet waits in join(): the helper is the one that
    # waits on the connection, and the request state must survive both
    # tasklets' stacks being swapped out.
    def app(environ, start_response):
        reader = ptsevent.spawn(environ["wsgi.input"].read, 3000)
        reader.join(5)
        body = reader.get()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    server = serve_app(app, validate=False)
    sock = psocket.create_connection(("127.0.0.1", server.server_port), timeout=5)
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n")
        for i in range(3):
            ptsevent.sleep(0.02)
            sock.sendall(bytes([65 + i]) * 1000)
        data = b""
        while not data.endswith(b"C" * 1000):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")
        assert data.endswith(b"A" * 1000 + b"B" * 1000 + b"C" * 1000)
    finally:
        sock.close()


# --- framing of the request body -----------------------------------------------


def test_unread_request_body_is_skipped_before_the_next_request(serve_app, connect):
    server = serve_app(path_app)
    conn = connect(server.server_port)
    conn.send(request("/ignored-body", method="POST", headers=[("Content-Length", "1000")],
                      body=b"x" * 1000) + request("/after"))
    assert conn.response().body == b"/ignored-body"
    assert conn.response().body == b"/after"


def test_chunked_request_body_is_decoded(serve_app, connect):
    server = serve_app(echo_app)
    conn = connect(server.server_port)
    conn.send(request("/up", method="PUT", headers=[("Transfer-Encoding", "chunked"),
                                                    ("Content-Type", "text/plain")],
                      body=chunked(b"hello ", b"chunked ", b"world" * 1000,
                                   trailers=b"X-Checksum: 1\r\n")))
    r = conn.response()
    info = json.loads(r.body)
    assert info["body"] == "hello chunked " + "world" * 1000
    assert info["transfer_encoding"] == "chunked"
    assert not info["content_length"]
    assert info["method"] == "PUT"


# --- Expect: 100-continue ------------------------------------------------------


def test_expect_100_continue_is_sent_when_the_app_reads(serve_app, connect):
    server = serve_app(echo_app)
    conn = connect(server.server_port, timeout=2.0)
    conn.send(request("/", method="POST", headers=[("Content-Length", "5"),
                                                   ("Expect", "100-continue")]))
    interim = conn.response()  # the body is not sent until this arrives
    assert interim.status == 100
    conn.send(b"hello")
    r = conn.response()
    assert r.status == 200
    info = json.loads(r.body)
    assert info["body"] == "hello" and info["expect"] == "100-continue"
    # The connection goes on.
    r = get(conn, "/", method="POST", headers=[("Content-Length", "2")], body=b"ok")
    assert json.loads(r.body)["body"] == "ok"


def test_expect_100_continue_is_not_sent_when_the_app_does_not_read(serve_app, connect):
    calls = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        body = b"rejected"
        start_response("403 Forbidden", [("Content-Type", "text/plain"),
                                         ("Content-Length", str(len(body)))])
        return [body]

    server = serve_app(app)
    conn = connect(server.server_port, timeout=2.0)
    conn.send(request("/", method="POST", headers=[("Content-Length", "100000"),
                                                   ("Expect", "100-continue")]))
    r = conn.response()
    assert r.status == 403 and r.body == b"rejected"
    assert calls == ["/"]
    data, _ = conn.wait_closed(0.5)
    assert b"100 Continue" not in data


# --- the body timeout ----------------------------------------------------------


def test_body_timeout_when_the_client_stops_sending(serve_app, connect):
    errors = []

    def app(environ, start_response):
        try:
            body = environ["wsgi.input"].read(100)
        except Exception as e:  # noqa: BLE001 - recorded, then re-raised
            errors.append(e)
            raise
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    server = serve_app(app, body_timeout=0.5)
    conn = connect(server.server_port)
    t0 = time.monotonic()
    conn.send(request("/", method="POST", headers=[("Content-Length", "100")],
                      body=b"0123456789"))
    data, closed = conn.wait_closed(3.0)
    elapsed = time.monotonic() - t0
    assert closed
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
    assert 0.4 <= elapsed < 2.0, elapsed
    assert len(errors) == 1 and isinstance(errors[0], OSError), errors
    assert wait_for(lambda: server.stats()["connections"] == 0, timeout=3)


# --- large bodies and max_body -------------------------------------------------


# Large Content-Length bodies: read() and read(n) of 64 KiB or more go from
# the socket straight into the returned bytes; everything else stays exact.
BIG = bytes(range(256)) * 4099  # 1,049,344 bytes, not a power of two


def big_read_app(reads, seen):
    def app(environ, start_response):
        inp = environ["wsgi.input"]
        got = [inp.read(n) for n in reads]
        seen.append(got)
        body = b"".join(got)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


@pytest.mark.parametrize("reads", [
    pytest.param((None,), id="read-all"),
    pytest.param((len(BIG),), id="read-exact"),
    pytest.param((len(BIG) + 10, None), id="read-more-than-there"),
    pytest.param((100, 70_000, 300_000, None), id="read-pieces"),
    pytest.param((65_536, 65_535, 1, None, 5), id="read-around-the-threshold"),
])
@pytest.mark.parametrize("delivery", ["whole", "slices"])
def test_large_body_reads_are_exact_and_keep_the_connection_usable(
        serve_app, connect, reads, delivery):
    seen = []
    server = serve_app(big_read_app(reads, seen))
    conn = connect(server.server_port, timeout=10)
    head = request("/", method="POST", headers=[("Content-Length", str(len(BIG)))])
    # The next request follows the body at once: it must not leak into it.
    data = head + BIG + request("/next")
    if delivery == "whole":
        conn.send(data)
    else:
        for i in range(0, len(data), 200_000):
            conn.send(data[i:i + 200_000])
            ptsevent.sleep(0.002)
    r = conn.response()
    assert r.status == 200
    assert r.body == BIG
    got = seen[0]
    expected, pos = [], 0
    for n in reads:
        take = len(BIG) - pos if n is None else min(n, len(BIG) - pos)
        expected.append(BIG[pos:pos + take])
        pos += take
    assert got == expected
    assert conn.response().status == 200  # /next, parsed after the body


def test_large_body_with_expect_100_continue(serve_app, connect):
    seen = []
    server = serve_app(big_read_app((None,), seen))
    conn = connect(server.server_port, timeout=10)
    conn.send(request("/", method="POST", headers=[("Content-Length", str(len(BIG))),
                                                   ("Expect", "100-continue")]))
    assert conn.sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    conn.send(BIG)
    r = conn.response()
    assert r.status == 200 and r.body == BIG


def test_large_body_cut_short_by_the_client_fails_the_read(serve_app, connect):
    errors = []

    def app(environ, start_response):
        try:
            environ["wsgi.input"].read()
        except OSError as e:
            errors.append(type(e))
            raise
        start_response("200 OK", [])
        return [b""]

    server = serve_app(app, validate=False, error_log=lambda m, e: None)
    conn = connect(server.server_port)
    conn.send(request("/", method="POST", headers=[("Content-Length", str(len(BIG)))])
              + BIG[:300_000])
    ptsevent.sleep(0.05)
    conn.sock.shutdown(stdsocket.SHUT_WR)
    deadline = time.monotonic() + 3
    while not errors and time.monotonic() < deadline:
        ptsevent.sleep(0.01)
    assert errors == [ConnectionResetError]


def test_large_body_over_max_body_gets_413(serve_app, connect):
    seen = []
    server = serve_app(big_read_app((None,), seen), max_body=500_000,
                       error_log=lambda m, e: None)
    conn = connect(server.server_port, timeout=10)
    conn.send(request("/", method="POST", headers=[("Content-Length", str(len(BIG)))]))
    r = conn.response()
    assert r.status == 413

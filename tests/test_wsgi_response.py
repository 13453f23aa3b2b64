"""What the server sends for what the app returns: how the body is framed
(computed Content-Length, chunked, close-delimited on HTTP/1.0), HEAD, 204
and 304, the Date and Server headers, start_response and its exc_info, the
write() callable, the iterable's close(), wsgi.file_wrapper (sendfile for a
real file) and the write timeout.

The framing corner cases (the app's own framing headers, write() then a
returned sequence) are in test_wsgi_framing.py. Real loopback connections to
a ptsevent.wsgi server in this process's hub (the `serve_app` and `connect`
fixtures of conftest.py).
"""

import email.utils
import io
import os
import socket as stdsocket
import sys
import time

import pytest

from _http import get, request, text_app
from support import wait_for


MiB = 1 << 20


class Closing:
    """An iterable response that records whether its close() was called."""

    def __init__(self, chunks, fail_after=None):
        self.chunks = chunks
        self.fail_after = fail_after
        self.closed = False
        self.sent = 0

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("the application failed mid-body")
            self.sent += 1
            yield chunk

    def close(self):
        self.closed = True


# --- framing of the body -------------------------------------------------------


def gen_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first,"
    yield b""
    yield b"second,"
    yield b"third"


def test_generator_app_gets_a_chunked_response_on_http11(serve_app, connect):
    server = serve_app(gen_app)
    conn = connect(server.server_port)
    r = get(conn, "/")
    assert r.get("transfer-encoding") == "chunked"
    assert r.get("content-length") is None
    assert r.body == b"first,second,third"
    assert get(conn, "/").body == b"first,second,third"  # still alive


def test_generator_app_is_close_delimited_on_http10(serve_app, connect):
    server = serve_app(gen_app)
    conn = connect(server.server_port)
    conn.send(request("/", version="HTTP/1.0", host=None,
                      headers=[("Connection", "keep-alive")]))
    r = conn.response()  # neither length nor chunked: read to the close
    assert r.get("transfer-encoding") is None
    assert r.get("content-length") is None
    assert r.get("connection").lower() == "close"
    assert r.body == b"first,second,third"


def test_list_app_gets_a_computed_content_length(serve_app, connect):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ab", b"", b"cd", b"efg"]

    server = serve_app(app, validate=False)
    conn = connect(server.server_port)
    r = get(conn, "/")
    assert r.get("content-length") == "7"
    assert r.get("transfer-encoding") is None
    assert r.body == b"abcdefg"
    assert get(conn, "/").body == b"abcdefg"


def test_empty_list_app_gets_content_length_zero(serve_app, connect):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return []

    server = serve_app(app, validate=False)
    conn = connect(server.server_port)
    r = get(conn, "/")
    assert r.status == 200 and r.get("content-length") == "0" and r.body == b""
    assert get(conn, "/").status == 200


@pytest.mark.parametrize("app", [text_app(b"hello"), gen_app], ids=["length", "generator"])
def test_head_sends_no_body(serve_app, connect, app):
    server = serve_app(app)
    conn = connect(server.server_port)
    r = get(conn, "/", method="HEAD")
    assert r.status == 200
    if app is not gen_app:
        assert r.get("content-length") == "5"  # the GET's length is kept
    # No body bytes follow: the next response starts right after the head.
    r2 = get(conn, "/")
    assert r2.status == 200
    assert r2.body in (b"hello", b"first,second,third")
    assert conn.buf == b""


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_204_and_304_have_no_body(serve_app, connect, status):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/next":
            return text_app(b"next")(environ, start_response)
        start_response(status, [("ETag", '"x"')])
        return [b""]

    server = serve_app(app)
    conn = connect(server.server_port)
    r = get(conn, "/")
    assert r.status == int(status[:3])
    assert r.get("transfer-encoding") is None
    if r.status == 204:
        assert r.get("content-length") is None
    assert r.get("etag") == '"x"'
    assert get(conn, "/next").body == b"next"


def test_204_body_given_by_the_app_is_not_sent(serve_app, connect):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/next":
            return text_app(b"next")(environ, start_response)
        start_response("204 No Content", [])
        return [b"must not be sent"]

    server = serve_app(app, validate=False)
    conn = connect(server.server_port)
    conn.send(request("/") + request("/next"))
    assert conn.response().status == 204
    r = conn.response()
    assert r.status == 200 and r.body == b"next"


# --- headers the server adds ---------------------------------------------------


def test_date_and_server_headers(serve_app, connect):
    server = serve_app(text_app())
    r = get(connect(server.server_port), "/")
    assert r.count("date") == 1 and r.count("server") == 1
    assert r.get("server")
    date = email.utils.parsedate_to_datetime(r.get("date"))
    assert r.get("date").endswith(" GMT")
    assert abs(date.timestamp() - time.time()) < 5


def test_app_date_and_server_headers_are_not_duplicated(serve_app, connect):
    app = text_app(extra=[("Server", "mine/1.0"),
                          ("Date", "Mon, 01 Jan 2024 00:00:00 GMT")])
    server = serve_app(app)
    r = get(connect(server.server_port), "/")
    assert r.count("server") == 1 and r.get("server") == "mine/1.0"
    assert r.count("date") == 1 and r.get("date") == "Mon, 01 Jan 2024 00:00:00 GMT"


# --- start_response and write() ------------------------------------------------


def test_start_response_exc_info_replaces_headers_not_yet_sent(serve_app, connect):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            raise KeyError("boom")
        except KeyError:
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/plain"), ("X-Second", "2")],
                           sys.exc_info())
        return [b"error page"]

    server = serve_app(app)
    r = get(connect(server.server_port), "/")
    assert r.status == 500
    assert r.get("x-first") is None and r.get("x-second") == "2"
    assert r.body == b"error page"


def test_start_response_exc_info_reraises_after_headers_were_sent(serve_app, connect):
    outcome = []

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial")
        try:
            raise KeyError("boom")
        except KeyError:
            original = sys.exc_info()
            try:
                start_response("500 Internal Server Error",
                               [("Content-Type", "text/plain")], original)
            except KeyError as e:
                outcome.append(e is original[1])
                raise
            outcome.append("start_response returned")
        return [b"never"]

    server = serve_app(app, validate=False)
    conn = connect(server.server_port)
    conn.send(request("/"))
    raw = conn.read_to_eof()  # aborted: the chunked body never ends
    assert outcome == [True]
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b"partial" in raw and b"never" not in raw
    assert not raw.endswith(b"0\r\n\r\n")


def test_start_response_twice_without_exc_info_is_an_error(serve_app, connect):
    errors = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
        except Exception as e:  # noqa: BLE001 - recorded
            errors.append(e)
            raise
        return [b"x"]

    server = serve_app(app, validate=False)
    r = get(connect(server.server_port), "/")
    assert len(errors) == 1
    assert r.status == 500


@pytest.mark.parametrize("length", [None, 6])
def test_write_callable(serve_app, connect, length):
    def app(environ, start_response):
        headers = [("Content-Type", "text/plain")]
        if length is not None:
            headers.append(("Content-Length", str(length)))
        write = start_response("200 OK", headers)
        write(b"ab")
        write(b"")
        write(b"cd")
        return [b"ef"]

    server = serve_app(app)
    conn = connect(server.server_port)
    r = get(conn, "/")
    assert r.body == b"abcdef"
    if length is None:
        assert r.get("transfer-encoding") == "chunked"
    else:
        assert r.get("content-length") == "6"
    assert get(conn, "/").body == b"abcdef"


# --- the iterable's close() ----------------------------------------------------


def test_iterable_close_is_called_after_a_normal_response(serve_app, connect):
    made = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        made.append(Closing([b"a", b"b", b"c"]))
        return made[-1]

    server = serve_app(app, validate=False)
    conn = connect(server.server_port)
    assert get(conn, "/").body == b"abc"
    assert made[0].closed
    assert get(conn, "/").body == b"abc"
    assert made[1].closed


def test_iterable_close_is_called_when_the_app_raises_mid_iteration(serve_app, connect):
    made = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        made.append(Closing([b"x" * 10] * 10, fail_after=3))
        return made[-1]

    server = serve_app(app, validate=False)
    conn = connect(server.server_port)
    conn.send(request("/"))
    raw = conn.read_to_eof()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == b"x" * 30  # truncated, then the connection is closed
    assert made[0].closed


def test_iterable_close_is_called_when_the_client_disconnects(serve_app, connect):
    made = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        class Endless(Closing):
            def __iter__(self):
                for _ in range(100000):  # 6 GiB: never reached
                    self.sent += 1
                    yield b"z" * 65536

        made.append(Endless([]))
        return made[-1]

    server = serve_app(app, validate=False)
    conn = connect(server.server_port)
    conn.send(request("/"))
    conn.read_exact(100000)
    conn.sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER,
                         b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close with a reset
    conn.close()
    assert wait_for(lambda: made[0].closed, timeout=5), "close() was not called"
    assert made[0].sent < 100000
    assert wait_for(lambda: server.stats()["connections"] == 0, timeout=2)


# --- wsgi.file_wrapper and sendfile --------------------------------------------


def test_file_wrapper_with_a_real_file_uses_sendfile(serve_app, connect, tmp_path):
    data = os.urandom(5 * MiB)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    opened = []

    class CountingReader(io.BufferedReader):
        reads = 0

        def read(self, *args):
            CountingReader.reads += 1
            return super().read(*args)

    def app(environ, start_response):
        f = CountingReader(io.FileIO(str(path), "rb"))
        opened.append(f)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 65536)

    server = serve_app(app, validate=False)
    conn = connect(server.server_port, timeout=10)
    r = get(conn, "/")
    assert r.status == 200
    assert r.get("content-length") == str(len(data))
    assert r.body == data
    assert CountingReader.reads == 0, "the file was read through Python, not sendfile"
    assert opened[0].closed  # FileWrapper.close() closes the file
    # A file positioned past its start sends the rest only.
    del opened[:]

    def app_offset(environ, start_response):
        f = open(path, "rb")
        f.seek(1000)
        opened.append(f)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f)

    server2 = serve_app(app_offset, validate=False)
    r = get(connect(server2.server_port, timeout=10), "/")
    assert r.get("content-length") == str(len(data) - 1000)
    assert r.body == data[1000:]
    assert opened[0].closed


def test_file_wrapper_with_a_file_object_without_descriptor_iterates(serve_app, connect):
    data = os.urandom(300000)
    made = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        made.append(io.BytesIO(data))
        return environ["wsgi.file_wrapper"](made[-1], 8192)

    server = serve_app(app)
    conn = connect(server.server_port)
    r = get(conn, "/")
    assert r.body == data
    assert made[0].closed
    assert get(conn, "/").body == data


def test_file_wrapper_on_head_sends_no_body(serve_app, connect, tmp_path):
    path = tmp_path / "small.bin"
    path.write_bytes(b"0123456789")
    files = []

    def app(environ, start_response):
        files.append(open(path, "rb"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](files[-1])

    server = serve_app(app, validate=False)
    conn = connect(server.server_port)
    r = get(conn, "/", method="HEAD")
    assert r.status == 200 and r.get("content-length") == "10"
    assert get(conn, "/").body == b"0123456789"
    assert all(f.closed for f in files)


# --- the write timeout ---------------------------------------------------------


def test_write_timeout_when_the_client_never_reads(serve_app, connect):
    made = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(50 * MiB))])
        made.append(Closing([b"w" * MiB] * 50))
        return made[-1]

    server = serve_app(app, validate=False, write_timeout=0.5)
    conn = connect(server.server_port)
    conn.sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, 65536)
    t0 = time.monotonic()
    conn.send(request("/"))
    assert wait_for(lambda: made and made[0].closed, timeout=5), "close() was not called"
    elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed < 3.0, elapsed
    assert made[0].sent < 50
    got = len(conn.read_to_eof())  # the server closed: the rest never comes
    assert got < 50 * MiB
    assert wait_for(lambda: server.stats()["connections"] == 0, timeout=2)

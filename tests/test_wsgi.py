"""ptsevent.wsgi: the HTTP/1.1 WSGI server, as its users rely on it.

Every test starts the server in this process's hub (the `serve_app`
fixture) and talks to it over real loopback sockets: raw exchanges through
ptsevent.socket (cooperative, from the main tasklet or spawned tasklets), and
real clients (requests, urllib.request, http.client, curl) run in OS threads
through ptsevent.run_in_thread. What needs its own process (descriptor
exhaustion, the command line) runs in a subprocess.
"""

import email.utils
import io
import json
import logging
import os
import re
import resource
import selectors
import shutil
import signal
import socket as stdsocket
import struct
import subprocess
import sys
import time
import urllib.request

import pytest

import ptsevent
import ptsevent.socket as psocket
from ptsevent.wsgi import DEFAULTS, FileWrapper, WSGIServer

HOST = "127.0.0.1"
MiB = 1 << 20
CRASH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crash")


# --- client side helpers ----------------------------------------------------


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


@pytest.fixture
def connect():
    """connect(port) -> Conn; every connection is closed after the test."""
    conns = []

    def make(port, timeout=5.0):
        conn = Conn(port, timeout)
        conns.append(conn)
        return conn

    yield make
    for conn in conns:
        conn.close()


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


def wait_for(predicate, timeout=5.0, step=0.01):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        ptsevent.sleep(step)
    return True


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


# --- environ ----------------------------------------------------------------

PEP3333_KEYS = [
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
    "SERVER_PORT", "SERVER_PROTOCOL", "wsgi.version", "wsgi.url_scheme",
    "wsgi.input", "wsgi.errors", "wsgi.multithread", "wsgi.multiprocess",
    "wsgi.run_once",
]


def capture_app(seen):
    def app(environ, start_response):
        seen.append(dict(environ))
        body = b"captured"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


def test_environ_has_every_pep3333_key_with_the_request_values(serve_app, connect):
    seen = []
    server = serve_app(capture_app(seen))
    conn = connect(server.server_port)
    body = b"name=value"
    conn.send(request(
        "/caf%C3%A9/a%2Fb?q=%20x&y=caf%C3%A9", method="POST",
        headers=[("Content-Type", "application/x-www-form-urlencoded"),
                 ("Content-Length", str(len(body))), ("User-Agent", "t/1"),
                 ("X-Dup", "a"), ("X-Dup", "b"), ("Accept", "text/plain"),
                 ("Accept", "text/html")],
        body=body))
    r = conn.response()
    assert r.status == 200 and r.body == b"captured"
    (env,) = seen
    for key in PEP3333_KEYS:
        assert key in env, key
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    # PATH_INFO: percent-decoded, bytes as latin-1 (PEP 3333 "bytes as str").
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9/a/b"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café/a/b"
    assert env["QUERY_STRING"] == "q=%20x&y=caf%C3%A9"  # raw
    assert env["RAW_URI"] == "/caf%C3%A9/a%2Fb?q=%20x&y=caf%C3%A9"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "10"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.server_port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(conn.sock.getsockname()[1])
    assert env["HTTP_HOST"] == "x"
    assert env["HTTP_USER_AGENT"] == "t/1"
    assert env["HTTP_X_DUP"] == "a,b"
    assert env["HTTP_ACCEPT"] == "text/plain,text/html"
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    for method in ("read", "readline", "readlines", "__iter__"):
        assert hasattr(env["wsgi.input"], method), method
    for method in ("write", "writelines", "flush"):
        assert hasattr(env["wsgi.errors"], method), method
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.file_wrapper"] is FileWrapper
    for key, value in env.items():
        if "." not in key:
            assert type(value) is str, (key, value)


def test_environ_wsgi_multiprocess_and_url_scheme_follow_the_options(serve_app, connect):
    seen = []
    server = serve_app(capture_app(seen), validate=False, multiprocess=True,
                       url_scheme="https")
    assert get(connect(server.server_port)).status == 200
    assert seen[0]["wsgi.multiprocess"] is True
    assert seen[0]["wsgi.url_scheme"] == "https"


def test_environ_http10_request_and_no_query(serve_app, connect):
    seen = []
    server = serve_app(capture_app(seen))
    conn = connect(server.server_port)
    conn.send(request("/plain", version="HTTP/1.0", host=None))
    r = conn.response()
    assert r.status == 200
    env = seen[0]
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["PATH_INFO"] == "/plain"
    assert env["QUERY_STRING"] == ""
    assert env["REQUEST_METHOD"] == "GET"
    assert env.get("CONTENT_LENGTH", "") in ("", "0")
    assert not env.get("CONTENT_TYPE")


def test_environ_drops_header_names_with_underscores(serve_app, connect):
    seen = []
    server = serve_app(capture_app(seen))
    conn = connect(server.server_port)
    conn.send(request("/", headers=[("X-Forwarded-For", "10.0.0.1"),
                                    ("X_Forwarded_For", "6.6.6.6"),
                                    ("X_Only_Underscore", "y")]))
    assert conn.response().status == 200
    env = seen[0]
    assert env["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert "HTTP_X_ONLY_UNDERSCORE" not in env
    assert not any("6.6.6.6" in str(v) for v in env.values())


@pytest.mark.parametrize("target, path, query", [
    ("http://example.com/p/a%20b?x=1", "/p/a b", "x=1"),
    ("http://example.com:8080/", "/", ""),
    ("http://example.com", "/", ""),
    ("http://example.com?x=1", "/", "x=1"),
])
def test_absolute_form_target_gives_path_info_of_its_path(serve_app, connect, target,
                                                          path, query):
    seen = []
    server = serve_app(capture_app(seen))
    conn = connect(server.server_port)
    conn.send(request(target, host="example.com"))
    r = conn.response()
    assert r.status == 200, r
    assert seen[0]["PATH_INFO"] == path
    assert seen[0]["QUERY_STRING"] == query
    assert seen[0]["RAW_URI"] == target


# --- wsgi.input -------------------------------------------------------------

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


def test_unread_request_body_is_skipped_before_the_next_request(serve_app, connect):
    server = serve_app(path_app)
    conn = connect(server.server_port)
    conn.send(request("/ignored-body", method="POST", headers=[("Content-Length", "1000")],
                      body=b"x" * 1000) + request("/after"))
    assert conn.response().body == b"/ignored-body"
    assert conn.response().body == b"/after"


# --- connection management --------------------------------------------------


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


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize("when", ["before_start_response", "after_start_response"])
def test_app_error_before_headers_gives_500_and_logs_the_traceback(serve_app, connect,
                                                                   caplog, when):
    def app(environ, start_response):
        if when == "after_start_response":
            start_response("200 OK", [("Content-Type", "text/plain"), ("X-Lost", "1")])
        raise RuntimeError("secret-detail-42")

    server = serve_app(app)
    with caplog.at_level(logging.ERROR, logger="ptsevent.wsgi"):
        conn = connect(server.server_port)
        r = get(conn, "/")
    assert r.status == 500
    assert r.get("x-lost") is None
    assert b"secret-detail-42" not in r.body
    assert b"Traceback" not in r.body and b"RuntimeError" not in r.body
    records = [rec for rec in caplog.records if rec.name == "ptsevent.wsgi"]
    assert records, caplog.text
    rec = records[0]
    assert rec.levelno >= logging.ERROR
    assert rec.exc_info and isinstance(rec.exc_info[1], RuntimeError)
    assert "secret-detail-42" in caplog.text and "Traceback" in caplog.text


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_app_error_after_headers_were_sent_aborts_the_connection(serve_app, connect, caplog,
                                                                framing):
    def app(environ, start_response):
        headers = [("Content-Type", "text/plain")]
        if framing == "length":
            headers.append(("Content-Length", "1000"))
        start_response("200 OK", headers)
        yield b"partial-body"
        raise RuntimeError("late failure")

    server = serve_app(app, validate=False)
    with caplog.at_level(logging.ERROR, logger="ptsevent.wsgi"):
        conn = connect(server.server_port)
        conn.send(request("/"))
        raw = conn.read_to_eof()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"partial-body" in body
    if framing == "length":
        assert len(body) < 1000
    else:
        assert not body.endswith(b"0\r\n\r\n")
    assert b"late failure" not in raw
    assert "late failure" in caplog.text


# --- cooperation ------------------------------------------------------------


def test_sleeping_app_serves_50_requests_concurrently(serve_app):
    def app(environ, start_response):
        ptsevent.sleep(0.2)
        return path_app(environ, start_response)

    server = serve_app(app)

    def client(i):
        conn = Conn(server.server_port)
        try:
            return get(conn, f"/{i}", headers=[("Connection", "close")]).body
        finally:
            conn.close()

    t0 = time.monotonic()
    jobs = [ptsevent.spawn(client, i) for i in range(50)]
    bodies = [job.get(timeout=10) for job in jobs]
    elapsed = time.monotonic() - t0
    assert bodies == [f"/{i}".encode() for i in range(50)]
    assert elapsed < 2.0, elapsed


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


# --- timeouts ---------------------------------------------------------------


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


# --- stop, close, serve_forever --------------------------------------------


def test_stop_closes_idle_lets_inflight_finish_and_refuses_new(serve_app, connect):
    big = b"slow-done;" * 10000

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            ptsevent.sleep(0.3)
            body = big
        else:
            body = b"quick"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    server = serve_app(app)
    port = server.server_port
    idle = connect(port)
    assert get(idle, "/").body == b"quick"
    busy = connect(port)
    busy.send(request("/slow"))
    assert wait_for(lambda: server.stats()["active"] == 1, timeout=2)

    t0 = time.monotonic()
    stopper = ptsevent.spawn(server.stop, 5)
    ptsevent.sleep(0.02)
    # The idle keep-alive connection is closed at once.
    assert idle.wait_closed(0.2) == (b"", True)
    assert time.monotonic() - t0 < 0.25
    # A new connection is refused or never served.
    try:
        late = connect(port, timeout=0.2)
    except (ConnectionRefusedError, TimeoutError):
        pass
    else:
        try:
            late.send(request("/"))
        except OSError:
            pass
        data, _ = late.wait_closed(0.2)
        assert not data.startswith(b"HTTP/"), data
    # The request in flight finishes and its response arrives whole.
    r = busy.response()
    assert r.status == 200 and r.body == big
    stopper.get(timeout=5)
    assert time.monotonic() - t0 < 2.0
    assert server.stats()["accepting"] is False
    with pytest.raises(ConnectionRefusedError):
        psocket.create_connection((HOST, port), timeout=1).close()


def test_stop_timeout_cuts_a_request_that_takes_too_long(serve_app, connect):
    def app(environ, start_response):
        ptsevent.sleep(10)
        return text_app()(environ, start_response)

    server = serve_app(app)
    busy = connect(server.server_port)
    busy.send(request("/"))
    assert wait_for(lambda: server.stats()["active"] == 1, timeout=2)
    t0 = time.monotonic()
    server.stop(timeout=0.3)
    assert 0.25 <= time.monotonic() - t0 < 1.5
    data, closed = busy.wait_closed(2.0)
    assert closed and not data.startswith(b"HTTP/1.1 200")
    # Nothing of the server is left running: the cut request's tasklet ends
    # too, instead of running the app on for the rest of its 10 s.
    assert wait_for(lambda: server.stats()["connections"] == 0, timeout=2), server.stats()
    assert server.stats()["active"] == 0
    assert ptsevent.hub_stats()["tasklets"] == 0


@pytest.mark.parametrize("how", ["stop", "close"])
def test_serve_forever_returns_after_stop_or_close_from_another_tasklet(serve_app, connect,
                                                                        how):
    server = WSGIServer((HOST, 0), path_app)
    try:
        runner = ptsevent.spawn(server.serve_forever)
        ptsevent.sleep(0.02)
        assert get(connect(server.server_port), "/up").body == b"/up"
        assert not runner.dead
        getattr(server, how)()
        runner.get(timeout=2)
        assert runner.dead
    finally:
        server.close()
    assert server.socket.fileno() == -1  # the listener it made is closed


@pytest.mark.parametrize("how", ["stop", "close"])
def test_stop_or_close_from_another_thread_runs_in_the_servers_thread(how):
    # The usual shape of a test harness: serve_forever() in a thread, stop()
    # from the main thread, which waits until the server is down.
    import threading

    ready = threading.Event()
    box = {}

    def serve():
        box["server"] = WSGIServer((HOST, 0), path_app)
        ready.set()
        box["server"].serve_forever()

    thread = threading.Thread(target=serve)
    thread.start()
    assert ready.wait(5)
    server = box["server"]
    with urllib.request.urlopen(f"http://{HOST}:{server.server_port}/hi", timeout=5) as r:
        assert r.read() == b"/hi"
    getattr(server, how)()
    assert server.socket.fileno() == -1  # done when stop()/close() returned
    thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(OSError):
        stdsocket.create_connection((HOST, server.server_port), timeout=1).close()


def test_close_from_another_thread_after_the_servers_thread_ended_says_so():
    import threading

    box = {}

    def run():
        box["server"] = WSGIServer((HOST, 0), path_app)
        box["server"].start()  # and the thread ends with the server open

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)
    with pytest.raises(RuntimeError, match="no running ptsevent hub"):
        box["server"].close()
    box["server"].socket.close()


def test_server_does_not_close_a_listening_socket_it_was_given(connect):
    listener = stdsocket.socket()
    try:
        listener.bind((HOST, 0))
        listener.listen(16)
        server = WSGIServer(listener, path_app)
        server.start()
        try:
            assert get(connect(listener.getsockname()[1]), "/given").body == b"/given"
        finally:
            server.close()
        assert listener.fileno() != -1
    finally:
        listener.close()


# --- descriptor exhaustion --------------------------------------------------


def test_emfile_backs_off_keeps_serving_and_recovers(run_python):
    proc = run_python(script="wsgi_emfile.py", timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["fill_errno"] == "EMFILE"
    assert out["keep_first"] == "/k-first"
    # accept() failed while descriptors were exhausted ...
    assert out["stats_exhausted"]["accept_errors"] > 0
    assert out["pending_answered_while_exhausted"] == 0
    # ... the existing keep-alive connection kept being served ...
    assert out["keep_bodies"] == out["keep_expected"] and len(out["keep_bodies"]) >= 5
    # ... without spinning (CPU time over ~1 s of wall time) ...
    assert out["wall"] >= 0.9
    assert out["cpu"] < 0.3, out["cpu"]
    # ... and once descriptors were free, the waiting and new clients got in.
    assert out["pending_bodies"] == out["pending_expected"]
    assert out["fresh"] == "/fresh"
    assert out["keep_last"] == "/k-last"
    assert out["recovery_seconds"] < 2.0


# --- resources --------------------------------------------------------------


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


def test_defaults_are_documented_and_unknown_options_refused():
    for name in ("header_timeout", "body_timeout", "keepalive_timeout", "write_timeout",
                 "max_body", "accept_backoff"):
        assert name in DEFAULTS
    with pytest.raises(TypeError):
        WSGIServer((HOST, 0), path_app, no_such_option=1)


# --- real clients -----------------------------------------------------------


def test_requests_session_keep_alive_post_and_chunked_upload(serve_app):
    requests = pytest.importorskip("requests")
    server = serve_app(echo_app)
    url = f"http://{HOST}:{server.server_port}"

    def run():
        out = {}
        with requests.Session() as s:
            out["gets"] = [s.get(url + f"/get/{i}", params={"q": "a b"}).json()
                           for i in range(3)]
            out["post"] = s.post(url + "/post", data=b"x=1&y=2",
                                 headers={"Content-Type": "text/plain"}).json()

            def gen():
                yield b"stream-"
                yield b"ed-"
                yield b"upload"

            out["chunked"] = s.post(url + "/up", data=gen()).json()
            r = s.get(url + "/last")
            out["last_headers"] = dict(r.headers)
            out["last"] = r.json()
        return out

    out = ptsevent.run_in_thread(run)
    assert [g["path"] for g in out["gets"]] == ["/get/0", "/get/1", "/get/2"]
    assert out["gets"][0]["query"] == "q=a+b"
    ports = {g["remote_port"] for g in out["gets"]} | {out["post"]["remote_port"],
                                                       out["chunked"]["remote_port"],
                                                       out["last"]["remote_port"]}
    assert len(ports) == 1, "the session did not reuse its connection"
    assert out["post"]["body"] == "x=1&y=2"
    assert out["post"]["content_length"] == "7"
    assert out["post"]["content_type"] == "text/plain"
    assert out["chunked"]["body"] == "stream-ed-upload"
    assert out["chunked"]["transfer_encoding"] == "chunked"
    assert out["last_headers"]["Content-Type"] == "application/json"


def test_urllib_request(serve_app):
    server = serve_app(echo_app)
    url = f"http://{HOST}:{server.server_port}"

    def run():
        with urllib.request.urlopen(url + "/u?x=1", timeout=5) as r:
            got = (r.status, r.headers["Content-Type"], json.loads(r.read()))
        req = urllib.request.Request(url + "/p", data=b"payload", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            posted = json.loads(r.read())
        return got, posted

    (status, ctype, info), posted = ptsevent.run_in_thread(run)
    assert status == 200 and ctype == "application/json"
    assert info["path"] == "/u" and info["query"] == "x=1" and info["method"] == "GET"
    assert posted["method"] == "POST" and posted["body"] == "payload"


def test_http_client_keep_alive_and_chunked_body(serve_app):
    import http.client

    server = serve_app(echo_app)

    def run():
        conn = http.client.HTTPConnection(HOST, server.server_port, timeout=5)
        try:
            out = []
            for path in ("/a", "/b"):
                conn.request("GET", path)
                r = conn.getresponse()
                out.append((r.status, json.loads(r.read())))
            conn.request("POST", "/c", body=iter([b"one,", b"two"]),
                         headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
            r = conn.getresponse()
            out.append((r.status, json.loads(r.read())))
            conn.request("HEAD", "/d")
            r = conn.getresponse()
            out.append((r.status, r.read(), r.getheader("Content-Length")))
            return out
        finally:
            conn.close()

    (s1, a), (s2, b), (s3, c), (s4, head_body, head_len) = ptsevent.run_in_thread(run)
    assert (s1, s2, s3, s4) == (200, 200, 200, 200)
    assert a["path"] == "/a" and b["path"] == "/b"
    assert a["remote_port"] == b["remote_port"] == c["remote_port"]
    assert c["body"] == "one,two" and c["transfer_encoding"] == "chunked"
    assert head_body == b"" and int(head_len) > 0


CURL = shutil.which("curl")


def run_curl(*args):
    # curl is not ours: under `make test-asan` it must not inherit the
    # preloaded sanitizer runtime.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    return subprocess.run([CURL, "-sS", "--max-time", "10", *args], env=env,
                          capture_output=True, timeout=20, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl_http11_http10_and_expect_100_continue(serve_app, tmp_path):
    server = serve_app(echo_app)
    url = f"http://{HOST}:{server.server_port}"
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"u" * 5000)

    p = ptsevent.run_in_thread(run_curl, "-i", url + "/c?x=1")
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    info = json.loads(body)
    assert info["path"] == "/c" and info["query"] == "x=1"
    assert info["protocol"] == "HTTP/1.1"

    p = ptsevent.run_in_thread(run_curl, "--http1.0", "-i", url + "/old")
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 200", head)
    assert b"connection: close" in head.lower()
    info = json.loads(body)
    assert info["protocol"] == "HTTP/1.0" and info["path"] == "/old"

    t0 = time.monotonic()
    p = ptsevent.run_in_thread(run_curl, "-v", "-H", "Expect: 100-continue",
                               "--data-binary", f"@{upload}", url + "/expect")
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["body"] == "u" * 5000 and info["expect"] == "100-continue"
    assert b"HTTP/1.1 100 Continue" in p.stderr
    # curl waits 1 s for the 100 before sending anyway: it did not have to.
    assert elapsed < 0.9, elapsed


# --- the command line -------------------------------------------------------


def test_cli_serves_an_app_and_exits_0_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "ptsevent.wsgi", "wsgi_cli_app:app", "--port", "0"],
        cwd=CRASH_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        def banner():
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stderr, selectors.EVENT_READ)
                line = b""
                deadline = time.monotonic() + 15
                while not line.endswith(b"\n") and time.monotonic() < deadline:
                    if sel.select(timeout=0.5):
                        ch = os.read(proc.stderr.fileno(), 1)
                        if not ch:
                            break
                        line += ch
                return line.decode()

        line = ptsevent.run_in_thread(banner)
        m = re.search(r"serving wsgi_cli_app:app on http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        port = int(m.group(1))
        assert port != 0

        def fetch():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/cli?z=9", timeout=5) as r:
                return r.status, r.read()

        assert ptsevent.run_in_thread(fetch) == (200, b"cli GET /cli z=9")
        proc.send_signal(signal.SIGTERM)
        rc = ptsevent.run_in_thread(proc.wait, 10)
        assert rc == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


# --- the request's objects in other tasklets ---------------------------------


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

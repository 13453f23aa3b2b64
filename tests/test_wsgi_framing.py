"""How the WSGI server frames what it sends and what it accepts.

Real sockets to a real ptsevent.wsgi.WSGIServer on 127.0.0.1. Where bytes
matter the client is a raw socket and the stream of responses is parsed
strictly (a response that is framed wrong shifts or breaks every response
after it on the same connection, so most tests pipeline a second request and
check that it gets its own answer); where a real client matters it is
http.client.
"""

import http.client
import logging
import os
import socket as stdsocket
import time

import pytest

import ptsevent
import ptsevent.socket as psocket
import ptsevent.wsgi
from _http import exchange, parse_responses

HOST = "127.0.0.1"

#: The request pipelined behind the one under test: it asks for the close
#: itself, so that the stream ends right after its answer.
AFTER = b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def req(path="/", method="GET", headers=(), body=b"", version="HTTP/1.1", host="x"):
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def after_or(app):
    """Wraps `app`: /after answers b"after" with a Content-Length."""

    def wrapped(environ, start_response):
        if environ["PATH_INFO"] == "/after":
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", "5")])
            return [b"after"]
        return app(environ, start_response)

    return wrapped


def responses(port, data, timeout=5.0):
    """Sends `data`, reads until the server closes, parses every response."""
    raw, closed = exchange(port, data, timeout=timeout)
    assert closed, raw
    return parse_responses(raw), raw


class Errors:
    """An error_log callable that records (message, exception)."""

    def __init__(self):
        self.records = []

    def __call__(self, message, exc):
        self.records.append((message, exc))


# --- write() followed by a returned list or tuple ---------------------------

ITEMS = [
    pytest.param([], id="0-items"),
    pytest.param([b"a"], id="1-item"),
    pytest.param([b"a", b"bc"], id="2-items"),
    pytest.param([b"a", b"", b"bc", b"def"], id="4-items-one-empty"),
    pytest.param([b""], id="1-empty-item"),
]


def write_then_return(items, kind, length):
    def app(environ, start_response):
        headers = [("Content-Type", "text/plain")]
        if length:
            headers.append(("Content-Length", str(1 + sum(map(len, items)))))
        write = start_response("200 OK", headers)
        write(b"w")
        return kind(items)

    return after_or(app)


@pytest.mark.parametrize("length", [False, True], ids=["no-length", "length"])
@pytest.mark.parametrize("kind", [list, tuple])
@pytest.mark.parametrize("items", ITEMS)
def test_write_then_returned_sequence_is_framed_once(serve_app, items, kind, length):
    server = serve_app(write_then_return(items, kind, length), validate=False)
    parsed, raw = responses(server.server_port, req("/w") + AFTER)
    assert len(parsed) == 2, raw
    (s1, h1, b1), (s2, h2, b2) = parsed
    assert s1 == 200 and b1 == b"w" + b"".join(items), raw
    assert raw.count(b"HTTP/1.1 200 ") == 2, raw
    if length:
        assert h1["content-length"] == str(len(b1)) and "transfer-encoding" not in h1
    else:
        assert h1["transfer-encoding"] == "chunked" and "content-length" not in h1
    assert (s2, b2) == (200, b"after"), raw


@pytest.mark.parametrize("kind", [list, tuple])
@pytest.mark.parametrize("items", ITEMS)
def test_write_then_returned_sequence_keep_alive_with_http_client(serve_app, items, kind):
    server = serve_app(write_then_return(items, kind, False), validate=False)

    def run():
        # A real client in an OS thread (the server runs in this thread's hub).
        conn = http.client.HTTPConnection(HOST, server.server_port, timeout=3)
        out = []
        try:
            for path in ("/w", "/w", "/after"):
                conn.request("GET", path)
                r = conn.getresponse()
                out.append((r.status, r.read()))
        finally:
            conn.close()
        return out

    body = b"w" + b"".join(items)
    assert ptsevent.run_in_thread(run) == [(200, body), (200, body), (200, b"after")]


@pytest.mark.parametrize("length", [False, True], ids=["no-length", "length"])
@pytest.mark.parametrize("kind", [list, tuple])
@pytest.mark.parametrize("items", ITEMS)
def test_write_then_returned_sequence_http10(serve_app, items, kind, length):
    server = serve_app(write_then_return(items, kind, length), validate=False)
    raw, closed = exchange(server.server_port, req("/w", version="HTTP/1.0"))
    assert closed
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Transfer-Encoding" not in head
    assert body == b"w" + b"".join(items), raw
    if length:
        # HTTP/1.0 with keep-alive: the length frames it, the next request
        # gets its own answer.
        ka = req("/w", version="HTTP/1.0", headers=[("Connection", "keep-alive")])
        parsed, raw = responses(server.server_port, ka + AFTER)
        assert [(s, b) for s, _, b in parsed] == [
            (200, b"w" + b"".join(items)), (200, b"after")], raw


def test_write_then_file_wrapper_and_generator_terminate_the_chunked_body(serve_app,
                                                                          tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"file-bytes")

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"w")
        if environ["PATH_INFO"] == "/file":
            return environ["wsgi.file_wrapper"](open(path, "rb"))
        return (x for x in [b"g1", b"g2"])

    server = serve_app(after_or(app), validate=False)
    parsed, raw = responses(server.server_port, req("/file") + req("/gen") + AFTER)
    assert [(s, b) for s, _, b in parsed] == [
        (200, b"wfile-bytes"), (200, b"wg1g2"), (200, b"after")], raw

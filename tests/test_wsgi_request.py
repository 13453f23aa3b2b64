"""The request tasklet around the app call: every request runs in a tasklet
of its own (a sleeping app does not hold up the others), and an app that
raises gets a 500 with its traceback logged, never shown, or, once the headers
are out, an aborted connection.

The access log is covered by test_wsgi_checklist.py (item 25 of
docs/http-checklist.md) and test_wsgi_cli.py. Real loopback connections to a
ptsevent.wsgi server in this process's hub (the `serve_app` and `connect`
fixtures of conftest.py).
"""

import logging
import time

import pytest

import ptsevent
from _http import Conn, get, path_app, request


# --- an app that raises --------------------------------------------------------


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


# --- one tasklet per request ---------------------------------------------------


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

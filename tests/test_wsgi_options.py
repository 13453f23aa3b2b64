"""The WSGI server's options: one table of defaults, in the C++ server.

ptsevent._core.HTTP_OPTIONS (the table HttpServer parses its keywords
from) is where ptsevent.wsgi.DEFAULTS, the command line and the README
take the limits and timeouts from; and what the environ says about the
server (wsgi.multithread), for the built-in server and the gunicorn worker.
"""

import math
import pathlib
import re
import socket

import pytest

import ptsevent
import ptsevent.wsgi
from ptsevent import _core
from ptsevent.wsgi import DEFAULTS, WSGIServer
from _http import exchange
from support import serve_gunicorn

HOST = "127.0.0.1"
README = pathlib.Path(__file__).resolve().parent.parent / "README.md"

SIZES = ["max_request_line", "max_header_line", "max_header_block", "max_headers",
         "max_body", "max_trailer_block", "max_drain"]
TIMEOUTS = ["header_timeout", "body_timeout", "keepalive_timeout", "write_timeout",
            "accept_backoff"]


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def test_python_defaults_are_the_core_table():
    table = _core.HTTP_OPTIONS
    assert DEFAULTS == dict(table)
    assert list(table) == SIZES + TIMEOUTS  # the order --help lists them in
    for name in SIZES:
        assert type(table[name]) is int and table[name] > 0, name
    for name in TIMEOUTS:
        assert type(table[name]) is float and table[name] > 0, name
    assert table["max_request_line"] == 8190 and table["max_body"] == 1 << 30
    assert table["header_timeout"] == 10.0 and table["accept_backoff"] == 0.1


def test_core_table_is_read_only():
    with pytest.raises(TypeError):
        _core.HTTP_OPTIONS["max_body"] = 1
    with pytest.raises(TypeError):
        del _core.HTTP_OPTIONS["max_body"]
    assert _core.HTTP_OPTIONS["max_body"] == 1 << 30


def test_command_line_offers_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ptsevent.wsgi.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, value in _core.HTTP_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        assert re.search(re.escape(flag) + r" N default " + re.escape(str(value)) + r"\b",
                         text), (flag, value)


@pytest.mark.parametrize("name", SIZES + TIMEOUTS)
def test_every_option_is_accepted_and_the_server_serves(name, serve_app):
    value = DEFAULTS[name] * 2
    server = serve_app(hello, **{name: value})
    data, _ = exchange(server.server_port,
                       b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nok")


def test_a_given_limit_reaches_the_server(serve_app):
    server = serve_app(hello, max_request_line=32)
    data, closed = exchange(server.server_port,
                            b"GET /" + b"a" * 40 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 414 ") and closed
    data, _ = exchange(server.server_port,
                       b"GET /short HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")


BAD_SIZES = [("12", TypeError), (1.5, TypeError), (None, TypeError), (0, ValueError),
             (-1, ValueError), (1 << 70, OverflowError)]
BAD_SECONDS = [("x", TypeError), (None, TypeError), (0, ValueError), (-1.0, ValueError),
               (math.nan, ValueError)]


@pytest.mark.parametrize("name", SIZES)
@pytest.mark.parametrize("value, error", BAD_SIZES)
def test_bad_sizes_are_refused(name, value, error):
    with pytest.raises(error, match=None if error is OverflowError else name):
        WSGIServer((HOST, 0), hello, **{name: value})


@pytest.mark.parametrize("name", TIMEOUTS)
@pytest.mark.parametrize("value, error", BAD_SECONDS)
def test_bad_timeouts_are_refused(name, value, error):
    with pytest.raises(error):
        WSGIServer((HOST, 0), hello, **{name: value})


def test_unknown_options_are_a_type_error_and_leave_nothing_open(tmp_path):
    with pytest.raises(TypeError, match="no_such_option"):
        WSGIServer((HOST, 0), hello, no_such_option=1)
    path = tmp_path / "s.sock"
    with pytest.raises(TypeError, match="no_such_option"):
        WSGIServer(str(path), hello, no_such_option=1)
    assert not path.exists()  # the socket file the server made is gone
    # Names of HttpServer's own that WSGIServer sets itself are not options.
    for name in ("log_error", "errors", "server_port"):
        with pytest.raises(TypeError):
            WSGIServer((HOST, 0), hello, **{name: None})
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        with pytest.raises(TypeError, match="unexpected keyword argument 'max_bdy'"):
            _core.HttpServer(sock, hello, server_name="x", server_port="1", max_bdy=1)


def readme_options_table():
    rows = {}
    for line in README.read_text().splitlines():
        m = re.match(r"^\s*\| `(\w+)` \| ([0-9.]+) \|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_readme_options_table_matches_the_defaults():
    rows = readme_options_table()
    assert list(rows) == list(_core.HTTP_OPTIONS)
    for name, default in _core.HTTP_OPTIONS.items():
        written = rows[name]
        value = float(written) if "." in written else int(written)
        assert type(value) is type(default) and value == default, (name, written)


# --- wsgi.multithread -------------------------------------------------------


def test_builtin_server_says_multithread(serve_app):
    seen = []

    def app(environ, start_response):
        seen.append(environ["wsgi.multithread"])
        return hello(environ, start_response)

    server = serve_app(app, validate=False)
    exchange(server.server_port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert seen == [True]


def test_builtin_server_calls_the_app_again_before_an_earlier_call_returned(serve_app):
    # What the flag announces: two calls of the app in flight in one OS
    # thread, so per-thread state is shared between them.
    import threading

    local = threading.local()
    log = []

    def app(environ, start_response):
        local.path = environ["PATH_INFO"]
        log.append(("in", environ["PATH_INFO"], threading.get_ident()))
        ptsevent.sleep(0.05)
        log.append(("out", local.path))
        return hello(environ, start_response)

    server = serve_app(app, validate=False)
    done = []
    req = b"GET /%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ts = [ptsevent.spawn(lambda i=i: done.append(exchange(server.server_port, req % i)))
          for i in (1, 2)]
    for t in ts:
        t.join()
    assert [e[0] for e in log] == ["in", "in", "out", "out"]
    assert log[0][2] == log[1][2]  # one OS thread
    assert log[2][1] == log[3][1] == "/2"  # the first call sees the second's state


GUNICORN_APP = '''
def app(environ, start_response):
    body = ("multithread=%s" % environ["wsgi.multithread"]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def test_gunicorn_worker_says_multithread(tmp_path):
    srv = serve_gunicorn(tmp_path, GUNICORN_APP, "mtapp:app")
    try:
        assert srv.get("/") == "multithread=True"
    finally:
        out = srv.stop()  # SIGTERM
    assert srv.proc.returncode == 0, out

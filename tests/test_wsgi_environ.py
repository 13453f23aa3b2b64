"""What the app finds in its environ: every PEP 3333 key with the request's
values, PATH_INFO and QUERY_STRING from each request-target form, request
headers as HTTP_* keys (and the underscore names that are dropped), and the
keys that follow the server's options.

Real loopback connections to a ptsevent.wsgi server in this process's hub
(the `serve_app` and `connect` fixtures of conftest.py).
"""

import pytest

from _http import capture_app, get, request
from ptsevent.wsgi import FileWrapper


PEP3333_KEYS = [
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
    "SERVER_PORT", "SERVER_PROTOCOL", "wsgi.version", "wsgi.url_scheme",
    "wsgi.input", "wsgi.errors", "wsgi.multithread", "wsgi.multiprocess",
    "wsgi.run_once",
]


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
    assert env["wsgi.multithread"] is True
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

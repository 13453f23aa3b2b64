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


# --- the app's headers cannot make the framing ambiguous ----------------------


def headers_app(status, headers, body=(b"hello",)):
    def app(environ, start_response):
        start_response(status, list(headers))
        return list(body)

    return after_or(app)


def test_identical_duplicate_content_length_is_sent_once(serve_app):
    server = serve_app(headers_app("200 OK", [("Content-Length", "5"),
                                              ("content-length", "5")]), validate=False)
    parsed, raw = responses(server.server_port, req("/d") + AFTER)
    assert [(s, b) for s, _, b in parsed] == [(200, b"hello"), (200, b"after")], raw
    first = raw[:raw.index(b"\r\n\r\n")].lower()
    assert first.count(b"content-length:") == 1, raw


@pytest.mark.parametrize("values", [("5", "6"), ("6", "5"), ("5", "5", "50")])
def test_conflicting_content_lengths_get_500_and_the_connection_stays_in_sync(serve_app,
                                                                              values):
    errors = Errors()
    server = serve_app(headers_app("200 OK", [("Content-Length", v) for v in values]),
                       validate=False, error_log=errors)
    parsed, raw = responses(server.server_port, req("/d") + AFTER)
    assert [s for s, _, _ in parsed] == [500, 200], raw
    assert parsed[1][2] == b"after"
    assert b"hello" not in raw
    assert len(errors.records) == 1
    assert "Content-Length" in str(errors.records[0][1])


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
@pytest.mark.parametrize("extra", [
    pytest.param([("Content-Length", "5")], id="length"),
    pytest.param([("Transfer-Encoding", "chunked")], id="te"),
    pytest.param([], id="none"),
])
def test_no_length_and_no_body_on_204_and_304(serve_app, status, extra):
    server = serve_app(headers_app(status, [("X-A", "1"), *extra]), validate=False)
    parsed, raw = responses(server.server_port, req("/n") + AFTER)
    assert [(s, b) for s, _, b in parsed] == [(int(status[:3]), b""), (200, b"after")], raw
    first = raw[:raw.index(b"\r\n\r\n") + 4]
    assert b"content-length" not in first.lower(), raw
    assert b"transfer-encoding" not in first.lower(), raw
    assert raw[len(first):].startswith(b"HTTP/1.1 200 OK\r\n"), raw


@pytest.mark.parametrize("status", ["100 Continue", "101 Switching Protocols",
                                    "103 Early Hints", "199 Whatever"])
def test_1xx_as_the_final_status_gets_500_and_the_next_request_its_answer(serve_app,
                                                                          status):
    errors = Errors()
    server = serve_app(headers_app(status, [("Upgrade", "websocket"),
                                            ("Connection", "Upgrade")]),
                       validate=False, error_log=errors)
    parsed, raw = responses(server.server_port, req("/u") + AFTER)
    assert [(s, b) for s, _, b in parsed][1:] == [(200, b"after")], raw
    assert parsed[0][0] == 500, raw
    assert not raw.startswith(b"HTTP/1.1 1"), raw
    assert len(errors.records) == 1
    message, exc = errors.records[0]
    assert isinstance(exc, ValueError) and status[:3] in str(exc)


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
@pytest.mark.parametrize("body", ["list", "generator"])
@pytest.mark.parametrize("extra", [
    pytest.param([("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
                 id="te-and-length"),
    pytest.param([("Content-Length", "5"), ("Transfer-Encoding", "gzip, chunked")],
                 id="length-and-te-list"),
    pytest.param([("Transfer-Encoding", "chunked")], id="te-only"),
    pytest.param([("Transfer-Encoding", "identity")], id="te-identity"),
])
def test_the_apps_transfer_encoding_never_frames_the_response(serve_app, version, body,
                                                               extra):
    # Transfer-Encoding is hop-by-hop: the server frames the body itself and
    # drops the app's, so a header of the app can never contradict the
    # framing on the wire.
    def app(environ, start_response):
        start_response("200 OK", list(extra))
        if body == "list":
            return [b"hel", b"lo"]
        return (x for x in [b"hel", b"lo"])

    server = serve_app(after_or(app), validate=False)
    ka = [("Connection", "keep-alive")] if version == "HTTP/1.0" else []
    raw, closed = exchange(server.server_port, req("/t", version=version, headers=ka) + AFTER)
    assert closed
    head = raw[:raw.index(b"\r\n\r\n")].lower()
    framing = [line for line in head.split(b"\r\n")
               if line.startswith((b"transfer-encoding:", b"content-length:"))]
    app_length = any(n == "Content-Length" for n, _ in extra)
    if app_length or body == "list":
        assert framing == [b"content-length: 5"], raw
    elif version == "HTTP/1.1":
        assert framing == [b"transfer-encoding: chunked"], raw
    else:
        assert framing == [], raw  # HTTP/1.0: the close ends the body
    parsed = parse_responses(raw)
    if framing:
        assert [(s, b) for s, _, b in parsed] == [(200, b"hello"), (200, b"after")], raw
    else:
        assert len(parsed) == 1 and parsed[0][2] == b"hello", raw


# --- Host ---------------------------------------------------------------------


def environ_app(seen):
    """Records every environ (/after's too)."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    inner = after_or(app)

    def recording(environ, start_response):
        seen.append(dict(environ))
        return inner(environ, start_response)

    return recording


@pytest.mark.parametrize("host", [
    "a b@c/d", "a@b", "a/b", "a?b", "a#b", "a\\b", "<a>", '"a"', "a:b:c", "a:80x",
    "[::1", "[::1]x", "a]", "[a b]", "a%zz", "a%4", "a{b}", "a^b", "a|b", "\x80b",
])
def test_invalid_host_value_gets_400_and_close(serve_app, host):
    seen = []
    server = serve_app(environ_app(seen), validate=False)
    data = req("/h", host=host)
    parsed, raw = responses(server.server_port, data + AFTER)
    assert [s for s, _, _ in parsed] == [400], raw
    assert parsed[0][1]["connection"] == "close"
    assert seen == []


@pytest.mark.parametrize("host", [
    "example.com", "example.com:8080", "127.0.0.1:1", "[::1]:8080", "[::1]",
    "[v1.fe]", "", "a_b.c~d", "xn--b%C3%BC", "a!$&'()*+,;=b", "example.com:",
])
def test_valid_host_values_are_accepted(serve_app, host):
    seen = []
    server = serve_app(environ_app(seen), validate=False)
    parsed, raw = responses(server.server_port, req("/h", host=host) + AFTER)
    assert [(s, b) for s, _, b in parsed] == [(200, b"ok"), (200, b"after")], raw
    assert seen[0]["HTTP_HOST"] == host


def test_http11_without_host_gets_400_http10_without_host_is_served(serve_app):
    seen = []
    server = serve_app(environ_app(seen), validate=False)
    parsed, raw = responses(server.server_port, req("/h", host=None) + AFTER)
    assert [s for s, _, _ in parsed] == [400], raw
    assert seen == []
    raw, closed = exchange(server.server_port, req("/h", host=None, version="HTTP/1.0"))
    assert closed and raw.startswith(b"HTTP/1.1 200 "), raw
    assert "HTTP_HOST" not in seen[0]


@pytest.mark.parametrize("target, host, path, query", [
    ("http://example.com:8080/x?q=1", "example.com:8080", "/x", "q=1"),
    ("http://example.com/a%20b", "example.com", "/a b", ""),
    ("https://[::1]:8443", "[::1]:8443", "/", ""),
    ("http://example.com?y", "example.com", "/", "y"),
])
def test_absolute_form_target_gives_http_host_from_its_authority(serve_app, target, host,
                                                                 path, query):
    seen = []
    server = serve_app(environ_app(seen), validate=False)
    parsed, raw = responses(server.server_port, req(target, host="other.org:81") + AFTER)
    assert [(s, b) for s, _, b in parsed] == [(200, b"ok"), (200, b"after")], raw
    env = seen[0]
    assert env["HTTP_HOST"] == host
    assert env["PATH_INFO"] == path and env["QUERY_STRING"] == query
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.server_port)
    assert seen[1]["HTTP_HOST"] == "x"  # the next request: its own Host


@pytest.mark.parametrize("target", [
    "http://user@example.com/x", "http:///x", "http://a b/x", "http://exa<mple/x",
    "http://example.com:8o/x",
])
def test_absolute_form_target_with_a_bad_authority_gets_400(serve_app, target):
    seen = []
    server = serve_app(environ_app(seen), validate=False)
    parsed, raw = responses(server.server_port, req(target) + AFTER)
    assert [s for s, _, _ in parsed] == [400], raw
    assert seen == []


# --- empty lines before a request line ------------------------------------------


def hello_app(environ, start_response):
    body = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def test_trickled_empty_lines_are_cut_at_the_header_timeout(serve_app):
    server = serve_app(hello_app, header_timeout=0.5, keepalive_timeout=3.0)
    sock = psocket.create_connection((HOST, server.server_port), timeout=5)
    try:
        started = time.monotonic()
        closed_at = None
        got = b""
        while time.monotonic() - started < 4.0:
            try:
                sock.sendall(b"\r\n")
            except OSError:
                closed_at = time.monotonic()
                break
            sock.settimeout(0.15)
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            got += data
            if not data:
                closed_at = time.monotonic()
                break
        assert closed_at is not None, "still open after 4 s of empty lines"
        # The header timeout runs from the first byte, empty lines included;
        # they started no request, so the close comes without a 408.
        assert closed_at - started < 1.5, closed_at - started
        assert got == b"", got
    finally:
        sock.close()


def test_empty_lines_after_a_response_do_not_rearm_the_keepalive_timer(serve_app):
    server = serve_app(hello_app, header_timeout=0.5, keepalive_timeout=3.0)
    sock = psocket.create_connection((HOST, server.server_port), timeout=5)
    try:
        sock.sendall(req("/first"))
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        while time.monotonic() - started < 4.0:
            try:
                sock.sendall(b"\r\n")
            except OSError:
                break
            sock.settimeout(0.15)
            try:
                if not sock.recv(4096):
                    break
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
        assert time.monotonic() - started < 1.5
    finally:
        sock.close()


@pytest.mark.parametrize("n", [9, 64, 1000])
def test_too_many_empty_lines_get_400_and_close(serve_app, n):
    server = serve_app(hello_app)
    raw, closed = exchange(server.server_port, b"\r\n" * n + req("/x") + AFTER)
    assert closed
    parsed = parse_responses(raw)
    assert [s for s, _, _ in parsed] == [400], raw
    assert b"/x" not in raw


@pytest.mark.parametrize("how", ["whole", "bytes"])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_a_few_empty_lines_before_a_request_are_ignored(serve_app, n, how):
    server = serve_app(hello_app)
    data = (b"\r\n" * n + req("/one") + b"\r\n" * n + req("/two", method="POST",
            headers=[("Content-Length", "3")], body=b"abc") + b"\r\n" * n + AFTER)
    raw, closed = exchange(server.server_port, data, how=how)
    assert closed
    assert [(s, b) for s, _, b in parse_responses(raw)] == [
        (200, b"/one"), (200, b"/two"), (200, b"/after")], raw


# --- wsgi.input.read() reserves memory as bytes arrive --------------------------


def vm_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


@pytest.mark.parametrize("call", ["read()", "read(n)"])
def test_input_read_of_a_huge_declared_length_reserves_what_arrived(serve_app, call):
    declared = 1 << 30
    state = {}

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        state["reading"] = True
        try:
            data = inp.read() if call == "read()" else inp.read(declared)
            state["got"] = len(data)
        except (OSError, ValueError) as e:
            state["error"] = e
            raise
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]

    server = serve_app(app, validate=False, max_body=2 * declared)
    before_vm, before_rss = vm_kib("VmSize"), vm_kib("VmRSS")
    sock = psocket.create_connection((HOST, server.server_port), timeout=5)
    try:
        sock.sendall(req("/big", method="POST",
                         headers=[("Content-Length", str(declared))]) + b"0123456789")
        deadline = time.monotonic() + 5
        while not state.get("reading") and time.monotonic() < deadline:
            ptsevent.sleep(0.01)
        ptsevent.sleep(0.1)  # the app now waits for the rest inside read()
        assert "error" not in state and "got" not in state, state
        grown_vm = vm_kib("VmSize") - before_vm
        grown_rss = vm_kib("VmRSS") - before_rss
    finally:
        sock.close()
    deadline = time.monotonic() + 5
    while "error" not in state and time.monotonic() < deadline:
        ptsevent.sleep(0.01)
    assert isinstance(state.get("error"), ConnectionError), state
    # 10 bytes arrived: nowhere near the declared 1 GiB of address space.
    assert grown_vm < 64 * 1024, f"VmSize grew by {grown_vm} KiB"
    assert grown_rss < 64 * 1024, f"VmRSS grew by {grown_rss} KiB"


@pytest.mark.parametrize("size", [70_000, 1_000_003, 5 << 20])
@pytest.mark.parametrize("call", ["read()", "read(n)"])
def test_input_read_of_a_body_that_arrives_returns_all_of_it(serve_app, size, call):
    body = os.urandom(size)
    seen = []

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        seen.append(inp.read() if call == "read()" else inp.read(size + 100))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    server = serve_app(app, validate=False)
    data = req("/b", method="POST", headers=[("Content-Length", str(size))]) + body
    parsed, raw = responses(server.server_port, data + AFTER, timeout=10)
    assert [s for s, _, _ in parsed] == [200, 200]
    assert len(seen) == 2 and seen[0] == body and seen[1] == b""


# --- a body over max_body: RequestEntityTooLarge, and a 413 -------------------

CHUNKED_BIG = (b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + (b"400\r\n" + b"z" * 0x400 + b"\r\n") * 3 + b"0\r\n\r\n")


def test_request_entity_too_large_is_a_documented_valueerror():
    exc = ptsevent.wsgi.RequestEntityTooLarge
    assert exc is ptsevent._core.RequestEntityTooLarge
    assert issubclass(exc, ValueError)
    assert "RequestEntityTooLarge" in ptsevent.wsgi.__all__
    assert "413" in exc.__doc__


@pytest.mark.parametrize("what", ["propagate", "catch-200", "catch-500", "catch-then-write"])
def test_chunked_body_over_max_body_raises_413_and_the_server_answers_413(serve_app, what):
    seen = []

    def app(environ, start_response):
        try:
            environ["wsgi.input"].read()
        except ValueError as e:
            seen.append(e)
            if what == "propagate":
                raise
            status = "200 OK" if what == "catch-200" else "500 Internal Server Error"
            write = start_response(status, [("Content-Type", "text/plain")])
            if what == "catch-then-write":
                write(b"")  # nothing sent yet: the server may still answer
            return [b"the app's answer"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"read all"]

    errors = Errors()
    server = serve_app(app, validate=False, max_body=2000, error_log=errors)
    parsed, raw = responses(server.server_port, CHUNKED_BIG + AFTER)
    assert [s for s, _, _ in parsed] == [413], raw
    assert parsed[0][1]["connection"] == "close"
    assert b"the app's answer" not in raw
    assert len(seen) == 1
    e = seen[0]
    assert type(e) is ptsevent.wsgi.RequestEntityTooLarge
    assert "413" in str(e) and "2000" in str(e)
    assert errors.records == []  # a client error, not the app's


def test_app_that_answers_a_client_error_itself_keeps_its_answer(serve_app):
    def app(environ, start_response):
        try:
            environ["wsgi.input"].read()
        except ptsevent.wsgi.RequestEntityTooLarge:
            start_response("413 Content Too Large", [("Content-Type", "text/plain")])
            return [b"custom page"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"read all"]

    server = serve_app(app, validate=False, max_body=2000)
    parsed, raw = responses(server.server_port, CHUNKED_BIG + AFTER)
    assert [(s, b) for s, _, b in parsed] == [(413, b"custom page")], raw
    assert parsed[0][1]["connection"] == "close"


def test_flask_app_reading_an_over_limit_chunked_body_gets_413(serve_app):
    flask = pytest.importorskip("flask")
    app = flask.Flask("framing")

    @app.route("/big", methods=["POST"])
    def big():
        return f"got {len(flask.request.get_data())}"

    server = serve_app(app.wsgi_app, validate=False, max_body=2000)
    parsed, raw = responses(server.server_port, CHUNKED_BIG + AFTER)
    assert [s for s, _, _ in parsed] == [413], raw

    def run():
        conn = http.client.HTTPConnection(HOST, server.server_port, timeout=5)
        try:
            conn.request("POST", "/big", body=iter([b"z" * 1500, b"z" * 1500]),
                         headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
            r = conn.getresponse()
            return r.status, r.getheader("Connection")
        finally:
            conn.close()

    assert ptsevent.run_in_thread(run) == (413, "close")


# --- a refused head is judged on the head alone -----------------------------------


@pytest.mark.parametrize("how", ["whole", "bytes", 2])
@pytest.mark.parametrize("first", [b"\x00", b"\r", b"\n", b"\r\n", b" ", b"\x01", b"a"])
def test_content_length_over_max_body_is_413_whatever_the_body_bytes(serve_app, first,
                                                                     how):
    seen = []
    server = serve_app(environ_app(seen), validate=False, max_body=10)
    data = req("/big", method="POST", headers=[("Content-Length", "99")]) + first + b"x" * 20
    raw, closed = exchange(server.server_port, data, how=how)
    assert closed
    assert [s for s, _, _ in parse_responses(raw)] == [413], raw
    assert seen == []


@pytest.mark.parametrize("first", [b"\x00", b"\n", b"\r"])
def test_other_head_errors_do_not_look_at_the_body_either(serve_app, first):
    # 417 for an expectation we do not meet, from the head alone.
    server = serve_app(hello_app)
    data = req("/e", method="POST", headers=[("Content-Length", "5"),
                                             ("Expect", "something")]) + first + b"abcd"
    raw, closed = exchange(server.server_port, data)
    assert closed
    assert [s for s, _, _ in parse_responses(raw)] == [417], raw


# --- a body that does not match the app's Content-Length is logged ---------------


def mismatch_app(style, length, body=b"hello"):
    def app(environ, start_response):
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(length))]
        if style == "write":
            write = start_response("200 OK", headers)
            write(body[:2])
            write(body[2:])
            return []
        start_response("200 OK", headers)
        if style == "list":
            return [body[:2], body[2:]]
        return (x for x in [body[:2], body[2:]])

    return after_or(app)


@pytest.mark.parametrize("style", ["list", "generator", "write"])
@pytest.mark.parametrize("length, sent", [(10, b"hello"), (3, b"hel")],
                         ids=["too-short", "too-long"])
def test_content_length_mismatch_is_logged_and_extra_bytes_never_sent(serve_app, style,
                                                                      length, sent):
    errors = Errors()
    server = serve_app(mismatch_app(style, length), validate=False, error_log=errors)
    raw, closed = exchange(server.server_port,
                           req("/m?q=1", method="POST", headers=[("Content-Length", "0")])
                           + AFTER, timeout=2)
    assert closed
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: %d" % length in head
    # Never more than declared: the rest of a too-long body is dropped, not
    # left to be read as the next response; then the connection closes.
    assert body == sent, raw
    assert raw.count(b"HTTP/1.1 ") == 1
    assert len(errors.records) == 1, errors.records
    message, exc = errors.records[0]
    assert exc is None
    assert "POST /m?q=1" in message
    assert f"Content-Length {length}" in message
    assert "gave 5 bytes" in message, message


def test_content_length_mismatch_goes_to_the_ptsevent_wsgi_logger_at_error(serve_app,
                                                                         caplog):
    server = serve_app(mismatch_app("list", 10), validate=False)
    with caplog.at_level(logging.ERROR, logger="ptsevent.wsgi"):
        exchange(server.server_port, req("/m"), timeout=2)
    records = [r for r in caplog.records if r.name == "ptsevent.wsgi"]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert "GET /m" in records[0].getMessage()


def test_file_wrapper_shorter_than_its_content_length_is_logged(serve_app, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    errors = Errors()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "8")])
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    server = serve_app(app, validate=False, error_log=errors)
    raw, closed = exchange(server.server_port, req("/f") + AFTER, timeout=2)
    assert closed and raw.endswith(b"\r\n\r\n12345"), raw
    assert len(errors.records) == 1
    assert "GET /f" in errors.records[0][0] and "Content-Length 8" in errors.records[0][0]


def test_matching_lengths_and_app_errors_log_no_mismatch(serve_app):
    errors = Errors()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        yield b"hello"
        raise RuntimeError("late")

    server = serve_app(after_or(app), validate=False, error_log=errors)
    exchange(server.server_port, req("/x"), timeout=2)
    # The app's error is logged once; no second line about the length.
    assert [type(e) for _, e in errors.records] == [RuntimeError], errors.records

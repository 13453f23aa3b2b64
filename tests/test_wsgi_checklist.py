"""Regression tests for items 1-25 of docs/http-checklist.md (the HTTP server);
each test is named after its item (`test_line07_…` covers item 7).

Every test talks raw bytes to a real ptsevent.wsgi server over loopback. The
client runs in the main tasklet on ptsevent.socket and yields to the hub after
every piece it sends, so that the server really parses each piece on its own:
hostile inputs go whole, one byte at a time, and cut at seeded random points
(tests/_http.SPLITS).

Unless an item says otherwise, a bad request must get exactly one 4xx response
with `Connection: close`, the server must close the socket, and the valid
request pipelined behind it (`GET /after`) must never reach the application.

Each case says which layer rejects it (in its id, after the name):

* ``llhttp``: llhttp itself (strict mode) stops on the input; the error is
  mapped to a status in RequestParser::feed() (reasons ``HPE_*``, "invalid
  method", "invalid Content-Length" ...).
* ``ptsevent``: our own checks in src/core/http/parser.cpp, which llhttp 8.1
  would let through: scan_head_bytes() (bare CR/LF, NUL, obs-fold),
  scan_chunk_size(), append_span() limits, finish_field(), check_head(), the
  trailer checks; or in server.cpp (target percent-escapes, what the app
  returns, timeouts).
* ``both``: llhttp refuses it on its own, and so does our byte scan
  (scan_head_bytes(), which runs over the bytes llhttp choked on too): ours
  usually reports first; which one does can depend on where the pieces are
  cut.

Where the response (or the ValueError wsgi.input raises) carries the reason,
the test checks that it really comes from the layer the case names.
"""

import socket as stdsocket
import struct
import sys
import time

import pytest

import ptsevent
import ptsevent.socket as psocket
import ptsevent.wsgi
from _http import SPLITS, parse_responses, splits
from support import wait_for

#: The valid request pipelined behind every bad one. It asks for the close
#: itself, so that a server that wrongly goes on answers it and closes at once
#: (a fast failure) instead of leaving the test to wait for a timeout.
AFTER = b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
CHUNKED_HEAD = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
MB = 1_000_000


def split_id(how):
    return how if isinstance(how, str) else f"seed{how}"


#: Every split mode, for small inputs.
ALL_SPLITS = pytest.mark.parametrize("how", SPLITS, ids=split_id)
#: For megabyte inputs: one byte at a time would take far too long.
BIG_SPLITS = pytest.mark.parametrize("how", ["whole", 1], ids=split_id)


# --------------------------------------------------------------- the client


def yield_to_server():
    # One hub turn polls the server's socket and runs its deferred work; a
    # second one lets an application tasklet that was woken run.
    ptsevent.sleep(0)
    ptsevent.sleep(0)


def send_split(sock, data, how):
    """Sends `data` in the pieces of `how`, letting the server run after each.
    Stops quietly when the server has closed (it may answer early).

    (_http.exchange sends every piece before the hub gets a turn: the kernel
    then hands the server all of them in one recv, and the split would test
    nothing.)"""
    try:
        for piece in splits(data, how):
            sock.sendall(piece)
            yield_to_server()
    except OSError:
        pass


def read_to_close(sock, timeout=3.0):
    """Reads until the server closes, resets, or `timeout` seconds pass with
    nothing new. Returns (bytes, closed_by_server)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def read_until(sock, marker, timeout=3.0):
    """Reads until `marker` has arrived (or EOF / timeout); returns the bytes."""
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def answered(sock):
    """Whether the server has sent something (or closed), without waiting."""
    sock.settimeout(0)
    try:
        sock.recv(1, stdsocket.MSG_PEEK)
        return True
    except BlockingIOError:
        return False
    finally:
        sock.settimeout(3.0)


def connect(port, timeout=3.0):
    return psocket.create_connection(("127.0.0.1", port), timeout=timeout)


def talk(port, data, how="whole", timeout=3.0, shut_write=False):
    """One connection: sends `data` split by `how`, then reads until the
    server closes. Returns (response bytes, closed_by_server)."""
    sock = connect(port, timeout)
    try:
        send_split(sock, data, how)
        if shut_write:
            sock.shutdown(stdsocket.SHUT_WR)
        return read_to_close(sock, timeout)
    finally:
        sock.close()


def reset_close(sock):
    """Closes with an RST instead of a FIN."""
    sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ---------------------------------------------------------------- the apps


def read_body(environ):
    inp = environ["wsgi.input"]
    parts = []
    while True:
        chunk = inp.read(65536)  # one argument: what wsgiref.validate wants
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


class Recorder:
    """A WSGI app that records every request it is called for.

    read: True reads the whole body, False none of it, an int that many
    bytes. The response body is "<PATH_INFO>:<body read>".
    """

    def __init__(self, read=True):
        self.read = read
        self.seen = []  # PATH_INFO of every call, in order
        self.environs = []  # the str items of each environ
        self.bodies = []
        self.errors = []  # str() of what wsgi.input raised

    def __call__(self, environ, start_response):
        self.seen.append(environ["PATH_INFO"])
        self.environs.append({k: v for k, v in environ.items() if isinstance(v, str)})
        body = b""
        try:
            if self.read is True:
                body = read_body(environ)
            elif self.read:
                body = environ["wsgi.input"].read(self.read)
        except (ValueError, OSError) as e:
            self.errors.append(str(e))
            raise
        self.bodies.append(body)
        # Trailers are never merged into the environ, not even after the
        # body has been read.
        self.environs[-1]["after-read keys"] = ",".join(sorted(environ))
        out = environ["PATH_INFO"].encode("latin-1") + b":" + body
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(out)))])
        return [out]


# ------------------------------------------------------------------ checks

#: Error reasons of RequestParser::feed() that come from an llhttp error code.
LLHTTP_REASONS = {"invalid method", "invalid request target", "invalid Content-Length",
                  "invalid Transfer-Encoding", "invalid chunk size"}


def reason_layer(reason):
    """Which layer produced an error reason; None when the text does not tell
    ("HTTP version not supported" is both llhttp's HPE_INVALID_VERSION and
    check_head())."""
    if not reason or reason == "HTTP version not supported":
        return None
    if reason.startswith("HPE_") or reason in LLHTTP_REASONS:
        return "llhttp"
    return "ptsevent"


def error_reason(body, app):
    """The parser's reason for an error: the text after the status in the
    server's own error body ("400 Bad Request: <reason>"), or, for an error in
    the request body, the message of the ValueError wsgi.input raised."""
    text = body.decode("utf-8", "replace").strip()
    if ": " in text:
        return text.split(": ", 1)[1]
    for message in app.errors:
        if message.startswith("malformed request body: "):
            return message[len("malformed request body: "):]
    return None


def check_layer(layer, body, app):
    found = reason_layer(error_reason(body, app))
    if found is None:
        return
    allowed = {"llhttp", "ptsevent"} if layer == "both" else {layer}
    assert found in allowed, (
        f"rejected by {found} ({error_reason(body, app)!r}), the case says {layer}")


def check_rejected(out, closed, app, status, layer, reached=()):
    """Exactly one error response with Connection: close, the socket closed by
    the server, and the app called for nothing but `reached` (the bad request
    itself when its head was valid and the error is in its body)."""
    statuses = status if isinstance(status, tuple) else (status,)
    responses = parse_responses(out)
    assert [r[0] for r in responses] in [[s] for s in statuses], (out[:300], app.seen)
    _, headers, body = responses[0]
    assert headers.get("connection") == "close", headers
    assert closed, "the server did not close the connection"
    assert "/after" not in app.seen
    assert app.seen == list(reached), app.seen
    check_layer(layer, body, app)
    return responses[0]


def check_served(out, app, paths):
    """Every request answered 200, in order, by the app."""
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [200] * len(paths), out[:500]
    assert app.seen == list(paths)
    assert [r[2].split(b":", 1)[0].decode() for r in responses] == list(paths)
    return responses


def reject_case(case, status, layer, name):
    return pytest.param(case, status, layer, id=f"{name}[{layer}]")


def run_rejected(serve_app, data, how, status, layer, reached=(), read=True, **options):
    app = Recorder(read=read)
    server = serve_app(app, error_log=lambda message, exc: None, **options)
    out, closed = talk(server.server_port, data + AFTER, how, timeout=1.0)
    return check_rejected(out, closed, app, status, layer, reached)


# ============================================== 1-7: framing and smuggling


def post(*fields, body=b"", version=b"1.1"):
    head = b"POST /p HTTP/" + version + b"\r\n"
    if version == b"1.1":
        head += b"Host: x\r\n"
    return head + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


LINE01 = [
    reject_case(post(b"Content-Length: 5", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
                400, "llhttp", "CL-then-TE"),
    reject_case(post(b"Transfer-Encoding: chunked", b"Content-Length: 5", body=b"0\r\n\r\n"),
                400, "llhttp", "TE-then-CL"),
    reject_case(post(b"Content-Length: 0", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
                400, "llhttp", "CL0-then-TE"),
    reject_case(post(b"Transfer-Encoding: chunked", b"Content-Length: 0", body=b"0\r\n\r\n"),
                400, "llhttp", "TE-then-CL0"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE01)
def test_line01_content_length_and_transfer_encoding(serve_app, data, how, status, layer):
    run_rejected(serve_app, data, how, status, layer)


LINE02 = [
    reject_case(post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"),
                400, "llhttp", "duplicate-different"),
    reject_case(post(b"Content-Length: 5", b"Content-Length: 5", body=b"hello"),
                400, "llhttp", "duplicate-same"),
    reject_case(post(b"Content-Length: 5, 5", body=b"hello"), 400, "llhttp", "list-form"),
    reject_case(post(b"Content-Length: ", body=b"hello"), 400, "llhttp", "empty"),
    reject_case(post(b"Content-Length: +5", body=b"hello"), 400, "llhttp", "plus-sign"),
    reject_case(post(b"Content-Length: -5", body=b"hello"), 400, "llhttp", "minus-sign"),
    reject_case(post(b"Content-Length: 0x5", body=b"hello"), 400, "llhttp", "hex-0x"),
    reject_case(post(b"Content-Length: 1_0", body=b"helloworld"), 400, "llhttp", "underscore"),
    reject_case(post(b"Content-Length: 1 0", body=b"helloworld"), 400, "llhttp", "inner-space"),
    reject_case(post(b"Content-Length: 99999999999999999999", body=b"hello"),
                400, "llhttp", "overflow-20-digits"),
    # llhttp reads leading zeros as long as the value fits in 64 bits; more
    # than 18 digits is refused in check_head().
    reject_case(post(b"Content-Length: 0000000000000000005", body=b"hello"),
                400, "ptsevent", "19-digits-leading-zeros"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE02)
def test_line02_bad_content_length(serve_app, data, how, status, layer):
    run_rejected(serve_app, data, how, status, layer)


def te(value, version=b"1.1", name=b"Transfer-Encoding"):
    return post(name + b": " + value, body=b"0\r\n\r\n", version=version)


LINE03 = [
    reject_case(te(b"chunked, gzip"), 400, "llhttp", "chunked-not-final"),
    reject_case(te(b"gzip"), 501, "ptsevent", "gzip-not-implemented"),
    reject_case(te(b"gzip, chunked"), 501, "ptsevent", "gzip-then-chunked"),
    reject_case(te(b"chunked, chunked"), 400, "llhttp", "chunked-twice-list"),
    reject_case(post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked",
                     body=b"0\r\n\r\n"), 400, "llhttp", "chunked-twice-fields"),
    reject_case(te(b"foo"), 501, "ptsevent", "unknown-coding"),
    reject_case(te(b"xchunked"), 501, "ptsevent", "unknown-coding-xchunked"),
    reject_case(te(b'"chunked"'), 400, "ptsevent", "quoted"),
    reject_case(te(b"chunked;"), 400, "ptsevent", "stray-semicolon"),
    reject_case(te(b"chunked;q=1"), 400, "ptsevent", "parameter"),
    reject_case(te(b",chunked"), 400, "ptsevent", "leading-comma"),
    reject_case(te(b"chunked,"), 400, "llhttp", "trailing-comma"),
    reject_case(te(b""), 400, "ptsevent", "empty"),
    reject_case(te(b"identity"), 501, "ptsevent", "identity"),
    reject_case(te(b"chunked x"), 400, "ptsevent", "stray-word"),
    reject_case(te(b"\x0bchunked"), 400, "llhttp", "stray-vtab"),
    reject_case(te(b"chunked", version=b"1.0"), 400, "ptsevent", "on-HTTP-1.0"),
    reject_case(te(b"chunked", name=b"Transfer-Encoding "), 400, "llhttp", "space-before-colon"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE03)
def test_line03_bad_transfer_encoding(serve_app, data, how, status, layer):
    run_rejected(serve_app, data, how, status, layer)


@ALL_SPLITS
@pytest.mark.parametrize("value", [b"chunked", b"CHUNKED", b"chunked ", b"  Chunked"],
                         ids=["chunked", "upper-case", "trailing-space", "leading-spaces"])
def test_line03_valid_chunked(serve_app, value, how):
    app = Recorder()
    server = serve_app(app)
    data = post(b"Transfer-Encoding: " + value, body=b"5\r\nhello\r\n0\r\n\r\n")
    out, closed = talk(server.server_port, data + AFTER, how)
    check_served(out, app, ["/p", "/after"])
    assert app.bodies[0] == b"hello"


@ALL_SPLITS
@pytest.mark.parametrize("field", [b"Transfer_Encoding: chunked", b"Transfer_Encoding: gzip"],
                         ids=["chunked", "gzip"])
def test_line03_transfer_underscore_encoding_is_not_framing(serve_app, field, how):
    # Not Transfer-Encoding: the request has no body (item 7), the field is
    # dropped from the environ (item 15), and the next request is parsed
    # right after the head.
    app = Recorder()
    server = serve_app(app)
    out, closed = talk(server.server_port, post(field) + AFTER, how)
    check_served(out, app, ["/p", "/after"])
    assert closed
    assert app.bodies[0] == b""
    assert "HTTP_TRANSFER_ENCODING" not in app.environs[0]


def chunked(body):
    return CHUNKED_HEAD + body


LINE04 = [
    reject_case(chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400, "llhttp", "size-0x"),
    reject_case(chunked(b"+5\r\nhello\r\n0\r\n\r\n"), 400, "llhttp", "size-plus"),
    reject_case(chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400, "llhttp", "size-minus"),
    reject_case(chunked(b"1_0\r\nhelloworldhello\r\n0\r\n\r\n"), 400, "llhttp", "size-underscore"),
    reject_case(chunked(b" 5\r\nhello\r\n0\r\n\r\n"), 400, "llhttp", "size-leading-space"),
    reject_case(chunked(b"5 \r\nhello\r\n0\r\n\r\n"), 400, "llhttp", "size-trailing-space"),
    reject_case(chunked(b"1 0\r\nhelloworldhello\r\n0\r\n\r\n"), 400, "llhttp", "size-inner-space"),
    reject_case(chunked(b"5\x00\r\nhello\r\n0\r\n\r\n"), 400, "llhttp", "size-NUL"),
    reject_case(chunked(b"\r\nhello\r\n0\r\n\r\n"), 400, "llhttp", "size-empty"),
    # llhttp takes any number of leading zeros; scan_chunk_size() stops at 16.
    reject_case(chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
                400, "ptsevent", "size-17-digits"),
    reject_case(chunked(b"5\r\nhello\r\n00000000000000000\r\n\r\n"),
                400, "ptsevent", "last-size-17-digits"),
    reject_case(chunked(b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
                400, "ptsevent", "size-overflow"),
    reject_case(chunked(b"5;name=va\rlue\r\nhello\r\n0\r\n\r\n"), 400, "llhttp", "ext-bare-CR"),
    reject_case(chunked(b"5;name=va\nlue\r\nhello\r\n0\r\n\r\n"), 400, "llhttp", "ext-bare-LF"),
    reject_case(chunked(b'5;name="va\rlue"\r\nhello\r\n0\r\n\r\n'),
                400, "llhttp", "ext-quoted-bare-CR"),
    reject_case(chunked(b'5;name="va\nlue"\r\nhello\r\n0\r\n\r\n'),
                400, "llhttp", "ext-quoted-bare-LF"),
    reject_case(chunked(b"5;na me=value\r\nhello\r\n0\r\n\r\n"), 400, "llhttp", "ext-not-token"),
    reject_case(chunked(b"5;name=\x01\r\nhello\r\n0\r\n\r\n"), 400, "llhttp", "ext-control-char"),
    reject_case(chunked(b'5;name="value\r\nhello\r\n0\r\n\r\n'),
                400, "llhttp", "ext-unterminated-quote"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE04)
def test_line04_bad_chunk_size_or_extension(serve_app, data, how, status, layer):
    # The head is valid: the app is called and the error surfaces when it
    # reads wsgi.input.
    run_rejected(serve_app, data, how, status, layer, reached=["/c"])


@ALL_SPLITS
@pytest.mark.parametrize("body", [
    pytest.param(b"0000000000000005\r\nhello\r\n0\r\n\r\n", id="16-digit-size"),
    pytest.param(b"5;name=value\r\nhello\r\n0\r\n\r\n", id="token-extension"),
    pytest.param(b'5;name="va lue";x\r\nhello\r\n0;y=z\r\n\r\n', id="quoted-extension"),
    pytest.param(b"5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n", id="hex-size"),
])
def test_line04_valid_chunk_sizes_and_extensions(serve_app, body, how):
    app = Recorder()
    server = serve_app(app)
    out, closed = talk(server.server_port, chunked(body) + AFTER, how)
    check_served(out, app, ["/c", "/after"])
    assert app.bodies[0] in (b"hello", b"hello0123456789")


LINE05 = [
    reject_case(chunked(b"5\r\nhelloXX0\r\n\r\n"), 400, "llhttp", "data-not-followed-by-CRLF"),
    reject_case(chunked(b"5\r\nhelloworld\r\n0\r\n\r\n"), 400, "llhttp", "data-longer-than-size"),
    reject_case(chunked(b"5\r\nhello\n0\r\n\r\n"), 400, "llhttp", "data-ends-bare-LF"),
    reject_case(chunked(b"5\r\nhello\r0\r\n\r\n"), 400, "llhttp", "data-ends-bare-CR"),
    reject_case(chunked(b"5\r\nhello\n\r\n0\r\n\r\n"), 400, "llhttp", "data-ends-LF-CRLF"),
    reject_case(chunked(b"5\nhello\r\n0\r\n\r\n"), 400, "llhttp", "size-line-bare-LF"),
    reject_case(chunked(b"5\rhello\r\n0\r\n\r\n"), 400, "llhttp", "size-line-bare-CR"),
    reject_case(chunked(b"5\r\nhello\r\n0\n\r\n"), 400, "llhttp", "last-size-line-bare-LF"),
    reject_case(chunked(b"5\r\nhello\r\n0;a=b\n\r\n"), 400, "llhttp", "last-ext-bare-LF"),
    reject_case(chunked(b"5\r\nhello\r\n0\r\r\n"), 400, "llhttp", "last-size-line-bare-CR"),
    # llhttp 8.1 takes a bare LF as the end of the (empty) trailer section.
    reject_case(chunked(b"5\r\nhello\r\n0\r\n\n"), 400, "ptsevent", "final-line-bare-LF"),
    reject_case(chunked(b"5\r\nhello\r\n0\r\nX-T: v\r\n\n"),
                400, "ptsevent", "final-line-after-trailer-bare-LF"),
    reject_case(chunked(b"5\r\nhello\r\n0\r\nX-T: v\nY: w\r\n\r\n"),
                400, "both", "trailer-line-bare-LF"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE05)
def test_line05_chunk_framing_needs_crlf(serve_app, data, how, status, layer):
    run_rejected(serve_app, data, how, status, layer, reached=["/c"])


# The trailer section is scanned like the head (scan_head_bytes(): bare CR/LF,
# NUL, obs-fold), on top of llhttp's own checks.
def trailer(*lines):
    return chunked(b"5\r\nhello\r\n0\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n")


LINE06 = [
    reject_case(trailer(b"Content-Length: 5"), 400, "ptsevent", "forbidden-Content-Length"),
    reject_case(trailer(b"content-length: 0"), 400, "ptsevent", "forbidden-content-length-lower"),
    reject_case(trailer(b"Transfer-Encoding: chunked"), 400, "llhttp",
                "forbidden-Transfer-Encoding"),
    reject_case(trailer(b"Host: y"), 400, "ptsevent", "forbidden-Host"),
    reject_case(trailer(b"X T: v"), 400, "llhttp", "name-with-space"),
    reject_case(trailer(b"X-T : v"), 400, "llhttp", "space-before-colon"),
    reject_case(trailer(b"XT"), 400, "llhttp", "no-colon"),
    reject_case(trailer(b" X-T: v"), 400, "both", "whitespace-before-first"),
    reject_case(trailer(b"X-T: v\rw"), 400, "both", "bare-CR-in-value"),
    reject_case(trailer(b"X-T: v\x01w"), 400, "llhttp", "control-char"),
    reject_case(trailer(b"X-T: v\x00w"), 400, "both", "NUL"),
    reject_case(trailer(b"X-T: a\x7fb"), 400, "llhttp", "DEL"),
    # Accepted by llhttp 8.1 (as in the head, where our checks catch them).
    reject_case(trailer(b"X-T: v", b" w"), 400, "ptsevent", "obs-fold-space"),
    reject_case(trailer(b"X-T: v", b"\tw"), 400, "ptsevent", "obs-fold-tab"),
    reject_case(trailer(b": v"), 400, "ptsevent", "empty-name"),
    reject_case(trailer(b"X-T: " + b"a" * 9000), 431, "ptsevent", "over-max_trailer_block"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE06)
def test_line06_bad_trailers(serve_app, data, how, status, layer):
    run_rejected(serve_app, data, how, status, layer, reached=["/c"])


@ALL_SPLITS
@pytest.mark.parametrize("lines", [
    pytest.param([b"X-T: v"], id="one-field"),
    pytest.param([b"X-T: GET /smuggled HTTP/1.1", b"X-U: Host: x"], id="request-looking-values"),
    pytest.param([b"X-Forwarded-For: 10.0.0.1", b"Cookie: a=b"], id="headers-of-the-environ"),
])
def test_line06_trailers_consumed_and_never_in_environ(serve_app, lines, how):
    app = Recorder()
    server = serve_app(app)
    out, closed = talk(server.server_port, trailer(*lines) + AFTER, how)
    check_served(out, app, ["/c", "/after"])
    assert app.bodies[0] == b"hello"
    keys = app.environs[0]["after-read keys"].split(",")
    assert not {"HTTP_X_T", "HTTP_X_U", "HTTP_X_FORWARDED_FOR", "HTTP_COOKIE"} & set(keys)


@ALL_SPLITS
@pytest.mark.parametrize("head", [
    pytest.param(b"POST /p HTTP/1.1\r\nHost: x\r\n\r\n", id="POST"),
    pytest.param(b"PUT /p HTTP/1.1\r\nHost: x\r\n\r\n", id="PUT"),
    pytest.param(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n", id="GET"),
    pytest.param(b"POST /p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", id="POST-HTTP-1.0"),
])
def test_line07_no_length_means_empty_body(serve_app, head, how):
    app = Recorder()
    server = serve_app(app)
    out, closed = talk(server.server_port, head + AFTER, how)
    check_served(out, app, ["/p", "/after"])
    assert app.bodies[0] == b""
    assert app.environs[0].get("CONTENT_LENGTH", "") in ("", "0")


@ALL_SPLITS
def test_line07_bytes_after_a_bodiless_head_are_the_next_request(serve_app, how):
    # "hello" is not a body: it is parsed as the start of the next request
    # ("helloGET" is no method), which is rejected [llhttp].
    app = Recorder()
    server = serve_app(app, error_log=lambda message, exc: None)
    data = b"POST /p HTTP/1.1\r\nHost: x\r\n\r\nhello" + AFTER
    out, closed = talk(server.server_port, data, how)
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [200, 400]
    assert responses[0][2] == b"/p:"
    assert responses[1][1]["connection"] == "close"
    assert closed
    assert app.seen == ["/p"]
    check_layer("llhttp", responses[1][2], app)


# ================================================ 8-10: pipelining, bodies

GET1 = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
PIPELINE = [
    (b"/1", GET1, b""),
    (b"/2", b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
    (b"/3", b"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;e=1\r\nde\r\n0\r\nX-T: v\r\n\r\n", b"abcde"),
    (b"/4", b"GET /4?q=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", b""),
    (b"/5", b"DELETE /5 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b""),
]


@ALL_SPLITS
def test_line08_pipelined_requests_answered_in_order(serve_app, how):
    app = Recorder()
    server = serve_app(app)
    data = b"".join(request for _, request, _ in PIPELINE) + AFTER
    out, closed = talk(server.server_port, data, how)
    responses = check_served(out, app, [p.decode() for p, _, _ in PIPELINE] + ["/after"])
    assert [r[2] for r in responses] == [p + b":" + body for p, _, body in PIPELINE] + [b"/after:"]
    assert closed


@ALL_SPLITS
def test_line08_many_pipelined_requests(serve_app, how):
    app = Recorder()
    server = serve_app(app)
    paths = [f"/{i}" for i in range(50)]
    data = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in paths) + AFTER
    out, closed = talk(server.server_port, data, how)
    check_served(out, app, paths + ["/after"])
    assert closed


LINE08_BAD = [
    reject_case((b"GET /2 HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", ()), 400, "llhttp",
                "bad-head"),
    reject_case((b"GET /2 HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", ()), 400, "ptsevent",
                "obs-fold-head"),
    reject_case((b"GET /2 HTTP/1.1\r\n\r\n", ()), 400, "ptsevent", "no-Host"),
    reject_case((b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n", ()), 413,
                "ptsevent", "body-too-large"),
    reject_case((chunked(b"5\r\nhelloXX0\r\n\r\n"), ("/c",)), 400, "llhttp", "bad-chunk"),
    reject_case((chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n"), ("/c",)), 400,
                "ptsevent", "long-chunk-size"),
]


@ALL_SPLITS
@pytest.mark.parametrize("bad, status, layer", LINE08_BAD)
def test_line08_nothing_after_an_error_is_executed(serve_app, bad, how, status, layer):
    bad, reached = bad
    app = Recorder()
    server = serve_app(app, max_body=64, error_log=lambda message, exc: None)
    out, closed = talk(server.server_port, GET1 + bad + AFTER, how, timeout=1.0)
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [200, status], out[:400]
    assert responses[0][2] == b"/1:"
    assert responses[1][1]["connection"] == "close"
    assert closed
    assert app.seen == ["/1", *reached]
    check_layer(layer, responses[1][2], app)


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def with_length(body):
    return (b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)


def as_chunks(body):
    return (b"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")


@ALL_SPLITS
@pytest.mark.parametrize("data, read, options, reused", [
    pytest.param(with_length(SMUGGLED), False, {}, True, id="unread-drained"),
    pytest.param(with_length(SMUGGLED), 5, {}, True, id="partly-read-drained"),
    pytest.param(with_length(SMUGGLED * 2), False, {"max_drain": 16}, False,
                 id="unread-over-max_drain-closed"),
    pytest.param(as_chunks(SMUGGLED), False, {}, False, id="chunked-unread-closed"),
    # Closed, unless the whole chunked body had already arrived and been
    # decoded when the app read (then the rest of it is simply dropped).
    pytest.param(as_chunks(SMUGGLED), 5, {}, None, id="chunked-partly-read"),
])
def test_line09_unread_body_is_never_a_request(serve_app, data, how, read, options, reused):
    app = Recorder(read=read)
    server = serve_app(app, **options)
    out, closed = talk(server.server_port, data + AFTER, how, timeout=1.0)
    responses = parse_responses(out)
    assert closed
    assert "/smuggled" not in app.seen
    if reused is None:
        reused = len(responses) == 2
    if reused:  # drained: the connection goes on with the next request
        assert [r[0] for r in responses] == [200, 200]
        assert app.seen == ["/u", "/after"]
    else:  # too much (or unbounded) to drain: closed after the response
        assert [r[0] for r in responses] == [200]
        assert app.seen == ["/u"]
    assert responses[0][2] == b"/u:" + (SMUGGLED[:read] if read else b"")


EXPECT_HEAD = (b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n"
               b"Connection: close\r\n\r\n")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@ALL_SPLITS
def test_line10_continue_when_the_app_reads(serve_app, how):
    app = Recorder()
    server = serve_app(app)
    sock = connect(server.server_port)
    try:
        send_split(sock, EXPECT_HEAD, how)
        first = read_until(sock, b"\r\n\r\n")
        assert first == CONTINUE  # nothing else before the body is sent
        send_split(sock, b"hello", how)
        rest, closed = read_to_close(sock)
    finally:
        sock.close()
    responses = parse_responses(first + rest)
    assert [r[0] for r in responses] == [100, 200]
    assert responses[1][2] == b"/e:hello"
    assert closed


@ALL_SPLITS
def test_line10_no_continue_when_the_app_does_not_read(serve_app, how):
    # The client waits for 100 Continue that never comes; the final answer
    # arrives instead, and the connection (whose body was never sent) is
    # closed (item 9).
    app = Recorder(read=False)
    server = serve_app(app)
    out, closed = talk(server.server_port, EXPECT_HEAD.replace(b"Connection: close\r\n", b""),
                       how, timeout=1.0)
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [200]
    assert closed
    assert app.seen == ["/e"]


@ALL_SPLITS
def test_line10_body_sent_anyway_is_not_a_request(serve_app, how):
    # A client that does not wait for 100 Continue sends the body at once;
    # the app does not read it: it is drained or the connection closed, and it
    # is never parsed as a request.
    app = Recorder(read=False)
    server = serve_app(app)
    head = EXPECT_HEAD.replace(b"Connection: close\r\n", b"").replace(
        b"Content-Length: 5", b"Content-Length: %d" % len(SMUGGLED))
    out, closed = talk(server.server_port, head + SMUGGLED + AFTER, how, timeout=1.0)
    responses = parse_responses(out)
    assert 100 not in [r[0] for r in responses]
    assert [r[0] for r in responses] in ([200], [200, 200])
    assert app.seen == ["/e", "/after"][:len(responses)]
    assert closed


def early_answer_app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"early;")  # the final status is on the wire now
    body = environ["wsgi.input"].read(5)
    return [b"late:" + body]


@ALL_SPLITS
def test_line10_no_continue_after_the_final_status(serve_app, how):
    server = serve_app(early_answer_app)
    sock = connect(server.server_port)
    try:
        send_split(sock, EXPECT_HEAD, how)
        first = read_until(sock, b"early;")
        assert first.startswith(b"HTTP/1.1 200 ")
        send_split(sock, b"hello", how)
        rest, closed = read_to_close(sock)
    finally:
        sock.close()
    out = first + rest
    assert b"100 Continue" not in out
    assert out.count(b"HTTP/1.1 ") == 1
    responses = parse_responses(out)
    assert [(r[0], r[2]) for r in responses] == [(200, b"early;late:hello")]
    assert closed


@ALL_SPLITS
def test_line10_no_continue_on_http10(serve_app, how):
    app = Recorder()
    server = serve_app(app)
    data = b"POST /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"
    out, closed = talk(server.server_port, data, how)
    assert b"100 Continue" not in out
    assert [(r[0], r[2]) for r in parse_responses(out)] == [(200, b"/e:hello")]
    assert closed


# ========================================================= 11-16: head syntax


def head(*lines, request_line=b"GET / HTTP/1.1"):
    return request_line + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


# llhttp 8.1 takes a bare LF as a line end; everything else here it refuses
# too ("both"), but scan_head_bytes() sees the byte first and reports it.
LINE11 = [
    reject_case(b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400, "ptsevent", "bare-LF-ends-request-line"),
    reject_case(b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400, "both",
                "bare-LF-ends-header-line"),
    reject_case(b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400, "ptsevent", "bare-LF-ends-head"),
    reject_case(b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400, "both", "bare-CR-ends-request-line"),
    reject_case(b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400, "both",
                "bare-CR-ends-header-line"),
    reject_case(b"GET / HTTP/1.1\r\nHost: x\r\n\rX", 400, "both", "bare-CR-ends-head"),
    reject_case(head(b"Host: x", b"X\rY: z"), 400, "both", "CR-in-name"),
    reject_case(head(b"Host: x", b"X: a\rb"), 400, "both", "CR-in-value"),
    reject_case(head(b"Host: x", b"X: a\x00b"), 400, "both", "NUL-in-value"),
    reject_case(head(b"Host: x", b"X\x00: ab"), 400, "both", "NUL-in-name"),
    reject_case(head(b"Host: x", request_line=b"GET /a\nb HTTP/1.1"), 400, "both",
                "LF-in-target"),
    reject_case(head(b"Host: x", request_line=b"GE\nT / HTTP/1.1"), 400, "both", "LF-in-method"),
    reject_case(head(b"Host: x", request_line=b"GET / HTTP/1.1\n"), 400, "ptsevent",
                "LF-before-CRLF"),
    reject_case(head(b"Host: x", request_line=b"GET /a\rb HTTP/1.1"), 400, "both",
                "CR-in-target"),
    reject_case(head(b"Host: x", request_line=b"GET /a\x00b HTTP/1.1"), 400, "both",
                "NUL-in-target"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE11)
def test_line11_bare_cr_lf_and_nul(serve_app, data, how, status, layer):
    run_rejected(serve_app, data, how, status, layer)


# llhttp 8.1 accepts obs-fold; whitespace before the first field it refuses
# too.
LINE12 = [
    reject_case(head(b"Host: x", b"X: a", b" b"), 400, "ptsevent", "obs-fold-space"),
    reject_case(head(b"Host: x", b"X: a", b"\tb"), 400, "ptsevent", "obs-fold-tab"),
    reject_case(head(b"X: a", b" Host: x"), 400, "ptsevent", "obs-fold-continuing-into-Host"),
    reject_case(head(b" Host: x"), 400, "both", "space-before-first-header"),
    reject_case(head(b"\tHost: x"), 400, "both", "tab-before-first-header"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE12)
def test_line12_obs_fold_and_leading_whitespace(serve_app, data, how, status, layer):
    run_rejected(serve_app, data, how, status, layer)


LINE13 = [
    reject_case(head(b"Host: x", b"X Y: z"), 400, "llhttp", "space-in-name"),
    reject_case(head(b"Host: x", b"X(Y: z"), 400, "llhttp", "paren-in-name"),
    reject_case(head(b"Host: x", b"X@Y: z"), 400, "llhttp", "at-in-name"),
    reject_case(head(b"Host: x", b"X/Y: z"), 400, "llhttp", "slash-in-name"),
    reject_case(head(b"Host: x", b"X\xe9: z"), 400, "llhttp", "8-bit-in-name"),
    reject_case(head(b"Host: x", b": z"), 400, "ptsevent", "empty-name"),
    reject_case(head(b"Host : x"), 400, "llhttp", "space-before-colon"),
    reject_case(head(b"Host\t: x"), 400, "llhttp", "tab-before-colon"),
    reject_case(head(b"Host: x", b"NoColon"), 400, "llhttp", "no-colon-last"),
    reject_case(head(b"NoColon", b"Host: x"), 400, "llhttp", "no-colon-first"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE13)
def test_line13_header_names(serve_app, data, how, status, layer):
    run_rejected(serve_app, data, how, status, layer)


LINE14 = [
    reject_case(head(b"Host: x", b"X: a" + bytes([c]) + b"b"), 400, "llhttp", f"0x{c:02x}")
    for c in (0x01, 0x08, 0x0B, 0x0C, 0x1B, 0x1F, 0x7F)
] + [
    reject_case(head(b"Host: x", b"X: \x0bab"), 400, "llhttp", "leading-0x0b"),
    reject_case(head(b"Host: x", b"X: ab\x0b"), 400, "llhttp", "trailing-0x0b"),
    reject_case(head(b"Host: x", b"X: ab\x0c "), 400, "llhttp", "trailing-0x0c-space"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE14)
def test_line14_control_characters_in_values(serve_app, data, how, status, layer):
    run_rejected(serve_app, data, how, status, layer)


@ALL_SPLITS
@pytest.mark.parametrize("raw, value", [
    pytest.param(b" \t a \t b \t ", "a \t b", id="spaces-and-tabs-trimmed"),
    pytest.param(b"a\x80\xffb", "a\x80\xffb", id="obs-text-kept"),
    pytest.param(b"\ta\t", "a", id="tabs-only"),
    pytest.param(b"", "", id="empty"),
])
def test_line14_only_spaces_and_tabs_trimmed(serve_app, raw, value, how):
    app = Recorder()
    server = serve_app(app)
    out, closed = talk(server.server_port, head(b"Host: x", b"X-V:" + raw) + AFTER, how)
    check_served(out, app, ["/", "/after"])
    assert app.environs[0]["HTTP_X_V"] == value


@ALL_SPLITS
@pytest.mark.parametrize("fields, expected", [
    pytest.param([b"X_Foo: b"], None, id="underscore-only"),
    pytest.param([b"X-Foo: a", b"X_Foo: b"], "a", id="dash-then-underscore"),
    pytest.param([b"X_Foo: b", b"X-Foo: a"], "a", id="underscore-then-dash"),
    pytest.param([b"x_foo: b", b"X-FOO: a", b"X_FOO: c"], "a", id="mixed-case"),
])
def test_line15_underscore_names_dropped(serve_app, fields, expected, how):
    app = Recorder()
    server = serve_app(app)
    out, closed = talk(server.server_port, head(b"Host: x", *fields) + AFTER, how)
    check_served(out, app, ["/", "/after"])
    assert app.environs[0].get("HTTP_X_FOO") == expected


@ALL_SPLITS
@pytest.mark.parametrize("field", [b"Content_Length: 5", b"Content_Type: text/evil"],
                         ids=["Content_Length", "Content_Type"])
def test_line15_underscore_content_fields_dropped(serve_app, field, how):
    # Neither framing (no body: the next request follows the head) nor the
    # CONTENT_* keys of the environ.
    app = Recorder()
    server = serve_app(app)
    out, closed = talk(server.server_port, post(field, b"Content-Type: text/plain") + AFTER,
                       how)
    check_served(out, app, ["/p", "/after"])
    env = app.environs[0]
    assert app.bodies[0] == b""
    assert env.get("CONTENT_LENGTH", "") in ("", "0")
    assert env["CONTENT_TYPE"] == "text/plain"
    assert not any(k.startswith("HTTP_CONTENT") for k in env)


def test_line15_documented():
    doc = ptsevent.wsgi.__doc__
    assert "_" in doc and "dropped" in doc and "HTTP_X_FORWARDED_FOR" in doc


LINE16 = [
    reject_case(head(b"Host: x", request_line=b"get / HTTP/1.1"), (400, 501), "llhttp",
                "lower-case-method"),
    reject_case(head(b"Host: x", request_line=b"G(T / HTTP/1.1"), 400, "llhttp",
                "method-not-a-token"),
    reject_case(head(b"Host: x", request_line=b"G\x7fT / HTTP/1.1"), 400, "llhttp",
                "method-with-DEL"),
    reject_case(head(b"Host: x", request_line=b"FOO / HTTP/1.1"), (400, 501), "llhttp",
                "unknown-method"),
    reject_case(head(b"Host: x", request_line=b" / HTTP/1.1"), 400, "llhttp", "empty-method"),
    # llhttp 8.1 accepts 0.9 and 2.0: check_head() answers 505.
    reject_case(head(b"Host: x", request_line=b"GET / HTTP/0.9"), 505, "ptsevent", "HTTP-0.9"),
    reject_case(head(b"Host: x", request_line=b"GET / HTTP/2.0"), 505, "ptsevent", "HTTP-2.0"),
    reject_case(head(b"Host: x", request_line=b"GET /"), 505, "ptsevent", "no-version"),
    reject_case(head(b"Host: x", request_line=b"GET / HTTP/1.2"), 505, "llhttp", "HTTP-1.2"),
    reject_case(head(b"Host: x", request_line=b"GET / HTTP/3.0"), 505, "llhttp", "HTTP-3.0"),
    reject_case(head(b"Host: x", request_line=b"GET / HTTP/1.10"), 505, "llhttp", "HTTP-1.10"),
    reject_case(head(b"Host: x", request_line=b"GET / HTTP/1"), 505, "llhttp", "HTTP-1"),
    reject_case(head(b"Host: x", request_line=b"GET / HTTP/11"), 505, "llhttp", "HTTP-11"),
    reject_case(head(b"Host: x", request_line=b"GET / http/1.1"), (400, 505), "llhttp",
                "lower-case-http"),
    reject_case(head(b"Host: x", request_line=b"GET * HTTP/1.1"), 400, "ptsevent",
                "asterisk-form-on-GET"),
    reject_case(head(b"Host: x", request_line=b"GET example.com:80 HTTP/1.1"), 400, "llhttp",
                "authority-form-on-GET"),
    reject_case(head(b"Host: x", request_line=b"CONNECT example.com:80 HTTP/1.1"), 501,
                "ptsevent", "CONNECT"),
    reject_case(head(b"Host: x", request_line=b"GET foo HTTP/1.1"), 400, "llhttp",
                "relative-target"),
    reject_case(head(b"Host: x", request_line=b"GET 1ttp://x/ HTTP/1.1"), 400, "llhttp",
                "absolute-form-bad-scheme"),
    # split_target() in server.cpp (the response carries no reason).
    reject_case(head(b"Host: x", request_line=b"GET /a%zz HTTP/1.1"), 400, "ptsevent",
                "bad-percent-escape"),
    reject_case(head(), 400, "ptsevent", "HTTP-1.1-without-Host"),
    reject_case(head(b"Host: x", b"Host: y"), 400, "ptsevent", "HTTP-1.1-two-Hosts"),
    reject_case(head(b"Host: x", b"host: x"), 400, "ptsevent", "HTTP-1.1-two-Hosts-same"),
    reject_case(head(b"Host: x", b"Host: y", request_line=b"GET / HTTP/1.0"), 400, "ptsevent",
                "HTTP-1.0-two-Hosts"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE16)
def test_line16_request_line_and_host(serve_app, data, how, status, layer):
    run_rejected(serve_app, data, how, status, layer)


@ALL_SPLITS
@pytest.mark.parametrize("request_line, path", [
    pytest.param(b"OPTIONS * HTTP/1.1", "", id="OPTIONS-asterisk"),
    pytest.param(b"GET http://x/a?b HTTP/1.1", "/a", id="absolute-form"),
    pytest.param(b"GET /a%20b HTTP/1.1", "/a b", id="percent-escape"),
])
def test_line16_valid_target_forms(serve_app, request_line, path, how):
    app = Recorder()
    server = serve_app(app)
    out, closed = talk(server.server_port, head(b"Host: x", request_line=request_line) + AFTER,
                       how)
    check_served(out, app, [path, "/after"])


@ALL_SPLITS
def test_line16_http10_needs_no_host(serve_app, how):
    app = Recorder()
    server = serve_app(app)
    out, closed = talk(server.server_port, head(request_line=b"GET /old HTTP/1.0"), how)
    check_served(out, app, ["/old"])
    assert closed


# ======================================================= 17-21: limits, slow

SMALL = {"max_request_line": 64, "max_header_line": 64, "max_header_block": 256,
         "max_headers": 4}
START = b"GET / HTTP/1.1\r\nHost: x\r\n"


def limit_case(data, status, name, **options):
    return pytest.param(data, status, {**SMALL, **options}, id=f"{name}[ptsevent]")


# All of them are append_span() / scan_head_bytes() limits.
LINE17 = [
    limit_case(head(b"Host: x", request_line=b"GET /" + b"a" * 80 + b" HTTP/1.1"), 414,
               "request-line"),
    limit_case(head(b"Host: x", request_line=b"GET /?" + b"a" * 80 + b" HTTP/1.1"), 414,
               "request-line-query"),
    limit_case(b"GET /" + b"a" * 200, 414, "request-line-no-newline"),
    limit_case(head(b"Host: x", b"X: " + b"a" * 80), 431, "header-line"),
    limit_case(head(b"Host: x", b"X-" + b"n" * 80 + b": a"), 431, "header-name"),
    limit_case(START + b"X: " + b"a" * 200, 431, "header-line-no-newline"),
    limit_case(START + b"X" * 200, 431, "header-name-no-colon-no-newline"),
    limit_case(head(b"Host: x", *[b"X-%d: " % i + b"a" * 55 for i in range(5)]), 431,
               "header-block", max_headers=100),
    limit_case(START + b"A: b\r\n" * 100, 431, "header-block-never-ends", max_headers=1000),
    limit_case(head(b"Host: x", *[b"X-%d: a" % i for i in range(5)]), 431, "header-count"),
    limit_case(START + b"A: b\r\n" * 10, 431, "header-count-never-ends"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, status, options", LINE17)
def test_line17_head_limits(serve_app, data, how, status, options):
    # header_timeout stays at 10 s: the answer must come from the limit, long
    # before a 408 (the client gives up after 1 s).
    run_rejected(serve_app, data, how, status, "ptsevent", **options)


LINE17_DEFAULTS = [
    pytest.param(b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
                 id="request-line[ptsevent]"),
    pytest.param(START + b"X: " + b"a" * 8200 + b"\r\n\r\n", 431, id="header-line[ptsevent]"),
    pytest.param(START + b"X: " + b"a" * 9000, 431, id="header-line-no-newline[ptsevent]"),
    pytest.param(START + b"".join(b"X-%d: " % i + b"a" * 8000 + b"\r\n" for i in range(9))
                 + b"\r\n", 431, id="header-block[ptsevent]"),
    pytest.param(START + b"".join(b"X-%d: a\r\n" % i for i in range(100)) + b"\r\n", 431,
                 id="header-count[ptsevent]"),
]


@BIG_SPLITS
@pytest.mark.parametrize("data, status", LINE17_DEFAULTS)
def test_line17_default_limits(serve_app, data, how, status):
    assert ptsevent.wsgi.DEFAULTS["max_request_line"] == 8190
    run_rejected(serve_app, data, how, status, "ptsevent")


@pytest.mark.parametrize("prefix, status", [
    pytest.param(b"GET /", 414, id="request-line[ptsevent]"),
    pytest.param(START + b"X: ", 431, id="header-value[ptsevent]"),
    pytest.param(START, 431, id="header-name[ptsevent]"),
])
def test_line17_few_bytes_at_a_time_no_newline_ever(serve_app, prefix, status):
    # A slow client trickles three bytes at a time and never sends a newline:
    # the limit answers, long before the header timeout.
    app = Recorder()
    server = serve_app(app, header_timeout=5, **SMALL)
    sock = connect(server.server_port)
    started = time.monotonic()
    try:
        send_split(sock, prefix, "bytes")
        for _ in range(500):
            if answered(sock):
                break
            try:
                sock.sendall(b"abc")
            except OSError:
                break
            ptsevent.sleep(0.001)
        out, closed = read_to_close(sock, timeout=1.0)
    finally:
        sock.close()
    assert time.monotonic() - started < 2
    check_rejected(out, closed, app, status, "ptsevent")


LINE18 = [
    pytest.param(post(b"Content-Length: 17", body=b"a" * 17), (), id="Content-Length[ptsevent]"),
    pytest.param(post(b"Content-Length: 100000000000000000"), (),
                 id="huge-Content-Length-no-body[ptsevent]"),
    pytest.param(chunked(b"a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"), ("/c",),
                 id="chunked-across-chunks[ptsevent]"),
    pytest.param(chunked(b"11\r\n" + b"a" * 17 + b"\r\n0\r\n\r\n"), ("/c",),
                 id="chunked-one-chunk[ptsevent]"),
    pytest.param(chunked(b"ffffffffff\r\n" + b"a" * 40), ("/c",),
                 id="chunked-huge-chunk-size[ptsevent]"),
]


@ALL_SPLITS
@pytest.mark.parametrize("data, reached", LINE18)
def test_line18_body_over_max_body(serve_app, data, how, reached):
    # Content-Length over the maximum: check_head() answers before any body
    # byte is read; chunked: on_body() counts across chunks as the app reads.
    started = time.monotonic()
    run_rejected(serve_app, data, how, 413, "ptsevent", reached=reached, max_body=16)
    assert time.monotonic() - started < 2


@ALL_SPLITS
@pytest.mark.parametrize("data, body", [
    pytest.param(post(b"Content-Length: 16", body=b"a" * 16), b"a" * 16, id="Content-Length"),
    pytest.param(chunked(b"8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n"), b"0123456789abcdef",
                 id="chunked"),
])
def test_line18_body_at_max_body(serve_app, data, body, how):
    app = Recorder()
    server = serve_app(app, max_body=16)
    out, closed = talk(server.server_port, data + AFTER, how)
    check_served(out, app, [app.seen[0], "/after"])
    assert app.bodies[0] == body


@ALL_SPLITS
@pytest.mark.parametrize("partial", [
    pytest.param(b"GET /ab", id="mid-request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b", id="mid-headers"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n", id="before-the-blank-line"),
])
def test_line19_header_timeout(serve_app, partial, how):
    app = Recorder()
    server = serve_app(app, header_timeout=0.3)
    started = time.monotonic()
    out, closed = talk(server.server_port, partial, how, timeout=2)
    elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 1.5
    check_rejected(out, closed, app, 408, "ptsevent")


@ALL_SPLITS
def test_line19_header_timeout_on_the_next_request(serve_app, how):
    # After a keep-alive response, part of the next head: the header timeout
    # (not the keep-alive one) applies to it.
    app = Recorder()
    server = serve_app(app, header_timeout=0.3, keepalive_timeout=5)
    data = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHo"
    started = time.monotonic()
    out, closed = talk(server.server_port, data, how, timeout=2)
    assert 0.25 < time.monotonic() - started < 1.5
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [200, 408]
    assert responses[1][1]["connection"] == "close"
    assert closed
    assert app.seen == ["/1"]


def test_line19_header_timeout_counts_from_the_first_byte(serve_app):
    # A byte every 50 ms does not restart the header timeout.
    app = Recorder()
    server = serve_app(app, header_timeout=0.4)
    sock = connect(server.server_port)
    started = time.monotonic()
    try:
        sock.sendall(START + b"X: ")
        while time.monotonic() - started < 3 and not answered(sock):
            try:
                sock.sendall(b"a")
            except OSError:
                break
            ptsevent.sleep(0.05)
        elapsed = time.monotonic() - started
        out, closed = read_to_close(sock, timeout=1)
    finally:
        sock.close()
    assert 0.35 < elapsed < 1.5
    check_rejected(out, closed, app, 408, "ptsevent")


def test_line19_keepalive_timeout(serve_app):
    app = Recorder()
    server = serve_app(app, keepalive_timeout=0.3, header_timeout=5)
    sock = connect(server.server_port)
    try:
        sock.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        first = read_until(sock, b"/k:")
        started = time.monotonic()
        rest, closed = read_to_close(sock, timeout=2)
    finally:
        sock.close()
    assert 0.25 < time.monotonic() - started < 1.5
    assert [r[0] for r in parse_responses(first)] == [200]
    assert rest == b""  # an idle connection closes silently
    assert closed


def test_line19_keepalive_idle_is_not_the_header_timeout(serve_app):
    app = Recorder()
    server = serve_app(app, keepalive_timeout=5, header_timeout=0.2)
    sock = connect(server.server_port)
    try:
        sock.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        first = read_until(sock, b"/1:")
        ptsevent.sleep(0.5)
        sock.sendall(b"GET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rest, closed = read_to_close(sock)
    finally:
        sock.close()
    check_served(first + rest, app, ["/1", "/2"])


def test_line19_body_timeout(serve_app):
    app = Recorder()
    server = serve_app(app, body_timeout=0.3, header_timeout=5,
                       error_log=lambda message, exc: None)
    sock = connect(server.server_port)
    try:
        sock.sendall(post(b"Content-Length: 10", body=b"abc"))
        started = time.monotonic()
        out, closed = read_to_close(sock, timeout=2)
    finally:
        sock.close()
    assert 0.25 < time.monotonic() - started < 1.5
    assert closed
    assert app.seen == ["/p"] and app.bodies == []
    assert app.errors and "timed out" in app.errors[0]
    # Nothing to answer but, at most, a 408.
    assert [r[0] for r in parse_responses(out)] in ([], [408])


def test_line19_body_wait_is_not_the_header_timeout(serve_app):
    app = Recorder()
    server = serve_app(app, body_timeout=5, header_timeout=0.2)
    sock = connect(server.server_port)
    try:
        sock.sendall(post(b"Content-Length: 5", b"Connection: close"))
        ptsevent.sleep(0.5)
        sock.sendall(b"hello")
        out, closed = read_to_close(sock)
    finally:
        sock.close()
    check_served(out, app, ["/p"])
    assert app.bodies == [b"hello"]


def test_line19_write_timeout(serve_app):
    finished = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def stream():
            try:
                for _ in range(1024):
                    yield b"x" * (1 << 20)
            finally:
                finished.append(time.monotonic())
        return stream()

    server = serve_app(app, write_timeout=0.3, error_log=lambda m, e: None)
    sock = psocket.socket(psocket.AF_INET, psocket.SOCK_STREAM)
    try:
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_RCVBUF, 4096)
        sock.settimeout(3)
        sock.connect(("127.0.0.1", server.server_port))
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        # The client never reads: the server gives up on its own, ends the
        # app's iterable and frees the tasklet.
        assert wait_for(lambda: finished, timeout=3)
        assert finished[0] - started < 1.5
        assert wait_for(lambda: server.stats()["active"] == 0, timeout=1)
        yield_to_server()
        assert ptsevent.hub_stats()["tasklets"] == 0
        # Whatever the server still sends after giving up ends with the close.
        sock.settimeout(2)
        received = 0
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += len(chunk)
        assert received < 1024 * (1 << 20)
    finally:
        sock.close()
    assert wait_for(lambda: server.stats()["connections"] == 0, timeout=3)


def test_line19_slow_client_holds_only_its_descriptor(serve_app):
    app = Recorder()
    server = serve_app(app, header_timeout=5)
    slow = connect(server.server_port)
    try:
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        assert wait_for(lambda: server.stats()["connections"] == 1)
        yield_to_server()
        stats = server.stats()
        # No tasklet for a connection still in its head.
        assert stats["active"] == 0 and stats["connections"] == 1, stats
        assert ptsevent.hub_stats()["tasklets"] == 0
        started = time.monotonic()
        out, closed = talk(server.server_port, b"GET /fast HTTP/1.1\r\nHost: x\r\n"
                                               b"Connection: close\r\n\r\n")
        assert time.monotonic() - started < 1
        check_served(out, app, ["/fast"])
    finally:
        slow.close()
    assert wait_for(lambda: server.stats()["connections"] == 0)


@ALL_SPLITS
@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(b"\r\n", id="lone-CRLF"),
])
def test_line20_empty_connection_closes_silently(serve_app, data, how):
    app = Recorder()
    # Empty lines run the header timeout (from their first byte), not the
    # idle one: both are short here.
    server = serve_app(app, keepalive_timeout=0.3, header_timeout=0.3)
    # The client half-closes ...
    out, closed = talk(server.server_port, data, how, timeout=2, shut_write=True)
    assert (out, closed) == (b"", True)
    # ... or just goes quiet: the timeout closes, without a 408.
    out, closed = talk(server.server_port, data, how, timeout=2)
    assert (out, closed) == (b"", True)
    assert app.seen == []


def stream_app(record):
    def app(environ, start_response):
        record.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def stream():
            try:
                for _ in range(10000):
                    yield b"x" * 65536
            finally:
                record.append("closed")
        return stream()
    return app


DISCONNECT_POINTS = [
    "before-request-line", "mid-request-line", "mid-headers", "mid-body",
    "during-100-continue", "mid-response", "idle-after-response",
    "after-an-error-response",
]


@ALL_SPLITS
@pytest.mark.parametrize("how_close", ["FIN", "RST"])
@pytest.mark.parametrize("point", DISCONNECT_POINTS)
def test_line20_client_disconnects(serve_app, point, how_close, how):
    app = Recorder()
    streamed = []
    if point == "mid-response":
        server = serve_app(stream_app(streamed), error_log=lambda m, e: None)
    else:
        server = serve_app(app, error_log=lambda m, e: None)
    sock = connect(server.server_port)
    try:
        if point == "mid-request-line":
            send_split(sock, b"GET /abc", how)
        elif point == "mid-headers":
            send_split(sock, START + b"X-A: b", how)
        elif point == "mid-body":
            send_split(sock, post(b"Content-Length: 100", body=b"0123456789"), how)
            assert wait_for(lambda: app.seen)
        elif point == "during-100-continue":
            send_split(sock, EXPECT_HEAD, how)
            assert read_until(sock, b"\r\n\r\n") == CONTINUE
        elif point == "mid-response":
            send_split(sock, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n", how)
            assert read_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        elif point == "idle-after-response":
            send_split(sock, b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n", how)
            assert read_until(sock, b"/k:").startswith(b"HTTP/1.1 200 ")
        elif point == "after-an-error-response":
            # The server has answered 400 and lingers, draining what comes.
            send_split(sock, head(b"Host: x", b"Bad Name: v") + b"more", how)
            assert read_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        yield_to_server()
    finally:
        if how_close == "RST":
            reset_close(sock)
        else:
            sock.close()
    cpu, wall = time.process_time(), time.monotonic()
    ptsevent.sleep(0.1)
    assert wait_for(lambda: server.stats()["connections"] == 0, timeout=2), server.stats()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    assert cpu < 0.5 * wall + 0.02, f"busy: {cpu:.3f}s of CPU in {wall:.3f}s"
    assert server.stats()["active"] == 0
    if point in ("mid-body", "during-100-continue"):
        assert app.errors, "the app's read did not fail"
    if point == "mid-response":
        assert streamed[-1] == "closed"
    if point in ("before-request-line", "mid-request-line", "mid-headers"):
        assert app.seen == []


LINE21 = [
    pytest.param(START + b"X: a" + b"\x01" * MB, 400, "llhttp", id="value-of-0x01[llhttp]"),
    pytest.param(START + b"X: a" + b"\x7f" * MB, 400, "llhttp", id="value-of-DEL[llhttp]"),
    pytest.param(START + b"X: a" + b"\x00" * MB, 400, "both", id="value-of-NUL[both]"),
    pytest.param(START + b"X: a" + b"\r" * MB, 400, "both", id="value-of-CR[both]"),
    pytest.param(START + b"X: a" + b"\n" * MB, 400, "ptsevent", id="value-of-LF[ptsevent]"),
    pytest.param(START + b"\x01" * MB, 400, "llhttp", id="name-of-0x01[llhttp]"),
    pytest.param(b"GET /" + b"\x01" * MB, 400, "llhttp", id="target-of-0x01[llhttp]"),
    pytest.param(b"\x01" * MB, 400, "llhttp", id="method-of-0x01[llhttp]"),
    pytest.param(START + b"X: a" + b"\t" * MB, 431, "ptsevent", id="value-of-tabs[ptsevent]"),
    pytest.param(START + b"X: a\r\n" + b" " * MB, (400, 431), "ptsevent",
                 id="obs-fold-of-spaces[ptsevent]"),
    # A few empty lines before a request line are ignored; more are a 400.
    pytest.param(b"\r\n" * (MB // 2), 400, "ptsevent", id="CRLFs-before-request[ptsevent]"),
]


@BIG_SPLITS
@pytest.mark.parametrize("data, status, layer", LINE21)
def test_line21_megabyte_of_control_bytes_rejected_quickly(serve_app, data, how, status, layer):
    started = time.monotonic()
    run_rejected(serve_app, data, how, status, layer)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("field", [
    pytest.param(lambda i: b"X: a", id="repeated-name"),
    pytest.param(lambda i: b"X-%d: a" % i, id="distinct-names"),
])
def test_line21_many_fields_take_linear_time(serve_app, field):
    # With the limits raised, a head of many short fields is accepted; 4 times
    # the fields must cost about 4 times as much (8 allowed), not 16. The
    # values of a repeated name are joined into one environ key.
    def cpu_time(n):
        app = Recorder(read=False)
        server = serve_app(app, max_headers=10**6, max_header_block=4 * MB)
        data = START + b"".join(field(i) + b"\r\n" for i in range(n)) + b"Connection: close\r\n\r\n"
        started = time.process_time()
        out, closed = talk(server.server_port, data, timeout=10)
        elapsed = time.process_time() - started
        assert [r[0] for r in parse_responses(out)] == [200]
        return elapsed

    small, big = cpu_time(40_000), cpu_time(160_000)  # about 240 KB and 1 MB
    assert big < 2
    assert big < 8 * small + 0.02, f"{small:.3f}s for 40k fields, {big:.3f}s for 160k"


# =================================================== 22-25: what the app returns

SECRET = b"SECRET-BODY"


def returning_app(status, headers, record):
    def app(environ, start_response):
        record.append(environ["PATH_INFO"])
        start_response(status, [("X-App-Marker", "1"), *headers])
        return [SECRET]
    return app


LINE22 = [
    ("200 OK\r\nX-Injected: 1", [], "status-CRLF"),
    ("200 OK\nX-Injected: 1", [], "status-LF"),
    ("200 OK\rX-Injected: 1", [], "status-CR"),
    ("200 O\x00K", [], "status-NUL"),
    ("200 O\x01K", [], "status-control"),
    ("200 \u20ac", [], "status-not-latin-1"),
    ("200 OK", [("X-Injected\r\nX-Evil", "1")], "name-CRLF"),
    ("200 OK", [("X-Injected\n", "1")], "name-LF"),
    ("200 OK", [("X-Inj\rected", "1")], "name-CR"),
    ("200 OK", [("X-Inj\x00ected", "1")], "name-NUL"),
    ("200 OK", [("X-Injected:", "1")], "name-colon"),
    ("200 OK", [("X Injected", "1")], "name-space"),
    ("200 OK", [("X-\u20acuro", "1")], "name-not-latin-1"),
    ("200 OK", [("X-Bad", "a\r\nX-Injected: 1")], "value-CRLF"),
    ("200 OK", [("X-Bad", "a\nX-Injected: 1")], "value-LF"),
    ("200 OK", [("X-Bad", "a\rX-Injected: 1")], "value-CR"),
    ("200 OK", [("X-Bad", "a\x00b")], "value-NUL"),
    ("200 OK", [("X-Bad", "a\x1bb")], "value-control"),
    ("200 OK", [("X-Bad", "\u20ac")], "value-not-latin-1"),
]


@ALL_SPLITS
@pytest.mark.parametrize("status, headers", [
    pytest.param(s, h, id=f"{name}[ptsevent]") for s, h, name in LINE22])
def test_line22_bad_status_or_headers_from_the_app(serve_app, status, headers, how):
    # validate=False: wsgiref.validate would refuse these itself (an
    # AssertionError inside the app), and the server's own checks in
    # start_response (server.cpp) would never be reached.
    seen, errors = [], []
    server = serve_app(returning_app(status, headers, seen), validate=False,
                       error_log=lambda m, e: errors.append(e))
    out, closed = talk(server.server_port, b"GET /app HTTP/1.1\r\nHost: x\r\n\r\n" + AFTER, how,
                       timeout=1.0)
    # The 500 is framed and the request was read as framed: the connection
    # goes on, and the pipelined request gets its own answer (the same app,
    # so a 500 again, which closes as /after asks).
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [500, 500], out[:300]
    assert "connection" not in responses[0][1]
    assert responses[1][1]["connection"] == "close"
    for leak in (SECRET, b"X-App-Marker", b"Injected", b"X-Bad", b"X-Inj", b"Evil"):
        assert leak not in out
    assert out.count(b"HTTP/1.1 ") == 2
    assert closed
    assert seen == ["/app", "/after"]
    assert len(errors) == 2 and all(isinstance(e, (ValueError, TypeError)) for e in errors)


def body_app(status, style, record, content_type=True, length=None):
    """Answers `status` with a body of b"hello", returned as `style`: a
    list, a generator, or through write(). /after gets a plain 200."""
    def app(environ, start_response):
        record.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/after":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
            return [b"hello"]
        headers = [("Content-Type", "text/plain")] if content_type else []
        if length is not None:
            headers.append(("Content-Length", str(length)))
        write = start_response(status, headers)
        if style == "list":
            return [b"hello"]
        if style == "write":
            write(b"hello")
            return []
        if style == "empty":
            return []

        def gen():
            yield b"hel"
            yield b"lo"
        return gen()
    return app


def split_head(data):
    head_bytes, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, data[:300]
    lines = head_bytes.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    return int(lines[0].split(b" ")[1]), headers, rest


@ALL_SPLITS
@pytest.mark.parametrize("style, length, expected_length", [
    pytest.param("list", None, "5", id="list"),
    pytest.param("generator", 5, "5", id="generator-with-Content-Length"),
    pytest.param("write", 5, "5", id="write-with-Content-Length"),
    pytest.param("generator", None, None, id="generator-without-length"),
    pytest.param("empty", 5, "5", id="HEAD-aware-app-sends-no-body"),
])
def test_line23_head_has_no_body(serve_app, style, length, expected_length, how):
    seen = []
    # For a list the server computes the Content-Length itself; wsgiref's
    # validator would wrap the list in an iterator and hide its length.
    server = serve_app(body_app("200 OK", style, seen, length=length),
                       validate=style != "list")
    out, closed = talk(server.server_port, b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n" + AFTER, how)
    status, headers, rest = split_head(out)
    assert status == 200
    assert headers.get("content-length") == expected_length
    assert "transfer-encoding" not in headers
    # The next response follows the head at once: no body bytes in between.
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:100]
    assert [(r[0], r[2]) for r in parse_responses(rest)] == [(200, b"hello")]
    assert seen == ["/h", "/after"]
    assert closed


@ALL_SPLITS
@pytest.mark.parametrize("style", ["list", "generator", "write"])
@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"],
                         ids=["204", "304"])
def test_line23_no_body_statuses(serve_app, status, style, how):
    seen = []
    # wsgiref.validate wants no Content-Type on 204/304, and one on anything else.
    server = serve_app(body_app(status, style, seen,
                                content_type=not status.startswith(("204", "304"))))
    out, closed = talk(server.server_port, b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n" + AFTER, how)
    code, headers, rest = split_head(out)
    assert code == int(status[:3])
    assert "transfer-encoding" not in headers
    assert "content-length" not in headers
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:100]
    assert [(r[0], r[2]) for r in parse_responses(rest)] == [(200, b"hello")]
    assert b"hel" not in out[:len(out) - len(rest)]
    assert seen == ["/s", "/after"]
    assert closed


@ALL_SPLITS
@pytest.mark.parametrize("style, length, sent", [
    pytest.param("generator", 10, b"hello", id="generator-longer-length"),
    pytest.param("generator", 3, b"hel", id="generator-shorter-length"),
    pytest.param("list", 10, b"hello", id="list-longer-length"),
    pytest.param("list", 3, b"hel", id="list-shorter-length"),
    pytest.param("write", 10, b"hello", id="write-longer-length"),
    pytest.param("write", 3, b"hel", id="write-shorter-length"),
])
def test_line24_content_length_mismatch_closes(serve_app, style, length, sent, how):
    seen = []
    server = serve_app(body_app("200 OK", style, seen, length=length))
    out, closed = talk(server.server_port, b"GET /m HTTP/1.1\r\nHost: x\r\n\r\n" + AFTER, how,
                       timeout=1.0)
    status, headers, rest = split_head(out)
    assert status == 200
    assert headers["content-length"] == str(length)
    assert rest == sent  # never more than the app declared, then the close
    assert closed
    assert seen == ["/m"]


def failing_app(style, record):
    def app(environ, start_response):
        record.append(environ["PATH_INFO"])
        headers = [("Content-Type", "text/plain")]
        if style == "with-length":
            headers.append(("Content-Length", "10"))
        write = start_response("200 OK", headers)
        if style in ("write", "exc_info"):
            write(b"part")
            try:
                raise RuntimeError("boom after the headers")
            except RuntimeError:
                if style == "exc_info":
                    # PEP 3333: start_response re-raises once headers are out.
                    start_response("500 Internal Server Error",
                                   [("Content-Type", "text/plain")], sys.exc_info())
                raise

        def gen():
            yield b"part"
            raise RuntimeError("boom after the headers")
        return gen()
    return app


@ALL_SPLITS
@pytest.mark.parametrize("style", ["chunked", "with-length", "write", "exc_info"])
def test_line24_exception_after_headers_aborts(serve_app, style, how):
    seen, errors = [], []
    server = serve_app(failing_app(style, seen), error_log=lambda m, e: errors.append(e))
    out, closed = talk(server.server_port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n" + AFTER, how,
                       timeout=1.0)
    assert out.startswith(b"HTTP/1.1 200 ")
    assert out.count(b"HTTP/1.1 ") == 1  # no second status line
    assert b"500" not in out
    assert b"part" in out
    assert not out.endswith(b"0\r\n\r\n")  # a chunked body is not completed
    assert closed
    assert seen == ["/x"]
    assert len(errors) == 1 and "boom" in str(errors[0])


@ALL_SPLITS
def test_line24_exception_before_the_first_byte_is_a_500(serve_app, how):
    # start_response was called, but nothing was sent yet: the server's own
    # 500 replaces the app's response, and none of the app's headers leak.
    seen, errors = [], []

    def app(environ, start_response):
        seen.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-App-Marker", "1")])
        raise RuntimeError("boom before the body")

    server = serve_app(app, error_log=lambda m, e: errors.append(e))
    out, closed = talk(server.server_port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n" + AFTER, how,
                       timeout=1.0)
    # The connection stays in sync: the pipelined request gets its own 500.
    assert [r[0] for r in parse_responses(out)] == [500, 500]
    assert out.count(b"HTTP/1.1 ") == 2
    assert b"X-App-Marker" not in out
    assert closed
    assert seen == ["/x", "/after"]
    assert len(errors) == 2


@ALL_SPLITS
@pytest.mark.parametrize("target, logged, path", [
    pytest.param(b"/a%00%0a%0d%1b%7f", "/a%00%0a%0d%1b%7f", "/a\x00\n\r\x1b\x7f",
                 id="percent-encoded-controls"),
    pytest.param(b'/a"b', "/a\\x22b", '/a"b', id="quote"),
    pytest.param(b"/a\\b", "/a\\x5cb", "/a\\b", id="backslash"),
    pytest.param(b'/q?x="%0d%0a"', '/q?x=\\x22%0d%0a\\x22', "/q", id="query"),
])
def test_line25_access_log_escapes(serve_app, target, logged, path, how):
    lines = []
    app = Recorder()
    server = serve_app(app, access_log=lines.append)
    data = (b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
            b"User-Agent: evil\tagent\x80\xff\r\nReferer: \"x\"\r\nConnection: close\r\n\r\n")
    out, closed = talk(server.server_port, data, how)
    check_served(out, app, [path])
    assert len(lines) == 1
    line = lines[0]
    assert all(0x20 <= ord(ch) < 0x7f for ch in line), repr(line)
    assert f'"GET {logged} HTTP/1.1" 200 ' in line, line

"""ptsevent.ssl: TLS sockets whose handshake, reads, writes and shutdown
suspend only the calling tasklet.

Real TLS on 127.0.0.1 with certificates made at test time (trustme). Where
the standard library defines the behaviour (timeouts' messages, certificate
errors), the same case runs with the standard `ssl` module for comparison.
"""

import errno
import socket as stdsocket
import ssl
import struct
import threading
import time

import pytest

import ptsevent
import ptsevent.socket as psocket
import ptsevent.ssl as pssl

trustme = pytest.importorskip("trustme")

LOCAL = "127.0.0.1"
MiB = 1 << 20


class Server:
    """A ptsevent TCP listener; each accepted connection runs
    handler(conn) in its own tasklet (conn is the plain socket: the handler
    wraps it, so the handshake happens in that tasklet)."""

    def __init__(self, handler):
        self.listener = psocket.create_server((LOCAL, 0), backlog=512)
        self.port = self.listener.getsockname()[1]
        self.handler = handler
        self.errors = []
        self.tasklets = []
        self.acceptor = ptsevent.spawn(self._accept_loop)

    def _accept_loop(self):
        while True:
            conn, _ = self.listener.accept()
            self.tasklets.append(ptsevent.spawn(self._run, conn))

    def _run(self, conn):
        try:
            with conn:
                self.handler(conn)
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            self.errors.append(exc)

    def close(self):
        self.acceptor.kill()
        ptsevent.killall([t for t in self.tasklets if not t.dead], timeout=2)
        self.listener.close()


@pytest.fixture
def serve():
    servers = []

    def start(handler):
        server = Server(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def connect(client_ctx, port, timeout=None, **kwargs):
    raw = psocket.create_connection((LOCAL, port))
    raw.settimeout(timeout)
    return client_ctx.wrap_socket(raw, server_hostname="localhost", **kwargs)


def echo_lines(server_ctx):
    def handler(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            with tls.makefile("rb") as f:
                for line in f:
                    tls.sendall(line.upper())
    return handler


# -- the classes ---------------------------------------------------------------


def test_sslsocket_is_a_standard_and_a_ptsevent_socket(serve, server_ctx,
                                                       client_ctx):
    server = serve(echo_lines(server_ctx))
    with connect(client_ctx, server.port) as tls:
        assert isinstance(tls, ssl.SSLSocket)
        assert isinstance(tls, psocket.socket)
        assert type(tls) is pssl.SSLSocket
        assert pssl.sslsocket_compat is pssl.SSLSocket
        assert issubclass(pssl.SSLContext, ssl.SSLContext)
        assert ssl.SSLContext.sslsocket_class is ssl.SSLSocket  # untouched
        assert tls.version().startswith("TLS")
        assert ptsevent.ssl is pssl  # the package's lazy attribute
    assert pssl.SSLObject is ssl.SSLObject  # wrap_bio does no I/O


def test_options_can_be_changed_on_contexts_made_before_and_after_install():
    # Replacing ssl.SSLContext sends its options property into a recursion;
    # setting sslsocket_class leaves the class and its properties alone.
    before = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ours = pssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    previous = pssl._install()
    try:
        after = ssl.create_default_context()
        for ctx in (before, ours, after, pssl.create_default_context()):
            ctx.options |= ssl.OP_NO_TICKET
            assert ctx.options & ssl.OP_NO_TICKET
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.verify_flags |= ssl.VERIFY_X509_STRICT
            assert ctx.sslsocket_class is pssl.SSLSocket
    finally:
        pssl._uninstall(previous)
    assert ssl.SSLContext.sslsocket_class is ssl.SSLSocket
    assert before.sslsocket_class is ssl.SSLSocket


def test_installed_class_makes_existing_standard_contexts_cooperative(
        serve, server_ctx, ca):
    std_ctx = ssl.create_default_context()  # made before _install
    ca.configure_trust(std_ctx)
    server = serve(echo_lines(server_ctx))
    previous = pssl._install()
    try:
        raw = psocket.create_connection((LOCAL, server.port))
        with std_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert type(tls) is pssl.SSLSocket
            tls.sendall(b"abc\n")
            assert tls.recv(10) == b"ABC\n"
    finally:
        pssl._uninstall(previous)


# -- cooperation -----------------------------------------------------------------


def test_200_concurrent_handshakes_while_a_ticker_keeps_its_schedule(
        serve, server_ctx, client_ctx):
    server = serve(echo_lines(server_ctx))
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            ptsevent.sleep(0.005)

    def client(i):
        with connect(client_ctx, server.port, timeout=20) as tls:
            tls.sendall(b"hello %d\n" % i)
            return tls.recv(100)

    tick = ptsevent.spawn(ticker)
    try:
        clients = [ptsevent.spawn(client, i) for i in range(200)]
        ptsevent.joinall(clients, timeout=30)
    finally:
        tick.kill()
    assert [c.value for c in clients] == [b"HELLO %d\n" % i
                                          for i in range(200)]
    assert server.errors == []
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    # The ticker waits behind at most one round of the 400 tasklets'
    # handshake steps (each well under a millisecond of OpenSSL work), never
    # behind whole handshakes. (A handshake that blocked the thread would
    # never end: its peer runs in this thread.)
    # Under AddressSanitizer (the build with the core's asserts on) every
    # step runs several times slower.
    limit = 2.0 if ptsevent._core._ASSERTS else 0.5
    assert len(gaps) >= 1
    assert max(gaps) < limit, max(gaps)


def test_silent_client_is_cut_off_at_its_timeout_while_100_others_are_served(
        serve, server_ctx, client_ctx):
    cut = []

    def handler(conn):
        conn.settimeout(2.0)
        start = time.monotonic()
        try:
            tls = server_ctx.wrap_socket(conn, server_side=True)
        except TimeoutError as exc:
            cut.append((str(exc), time.monotonic() - start))
            return
        with tls, tls.makefile("rb") as f:
            for line in f:
                tls.sendall(line.upper())

    server = serve(handler)
    silent = psocket.create_connection((LOCAL, server.port))
    ptsevent.sleep(0.05)  # its handler is waiting for a ClientHello
    served = []

    def client(i):
        with connect(client_ctx, server.port, timeout=10) as tls:
            tls.sendall(b"x%d\n" % i)
            assert tls.recv(100) == b"X%d\n" % i
            served.append(time.monotonic())

    start = time.monotonic()
    ptsevent.joinall([ptsevent.spawn(client, i) for i in range(100)])
    assert len(served) == 100
    assert not cut  # all served before the silent one's timeout
    assert max(served) - start < 2.0
    silent.settimeout(5)
    assert silent.recv(10) == b""  # the server closed it
    silent.close()
    assert len(cut) == 1
    message, waited = cut[0]
    assert message == _stdlib_handshake_timeout_text()
    assert 1.9 < waited < 4.0
    assert server.errors == []


# -- timeouts: the standard library's messages -------------------------------------


def _stdlib_handshake_timeout_text():
    with stdsocket.create_server((LOCAL, 0)) as silent:
        raw = stdsocket.create_connection(silent.getsockname())
        raw.settimeout(0.05)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        with raw, pytest.raises(TimeoutError) as info:
            ctx.wrap_socket(raw, server_hostname="localhost")
    return str(info.value)


@pytest.mark.parametrize("impl", ["stdlib", "ptsevent"])
def test_handshake_timeout_has_the_standard_message(impl, ca):
    # A listener that never accepts: the kernel completes the TCP handshake,
    # nobody answers the ClientHello.
    with stdsocket.create_server((LOCAL, 0)) as silent:
        port = silent.getsockname()[1]
        if impl == "stdlib":
            ctx = ssl.create_default_context()
            raw = stdsocket.create_connection((LOCAL, port))
        else:
            ctx = pssl.create_default_context()
            raw = psocket.create_connection((LOCAL, port))
        ca.configure_trust(ctx)
        raw.settimeout(0.3)
        start = time.monotonic()
        with raw, pytest.raises(TimeoutError) as info:
            ctx.wrap_socket(raw, server_hostname="localhost")
        assert 0.25 < time.monotonic() - start < 1.5
        # Some versions prefix it with a source position: the same text.
        assert str(info.value).endswith("The handshake operation timed out")
        assert str(info.value) == _stdlib_handshake_timeout_text()
        assert raw.fileno() == -1  # detached by the wrap, closed on failure


def test_handshake_timeout_leaves_other_tasklets_running(ca):
    with stdsocket.create_server((LOCAL, 0)) as silent:
        ctx = pssl.create_default_context()
        ca.configure_trust(ctx)
        counter = [0]

        def count():
            while True:
                counter[0] += 1
                ptsevent.sleep(0.01)

        t = ptsevent.spawn(count)
        try:
            raw = psocket.create_connection(silent.getsockname())
            raw.settimeout(0.3)
            with pytest.raises(TimeoutError):
                ctx.wrap_socket(raw, server_hostname="localhost")
        finally:
            t.kill()
        assert counter[0] >= 10


def test_handshake_cut_short_by_a_timeout_block_closes_what_it_made(ca):
    # Nobody holds the half-made SSL socket: it must not stay open (the
    # suite's fixture checks descriptors and registrations afterwards).
    with stdsocket.create_server((LOCAL, 0)) as silent:
        ctx = pssl.create_default_context()
        ca.configure_trust(ctx)
        raw = psocket.create_connection(silent.getsockname())
        with raw, pytest.raises(ptsevent.Timeout):
            with ptsevent.Timeout(0.2):
                ctx.wrap_socket(raw, server_hostname="localhost")
        assert raw.fileno() == -1


def test_read_timeout_has_the_standard_message(serve, server_ctx, client_ctx):
    def handler(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(10)  # waits for the client to close

    server = serve(handler)
    with connect(client_ctx, server.port, timeout=0.3) as tls:
        start = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            tls.recv(10)
        assert str(info.value) == "The read operation timed out"
        assert 0.25 < time.monotonic() - start < 1.5
        with pytest.raises(TimeoutError, match="The read operation timed out"):
            tls.makefile("rb").readline()


def test_write_timeout_has_the_standard_message(serve, server_ctx, client_ctx):
    done = []

    def handler(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)  # then reads nothing more
            ptsevent.sleep(3)
            done.append(True)

    server = serve(handler)
    with connect(client_ctx, server.port, timeout=0.5) as tls:
        tls.sendall(b"x")
        start = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            tls.sendall(b"y" * (64 * MiB))
        assert str(info.value) == "The write operation timed out"
        assert 0.45 < time.monotonic() - start < 2.0


def test_settimeout_zero_gives_the_standard_nonblocking_behaviour(
        serve, server_ctx, client_ctx):
    server = serve(echo_lines(server_ctx))
    raw = psocket.create_connection((LOCAL, server.port))
    raw.setblocking(False)
    with pytest.raises(ValueError, match="non-blocking"):
        client_ctx.wrap_socket(raw, server_hostname="localhost")
    raw = psocket.create_connection((LOCAL, server.port))
    raw.setblocking(False)
    tls = client_ctx.wrap_socket(raw, server_hostname="localhost",
                                 do_handshake_on_connect=False)
    with tls:
        wants = 0
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                wants += 1
                ptsevent.wait_read(tls.fileno())
        assert wants >= 1
        with pytest.raises(ssl.SSLWantReadError):
            tls.recv(10)
        tls.send(b"line\n")
        ptsevent.wait_read(tls.fileno(), 5)
        got = b""
        while got != b"LINE\n":
            try:
                got += tls.recv(10)
            except ssl.SSLWantReadError:
                ptsevent.wait_read(tls.fileno(), 5)


def test_nonblocking_write_raises_want_write_when_the_peer_does_not_read(
        serve, server_ctx, client_ctx):
    release = ptsevent.Event()

    def handler(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(10)
            release.wait(10)
            data = bytearray()
            while not data.endswith(b"END"):
                data += tls.recv(65536)
            tls.sendall(b"%d" % (len(data) - 3))

    server = serve(handler)
    with connect(client_ctx, server.port, timeout=5) as tls:
        tls.setblocking(False)
        sent = 0
        block = b"z" * 16384
        with pytest.raises(ssl.SSLWantWriteError):
            for _ in range(100000):
                sent += tls.send(block)
        assert sent > 0
        # The standard contract: after the Want error, the same data again.
        release.set()
        tls.settimeout(10)
        sent += tls.send(block)
        tls.sendall(b"END")
        assert int(tls.recv(20)) == sent


def test_do_handshake_after_nonblocking_connect_ex(serve, server_ctx,
                                                   client_ctx):
    server = serve(echo_lines(server_ctx))
    raw = psocket.socket()
    raw.setblocking(False)
    tls = client_ctx.wrap_socket(raw, server_hostname="localhost",
                                 do_handshake_on_connect=False)
    with tls:
        rc = tls.connect_ex((LOCAL, server.port))
        assert rc in (0, errno.EINPROGRESS)
        ptsevent.wait_write(tls.fileno(), 5)
        tls.settimeout(5)
        tls.do_handshake()
        tls.sendall(b"ok\n")
        assert tls.recv(10) == b"OK\n"


# -- certificate errors: as the standard library reports them ------------------------


def _std_tls_server(ctx, count):
    """A plain-threads TLS server (standard library) that accepts count
    connections and lets each handshake fail or succeed."""
    listener = stdsocket.create_server((LOCAL, 0))

    def run():
        with listener:
            for _ in range(count):
                conn, _ = listener.accept()
                conn.settimeout(5)
                try:
                    with ctx.wrap_socket(conn, server_side=True):
                        pass
                except (OSError, ssl.SSLError):
                    pass
                finally:
                    conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


@pytest.mark.parametrize("case", ["untrusted-ca", "wrong-hostname"])
def test_certificate_errors_match_the_standard_library(case, ca):
    server_std_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", LOCAL).configure_cert(server_std_ctx)
    port, thread = _std_tls_server(server_std_ctx, 2)
    trusted = trustme.CA() if case == "untrusted-ca" else ca
    hostname = "localhost" if case == "untrusted-ca" else "example.invalid"
    errors = []
    for ssl_mod, sock_mod in ((ssl, stdsocket), (pssl, psocket)):
        ctx = ssl_mod.create_default_context()
        trusted.configure_trust(ctx)
        raw = sock_mod.create_connection((LOCAL, port))
        raw.settimeout(5)
        with raw, pytest.raises(ssl.SSLCertVerificationError) as info:
            ctx.wrap_socket(raw, server_hostname=hostname)
        errors.append(info.value)
    thread.join(5)
    std, ours = errors
    assert (ours.verify_code, ours.verify_message) == (std.verify_code,
                                                       std.verify_message)
    assert ours.reason == std.reason
    expected = 20 if case == "untrusted-ca" else 62
    assert ours.verify_code == expected


# -- end of stream, unwrap, files --------------------------------------------------


@pytest.mark.parametrize("suppress", [True, False])
def test_ragged_eof_is_suppressed_or_raised(suppress, serve, server_ctx,
                                            client_ctx):
    def handler(conn):
        tls = server_ctx.wrap_socket(conn, server_side=True)
        tls.sendall(b"data")
        tls.recv(1)
        # Cut the TCP connection without a close_notify.
        stdsocket.socket.shutdown(tls, stdsocket.SHUT_RDWR)
        tls.close()

    server = serve(handler)
    with connect(client_ctx, server.port, timeout=5,
                 suppress_ragged_eofs=suppress) as tls:
        assert tls.recv(10) == b"data"
        tls.sendall(b"x")
        if suppress:
            assert tls.recv(10) == b""
            assert tls.recv_into(bytearray(10)) == 0
        else:
            with pytest.raises(ssl.SSLEOFError):
                tls.recv(10)


def test_clean_close_notify_reads_as_end_of_stream(serve, server_ctx,
                                                   client_ctx):
    def handler(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"bye")
            tls.unwrap()

    server = serve(handler)
    with connect(client_ctx, server.port, timeout=5,
                 suppress_ragged_eofs=False) as tls:
        assert tls.recv(10) == b"bye"
        assert tls.recv(10) == b""


def test_unwrap_returns_a_socket_usable_in_the_clear(serve, server_ctx,
                                                     client_ctx):
    got = []

    def handler(conn):
        tls = server_ctx.wrap_socket(conn, server_side=True)
        assert tls.recv(100) == b"STOPTLS"
        plain = tls.unwrap()
        got.append(plain.recv(100))
        plain.sendall(b"clear reply")

    server = serve(handler)
    tls = connect(client_ctx, server.port, timeout=5)
    tls.sendall(b"STOPTLS")
    plain = tls.unwrap()
    with plain:
        assert plain is tls  # the same object, now in the clear
        plain.sendall(b"clear text")
        assert plain.recv(100) == b"clear reply"
        assert plain.pending() == 0
        # Still cooperative underneath: the descriptor stayed non-blocking.
        assert not __import__("os").get_blocking(plain.fileno())
    assert got == [b"clear text"]


def test_unwrap_is_bounded_when_the_peer_never_answers(serve, server_ctx,
                                                       client_ctx):
    def handler(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)
            ptsevent.sleep(5)

    server = serve(handler)
    with connect(client_ctx, server.port, timeout=0.3) as tls:
        tls.sendall(b"x")
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="The read operation timed out"):
            tls.unwrap()
        assert time.monotonic() - start < 1.5


def test_makefile_readline_over_tls(serve, server_ctx, client_ctx):
    def handler(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            for piece in (b"first li", b"ne\nsecond", b" line\n", b"x" * 50000,
                          b"\nlast"):
                tls.sendall(piece)
                ptsevent.sleep(0.01)

    server = serve(handler)
    with connect(client_ctx, server.port, timeout=5) as tls:
        f = pssl.sslsocketfile_compat(tls, "rb")
        assert f.readline() == b"first line\n"
        assert f.readline() == b"second line\n"
        assert f.readline() == b"x" * 50000 + b"\n"
        assert f.readline() == b"last"
        assert f.readline() == b""
        f.close()
        text = tls.makefile("r", encoding="ascii")
        assert text.readline() == ""
        text.close()


def test_sendfile_over_tls_sends_the_file(serve, server_ctx, client_ctx,
                                          tmp_path):
    payload = bytes(range(256)) * 4000
    path = tmp_path / "f.bin"
    path.write_bytes(payload)
    got = []

    def handler(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            data = b""
            while len(data) < len(payload):
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
            got.append(data)
            tls.sendall(b"ok")

    server = serve(handler)
    with connect(client_ctx, server.port, timeout=5) as tls:
        with open(path, "rb") as f:
            assert tls.sendfile(f) == len(payload)
            assert f.tell() == len(payload)
        assert tls.recv(10) == b"ok"
    assert [len(g) for g in got] == [len(payload)]
    assert got == [payload]


# -- several tasklets on one TLS connection -------------------------------------------


def test_ten_1mib_writers_and_short_writers_never_interleave(
        serve, server_ctx, client_ctx):
    # Ten 1 MiB messages, and between them short ones (a heartbeat's): a
    # write that OpenSSL left unfinished must be retried with the same
    # bytes before any other, or it fails ("bad length"/"bad write retry").
    sizes = [MiB + i * 4099 if i % 2 == 0 else 100 + i for i in range(20)]
    received = []

    def handler(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            data = bytearray()
            while len(data) < sum(sizes):
                # Read slowly at first so that the writers fill the buffers
                # and wait in the middle of their messages.
                if len(data) < MiB:
                    ptsevent.sleep(0.01)
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
            received.append(bytes(data))
            tls.sendall(b"done")

    server = serve(handler)
    with connect(client_ctx, server.port, timeout=20) as tls:
        errors = []

        def writer(i):
            try:
                tls.sendall(bytes([65 + i]) * sizes[i])
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        ptsevent.joinall([ptsevent.spawn(writer, i) for i in range(20)])
        assert errors == []
        assert tls.recv(10) == b"done"
    data = received[0]
    assert len(data) == sum(sizes)
    pos, seen = 0, []
    while pos < len(data):
        i = data[pos] - 65
        run = data[pos:pos + sizes[i]]
        assert run == bytes([65 + i]) * sizes[i], (i, pos)
        seen.append(i)
        pos += sizes[i]
    assert sorted(seen) == list(range(20))


def test_a_reader_and_a_writer_tasklet_share_one_connection(
        serve, server_ctx, client_ctx):
    server = serve(echo_lines(server_ctx))
    with connect(client_ctx, server.port, timeout=10) as tls:
        lines = [b"line %d\n" % i for i in range(2000)]
        got = []

        def reader():
            f = tls.makefile("rb")
            for _ in lines:
                got.append(f.readline())

        def writer():
            for line in lines:
                tls.sendall(line)

        ptsevent.joinall([ptsevent.spawn(reader), ptsevent.spawn(writer)],
                         raise_error=True)
        assert got == [line.upper() for line in lines]


# -- the descriptor: handed over, never blocking ------------------------------------


def test_wrapping_hands_over_the_descriptor_without_a_blocking_flicker(
        serve, server_ctx, client_ctx, monkeypatch):
    import os

    server = serve(echo_lines(server_ctx))
    calls = []
    real = os.set_blocking
    monkeypatch.setattr(os, "set_blocking",
                        lambda fd, flag: (calls.append(flag), real(fd, flag)))
    raw = psocket.create_connection((LOCAL, server.port))
    assert raw.gettimeout() is None
    fd = raw.fileno()
    io = raw._io
    tls = client_ctx.wrap_socket(raw, server_hostname="localhost")
    with tls:
        assert tls._io is io  # the registration moved with the descriptor
        assert tls.fileno() == fd
        assert not os.get_blocking(fd)
        assert True not in calls
        tls.sendall(b"a\n")
        assert tls.recv(10) == b"A\n"
    assert raw.fileno() == -1


def test_wrapping_an_inherited_blocking_descriptor_restores_its_flags_once(
        serve, server_ctx, client_ctx):
    import fcntl
    import os

    server = serve(echo_lines(server_ctx))
    std = stdsocket.create_connection((LOCAL, server.port))
    dup_fd = os.dup(std.fileno())  # shares the open file description
    try:
        flags = fcntl.fcntl(dup_fd, fcntl.F_GETFL)
        assert os.get_blocking(dup_fd)
        raw = psocket.socket(fileno=std.detach())
        assert not os.get_blocking(dup_fd)
        tls = client_ctx.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"a\n")
        assert tls.recv(10) == b"A\n"
        assert not os.get_blocking(dup_fd)
        raw.close()  # detached by the wrap: gives nothing back
        assert not os.get_blocking(dup_fd)
        tls.close()
        assert fcntl.fcntl(dup_fd, fcntl.F_GETFL) == flags
    finally:
        os.close(dup_fd)


# -- data sent before the handshake, then the connection closed ----------------------


def test_data_before_handshake_then_close_is_refused(serve, server_ctx):
    outcome = []
    ready = ptsevent.Event()

    def handler(conn):
        ready.wait(5)
        try:
            tls = server_ctx.wrap_socket(conn, server_side=True)
        except OSError as exc:
            outcome.append(exc)
            return
        with tls:
            outcome.append(tls.recv(100))

    server = serve(handler)
    client = psocket.create_connection((LOCAL, server.port))
    client.sendall(b"GET / HTTP/1.0\r\n\r\n")
    client.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER,
                      struct.pack("ii", 1, 0))
    ptsevent.sleep(0.05)
    client.close()  # RST
    ptsevent.sleep(0.05)
    ready.set()
    for _ in range(100):
        if outcome:
            break
        ptsevent.sleep(0.01)
    assert len(outcome) == 1
    err = outcome[0]
    # Never the clear-text bytes as if they came through TLS.
    assert isinstance(err, ssl.SSLError), err
    assert "before TLS handshake with data" in err.reason


# -- the server side, SNI, the module's helpers ------------------------------------------


def test_plain_http_client_on_the_tls_port_fails_only_its_own_tasklet(
        serve, server_ctx, client_ctx):
    failures = []

    def handler(conn):
        conn.settimeout(5)
        try:
            tls = server_ctx.wrap_socket(conn, server_side=True)
        except ssl.SSLError as exc:
            failures.append(exc)
            return
        with tls, tls.makefile("rb") as f:
            for line in f:
                tls.sendall(line.upper())

    server = serve(handler)
    plain = psocket.create_connection((LOCAL, server.port))
    plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    def client(i):
        with connect(client_ctx, server.port, timeout=5) as tls:
            tls.sendall(b"c%d\n" % i)
            return tls.recv(10)

    clients = [ptsevent.spawn(client, i) for i in range(20)]
    ptsevent.joinall(clients, raise_error=True)
    assert [c.value for c in clients] == [b"C%d\n" % i for i in range(20)]
    plain.settimeout(5)
    try:
        plain.recv(100)  # an alert, or nothing: the server gave up on it
    except ConnectionResetError:
        pass
    plain.close()
    assert len(failures) == 1
    assert server.errors == []


def test_sni_callback_receives_the_cooperative_socket(serve, ca, client_ctx):
    seen = []
    ctx = pssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", LOCAL).configure_cert(ctx)
    other = pssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("other.test").configure_cert(other)

    def on_sni(sslsock, name, context):
        seen.append((type(sslsock), name))
        if name == "other.test":
            sslsock.context = other

    ctx.sni_callback = on_sni
    server = serve(echo_lines(ctx))
    raw = psocket.create_connection((LOCAL, server.port))
    with client_ctx.wrap_socket(raw, server_hostname="other.test") as tls:
        tls.settimeout(5)
        cert = tls.getpeercert()
        assert ("DNS", "other.test") in cert["subjectAltName"]
        tls.sendall(b"sni\n")
        assert tls.recv(10) == b"SNI\n"
    assert seen == [(pssl.SSLSocket, "other.test")]


def test_get_server_certificate_fetches_the_pem(serve, server_ctx, ca,
                                                tmp_path):
    def handler(conn):
        conn.settimeout(5)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except OSError:
            pass

    server = serve(handler)
    pem = pssl.get_server_certificate((LOCAL, server.port), timeout=5)
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    again = pssl.get_server_certificate((LOCAL, server.port),
                                       ca_certs=str(ca_file), timeout=5)
    assert ssl.PEM_cert_to_DER_cert(again) == ssl.PEM_cert_to_DER_cert(pem)
    with pytest.raises(ssl.SSLCertVerificationError):
        other = tmp_path / "other.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        pssl.get_server_certificate((LOCAL, server.port),
                                    ca_certs=str(other), timeout=5)


def test_accept_on_a_listening_ssl_socket_wraps_cooperatively(server_ctx,
                                                              client_ctx):
    listener = server_ctx.wrap_socket(psocket.create_server((LOCAL, 0)),
                                      server_side=True)
    port = listener.getsockname()[1]

    def server():
        conn, _ = listener.accept()
        with conn:
            assert type(conn) is pssl.SSLSocket
            conn.sendall(conn.recv(10).upper())

    with listener:
        s = ptsevent.spawn(server)
        with connect(client_ctx, port, timeout=5) as tls:
            tls.sendall(b"acc")
            assert tls.recv(10) == b"ACC"
        s.join()


def test_post_handshake_client_authentication(serve, ca, client_ctx):
    ctx = pssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", LOCAL).configure_cert(ctx)
    ca.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.post_handshake_auth = True
    peers = []

    def handler(conn):
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(5)
            assert tls.recv(10) == b"hello"
            assert not tls.getpeercert()
            tls.verify_client_post_handshake()
            tls.sendall(b"send it")
            assert tls.recv(10) == b"again"  # carries the certificate
            peers.append(tls.getpeercert())
            tls.sendall(b"ok")

    server = serve(handler)
    cctx = pssl.create_default_context()
    ca.configure_trust(cctx)
    ca.issue_cert("client.test").configure_cert(cctx)
    cctx.post_handshake_auth = True
    with connect(cctx, server.port, timeout=5) as tls:
        tls.sendall(b"hello")
        got = tls.recv(10)
        assert server.errors == []
        assert got == b"send it"
        tls.sendall(b"again")
        assert tls.recv(10) == b"ok"
    assert ("DNS", "client.test") in peers[0]["subjectAltName"]
    assert server.errors == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_module_helpers_give_cooperative_sockets(serve, server_ctx):
    server = serve(echo_lines(server_ctx))
    assert type(pssl.create_default_context()) is pssl.SSLContext
    assert type(pssl._create_unverified_context()) is pssl.SSLContext
    assert pssl.create_connection is psocket.create_connection
    assert pssl.CERT_REQUIRED is ssl.CERT_REQUIRED
    assert pssl.SSLError is ssl.SSLError
    if hasattr(pssl, "wrap_socket"):
        raw = psocket.create_connection((LOCAL, server.port))
        with pssl.wrap_socket(raw) as tls:
            assert type(tls) is pssl.SSLSocket
            tls.settimeout(5)
            tls.sendall(b"w\n")
            assert tls.recv(10) == b"W\n"


def test_a_wrap_refused_before_it_starts_leaves_the_socket_as_it_was(
        serve, server_ctx, client_ctx):
    server = serve(echo_lines(server_ctx))
    raw = psocket.create_connection((LOCAL, server.port))
    raw.settimeout(5)
    io = raw._io
    with raw:
        with pytest.raises(ValueError, match="check_hostname requires"):
            client_ctx.wrap_socket(raw)  # no server_hostname
        assert raw._io is io and raw.fileno() >= 0
        assert raw.gettimeout() == 5
        # Still this socket's: wrapping it properly works.
        tls = client_ctx.wrap_socket(raw, server_hostname="localhost")
    with tls:
        tls.sendall(b"again\n")
        assert tls.recv(10) == b"AGAIN\n"

"""ptsevent.ssl's read and write path: what a reader relies on whichever
way a read goes (data already decrypted, data in the socket, nothing yet,
a stream of full records, the end of the stream, a reset), and that a
tasklet stopped while it waits leaves the connection usable by others.

Real TLS over a connected pair of ptsevent sockets, certificates from
trustme (the conftest's contexts).
"""

import fcntl
import socket as stdsocket
import struct
import termios
import time

import pytest

import ptsevent
import ptsevent.socket as psocket

pytest.importorskip("trustme")

RECORD = 16 * 1024  # the most plaintext one TLS record carries


@pytest.fixture
def pair(server_ctx, client_ctx):
    """(server, client): two handshaken ptsevent SSLSockets, connected."""
    a, b = psocket.socketpair()
    server_side = ptsevent.spawn(server_ctx.wrap_socket, b, server_side=True)
    client = client_ctx.wrap_socket(a, server_hostname="localhost")
    server = server_side.get()
    yield server, client
    client.close()
    server.close()


def test_a_record_read_in_small_pieces_comes_whole_without_waiting(pair):
    server, client = pair
    message = bytes(range(256)) * 4
    client.sendall(message)
    server.settimeout(5)
    got = []
    start = time.monotonic()
    while len(b"".join(got)) < len(message):
        got.append(server.recv(10))
    assert b"".join(got) == message
    assert all(len(piece) == 10 for piece in got[:-1])
    assert time.monotonic() - start < 1.0


def test_a_stream_of_full_records_arrives_in_order_then_reads_wait(pair):
    server, client = pair
    message = b"".join(struct.pack("!I", i) for i in range(256 * 1024))  # 1 MiB
    sender = ptsevent.spawn(client.sendall, message)
    got = bytearray()
    while len(got) < len(message):
        piece = server.recv(65536)
        assert piece
        got += piece
    sender.get()
    assert bytes(got) == message
    # Nothing more in flight: the next read waits for the peer, within the
    # socket's timeout, with the standard message.
    server.settimeout(0.3)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="^The read operation timed out$"):
        server.recv(65536)
    assert 0.25 < time.monotonic() - start < 1.5
    # And the connection is still good in both directions.
    server.settimeout(5)
    client.sendall(b"after")
    assert server.recv(100) == b"after"
    server.sendall(b"reply")
    assert client.recv(100) == b"reply"


def test_a_full_record_read_then_a_message_that_comes_later(pair):
    server, client = pair
    server.settimeout(5)

    def later():
        ptsevent.sleep(0.2)
        client.sendall(b"late")

    client.sendall(b"r" * RECORD)
    assert server.recv(RECORD) == b"r" * RECORD
    sender = ptsevent.spawn(later)
    assert server.recv(RECORD) == b"late"
    sender.get()


def test_read_into_a_buffer_and_recv_into(pair):
    server, client = pair
    server.settimeout(5)
    client.sendall(b"0123456789" * 100)
    buf = bytearray(400)
    assert server.read(400, buf) == 400
    assert bytes(buf) == b"0123456789" * 40
    view = memoryview(bytearray(1000))
    n = server.recv_into(view)
    assert bytes(view[:n]) == (b"0123456789" * 100)[400:400 + n]
    assert n == 600


@pytest.mark.parametrize("how", ["close_notify", "close"])
def test_data_then_the_peers_end_reads_data_then_end_of_stream(pair, how):
    server, client = pair
    server.settimeout(5)
    client.sendall(b"last words")
    if how == "close_notify":  # unwrap() waits for the answer: in a tasklet
        closing = ptsevent.spawn(client.unwrap)
    else:  # no close_notify: a ragged end, suppressed by default
        client.close()
    assert server.recv(100) == b"last words"
    assert server.recv(100) == b""
    if how == "close_notify":
        server.unwrap()
        closing.get().close()
    assert server.recv(100) == b""


def test_a_reset_wakes_a_waiting_reader_at_once(pair):
    server, client = pair
    server.settimeout(5)
    client.sendall(b"x")
    assert server.recv(10) == b"x"

    def reset():
        ptsevent.sleep(0.1)
        client.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER,
                          struct.pack("ii", 1, 0))
        client.close()

    resetter = ptsevent.spawn(reset)
    start = time.monotonic()
    try:
        got = server.recv(10)
    except OSError:  # ECONNRESET, or an SSL error, as the stdlib would raise
        got = None
    assert got in (None, b"")
    assert time.monotonic() - start < 2.0
    resetter.get()


def test_a_reader_killed_while_waiting_leaves_the_connection_to_others(pair):
    server, client = pair
    server.settimeout(5)
    waiting = ptsevent.spawn(server.recv, 100)
    ptsevent.sleep(0.05)
    assert not waiting.dead
    waiting.kill()
    assert waiting.dead
    client.sendall(b"for the next reader")
    assert server.recv(100) == b"for the next reader"


def test_a_reader_timed_out_leaves_the_connection_to_others(pair):
    server, client = pair
    server.settimeout(0.1)
    with pytest.raises(TimeoutError):
        server.recv(100)
    server.settimeout(5)
    with ptsevent.Timeout(0.1, exception=False):
        server.recv(100)
    client.sendall(b"still readable")
    assert server.recv(100) == b"still readable"


def test_two_readers_share_what_arrives(pair):
    server, client = pair
    server.settimeout(5)
    readers = [ptsevent.spawn(server.recv, 5) for _ in range(2)]
    ptsevent.sleep(0.05)
    client.sendall(b"first")
    ptsevent.sleep(0.05)
    client.sendall(b"secnd")
    assert sorted(r.get() for r in readers) == [b"first", b"secnd"]


# -- read-ahead: while the peer sends whole records, one read() takes more
# than one record; pending() and select() users must still see them.


def _arrived(server, n):
    """Wait until n bytes are in server's descriptor, not read yet."""
    deadline = time.monotonic() + 5
    while True:
        queued = struct.unpack("i", fcntl.ioctl(
            server.fileno(), termios.FIONREAD, b"\0" * 4))[0]
        if queued >= n:
            return
        assert time.monotonic() < deadline
        ptsevent.sleep(0.01)


def test_after_a_whole_record_the_next_read_takes_more_than_its_record(pair):
    server, client = pair
    server.settimeout(5)
    message = bytes(range(256)) * (3 * RECORD // 256)
    client.sendall(message)
    _arrived(server, 3 * RECORD)
    assert server.recv(RECORD) == message[:RECORD]
    assert not server._io.tls_read_ahead(server._sslobj)  # header, then body
    assert server.recv(RECORD) == message[RECORD:2 * RECORD]
    # The second read took the start of the third record with its own.
    assert server._io.tls_read_ahead(server._sslobj)
    assert server.pending() >= 1
    assert server.recv(RECORD) == message[2 * RECORD:]


def test_a_record_read_ahead_is_seen_by_pending_before_select(pair):
    import select

    server, client = pair
    server.settimeout(5)
    # Two whole records and a short one, sent at once: reading the second
    # takes the short one with it, and the descriptor is then empty.
    client.sendall(b"a" * RECORD + b"b" * RECORD + b"end")
    _arrived(server, 2 * RECORD + 3)
    got = []
    for _ in range(3):
        # The standard library's rule for TLS sockets: data pending()
        # counts is read before select() is asked.
        if not server.pending():
            assert select.select([server], [], [], 2)[0] == [server]
        got.append(server.recv(RECORD))
    assert got == [b"a" * RECORD, b"b" * RECORD, b"end"]
    assert server.pending() == 0


def test_unwrap_after_whole_records_leaves_the_clear_text_to_the_socket(pair):
    server, client = pair
    server.settimeout(5)
    client.settimeout(5)
    client.sendall(b"x" * (4 * RECORD))
    got = bytearray()
    while len(got) < 4 * RECORD:
        got += server.recv(RECORD)
    assert got == b"x" * (4 * RECORD)
    closing = ptsevent.spawn(client.unwrap)
    plain_server = server.unwrap()
    plain_client = closing.get()
    plain_client.sendall(b"in the clear")
    assert plain_server.recv(100) == b"in the clear"
    plain_client.close()
    plain_server.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_messages_of_any_size_read_in_pieces_of_any_size(pair, seed):
    import random

    server, client = pair
    server.settimeout(5)
    rng = random.Random(seed)
    sizes = [rng.choice([1, 100, RECORD - 1, RECORD, RECORD + 1, 3 * RECORD,
                         rng.randrange(1, 5 * RECORD)]) for _ in range(60)]
    message = rng.randbytes(sum(sizes))

    def send():
        at = 0
        for size in sizes:
            client.sendall(message[at:at + size])
            at += size
            if rng.random() < 0.2:
                ptsevent.sleep(0.001)

    sender = ptsevent.spawn(send)
    got = bytearray()
    while len(got) < len(message):
        got += server.recv(rng.choice([1, 500, RECORD, 65536]))
    sender.get()
    assert bytes(got) == message


# -- recv() and sendall() are C: they take what the standard ones take.


def test_recv_and_sendall_take_the_standard_arguments(pair):
    server, client = pair
    server.settimeout(5)
    client.sendall(b"positional")
    assert server.recv(100, 0) == b"positional"
    client.sendall(bytearray(b"bytearray"), 0)
    assert server.recv(buflen=100) == b"bytearray"
    client.sendall(memoryview(b"xxmemoryview")[2:])
    assert server.recv(100, flags=0) == b"memoryview"
    client.sendall(b"")
    client.sendall(data=b"default length " * 100)
    assert server.recv() == (b"default length " * 100)[:1024]
    assert server.recv(2000) == (b"default length " * 100)[1024:]
    # Flags are refused as the standard library refuses them.
    with pytest.raises(ValueError, match="non-zero flags"):
        server.recv(10, stdsocket.MSG_PEEK)
    with pytest.raises(ValueError, match="non-zero flags"):
        client.sendall(b"x", stdsocket.MSG_DONTWAIT)
    # Refused at once, with the standard errors, not after a wait.
    with pytest.raises(TypeError):
        server.recv("10")
    with pytest.raises(ValueError, match="negative"):
        server.recv(-1)
    with pytest.raises(TypeError):
        client.sendall("text")
    with pytest.raises(TypeError):
        client.sendall()


def test_recv_and_sendall_after_unwrap_are_the_plain_sockets(pair):
    server, client = pair
    server.settimeout(5)
    closing = ptsevent.spawn(client.unwrap)
    server.unwrap()
    closing.get()
    # The same objects, TLS gone: the plain socket's calls.
    client.sendall(b"plain")
    assert server.recv(100) == b"plain"


def test_a_ragged_end_reads_as_end_of_stream_unless_told_otherwise(
        server_ctx, client_ctx):
    import ssl

    for suppress in (True, False):
        a, b = psocket.socketpair()
        accepting = ptsevent.spawn(server_ctx.wrap_socket, b, server_side=True,
                                   suppress_ragged_eofs=suppress)
        client = client_ctx.wrap_socket(a, server_hostname="localhost")
        server = accepting.get()
        server.settimeout(5)
        client.sendall(b"last")
        client.close()  # no close_notify
        assert server.recv(100) == b"last"
        if suppress:
            assert server.recv(100) == b""
        else:
            with pytest.raises(ssl.SSLEOFError):
                server.recv(100)
        server.close()


def test_recv_and_sendall_keep_no_references(pair):
    import sys

    server, client = pair
    server.settimeout(5)
    data = b"y" * 3000
    before = sys.getrefcount(data), sys.getrefcount(server._sslobj)
    for _ in range(100):
        client.sendall(data)
        server.recv(3000)
    assert (sys.getrefcount(data), sys.getrefcount(server._sslobj)) == before


def test_recv_and_sendall_have_the_standard_signatures():
    import inspect
    import ssl

    import ptsevent.ssl

    for name in ("recv", "sendall"):
        ours = getattr(ptsevent.ssl.SSLSocket, name)
        theirs = getattr(ssl.SSLSocket, name)
        # After self (positional-only in a C method), the same parameters.
        assert (list(inspect.signature(ours).parameters.values())[1:] ==
                list(inspect.signature(theirs).parameters.values())[1:])
        assert ours.__doc__


def test_bulk_reads_in_spawned_tasklets_while_others_run(pair):
    server, client = pair
    server.settimeout(5)
    message = bytes(range(256)) * (4 * 1024)  # 1 MiB: whole records
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            ptsevent.sleep(0.001)

    def read_all():
        got = bytearray()
        while len(got) < len(message):
            got += server.recv(65536)
        return bytes(got)

    ticking = ptsevent.spawn(ticker)
    reader = ptsevent.spawn(read_all)
    writer = ptsevent.spawn(client.sendall, message)
    assert reader.get() == message
    writer.get()
    ticking.kill()
    assert len(ticks) > 1

"""ptsevent.socket: the standard socket contract, kept cooperatively.

Where `socket.socket` defines a behaviour, the test is parametrized over the
standard `socket` module (used with real blocking, concurrency from plain
threads) and `ptsevent.socket` (concurrency from tasklets), so that any
difference between the two shows up as a failure of the ptsevent variant.
The cooperation tests (other tasklets keep running, many connections, shared
sockets, close/kill/Timeout while waiting) concern ptsevent alone.

Everything runs on real sockets bound to 127.0.0.1.
"""

import errno
import gc
import hashlib
import os
import pickle
import random
import socket as stdsocket
import struct
import threading
import time
import warnings

import pytest

import ptsevent
import ptsevent.socket as psocket
from support import background as _background
from socket import (
    AF_INET,
    AF_UNIX,
    SHUT_WR,
    SO_ERROR,
    SO_LINGER,
    SO_REUSEADDR,
    SOCK_DGRAM,
    SOCK_NONBLOCK,
    SOCK_STREAM,
    SOL_SOCKET,
)

IMPLS = [
    pytest.param(stdsocket, id="stdlib"),
    pytest.param(psocket, id="ptsevent"),
]

LOCAL = "127.0.0.1"
MiB = 1 << 20


# --- helpers ----------------------------------------------------------------


def background(mod, fn, *args, **kwargs):
    """Run fn concurrently: in a tasklet for ptsevent, in a thread for stdlib."""
    return _background(mod is psocket, fn, *args, **kwargs)


def pause(mod, seconds):
    (ptsevent.sleep if mod is psocket else time.sleep)(seconds)


@pytest.fixture
def default_timeout():
    """Set socket.setdefaulttimeout() for one test, restoring it afterwards."""
    saved = stdsocket.getdefaulttimeout()
    yield stdsocket.setdefaulttimeout
    stdsocket.setdefaulttimeout(saved)


def listener(mod, track, backlog=16):
    srv = track(mod.socket(AF_INET, SOCK_STREAM))
    srv.bind((LOCAL, 0))
    srv.listen(backlog)
    return srv


def tcp_pair(mod, track, peer=None):
    """A connected TCP pair (client of `mod`, accepted side of `peer`)."""
    peer = peer or mod
    srv = listener(peer, track)
    cli = track(mod.socket(AF_INET, SOCK_STREAM))
    cli.connect(srv.getsockname())
    conn, _ = srv.accept()
    track(conn)
    srv.close()
    return cli, conn


def unused_port():
    """A local TCP port nobody listens on (bound once, then released)."""
    s = stdsocket.socket()
    s.bind((LOCAL, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def full_listener(track):
    """A listening address whose accept queue is full: connects hang there."""
    srv = track(stdsocket.socket())
    srv.bind((LOCAL, 0))
    srv.listen(0)
    addr = srv.getsockname()
    for _ in range(8):
        c = track(stdsocket.socket())
        c.setblocking(False)
        c.connect_ex(addr)
    time.sleep(0.05)
    return addr


def recv_exactly(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def recv_all(sock, size=65536):
    parts = []
    while True:
        chunk = sock.recv(size)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def fill_send_buffer(sock):
    """Send on a non-blocking socket until the kernel refuses more.

    The loopback may still move queued data to the peer's receive buffer
    for a moment after the first refusal, so fill again until a round
    after a short pause takes nothing more."""
    saved = sock.gettimeout()
    sock.setblocking(False)
    total = 0
    try:
        for _ in range(50):
            took = 0
            for _ in range(100_000):
                try:
                    took += sock.send(b"f" * 65536)
                except BlockingIOError:
                    break
            else:
                raise AssertionError("send buffer never filled")
            total += took
            if took == 0:
                return total
            time.sleep(0.01)
        raise AssertionError("send buffer never stayed full")
    finally:
        sock.settimeout(saved)


def io_stats():
    s = ptsevent.hub_stats()
    return s["io_handles"], s["io_waiters"]


# --- timeouts ---------------------------------------------------------------


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("size", [10, 300000, 4 * MiB])
def test_recv_timeout_raises_timeouterror_timed_out(mod, track, size):
    a, _b = tcp_pair(mod, track)
    a.settimeout(0.1)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as ei:
        a.recv(size)
    elapsed = time.monotonic() - t0
    assert str(ei.value) == "timed out"
    assert 0.08 <= elapsed < 2


@pytest.mark.parametrize("mod", IMPLS)
def test_recv_into_timeout_raises_timeouterror(mod, track):
    a, _b = tcp_pair(mod, track)
    a.settimeout(0.05)
    with pytest.raises(TimeoutError, match="^timed out$"):
        a.recv_into(bytearray(10))


@pytest.mark.parametrize("mod", IMPLS)
def test_accept_timeout_raises_timeouterror(mod, track):
    srv = listener(mod, track)
    srv.settimeout(0.1)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="^timed out$"):
        srv.accept()
    assert 0.08 <= time.monotonic() - t0 < 2


@pytest.mark.parametrize("mod", IMPLS)
def test_connect_timeout_raises_timeouterror(mod, track):
    addr = full_listener(track)
    c = track(mod.socket())
    c.settimeout(0.2)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="^timed out$"):
        c.connect(addr)
    assert 0.15 <= time.monotonic() - t0 < 3


@pytest.mark.parametrize("mod", IMPLS)
def test_send_timeout_when_peer_does_not_read_raises_timeouterror(mod, track):
    a, _b = tcp_pair(mod, track)
    a.settimeout(0.1)
    chunk = b"x" * 65536
    with pytest.raises(TimeoutError, match="^timed out$"):
        for _ in range(2000):  # far more than any socket buffer holds
            a.send(chunk)
    with pytest.raises(TimeoutError, match="^timed out$"):
        a.sendall(b"x" * (32 * MiB))


@pytest.mark.parametrize("mod", IMPLS)
def test_recvfrom_timeout_on_udp_raises_timeouterror(mod, track):
    u = track(mod.socket(AF_INET, SOCK_DGRAM))
    u.bind((LOCAL, 0))
    u.settimeout(0.05)
    with pytest.raises(TimeoutError, match="^timed out$"):
        u.recvfrom(100)


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize(
    "value, expected", [(None, None), (0, 0.0), (0.5, 0.5), (3, 3.0), (True, 1.0)]
)
def test_settimeout_then_gettimeout_and_timeout_attribute(mod, track, value, expected):
    s = track(mod.socket())
    s.settimeout(value)
    assert s.gettimeout() == expected
    assert type(s.gettimeout()) is type(expected)
    assert s.timeout == expected
    assert s.getblocking() is (expected != 0.0)


@pytest.mark.parametrize("mod", IMPLS)
def test_setblocking_sets_timeout_none_or_zero(mod, track):
    s = track(mod.socket())
    s.setblocking(False)
    assert s.gettimeout() == 0.0
    assert s.getblocking() is False
    s.setblocking(True)
    assert s.gettimeout() is None
    assert s.getblocking() is True
    s.settimeout(2)
    assert s.getblocking() is True
    s.settimeout(0.0)
    assert s.getblocking() is False


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("bad", [-1, -0.001, -1e6])
def test_settimeout_negative_raises_valueerror(mod, track, bad):
    s = track(mod.socket())
    s.settimeout(1.5)
    with pytest.raises(ValueError):
        s.settimeout(bad)
    assert s.gettimeout() == 1.5


@pytest.mark.parametrize("mod", IMPLS)
def test_settimeout_nan_raises_valueerror(mod, track):
    s = track(mod.socket())
    with pytest.raises(ValueError):
        s.settimeout(float("nan"))


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize(
    "bad", ["1", "abc", b"1", [1], object()],
    ids=["str_1", "str_abc", "bytes_1", "list", "object"],
)
def test_settimeout_non_number_raises_typeerror(mod, track, bad):
    s = track(mod.socket())
    with pytest.raises(TypeError):
        s.settimeout(bad)
    assert s.gettimeout() is None


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("huge", [1e300, float("inf"), 2**63])
def test_settimeout_too_large_raises_overflowerror(mod, track, huge):
    s = track(mod.socket())
    with pytest.raises(OverflowError):
        s.settimeout(huge)


@pytest.mark.parametrize("mod", IMPLS)
def test_new_sockets_take_the_default_timeout(mod, track, default_timeout):
    default_timeout(0.25)
    s = track(mod.socket())
    assert s.gettimeout() == 0.25
    a, b = mod.socketpair()
    track(a), track(b)
    assert a.gettimeout() == b.gettimeout() == 0.25
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        a.recv(1)
    assert 0.2 <= time.monotonic() - t0 < 2
    default_timeout(None)
    assert track(mod.socket()).gettimeout() is None


@pytest.mark.parametrize("mod", IMPLS)
def test_accepted_socket_timeout_follows_default_not_listener(mod, track, default_timeout):
    srv = listener(mod, track)
    srv.settimeout(5)
    c1 = track(mod.socket())
    c1.connect(srv.getsockname())
    conn, _ = srv.accept()
    track(conn)
    assert conn.gettimeout() is None  # default None: blocking, not 5
    default_timeout(0.75)
    c2 = track(mod.socket())
    c2.connect(srv.getsockname())
    conn2, _ = srv.accept()
    track(conn2)
    assert conn2.gettimeout() == 0.75


@pytest.mark.parametrize("mod", IMPLS)
def test_socket_created_with_sock_nonblock_is_non_blocking(mod, track):
    s = track(mod.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK))
    assert s.type is SOCK_STREAM
    assert s.gettimeout() == 0.0
    assert s.getblocking() is False


# --- recv / recv_into / send argument contract -------------------------------


@pytest.mark.parametrize("mod", IMPLS)
def test_recv_zero_bytes_with_data_pending_returns_empty_and_consumes_nothing(mod, track):
    a, b = tcp_pair(mod, track)
    b.sendall(b"data")
    time.sleep(0.02)
    assert a.recv(0) == b""
    assert recv_exactly(a, 4) == b"data"


def _recv_zero_on_idle_socket(mod, track):
    """(result, seconds) of recv(0) on an idle blocking socket.

    A byte arrives after 0.5 s, so a recv(0) that waits for data ends then."""
    a, b = tcp_pair(mod, track, peer=stdsocket)
    assert a.gettimeout() is None
    timer = threading.Timer(0.5, b.sendall, [b"!"])
    timer.start()
    try:
        t0 = time.monotonic()
        got = a.recv(0)
        return got, time.monotonic() - t0
    finally:
        timer.cancel()
        timer.join()


def test_recv_zero_bytes_on_idle_socket_waits_exactly_when_the_stdlib_does(track):
    # Whether a blocking recv(0) with nothing pending returns at once or
    # waits for data is up to the kernel; ptsevent must do what the
    # standard socket does on this kernel.
    std_got, std_seconds = _recv_zero_on_idle_socket(stdsocket, track)
    got, seconds = _recv_zero_on_idle_socket(psocket, track)
    assert std_got == got == b""
    std_waited = std_seconds >= 0.4
    waited = seconds >= 0.4
    assert waited == std_waited, (
        f"stdlib recv(0) took {std_seconds:.2f}s, ptsevent {seconds:.2f}s")


@pytest.mark.parametrize("mod", IMPLS)
def test_recv_negative_size_raises_valueerror(mod, track):
    a, _b = tcp_pair(mod, track)
    with pytest.raises(ValueError):
        a.recv(-1)


@pytest.mark.parametrize("mod", IMPLS)
def test_recv_into_fills_buffer_and_returns_count(mod, track):
    a, b = tcp_pair(mod, track)
    b.sendall(b"hello")
    buf = bytearray(10)
    n = 0
    while n < 5:
        n += a.recv_into(memoryview(buf)[n:])
    assert n == 5 and bytes(buf[:5]) == b"hello"
    b.sendall(b"abcdef")
    buf = bytearray(10)
    assert a.recv_into(buf, 3) == 3
    assert bytes(buf[:4]) == b"abc\0"


@pytest.mark.parametrize("mod", IMPLS)
def test_recv_into_bad_sizes_raise_valueerror(mod, track):
    a, b = tcp_pair(mod, track)
    b.sendall(b"x" * 20)
    with pytest.raises(ValueError):
        a.recv_into(bytearray(4), 10)  # buffer too small
    with pytest.raises(ValueError):
        a.recv_into(bytearray(4), -1)
    with pytest.raises(TypeError):
        a.recv_into(b"immutable")


@pytest.mark.parametrize("mod", IMPLS)
def test_send_returns_count_and_sendall_returns_none(mod, track):
    a, b = tcp_pair(mod, track)
    assert a.send(b"abc") == 3
    assert a.sendall(bytearray(b"def")) is None
    assert a.sendall(memoryview(b"ghi")) is None
    assert recv_exactly(b, 9) == b"abcdefghi"
    with pytest.raises(TypeError):
        a.sendall("text")


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("call", ["send", "sendall", "recv", "recv_into"])
def test_io_on_closed_socket_raises_ebadf(mod, track, call):
    a, _b = tcp_pair(mod, track)
    a.close()
    args = {"send": (b"x",), "sendall": (b"x",), "recv": (1,),
            "recv_into": (bytearray(1),)}[call]
    with pytest.raises(OSError) as ei:
        getattr(a, call)(*args)
    assert ei.value.errno == errno.EBADF


@pytest.mark.parametrize("mod", IMPLS)
def test_recv_returns_empty_bytes_after_peer_closes(mod, track):
    a, b = tcp_pair(mod, track)
    b.sendall(b"last")
    b.close()
    assert recv_all(a) == b"last"
    assert a.recv(10) == b""


@pytest.mark.parametrize("mod", IMPLS)
def test_recv_of_any_size_returns_what_was_sent_in_order(mod, track):
    # Request sizes around the receive paths' thresholds (64 KiB and 256 KiB
    # buffers, large reads predicting large reads), messages of every size
    # class, a large message followed by small ones and the other way round.
    a, b = tcp_pair(mod, track)
    rng = random.Random(7)
    sizes = [1, 1000, 40000, 65535, 65536, 65537, 131072, 262144, 262145, MiB]
    lengths = [1, 10, 4096, 33000, 70000, 200000, 300000, 5, 64 * 1024, 1]
    for asked in sizes:
        for length in lengths:
            msg = rng.randbytes(length)
            job = background(mod, b.sendall, msg)
            got = bytearray()
            while len(got) < length:
                part = a.recv(asked)
                assert 0 < len(part) <= min(asked, length - len(got))
                assert type(part) is bytes
                got += part
            job.result()
            assert got == msg
    # A large request at the end of the stream returns what is left, then b"".
    b.sendall(b"tail")
    b.shutdown(SHUT_WR)
    assert a.recv(4 * MiB) == b"tail"
    assert a.recv(4 * MiB) == b""


# --- connect ------------------------------------------------------------------


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("timeout", [None, 2.0])
def test_connect_to_closed_port_raises_connectionrefused(mod, track, timeout):
    c = track(mod.socket())
    c.settimeout(timeout)
    with pytest.raises(ConnectionRefusedError) as ei:
        c.connect((LOCAL, unused_port()))
    assert ei.value.errno == errno.ECONNREFUSED


@pytest.mark.parametrize("mod", IMPLS)
def test_connect_ex_returns_zero_or_the_errno(mod, track):
    srv = listener(mod, track)
    ok = track(mod.socket())
    assert ok.connect_ex(srv.getsockname()) == 0
    refused = track(mod.socket())
    assert refused.connect_ex((LOCAL, unused_port())) == errno.ECONNREFUSED
    nb = track(mod.socket())
    nb.setblocking(False)
    assert nb.connect_ex(srv.getsockname()) in (0, errno.EINPROGRESS)


@pytest.mark.parametrize("mod", IMPLS)
def test_connect_ex_timeout_returns_ewouldblock(mod, track):
    addr = full_listener(track)
    c = track(mod.socket())
    c.settimeout(0.15)
    t0 = time.monotonic()
    assert c.connect_ex(addr) == errno.EWOULDBLOCK
    assert 0.1 <= time.monotonic() - t0 < 3


@pytest.mark.parametrize("mod", IMPLS)
def test_connect_on_closed_socket_raises_ebadf(mod, track):
    srv = listener(mod, track)
    c = mod.socket()
    c.close()
    with pytest.raises(OSError) as ei:
        c.connect(srv.getsockname())
    assert ei.value.errno == errno.EBADF


# --- non-blocking mode (timeout 0) ------------------------------------------------


@pytest.mark.parametrize("mod", IMPLS)
def test_non_blocking_mode_raises_blockingioerror(mod, track):
    a, b = tcp_pair(mod, track)
    a.setblocking(False)
    with pytest.raises(BlockingIOError) as ei:
        a.recv(10)
    assert ei.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    with pytest.raises(BlockingIOError):
        a.recv_into(bytearray(10))
    fill_send_buffer(a)
    a.setblocking(False)
    with pytest.raises(BlockingIOError):
        a.send(b"x" * 65536)
    with pytest.raises(BlockingIOError):
        a.sendall(b"x" * 65536)
    b.sendall(b"ready")
    time.sleep(0.02)
    assert a.recv(10) == b"ready"


@pytest.mark.parametrize("mod", IMPLS)
def test_non_blocking_accept_and_connect_raise_blockingioerror(mod, track):
    srv = listener(mod, track)
    srv.setblocking(False)
    with pytest.raises(BlockingIOError):
        srv.accept()
    c = track(mod.socket())
    c.setblocking(False)
    try:
        c.connect(srv.getsockname())
    except BlockingIOError as e:
        assert e.errno == errno.EINPROGRESS
    for _ in range(200):
        try:
            conn, _ = srv.accept()
            break
        except BlockingIOError:
            pause(mod, 0.005)
    else:
        raise AssertionError("connection never became acceptable")
    track(conn)
    assert c.getsockopt(SOL_SOCKET, SO_ERROR) == 0


@pytest.mark.parametrize("mod", IMPLS)
def test_udp_sendto_recvfrom_and_non_blocking_recvfrom(mod, track):
    u1 = track(mod.socket(AF_INET, SOCK_DGRAM))
    u1.bind((LOCAL, 0))
    u2 = track(mod.socket(AF_INET, SOCK_DGRAM))
    u2.bind((LOCAL, 0))
    assert u2.sendto(b"dgram", u1.getsockname()) == 5
    data, addr = u1.recvfrom(100)
    assert (data, addr) == (b"dgram", u2.getsockname())
    buf = bytearray(10)
    u2.sendto(b"into", u1.getsockname())
    assert u1.recvfrom_into(buf) == (4, u2.getsockname())
    u1.setblocking(False)
    with pytest.raises(BlockingIOError):
        u1.recvfrom(100)


# --- makefile ----------------------------------------------------------------------


@pytest.mark.parametrize("mod", IMPLS)
def test_makefile_binary_readline_write_flush_and_iteration(mod, track):
    a, b = tcp_pair(mod, track)
    f = a.makefile("rwb")
    try:
        b.sendall(b"one\ntwo\nthree\n")
        assert f.readline() == b"one\n"
        f.write(b"reply\n")
        assert f.flush() is None
        assert recv_exactly(b, 6) == b"reply\n"
        b.sendall(b"four\nno-newline")
        b.shutdown(SHUT_WR)
        assert list(f) == [b"two\n", b"three\n", b"four\n", b"no-newline"]
        assert f.read() == b""
    finally:
        f.close()


@pytest.mark.parametrize("mod", IMPLS)
def test_makefile_text_mode_decodes_and_encodes(mod, track):
    a, b = tcp_pair(mod, track)
    fr = a.makefile("r", encoding="utf-8", newline="")
    fw = a.makefile("w", encoding="utf-8")
    try:
        b.sendall("héllo\nwörld\r\n".encode())
        assert fr.readline() == "héllo\n"
        fw.write("ünïcode ✓\n")
        fw.flush()
        expected = "ünïcode ✓\n".encode()
        assert recv_exactly(b, len(expected)) == expected
        b.sendall("last line".encode())
        b.shutdown(SHUT_WR)
        assert [line for line in fr] == ["wörld\r\n", "last line"]
    finally:
        fr.close()
        fw.close()


@pytest.mark.parametrize("mod", IMPLS)
def test_makefile_unbuffered_read(mod, track):
    a, b = tcp_pair(mod, track)
    with a.makefile("rb", buffering=0) as raw:
        b.sendall(b"raw bytes")
        got = b""
        while len(got) < 9:
            got += raw.read(9 - len(got))
        assert got == b"raw bytes"


@pytest.mark.parametrize("mod", IMPLS)
def test_makefile_readline_times_out_with_socket_timeout(mod, track):
    a, _b = tcp_pair(mod, track)
    a.settimeout(0.05)
    with a.makefile("rb") as f:
        with pytest.raises(TimeoutError, match="^timed out$"):
            f.readline()


@pytest.mark.parametrize("mod", IMPLS)
def test_makefile_keeps_descriptor_open_until_file_closed(mod, track):
    a, b = tcp_pair(mod, track)
    f = a.makefile("rwb")
    a.close()  # the descriptor stays open while the file uses it
    f.write(b"still open\n")
    f.flush()
    assert recv_exactly(b, 11) == b"still open\n"
    b.sendall(b"back\n")
    assert f.readline() == b"back\n"
    f.close()
    assert a.fileno() == -1


# --- sendall with a timeout covers the whole call ------------------------------


@pytest.mark.parametrize("mod", IMPLS)
def test_sendall_timeout_bounds_the_whole_call(mod, track):
    a, b = tcp_pair(mod, track)
    stop = []

    def slow_reader():
        total = 0
        while not stop:
            data = b.recv(4096)
            if not data:
                break
            total += len(data)
            pause(mod, 0.005)
        return total

    job = background(mod, slow_reader)
    a.settimeout(0.5)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="^timed out$"):
        a.sendall(b"s" * (64 * MiB))  # would take minutes at the reader's pace
    elapsed = time.monotonic() - t0
    stop.append(True)
    assert job.result() > 0  # progress was made, yet the deadline held
    assert 0.4 <= elapsed < 3


# --- peer reset during sendall ---------------------------------------------------


@pytest.mark.parametrize("mod", IMPLS)
def test_peer_reset_during_sendall_raises_reset_or_broken_pipe(mod, track):
    a, b = tcp_pair(mod, track)

    def read_some_then_reset():
        got = 0
        while got < MiB:
            data = b.recv(65536)
            if not data:
                break
            got += len(data)
        b.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))
        b.close()
        return got

    job = background(mod, read_some_then_reset)
    a.settimeout(10)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        a.sendall(b"r" * (64 * MiB))
    assert job.result() >= MiB


@pytest.mark.parametrize("mod", IMPLS)
def test_last_data_and_reset_together_end_a_read_loop_at_once(mod, track):
    # The last bytes and the peer's reset arrive before the reader looks:
    # it gets the bytes, then ConnectionResetError, without waiting for more
    # (both come on one epoll edge, and a short read does not prove that
    # nothing else is pending).
    a, b = tcp_pair(mod, track)
    a.settimeout(5)
    job = background(mod, a.recv, 1)  # waits first: a is watched by epoll
    pause(mod, 0.02)
    b.sendall(b"x")
    assert job.result() == b"x"
    b.sendall(b"last words")
    b.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))
    b.close()
    pause(mod, 0.05)
    got = b""
    start = time.monotonic()
    with pytest.raises(ConnectionResetError):
        while True:
            data = a.recv(4096)
            assert data, "EOF instead of the reset"
            got += data
    assert got == b"last words"
    assert time.monotonic() - start < 1


# --- accept, family/type/proto, dup, detach, fileno, context manager ------------


@pytest.mark.parametrize("mod", IMPLS)
def test_accept_returns_connected_socket_of_the_same_module(mod, track):
    srv = listener(mod, track)
    cli = track(mod.socket())
    cli.connect(srv.getsockname())
    conn, addr = srv.accept()
    track(conn)
    assert type(conn) is mod.socket
    assert addr == cli.getsockname() == conn.getpeername()
    assert (conn.family, conn.type, conn.proto) == (srv.family, srv.type, srv.proto)
    cli.sendall(b"ping")
    assert recv_exactly(conn, 4) == b"ping"
    conn.sendall(b"pong")
    assert recv_exactly(cli, 4) == b"pong"


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("stype", [SOCK_STREAM, SOCK_DGRAM])
def test_family_type_proto(mod, track, stype):
    s = track(mod.socket(AF_INET, stype))
    assert s.family is stdsocket.AddressFamily.AF_INET
    assert s.type is stype
    assert s.proto == 0
    default = track(mod.socket())
    assert (default.family, default.type) == (AF_INET, SOCK_STREAM)
    assert isinstance(s, stdsocket.socket)


@pytest.mark.parametrize("mod", IMPLS)
def test_dup_shares_the_connection_and_copies_the_timeout(mod, track):
    a, b = tcp_pair(mod, track)
    a.settimeout(1.5)
    d = track(a.dup())
    assert type(d) is mod.socket
    assert d.fileno() != a.fileno()
    assert d.gettimeout() == 1.5
    assert (d.family, d.type, d.proto) == (a.family, a.type, a.proto)
    a.close()
    d.sendall(b"via dup")
    assert recv_exactly(b, 7) == b"via dup"
    b.sendall(b"to dup")
    assert recv_exactly(d, 6) == b"to dup"


@pytest.mark.parametrize("mod", IMPLS)
def test_detach_returns_the_descriptor_and_leaves_socket_closed(mod, track):
    a, b = tcp_pair(mod, track)
    fd_before = a.fileno()
    fd = a.detach()
    assert fd == fd_before
    assert a.fileno() == -1
    plain = track(stdsocket.socket(fileno=fd))  # owns fd from now on
    b.sendall(b"after detach")
    time.sleep(0.02)
    assert recv_exactly(plain, 12) == b"after detach"
    with pytest.raises(OSError) as ei:
        a.recv(1)
    assert ei.value.errno == errno.EBADF


@pytest.mark.parametrize("mod", IMPLS)
def test_detached_descriptor_of_a_blocking_socket_blocks_in_plain_code(mod, track):
    a, b = tcp_pair(mod, track, peer=stdsocket)
    assert a.gettimeout() is None
    fd = a.detach()
    plain = track(stdsocket.socket(fileno=fd))
    timer = threading.Timer(0.1, b.sendall, [b"late"])
    timer.start()
    try:
        assert plain.recv(10) == b"late"  # a blocking descriptor waits for it
    finally:
        timer.join()


@pytest.mark.parametrize("mod", IMPLS)
def test_fileno_is_the_descriptor_and_minus_one_after_close(mod, track):
    s = mod.socket()
    fd = s.fileno()
    assert isinstance(fd, int) and fd >= 0
    assert os.fstat(fd)
    s.close()
    assert s.fileno() == -1
    s.close()  # closing twice is fine


@pytest.mark.parametrize("mod", IMPLS)
def test_context_manager_returns_socket_and_closes_it(mod, track):
    srv = listener(mod, track)
    with mod.socket() as s:
        assert isinstance(s, mod.socket)
        s.connect(srv.getsockname())
        conn, _ = srv.accept()
        track(conn)
    assert s.fileno() == -1
    assert recv_all(conn) == b""  # the peer sees the close


@pytest.mark.parametrize("mod", IMPLS)
def test_socket_cannot_be_pickled(mod, track):
    s = track(mod.socket())
    with pytest.raises(TypeError):
        pickle.dumps(s)


@pytest.mark.parametrize("mod", IMPLS)
def test_sendfile_sends_the_whole_file_and_advances_offset(mod, track, tmp_path):
    payload = random.randbytes(MiB + 123)
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    a, b = tcp_pair(mod, track)
    job = background(mod, lambda: recv_exactly(b, len(payload)))
    with open(path, "rb") as f:
        assert a.sendfile(f) == len(payload)
        assert f.tell() == len(payload)
    assert job.result() == payload


# --- module-level helpers ------------------------------------------------------


@pytest.mark.parametrize("mod", IMPLS)
def test_create_connection_returns_socket_with_the_given_timeout(mod, track):
    srv = listener(mod, track)
    c = track(mod.create_connection(srv.getsockname(), timeout=0.7))
    assert type(c) is mod.socket
    assert c.gettimeout() == 0.7
    assert c.getpeername() == srv.getsockname()
    c2 = track(mod.create_connection(srv.getsockname()))
    assert c2.gettimeout() is None  # the default timeout when not given
    c3 = track(mod.create_connection(srv.getsockname(), None))
    assert c3.gettimeout() is None


@pytest.mark.parametrize("mod", IMPLS)
def test_create_connection_timeout_bounds_the_connect(mod, track):
    addr = full_listener(track)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        mod.create_connection(addr, timeout=0.2)
    assert 0.15 <= time.monotonic() - t0 < 3


@pytest.mark.parametrize("mod", IMPLS)
def test_create_connection_tries_every_address(mod, track, monkeypatch):
    srv = listener(mod, track)
    dead = (LOCAL, unused_port())
    infos = [
        (AF_INET, SOCK_STREAM, 6, "", dead),
        (AF_INET, SOCK_STREAM, 6, "", srv.getsockname()),
    ]
    monkeypatch.setattr(mod, "getaddrinfo", lambda *args, **kwargs: infos)
    c = track(mod.create_connection(("two-addresses.test", 1234), timeout=2))
    assert c.getpeername() == srv.getsockname()


@pytest.mark.parametrize("mod", IMPLS)
def test_create_connection_raises_last_error_or_group_when_all_fail(mod, track, monkeypatch):
    infos = [(AF_INET, SOCK_STREAM, 6, "", (LOCAL, unused_port())) for _ in range(2)]
    monkeypatch.setattr(mod, "getaddrinfo", lambda *args, **kwargs: infos)
    with pytest.raises(ConnectionRefusedError):
        mod.create_connection(("nowhere.test", 1))
    with pytest.raises(ExceptionGroup) as ei:
        mod.create_connection(("nowhere.test", 1), all_errors=True)
    assert len(ei.value.exceptions) == 2
    assert all(isinstance(e, ConnectionRefusedError) for e in ei.value.exceptions)


@pytest.mark.parametrize("mod", IMPLS)
def test_create_connection_binds_source_address(mod, track):
    srv = listener(mod, track)
    port = unused_port()
    c = track(mod.create_connection(srv.getsockname(), source_address=(LOCAL, port)))
    conn, addr = srv.accept()
    track(conn)
    assert c.getsockname() == (LOCAL, port) == addr


@pytest.mark.parametrize("mod", IMPLS)
def test_create_server_listens_and_accepts(mod, track):
    srv = track(mod.create_server((LOCAL, 0)))
    assert type(srv) is mod.socket
    assert (srv.family, srv.type) == (AF_INET, SOCK_STREAM)
    assert srv.getsockname()[0] == LOCAL
    assert srv.getsockopt(SOL_SOCKET, SO_REUSEADDR)
    c = track(mod.create_connection(srv.getsockname()))
    conn, _ = srv.accept()
    track(conn)
    assert type(conn) is mod.socket
    c.sendall(b"hi")
    assert recv_exactly(conn, 2) == b"hi"


@pytest.mark.parametrize("mod", IMPLS)
def test_socketpair_returns_two_connected_sockets(mod, track):
    a, b = mod.socketpair()
    track(a), track(b)
    assert type(a) is type(b) is mod.socket
    assert (a.family, a.type) == (AF_UNIX, SOCK_STREAM)
    assert a.gettimeout() is None
    a.sendall(b"left")
    assert recv_exactly(b, 4) == b"left"
    b.sendall(b"right")
    assert recv_exactly(a, 5) == b"right"
    x, y = mod.socketpair(AF_UNIX, SOCK_DGRAM)
    track(x), track(y)
    assert x.type is SOCK_DGRAM
    x.send(b"one datagram")
    assert y.recv(100) == b"one datagram"


@pytest.mark.parametrize("mod", IMPLS)
def test_fromfd_builds_a_socket_on_a_duplicate(mod, track):
    a, b = tcp_pair(stdsocket, track)
    f = track(mod.fromfd(a.fileno(), AF_INET, SOCK_STREAM))
    assert type(f) is mod.socket
    assert f.fileno() != a.fileno()
    assert (f.family, f.type) == (AF_INET, SOCK_STREAM)
    f.sendall(b"via fromfd")
    assert recv_exactly(b, 10) == b"via fromfd"
    f.close()
    a.sendall(b"original still works")
    assert recv_exactly(b, 20) == b"original still works"


@pytest.mark.parametrize("mod", IMPLS)
def test_fromfd_leaves_the_original_blocking_socket_blocking(mod, track):
    a, b = tcp_pair(stdsocket, track)
    assert a.gettimeout() is None
    f = mod.fromfd(a.fileno(), AF_INET, SOCK_STREAM)
    f.close()
    timer = threading.Timer(0.1, b.sendall, [b"late"])
    timer.start()
    try:
        assert a.recv(10) == b"late"  # still a blocking recv on the original
    finally:
        timer.join()


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_getaddrinfo_and_gethostbyname_on_local_names(mod, host):
    infos = mod.getaddrinfo(host, 80, AF_INET, SOCK_STREAM)
    assert infos == stdsocket.getaddrinfo(host, 80, AF_INET, SOCK_STREAM)
    assert (AF_INET, SOCK_STREAM, 6, "", (LOCAL, 80)) in infos
    assert infos[0][0] is stdsocket.AddressFamily.AF_INET
    kw = mod.getaddrinfo(host, 80, family=AF_INET, type=SOCK_STREAM)
    assert kw == infos
    assert mod.gethostbyname(host) == LOCAL


@pytest.mark.parametrize("mod", IMPLS)
def test_getaddrinfo_bad_service_raises_gaierror(mod):
    with pytest.raises(stdsocket.gaierror):
        mod.getaddrinfo(LOCAL, "no-such-service-name", AF_INET, SOCK_STREAM)


def test_module_reexports_constants_and_errors():
    assert psocket.AF_INET == stdsocket.AF_INET
    assert psocket.SOCK_STREAM == stdsocket.SOCK_STREAM
    assert psocket.timeout is TimeoutError
    assert psocket.error is OSError
    assert psocket.gaierror is stdsocket.gaierror
    assert psocket.getdefaulttimeout is stdsocket.getdefaulttimeout


def test_syncless_aliases(track):
    assert psocket.socket_compat is psocket.socket
    assert psocket.realsocket_compat is psocket.socket
    assert psocket.socket_fromfd is psocket.fromfd
    s = track(psocket.socket_compat(AF_INET, SOCK_STREAM))
    assert isinstance(s, psocket.socket)
    d = track(psocket.socket_fromfd(s.fileno(), AF_INET, SOCK_STREAM))
    assert type(d) is psocket.socket


def test_socketfile_compat_is_the_cooperative_file_of_a_socket(track):
    a, b = tcp_pair(psocket, track)
    f = psocket.socketfile_compat(a, "rwb")
    ticker, ticks = start_ticker()
    try:
        def later():
            ptsevent.sleep(0.1)
            b.sendall(b"first line\nsecond")
            b.shutdown(SHUT_WR)

        ptsevent.spawn(later)
        assert f.readline() == b"first line\n"  # waited without blocking the hub
        assert ticks[0] >= 5
        assert f.read() == b"second"
        f.write(b"back\n")
        f.flush()
        assert b.recv(10) == b"back\n"
    finally:
        ticker.kill()
        f.close()
    t = psocket.socketfile_compat(b, "r", encoding="ascii")
    assert t.encoding == "ascii" and t.readable() and not t.writable()
    t.close()
    plain = track(stdsocket.socket())
    with pytest.raises(TypeError, match="ptsevent socket"):
        psocket.socketfile_compat(plain)


# --- cooperation: the rest of the program keeps running -----------------------------


def start_ticker():
    ticks = [0]

    def tick():
        while True:
            ptsevent.sleep(0.01)
            ticks[0] += 1

    return ptsevent.spawn(tick), ticks


def _blocks_in_recv(track):
    a, b = tcp_pair(psocket, track)
    ptsevent.spawn_later(0.3, b.sendall, b"wake")
    return lambda: a.recv(10) == b"wake"


def _blocks_in_recv_into(track):
    a, b = tcp_pair(psocket, track)
    ptsevent.spawn_later(0.3, b.sendall, b"wake")
    return lambda: a.recv_into(bytearray(10)) == 4


def _blocks_in_accept(track):
    srv = listener(psocket, track)

    def connect_later():
        track(psocket.socket()).connect(srv.getsockname())

    ptsevent.spawn_later(0.3, connect_later)
    return lambda: track(srv.accept()[0]) is not None


def _blocks_in_connect(track):
    addr = full_listener(track)
    c = track(psocket.socket())
    c.settimeout(0.3)

    def op():
        with pytest.raises(TimeoutError):
            c.connect(addr)
        return True

    return op


def _blocks_in_sendall(track):
    a, b = tcp_pair(psocket, track)
    data = b"d" * (16 * MiB)
    ptsevent.spawn_later(0.3, lambda: recv_exactly(b, len(data)))

    def op():
        a.sendall(data)
        return True

    return op


def _blocks_in_makefile_readline(track):
    a, b = tcp_pair(psocket, track)
    f = track(a.makefile("rb"))
    ptsevent.spawn_later(0.3, b.sendall, b"line\n")
    return lambda: f.readline() == b"line\n"


@pytest.mark.parametrize(
    "setup",
    [_blocks_in_recv, _blocks_in_recv_into, _blocks_in_accept, _blocks_in_connect,
     _blocks_in_sendall, _blocks_in_makefile_readline],
    ids=["recv", "recv_into", "accept", "connect", "sendall", "makefile_readline"],
)
def test_other_tasklets_run_while_one_blocks(track, setup):
    op = setup(track)
    ticker, ticks = start_ticker()
    try:
        t0 = time.monotonic()
        assert op() is True
        elapsed = time.monotonic() - t0
    finally:
        ticker.kill()
    assert 0.25 <= elapsed < 5, elapsed  # it really waited for the peer
    assert ticks[0] >= 8, ticks  # about 30 expected; the hub was not blocked


def test_main_blocked_in_recv_is_woken_by_a_tasklet_that_sends(track):
    a, b = tcp_pair(psocket, track)
    sender = ptsevent.spawn(lambda: (ptsevent.sleep(0.05), b.sendall(b"from tasklet")))
    assert recv_exactly(a, 12) == b"from tasklet"
    sender.get(timeout=2)


def test_200_concurrent_clients_all_echo_through_one_server(track):
    n_clients = 200
    srv = track(psocket.create_server((LOCAL, 0), backlog=n_clients + 16))
    addr = srv.getsockname()
    handlers = []

    def handle(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def serve():
        for _ in range(n_clients):
            conn, _ = srv.accept()
            handlers.append(ptsevent.spawn(handle, conn))

    def client(i):
        payload = random.Random(i).randbytes(4000 + i)
        with psocket.socket() as c:
            c.settimeout(15)
            c.connect(addr)
            c.sendall(payload)
            c.shutdown(SHUT_WR)
            return recv_all(c) == payload

    server = ptsevent.spawn(serve)
    clients = [ptsevent.spawn(client, i) for i in range(n_clients)]
    done = ptsevent.joinall(clients, timeout=15)
    assert len(done) == n_clients
    assert [t.get() for t in clients] == [True] * n_clients
    server.get(timeout=5)
    assert len(ptsevent.joinall(handlers, timeout=5)) == n_clients


def test_large_sendall_to_slow_reader_arrives_intact(track):
    a, b = tcp_pair(psocket, track)
    data = random.randbytes(64 * MiB)
    expected = hashlib.sha256(data).hexdigest()

    def slow_reader():
        h = hashlib.sha256()
        total = reads = 0
        while True:
            chunk = b.recv(256 * 1024)
            if not chunk:
                return total, h.hexdigest()
            h.update(chunk)
            total += len(chunk)
            reads += 1
            if reads % 16 == 0:
                ptsevent.sleep(0.001)

    reader = ptsevent.spawn(slow_reader)
    a.sendall(memoryview(data))
    a.shutdown(SHUT_WR)
    assert reader.get(timeout=20) == (len(data), expected)


def test_two_tasklets_reading_one_socket_see_every_byte_exactly_once(track):
    a, b = tcp_pair(psocket, track)
    data = random.randbytes(200 * 1000)
    log = []  # (reader, chunk) in the order the recv calls returned

    def reader(name):
        while True:
            chunk = a.recv(700)
            log.append((name, chunk))
            if not chunk:
                return

    readers = [ptsevent.spawn(reader, "r1"), ptsevent.spawn(reader, "r2")]
    ptsevent.sleep(0.01)
    assert io_stats()[1] == 2  # both are waiting on the same socket
    for i in range(0, len(data), 1000):
        b.sendall(data[i:i + 1000])
        ptsevent.sleep(0.001 if i % 10000 == 0 else 0)
    b.shutdown(SHUT_WR)
    assert len(ptsevent.joinall(readers, timeout=10)) == 2
    for r in readers:
        r.get()
    chunks = [c for _, c in log if c]
    assert all(0 < len(c) <= 700 for c in chunks)
    assert b"".join(chunks) == data
    assert sorted(name for name, c in log if not c) == ["r1", "r2"]  # both saw EOF


def test_one_tasklet_reads_while_another_writes_the_same_socket(track):
    a, b = tcp_pair(psocket, track)
    out_data = random.randbytes(8 * MiB)
    in_data = random.randbytes(8 * MiB)

    def write(sock, data):
        sock.sendall(data)
        sock.shutdown(SHUT_WR)

    def read(sock):
        return hashlib.sha256(recv_all(sock)).hexdigest()

    tasks = [
        ptsevent.spawn(read, a), ptsevent.spawn(write, a, out_data),
        ptsevent.spawn(read, b), ptsevent.spawn(write, b, in_data),
    ]
    assert len(ptsevent.joinall(tasks, timeout=15)) == 4
    results = [t.get() for t in tasks]
    assert results[0] == hashlib.sha256(in_data).hexdigest()
    assert results[2] == hashlib.sha256(out_data).hexdigest()


# --- close / kill / Timeout while waiting -------------------------------------------


def _wait_recv(a):
    return a.recv(10)


def _wait_recv_into(a):
    return a.recv_into(bytearray(10))


def _wait_sendall(a):
    fill_send_buffer(a)
    return a.sendall(b"z" * (4 * MiB))


@pytest.mark.parametrize(
    "wait", [_wait_recv, _wait_recv_into, _wait_sendall], ids=["recv", "recv_into", "sendall"]
)
def test_close_from_another_tasklet_wakes_the_waiter_with_ebadf(track, wait):
    a, _b = tcp_pair(psocket, track)

    def waiter():
        try:
            wait(a)
        except OSError as e:
            return e
        return None

    t = ptsevent.spawn(waiter)
    ptsevent.sleep(0.05)
    assert not t.dead
    assert io_stats() == (1, 1)
    t0 = time.monotonic()
    a.close()
    exc = t.get(timeout=2)
    assert time.monotonic() - t0 < 0.5
    assert isinstance(exc, OSError) and exc.errno == errno.EBADF, exc
    assert io_stats() == (0, 0)


def test_close_from_another_tasklet_wakes_accept_with_ebadf(track):
    srv = listener(psocket, track)

    def waiter():
        try:
            srv.accept()
        except OSError as e:
            return e
        return None

    t = ptsevent.spawn(waiter)
    ptsevent.sleep(0.05)
    assert io_stats() == (1, 1)
    srv.close()
    exc = t.get(timeout=2)
    assert isinstance(exc, OSError) and exc.errno == errno.EBADF, exc
    assert io_stats() == (0, 0)


def test_killing_a_tasklet_blocked_in_recv_leaves_nothing_waiting(track):
    a, b = tcp_pair(psocket, track)
    t = ptsevent.spawn(a.recv, 10)
    ptsevent.sleep(0.05)
    assert io_stats()[1] == 1
    t.kill()
    assert t.dead
    assert io_stats()[1] == 0
    b.sendall(b"after kill")  # the killed recv consumed nothing
    assert recv_exactly(a, 10) == b"after kill"
    a.close()
    b.close()
    assert io_stats() == (0, 0)


def test_timeout_around_recv_raises_it_and_socket_stays_usable(track):
    a, b = tcp_pair(psocket, track)
    a.settimeout(5)
    t0 = time.monotonic()
    with pytest.raises(ptsevent.Timeout) as ei:
        with ptsevent.Timeout(0.1) as timeout:
            a.recv(10)
    assert ei.value is timeout
    assert 0.08 <= time.monotonic() - t0 < 2
    assert io_stats()[1] == 0
    b.sendall(b"usable")
    assert recv_exactly(a, 6) == b"usable"
    a.sendall(b"both ways")
    assert recv_exactly(b, 9) == b"both ways"


def test_socket_dropped_without_close_unregisters_its_event():
    a, b = psocket.socketpair()
    try:
        t = ptsevent.spawn(a.recv, 1)
        ptsevent.sleep(0.02)
        t.kill()
        del t
        assert io_stats()[0] == 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del a
            gc.collect()
        assert io_stats() == (0, 0)
    finally:
        b.close()


def test_one_gib_sendall_to_a_slow_reader_arrives_intact(track):
    block = os.urandom(1 << 20)
    payload = block * 1024  # 1 GiB
    expected = hashlib.sha256(payload).hexdigest()
    a, b = tcp_pair(psocket, track)
    digest = hashlib.sha256()
    received = [0]
    ticks = [0]

    def reader():
        while True:
            chunk = b.recv(1 << 20)
            if not chunk:
                return
            digest.update(chunk)
            received[0] += len(chunk)
            if received[0] % (64 << 20) < len(chunk):
                ptsevent.sleep(0.001)  # a reader that keeps pausing

    def ticker():
        while received[0] < len(payload):
            ticks[0] += 1
            ptsevent.sleep(0.01)

    r = ptsevent.spawn(reader)
    t = ptsevent.spawn(ticker)
    a.sendall(payload)
    a.shutdown(stdsocket.SHUT_WR)
    r.join(60)
    t.join(5)
    assert received[0] == len(payload)
    assert digest.hexdigest() == expected
    assert ticks[0] > 0  # other tasklets ran during the transfer

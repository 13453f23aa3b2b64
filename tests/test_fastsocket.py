"""fastsocket and nbfile: C++-buffered reads and writes over descriptors."""

import errno
import fcntl
import os
import socket as std_socket
import struct
import time

import pytest

import ptsevent
from ptsevent import socket as psocket


_feeders = []


@pytest.fixture
def fastpair():
    a, b = psocket.socketpair()
    fa = psocket.fastsocket(a.family, a.type, a.proto, a.detach())
    yield fa, b
    ptsevent.joinall(_feeders, timeout=5)
    _feeders.clear()
    fa.close()
    b.close()


def feed(sock, *chunks, gap=0.005, close=True):
    def run():
        for c in chunks:
            sock.sendall(c)
            ptsevent.sleep(gap)
        if close:
            sock.close()
    t = ptsevent.spawn(run)
    _feeders.append(t)
    return t


def test_makefile_returns_the_socket_itself(fastpair):
    fa, _ = fastpair
    assert fa.makefile("rb") is fa and fa.makefile("w") is fa


def test_readline_reassembles_lines_split_across_reads(fastpair):
    fa, b = fastpair
    feed(b, b"hel", b"lo\nwor", b"ld\n", b"no newline")
    assert fa.readline() == b"hello\n"
    assert fa.readline() == b"world\n"
    assert fa.readline() == b"no newline"
    assert fa.readline() == b""


def test_readline_limit_and_custom_delimiter(fastpair):
    fa, b = fastpair
    feed(b, b"abcdef\nX;Y;")
    assert fa.readline(3) == b"abc"
    assert fa.readline() == b"def\n"
    assert fa.readline(delim=b";") == b"X;"
    assert fa.readline(-1, b";") == b"Y;"


def test_read_upto_multibyte_delimiter_split_across_reads(fastpair):
    fa, b = fastpair
    feed(b, b"head\r", b"\n\r", b"\nbody")
    assert fa.read_upto(b"\r\n\r\n") == b"head\r\n\r\n"
    assert fa.read() == b"body"


def test_read_n_waits_for_exactly_n_bytes_or_eof(fastpair):
    fa, b = fastpair
    feed(b, b"12", b"345", b"6")
    assert fa.read(4) == b"1234"
    assert fa.read(10) == b"56"
    assert fa.read(10) == b""


def test_find_peek_discard_unread(fastpair):
    fa, b = fastpair
    feed(b, b"key=", b"value;rest")
    assert fa.find(b";") == 9
    assert fa.peek(4) == b"key="
    assert fa.discard(4) == 4
    fa.unread(b"KEY=")
    assert fa.read_upto(b";") == b"KEY=value;"
    assert fa.find(b"#") == -1
    assert fa.read() == b"rest"


def test_iteration_and_readlines(fastpair):
    fa, b = fastpair
    feed(b, b"a\nb\n", b"c\n")
    assert list(fa) == [b"a\n", b"b\n", b"c\n"]
    assert fa.readlines() == []


def test_write_is_buffered_until_flush(fastpair):
    fa, b = fastpair
    assert fa.write(b"abc") == 3
    b.settimeout(0.05)
    with pytest.raises(TimeoutError):
        b.recv(10)
    fa.flush()
    b.settimeout(2)
    assert b.recv(10) == b"abc"


def test_sendall_flushes_the_buffer_first_and_keeps_order(fastpair):
    fa, b = fastpair
    fa.write(b"first,")
    fa.sendall(b"second")
    b.settimeout(2)
    got = b""
    while len(got) < 12:
        got += b.recv(64)
    assert got == b"first,second"


def test_large_write_through_buffer_reaches_a_slow_reader_intact(fastpair):
    fa, b = fastpair
    payload = os.urandom(3 * 1024 * 1024 + 17)
    got = []

    def reader():
        while True:
            chunk = b.recv(65536)
            if not chunk:
                return
            got.append(chunk)
            ptsevent.sleep(0)

    t = ptsevent.spawn(reader)
    for i in range(0, len(payload), 10000):
        fa.write(payload[i:i + 10000])
    fa.flush()
    fa.shutdown(std_socket.SHUT_WR)
    t.join(10)
    assert b"".join(got) == payload


def test_so_rcvtimeo_bounds_reads_with_timeout_error(fastpair):
    fa, _ = fastpair
    fa.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_RCVTIMEO,
                  struct.pack("@ll", 0, 50000))
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        fa.readline()
    assert 0.04 <= time.monotonic() - start < 1.0


def test_fastsocket_refuses_a_python_timeout(fastpair):
    fa, _ = fastpair
    with pytest.raises(ValueError):
        fa.settimeout(1.0)
    assert fa.gettimeout() is None


def test_readline_waits_only_the_calling_tasklet(fastpair):
    fa, b = fastpair
    ticks = []

    def ticker():
        for _ in range(5):
            ticks.append(1)
            ptsevent.sleep(0.01)
        b.sendall(b"done\n")

    ptsevent.spawn(ticker)
    assert fa.readline() == b"done\n"
    assert len(ticks) == 5


def test_close_while_another_tasklet_reads_raises_ebadf():
    a, b = psocket.socketpair()
    fa = psocket.fastsocket(a.family, a.type, a.proto, a.detach())
    t = ptsevent.spawn(fa.readline)
    ptsevent.sleep(0.01)
    fa.close()
    t.join(1)
    assert isinstance(t.exception, OSError) and t.exception.errno == errno.EBADF
    b.close()


def test_nbfile_over_a_pipe_restores_blocking_mode_on_close():
    r, w = os.pipe()
    assert not fcntl.fcntl(r, fcntl.F_GETFL) & os.O_NONBLOCK
    nr = psocket.nbfile(r, closefd=False)
    nw = psocket.nbfile(w, closefd=False)
    assert fcntl.fcntl(r, fcntl.F_GETFL) & os.O_NONBLOCK

    def writer():
        for i in range(3):
            nw.write(b"%d\n" % i)
            nw.flush()
            ptsevent.sleep(0.005)
        nw.close()
        os.close(w)

    ptsevent.spawn(writer)
    assert list(nr) == [b"0\n", b"1\n", b"2\n"]
    nr.close()
    assert not fcntl.fcntl(r, fcntl.F_GETFL) & os.O_NONBLOCK
    os.close(r)


def test_nbfile_rejects_bad_descriptors():
    with pytest.raises(ValueError):
        psocket.nbfile(-1)
    with pytest.raises(TypeError):
        psocket.nbfile("0")
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        psocket.nbfile(r)


def test_read_to_eof_after_last_data_and_reset_together_raises_at_once():
    # As with the plain socket: a reset that comes on the same epoll edge as
    # the last bytes is seen by the next read, not after a timeout.
    srv = psocket.create_server(("127.0.0.1", 0))
    cli = std_socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    srv.close()
    fa = psocket.fastsocket(conn.family, conn.type, conn.proto, conn.detach())
    fa.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_RCVTIMEO, struct.pack("ll", 5, 0))
    try:
        def first():
            return fa.read(1)
        job = ptsevent.spawn(first)  # waits first: the socket is watched
        ptsevent.sleep(0.02)
        cli.sendall(b"x")
        assert job.get(timeout=2) == b"x"
        cli.sendall(b"line one\nline two")
        cli.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_LINGER, struct.pack("ii", 1, 0))
        cli.close()
        ptsevent.sleep(0.05)
        start = time.monotonic()
        assert fa.readline() == b"line one\n"
        with pytest.raises(ConnectionResetError):
            fa.read()
        assert time.monotonic() - start < 1
    finally:
        fa.close()

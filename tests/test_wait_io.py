"""wait_read / wait_write on sockets and pipes."""

import errno
import os
import resource
import select
import socket
import time

import pytest

import ptsevent


class FilenoObject:
    def __init__(self, fd):
        self._fd = fd

    def fileno(self):
        return self._fd


def fill_send_buffer(sock):
    """Write into a non-blocking socket until the kernel refuses more."""
    sock.setblocking(False)
    chunk = b"x" * 65536
    total = 0
    while True:
        try:
            total += sock.send(chunk)
        except BlockingIOError:
            return total


def drain(sock):
    sock.setblocking(False)
    total = 0
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return total
        if not data:
            return total
        total += len(data)


# --- waking on real data ---------------------------------------------------


def test_wait_read_on_socketpair_wakes_when_data_arrives(socketpair):
    a, b = socketpair

    def reader():
        ptsevent.wait_read(a)
        return a.recv(100)

    t = ptsevent.spawn(reader)
    ptsevent.sleep(0.02)
    assert not t.dead
    assert ptsevent.hub_stats()["events"] == 1
    b.sendall(b"hello")
    assert t.get(timeout=2) == b"hello"
    assert ptsevent.hub_stats()["events"] == 0


def test_wait_read_on_pipe_fd_int_wakes_when_written(pipe):
    r, w = pipe

    def writer():
        ptsevent.sleep(0.02)
        os.write(w, b"data")

    t = ptsevent.spawn(writer)
    start = time.monotonic()
    ptsevent.wait_read(r)
    assert time.monotonic() - start >= 0.015
    assert os.read(r, 10) == b"data"
    t.join()


def test_wait_read_accepts_object_with_fileno(pipe):
    r, w = pipe
    os.write(w, b"!")
    ptsevent.wait_read(FilenoObject(r), timeout=1)
    assert os.read(r, 1) == b"!"


def test_wait_read_returns_at_once_when_data_already_there(socketpair):
    a, b = socketpair
    b.sendall(b"ready")
    start = time.monotonic()
    ptsevent.wait_read(a.fileno())
    assert time.monotonic() - start < 0.05
    assert a.recv(10) == b"ready"


def test_wait_read_wakes_on_eof_when_writer_closes():
    r, w = os.pipe()
    try:
        t = ptsevent.spawn(ptsevent.wait_read, r, 2)
        ptsevent.sleep(0.01)
        os.close(w)
        w = None
        t.get(timeout=2)
        assert os.read(r, 10) == b""
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


def test_wait_read_wakes_when_peer_socket_closes():
    a, b = socket.socketpair()
    try:
        t = ptsevent.spawn(ptsevent.wait_read, a, 2)
        ptsevent.sleep(0.01)
        b.close()
        t.get(timeout=2)
        assert a.recv(10) == b""
    finally:
        a.close()
        b.close()


def test_wait_write_returns_at_once_on_writable_socket(socketpair):
    a, _ = socketpair
    start = time.monotonic()
    ptsevent.wait_write(a)
    ptsevent.wait_write(a.fileno(), timeout=1)
    assert time.monotonic() - start < 0.05
    assert ptsevent.hub_stats()["events"] == 0


def test_wait_write_on_pipe_write_end(pipe):
    _, w = pipe
    ptsevent.wait_write(w, timeout=1)
    ptsevent.wait_write(FilenoObject(w), timeout=1)


def test_wait_write_blocks_on_full_buffer_until_peer_reads(socketpair):
    a, b = socketpair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    assert fill_send_buffer(a) > 0

    def reader():
        ptsevent.sleep(0.03)
        return drain(b)

    t = ptsevent.spawn(reader)
    start = time.monotonic()
    ptsevent.wait_write(a, timeout=2)
    assert time.monotonic() - start >= 0.025
    assert t.get() > 0
    a.send(b"more")


def test_wait_main_waits_while_writer_tasklet_runs(socketpair):
    a, b = socketpair
    order = []

    def writer():
        order.append("writer")
        b.sendall(b"ping")

    ptsevent.spawn(writer)
    ptsevent.wait_read(a)
    order.append("main woke")
    assert order == ["writer", "main woke"]
    assert a.recv(10) == b"ping"


# --- timeouts --------------------------------------------------------------


def test_wait_read_timeout_raises_timeout_error_timed_out_and_leaves_no_event(pipe):
    r, _ = pipe
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        ptsevent.wait_read(r, timeout=0.05)
    assert 0.045 <= time.monotonic() - start < 0.5
    assert str(info.value) == "timed out"
    assert info.value.args == ("timed out",)
    stats = ptsevent.hub_stats()
    assert stats["events"] == 0
    assert stats["libevent_events"] == stats["internal_events"]


def test_wait_write_timeout_raises_timeout_error_timed_out(socketpair):
    a, _ = socketpair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    fill_send_buffer(a)
    with pytest.raises(TimeoutError) as info:
        ptsevent.wait_write(a, timeout=0.05)
    assert str(info.value) == "timed out"
    assert ptsevent.hub_stats()["events"] == 0


def test_wait_read_data_before_timeout_does_not_raise(socketpair):
    a, b = socketpair

    def writer():
        ptsevent.sleep(0.01)
        b.sendall(b"x")

    t = ptsevent.spawn(writer)
    ptsevent.wait_read(a, timeout=1)
    assert a.recv(1) == b"x"
    t.join()
    ptsevent.sleep(0.02)
    assert ptsevent.hub_stats()["events"] == 0


def test_timeout_context_bounds_wait_read_and_leaves_no_event(pipe):
    r, _ = pipe
    with pytest.raises(ptsevent.Timeout):
        with ptsevent.Timeout(0.03):
            ptsevent.wait_read(r)
    assert ptsevent.hub_stats()["events"] == 0


def test_wait_read_timeout_in_spawned_tasklet(pipe):
    r, _ = pipe

    def waiter():
        try:
            ptsevent.wait_read(r, timeout=0.02)
        except TimeoutError as e:
            return str(e)

    assert ptsevent.spawn(waiter).get() == "timed out"


# --- kill --------------------------------------------------------------------


def test_kill_while_in_wait_write_leaves_no_event(socketpair):
    a, _ = socketpair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    fill_send_buffer(a)
    t = ptsevent.spawn(ptsevent.wait_write, a)
    ptsevent.sleep(0.01)
    assert ptsevent.hub_stats()["events"] == 1
    t.kill()
    assert t.dead
    assert ptsevent.hub_stats()["events"] == 0


def test_kill_while_in_wait_read_raises_tasklet_exit_there(socketpair):
    a, _ = socketpair
    seen = []

    def waiter():
        try:
            ptsevent.wait_read(a)
        except BaseException as e:
            seen.append(type(e))
            raise

    t = ptsevent.spawn(waiter)
    ptsevent.sleep(0)
    t.kill()
    assert seen == [ptsevent.TaskletExit]
    assert ptsevent.hub_stats()["events"] == 0


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4096
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_killing_thousand_tasklets_in_wait_read_restores_event_and_fd_counts(many_fds):
    pairs = [socket.socketpair() for _ in range(1000)]
    try:
        ts = [ptsevent.spawn(ptsevent.wait_read, a) for a, _ in pairs]
        ptsevent.sleep(0)
        stats = ptsevent.hub_stats()
        assert stats["tasklets"] == 1000
        assert stats["events"] == 1000
        assert stats["libevent_events"] == 1000 + stats["internal_events"]
        start = time.monotonic()
        ptsevent.killall(ts)
        assert time.monotonic() - start < 1.0
        assert all(t.dead for t in ts)
        stats = ptsevent.hub_stats()
        assert stats["tasklets"] == 0
        assert stats["events"] == 0
        assert stats["libevent_events"] == stats["internal_events"]
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_thousand_waiters_all_wake_when_data_arrives(many_fds):
    pairs = [socket.socketpair() for _ in range(1000)]
    try:

        def echo(a):
            ptsevent.wait_read(a)
            return a.recv(16)

        ts = [ptsevent.spawn(echo, a) for a, _ in pairs]
        ptsevent.sleep(0)
        for i, (_, b) in enumerate(pairs):
            b.send(str(i).encode())
        start = time.monotonic()
        ptsevent.joinall(ts)
        assert time.monotonic() - start < 1.0
        assert [t.value for t in ts] == [str(i).encode() for i in range(1000)]
    finally:
        for a, b in pairs:
            a.close()
            b.close()


# --- bad descriptors: same exceptions as select.select ---------------------


def select_read(fd):
    select.select([fd], [], [], 0)


def select_write(fd):
    select.select([], [fd], [], 0)


WAITS = [
    pytest.param(select_read, id="select-read"),
    pytest.param(select_write, id="select-write"),
    pytest.param(ptsevent.wait_read, id="wait_read"),
    pytest.param(ptsevent.wait_write, id="wait_write"),
]


@pytest.mark.parametrize("wait", WAITS)
@pytest.mark.parametrize(
    "bad, exc",
    [
        pytest.param(-1, ValueError, id="negative"),
        pytest.param(FilenoObject(-5), ValueError, id="fileno-negative"),
        pytest.param("3", TypeError, id="str"),
        pytest.param(1.5, TypeError, id="float"),
        pytest.param(None, TypeError, id="none"),
        pytest.param(object(), TypeError, id="no-fileno"),
        pytest.param(FilenoObject("3"), TypeError, id="fileno-not-int"),
    ],
)
def test_wait_bad_descriptor_raises_like_select(wait, bad, exc):
    with pytest.raises(exc):
        wait(bad)
    assert ptsevent.hub_stats()["events"] == 0


@pytest.mark.parametrize("wait", WAITS)
def test_wait_on_closed_fd_raises_oserror_ebadf(wait):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        wait(r)
    assert info.value.errno == errno.EBADF
    assert ptsevent.hub_stats()["events"] == 0


def test_wait_on_closed_fd_with_timeout_raises_ebadf_not_timeout():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        ptsevent.wait_read(r, timeout=0.05)
    assert info.value.errno == errno.EBADF
    assert not isinstance(info.value, TimeoutError)

"""ptsevent.select: select(), poll() and the selector, against the standard
module's contract, and proof that waiting blocks only the calling tasklet."""

import errno
import os
import select as std_select
import selectors
import socket
import time

import pytest

import ptsevent
from ptsevent import select as psel

IMPLS = [pytest.param(std_select, id="stdlib"), pytest.param(psel, id="ptsevent")]


@pytest.mark.parametrize("mod", IMPLS)
def test_select_reports_writable_pipe_and_nothing_readable(mod, pipe):
    r, w = pipe
    assert mod.select([r], [w], [], 0) == ([], [w], [])


@pytest.mark.parametrize("mod", IMPLS)
def test_select_keeps_the_callers_objects_and_order(mod, socketpair):
    a, b = socketpair
    b.send(b"x")
    a.send(b"y")
    r, w, x = mod.select([b, a], [a, b], [], 0)
    assert r == [b, a] and w == [a, b] and x == []


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("bad, exc", [(-1, ValueError), ("3", TypeError),
                                      (object(), TypeError), (1.5, TypeError)])
def test_select_rejects_bad_descriptors_like_the_stdlib(mod, bad, exc):
    with pytest.raises(exc):
        mod.select([bad], [], [], 0)


@pytest.mark.parametrize("mod", IMPLS)
@pytest.mark.parametrize("bad, exc", [(-1, ValueError), ("1", TypeError)])
def test_select_rejects_bad_timeouts_like_the_stdlib(mod, bad, exc, pipe):
    with pytest.raises(exc):
        mod.select([pipe[0]], [], [], bad)


@pytest.mark.parametrize("mod", IMPLS)
def test_select_on_a_closed_descriptor_raises_ebadf(mod):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        mod.select([r], [], [], 0)
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("mod", IMPLS)
def test_select_times_out_with_empty_lists(mod, pipe):
    start = time.monotonic()
    assert mod.select([pipe[0]], [], [], 0.05) == ([], [], [])
    assert 0.04 <= time.monotonic() - start < 1.0


def test_select_waits_only_the_calling_tasklet(pipe):
    r, w = pipe
    ticks = []

    def ticker():
        for _ in range(10):
            ticks.append(time.monotonic())
            ptsevent.sleep(0.01)
        os.write(w, b"!")

    t = ptsevent.spawn(ticker)
    start = time.monotonic()
    assert psel.select([r], [], [], 5) == ([r], [], [])
    assert len(ticks) == 10 and time.monotonic() - start < 2
    t.join()


def test_select_killed_while_waiting_leaves_no_event(pipe):
    r, _ = pipe
    t = ptsevent.spawn(psel.select, [r], [], [])
    ptsevent.sleep(0.01)
    assert ptsevent.hub_stats()["events"] == 1
    t.kill()
    assert t.dead and ptsevent.hub_stats()["events"] == 0


def test_select_wakes_on_peer_hangup_as_readable(socketpair):
    a, b = socketpair
    ptsevent.spawn_later(0.02, b.close)
    assert psel.select([a], [], [], 2) == ([a], [], [])
    assert a.recv(1) == b""


@pytest.mark.parametrize("mod", IMPLS)
def test_poll_register_modify_unregister(mod, pipe):
    r, w = pipe
    p = mod.poll()
    p.register(r, mod.POLLIN)
    p.register(w)
    assert p.poll(0) == [(w, mod.POLLOUT)]
    p.modify(w, mod.POLLIN)
    assert p.poll(0) == []
    os.write(w, b"x")
    assert p.poll(0) == [(r, mod.POLLIN)]
    p.unregister(r)
    assert p.poll(0) == []
    with pytest.raises(KeyError):
        p.unregister(r)
    with pytest.raises(FileNotFoundError):
        p.modify(r, mod.POLLIN)


@pytest.mark.parametrize("mod", IMPLS)
def test_poll_reports_hangup_and_invalid_descriptors(mod):
    r, w = os.pipe()
    p = mod.poll()
    p.register(r, mod.POLLIN)
    os.close(w)
    assert p.poll(0) == [(r, mod.POLLHUP)]
    os.close(r)
    assert p.poll(0) == [(r, mod.POLLNVAL)]


@pytest.mark.parametrize("mod", IMPLS)
def test_poll_timeout_is_in_milliseconds(mod, pipe):
    p = mod.poll()
    p.register(pipe[0], mod.POLLIN)
    start = time.monotonic()
    assert p.poll(50) == []
    assert 0.04 <= time.monotonic() - start < 1.0


def test_poll_waits_cooperatively_for_data(pipe):
    r, w = pipe
    p = psel.poll()
    p.register(r, psel.POLLIN)
    ptsevent.spawn_later(0.02, os.write, w, b"z")
    assert p.poll(2000) == [(r, psel.POLLIN)]


def test_selector_is_a_working_selectors_selector():
    a, b = socket.socketpair()
    try:
        with psel.DefaultSelector() as sel:
            assert isinstance(sel, selectors.BaseSelector)
            sel.register(a, selectors.EVENT_READ | selectors.EVENT_WRITE, "data")
            ((key, events),) = sel.select(0)
            assert key.data == "data" and events == selectors.EVENT_WRITE
            sel.modify(a, selectors.EVENT_READ, "r")
            assert sel.select(0) == []
            ptsevent.spawn_later(0.02, b.send, b"q")
            ((key, events),) = sel.select(2)
            assert key.fileobj is a and events == selectors.EVENT_READ
            sel.unregister(a)
            assert sel.get_map() == {}
    finally:
        a.close()
        b.close()

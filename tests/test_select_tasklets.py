"""ptsevent.select waits from spawned tasklets while other tasklets run.

greenlet copies a suspended tasklet's C stack away and lets another
tasklet's stack take its place, so anything a pending libevent callback
reaches must live on the heap. These tests wait in select(), poll().poll()
and the selector from spawned tasklets while others switch (sleep(0) loops,
socket traffic): a waiter must wake as soon as its descriptor is ready, not
when its timeout fires, and a wait without a timeout must not crash.
"""

import selectors
import socket
import time

import pytest

import ptsevent
from ptsevent import select as psel
from ptsevent import socket as psocket


def wait_with(kind, sock, timeout):
    """Waits until `sock` is readable with one of the three APIs; returns
    whether it was reported readable."""
    if kind == "select":
        r, _, _ = psel.select([sock], [], [], timeout)
        return r == [sock]
    if kind == "poll":
        p = psel.poll()
        p.register(sock, psel.POLLIN)
        ms = None if timeout is None else timeout * 1000
        return [fd for fd, ev in p.poll(ms) if ev & psel.POLLIN] == [
            sock.fileno()]
    with psel.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        return [key.fileobj for key, _ in sel.select(timeout)] == [sock]


KINDS = ["select", "poll", "selector"]


def busy_tasklets(stop, n=8):
    """Tasklets that keep switching with deeper and deeper stacks, so that
    every waiter's stack is copied away and overwritten meanwhile."""

    def spin(depth):
        if depth:
            return spin(depth - 1)
        filler = [0] * 64  # noqa: F841  (stack and heap churn)
        while not stop:
            ptsevent.sleep(0)

    return [ptsevent.spawn(spin, i * 3) for i in range(n)]


def traffic_tasklets(stop, n=4):
    """Pairs of tasklets bouncing bytes over cooperative socketpairs: each
    waits in recv() for the other (real descriptor waits, not only yields)."""

    def ping(a):
        while not stop:
            a.sendall(b"x" * 100)
            a.recv(100)
        a.close()

    def pong(b):
        while True:
            data = b.recv(100)
            if not data:
                break
            b.sendall(data)
        b.close()

    out = []
    for _ in range(n):
        a, b = psocket.socketpair()
        out += [ptsevent.spawn(ping, a), ptsevent.spawn(pong, b)]
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("timeout", [5.0, None])
def test_spawned_waiter_wakes_when_ready_while_others_switch(kind, timeout):
    stop = []
    others = busy_tasklets(stop) + traffic_tasklets(stop)
    a, b = socket.socketpair()
    try:
        result = {}

        def waiter():
            t0 = time.monotonic()
            result["ready"] = wait_with(kind, a, timeout)
            result["elapsed"] = time.monotonic() - t0

        t = ptsevent.spawn(waiter)
        ptsevent.sleep(0.05)
        assert not t.dead
        b.send(b"!")
        # The waiter must run well before its 5 s timeout would fire.
        deadline = time.monotonic() + 2
        while not t.dead and time.monotonic() < deadline:
            ptsevent.sleep(0.01)
        assert t.dead, "the waiter was not woken by its descriptor"
        t.join()
        assert result["ready"] is True
        assert result["elapsed"] < 2
    finally:
        stop.append(1)
        ptsevent.joinall(others, timeout=5)
        a.close()
        b.close()


@pytest.mark.parametrize("kind", KINDS)
def test_spawned_waiters_time_out_and_wake_side_by_side(kind):
    stop = []
    others = busy_tasklets(stop)
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        result = {}

        def waiter(name, sock, timeout):
            t0 = time.monotonic()
            result[name] = wait_with(kind, sock, timeout)
            result[name + " elapsed"] = time.monotonic() - t0

        idle = ptsevent.spawn(waiter, "idle", a, 0.2)
        woken = ptsevent.spawn(waiter, "woken", c, 5.0)
        ptsevent.sleep(0.05)
        d.send(b"!")
        ptsevent.joinall([idle, woken], timeout=3)
        assert idle.dead and woken.dead, result
        assert result["idle"] is False
        assert 0.19 <= result["idle elapsed"] < 2
        assert result["woken"] is True
        assert result["woken elapsed"] < 2
    finally:
        stop.append(1)
        ptsevent.joinall(others, timeout=5)
        for s in (a, b, c, d):
            s.close()


@pytest.mark.parametrize("kind", KINDS)
def test_many_spawned_waiters_each_wake_on_their_own_descriptor(kind):
    stop = []
    others = busy_tasklets(stop, n=4) + traffic_tasklets(stop, n=2)
    pairs = [socket.socketpair() for _ in range(40)]
    try:
        woke = []

        def waiter(i, sock, timeout):
            if wait_with(kind, sock, timeout):
                woke.append(i)
                assert sock.recv(10) == b"%d" % i

        waiters = [
            ptsevent.spawn(waiter, i, a, None if i % 2 else 5.0)
            for i, (a, _) in enumerate(pairs)
        ]
        ptsevent.sleep(0.05)
        # Wake them in an order unrelated to the order they started in.
        order = list(range(0, len(pairs), 3)) + list(range(1, len(pairs), 3)) \
            + list(range(2, len(pairs), 3))
        for i in order:
            pairs[i][1].send(b"%d" % i)
            ptsevent.sleep(0)
        deadline = time.monotonic() + 3
        while len(woke) < len(pairs) and time.monotonic() < deadline:
            ptsevent.sleep(0.01)
        assert sorted(woke) == list(range(len(pairs)))
        ptsevent.joinall(waiters, timeout=2)
        assert all(t.dead for t in waiters)
        for t in waiters:
            t.join()  # re-raises a failed assertion of the waiter
    finally:
        stop.append(1)
        ptsevent.joinall(others, timeout=5)
        for a, b in pairs:
            a.close()
            b.close()


CRASH_SOURCE = """
import socket, sys, time
import ptsevent
from ptsevent import select as psel
import selectors

kind = sys.argv[1]
stop = []

def spin(depth):
    if depth:
        return spin(depth - 1)
    while not stop:
        ptsevent.sleep(0)

spinners = [ptsevent.spawn(spin, i * 3) for i in range(8)]
a, b = socket.socketpair()
done = []

def waiter():
    if kind == "select":
        r, _, _ = psel.select([a], [], [], None)
        ok = r == [a]
    elif kind == "poll":
        p = psel.poll()
        p.register(a, psel.POLLIN)
        ok = bool(p.poll())
    else:
        sel = psel.DefaultSelector()
        sel.register(a, selectors.EVENT_READ)
        ok = bool(sel.select())
        sel.close()
    done.append(ok)

for round in range(20):
    t = ptsevent.spawn(waiter)
    ptsevent.sleep(0.005)
    b.send(b"!")
    t.join(timeout=2)
    assert done == [True] * (round + 1), done
    a.recv(10)
stop.append(1)
ptsevent.joinall(spinners)
print("ok")
"""


@pytest.mark.parametrize("kind", KINDS)
def test_wait_without_timeout_in_spawned_tasklet_does_not_crash(kind,
                                                                run_python):
    proc = run_python(CRASH_SOURCE, args=(kind,), timeout=30)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == "ok"

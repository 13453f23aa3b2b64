"""A loop of cooperative select calls that always find a descriptor ready
still lets the other tasklets of the thread run and wake on their I/O.

asyncore servers (test_ftplib's TLS server, smtpd) poll a socket that is
always writable while they wait for a handshake: with OS threads the GIL
hands the other threads their turn, with tasklets the select itself must.
"""

import selectors

import pytest

import ptsevent
from ptsevent import select as psel
from ptsevent import socket as psocket

LIMIT = 20000  # calls of the busy loop before it gives up


def _select(w, timeout):
    return psel.select([], [w], [], timeout)[1]


def _poll(w, timeout):
    p = psel.poll()
    p.register(w, psel.POLLOUT)
    return p.poll(None if timeout is None else timeout * 1000)


def _epoll(w, timeout):
    with psel.epoll() as ep:
        ep.register(w.fileno(), psel.POLLOUT)
        return ep.poll(timeout)


def _selector(w, timeout):
    with psel.PtseventSelector() as sel:
        sel.register(w, selectors.EVENT_WRITE)
        return sel.select(timeout)


@pytest.mark.parametrize("timeout", [5.0, 0, None])
@pytest.mark.parametrize("call", [_select, _poll, _epoll, _selector])
def test_busy_select_loop_lets_an_io_waiter_wake(call, timeout):
    a, b = psocket.socketpair()
    w, _peer = psocket.socketpair()
    try:
        got = []
        calls = [0]

        def reader():
            got.append(b.recv(10))  # waits for I/O through the hub

        def busy():
            # What an asyncore loop does while its peer is elsewhere: the
            # socket is always writable, so every call returns at once.
            while not got and calls[0] < LIMIT:
                calls[0] += 1
                assert call(w, timeout)

        r = ptsevent.spawn(reader)
        ptsevent.sleep(0)  # the reader now waits for its socket
        a.send(b"ping")
        spinner = ptsevent.spawn(busy)
        spinner.join(30)
        r.join(5)
        assert got == [b"ping"]
        assert calls[0] < LIMIT, "the reader never ran while select looped"
    finally:
        for s in (a, b, w, _peer):
            s.close()


def test_select_calls_fileno_once_each_and_stops_where_a_list_ends(pipe):
    # As the standard select: fileno() once per object, and a fileno()
    # that shortens the list ends the walk there.
    r, w = pipe
    calls = []
    objs = []

    class F:
        def fileno(self):
            calls.append(1)
            del objs[-1]
            return w

    objs[:] = [F() for _ in range(10)]
    first_five = objs[:5]
    assert psel.select([], objs, [], 5) == ([], first_five, [])
    assert len(calls) == 5

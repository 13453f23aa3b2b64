"""ptsevent.socket keeps promises of the standard socket that CPython's
test_socket checks: MSG_DONTWAIT makes one call non-blocking, setblocking()
and detach() on a descriptor closed under the socket, getnameinfo's
argument check."""

import socket
import sys

import pytest

from ptsevent import socket as psocket

DONTWAIT = getattr(socket, "MSG_DONTWAIT", None)
needs_dontwait = pytest.mark.skipif(DONTWAIT is None, reason="no MSG_DONTWAIT")


@pytest.fixture
def pair():
    a, b = psocket.socketpair()  # blocking: timeout None
    yield a, b
    a.close()
    b.close()


@needs_dontwait
@pytest.mark.parametrize("call", [
    lambda s: s.recvfrom(10, DONTWAIT),
    lambda s: s.recvfrom_into(bytearray(10), 10, DONTWAIT),
    lambda s: s.recvmsg(10, 0, DONTWAIT),
    lambda s: s.recvmsg_into([bytearray(10)], 0, DONTWAIT),
], ids=["recvfrom", "recvfrom_into", "recvmsg", "recvmsg_into"])
def test_receive_with_dontwait_raises_instead_of_waiting(pair, call):
    a, b = pair
    assert a.gettimeout() is None
    with pytest.raises(BlockingIOError):
        call(a)
    b.send(b"hi")  # and it still receives what is there
    assert call(a)


@needs_dontwait
def test_sendmsg_with_dontwait_raises_when_the_buffer_is_full(pair):
    a, _b = pair
    data = b"x" * 65536
    sent = 0
    with pytest.raises(BlockingIOError):
        for _ in range(10000):
            sent += a.sendmsg([data], [], DONTWAIT)
    assert sent > 0


def test_setblocking_on_a_descriptor_closed_underneath_raises():
    first = psocket.socket()
    sock = psocket.socket(fileno=first.fileno())
    first.close()
    try:
        with pytest.raises(OSError):
            sock.setblocking(False)
    finally:
        sock.detach()  # does not raise either


def test_getnameinfo_rejects_a_non_tuple_in_the_caller_keeping_no_reference():
    arg = "not an address " + str(id(object()))
    before = sys.getrefcount(arg)
    try:
        psocket.getnameinfo(arg, 0)
    except TypeError as exc:
        assert "must be a tuple" in str(exc)
        # the exception (and its traceback) is alive here
        assert sys.getrefcount(arg) == before
    else:
        pytest.fail("no TypeError")

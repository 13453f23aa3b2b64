"""A socket's timeout has one owner and every call honours it.

settimeout/setblocking write the timeout once; gettimeout(), .timeout and
getblocking() read it back as the standard socket does, and every blocking
call (recv..., recvfrom..., recvmsg..., send..., sendto, sendmsg, accept,
connect) waits within it and raises TimeoutError("timed out"). MSG_DONTWAIT
makes one call non-blocking whatever the timeout. Datagram addresses come
back as the standard socket writes them. A descriptor that moves to another
thread's hub is handed over without polling.
"""

import errno
import os
import socket as stdsocket
import stat
import tempfile
import threading
import time

import pytest

import ptsevent
import ptsevent.os as pos
import ptsevent.socket as psocket
from test_socket import fill_send_buffer, full_listener

LOCAL = "127.0.0.1"
IMPLS = [psocket, stdsocket]
IDS = ["ptsevent", "stdlib"]
DONTWAIT = stdsocket.MSG_DONTWAIT


def _has_ipv6():
    try:
        with stdsocket.socket(stdsocket.AF_INET6, stdsocket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- settimeout / gettimeout: one value, read back everywhere ---------------


@pytest.mark.parametrize("value", [None, 0, 0.0, 2, 1.5, 1e-10, 0.1 + 0.2,
                                   True, 86400 * 365])
def test_gettimeout_timeout_and_getblocking_read_what_settimeout_wrote(
        track, value):
    ours = track(psocket.socket())
    std = track(stdsocket.socket())
    ours.settimeout(value)
    std.settimeout(value)
    assert ours.gettimeout() == std.gettimeout()
    assert type(ours.gettimeout()) is type(std.gettimeout())
    assert ours.timeout == std.timeout
    assert ours.getblocking() == std.getblocking()
    # The descriptor itself stays non-blocking under any timeout.
    assert not os.get_blocking(ours.fileno())


@pytest.mark.parametrize("flag", [True, False])
def test_setblocking_is_read_back_by_gettimeout_and_timeout(track, flag):
    ours = track(psocket.socket())
    ours.settimeout(3.0)
    ours.setblocking(flag)
    expected = None if flag else 0.0
    assert ours.gettimeout() == expected
    assert ours.timeout == expected
    assert ours.getblocking() is flag


@pytest.mark.parametrize("bad", ["1", b"1", -1, -0.5, float("nan"), 1e300,
                                 2 ** 70, object(), 9.3e9 * 10])
def test_settimeout_refuses_what_the_standard_socket_refuses_with_its_words(
        track, bad):
    ours = track(psocket.socket())
    std = track(stdsocket.socket())
    ours.settimeout(2.0)
    with pytest.raises(Exception) as std_err:
        std.settimeout(bad)
    with pytest.raises(type(std_err.value)) as our_err:
        ours.settimeout(bad)
    assert str(our_err.value) == str(std_err.value)
    assert ours.gettimeout() == 2.0  # unchanged by the refused value


def test_dup_and_accepted_sockets_carry_the_timeout(track):
    srv = track(psocket.socket())
    srv.bind((LOCAL, 0))
    srv.listen(1)
    srv.settimeout(5.0)
    assert track(srv.dup()).gettimeout() == 5.0
    cli = track(psocket.create_connection(srv.getsockname(), timeout=1.25))
    assert cli.gettimeout() == 1.25
    conn, _ = srv.accept()
    track(conn)
    assert conn.gettimeout() == stdsocket.getdefaulttimeout()


# --- every call path times out with the standard message --------------------


def _udp(mod, track):
    s = track(mod.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM))
    s.bind((LOCAL, 0))
    return s


def _stream_pair(mod, track):
    a, b = mod.socketpair()
    return track(a), track(b)


READS = {
    "recv": lambda s: s.recv(10),
    "recv_into": lambda s: s.recv_into(bytearray(10)),
    "recvfrom": lambda s: s.recvfrom(10),
    "recvfrom_into": lambda s: s.recvfrom_into(bytearray(10)),
    "recvmsg": lambda s: s.recvmsg(10),
    "recvmsg_into": lambda s: s.recvmsg_into([bytearray(10)]),
}


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
@pytest.mark.parametrize("call", sorted(READS))
def test_every_read_times_out_with_timed_out(mod, track, call):
    s = _udp(mod, track)
    s.settimeout(0.1)
    start = time.monotonic()
    with pytest.raises(TimeoutError) as err:
        READS[call](s)
    assert str(err.value) == "timed out"
    assert 0.08 <= time.monotonic() - start < 3


WRITES = {
    "send": lambda s: s.send(b"x" * 65536),
    "sendall": lambda s: s.sendall(b"x" * 65536),
    "sendmsg": lambda s: s.sendmsg([b"x" * 65536]),
}


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
@pytest.mark.parametrize("call", sorted(WRITES))
def test_every_write_times_out_with_timed_out(mod, track, call):
    a, _b = _stream_pair(mod, track)
    fill_send_buffer(a)
    a.settimeout(0.1)
    with pytest.raises(TimeoutError) as err:
        WRITES[call](a)
    assert str(err.value) == "timed out"


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
def test_sendto_on_a_full_unix_datagram_socket_times_out(mod, track):
    path = tempfile.mktemp(prefix="ptsevent-dgram-")
    rcv = track(mod.socket(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM))
    rcv.bind(path)
    try:
        snd = track(mod.socket(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM))
        snd.setblocking(False)
        for _ in range(100_000):
            try:
                snd.sendto(b"d" * 1024, path)
            except BlockingIOError:
                break
        snd.settimeout(0.1)
        with pytest.raises(TimeoutError) as err:
            snd.sendto(b"d" * 1024, path)
        assert str(err.value) == "timed out"
    finally:
        os.unlink(path)


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
def test_accept_times_out_with_timed_out(mod, track):
    srv = track(mod.socket())
    srv.bind((LOCAL, 0))
    srv.listen(1)
    srv.settimeout(0.1)
    with pytest.raises(TimeoutError) as err:
        srv.accept()
    assert str(err.value) == "timed out"


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
def test_connect_times_out_and_connect_ex_says_ewouldblock(mod, track):
    addr = full_listener(track)
    cli = track(mod.socket())
    cli.settimeout(0.2)
    with pytest.raises(TimeoutError) as err:
        cli.connect(addr)
    assert str(err.value) == "timed out"
    other = track(mod.socket())
    other.settimeout(0.2)
    assert other.connect_ex(addr) == errno.EWOULDBLOCK


def test_the_timeout_bounds_the_whole_recvfrom_not_each_wait(track):
    # Wake-ups that bring nothing (another reader took the datagram) do not
    # start the timeout over.
    s = _udp(psocket, track)
    peer = _udp(psocket, track)
    s.settimeout(0.3)

    def thief():
        for _ in range(6):
            ptsevent.sleep(0.1)
            peer.sendto(b"x", s.getsockname())
            # Taken at once by this tasklet: the waiting recvfrom wakes for
            # nothing.
            s.setblocking(False)
            try:
                s.recvfrom(10)
            except BlockingIOError:
                pass
            s.settimeout(0.3)

    t = ptsevent.spawn(thief)
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            s.recvfrom(10)
    finally:
        t.kill()
    assert time.monotonic() - start < 0.55


# --- MSG_DONTWAIT: this call never waits -------------------------------------


DONTWAIT_READS = {
    "recv": lambda s: s.recv(10, DONTWAIT),
    "recv_into": lambda s: s.recv_into(bytearray(10), 0, DONTWAIT),
    "recvfrom": lambda s: s.recvfrom(10, DONTWAIT),
    "recvfrom_into": lambda s: s.recvfrom_into(bytearray(10), 0, DONTWAIT),
    "recvmsg": lambda s: s.recvmsg(10, 0, DONTWAIT),
    "recvmsg_into": lambda s: s.recvmsg_into([bytearray(10)], 0, DONTWAIT),
}


# With a timeout the standard socket waits it out despite the flag (its
# wait-then-retry loop ignores it) and raises TimeoutError; ptsevent keeps
# the flag's meaning: that call never waits.
@pytest.mark.parametrize("mod, timeout", [(psocket, None), (stdsocket, None),
                                          (psocket, 5.0), (psocket, 0.0)],
                         ids=["ptsevent", "stdlib", "ptsevent-timeout",
                              "ptsevent-nonblocking"])
@pytest.mark.parametrize("call", sorted(DONTWAIT_READS))
def test_msg_dontwait_read_raises_blockingioerror_at_once(mod, track, call,
                                                          timeout):
    a, _b = _stream_pair(mod, track)
    a.settimeout(timeout)
    start = time.monotonic()
    with pytest.raises(BlockingIOError):
        DONTWAIT_READS[call](a)
    assert time.monotonic() - start < 1
    assert a.gettimeout() == timeout  # one call, not the socket


DONTWAIT_WRITES = {
    "send": lambda s: s.send(b"x" * 65536, DONTWAIT),
    "sendall": lambda s: s.sendall(b"x" * 65536, DONTWAIT),
    "sendmsg": lambda s: s.sendmsg([b"x" * 65536], [], DONTWAIT),
}


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
@pytest.mark.parametrize("call", sorted(DONTWAIT_WRITES))
def test_msg_dontwait_write_raises_blockingioerror_at_once(mod, track, call):
    a, _b = _stream_pair(mod, track)
    fill_send_buffer(a)
    a.settimeout(None)
    start = time.monotonic()
    with pytest.raises(BlockingIOError):
        DONTWAIT_WRITES[call](a)
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
def test_msg_dontwait_read_returns_data_that_is_there(mod, track):
    a, b = _stream_pair(mod, track)
    b.sendall(b"ready")
    deadline = time.monotonic() + 2
    while True:
        try:
            assert a.recv(10, DONTWAIT) == b"ready"
            break
        except BlockingIOError:
            assert time.monotonic() < deadline
            time.sleep(0.01)


# --- datagram addresses as the standard socket writes them -------------------


def _roundtrip(mod, family, bind_addr, track, via=None):
    rcv = track(mod.socket(family, stdsocket.SOCK_DGRAM))
    rcv.bind(bind_addr)
    snd = track(mod.socket(family, stdsocket.SOCK_DGRAM))
    if family != stdsocket.AF_UNIX:
        snd.bind((bind_addr[0], 0))
    target = rcv.getsockname() if via is None else via(rcv.getsockname())
    assert snd.sendto(b"one", target) == 3
    assert snd.sendto(b"two", 0, target) == 3
    data, addr1 = rcv.recvfrom(100)
    buf = bytearray(100)
    n, addr2 = rcv.recvfrom_into(buf)
    return data, bytes(buf[:n]), addr1, addr2, snd.getsockname()


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
def test_udp_ipv4_addresses(mod, track):
    one, two, a1, a2, sender = _roundtrip(mod, stdsocket.AF_INET,
                                          (LOCAL, 0), track)
    assert (one, two) == (b"one", b"two")
    assert a1 == a2 == sender
    assert type(a1[0]) is str and type(a1[1]) is int


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
def test_udp_ipv4_to_a_name_goes_through_the_standard_lookup(mod, track):
    one, two, a1, _a2, sender = _roundtrip(
        mod, stdsocket.AF_INET, (LOCAL, 0), track,
        via=lambda addr: ("localhost", addr[1]))
    assert (one, two) == (b"one", b"two")
    assert a1 == sender


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
def test_udp_ipv6_addresses(mod, track):
    one, two, a1, a2, sender = _roundtrip(mod, stdsocket.AF_INET6,
                                          ("::1", 0), track)
    assert (one, two) == (b"one", b"two")
    assert a1 == a2 == sender
    assert len(a1) == 4


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
def test_unix_datagram_addresses_path_abstract_and_unnamed(mod, track):
    path = tempfile.mktemp(prefix="ptsevent-dgram-")
    rcv = track(mod.socket(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM))
    rcv.bind(path)
    try:
        named = track(mod.socket(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM))
        named.bind(path + "-s")
        abstract = track(mod.socket(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM))
        abstract.bind(b"\0ptsevent-" + str(os.getpid()).encode())
        unnamed = track(mod.socket(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM))
        got = []
        for s in (named, abstract, unnamed):
            s.sendto(b"x", path)
            got.append(rcv.recvfrom(10)[1])
        assert got == [path + "-s", abstract.getsockname(), None]
    finally:
        os.unlink(path)
        os.unlink(path + "-s")


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
@pytest.mark.parametrize("args, exc", [
    ((b"x",), TypeError),
    ((b"x", 0, ("127.0.0.1", 1), 4), TypeError),
    ((b"x", ("127.0.0.1", 70000)), OverflowError),
    (("str", ("127.0.0.1", 1)), TypeError),
])
def test_sendto_refuses_bad_arguments_as_the_standard_socket(mod, track, args,
                                                             exc):
    s = _udp(mod, track)
    with pytest.raises(exc):
        s.sendto(*args)


@pytest.mark.parametrize("mod", IMPLS, ids=IDS)
def test_recvfrom_negative_size_and_short_buffer(mod, track):
    s = _udp(mod, track)
    with pytest.raises(ValueError, match="negative buffersize in recvfrom"):
        s.recvfrom(-1)
    with pytest.raises(ValueError,
                       match="nbytes is greater than the length of the buffer"):
        s.recvfrom_into(bytearray(2), 3)


# --- moving a descriptor to another thread's hub: a hand-off, no polling -----


def test_a_socket_moves_to_another_thread_without_polling_its_hub(track):
    a, b = _stream_pair(psocket, track)
    registered = threading.Event()
    release = threading.Event()
    errors = []

    def first_owner():
        try:
            a.settimeout(0.05)
            with pytest.raises(TimeoutError):
                a.recv(10)  # waits: the descriptor registers with this hub
            registered.set()
            # This hub is held for a while (an unpatched blocking call): the
            # other thread's take-over waits for it, without spinning.
            time.sleep(0.4)
            ptsevent.sleep(1.0)  # now this hub runs the posted release
            release.wait(5)
        except BaseException as e:  # noqa: BLE001 - checked below
            errors.append(e)

    t1 = threading.Thread(target=first_owner)
    t1.start()
    result = {}

    def second_owner():
        try:
            assert registered.wait(5)
            polls = ptsevent.hub_stats()["polls"]
            a.settimeout(5)
            start = time.monotonic()
            threading.Timer(0.1, b.send, (b"moved",)).start()
            result["data"] = a.recv(10)
            result["elapsed"] = time.monotonic() - start
            result["polls"] = ptsevent.hub_stats()["polls"] - polls
        except BaseException as e:  # noqa: BLE001 - checked below
            errors.append(e)
        finally:
            release.set()

    t2 = threading.Thread(target=second_owner)
    t2.start()
    t2.join(10)
    t1.join(10)
    assert not errors, errors
    assert result["data"] == b"moved"
    assert result["elapsed"] < 3
    # The old hand-off polled every 0.5 ms for the ~0.3 s the first hub was
    # held: hundreds of polls. A hand-off takes a few.
    assert result["polls"] < 50, result


# --- a FIFO writer waits cooperatively for its reader ------------------------


def test_fifo_writer_open_waits_for_a_reader_and_other_tasklets_run():
    d = tempfile.mkdtemp()
    path = os.path.join(d, "fifo")
    os.mkfifo(path)
    try:
        assert stat.S_ISFIFO(os.stat(path).st_mode)
        ticks = []

        def ticker():
            for _ in range(5):
                ticks.append(time.monotonic())
                ptsevent.sleep(0.02)

        def writer():
            with pos.open(path, "wb") as f:
                f.write(b"through the fifo")

        tk = ptsevent.spawn(ticker)
        w = ptsevent.spawn(writer)
        ptsevent.sleep(0.1)
        assert not w.dead  # still waiting for a reader
        with pos.open(path, "rb") as f:
            assert f.read() == b"through the fifo"
        w.join(5)
        tk.join(5)
        assert w.dead and len(ticks) == 5
    finally:
        os.unlink(path)
        os.rmdir(d)

"""Waiting structures own their waiters: a descriptor's readers, a channel's
blocked tasklets, a tasklet's joiners and the HTTP server's drain waiters. A
waiter that leaves early (timeout, kill) leaves no trace, the others are
still woken, and nothing is counted as waiting afterwards."""

import ptsevent
import ptsevent.socket as psocket
from ptsevent import stackless
from ptsevent.stackless import channel, tasklet


def test_joiners_that_time_out_or_are_killed_leave_the_others_woken():
    target = ptsevent.spawn(ptsevent.sleep, 0.05)
    outcome = {}

    def joiner(name, timeout):
        try:
            target.join(timeout)
            outcome[name] = target.dead
        except ptsevent.TaskletExit:
            outcome[name] = "killed"

    joiners = [ptsevent.spawn(joiner, "early", 0.001),
               ptsevent.spawn(joiner, "killed", None),
               ptsevent.spawn(joiner, "a", None),
               ptsevent.spawn(joiner, "b", 5)]
    ptsevent.sleep(0.01)
    joiners[1].kill()
    for t in joiners:
        t.join()
    assert outcome == {"early": False, "killed": "killed", "a": True, "b": True}
    # A tasklet already dead is joined at once, as often as asked.
    target.join()
    target.join(0)
    assert ptsevent.hub_stats()["tasklets"] == 0
    assert ptsevent.hub_stats()["events"] == 0


def test_socket_readers_killed_or_timed_out_leave_the_handle_usable():
    a, b = psocket.socketpair()
    got = []

    def reader():
        try:
            got.append(a.recv(10))
        except TimeoutError:
            got.append("timeout")
        except ptsevent.TaskletExit:
            got.append("killed")

    try:
        a.settimeout(0.001)
        ptsevent.spawn(reader).join(5)
        assert got == ["timeout"]
        a.settimeout(None)
        killed = ptsevent.spawn(reader)
        kept = ptsevent.spawn(reader)
        ptsevent.sleep(0.01)
        assert ptsevent.hub_stats()["io_waiters"] == 2
        killed.kill()
        assert ptsevent.hub_stats()["io_waiters"] == 1
        b.sendall(b"data")
        kept.join(5)
        assert got == ["timeout", "killed", b"data"]
        assert ptsevent.hub_stats()["io_waiters"] == 0
    finally:
        a.close()
        b.close()


def test_a_killed_blocked_receiver_leaves_the_channel_to_the_next_one():
    ch = channel()
    got = []

    def receiver(name):
        try:
            got.append((name, ch.receive()))
        except ptsevent.TaskletExit:
            got.append((name, "killed"))

    first = tasklet(receiver)("first")
    second = tasklet(receiver)("second")
    stackless.run()
    assert ch.balance == -2 and ch.queue is first
    first.kill()
    assert ch.balance == -1 and ch.queue is second
    assert first.tempval is None
    ch.send("value")
    stackless.run()
    assert got == [("first", "killed"), ("second", "value")]
    assert ch.balance == 0 and ch.queue is None


def test_many_blocked_senders_are_served_in_order_with_their_values():
    ch = channel()
    for rnd in range(3):
        senders = [tasklet(ch.send)((rnd, i)) for i in range(50)]
        stackless.run()
        assert ch.balance == 50
        assert senders[10].tempval == (rnd, 10)
        assert [ch.receive() for _ in range(50)] == [(rnd, i) for i in range(50)]
        stackless.run()
        assert all(s.dead for s in senders)
        assert ch.balance == 0 and ch.queue is None


def test_server_drain_waiters_that_time_out_or_are_killed_leave_the_others(
        serve_app):
    release = ptsevent.Event()

    def app(environ, start_response):
        release.wait()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", "2")])
        return [b"ok"]

    server = serve_app(app)
    client = psocket.create_connection(("127.0.0.1", server.server_port))
    outcome = {}

    def drain(name, timeout):
        try:
            outcome[name] = server._core.wait_drained(timeout)
        except ptsevent.TaskletExit:
            outcome[name] = "killed"

    try:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        ptsevent.sleep(0.05)  # the app is running, waiting on `release`
        waiters = [ptsevent.spawn(drain, "early", 0.01),
                   ptsevent.spawn(drain, "killed", None),
                   ptsevent.spawn(drain, "a", None),
                   ptsevent.spawn(drain, "b", 5)]
        ptsevent.sleep(0.05)
        waiters[1].kill()
        assert outcome == {"early": False, "killed": "killed"}
        release.set()
        for t in waiters:
            t.join(5)
        assert outcome == {"early": False, "killed": "killed", "a": True,
                           "b": True}
        assert client.recv(1024).endswith(b"ok")
        # Nothing runs: a new wait returns at once.
        assert server._core.wait_drained(0) is True
    finally:
        client.close()

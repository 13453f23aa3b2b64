"""Stackless channels (ptsevent.stackless.channel, the C++ _core.Channel).

The expected outputs follow from Stackless's documented channel semantics:

* send() with no receiver waiting blocks the sender (balance > 0); receive()
  with no sender waiting blocks the receiver (balance < 0);
* when the counterpart is waiting, the value passes and the channel's
  preference decides who runs: the counterpart is switched to at once when
  preference == -direction (send is +1, receive -1; the default -1 prefers
  the receiver), the current tasklet going to the end of the runnables;
  otherwise the counterpart is appended to the runnables and the current
  tasklet goes on;
* close() stops the queue from growing: closing is True at once, closed once
  the balance is 0 too; a blocking send/receive on it raises ValueError and
  iteration ends.

Each trace is worked out in the test's comment, with the runnables written
[head, ..., tail]; the main tasklet sits behind the others while it is in
stackless.run(), which makes no difference to their order.
"""

import threading

import pytest

import ptsevent
from ptsevent import stackless
from ptsevent.stackless import channel, tasklet


class Boom(Exception):
    pass


# --- preference: who runs after a transfer to a waiting tasklet -------------


# A receiver blocks first; a sender then finds it waiting. "other" was
# inserted after both and shows where the sender and receiver went.
SEND_TO_WAITING_RECEIVER = {
    # [r, s, other]: r blocks -> [s, other]; s sends, -1 == -(+1): switch to
    # r, s to the end -> [r, other, s]; r ends, other, then s.
    -1: ["r waits", "s sends", "r got 1", "other", "s sent"],
    # 1 != -1: r appended -> [s, other, r]; s goes on.
    1: ["r waits", "s sends", "s sent", "other", "r got 1"],
    # 0 never switches: as 1.
    0: ["r waits", "s sends", "s sent", "other", "r got 1"],
}

# A sender blocks first; a receiver then finds it waiting.
RECEIVE_FROM_WAITING_SENDER = {
    # [s, r, other]: s blocks -> [r, other]; r receives, -1 != -(-1): s
    # appended -> [r, other, s]; r goes on.
    -1: ["s sends", "r waits", "r got 1", "other", "s sent"],
    # 1 == -(-1): switch to s, r to the end -> [s, other, r].
    1: ["s sends", "r waits", "s sent", "other", "r got 1"],
    # 0 never switches: as -1.
    0: ["s sends", "r waits", "r got 1", "other", "s sent"],
}


def _transfer(preference, receiver_first):
    log = []
    ch = channel()
    ch.preference = preference

    def receiver():
        log.append("r waits")
        log.append(f"r got {ch.receive()}")

    def sender():
        log.append("s sends")
        ch.send(1)
        log.append("s sent")

    def other():
        log.append("other")

    first, second = (receiver, sender) if receiver_first else (sender, receiver)
    tasklet(first)()
    tasklet(second)()
    tasklet(other)()
    stackless.run()
    assert ch.balance == 0
    return log


@pytest.mark.parametrize("preference", [-1, 0, 1])
def test_send_to_a_waiting_receiver_follows_the_preference(preference):
    assert _transfer(preference, receiver_first=True) == SEND_TO_WAITING_RECEIVER[preference]


@pytest.mark.parametrize("preference", [-1, 0, 1])
def test_receive_from_a_waiting_sender_follows_the_preference(preference):
    assert _transfer(preference, receiver_first=False) == RECEIVE_FROM_WAITING_SENDER[preference]


def test_preference_defaults_to_prefer_receiver_and_takes_minus_one_zero_one():
    ch = channel()
    assert ch.preference == -1
    for p in (1, 0, -1):
        ch.preference = p
        assert ch.preference == p


# --- balance and queue ----------------------------------------------------


def test_balance_counts_blocked_receivers_then_blocked_senders():
    ch = channel()
    log = []
    receivers = [tasklet(lambda n=n: log.append(f"r{n} {ch.receive()}"))() for n in range(3)]
    stackless.run()  # all three block in order
    assert ch.balance == -3
    assert ch.queue is receivers[0]
    assert all(r.blocked for r in receivers)
    balances = [ch.balance]
    for value in "abc":
        # The receiver at the head is switched to (preference -1); main
        # comes back once it has ended.
        ch.send(value)
        balances.append(ch.balance)
    assert balances == [-3, -2, -1, 0]
    assert log == ["r0 a", "r1 b", "r2 c"]
    assert ch.queue is None

    senders = [tasklet(ch.send)(n) for n in range(2)]
    stackless.run()
    assert ch.balance == 2
    assert ch.queue is senders[0]
    assert senders[0].tempval == 0  # the value waiting in the blocked sender
    assert [ch.receive(), ch.balance, ch.receive(), ch.balance] == [0, 1, 1, 0]
    stackless.run()  # the senders, appended by receive(), end
    assert all(s.dead for s in senders)


# --- exceptions over a channel ----------------------------------------------


def test_send_exception_raises_in_the_receiver():
    ch = channel()
    caught = []

    def receiver():
        try:
            ch.receive()
        except Boom as e:
            caught.append(e.args)

    tasklet(receiver)()
    stackless.run()
    ch.send_exception(Boom, "bad", 2)
    assert caught == [("bad", 2)]
    assert ch.balance == 0


def _throw_through_channel(*args):
    ch = channel()
    caught = []

    def receiver():
        try:
            ch.receive()
        except Boom as e:
            caught.append(e)

    tasklet(receiver)()
    stackless.run()
    ch.send_throw(*args)
    assert ch.balance == 0
    return caught


def _raised():
    try:
        raise Boom("original")
    except Boom as e:
        return e, e.__traceback__


def _frame_names(tb):
    names = []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return names


def test_send_throw_raises_an_instance_with_its_traceback():
    exc, tb = _raised()
    caught = _throw_through_channel(exc, None, tb)
    assert caught == [exc]
    # The receiving frame, then the traceback that was sent along.
    assert _frame_names(caught[0].__traceback__)[-1] == "_raised"


def test_send_throw_with_a_type_and_a_value_builds_the_exception():
    caught = _throw_through_channel(Boom, "message")
    assert [type(e) for e in caught] == [Boom]
    assert caught[0].args == ("message",)


def test_send_throw_with_a_type_and_an_instance_raises_the_instance():
    exc, tb = _raised()
    caught = _throw_through_channel(Boom, exc, tb)
    assert caught == [exc]


def test_send_exception_to_a_blocked_sender_side_waits_for_a_receiver():
    ch = channel()
    t = tasklet(ch.send_exception)(Boom, "later")
    stackless.run()
    assert ch.balance == 1 and t.blocked
    with pytest.raises(Boom, match="later"):
        ch.receive()
    stackless.run()
    assert t.dead and ch.balance == 0


def test_send_exception_needs_an_exception():
    ch = channel()
    with pytest.raises(TypeError):
        ch.send_exception(42)
    with pytest.raises(TypeError):
        ch.send_exception()
    with pytest.raises(TypeError):
        ch.send_throw()
    with pytest.raises(TypeError):
        ch.send_throw("not an exception")
    assert ch.balance == 0


def test_send_throw_refuses_an_instance_with_a_separate_value():
    ch = channel()
    receiver = tasklet(lambda: pytest.raises(Boom, ch.receive))()
    stackless.run()  # waiting, so that a wrong send does not block main
    try:
        with pytest.raises(TypeError):
            ch.send_throw(Boom("x"), "extra value")
    finally:
        receiver.kill()


# --- send_sequence, iteration, close --------------------------------------


def test_send_sequence_into_a_for_loop_ends_at_close():
    ch = channel()
    # Prefer the sender, so that the consumer is not blocked when the
    # producer closes the channel. [consumer, producer]:
    # consumer blocks in next(); producer sends 0 to it (1 != -(+1): the
    # consumer is appended) and blocks on 1 -> [consumer].
    # consumer logs 0, receives 1 from the waiting producer (1 == -(-1):
    # switch to it) -> [producer, consumer]; producer blocks on 2 ...
    # after 4 was taken, the producer returns 5 from send_sequence, closes
    # the channel (balance 0: closed) and ends; the consumer logs 4 and the
    # loop ends.
    ch.preference = 1
    log = []

    def consumer():
        for value in ch:
            log.append(value)
        log.append("end")

    def producer():
        log.append(f"sent {ch.send_sequence(range(5))}")
        ch.close()

    tasklet(consumer)()
    tasklet(producer)()
    stackless.run()
    assert log == [0, 1, 2, 3, "sent 5", 4, "end"]
    assert ch.closing and ch.closed and ch.balance == 0


def test_close_with_no_tasklet_waiting_closes_at_once():
    ch = channel()
    assert not ch.closing and not ch.closed
    ch.close()
    assert ch.closing and ch.closed
    with pytest.raises(ValueError):
        ch.send(1)
    with pytest.raises(ValueError):
        ch.receive()
    assert list(ch) == []
    assert ch.balance == 0
    ch.open()
    assert not ch.closing and not ch.closed
    t = tasklet(ch.send)("again")
    assert ch.receive() == "again"
    stackless.run()
    assert t.dead


def test_close_with_senders_waiting_is_closing_until_they_are_drained():
    ch = channel()
    senders = [tasklet(ch.send)(v) for v in "xy"]
    stackless.run()
    assert ch.balance == 2
    ch.close()
    assert ch.closing and not ch.closed
    assert ch.receive() == "x"
    assert ch.closing and not ch.closed
    assert list(ch) == ["y"]  # iteration takes what is left, then ends
    assert ch.closed
    with pytest.raises(ValueError):
        ch.receive()
    with pytest.raises(ValueError):
        ch.send("z")
    stackless.run()
    assert all(s.dead for s in senders)


def test_close_wakes_the_receivers_already_waiting():
    # A documented difference from Stackless, which leaves them blocked:
    # ptsevent's close() wakes them, receive() raising ValueError and a for
    # loop ending.
    ch = channel()
    log = []

    def receive_one():
        try:
            ch.receive()
        except ValueError:
            log.append("receive: ValueError")

    def iterate():
        for value in ch:
            log.append(value)
        log.append("loop ended")

    tasklet(receive_one)()
    tasklet(iterate)()
    stackless.run()
    assert ch.balance == -2
    ch.close()
    assert ch.closed
    stackless.run()
    assert log == ["receive: ValueError", "loop ended"]


# --- the classic programs ---------------------------------------------------


PING_PONG = {
    # [ping, pong]. ping blocks sending on a. pong receives (no switch at -1:
    # ping appended), logs, blocks sending on b. ping logs "sent", receives
    # from the waiting pong (pong appended), logs, blocks sending on a ...
    -1: [
        "pong got ping 0", "ping sent 0", "ping got pong 0", "pong sent 0",
        "pong got ping 1", "ping sent 1", "ping got pong 1", "pong sent 1",
        "pong got ping 2", "ping sent 2", "ping got pong 2", "pong sent 2",
    ],
    # ping blocks sending on a. pong's receive switches to the waiting ping
    # (1 == -(-1)), pong appended: ping logs "sent" and blocks receiving on
    # b. pong logs, sends on b to the waiting ping (appended, pong goes on),
    # logs "sent", blocks receiving on a. ping logs, sends to the waiting
    # pong (appended), logs "sent" ...
    1: [
        "ping sent 0", "pong got ping 0", "pong sent 0", "ping got pong 0",
        "ping sent 1", "pong got ping 1", "pong sent 1", "ping got pong 1",
        "ping sent 2", "pong got ping 2", "pong sent 2", "ping got pong 2",
    ],
}


@pytest.mark.parametrize("preference", sorted(PING_PONG))
def test_ping_pong(preference):
    a, b = channel(), channel()
    a.preference = b.preference = preference
    log = []

    def ping(n):
        for i in range(n):
            a.send(("ping", i))
            log.append(f"ping sent {i}")
            who, j = b.receive()
            log.append(f"ping got {who} {j}")

    def pong(n):
        for i in range(n):
            who, j = a.receive()
            log.append(f"pong got {who} {j}")
            b.send(("pong", i))
            log.append(f"pong sent {i}")

    tasklet(ping)(3)
    tasklet(pong)(3)
    stackless.run()
    assert log == PING_PONG[preference]
    assert stackless.getruncount() == 1
    assert a.balance == b.balance == 0


def test_producers_and_consumers_on_one_channel():
    # [X, Y, A, B]: X and Y block receiving (queue X, Y). A sends to X
    # (-1: switch to X, A to the end) -> [X, B, A]; X logs and blocks again
    # (queue Y, X). B sends to Y -> [Y, A, B]; Y logs, blocks (queue X, Y).
    # A logs "sent 0", sends to X -> [X, B, A]; X logs, ends. B logs "sent
    # 0", sends to Y -> [Y, A, B]; Y logs, ends; A and B log "sent 1".
    ch = channel()
    log = []

    def producer(name, n):
        for i in range(n):
            ch.send(f"{name}{i}")
            log.append(f"{name} sent {i}")

    def consumer(name, n):
        for _ in range(n):
            log.append(f"{name} got {ch.receive()}")

    tasklet(consumer)("X", 2)
    tasklet(consumer)("Y", 2)
    tasklet(producer)("A", 2)
    tasklet(producer)("B", 2)
    stackless.run()
    assert log == [
        "X got A0", "Y got B0", "A sent 0", "X got A1",
        "B sent 0", "Y got B1", "A sent 1", "B sent 1",
    ]
    assert ch.balance == 0


@pytest.mark.parametrize("preference", [-1, 0, 1])
def test_sieve_of_eratosthenes_over_a_chain_of_channels(preference, capsys):
    # The counter feeds 2, 3, 4 ... into the first channel; each prime read
    # by main adds a filter tasklet between the last channel and a new one.
    def counter(out):
        n = 2
        while True:
            out.send(n)
            n += 1

    def sift(prime, inp, out):
        for n in inp:
            if n % prime:
                out.send(n)

    def new_channel():
        ch = channel()
        ch.preference = preference
        chans.append(ch)
        return ch

    chans = []
    ch = new_channel()
    workers = [tasklet(counter)(ch)]
    for _ in range(10):
        prime = ch.receive()
        print(prime)
        out = new_channel()
        workers.append(tasklet(sift)(prime, ch, out))
        ch = out

    assert capsys.readouterr().out.split() == [
        "2", "3", "5", "7", "11", "13", "17", "19", "23", "29"]
    for t in workers:
        t.kill()
        assert t.dead
    assert [c.balance for c in chans] == [0] * len(chans)


# --- kills, bad input, threads ----------------------------------------------


@pytest.mark.parametrize("side", ["receive", "send"])
def test_tasklet_killed_while_blocked_leaves_the_channel_balanced(side):
    ch = channel()
    log = []

    def blocked():
        try:
            ch.receive() if side == "receive" else ch.send("never taken")
        finally:
            log.append("cleanup")

    t = tasklet(blocked)()
    stackless.run()
    assert ch.balance == (-1 if side == "receive" else 1)
    assert t.blocked and ch.queue is t
    t.kill()
    assert t.dead and log == ["cleanup"]
    assert ch.balance == 0 and ch.queue is None
    assert t.tempval is None
    assert ptsevent.hub_stats()["tasklets"] == 0


def test_main_receiving_with_no_possible_sender_gets_loop_exit():
    # Stackless raises RuntimeError ("Deadlock"); ptsevent raises LoopExit
    # (a documented difference). The channel is left balanced.
    ch = channel()
    with pytest.raises(ptsevent.LoopExit):
        ch.receive()
    assert ch.balance == 0


def test_send_on_a_closed_channel_raises_value_error():
    ch = channel()
    ch.close()
    with pytest.raises(ValueError):
        ch.send(1)
    with pytest.raises(ValueError):
        ch.send_exception(Boom)
    with pytest.raises(ValueError):
        ch.send_sequence([1, 2])
    assert ch.balance == 0


def test_preference_out_of_range_or_not_an_int_is_refused():
    # Stackless clamps out-of-range values; ptsevent refuses them (a
    # documented difference).
    ch = channel()
    with pytest.raises(ValueError):
        ch.preference = 5
    with pytest.raises(ValueError):
        ch.preference = -2
    with pytest.raises(TypeError):
        ch.preference = "1"
    with pytest.raises(AttributeError):
        del ch.preference
    assert ch.preference == -1


def test_channel_takes_no_arguments():
    with pytest.raises(TypeError):
        channel(1)


def test_channel_of_another_thread_raises_runtime_error():
    ch = channel()
    errors = []

    def other_thread():
        for op in (ch.receive, lambda: ch.send(1), ch.close):
            try:
                op()
            except RuntimeError as e:
                errors.append(str(e))

    th = threading.Thread(target=other_thread)
    th.start()
    th.join()
    assert len(errors) == 3
    assert all("another thread" in e for e in errors)
    assert ch.balance == 0 and not ch.closing


def test_spawned_tasklets_and_stackless_tasklets_share_channels():
    ch = channel()
    got = []
    r = ptsevent.spawn(lambda: got.extend([ch.receive(), ch.receive()]))
    tasklet(ch.send)("from a stackless tasklet")
    t = ptsevent.spawn(ch.send, "from a spawned tasklet")
    r.join()
    ptsevent.joinall([t])
    assert got == ["from a stackless tasklet", "from a spawned tasklet"]

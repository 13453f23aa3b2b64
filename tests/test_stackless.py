"""The Stackless API (ptsevent.stackless): tasklets, the scheduler functions,
and interoperation with the rest of ptsevent.

Expected outputs follow from Stackless's documented semantics: tasklet(f)(...)
and insert() append to the runnables; schedule() moves the current tasklet to
their end; schedule_remove() takes it out until insert(); run() runs the
runnables until only the caller is left; alive/paused/scheduled/blocked as in
the Stackless tasklet documentation. Where ptsevent differs (documented in the
module docstring), the test says so.
"""

import logging

import pytest

import ptsevent
import ptsevent.socket
from ptsevent import stackless
from ptsevent.stackless import channel, tasklet


class Boom(Exception):
    pass


# --- creating, binding, scheduling -----------------------------------------


def test_calling_a_tasklet_binds_the_arguments_and_schedules_it():
    log = []

    def f(*args, **kwargs):
        log.append((args, kwargs))
        return "done"

    t = tasklet(f)
    assert not t.alive and not t.scheduled
    assert t(1, 2, name="test") is t
    assert t.alive and t.scheduled and not t.paused
    assert log == []  # runs only when the caller lets the runnables run
    stackless.run()
    assert log == [((1, 2), {"name": "test"})]
    assert t.dead and not t.alive and not t.scheduled
    assert t.value == "done"


def test_tasklet_without_a_callable_is_bound_later():
    log = []
    t = tasklet()
    assert not t.alive
    with pytest.raises(RuntimeError):
        t.insert()  # nothing to run
    assert t.bind(log.append) is t
    assert not t.alive  # a function but no arguments yet
    t.setup("set up")
    stackless.run()
    assert log == ["set up"]


def test_bind_with_arguments_makes_it_alive_and_paused_until_inserted():
    log = []
    t = tasklet()
    t.bind(lambda *a, **k: log.append((a, k)), (1, 2), {"name": "test"})
    assert t.alive and t.paused and not t.scheduled
    with pytest.raises(RuntimeError, match="alive"):
        t.setup(3)
    stackless.run()
    assert log == []
    t.insert()
    assert t.scheduled and not t.paused
    stackless.run()
    assert log == [((1, 2), {"name": "test"})]


def test_constructor_takes_func_args_and_kwargs_like_bind():
    log = []
    t = tasklet(lambda a, b=0: log.append(a + b), (1,), {"b": 2})
    assert t.paused
    t.insert()
    stackless.run()
    assert log == [3]


def test_bind_none_unbinds():
    t = tasklet(print)
    t.bind(None)
    with pytest.raises(RuntimeError, match="not bound"):
        t.setup(1)
    assert not t.alive


def test_bad_binding_arguments_are_refused():
    with pytest.raises(TypeError):
        tasklet(42)
    t = tasklet()
    with pytest.raises(TypeError):
        t.bind(print, [1, 2])
    with pytest.raises(TypeError):
        t.bind(print, (1,), [("a", 1)])
    with pytest.raises(RuntimeError, match="not bound"):
        t.bind(None, (1,))


def test_rebinding_a_scheduled_or_finished_tasklet_is_refused():
    t = tasklet(lambda: None)()
    with pytest.raises(RuntimeError, match="scheduled"):
        t.bind(print)
    stackless.run()
    # Stackless can rebind a dead tasklet; a ptsevent tasklet runs once.
    with pytest.raises(RuntimeError):
        t.bind(print)
    with pytest.raises(RuntimeError):
        t.setup()


def test_the_current_tasklet_cannot_be_rebound():
    errors = []

    def f():
        try:
            stackless.getcurrent().bind(print)
        except RuntimeError as e:
            errors.append(str(e))

    tasklet(f)()
    stackless.run()
    assert errors == ["can't (re)bind the current tasklet"]


# --- schedule, getruncount, run --------------------------------------------


def test_schedule_runs_the_tasklets_round_robin():
    log = []

    def f(name):
        for i in range(3):
            log.append(f"{name}{i}")
            stackless.schedule()

    for name in "abc":
        tasklet(f)(name)
    stackless.run()
    assert log == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


def test_schedule_and_schedule_remove_return_retval():
    out = []

    def f():
        out.append(stackless.schedule() is stackless.getcurrent())
        out.append(stackless.schedule("value"))
        out.append(stackless.schedule(None))

    tasklet(f)()
    stackless.run()
    assert out == [True, "value", None]

    def g():
        out.append(stackless.schedule_remove("removed"))

    t = tasklet(g)()
    stackless.run()
    t.insert()
    stackless.run()
    assert out[-1] == "removed"


def test_getruncount_counts_the_runnables_and_the_current_tasklet():
    assert stackless.getruncount() == 1
    seen = []
    ts = [tasklet(lambda: seen.append(stackless.getruncount()))() for _ in range(2)]
    assert stackless.getruncount() == 3
    assert stackless.runcount == 3
    stackless.run()
    # The first saw itself, the second tasklet and main (in run()); the
    # second itself and main.
    assert seen == [3, 2]
    assert stackless.getruncount() == 1
    assert all(t.dead for t in ts)


def test_run_returns_when_only_channel_blocked_tasklets_are_left():
    a, b = channel(), channel()
    # Each waits for the other: a deadlock that must not hang run().
    t1 = tasklet(lambda: (a.receive(), b.send(1)))()
    t2 = tasklet(lambda: (b.receive(), a.send(1)))()
    stackless.run()
    assert t1.blocked and t2.blocked
    assert stackless.getruncount() == 1
    for t in (t1, t2):
        t.kill()
    assert a.balance == b.balance == 0


def test_run_with_a_timeout_is_not_supported():
    with pytest.raises(NotImplementedError):
        stackless.run(100)
    stackless.run(0)  # no timeout: fine


def test_main_may_call_run_repeatedly():
    log = []
    tasklet(log.append)(1)
    stackless.run()
    stackless.run()
    tasklet(log.append)(2)
    stackless.run()
    assert log == [1, 2]


# --- remove, insert, schedule_remove ----------------------------------------


def test_schedule_remove_suspends_until_insert():
    log = []

    def f():
        log.append("before")
        stackless.schedule_remove()
        log.append("after")

    t = tasklet(f)()
    stackless.run()
    assert log == ["before"]
    assert t.alive and t.paused and not t.scheduled and not t.blocked
    assert stackless.getruncount() == 1
    t.insert()
    assert t.scheduled and not t.paused
    stackless.run()
    assert log == ["before", "after"]
    assert t.dead


def test_remove_before_the_first_run_and_insert_again():
    log = []
    t = tasklet(log.append)("ran")
    assert t.scheduled
    assert t.remove() is t
    assert t.paused and not t.scheduled
    stackless.run()
    assert log == []
    t.insert()
    stackless.run()
    assert log == ["ran"]


def test_remove_a_tasklet_that_called_schedule():
    # [a, b]: a logs a0 and schedules -> [b, a]; b removes a -> [b] and
    # ends; run() returns. a.insert() -> [a]: a1, a2.
    log = []

    def a_fn():
        for i in range(3):
            log.append(f"a{i}")
            stackless.schedule()

    def b_fn():
        log.append("b removes a")
        a.remove()
        log.append(f"a paused: {a.paused}")

    a = tasklet(a_fn)()
    tasklet(b_fn)()
    stackless.run()
    assert log == ["a0", "b removes a", "a paused: True"]
    assert a.alive and a.paused
    a.insert()
    stackless.run()
    assert log[3:] == ["a1", "a2"]
    assert a.dead


def test_remove_then_insert_before_its_turn_keeps_it_scheduled():
    log = []
    t = tasklet(log.append)("ran")
    t.remove()
    t.insert()
    assert t.scheduled
    stackless.run()
    assert log == ["ran"]


def test_remove_refuses_the_current_and_a_blocked_tasklet():
    ch = channel()
    errors = []

    def f():
        try:
            stackless.getcurrent().remove()
        except RuntimeError as e:
            errors.append(str(e))
        ch.receive()

    t = tasklet(f)()
    stackless.run()
    assert errors == ["The current tasklet cannot be removed."]
    assert t.blocked
    with pytest.raises(RuntimeError, match="blocked"):
        t.remove()
    with pytest.raises(RuntimeError, match="blocked"):
        t.insert()
    ch.send(None)
    assert t.dead


def test_remove_of_a_tasklet_woken_by_a_channel_is_refused():
    # A documented ptsevent limitation: a tasklet on the run queue because a
    # channel woke it cannot be taken off it.
    ch = channel()
    ch.preference = 1  # the sender goes on; the receiver is appended
    r = tasklet(ch.receive)()
    stackless.run()
    ch.send("x")
    assert r.scheduled and not r.blocked
    with pytest.raises(RuntimeError, match="run queue"):
        r.remove()
    stackless.run()
    assert r.dead and r.value == "x"


def test_insert_of_a_dead_tasklet_is_refused_and_of_a_scheduled_one_is_a_no_op():
    log = []
    t = tasklet(log.append)(1)
    t.insert()  # already scheduled
    stackless.run()
    assert log == [1]
    with pytest.raises(RuntimeError, match="dead"):
        t.insert()


def test_tasklet_run_runs_it_before_the_caller_resumes():
    log = []
    t = tasklet(log.append)("t ran")
    t.remove()
    t.run()
    log.append("main resumed")
    assert log == ["t ran", "main resumed"]
    assert t.dead


def test_tasklet_switch_pauses_the_caller_until_inserted():
    # main: t.switch() -> main removed, t runs; t inserts main and ends;
    # main resumes.
    log = []

    def f():
        log.append("t runs")
        stackless.getmain().insert()
        log.append("t ends")

    t = tasklet(f)
    t.bind(f, ())
    t.switch()
    log.append("main back")
    assert log == ["t runs", "t ends", "main back"]


# --- state attributes -------------------------------------------------------


def test_state_attributes_through_the_life_cycle():
    ch = channel()
    seen = {}

    def f():
        me = stackless.getcurrent()
        seen["running"] = (me.alive, me.scheduled, me.blocked, me.paused, me.is_current)
        ch.receive()

    t = tasklet(f)
    assert (t.alive, t.scheduled, t.blocked, t.paused) == (False, False, False, False)
    t.bind(f, ())
    assert (t.alive, t.scheduled, t.blocked, t.paused) == (True, False, False, True)
    t.insert()
    assert (t.alive, t.scheduled, t.blocked, t.paused) == (True, True, False, False)
    stackless.run()
    assert seen["running"] == (True, True, False, False, True)
    assert (t.alive, t.scheduled, t.blocked, t.paused) == (True, True, True, False)
    assert not t.is_current
    ch.send(None)
    assert (t.alive, t.scheduled, t.blocked, t.paused) == (False, False, False, False)
    assert t.next is None and t.prev is None
    assert isinstance(t.thread_id, int)


def test_tempval_is_the_value_a_blocked_sender_holds():
    ch = channel()
    t = tasklet(ch.send)("payload")
    stackless.run()
    assert t.tempval == "payload"
    assert ch.receive() == "payload"
    stackless.run()


def test_repr_names_the_function_and_the_state():
    def work():
        pass

    t = tasklet(work)
    assert "work" in repr(t) and "bound" in repr(t)
    t()
    assert "scheduled" in repr(t)
    stackless.run()
    assert "dead" in repr(t)


# --- kill, throw, raise_exception ------------------------------------------


def test_kill_a_tasklet_blocked_on_a_channel():
    ch = channel()
    log = []

    def f():
        try:
            ch.receive()
        except ptsevent.TaskletExit:
            log.append("TaskletExit")
            raise
        finally:
            log.append("finally")

    t = tasklet(f)()
    stackless.run()
    assert ch.balance == -1
    assert t.kill() is None
    assert log == ["TaskletExit", "finally"]
    assert t.dead and not t.alive
    assert t.exception is None  # TaskletExit is a normal end
    assert ch.balance == 0


def test_kill_a_tasklet_that_has_not_run_yet():
    log = []
    t = tasklet(log.append)("never")
    t.kill()
    stackless.run()
    assert log == [] and t.dead


def test_kill_pending_returns_at_once():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        finally:
            log.append("finally")

    t = tasklet(f)()
    stackless.run()
    t.kill(pending=True)
    log.append("caller goes on")
    assert not t.dead
    stackless.run()
    assert log == ["caller goes on", "finally"]
    assert t.dead


def test_kill_of_a_tasklet_that_is_not_alive_does_nothing():
    log = []
    t = tasklet()
    assert t.kill() is None
    t.bind(log.append)
    t.setup("still runs")
    stackless.run()
    assert log == ["still runs"]
    assert t.kill() is None  # dead: nothing happens


def test_kill_accepts_stackless_and_ptsevent_arguments():
    ch = channel()
    a = tasklet(ch.receive)()
    b = tasklet(ch.receive)()
    stackless.run()
    a.kill(True)  # Stackless: pending
    b.kill(Boom, block=False)  # ptsevent: the exception, do not wait
    stackless.run()
    assert a.dead and a.exception is None
    assert b.dead and isinstance(b.exception, Boom)
    assert ch.balance == 0


def test_raise_exception_runs_the_target_before_the_caller():
    ch = channel()
    log = []

    def f():
        try:
            ch.receive()
        except Boom as e:
            log.append(f"caught {e.args}")

    t = tasklet(f)()
    stackless.run()
    t.raise_exception(Boom, "x", 1)
    log.append("caller resumes")
    assert log == ["caught ('x', 1)", "caller resumes"]
    assert t.dead and ch.balance == 0


def test_throw_pending_makes_the_target_runnable_and_goes_on():
    ch = channel()
    log = []

    def f():
        try:
            ch.receive()
        except Boom as e:
            log.append(f"caught {e}")

    t = tasklet(f)()
    stackless.run()
    t.throw(Boom("y"), pending=True)
    log.append("caller goes on")
    stackless.run()
    assert log == ["caller goes on", "caught y"]


def test_throw_takes_type_value_and_traceback_like_raise():
    caught = []

    def f():
        try:
            stackless.schedule_remove()
        except Boom as e:
            caught.append(e)

    try:
        raise Boom("with tb")
    except Boom as e:
        tb = e.__traceback__
    t = tasklet(f)()
    stackless.run()
    t.throw(Boom, "value", tb)
    assert [e.args for e in caught] == [("value",)]
    assert t.dead
    with pytest.raises(TypeError):
        t.throw(42)


def test_throw_to_a_dead_tasklet():
    t = tasklet(lambda: None)()
    stackless.run()
    with pytest.raises(RuntimeError, match="dead"):
        t.throw(Boom)
    with pytest.raises(RuntimeError, match="dead"):
        t.raise_exception(Boom)
    t.throw(ptsevent.TaskletExit)  # ending what has ended: no error
    t.kill()


def test_throw_to_the_current_tasklet_raises_right_here():
    me = stackless.getcurrent()
    with pytest.raises(Boom):
        me.throw(Boom)
    with pytest.raises(Boom):
        me.raise_exception(Boom, "now")
    with pytest.raises(TypeError):
        me.raise_exception("not a class")


def test_uncaught_exception_is_logged_and_kept_not_raised_in_main(caplog):
    # Stackless raises it again in the main tasklet; ptsevent logs it and
    # keeps it in tasklet.exception (a documented difference).
    def f():
        raise Boom("lost")

    t = tasklet(f)()
    with caplog.at_level(logging.ERROR, logger="ptsevent"):
        stackless.run()
    assert isinstance(t.exception, Boom)
    assert any(r.exc_info and r.exc_info[0] is Boom for r in caplog.records)
    with pytest.raises(Boom):
        t.get()


# --- main and current -------------------------------------------------------


def test_getcurrent_and_getmain_in_main_and_in_a_tasklet():
    main = stackless.getmain()
    assert stackless.getcurrent() is main
    assert main is ptsevent.getcurrent()
    assert main.is_main and main.alive and main.scheduled and main.is_current
    assert stackless.main is main and stackless.current is main
    seen = []

    def f():
        me = stackless.getcurrent()
        seen.append((me is t, stackless.getmain() is main, me.is_main,
                     stackless.current is me, stackless.main is main))

    t = tasklet(f)()
    stackless.run()
    assert seen == [(True, True, False, True, True)]
    with pytest.raises(AttributeError):
        stackless.no_such_attribute


def test_getmain_first_called_from_a_tasklet(run_python):
    r = run_python("""
        import ptsevent
        from ptsevent import stackless
        main = ptsevent.getcurrent()
        found = []
        t = ptsevent.spawn(lambda: found.append(stackless.getmain()))
        t.join()
        print(found[0] is main, main.is_main, type(main).__name__)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "tasklet"]


def test_a_spawned_tasklet_gets_the_stackless_interface_in_place():
    seen = []

    def f():
        me = stackless.getcurrent()
        seen.append((isinstance(me, tasklet), me is ptsevent.getcurrent(),
                     me.alive, me.scheduled))
        stackless.schedule_remove()

    t = ptsevent.spawn(f)
    ptsevent.sleep(0)
    assert seen == [(True, True, True, True)]
    assert isinstance(t, tasklet) and t.paused
    # ptsevent's own helpers still work on it: kill() keeps their signature.
    ptsevent.killall([t])
    assert t.dead


# --- interoperation with ptsevent --------------------------------------------


def test_stackless_tasklet_sleeps_and_is_joined():
    ch = channel()

    def f():
        ptsevent.sleep(0.01)
        ch.send("slept")
        return "result"

    t = tasklet(f)()
    stackless.run()
    # Sleeping is not runnable: run() returned (a documented difference).
    assert t.blocked and t.alive
    assert ch.receive() == "slept"
    t.join()
    assert t.dead and t.value == "result" and t.get() == "result"
    assert ptsevent.joinall([t]) == [t]


def test_stackless_tasklet_uses_a_ptsevent_socket():
    a, b = ptsevent.socket.socketpair()
    ch = channel()

    def reader():
        data = b""
        while len(data) < 5:
            data += b.recv(100)
        ch.send(data)
        b.sendall(b"pong")

    try:
        t = tasklet(reader)()
        stackless.run()
        assert t.blocked  # waiting for the socket
        a.sendall(b"hello")
        assert ch.receive() == b"hello"
        assert a.recv(100) == b"pong"
        t.join()
    finally:
        a.close()
        b.close()


def test_spawned_tasklet_joins_a_stackless_tasklet():
    ch = channel()
    t = tasklet(lambda: ch.receive() * 2)()
    joiner = ptsevent.spawn(t.get)
    stackless.run()
    assert not joiner.dead
    ch.send(21)
    assert joiner.get() == 42


def test_killall_and_joinall_take_stackless_tasklets():
    ch = channel()
    ts = [tasklet(ch.receive)() for _ in range(3)]
    stackless.run()
    assert ch.balance == -3
    ptsevent.killall(ts)
    assert all(t.dead for t in ts)
    assert ptsevent.joinall(ts) == ts
    assert ch.balance == 0


# --- a known ordering difference ---------------------------------------------


@pytest.mark.parametrize("how", ["schedule", "insert"])
def test_schedule_insert_and_channel_wakeups_share_one_fifo(how):
    # [r, a, s]: r blocks. a appends "a" to the runnables (schedule(): itself
    # -> [s, a]; insert: a new tasklet c -> [s, c]). s sends to the waiting
    # r with preference 1: r appended -> [s, a|c, r]; s goes on and ends;
    # then a|c, then r.
    ch = channel()
    ch.preference = 1
    log = []

    def r():
        log.append(f"r got {ch.receive()}")

    def a():
        if how == "schedule":
            stackless.schedule()
            log.append("a back")
        else:
            tasklet(log.append)("a back")

    def s():
        ch.send(1)
        log.append("s sent")

    for f in (r, a, s):
        tasklet(f)()
    stackless.run()
    assert log == ["s sent", "a back", "r got 1"]


def test_each_thread_has_its_own_main_tasklet_and_runnables():
    import threading

    main = stackless.getmain()
    seen = []

    def thread_main():
        log = []
        tasklet(log.append)("in the thread")
        seen.append(stackless.getruncount())
        stackless.run()
        m = stackless.getmain()
        seen.extend([log, m.is_main, m is not main, m is stackless.getcurrent()])

    th = threading.Thread(target=thread_main)
    th.start()
    th.join()
    assert seen == [2, ["in the thread"], True, True, True]
    assert stackless.getruncount() == 1

"""Tasklets: spawn, scheduling order, join/get/kill, links, joinall/killall,
contextvars, error reporting and LoopExit."""

import contextvars
import gc
import os
import logging
import threading
import time
import weakref

import greenlet
import pytest

import ptsevent
from ptsevent import TaskletExit


class MyError(Exception):
    pass


def forever():
    ptsevent.sleep(60)


# --- exception types -------------------------------------------------------


def test_tasklet_exit_is_greenlet_exit():
    assert ptsevent.TaskletExit is greenlet.GreenletExit


def test_loop_exit_is_an_exception():
    assert issubclass(ptsevent.LoopExit, Exception)


def test_blocking_switch_out_error_is_a_runtime_error():
    assert issubclass(ptsevent.BlockingSwitchOutError, RuntimeError)


# --- spawn and scheduling --------------------------------------------------


def test_spawn_non_callable_raises_type_error():
    with pytest.raises(TypeError):
        ptsevent.spawn(42)
    with pytest.raises(TypeError):
        ptsevent.spawn("not callable", 1)
    assert ptsevent.hub_stats()["tasklets"] == 0


def test_spawn_returns_tasklet_that_runs_only_when_spawner_waits():
    ran = []
    t = ptsevent.spawn(ran.append, 1)
    assert isinstance(t, ptsevent.Tasklet)
    assert ran == []
    assert not t.dead
    assert not t.ready()
    stats = ptsevent.hub_stats()
    assert stats["tasklets"] == 1
    assert stats["ready"] == 1
    ptsevent.sleep(0)
    assert ran == [1]
    assert t.dead
    assert t.ready()
    assert ptsevent.hub_stats()["tasklets"] == 0


def test_spawn_passes_args_and_kwargs():
    t = ptsevent.spawn(lambda *a, **k: (a, k), 1, 2, x=3, seconds=4)
    assert t.get() == ((1, 2), {"x": 3, "seconds": 4})


def test_spawned_tasklets_start_in_fifo_order():
    order = []
    tasklets = [ptsevent.spawn(order.append, i) for i in range(10)]
    ptsevent.joinall(tasklets)
    assert order == list(range(10))


def test_sleep_zero_interleaves_ready_tasklets_round_robin():
    order = []

    def worker(name):
        for i in range(3):
            order.append(f"{name}{i}")
            ptsevent.sleep(0)

    tasklets = [ptsevent.spawn(worker, n) for n in "abc"]
    ptsevent.joinall(tasklets)
    assert order == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


def test_sleep_zero_in_main_runs_every_ready_tasklet_once_before_returning():
    order = []

    def worker(name):
        order.append(name + "1")
        ptsevent.sleep(0)
        order.append(name + "2")

    a = ptsevent.spawn(worker, "a")
    b = ptsevent.spawn(worker, "b")
    ptsevent.sleep(0)
    assert order == ["a1", "b1"]
    ptsevent.sleep(0)
    assert order == ["a1", "b1", "a2", "b2"]
    assert a.dead and b.dead


def test_timers_fire_in_deadline_order_not_spawn_order():
    order = []

    def sleeper(d):
        ptsevent.sleep(d)
        order.append(d)

    delays = [0.05, 0.01, 0.04, 0.02, 0.03]
    ptsevent.joinall([ptsevent.spawn(sleeper, d) for d in delays])
    assert order == sorted(delays)


def test_spawned_tasklet_sees_itself_as_getcurrent():
    seen = []
    t = ptsevent.spawn(lambda: seen.append(ptsevent.getcurrent()))
    t.join()
    assert seen == [t]
    assert seen[0] is t


def test_main_program_is_a_tasklet_with_stable_identity():
    main = ptsevent.getcurrent()
    assert isinstance(main, ptsevent.Tasklet)
    assert ptsevent.getcurrent() is main
    other = ptsevent.spawn(ptsevent.getcurrent).get()
    assert other is not main
    assert ptsevent.getcurrent() is main


def test_tasklet_accepts_arbitrary_attributes_and_weak_references():
    t = ptsevent.spawn(lambda: None)
    t.name = "worker"
    t.extra = [1]
    assert t.__dict__["name"] == "worker"
    r = weakref.ref(t)
    assert r() is t
    t.join()
    assert t.extra == [1]


def test_dead_tasklet_is_freed_when_unreferenced():
    t = ptsevent.spawn(lambda: "x")
    t.join()
    r = weakref.ref(t)
    del t
    gc.collect()
    assert r() is None


def test_tasklet_state_properties_through_its_life():
    t = ptsevent.spawn(ptsevent.sleep, 0.02)
    assert (t.dead, t.ready()) == (False, False)
    assert t.value is None
    assert t.exception is None
    ptsevent.sleep(0)
    assert (t.started, t.dead, t.ready()) == (True, False, False)
    t.join()
    assert (t.dead, t.ready(), t.successful()) == (True, True, True)
    assert t.value is None
    assert t.exception is None


# --- join ------------------------------------------------------------------


def test_join_returns_none_after_tasklet_finishes():
    t = ptsevent.spawn(lambda: 42)
    assert t.join() is None
    assert t.dead
    assert t.value == 42


def test_join_on_dead_tasklet_returns_immediately():
    t = ptsevent.spawn(lambda: 1)
    t.join()
    start = time.monotonic()
    assert t.join() is None
    assert t.join(timeout=5) is None
    assert time.monotonic() - start < 0.05


def test_join_timeout_returns_none_like_thread_join_and_leaves_tasklet_running():
    t = ptsevent.spawn(forever)
    start = time.monotonic()
    assert t.join(timeout=0.05) is None
    elapsed = time.monotonic() - start
    assert 0.04 <= elapsed < 0.5
    assert not t.dead
    # only the tasklet's own sleep timer is left once join's timer is gone
    assert ptsevent.hub_stats()["events"] == 1
    t.kill()
    assert t.dead


def test_join_current_tasklet_raises_runtime_error_in_main():
    with pytest.raises(RuntimeError):
        ptsevent.getcurrent().join()


def test_join_current_tasklet_raises_runtime_error_in_spawned_tasklet():
    def selfjoin():
        with pytest.raises(RuntimeError):
            ptsevent.getcurrent().join()
        return "ok"

    assert ptsevent.spawn(selfjoin).get() == "ok"


class _ThreadPeer:
    """threading.Thread as the reference for join's contract."""

    def __init__(self):
        self._stop = threading.Event()
        self.obj = threading.Thread(target=self._stop.wait)
        self.obj.start()

    def current(self):
        return threading.current_thread()

    def alive(self):
        return self.obj.is_alive()

    def finish(self):
        self._stop.set()
        self.obj.join()


class _TaskletPeer:
    def __init__(self):
        self.obj = ptsevent.spawn(forever)
        ptsevent.sleep(0)

    def current(self):
        return ptsevent.getcurrent()

    def alive(self):
        return not self.obj.dead

    def finish(self):
        self.obj.kill()


@pytest.fixture(params=["threading", "ptsevent"])
def join_peer(request):
    peer = _ThreadPeer() if request.param == "threading" else _TaskletPeer()
    try:
        yield peer
    finally:
        peer.finish()


def test_join_with_non_number_timeout_raises_type_error_like_thread_join(join_peer):
    with pytest.raises(TypeError):
        join_peer.obj.join("1")


def test_join_with_negative_timeout_returns_at_once_like_thread_join(join_peer):
    start = time.monotonic()
    assert join_peer.obj.join(-1) is None
    assert time.monotonic() - start < 0.05
    assert join_peer.alive()


def test_join_current_raises_runtime_error_like_thread_join(join_peer):
    with pytest.raises(RuntimeError):
        join_peer.current().join()


# --- get -------------------------------------------------------------------


def test_get_returns_value():
    t = ptsevent.spawn(lambda a, b: a + b, 2, 3)
    assert t.get() == 5
    assert t.get() == 5
    assert t.successful()
    assert t.value == 5


def test_get_reraises_tasklet_exception_and_it_is_logged(caplog):
    def fail():
        raise MyError("boom")

    t = ptsevent.spawn(fail)
    with caplog.at_level(logging.ERROR, logger="ptsevent"):
        with pytest.raises(MyError, match="^boom$") as info:
            t.get()
    assert info.value is t.exception
    assert t.dead
    assert not t.successful()
    assert t.value is None
    # get() again re-raises the same exception
    with pytest.raises(MyError) as info2:
        t.get()
    assert info2.value is info.value


def test_get_nonblocking_on_unfinished_tasklet_raises_timeout_error():
    t = ptsevent.spawn(forever)
    with pytest.raises(TimeoutError):
        t.get(block=False)
    ptsevent.sleep(0)
    with pytest.raises(TimeoutError):
        t.get(block=False)
    assert not t.dead
    t.kill()


def test_get_with_timeout_raises_timeout_error_and_leaves_tasklet_running():
    t = ptsevent.spawn(forever)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        t.get(timeout=0.05)
    assert 0.04 <= time.monotonic() - start < 0.5
    assert not t.dead
    assert ptsevent.hub_stats()["events"] == 1
    t.kill()


def test_get_nonblocking_on_finished_tasklet_returns_value():
    t = ptsevent.spawn(lambda: "v")
    t.join()
    assert t.get(block=False) == "v"


def test_get_with_timeout_returns_value_when_tasklet_finishes_in_time():
    def slow():
        ptsevent.sleep(0.02)
        return "done"

    t = ptsevent.spawn(slow)
    assert t.get(timeout=2) == "done"


# --- kill ------------------------------------------------------------------


def test_kill_before_start_means_tasklet_never_runs():
    ran = []
    t = ptsevent.spawn(ran.append, 1)
    assert t.kill() is None
    assert t.dead
    assert ptsevent.hub_stats()["tasklets"] == 0
    ptsevent.sleep(0)
    ptsevent.sleep(0.01)
    assert ran == []
    assert t.successful()
    assert isinstance(t.value, TaskletExit)


def test_kill_before_start_with_block_false_means_tasklet_never_runs():
    ran = []
    t = ptsevent.spawn(ran.append, 1)
    t.kill(block=False)
    t.join()
    assert ran == []
    assert t.dead


def test_kill_while_sleeping_raises_tasklet_exit_at_wait_point_and_leaves_no_event():
    seen = []

    def sleeper():
        try:
            ptsevent.sleep(60)
        except BaseException as e:
            seen.append(type(e))
            raise

    t = ptsevent.spawn(sleeper)
    ptsevent.sleep(0)
    assert ptsevent.hub_stats()["events"] == 1
    start = time.monotonic()
    t.kill()
    assert time.monotonic() - start < 0.5
    assert t.dead
    assert seen == [TaskletExit]
    assert t.successful()
    assert isinstance(t.value, TaskletExit)
    stats = ptsevent.hub_stats()
    assert stats["events"] == 0
    assert stats["tasklets"] == 0


def test_killed_waiting_tasklet_leaves_no_event(pipe):
    r, _ = pipe
    t = ptsevent.spawn(ptsevent.wait_read, r)
    ptsevent.sleep(0)
    stats = ptsevent.hub_stats()
    assert stats["events"] == 1
    assert stats["libevent_events"] == 1 + stats["internal_events"]
    t.kill()
    assert t.dead
    stats = ptsevent.hub_stats()
    assert stats["events"] == 0
    assert stats["libevent_events"] == stats["internal_events"]


def test_kill_with_custom_exception_class_is_raised_as_instance():
    def catcher():
        try:
            ptsevent.sleep(60)
        except MyError as e:
            return e

    t = ptsevent.spawn(catcher)
    ptsevent.sleep(0)
    t.kill(MyError)
    assert t.dead
    assert type(t.value) is MyError


def test_kill_with_exception_instance_raises_that_instance():
    exc = MyError("stop now")

    def catcher():
        try:
            ptsevent.sleep(60)
        except MyError as e:
            return e

    t = ptsevent.spawn(catcher)
    ptsevent.sleep(0)
    t.kill(exc)
    assert t.value is exc


def test_kill_with_uncaught_custom_exception_makes_it_the_tasklet_exception(caplog):
    t = ptsevent.spawn(forever)
    ptsevent.sleep(0)
    with caplog.at_level(logging.ERROR, logger="ptsevent"):
        t.kill(MyError("killed"))
    assert t.dead
    assert not t.successful()
    assert isinstance(t.exception, MyError)
    assert str(t.exception) == "killed"
    with pytest.raises(MyError, match="^killed$"):
        t.get()


# None is not here: it stands for the default exception (TaskletExit), so
# that inspect can show kill()'s signature (tests/test_core_types.py).
@pytest.mark.parametrize("bad", [42, "TaskletExit", object, int])
def test_kill_with_non_exception_raises_type_error(bad):
    t = ptsevent.spawn(forever)
    ptsevent.sleep(0)
    with pytest.raises(TypeError):
        t.kill(bad)
    assert not t.dead
    t.kill()
    assert t.dead


def test_kill_dead_tasklet_does_nothing():
    t = ptsevent.spawn(lambda: 7)
    t.join()
    assert t.kill() is None
    assert t.kill(MyError) is None
    assert t.value == 7
    assert t.successful()
    assert t.exception is None


def test_kill_block_false_returns_without_waiting_for_cleanup():
    phases = []

    def slow_cleanup():
        try:
            ptsevent.sleep(60)
        finally:
            phases.append("cleanup-start")
            ptsevent.sleep(0.2)
            phases.append("cleanup-end")

    t = ptsevent.spawn(slow_cleanup)
    ptsevent.sleep(0)
    start = time.monotonic()
    assert t.kill(block=False) is None
    assert time.monotonic() - start < 0.1
    assert "cleanup-end" not in phases
    t.join()
    assert phases == ["cleanup-start", "cleanup-end"]
    assert t.dead


def test_kill_block_true_waits_for_cleanup():
    phases = []

    def slow_cleanup():
        try:
            ptsevent.sleep(60)
        finally:
            ptsevent.sleep(0.1)
            phases.append("cleanup-end")

    t = ptsevent.spawn(slow_cleanup)
    ptsevent.sleep(0)
    start = time.monotonic()
    t.kill()
    assert time.monotonic() - start >= 0.09
    assert phases == ["cleanup-end"]
    assert t.dead


def test_kill_with_timeout_returns_when_tasklet_resists_past_timeout():
    def stubborn():
        try:
            ptsevent.sleep(60)
        finally:
            ptsevent.sleep(0.3)

    t = ptsevent.spawn(stubborn)
    ptsevent.sleep(0)
    start = time.monotonic()
    t.kill(timeout=0.05)
    elapsed = time.monotonic() - start
    assert 0.04 <= elapsed < 0.25
    assert not t.dead
    t.join()
    assert t.dead


def test_kill_from_another_tasklet():
    victim = ptsevent.spawn(forever)
    killer = ptsevent.spawn(victim.kill)
    killer.join()
    assert victim.dead
    assert killer.successful()


def test_tasklet_exit_raised_inside_tasklet_counts_as_success_and_is_not_logged(caplog):
    def quit_():
        raise TaskletExit("bye")

    with caplog.at_level(logging.DEBUG, logger="ptsevent"):
        t = ptsevent.spawn(quit_)
        t.join()
    assert t.successful()
    assert isinstance(t.value, TaskletExit)
    assert t.value.args == ("bye",)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- uncaught exceptions -----------------------------------------------------


def test_uncaught_exception_is_logged_with_traceback_and_program_continues(caplog):
    def failing_worker_fn():
        raise ValueError("boom in tasklet")

    with caplog.at_level(logging.ERROR, logger="ptsevent"):
        t = ptsevent.spawn(failing_worker_fn)
        t.join()
        after = ptsevent.spawn(lambda: "still running").get()
    assert after == "still running"
    errors = [r for r in caplog.records if r.name == "ptsevent"]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert "Traceback (most recent call last)" in caplog.text
    assert "failing_worker_fn" in caplog.text
    assert "ValueError: boom in tasklet" in caplog.text
    assert isinstance(t.exception, ValueError)
    assert not t.successful()


def test_keyboard_interrupt_in_spawned_tasklet_is_reraised_in_main(run_python):
    proc = run_python(
        """
        import time, ptsevent
        def f():
            raise KeyboardInterrupt("from tasklet")
        t = ptsevent.spawn(f)
        start = time.monotonic()
        try:
            ptsevent.sleep(5)
        except KeyboardInterrupt as e:
            print("caught", e.args, time.monotonic() - start < 1.0)
        print("dead", t.dead)
        print("continues", ptsevent.spawn(lambda: 5).get())
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "caught ('from tasklet',) True",
        "dead True",
        "continues 5",
    ]


def test_system_exit_in_spawned_tasklet_exits_the_program(run_python):
    proc = run_python(
        """
        import ptsevent
        def f():
            raise SystemExit(3)
        ptsevent.spawn(f)
        ptsevent.sleep(5)
        print("not reached")
        """
    )
    assert proc.returncode == 3, proc.stderr
    assert "not reached" not in proc.stdout


# --- links -----------------------------------------------------------------


def test_link_callback_runs_in_new_tasklet_with_the_dead_tasklet():
    main = ptsevent.getcurrent()
    calls = []

    def cb(t):
        calls.append((t, t.dead, ptsevent.getcurrent()))

    t = ptsevent.spawn(lambda: 1)
    t.link(cb)
    t.join()
    ptsevent.sleep(0)
    ptsevent.sleep(0)
    assert len(calls) == 1
    got, was_dead, runner = calls[0]
    assert got is t
    assert was_dead is True
    assert runner is not t
    assert runner is not main
    assert isinstance(runner, ptsevent.Tasklet)


def test_link_on_dead_tasklet_is_scheduled_not_called_synchronously():
    calls = []
    t = ptsevent.spawn(lambda: 1)
    t.join()
    t.link(calls.append)
    assert calls == []
    ptsevent.sleep(0)
    ptsevent.sleep(0)
    assert calls == [t]


def test_link_called_once_per_callback_on_error_and_on_kill(caplog):
    calls = []

    def fail():
        raise MyError("x")

    with caplog.at_level(logging.ERROR, logger="ptsevent"):
        a = ptsevent.spawn(fail)
        a.link(lambda t: calls.append(("a", type(t.exception))))
        b = ptsevent.spawn(forever)
        b.link(lambda t: calls.append(("b", t.successful())))
        ptsevent.sleep(0)
        b.kill()
        for _ in range(3):
            ptsevent.sleep(0)
    assert sorted(calls) == [("a", MyError), ("b", True)]


def test_unlink_removes_callback():
    calls = []

    def cb(t):
        calls.append("cb")

    def other(t):
        calls.append("other")

    t = ptsevent.spawn(lambda: 1)
    t.link(cb)
    t.link(other)
    t.unlink(cb)
    t.join()
    for _ in range(3):
        ptsevent.sleep(0)
    assert calls == ["other"]


# --- spawn_later -----------------------------------------------------------


def test_spawn_later_runs_after_delay():
    ran = []

    def fn(x):
        ran.append(x)
        return x, time.monotonic() - start

    start = time.monotonic()
    t = ptsevent.spawn_later(0.1, fn, "arg")
    ptsevent.sleep(0)
    assert ran == []
    assert not t.dead
    value, at = t.get()
    assert value == "arg"
    assert at >= 0.09
    assert at < 1.0


def test_spawn_later_tasklets_start_in_deadline_order():
    order = []
    ptsevent.joinall(
        [
            ptsevent.spawn_later(0.06, order.append, "c"),
            ptsevent.spawn_later(0.02, order.append, "a"),
            ptsevent.spawn_later(0.04, order.append, "b"),
            ptsevent.spawn_later(0, order.append, "now"),
        ]
    )
    assert order == ["now", "a", "b", "c"]


def test_spawn_later_killed_before_deadline_never_runs_and_leaves_no_event():
    ran = []
    t = ptsevent.spawn_later(0.05, ran.append, 1)
    assert ptsevent.hub_stats()["events"] == 1
    assert ptsevent.hub_stats()["tasklets"] == 1
    t.kill()
    assert t.dead
    assert ptsevent.hub_stats()["events"] == 0
    ptsevent.sleep(0.1)
    assert ran == []


def test_spawn_later_negative_delay_raises_value_error():
    with pytest.raises(ValueError):
        ptsevent.spawn_later(-1, lambda: None)
    assert ptsevent.hub_stats()["tasklets"] == 0


@pytest.mark.parametrize("bad", ["1", None, [1]])
def test_spawn_later_non_number_delay_raises_type_error(bad):
    with pytest.raises(TypeError):
        ptsevent.spawn_later(bad, lambda: None)
    assert ptsevent.hub_stats()["tasklets"] == 0


def test_spawn_later_counts_as_something_that_can_wake_main():
    t = ptsevent.spawn_later(0.02, lambda: "woke")
    assert t.get() == "woke"


# --- joinall / killall -----------------------------------------------------


def test_joinall_returns_all_finished_tasklets():
    ts = [ptsevent.spawn(ptsevent.sleep, 0.01 * i) for i in range(4)]
    done = ptsevent.joinall(ts)
    assert isinstance(done, list)
    assert sorted(map(id, done)) == sorted(map(id, ts))
    assert all(t.dead for t in ts)


def test_joinall_with_timeout_returns_only_finished_tasklets():
    fast = ptsevent.spawn(ptsevent.sleep, 0.01)
    slow = ptsevent.spawn(forever)
    start = time.monotonic()
    done = ptsevent.joinall([fast, slow], timeout=0.1)
    elapsed = time.monotonic() - start
    assert 0.09 <= elapsed < 0.5
    assert done == [fast]
    assert not slow.dead
    ptsevent.killall([slow])
    assert slow.dead


def test_joinall_empty_list_returns_empty_list():
    assert ptsevent.joinall([]) == []


def test_joinall_raise_error_raises_first_failure_promptly(caplog):
    def fail():
        ptsevent.sleep(0.01)
        raise MyError("first")

    slow = ptsevent.spawn(forever)
    failing = ptsevent.spawn(fail)
    start = time.monotonic()
    try:
        with caplog.at_level(logging.ERROR, logger="ptsevent"):
            with pytest.raises(MyError, match="^first$"):
                # bounded so that waiting for `slow` fails the test instead of hanging
                with ptsevent.Timeout(2, AssertionError("joinall did not raise promptly")):
                    ptsevent.joinall([slow, failing], raise_error=True)
        assert time.monotonic() - start < 0.5
        assert not slow.dead
    finally:
        ptsevent.killall([slow])


def test_joinall_without_raise_error_does_not_raise(caplog):
    def fail():
        raise MyError("quiet")

    with caplog.at_level(logging.ERROR, logger="ptsevent"):
        t = ptsevent.spawn(fail)
        done = ptsevent.joinall([t])
    assert done == [t]
    assert isinstance(t.exception, MyError)


def test_killall_kills_every_tasklet_and_leaves_no_event():
    ts = [ptsevent.spawn(forever) for _ in range(5)]
    ptsevent.sleep(0)
    assert ptsevent.hub_stats()["events"] == 5
    assert ptsevent.killall(ts) is None
    assert all(t.dead for t in ts)
    assert all(isinstance(t.value, TaskletExit) for t in ts)
    assert ptsevent.hub_stats()["events"] == 0
    assert ptsevent.hub_stats()["tasklets"] == 0


def test_killall_includes_not_yet_started_tasklets():
    ran = []
    ts = [ptsevent.spawn(ran.append, i) for i in range(3)]
    ptsevent.killall(ts)
    ptsevent.sleep(0)
    assert ran == []
    assert all(t.dead for t in ts)


def test_killall_with_custom_exception():
    def catcher():
        try:
            ptsevent.sleep(60)
        except MyError as e:
            return type(e).__name__

    ts = [ptsevent.spawn(catcher) for _ in range(3)]
    ptsevent.sleep(0)
    ptsevent.killall(ts, MyError)
    assert [t.value for t in ts] == ["MyError"] * 3


def test_killall_with_timeout_returns_while_tasklets_resist():
    def stubborn():
        try:
            ptsevent.sleep(60)
        finally:
            ptsevent.sleep(0.3)

    ts = [ptsevent.spawn(stubborn) for _ in range(3)]
    ptsevent.sleep(0)
    start = time.monotonic()
    ptsevent.killall(ts, timeout=0.05)
    assert 0.04 <= time.monotonic() - start < 0.25
    assert not any(t.dead for t in ts)
    ptsevent.joinall(ts)
    assert all(t.dead for t in ts)


def test_killall_block_false_returns_immediately():
    def stubborn():
        try:
            ptsevent.sleep(60)
        finally:
            ptsevent.sleep(0.2)

    ts = [ptsevent.spawn(stubborn) for _ in range(3)]
    ptsevent.sleep(0)
    start = time.monotonic()
    ptsevent.killall(ts, block=False)
    assert time.monotonic() - start < 0.1
    ptsevent.joinall(ts)
    assert all(t.dead for t in ts)
    assert all(isinstance(t.value, TaskletExit) for t in ts)


# --- contextvars -----------------------------------------------------------

request_id = contextvars.ContextVar("request_id", default="unset")


def test_tasklet_runs_in_copy_of_spawner_context():
    token = request_id.set("main-value")
    try:
        t = ptsevent.spawn(request_id.get)
        assert t.get() == "main-value"
    finally:
        request_id.reset(token)


def test_context_is_copied_at_spawn_time():
    token = request_id.set("at-spawn")
    try:
        t = ptsevent.spawn(request_id.get)
        request_id.set("after-spawn")
        assert t.get() == "at-spawn"
    finally:
        request_id.reset(token)


def test_context_changes_in_tasklet_do_not_leak_to_spawner_or_siblings():
    seen = {}

    def worker(name):
        request_id.set(name)
        ptsevent.sleep(0)
        ptsevent.sleep(0.01)
        seen[name] = request_id.get()

    ts = [ptsevent.spawn(worker, n) for n in ("a", "b", "c")]
    ptsevent.joinall(ts)
    assert seen == {"a": "a", "b": "b", "c": "c"}
    assert request_id.get() == "unset"


def test_nested_spawn_copies_the_spawning_tasklet_context():
    def parent():
        request_id.set("parent")
        return ptsevent.spawn(request_id.get).get()

    assert ptsevent.spawn(parent).get() == "parent"
    assert request_id.get() == "unset"


# --- LoopExit --------------------------------------------------------------


def test_loop_exit_when_main_joins_tasklets_that_join_each_other():
    holder = {}
    a = ptsevent.spawn(lambda: holder["b"].join())
    b = ptsevent.spawn(lambda: holder["a"].join())
    holder.update(a=a, b=b)
    start = time.monotonic()
    with pytest.raises(ptsevent.LoopExit):
        a.join()
    assert time.monotonic() - start < 0.5
    assert not a.dead and not b.dead
    ptsevent.killall([a, b])
    assert a.dead and b.dead


def test_loop_exit_when_main_sleeps_forever_on_join_of_tasklet_joining_main():
    main = ptsevent.getcurrent()
    t = ptsevent.spawn(main.join)
    with pytest.raises(ptsevent.LoopExit):
        t.join()
    t.kill()
    assert t.dead


def test_no_loop_exit_when_join_has_a_timeout():
    holder = {}
    a = ptsevent.spawn(lambda: holder["b"].join())
    b = ptsevent.spawn(lambda: holder["a"].join())
    holder.update(a=a, b=b)
    assert a.join(timeout=0.05) is None
    assert not a.dead
    ptsevent.killall([a, b])


def test_no_loop_exit_while_a_tasklet_waits_on_a_descriptor(pipe):
    r, w = pipe
    t = ptsevent.spawn(ptsevent.wait_read, r)
    writer = threading.Timer(0.1, os.write, (w, b"x"))
    writer.start()
    try:
        t.join()
    finally:
        writer.join()
    assert t.dead
    assert t.successful()


def test_no_loop_exit_while_a_thread_job_is_pending():
    t = ptsevent.spawn(ptsevent.run_in_thread, time.sleep, 0.05)
    t.join()
    assert t.successful()
    assert ptsevent.run_in_thread(time.sleep, 0.02) is None

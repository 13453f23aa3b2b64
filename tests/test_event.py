"""ptsevent.event: Event, AsyncResult and call_threadsafe.

Event's contract is parametrized over ptsevent.Event and threading.Event
(used from plain threads). Waking order, kills while waiting and set() from
other OS threads concern ptsevent alone.
"""

import math
import threading
import time

import pytest

import ptsevent
from ptsevent import event as pevent
from support import elapsed_of


class MyError(Exception):
    pass


def waiting(obj):
    w = obj._waiters
    return 0 if w is None else len(w.wq)


def later_in_thread(delay, fn, *args):
    """Call fn(*args) from a new OS thread after delay seconds."""

    def run():
        time.sleep(delay)
        fn(*args)

    th = threading.Thread(target=run)
    th.start()
    return th


EVENTS = [pytest.param(ptsevent.Event, id="ptsevent"),
          pytest.param(threading.Event, id="threading")]


def background(cls, fn, *args):
    if cls is ptsevent.Event:
        t = ptsevent.spawn(fn, *args)
        return lambda: t.get(timeout=10)
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("v", fn(*args)))
    th.start()

    def result():
        th.join(10)
        assert not th.is_alive()
        return box["v"]

    return result


def pause(cls, seconds):
    (ptsevent.sleep if cls is ptsevent.Event else time.sleep)(seconds)


# --- Event: the threading contract --------------------------------------------


def test_public_names_are_exported():
    for name in ("Event", "AsyncResult", "call_threadsafe"):
        assert getattr(ptsevent, name) is getattr(pevent, name)
        assert name in ptsevent.__all__


@pytest.mark.parametrize("cls", EVENTS)
def test_event_flag_set_and_clear(cls):
    ev = cls()
    assert ev.is_set() is False
    assert ev.set() is None
    assert ev.is_set() is True
    ev.set()
    assert ev.is_set() is True
    assert ev.clear() is None
    assert ev.is_set() is False


@pytest.mark.parametrize("cls", EVENTS)
def test_event_wait_on_set_flag_returns_true_at_once(cls):
    ev = cls()
    ev.set()
    for timeout in (None, 0, -1, 5):
        result, elapsed = elapsed_of(ev.wait, timeout)
        assert result is True
        assert elapsed < 0.5


@pytest.mark.parametrize("cls", EVENTS)
@pytest.mark.parametrize("timeout", [0, -1, -0.5, math.nan], ids=["zero", "neg", "negf", "nan"])
def test_event_wait_non_positive_timeout_returns_false_at_once(cls, timeout):
    ev = cls()
    result, elapsed = elapsed_of(ev.wait, timeout)
    assert result is False
    assert elapsed < 0.5


@pytest.mark.parametrize("cls", EVENTS)
def test_event_wait_times_out_returning_false(cls):
    ev = cls()
    result, elapsed = elapsed_of(ev.wait, 0.05)
    assert result is False
    assert 0.045 <= elapsed < 1.0


@pytest.mark.parametrize("cls", EVENTS)
@pytest.mark.parametrize("timeout, exc", [("1", TypeError), (1e300, OverflowError)],
                         ids=["str", "too-large"])
def test_event_wait_bad_timeout_raises_like_threading(cls, timeout, exc):
    ev = cls()
    with pytest.raises(exc):
        ev.wait(timeout)


@pytest.mark.parametrize("cls", EVENTS)
def test_event_set_wakes_a_concurrent_waiter(cls):
    ev = cls()
    result = background(cls, ev.wait, 5)
    pause(cls, 0.02)
    ev.set()
    assert result() is True


@pytest.mark.parametrize("cls", EVENTS)
def test_event_repr_says_set_or_unset(cls):
    ev = cls()
    assert repr(ev).endswith(": unset>")
    ev.set()
    assert repr(ev).endswith(": set>")


# --- Event: tasklets ------------------------------------------------------------


def test_event_wait_without_waiting_creates_no_wait_queue():
    ev = ptsevent.Event()
    ev.set()
    ev.wait()
    ev.clear()
    ev.wait(0)
    assert ev._waiters is None


def test_event_set_wakes_every_waiter_in_fifo_order():
    ev = ptsevent.Event()
    order = []

    def waiter(n):
        assert ev.wait() is True
        order.append(n)

    ts = [ptsevent.spawn(waiter, n) for n in range(5)]
    ptsevent.sleep(0)
    assert waiting(ev) == 5
    ev.set()
    assert waiting(ev) == 0
    ptsevent.joinall(ts)
    assert order == list(range(5))


def test_event_set_then_clear_before_waiters_run_still_wakes_them_with_true():
    ev = ptsevent.Event()
    ts = [ptsevent.spawn(ev.wait) for _ in range(3)]
    ptsevent.sleep(0)
    ev.set()
    ev.clear()
    assert [t.get() for t in ts] == [True, True, True]


def test_event_wait_after_clear_blocks_again():
    ev = ptsevent.Event()
    ev.set()
    ev.clear()
    t = ptsevent.spawn(ev.wait, 0.05)
    ptsevent.sleep(0)
    assert waiting(ev) == 1
    assert t.get() is False


def test_event_timed_out_waiter_leaves_no_waiter_and_no_timer():
    ev = ptsevent.Event()
    ts = [ptsevent.spawn(ev.wait, 0.03), ptsevent.spawn(ev.wait, 5)]
    ptsevent.sleep(0)
    assert waiting(ev) == 2
    assert ts[0].get() is False
    assert waiting(ev) == 1
    ev.set()
    assert ts[1].get() is True
    assert ptsevent.hub_stats()["events"] == 0


def test_event_killed_waiter_leaves_no_waiter():
    ev = ptsevent.Event()
    t = ptsevent.spawn(ev.wait)
    ptsevent.sleep(0)
    t.kill()
    assert t.dead
    assert waiting(ev) == 0


def test_event_timeout_exception_while_waiting_leaves_no_waiter():
    ev = ptsevent.Event()
    with pytest.raises(ptsevent.Timeout):
        with ptsevent.Timeout(0.03):
            ev.wait()
    assert waiting(ev) == 0


def test_event_killing_a_woken_waiter_does_not_wake_a_later_waiter_spuriously():
    ev = ptsevent.Event()
    a = ptsevent.spawn(ev.wait)
    ptsevent.sleep(0)

    def late_waiter():
        ev.set()
        ev.clear()
        a.kill(block=False)
        # Queued before a resumes; then a, notified but killed, passes its
        # wake-up on to this wait. No set() happened since this wait began:
        # it must go on until its timeout.
        return ev.wait(0.05)

    late = ptsevent.spawn(late_waiter)
    result, elapsed = elapsed_of(late.get)
    assert result is False
    assert elapsed >= 0.045
    assert a.dead
    assert waiting(ev) == 0


def test_event_main_tasklet_waits_while_others_run():
    ev = ptsevent.Event()
    steps = []

    def setter():
        steps.append("setter")
        ptsevent.sleep(0.01)
        ev.set()

    t = ptsevent.spawn(setter)
    assert ev.wait() is True
    assert steps == ["setter"]
    t.join()


def test_event_set_from_another_os_thread_wakes_waiting_tasklets():
    ev = ptsevent.Event()
    ts = [ptsevent.spawn(ev.wait, 5) for _ in range(3)]
    ptsevent.sleep(0)
    th = later_in_thread(0.02, ev.set)
    result, elapsed = elapsed_of(ev.wait, 5)
    assert result is True
    assert elapsed < 2
    assert [t.get(timeout=5) for t in ts] == [True, True, True]
    th.join()
    assert waiting(ev) == 0


def test_event_set_from_another_os_thread_races_with_a_new_waiter():
    # Repeated so that the thread's set() lands at many points of wait().
    for _ in range(50):
        ev = ptsevent.Event()
        th = later_in_thread(0, ev.set)
        assert ev.wait(5) is True
        th.join()


def test_event_waiters_move_to_another_thread_when_idle():
    ev = ptsevent.Event()
    th = threading.Thread(target=ev.wait, args=(0.01,))
    th.start()
    th.join()
    t = ptsevent.spawn(ev.wait)
    ptsevent.sleep(0)
    assert waiting(ev) == 1
    ev.set()
    assert t.get() is True


def test_event_wait_in_another_thread_while_tasklets_here_wait_raises():
    ev = ptsevent.Event()
    t = ptsevent.spawn(ev.wait)
    ptsevent.sleep(0)
    errors = []

    def other():
        try:
            ev.wait(0.01)
        except RuntimeError as e:
            errors.append(e)

    th = threading.Thread(target=other)
    th.start()
    th.join()
    assert len(errors) == 1
    ev.set()
    assert t.get() is True


def test_event_set_after_the_waiting_thread_has_exited_does_not_raise():
    ev = ptsevent.Event()
    th = threading.Thread(target=ev.wait, args=(0.01,))
    th.start()
    th.join()
    ev.set()
    assert ev.is_set()


# --- AsyncResult ------------------------------------------------------------------


def test_async_result_initial_state():
    r = ptsevent.AsyncResult()
    assert r.ready() is False
    assert r.successful() is False
    assert r.value is None
    assert r.exception is None
    assert r.exc_info == ()
    assert repr(r).endswith(": unset>")


def test_async_result_set_and_get():
    r = ptsevent.AsyncResult()
    r.set(42)
    assert r.ready() and r.successful()
    assert r.value == 42
    assert r.exception is None
    assert r.get() == 42
    assert r.get(block=False) == 42
    assert r.get_nowait() == 42
    assert r.wait() == 42
    assert r.wait(0) == 42
    assert repr(r).endswith(": value=42>")


def test_async_result_set_default_value_is_none():
    r = ptsevent.AsyncResult()
    r.set()
    assert r.ready() and r.get() is None


def test_async_result_set_exception_makes_get_raise_it():
    r = ptsevent.AsyncResult()
    exc = MyError("boom")
    r.set_exception(exc)
    assert r.ready() is True
    assert r.successful() is False
    assert r.exception is exc
    assert r.exc_info[1] is exc
    assert r.value is None
    for _ in range(2):
        with pytest.raises(MyError) as info:
            r.get()
        assert info.value is exc
    assert r.wait() is None


def test_async_result_set_exception_with_class_and_exc_info():
    r = ptsevent.AsyncResult()
    r.set_exception(MyError)
    with pytest.raises(MyError):
        r.get()
    try:
        raise MyError("with tb")
    except MyError as e:
        import sys
        info = sys.exc_info()
        caught = e
    r.set_exception(caught, info)
    with pytest.raises(MyError) as raised:
        r.get()
    assert raised.value is caught
    assert r.exc_info == info


@pytest.mark.parametrize("bad", [42, "error", None, object])
def test_async_result_set_exception_with_non_exception_raises_type_error(bad):
    r = ptsevent.AsyncResult()
    with pytest.raises(TypeError):
        r.set_exception(bad)
    assert not r.ready()


def test_async_result_get_nonblocking_when_not_ready_raises_timeout_error():
    r = ptsevent.AsyncResult()
    with pytest.raises(TimeoutError):
        r.get(block=False)
    with pytest.raises(TimeoutError):
        r.get_nowait()
    assert r._waiters is None


def test_async_result_get_times_out_with_timeout_error():
    r = ptsevent.AsyncResult()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        r.get(timeout=0.05)
    assert 0.045 <= time.monotonic() - start < 1.0
    assert waiting(r) == 0


def test_async_result_wait_times_out_returning_none():
    r = ptsevent.AsyncResult()
    result, elapsed = elapsed_of(r.wait, 0.05)
    assert result is None
    assert 0.045 <= elapsed < 1.0


def test_async_result_wakes_every_waiter_with_the_value():
    r = ptsevent.AsyncResult()
    order = []

    def getter(n):
        value = r.get()
        order.append(n)
        return value

    ts = [ptsevent.spawn(getter, n) for n in range(4)]
    w = ptsevent.spawn(r.wait)
    ptsevent.sleep(0)
    assert waiting(r) == 5
    r.set("v")
    assert [t.get() for t in ts] == ["v"] * 4
    assert w.get() == "v"
    assert order == [0, 1, 2, 3]


def test_async_result_wakes_every_waiter_with_the_exception():
    r = ptsevent.AsyncResult()
    ts = [ptsevent.spawn(r.get) for _ in range(3)]
    ptsevent.sleep(0)
    r.set_exception(MyError("x"))
    for t in ts:
        t.join()
        assert isinstance(t.exception, MyError)


def test_async_result_setting_again_replaces_the_result():
    r = ptsevent.AsyncResult()
    r.set(1)
    r.set(2)
    assert r.get() == 2
    r.set_exception(MyError())
    with pytest.raises(MyError):
        r.get()
    r.set(3)
    assert r.successful() and r.get() == 3


def test_async_result_killed_waiter_leaves_no_waiter():
    r = ptsevent.AsyncResult()
    t = ptsevent.spawn(r.get)
    ptsevent.sleep(0)
    t.kill()
    assert waiting(r) == 0
    r.set(1)
    assert r.get() == 1


def test_async_result_set_from_another_os_thread_wakes_the_tasklet():
    r = ptsevent.AsyncResult()
    t = ptsevent.spawn(r.get, True, 5)
    ptsevent.sleep(0)
    th = later_in_thread(0.02, r.set, "from thread")
    assert r.get(timeout=5) == "from thread"
    assert t.get(timeout=5) == "from thread"
    th.join()


def test_async_result_set_exception_from_another_os_thread_wakes_the_tasklet():
    r = ptsevent.AsyncResult()
    t = ptsevent.spawn(r.get, True, 5)
    ptsevent.sleep(0)
    th = later_in_thread(0.02, r.set_exception, MyError("from thread"))
    with pytest.raises(MyError):
        r.get(timeout=5)
    t.join(5)
    assert isinstance(t.exception, MyError)
    th.join()


def test_async_result_carries_a_run_in_thread_style_result():
    # The pattern for handing a result from a worker thread to a tasklet.
    r = ptsevent.AsyncResult()

    def work():
        time.sleep(0.01)
        r.set(sum(range(10)))

    th = threading.Thread(target=work)
    th.start()
    assert r.get(timeout=5) == 45
    th.join()


# --- call_threadsafe ----------------------------------------------------------


def test_call_threadsafe_runs_fn_in_a_new_tasklet_of_the_target_hub():
    main = threading.main_thread()
    seen = []
    done = ptsevent.Event()

    def fn(a, b):
        seen.append((a, b, threading.get_ident(), ptsevent.getcurrent()))
        done.set()

    th = threading.Thread(target=pevent.call_threadsafe, args=(main, fn, 1, 2))
    th.start()
    th.join()
    assert done.wait(5)
    (a, b, ident, tasklet), = seen
    assert (a, b) == (1, 2)
    assert ident == threading.get_ident()
    assert not tasklet.is_main


def test_call_threadsafe_accepts_a_thread_ident():
    done = ptsevent.Event()
    ident = threading.get_ident()
    th = threading.Thread(target=ptsevent.call_threadsafe, args=(ident, done.set))
    th.start()
    th.join()
    assert done.wait(5)


def test_call_threadsafe_from_the_same_thread_runs_later():
    done = []
    ptsevent.call_threadsafe(threading.current_thread(), done.append, 1)
    assert done == []
    ptsevent.sleep(0.01)
    assert done == [1]


def test_call_threadsafe_to_unstarted_thread_raises_runtime_error():
    with pytest.raises(RuntimeError):
        ptsevent.call_threadsafe(threading.Thread(target=print), print)


def test_call_threadsafe_to_thread_without_hub_raises_runtime_error():
    ready = threading.Event()
    stop = threading.Event()
    th = threading.Thread(target=lambda: (ready.set(), stop.wait(5)))
    th.start()
    ready.wait(5)
    try:
        with pytest.raises(RuntimeError):
            ptsevent.call_threadsafe(th, print)
    finally:
        stop.set()
        th.join()


def test_call_threadsafe_non_callable_raises_type_error():
    with pytest.raises(TypeError):
        ptsevent.call_threadsafe(threading.get_ident(), 42)


@pytest.mark.parametrize("cls", EVENTS)
def test_event_isset_is_a_deprecated_alias(cls):
    ev = cls()
    with pytest.warns(DeprecationWarning):
        assert ev.isSet() is False


def test_event_wait_in_main_with_nothing_left_to_set_it_raises_loop_exit():
    ev = ptsevent.Event()
    with pytest.raises(ptsevent.LoopExit):
        ev.wait()
    assert waiting(ev) == 0

"""sleep, Timeout and with_timeout."""

import math
import time

import pytest

import ptsevent
from ptsevent import Timeout


class MyError(Exception):
    pass


# --- sleep -----------------------------------------------------------------


BAD_SLEEPS = [
    pytest.param(-1, ValueError, id="negative"),
    pytest.param(-0.5, ValueError, id="negative-float"),
    pytest.param(math.nan, ValueError, id="nan"),
    pytest.param("1", TypeError, id="str"),
    pytest.param(None, TypeError, id="none"),
    pytest.param(1e10, OverflowError, id="too-large"),
]


@pytest.mark.parametrize("impl", [time.sleep, ptsevent.sleep], ids=["time", "ptsevent"])
@pytest.mark.parametrize("value, exc", BAD_SLEEPS)
def test_sleep_bad_value_raises_like_time_sleep(impl, value, exc):
    with pytest.raises(exc):
        impl(value)


def test_sleep_negative_raises_value_error_like_time_sleep():
    with pytest.raises(ValueError):
        ptsevent.sleep(-1)
    assert ptsevent.hub_stats()["events"] == 0


def test_sleep_returns_none_after_requested_time():
    start = time.monotonic()
    assert ptsevent.sleep(0.05) is None
    elapsed = time.monotonic() - start
    assert 0.045 <= elapsed < 0.5


def test_sleep_accepts_int_and_float():
    ptsevent.sleep(0)
    ptsevent.sleep(0.0)
    ptsevent.sleep(1 - 1)


def test_sleep_zero_with_nothing_else_ready_returns_at_once():
    start = time.monotonic()
    for _ in range(100):
        ptsevent.sleep(0)
    assert time.monotonic() - start < 0.1


def test_sleep_default_is_zero():
    order = []
    t = ptsevent.spawn(order.append, "t")
    ptsevent.sleep()
    order.append("main")
    assert order == ["t", "main"]
    assert t.dead


def test_sleeping_arms_one_timer_event_and_removes_it_after():
    t = ptsevent.spawn(ptsevent.sleep, 0.02)
    ptsevent.sleep(0)
    stats = ptsevent.hub_stats()
    assert stats["events"] == 1
    assert stats["libevent_events"] == 1 + stats["internal_events"]
    assert stats["tasklets"] == 1
    assert stats["ready"] == 0
    t.join()
    stats = ptsevent.hub_stats()
    assert stats["events"] == 0
    assert stats["libevent_events"] == stats["internal_events"]


def test_thousand_tasklets_sleeping_concurrently_finish_together():
    def nap():
        ptsevent.sleep(0.05)
        return 1

    start = time.monotonic()
    ts = [ptsevent.spawn(nap) for _ in range(1000)]
    assert ptsevent.hub_stats()["tasklets"] == 1000
    ptsevent.sleep(0)
    assert ptsevent.hub_stats()["events"] == 1000
    done = ptsevent.joinall(ts)
    elapsed = time.monotonic() - start
    assert len(done) == 1000
    assert sum(t.value for t in ts) == 1000
    assert elapsed < 1.0
    assert ptsevent.hub_stats()["events"] == 0


# --- Timeout ---------------------------------------------------------------


def test_timeout_is_base_exception_not_exception():
    assert issubclass(Timeout, BaseException)
    assert not issubclass(Timeout, Exception)


def test_timeout_is_not_swallowed_by_except_exception():
    swallowed = []
    with pytest.raises(Timeout):
        with Timeout(0.05):
            try:
                ptsevent.sleep(5)
            except Exception:
                swallowed.append(True)
    assert swallowed == []


def test_timeout_context_manager_raises_the_timeout_instance_itself():
    start = time.monotonic()
    with pytest.raises(Timeout) as info:
        with Timeout(0.05) as t:
            ptsevent.sleep(5)
    assert info.value is t
    assert 0.045 <= time.monotonic() - start < 0.5
    assert not t.pending
    assert ptsevent.hub_stats()["events"] == 0


def test_timeout_not_expired_leaves_block_normally_and_is_cancelled():
    with Timeout(5) as t:
        assert t.pending
        assert ptsevent.hub_stats()["events"] == 1
        ptsevent.sleep(0.01)
    assert not t.pending
    assert ptsevent.hub_stats()["events"] == 0


def test_timeout_start_and_cancel():
    t = Timeout(0.05)
    assert not t.pending
    assert ptsevent.hub_stats()["events"] == 0
    t.start()
    assert t.pending
    assert ptsevent.hub_stats()["events"] == 1
    t.cancel()
    assert not t.pending
    assert ptsevent.hub_stats()["events"] == 0
    ptsevent.sleep(0.1)


def test_timeout_cancelled_from_another_thread_is_cancelled_by_its_hub():
    # The main thread's hub may be polling without the GIL while the other
    # thread cancels: the cancel is handed to it and runs there.
    import threading

    t = Timeout(0.3)
    t.start()
    assert ptsevent.hub_stats()["events"] == 1
    threading.Thread(target=t.cancel).start()
    start = time.monotonic()
    ptsevent.sleep(0.6)  # not interrupted
    assert 0.55 <= time.monotonic() - start < 2
    assert not t.pending
    assert ptsevent.hub_stats()["events"] == 0


def test_cross_thread_cancel_of_an_earlier_run_leaves_a_restart_armed():
    import threading

    t = Timeout(5)
    t.start()
    # A cancel posted for this run, then the timer restarted before it ran.
    th = threading.Thread(target=t.cancel)
    th.start()
    th.join()
    t.cancel()
    t.start()
    ptsevent.sleep(0.05)  # the posted cancel runs here, for the old run
    assert t.pending
    t.cancel()
    assert ptsevent.hub_stats()["events"] == 0


def test_timeout_close_cancels_like_cancel():
    t = Timeout(0.05)
    t.start()
    t.close()
    assert not t.pending
    assert ptsevent.hub_stats()["events"] == 0
    ptsevent.sleep(0.1)


def test_timeout_started_without_with_raises_at_next_wait():
    t = Timeout(0.05)
    t.start()
    try:
        with pytest.raises(Timeout) as info:
            ptsevent.sleep(5)
        assert info.value is t
        assert not t.pending
    finally:
        t.cancel()


def test_timeout_start_new_returns_started_timeout():
    t = Timeout.start_new(0.05)
    try:
        assert isinstance(t, Timeout)
        assert t.pending
        with pytest.raises(Timeout) as info:
            ptsevent.sleep(5)
        assert info.value is t
    finally:
        t.cancel()


def test_timeout_start_new_with_exception():
    t = Timeout.start_new(0.05, MyError)
    try:
        with pytest.raises(MyError):
            ptsevent.sleep(5)
    finally:
        t.cancel()


def test_timeout_none_never_expires():
    with Timeout(None) as t:
        ptsevent.sleep(0.05)
    assert not t.pending


def test_timeout_negative_raises_value_error():
    with pytest.raises(ValueError):
        with Timeout(-1):
            pass
    with pytest.raises(ValueError):
        Timeout.start_new(-1)
    assert ptsevent.hub_stats()["events"] == 0


def test_timeout_exception_false_swallows_expiry():
    reached = []
    start = time.monotonic()
    with Timeout(0.05, False):
        ptsevent.sleep(5)
        reached.append(True)
    assert reached == []
    assert time.monotonic() - start < 0.5
    assert ptsevent.hub_stats()["events"] == 0


def test_timeout_with_exception_class_raises_new_instance():
    with pytest.raises(MyError) as info:
        with Timeout(0.05, MyError):
            ptsevent.sleep(5)
    assert type(info.value) is MyError


def test_timeout_with_exception_instance_raises_that_instance():
    exc = MyError("too slow")
    with pytest.raises(MyError) as info:
        with Timeout(0.05, exc):
            ptsevent.sleep(5)
    assert info.value is exc


def test_timeout_raises_only_at_a_wait_point():
    steps = []
    with pytest.raises(Timeout):
        with Timeout(0.02):
            time.sleep(0.05)  # blocking: the timer cannot interrupt plain code
            steps.append("after blocking sleep")
            ptsevent.sleep(5)
            steps.append("not reached")
    assert steps == ["after blocking sleep"]


def test_nested_timeouts_outer_fires_first():
    with pytest.raises(Timeout) as info:
        with Timeout(0.05) as outer:
            with Timeout(5) as inner:
                ptsevent.sleep(5)
    assert info.value is outer
    assert not inner.pending
    assert not outer.pending
    assert ptsevent.hub_stats()["events"] == 0


def test_nested_timeouts_inner_fires_first_and_outer_stays_armed():
    caught = []
    with Timeout(5) as outer:
        try:
            with Timeout(0.05) as inner:
                ptsevent.sleep(5)
        except Timeout as e:
            caught.append(e)
        assert outer.pending
        assert ptsevent.hub_stats()["events"] == 1
        ptsevent.sleep(0.01)
    assert caught == [inner]
    assert caught[0] is inner
    assert not outer.pending
    assert ptsevent.hub_stats()["events"] == 0


def test_inner_timeout_with_false_does_not_swallow_outer_expiry():
    with pytest.raises(Timeout) as info:
        with Timeout(0.05) as outer:
            with Timeout(5, False):
                ptsevent.sleep(5)
    assert info.value is outer


def test_timeout_only_affects_the_tasklet_that_started_it():
    def other():
        ptsevent.sleep(0.1)
        return "other finished"

    t = ptsevent.spawn(other)
    with pytest.raises(Timeout):
        with Timeout(0.03):
            ptsevent.sleep(5)
    assert not t.dead
    assert t.get() == "other finished"


def test_timeout_inside_spawned_tasklet_raises_there():
    def bounded():
        try:
            with Timeout(0.03) as t:
                ptsevent.sleep(5)
        except Timeout as e:
            return e is t
        return "not expired"

    assert ptsevent.spawn(bounded).get() is True


def test_timeout_bounds_a_join():
    t = ptsevent.spawn(ptsevent.sleep, 5)
    with pytest.raises(Timeout):
        with Timeout(0.03):
            t.join()
    assert not t.dead
    assert ptsevent.hub_stats()["events"] == 1
    t.kill()


# --- with_timeout ----------------------------------------------------------


def test_with_timeout_returns_function_result():
    def add(a, b, c=0):
        ptsevent.sleep(0.01)
        return a + b + c

    assert ptsevent.with_timeout(1, add, 1, 2, c=3) == 6
    assert ptsevent.hub_stats()["events"] == 0


def test_with_timeout_raises_timeout_when_expired():
    start = time.monotonic()
    with pytest.raises(Timeout):
        ptsevent.with_timeout(0.05, ptsevent.sleep, 5)
    assert time.monotonic() - start < 0.5
    assert ptsevent.hub_stats()["events"] == 0


def test_with_timeout_returns_timeout_value_when_expired():
    assert ptsevent.with_timeout(0.05, ptsevent.sleep, 5, timeout_value="late") == "late"
    assert ptsevent.hub_stats()["events"] == 0


def test_with_timeout_timeout_value_none_is_a_given_value():
    assert ptsevent.with_timeout(0.05, ptsevent.sleep, 5, timeout_value=None) is None


def test_with_timeout_passes_function_exception_through():
    def fail():
        raise MyError("inner")

    with pytest.raises(MyError, match="^inner$"):
        ptsevent.with_timeout(1, fail)
    assert ptsevent.hub_stats()["events"] == 0


def test_hub_keeps_polling_while_tasklets_keep_yielding():
    # Tasklets that only ever sleep(0) must not starve I/O and timers: while
    # tasklets stay ready the hub still polls libevent (without blocking)
    # every 50 us or so; short passes in between go on without a poll.
    def spin(n):
        for _ in range(n):
            ptsevent.sleep(0)

    before = ptsevent.hub_stats()
    start = time.monotonic()
    ptsevent.joinall([ptsevent.spawn(spin, 2000) for _ in range(100)])
    elapsed = time.monotonic() - start
    polls = ptsevent.hub_stats()["polls"] - before["polls"]
    assert polls >= elapsed / 0.002  # at least every 2 ms, on average
    # One tasklet yielding alone: a pass each time, not a poll each time.
    before = ptsevent.hub_stats()
    ptsevent.spawn(spin, 20000).join()
    polls = ptsevent.hub_stats()["polls"] - before["polls"]
    assert 0 < polls < 10000
    # and a timer due meanwhile fires during the spinning, not after it
    fired = []
    ptsevent.spawn_later(0.01, lambda: fired.append(time.monotonic()))
    start = time.monotonic()
    spinners = [ptsevent.spawn(lambda: [ptsevent.sleep(0) for _ in range(300000)])
                for _ in range(2)]
    ptsevent.joinall(spinners)
    end = time.monotonic()
    assert end - start > 0.05, "spinning too short to tell"
    assert fired and start + 0.01 <= fired[0] < end

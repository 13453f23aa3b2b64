"""ptsevent.locks: Lock, RLock, Semaphore, BoundedSemaphore, Condition.

The shared contract (return values, bad input, timeouts) is parametrized
over the ptsevent class and its `threading` counterpart, used from plain
threads, so a difference in behaviour shows up as a failure of the ptsevent
variant. Fairness, kills while waiting, and hand-off between tasklets and
OS threads concern ptsevent alone.
"""

import math
import threading
import time

import pytest

import ptsevent
from ptsevent import locks
from support import background as _background
from support import elapsed_of, run_ready


class MyError(Exception):
    pass


# --- helpers ----------------------------------------------------------------


def is_ptsevent(obj):
    return type(obj).__module__.startswith("ptsevent")


def background(obj, fn, *args):
    """Run fn concurrently: a tasklet for ptsevent objects, a thread else."""
    return _background(is_ptsevent(obj), fn, *args)


def pause(obj, seconds):
    (ptsevent.sleep if is_ptsevent(obj) else time.sleep)(seconds)


def waiting(obj):
    """Tasklets queued on a ptsevent primitive."""
    if isinstance(obj, ptsevent.Lock):
        return obj._waiting
    w = obj._waiters
    return 0 if w is None else len(w.wq)


def handed(obj):
    """Hand-offs made to waiters that have not returned from their wait."""
    if isinstance(obj, ptsevent.Lock):
        return obj._handed
    return obj._waiters.woken


LOCKS = [
    pytest.param((ptsevent.Lock, threading.Lock), id="Lock"),
    pytest.param((ptsevent.RLock, threading.RLock), id="RLock"),
]
IMPL = [pytest.param(0, id="ptsevent"), pytest.param(1, id="threading")]


@pytest.fixture(params=LOCKS)
def lock_cls(request):
    return request.param


@pytest.fixture(params=IMPL)
def impl(request):
    return request.param


# --- Lock and RLock: the threading contract ----------------------------------


def test_public_names_are_exported():
    for name in ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition"):
        assert getattr(ptsevent, name) is getattr(locks, name)
        assert name in ptsevent.__all__


def test_lock_acquire_release_returns_like_threading(lock_cls, impl):
    lock = lock_cls[impl]()
    assert lock.acquire() is True
    assert lock.release() is None
    assert lock.acquire(True, 1) is True
    lock.release()
    assert lock.acquire(blocking=False) is True
    lock.release()
    assert lock.acquire(timeout=0) is True
    lock.release()
    assert lock.acquire(False, -1) is True
    lock.release()


def test_plain_lock_is_not_reentrant_and_reports_locked(impl):
    lock = (ptsevent.Lock, threading.Lock)[impl]()
    assert lock.locked() is False
    lock.acquire()
    assert lock.locked() is True
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0) is False
    lock.release()
    assert lock.locked() is False


def test_rlock_is_reentrant(impl):
    lock = (ptsevent.RLock, threading.RLock)[impl]()
    assert lock.acquire()
    assert lock.acquire()
    assert lock.acquire(False)
    assert lock._is_owned()
    lock.release()
    lock.release()
    assert lock._is_owned()
    lock.release()
    assert not lock._is_owned()
    with pytest.raises(RuntimeError):
        lock.release()


def test_release_unlocked_lock_raises_runtime_error(lock_cls, impl):
    lock = lock_cls[impl]()
    with pytest.raises(RuntimeError):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_rlock_release_messages_match_threading():
    for lock in (ptsevent.RLock(), threading.RLock()):
        with pytest.raises(RuntimeError, match="^cannot release un-acquired lock$"):
            lock.release()
    for lock in (ptsevent.Lock(), threading.Lock()):
        with pytest.raises(RuntimeError, match="^release unlocked lock$"):
            lock.release()


BAD_ACQUIRES = [
    pytest.param(dict(blocking=False, timeout=1), ValueError, id="timeout-nonblocking"),
    pytest.param(dict(blocking=False, timeout=0), ValueError, id="zero-nonblocking"),
    pytest.param(dict(timeout=-2), ValueError, id="negative"),
    pytest.param(dict(timeout=-0.5), ValueError, id="negative-float"),
    pytest.param(dict(timeout=math.nan), ValueError, id="nan"),
    pytest.param(dict(timeout="1"), TypeError, id="str"),
    pytest.param(dict(timeout=None), TypeError, id="none"),
    pytest.param(dict(timeout=1e300), OverflowError, id="too-large"),
    pytest.param(dict(timeout=math.inf), OverflowError, id="inf"),
    pytest.param(dict(timeout=10**30), OverflowError, id="huge-int"),
]


@pytest.mark.parametrize("kwargs, exc", BAD_ACQUIRES)
def test_lock_acquire_bad_arguments_raise_like_threading(lock_cls, impl, kwargs, exc):
    lock = lock_cls[impl]()
    with pytest.raises(exc):
        lock.acquire(**kwargs)
    assert lock.acquire(False), "a failed acquire must not take the lock"
    lock.release()


@pytest.mark.parametrize("value", [0, 0.0, 1, 2.5, True, -1, -1.0])
def test_lock_acquire_accepts_numeric_timeouts_like_threading(lock_cls, impl, value):
    lock = lock_cls[impl]()
    assert lock.acquire(timeout=value) is True
    lock.release()


def test_lock_acquire_timeout_returns_false_after_the_timeout(lock_cls, impl):
    lock = lock_cls[impl]()
    holder = ptsevent.Event() if impl == 0 else threading.Event()
    done = ptsevent.Event() if impl == 0 else threading.Event()

    def hold():
        lock.acquire()
        holder.set()
        done.wait(5)
        lock.release()

    job = background(lock, hold)
    assert holder.wait(5)
    result, elapsed = elapsed_of(lock.acquire, timeout=0.05)
    assert result is False
    assert 0.045 <= elapsed < 1.0
    assert lock.acquire(False) is False
    done.set()
    job.result()
    assert lock.acquire(False) is True
    lock.release()


def test_lock_as_context_manager(lock_cls, impl):
    lock = lock_cls[impl]()
    reentrant = lock_cls[impl] in (ptsevent.RLock, threading.RLock)
    with lock as entered:
        assert entered is True
        assert lock.acquire(False) is reentrant
        if reentrant:
            lock.release()
    assert lock.acquire(False)
    lock.release()
    with pytest.raises(MyError):
        with lock:
            raise MyError
    assert lock.acquire(False)
    lock.release()


def test_lock_excludes_concurrent_holders(lock_cls, impl):
    lock = lock_cls[impl]()
    inside = []
    overlaps = []

    def work(name):
        for _ in range(5):
            with lock:
                if inside:
                    overlaps.append((name, list(inside)))
                inside.append(name)
                pause(lock, 0.001)
                inside.remove(name)

    jobs = [background(lock, work, n) for n in range(4)]
    for job in jobs:
        job.result()
    assert overlaps == []


def test_lock_repr_says_locked_or_unlocked(lock_cls):
    lock = lock_cls[0]()
    assert repr(lock).startswith("<unlocked ptsevent.locks.")
    lock.acquire()
    assert repr(lock).startswith("<locked ptsevent.locks.")
    lock.release()


# --- Lock and RLock: tasklets --------------------------------------------------


def test_lock_acquire_without_contention_creates_no_wait_queue(lock_cls):
    lock = lock_cls[0]()
    for _ in range(3):
        with lock:
            pass
    assert lock.acquire(False)
    if isinstance(lock, ptsevent.Lock):
        assert not lock._has_queue
    else:
        assert lock._waiters is None
    lock.release()


def test_lock_waiters_get_it_in_fifo_order(lock_cls):
    lock = lock_cls[0]()
    order = []

    def worker(n):
        with lock:
            order.append(n)
            ptsevent.sleep(0)

    lock.acquire()
    ts = [ptsevent.spawn(worker, n) for n in range(6)]
    ptsevent.sleep(0)
    assert waiting(lock) == 6
    lock.release()
    ptsevent.joinall(ts)
    assert order == list(range(6))
    assert waiting(lock) == 0


def test_lock_release_hands_it_to_oldest_waiter_so_releaser_cannot_barge(lock_cls):
    lock = lock_cls[0]()
    got = []

    def worker():
        with lock:
            got.append(ptsevent.getcurrent())

    lock.acquire()
    t = ptsevent.spawn(worker)
    ptsevent.sleep(0)
    lock.release()
    # The lock now belongs to the waiter, though it has not run yet.
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0) is False
    t.join()
    assert got == [t]
    assert lock.acquire(False) is True
    lock.release()


def test_lock_round_robin_between_tasklets_that_reacquire_at_once(lock_cls):
    lock = lock_cls[0]()
    order = []

    def greedy(name):
        for _ in range(3):
            lock.acquire()
            order.append(name)
            ptsevent.sleep(0)
            lock.release()

    ts = [ptsevent.spawn(greedy, name) for name in "abc"]
    ptsevent.joinall(ts)
    assert order == list("abc" * 3)


def test_lock_wait_timeout_returns_false_and_leaves_no_waiter(lock_cls):
    lock = lock_cls[0]()
    lock.acquire()

    def try_lock():
        return lock.acquire(timeout=0.05)

    t = ptsevent.spawn(try_lock)
    ptsevent.sleep(0)
    assert waiting(lock) == 1
    result, elapsed = elapsed_of(t.get)
    assert result is False
    assert 0.045 <= elapsed < 1.0
    assert waiting(lock) == 0
    assert ptsevent.hub_stats()["events"] == 0
    lock.release()
    assert lock.acquire(False)
    lock.release()


def test_lock_timeout_in_main_tasklet_returns_false(lock_cls):
    lock = lock_cls[0]()
    t = ptsevent.spawn(lock.acquire)
    t.join()
    result, elapsed = elapsed_of(lock.acquire, True, 0.05)
    assert result is False
    assert 0.045 <= elapsed < 1.0
    assert waiting(lock) == 0


def test_lock_killed_waiter_leaves_no_waiter_and_lock_stays_with_holder(lock_cls):
    lock = lock_cls[0]()
    lock.acquire()
    t = ptsevent.spawn(lock.acquire)
    ptsevent.sleep(0)
    assert waiting(lock) == 1
    t.kill()
    assert t.dead
    assert waiting(lock) == 0
    if lock_cls[0] is ptsevent.Lock:
        assert lock.locked()
    lock.release()
    assert lock.acquire(False)
    lock.release()


def test_lock_timeout_exception_while_waiting_leaves_no_waiter(lock_cls):
    lock = lock_cls[0]()
    t = ptsevent.spawn(lock.acquire)
    t.join()
    with pytest.raises(ptsevent.Timeout):
        with ptsevent.Timeout(0.03):
            lock.acquire()
    assert waiting(lock) == 0
    assert handed(lock) == 0


def test_lock_killing_the_handed_waiter_passes_the_lock_to_the_next(lock_cls):
    lock = lock_cls[0]()
    got = []

    def worker(name):
        with lock:
            got.append(name)

    lock.acquire()
    a = ptsevent.spawn(worker, "a")
    b = ptsevent.spawn(worker, "b")
    ptsevent.sleep(0)
    lock.release()  # handed to a, which has not run yet
    a.kill(block=False)
    ptsevent.joinall([a, b])
    assert got == ["b"]
    assert waiting(lock) == 0
    assert handed(lock) == 0
    assert lock.acquire(False)
    lock.release()


def test_lock_killing_the_handed_waiter_with_nobody_behind_frees_the_lock(lock_cls):
    lock = lock_cls[0]()
    lock.acquire()
    a = ptsevent.spawn(lock.acquire)
    ptsevent.sleep(0)
    lock.release()
    a.kill(block=False)
    a.join()
    assert a.dead
    assert handed(lock) == 0
    assert lock.acquire(False), "the lock handed to a killed waiter was lost"
    lock.release()


def test_lock_handed_waiter_that_times_out_in_same_pass_still_owns_it(lock_cls):
    lock = lock_cls[0]()
    lock.acquire()
    t = ptsevent.spawn(lock.acquire, True, 0.02)
    ptsevent.sleep(0)
    time.sleep(0.04)  # its timer is due as well when the hub runs next
    lock.release()
    assert t.get() is True
    if lock_cls[0] is ptsevent.Lock:
        assert lock.locked()
        lock.release()
    else:
        assert lock._owner is t
        lock._owner = ptsevent.getcurrent()
        lock.release()
    assert lock.acquire(False)
    lock.release()


def test_lock_release_from_another_os_thread_wakes_the_waiting_tasklet():
    lock = ptsevent.Lock()
    lock.acquire()
    t = ptsevent.spawn(lock.acquire)
    ptsevent.sleep(0)
    assert waiting(lock) == 1
    th = threading.Thread(target=lock.release)
    th.start()
    th.join()
    assert t.get(timeout=5) is True
    assert lock.locked()
    lock.release()
    assert waiting(lock) == 0


def test_lock_acquired_by_another_os_thread_blocks_tasklets_until_it_releases():
    lock = ptsevent.Lock()
    taken = threading.Event()
    proceed = threading.Event()

    def thread_body():
        assert lock.acquire(False)
        taken.set()
        proceed.wait(5)
        time.sleep(0.02)
        lock.release()

    th = threading.Thread(target=thread_body)
    th.start()
    assert taken.wait(5)
    order = []

    def worker(n):
        with lock:
            order.append(n)

    ts = [ptsevent.spawn(worker, n) for n in range(3)]
    ptsevent.sleep(0)
    proceed.set()
    assert len(ptsevent.joinall(ts, timeout=5)) == 3
    th.join()
    assert order == [0, 1, 2]


def test_lock_blocking_acquire_from_another_thread_while_tasklets_wait_raises():
    lock = ptsevent.Lock()
    lock.acquire()
    t = ptsevent.spawn(lock.acquire)
    ptsevent.sleep(0)
    errors = []

    def other():
        try:
            lock.acquire(timeout=0.01)
        except RuntimeError as e:
            errors.append(e)

    th = threading.Thread(target=other)
    th.start()
    th.join()
    assert len(errors) == 1 and "another thread" in str(errors[0])
    lock.release()
    assert t.get() is True
    lock.release()


def test_lock_waiters_move_to_another_thread_when_idle():
    lock = ptsevent.Lock()
    results = []

    def in_thread():
        lock.acquire()
        t = ptsevent.spawn(lock.acquire, True, 5)
        ptsevent.sleep(0)
        lock.release()
        results.append(t.get())
        lock.release()

    th = threading.Thread(target=in_thread)
    th.start()
    th.join()
    assert results == [True]
    # The thread (and its hub) is gone; tasklets of this thread wait now.
    lock.acquire()
    t = ptsevent.spawn(lock.acquire)
    ptsevent.sleep(0)
    assert waiting(lock) == 1
    lock.release()
    assert t.get() is True
    lock.release()


def test_rlock_owner_is_the_tasklet():
    lock = ptsevent.RLock()
    lock.acquire()
    errors = []

    def other():
        assert lock.acquire(False) is False
        assert not lock._is_owned()
        try:
            lock.release()
        except RuntimeError as e:
            errors.append(str(e))

    ptsevent.spawn(other).join()
    assert errors == ["cannot release un-acquired lock"]
    assert lock._is_owned()
    assert lock._recursion_count() == 1
    lock.release()


def test_rlock_nested_levels_are_held_until_the_last_release():
    lock = ptsevent.RLock()
    lock.acquire()
    lock.acquire()
    t = ptsevent.spawn(lock.acquire)
    ptsevent.sleep(0)
    lock.release()
    ptsevent.sleep(0)
    assert not t.dead
    lock.release()
    assert t.get() is True
    assert lock._owner is t


# --- Semaphore and BoundedSemaphore -------------------------------------------

SEMAPHORES = [
    pytest.param((ptsevent.Semaphore, threading.Semaphore), id="Semaphore"),
    pytest.param((ptsevent.BoundedSemaphore, threading.BoundedSemaphore),
                 id="BoundedSemaphore"),
]


@pytest.fixture(params=SEMAPHORES)
def sem_cls(request):
    return request.param


def test_semaphore_counts_like_threading(sem_cls, impl):
    sem = sem_cls[impl](2)
    assert sem.acquire() is True
    assert sem.acquire(True) is True
    assert sem.acquire(False) is False
    assert sem.acquire(timeout=0) is False
    assert sem.acquire(timeout=-1) is False
    sem.release()
    assert sem.acquire(timeout=1) is True
    sem.release(2)
    assert sem._value == 2


def test_semaphore_default_value_is_one(sem_cls, impl):
    sem = sem_cls[impl]()
    assert sem.acquire(False)
    assert not sem.acquire(False)
    sem.release()


@pytest.mark.parametrize("value", [-1, -0.5])
def test_semaphore_negative_initial_value_raises_value_error(sem_cls, impl, value):
    with pytest.raises(ValueError):
        sem_cls[impl](value)


def test_semaphore_zero_initial_value_is_allowed(sem_cls, impl):
    sem = sem_cls[impl](0)
    assert sem.acquire(False) is False


@pytest.mark.parametrize("n", [0, -1])
def test_semaphore_release_n_below_one_raises_value_error(sem_cls, impl, n):
    sem = sem_cls[impl](1)
    sem.acquire()
    with pytest.raises(ValueError, match="n must be one or more"):
        sem.release(n)


def test_semaphore_timeout_with_nonblocking_raises_value_error(sem_cls, impl):
    sem = sem_cls[impl](1)
    with pytest.raises(ValueError):
        sem.acquire(False, 1)
    with pytest.raises(ValueError):
        sem.acquire(blocking=False, timeout=0)
    assert sem.acquire(False, None)


def test_semaphore_non_number_timeout_raises_type_error_when_it_must_wait(sem_cls, impl):
    sem = sem_cls[impl](0)
    with pytest.raises(TypeError):
        sem.acquire(timeout="1")


def test_semaphore_acquire_times_out(sem_cls, impl):
    sem = sem_cls[impl](0)
    result, elapsed = elapsed_of(sem.acquire, timeout=0.05)
    assert result is False
    assert 0.045 <= elapsed < 1.0


def test_bounded_semaphore_over_release_raises_value_error(impl):
    sem = (ptsevent.BoundedSemaphore, threading.BoundedSemaphore)[impl](2)
    with pytest.raises(ValueError, match="Semaphore released too many times"):
        sem.release()
    sem.acquire()
    with pytest.raises(ValueError):
        sem.release(2)
    sem.release()
    assert sem._value == 2


def test_plain_semaphore_release_may_exceed_initial_value(impl):
    sem = (ptsevent.Semaphore, threading.Semaphore)[impl](1)
    sem.release(3)
    assert sem._value == 4


def test_semaphore_as_context_manager(sem_cls, impl):
    sem = sem_cls[impl](1)
    with sem as entered:
        assert entered is True
        assert sem.acquire(False) is False
    assert sem.acquire(False) is True


def test_semaphore_limits_concurrent_holders(sem_cls, impl):
    sem = sem_cls[impl](2)
    inside = []
    peak = []

    def work(n):
        with sem:
            inside.append(n)
            peak.append(len(inside))
            pause(sem, 0.002)
            inside.remove(n)

    jobs = [background(sem, work, n) for n in range(6)]
    for job in jobs:
        job.result()
    assert max(peak) <= 2


def test_semaphore_repr_shows_value():
    assert repr(ptsevent.Semaphore(3)).endswith(": value=3>")
    assert repr(ptsevent.BoundedSemaphore(3)).endswith(": value=3/3>")


def test_semaphore_waiters_are_served_in_fifo_order(sem_cls):
    sem = sem_cls[0](5)
    for _ in range(5):
        sem.acquire()
    order = []

    def worker(n):
        sem.acquire()
        order.append(n)

    ts = [ptsevent.spawn(worker, n) for n in range(5)]
    ptsevent.sleep(0)
    assert waiting(sem) == 5
    for n in range(5):
        sem.release()
        run_ready()
        assert order == list(range(n + 1))
    ptsevent.joinall(ts)
    assert order == list(range(5))


def test_semaphore_release_n_wakes_n_oldest_waiters():
    sem = ptsevent.Semaphore(0)
    order = []
    ts = [ptsevent.spawn(lambda n=n: (sem.acquire(), order.append(n))) for n in range(5)]
    ptsevent.sleep(0)
    sem.release(3)
    assert sem._value == 0
    run_ready()
    assert order == [0, 1, 2]
    assert waiting(sem) == 2
    sem.release(2)
    ptsevent.joinall(ts)
    assert order == [0, 1, 2, 3, 4]


def test_semaphore_release_hands_the_permit_to_the_waiter():
    sem = ptsevent.Semaphore(0)
    t = ptsevent.spawn(sem.acquire)
    ptsevent.sleep(0)
    sem.release()
    assert sem.acquire(False) is False, "the releaser took the waiter's permit"
    assert t.get() is True
    assert sem._value == 0


def test_bounded_semaphore_counts_permits_handed_to_waiters_not_yet_run():
    sem = ptsevent.BoundedSemaphore(1)
    sem.acquire()
    t = ptsevent.spawn(sem.acquire)
    ptsevent.sleep(0)
    sem.release()  # handed to t
    with pytest.raises(ValueError):
        sem.release()
    assert t.get() is True
    sem.release()
    assert sem._value == 1


def test_semaphore_timed_out_and_killed_waiters_leave_no_waiter(sem_cls):
    sem = sem_cls[0](0)
    a = ptsevent.spawn(sem.acquire, True, 0.03)
    b = ptsevent.spawn(sem.acquire)
    ptsevent.sleep(0)
    assert waiting(sem) == 2
    assert a.get() is False
    assert waiting(sem) == 1
    b.kill()
    assert waiting(sem) == 0
    assert sem._value == 0


def test_semaphore_killing_the_handed_waiter_passes_the_permit_on(sem_cls):
    sem = sem_cls[0](1)
    sem.acquire()
    a = ptsevent.spawn(sem.acquire)
    b = ptsevent.spawn(sem.acquire)
    ptsevent.sleep(0)
    sem.release()
    a.kill(block=False)
    assert b.get() is True
    assert a.dead
    assert sem._value == 0
    assert handed(sem) == 0


def test_semaphore_killing_handed_waiters_with_nobody_behind_returns_permits(sem_cls):
    sem = sem_cls[0](2)
    sem.acquire()
    sem.acquire()
    a = ptsevent.spawn(sem.acquire)
    b = ptsevent.spawn(sem.acquire)
    ptsevent.sleep(0)
    sem.release(2)  # both handed over, neither waiter has run
    a.kill(block=False)
    b.kill(block=False)
    ptsevent.joinall([a, b])
    assert sem._value == 2
    assert handed(sem) == 0
    assert waiting(sem) == 0


def test_semaphore_release_from_another_os_thread_wakes_waiters_in_order():
    sem = ptsevent.Semaphore(0)
    order = []
    ts = [ptsevent.spawn(lambda n=n: (sem.acquire(), order.append(n))) for n in range(3)]
    ptsevent.sleep(0)

    def releaser():
        for _ in range(3):
            sem.release()

    th = threading.Thread(target=releaser)
    th.start()
    th.join()
    assert len(ptsevent.joinall(ts, timeout=5)) == 3
    assert order == [0, 1, 2]
    assert sem._value == 0
    assert waiting(sem) == 0


# --- Condition ------------------------------------------------------------------


def condition_pair(impl, lock_kind):
    if lock_kind is None:
        return (ptsevent.Condition, threading.Condition)[impl]()
    lock = ((ptsevent.Lock, threading.Lock), (ptsevent.RLock, threading.RLock))[lock_kind][impl]()
    return (ptsevent.Condition, threading.Condition)[impl](lock)


@pytest.fixture(params=[None, 0, 1], ids=["default", "Lock", "RLock"])
def lock_kind(request):
    return request.param


def test_condition_wait_and_notify_without_the_lock_raise_runtime_error(impl, lock_kind):
    cond = condition_pair(impl, lock_kind)
    with pytest.raises(RuntimeError, match="cannot wait on un-acquired lock"):
        cond.wait(0.01)
    with pytest.raises(RuntimeError, match="cannot notify on un-acquired lock"):
        cond.notify()
    with pytest.raises(RuntimeError, match="cannot notify on un-acquired lock"):
        cond.notify_all()


def test_condition_wait_times_out_returning_false_with_lock_held(impl, lock_kind):
    cond = condition_pair(impl, lock_kind)
    with cond:
        result, elapsed = elapsed_of(cond.wait, 0.05)
        assert result is False
        assert 0.045 <= elapsed < 1.0
        assert cond.wait(0) is False
        assert cond.wait(-1) is False
        assert cond._is_owned()
    assert not cond._is_owned()


def test_condition_wait_non_number_timeout_raises_type_error(impl, lock_kind):
    cond = condition_pair(impl, lock_kind)
    with cond:
        with pytest.raises(TypeError):
            cond.wait("1")
        assert cond._is_owned()


def test_condition_notify_without_waiters_is_a_no_op(impl, lock_kind):
    cond = condition_pair(impl, lock_kind)
    with cond:
        cond.notify()
        cond.notify(5)
        cond.notify(0)
        cond.notify(-1)
        cond.notify_all()


def test_condition_wait_for_returns_predicate_value(impl, lock_kind):
    cond = condition_pair(impl, lock_kind)
    with cond:
        assert cond.wait_for(lambda: "yes") == "yes"
        result, elapsed = elapsed_of(cond.wait_for, lambda: 0, 0.05)
        assert result == 0
        assert elapsed < 1.0


def test_condition_producer_consumer(impl, lock_kind):
    cond = condition_pair(impl, lock_kind)
    items = []
    got = []

    def consumer():
        for _ in range(3):
            with cond:
                assert cond.wait_for(lambda: items, 5)
                got.append(items.pop(0))

    job = background(cond, consumer)
    for n in range(3):
        pause(cond, 0.005)
        with cond:
            items.append(n)
            cond.notify()
    job.result()
    assert got == [0, 1, 2]


def test_condition_notifyall_is_a_deprecated_alias():
    cond = ptsevent.Condition()
    with cond:
        with pytest.warns(DeprecationWarning):
            cond.notifyAll()


def test_condition_notify_wakes_waiters_one_at_a_time_in_fifo_order():
    cond = ptsevent.Condition()
    order = []

    def waiter(n):
        with cond:
            assert cond.wait() is True
            order.append(n)

    ts = [ptsevent.spawn(waiter, n) for n in range(4)]
    ptsevent.sleep(0)
    assert waiting(cond) == 4
    for n in range(4):
        with cond:
            cond.notify()
        run_ready()
        assert order == list(range(n + 1))
    ptsevent.joinall(ts)


def test_condition_notify_n_and_notify_all():
    cond = ptsevent.Condition()
    order = []

    def waiter(n):
        with cond:
            cond.wait()
            order.append(n)

    ts = [ptsevent.spawn(waiter, n) for n in range(5)]
    ptsevent.sleep(0)
    with cond:
        cond.notify(2)
    run_ready()
    assert order == [0, 1]
    with cond:
        cond.notify_all()
    ptsevent.joinall(ts)
    assert order == [0, 1, 2, 3, 4]
    assert waiting(cond) == 0


def test_condition_wait_restores_rlock_recursion_level():
    cond = ptsevent.Condition(ptsevent.RLock())
    levels = []

    def waiter():
        with cond:
            with cond:
                cond.wait()
                levels.append(cond._lock._recursion_count())

    t = ptsevent.spawn(waiter)
    ptsevent.sleep(0)
    assert cond._lock._owner is None, "wait() did not release every level"
    with cond:
        cond.notify()
    t.join()
    assert levels == [2]
    assert cond._lock._owner is None


def test_condition_killed_waiter_holds_the_lock_again_and_leaves_no_waiter():
    cond = ptsevent.Condition()
    seen = []

    def waiter():
        with cond:
            try:
                cond.wait()
            except ptsevent.TaskletExit:
                seen.append(cond._is_owned())
                raise

    t = ptsevent.spawn(waiter)
    ptsevent.sleep(0)
    assert waiting(cond) == 1
    t.kill()
    assert seen == [True]
    assert waiting(cond) == 0
    assert cond._lock._owner is None


def test_condition_waiter_killed_while_reacquiring_still_holds_the_lock_on_exit():
    cond = ptsevent.Condition(ptsevent.Lock())
    seen = []

    def waiter():
        with cond:
            try:
                cond.wait()
            except ptsevent.TaskletExit:
                seen.append(cond._lock.locked())
                raise

    t = ptsevent.spawn(waiter)
    ptsevent.sleep(0)
    cond.acquire()
    cond.notify()
    ptsevent.sleep(0)  # t runs and waits for the lock we hold
    t.kill(block=False)
    ptsevent.sleep(0)
    assert not t.dead, "killed before it held the lock again"
    cond.release()
    t.join()
    assert seen == [True]
    assert not cond._lock.locked()


def test_condition_killing_the_notified_waiter_passes_the_notification_on():
    cond = ptsevent.Condition()
    woke = []

    def waiter(n):
        with cond:
            cond.wait()
            woke.append(n)

    a = ptsevent.spawn(waiter, "a")
    b = ptsevent.spawn(waiter, "b")
    ptsevent.sleep(0)
    with cond:
        cond.notify()
    a.kill(block=False)
    ptsevent.joinall([a, b], timeout=5)
    assert woke == ["b"]
    assert waiting(cond) == 0


def test_condition_notify_from_another_os_thread_wakes_the_tasklet():
    cond = ptsevent.Condition(ptsevent.Lock())

    def waiter():
        with cond:
            return cond.wait(5)

    t = ptsevent.spawn(waiter)
    ptsevent.sleep(0)
    assert waiting(cond) == 1

    def notifier():
        with cond:
            cond.notify()

    th = threading.Thread(target=notifier)
    th.start()
    th.join()
    assert t.get(timeout=5) is True


def test_condition_repr():
    cond = ptsevent.Condition()
    assert repr(cond).startswith("<Condition(<unlocked ptsevent.locks.RLock")
    assert repr(cond).endswith(", 0)>")


def test_lock_acquire_in_main_that_nothing_can_release_raises_loop_exit(lock_cls):
    lock = lock_cls[0]()
    ptsevent.spawn(lock.acquire).join()
    with pytest.raises(ptsevent.LoopExit):
        lock.acquire()
    assert waiting(lock) == 0
    assert handed(lock) == 0

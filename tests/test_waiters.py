"""The one waiter protocol under Lock, RLock, Semaphore, Event, Condition
and Queue: FIFO hand-off, waiters leaving from the middle of the queue,
permits that come back through the public release(), thread hand-over.
"""

import threading

import pytest

import ptsevent
from ptsevent.queue import Queue


def run_ready():
    for _ in range(3):
        ptsevent.sleep(0)


def _acquire_lock(lock, timeout):
    return lock.acquire(True, -1 if timeout is None else timeout)


def _acquire_sem(sem, timeout):
    return sem.acquire(timeout=timeout)


# (factory, take it, give it back) for the primitives a tasklet acquires.
ACQUIRABLE = [
    pytest.param((ptsevent.Lock, _acquire_lock,
                  lambda lock: lock.release()), id="Lock"),
    pytest.param((ptsevent.RLock, _acquire_lock,
                  lambda lock: lock.release()), id="RLock"),
    pytest.param((lambda: ptsevent.Semaphore(1), _acquire_sem,
                  lambda s: s.release()), id="Semaphore"),
    pytest.param((lambda: ptsevent.BoundedSemaphore(1), _acquire_sem,
                  lambda s: s.release()), id="BoundedSemaphore"),
]


@pytest.mark.parametrize("kind", ACQUIRABLE)
def test_waiters_timing_out_in_the_middle_keep_the_others_in_fifo_order(kind):
    make, take, give = kind
    obj = make()
    # The main tasklet holds it; for an RLock the holder must release it
    # itself, so a helper tasklet holds it instead.
    holding = ptsevent.Event()
    done = ptsevent.Event()

    def holder():
        assert take(obj, None)
        holding.set()
        done.wait()
        give(obj)

    h = ptsevent.spawn(holder)
    holding.wait()
    order = []

    def waiter(n, timeout):
        if take(obj, timeout):
            order.append(n)
            give(obj)
        else:
            order.append(-n)

    timeouts = [None, 0.02, None, 0.02, None]
    ts = [ptsevent.spawn(waiter, n, t) for n, t in enumerate(timeouts, 1)]
    run_ready()
    ptsevent.sleep(0.06)  # waiters 2 and 4 time out and leave the queue
    assert order == [-2, -4]
    done.set()
    ptsevent.joinall(ts + [h])
    assert order == [-2, -4, 1, 3, 5]


class CountingSemaphore(ptsevent.Semaphore):
    """A subclass that counts what comes back through release()."""

    def __init__(self, value):
        super().__init__(value)
        self.released = 0

    def release(self, n=1):
        self.released += n
        super().release(n)


def test_a_permit_handed_to_a_killed_waiter_comes_back_through_release():
    sem = CountingSemaphore(0)
    t = ptsevent.spawn(sem.acquire)
    run_ready()
    sem.release()  # handed to t, which has not run yet
    assert sem._value == 0
    t.kill()  # t gives the permit back, through the subclass's release()
    assert t.dead
    assert sem.released == 2
    assert sem._value == 1
    assert sem.acquire(False)


def test_a_semaphore_subclass_with_exit_calls_its_own_release():
    sem = CountingSemaphore(1)
    with sem:
        assert sem._value == 0
    assert sem.released == 1
    assert sem._value == 1


def test_rlock_set_free_by_another_thread_goes_to_the_waiting_tasklet():
    lock = ptsevent.RLock()
    got = []

    def in_thread():
        lock.acquire()  # owned by this thread's tasklet
        ready.set()
        release.wait(5)
        lock.release()

    ready, release = threading.Event(), threading.Event()
    th = threading.Thread(target=in_thread)
    th.start()
    assert ready.wait(5)
    t = ptsevent.spawn(lambda: got.append(lock.acquire(timeout=5)))
    run_ready()
    assert lock._waiters.wq == (t,)
    release.set()
    t.join(timeout=5)
    th.join()
    assert got == [True]
    assert lock._owner is t


def test_condition_waits_move_to_another_thread_when_nobody_waits():
    cond = ptsevent.Condition(ptsevent.Lock())

    def in_thread():
        with cond:
            assert cond.wait(0.01) is False

    th = threading.Thread(target=in_thread)
    th.start()
    th.join()
    woken = []

    def waiter():
        with cond:
            woken.append(cond.wait(5))

    t = ptsevent.spawn(waiter)
    run_ready()
    assert len(cond._waiters.wq) == 1
    with cond:
        cond.notify()
    t.join()
    assert woken == [True]


def test_waiters_snapshot_lists_the_waiting_tasklets_oldest_first():
    ev = ptsevent.Event()
    assert ev._waiters is None
    ts = [ptsevent.spawn(ev.wait) for _ in range(3)]
    run_ready()
    state = ev._waiters
    assert state.wq == tuple(ts)
    assert state.woken == 0
    ev.set()
    assert ev._waiters.wq == ()
    assert ev._waiters.woken == 3
    ptsevent.joinall(ts)
    assert ev._waiters.woken == 0


def test_many_waiters_on_every_primitive_at_once_all_finish():
    # Waits of every kind side by side, each with its own record, leaving
    # and being handed in any order.
    lock, rlock = ptsevent.Lock(), ptsevent.RLock()
    sem, ev, q = ptsevent.Semaphore(0), ptsevent.Event(), Queue()
    cond = ptsevent.Condition()
    results = []

    def use(kind, n):
        if kind == 0:
            with lock:
                ptsevent.sleep(0)
        elif kind == 1:
            with rlock:
                ptsevent.sleep(0)
        elif kind == 2:
            sem.acquire(timeout=0.01 if n // 6 % 2 else None)
        elif kind == 3:
            ev.wait(0.01 if n // 6 % 3 == 0 else None)
        elif kind == 4:
            q.get()
        else:
            with cond:
                cond.wait(0.01 if n // 6 % 2 else None)
        results.append(kind)

    ts = [ptsevent.spawn(use, n % 6, n) for n in range(300)]
    run_ready()
    ptsevent.sleep(0.03)
    sem.release(50)
    ev.set()
    for _ in range(50):
        q.put(None)
    with cond:
        cond.notify_all()
    assert len(ptsevent.joinall(ts, timeout=5)) == 300
    assert sorted(set(results)) == [0, 1, 2, 3, 4, 5]
    assert len(results) == 300

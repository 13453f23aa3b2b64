"""ptsevent.pool: Group and Pool.

Bad input is checked against the standard library's pools
(concurrent.futures.ThreadPoolExecutor, multiprocessing.pool.ThreadPool), so
a difference in exception types shows. Bounded concurrency, FIFO slots,
kills and timeouts while waiting, and the cleanup of map/imap concern
ptsevent alone.
"""

import concurrent.futures
import logging
import multiprocessing.pool
import queue
import sys
import time

import pytest

import ptsevent
from ptsevent import pool as pool_mod
from ptsevent.pool import Group, Pool, PoolFull
from support import run_ready


class MyError(Exception):
    pass


def slot_waiters(p):
    """Tasklets queued for a slot of Pool p."""
    w = p._slots._waiters
    return 0 if w is None else len(w.wq)


class Concurrency:
    """A job that records how many of its calls run at once."""

    def __init__(self, delay=0.005):
        self.delay = delay
        self.running = 0
        self.peak = 0

    def __call__(self, x):
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            ptsevent.sleep(self.delay)
        finally:
            self.running -= 1
        return x * 10


def fail_at(bad, delay=None):
    def job(x):
        if delay is not None:
            ptsevent.sleep(delay)
        if x == bad:
            raise MyError(x)
        return x
    return job


@pytest.fixture(params=["Group", "Pool"])
def group(request):
    return Group() if request.param == "Group" else Pool(3)


# --- names and bad input ------------------------------------------------------


def test_public_names_are_exported():
    assert ptsevent.Pool is Pool and ptsevent.Group is Group
    for name in ("Pool", "Group", "local"):
        assert name in ptsevent.__all__
    assert issubclass(Pool, Group)
    assert issubclass(PoolFull, queue.Full)


STDLIB_POOLS = [
    pytest.param(Pool, id="ptsevent"),
    pytest.param(lambda n: concurrent.futures.ThreadPoolExecutor(max_workers=n),
                 id="ThreadPoolExecutor"),
    pytest.param(multiprocessing.pool.ThreadPool, id="ThreadPool"),
]


@pytest.mark.parametrize("make", STDLIB_POOLS)
@pytest.mark.parametrize("size", [0, -1])
def test_pool_size_below_one_raises_value_error_like_stdlib(make, size):
    with pytest.raises(ValueError):
        make(size)


@pytest.mark.parametrize("make", STDLIB_POOLS)
def test_pool_size_of_wrong_type_raises_type_error_like_stdlib(make):
    with pytest.raises(TypeError):
        make("3")


def test_pool_size_must_be_an_integer():
    with pytest.raises(TypeError):
        Pool(2.5)
    assert Pool(None).size is None
    assert Pool(True).size == 1


def _stdlib_executor():
    return concurrent.futures.ThreadPoolExecutor(max_workers=2)


@pytest.mark.parametrize("impl", ["ptsevent", "ThreadPoolExecutor"])
def test_map_with_non_callable_raises_type_error_like_stdlib(impl):
    if impl == "ptsevent":
        with pytest.raises(TypeError, match="'int' object is not callable"):
            Pool(2).map(1, [1, 2])
    else:
        with _stdlib_executor() as ex, pytest.raises(TypeError):
            list(ex.map(1, [1, 2]))


@pytest.mark.parametrize("impl", ["ptsevent", "ThreadPoolExecutor"])
def test_map_over_non_iterable_raises_type_error_like_stdlib(impl):
    if impl == "ptsevent":
        with pytest.raises(TypeError, match="not iterable"):
            Pool(2).map(str, 5)
    else:
        with _stdlib_executor() as ex, pytest.raises(TypeError):
            list(ex.map(str, 5))


def test_bad_input_is_rejected_before_anything_runs(group):
    with pytest.raises(TypeError):
        group.spawn(None)
    with pytest.raises(TypeError):
        group.apply("not callable")
    with pytest.raises(TypeError):
        group.apply_async(len, ([],), callback=3)
    with pytest.raises(TypeError):
        group.imap(len)  # no iterable, as builtin map()
    with pytest.raises(TypeError):
        group.imap_unordered(42, [1])
    with pytest.raises(ValueError):
        group.imap(str, [1], maxsize=0)
    with pytest.raises(TypeError):
        group.add("not a tasklet")
    assert len(group) == 0
    assert ptsevent.hub_stats()["tasklets"] == 0


# --- Group: tracking, join, kill -------------------------------------------------


def test_spawn_tracks_tasklets_until_they_finish(group):
    go = ptsevent.Event()
    ts = [group.spawn(go.wait) for _ in range(3)]
    assert len(group) == 3
    assert list(group) == ts  # in the order they were added
    assert all(t in group for t in ts)
    go.set()
    assert group.join() is True
    assert len(group) == 0 and not group
    assert all(t.dead and t.value is True for t in ts)


def test_spawn_passes_args_and_kwargs(group):
    t = group.spawn(dict, a=1, fn=2)
    u = group.spawn(divmod, 7, 2)
    group.join()
    assert t.value == {"a": 1, "fn": 2}
    assert u.value == (3, 1)


def test_finished_tasklets_leave_the_group_by_themselves(group):
    t = group.spawn(int)
    t.join()
    run_ready()  # the group's link callback
    assert t not in group and len(group) == 0


def test_join_times_out_returning_false_and_keeps_the_tasklets(group):
    t = group.spawn(ptsevent.sleep, 10)
    start = time.monotonic()
    assert group.join(timeout=0.05) is False
    assert 0.04 <= time.monotonic() - start < 1
    assert t in group and not t.dead
    group.kill()
    assert t.dead and len(group) == 0


def test_join_of_an_empty_group_returns_true_at_once(group):
    assert group.join() is True
    assert group.join(timeout=0) is True


def test_join_raise_error_raises_the_first_failure_in_spawn_order(group, caplog):
    caplog.set_level(logging.CRITICAL, logger="ptsevent")
    group.spawn(ptsevent.sleep, 0.01)
    group.spawn(fail_at(1, 0.02), 1)
    group.spawn(fail_at(2, 0.0), 2)
    with pytest.raises(MyError) as info:
        group.join(raise_error=True)
    assert info.value.args == (1,)
    assert len(group) == 0


def test_join_without_raise_error_ignores_failures(group, caplog):
    caplog.set_level(logging.CRITICAL, logger="ptsevent")
    t = group.spawn(fail_at(1), 1)
    assert group.join() is True
    assert isinstance(t.exception, MyError)


def test_join_from_a_member_raises_runtime_error(group):
    t = group.spawn(lambda: group.join())
    with pytest.raises(RuntimeError, match="own tasklets"):
        t.get()


def test_join_waits_for_tasklets_added_meanwhile():
    g = Group()
    order = []

    def first():
        ptsevent.sleep(0.01)
        g.spawn(lambda: (ptsevent.sleep(0.02), order.append("second")))
        order.append("first")

    g.spawn(first)
    assert g.join() is True
    assert order == ["first", "second"]


def test_kill_kills_every_tasklet_and_empties_the_group(group):
    ts = [group.spawn(ptsevent.sleep, 10) for _ in range(2)]
    ptsevent.sleep(0)
    pending = group.spawn(ptsevent.sleep, 10)  # never ran yet
    assert not pending.started or pending._queued
    group.kill()
    assert all(t.dead for t in ts + [pending])
    assert all(isinstance(t.value, ptsevent.TaskletExit) for t in ts + [pending])
    assert len(group) == 0


def test_kill_with_an_exception_class(group, caplog):
    caplog.set_level(logging.CRITICAL, logger="ptsevent")
    ptsevent.sleep(0)
    t = group.spawn(ptsevent.sleep, 10)
    ptsevent.sleep(0)
    group.kill(MyError)
    assert isinstance(t.exception, MyError)


def test_kill_without_block_returns_before_they_die(group):
    t = group.spawn(ptsevent.sleep, 10)
    ptsevent.sleep(0)
    group.kill(block=False)
    assert not t.dead
    t.join()
    assert isinstance(t.value, ptsevent.TaskletExit)


def test_kill_timeout_returns_while_a_tasklet_resists(group):
    def stubborn():
        try:
            ptsevent.sleep(10)
        except ptsevent.TaskletExit:
            ptsevent.sleep(10)

    t = group.spawn(stubborn)
    ptsevent.sleep(0)
    start = time.monotonic()
    group.kill(timeout=0.05)
    assert 0.04 <= time.monotonic() - start < 1
    assert not t.dead
    group.kill(timeout=0.01)  # not killed twice while dying
    assert not t.dead
    t.kill()
    assert t.dead


def test_kill_from_a_member_spares_the_caller(group):
    other = group.spawn(ptsevent.sleep, 10)

    def killer():
        group.kill()
        return "alive"

    t = group.spawn(killer)
    assert t.get() == "alive"
    assert other.dead
    group.join()


def test_killone_kills_only_that_tasklet(group):
    a = group.spawn(ptsevent.sleep, 10)
    b = group.spawn(ptsevent.sleep, 10)
    ptsevent.sleep(0)
    group.killone(a)
    assert a.dead and a not in group
    assert not b.dead and b in group
    group.killone(ptsevent.spawn(int))  # not a member: left alone
    group.kill()


def test_add_and_discard_external_tasklets():
    t = ptsevent.spawn(ptsevent.sleep, 10)
    g = Group([t])
    assert t in g
    g.discard(t)
    assert t not in g and len(g) == 0
    g.add(t)
    g.add(t)  # already there
    assert len(g) == 1
    g.kill()
    assert t.dead and len(g) == 0


def test_start_adds_then_starts_a_new_tasklet(group):
    t = ptsevent.Tasklet(divmod, 9, 4)
    group.start(t)
    assert t in group
    group.join()
    assert t.value == (2, 1)


def test_group_is_never_full():
    g = Group()
    assert g.full() is False
    assert g.wait_available() is None
    assert g.wait_available(timeout=0) is None


# --- Pool: bounded concurrency ---------------------------------------------------


def test_pool_spawn_blocks_when_full_until_a_slot_frees():
    p = Pool(2)
    gate = ptsevent.Event()
    p.spawn(gate.wait)
    p.spawn(gate.wait)
    assert p.full() and p.free_count() == 0
    spawner = ptsevent.spawn(p.spawn, int)
    run_ready()
    assert not spawner.dead and slot_waiters(p) == 1
    gate.set()
    t = spawner.get(timeout=5)
    p.join()
    assert t.value == 0
    assert p.free_count() == 2 and not p.full()


def test_pool_waiting_spawners_get_slots_in_fifo_order():
    p = Pool(1)
    gate = ptsevent.Event()
    p.spawn(gate.wait)
    order = []
    spawners = [ptsevent.spawn(p.spawn, order.append, i) for i in range(5)]
    run_ready()
    assert slot_waiters(p) == 5
    gate.set()
    ptsevent.joinall(spawners)
    p.join()
    assert order == [0, 1, 2, 3, 4]


def test_pool_spawner_killed_while_waiting_leaves_no_waiter_nor_slot():
    p = Pool(1)
    gate = ptsevent.Event()
    p.spawn(gate.wait)
    a = ptsevent.spawn(p.spawn, int)
    b = ptsevent.spawn(p.spawn, str)
    run_ready()
    assert slot_waiters(p) == 2
    a.kill()
    assert slot_waiters(p) == 1
    gate.set()
    t = b.get(timeout=5)
    p.join()
    assert t.value == ""
    assert p.free_count() == 1 and len(p) == 0


def test_pool_spawner_killed_after_being_handed_the_slot_gives_it_back():
    p = Pool(1)
    gate = ptsevent.Event()
    holder = p.spawn(gate.wait)
    a = ptsevent.spawn(p.spawn, int)
    run_ready()
    gate.set()
    holder.join()
    p.killone(holder)  # drops it now: the slot is handed to `a`
    a.kill()  # before `a` ran
    assert slot_waiters(p) == 0
    assert p.free_count() == 1


def test_pool_spawn_wait_interrupted_by_timeout_leaves_no_waiter():
    p = Pool(1)
    p.spawn(ptsevent.sleep, 10)
    start = time.monotonic()
    with pytest.raises(ptsevent.Timeout):
        with ptsevent.Timeout(0.05):
            p.spawn(int)
    assert 0.04 <= time.monotonic() - start < 1
    assert slot_waiters(p) == 0 and len(p) == 1
    p.kill()
    assert p.free_count() == 1


def test_pool_add_non_blocking_or_with_timeout_raises_pool_full():
    p = Pool(1)
    p.spawn(ptsevent.sleep, 10)
    with pytest.raises(PoolFull):
        p.add(ptsevent.Tasklet(int), blocking=False)
    start = time.monotonic()
    with pytest.raises(PoolFull):
        p.add(ptsevent.Tasklet(int), timeout=0.05)
    assert 0.04 <= time.monotonic() - start < 1
    assert slot_waiters(p) == 0 and len(p) == 1
    p.kill()
    t = ptsevent.Tasklet(int)
    p.start(t, blocking=False)
    p.join()
    assert t.value == 0


def test_pool_free_count_and_full_follow_the_members():
    p = Pool(3)
    assert p.free_count() == 3 and not p.full()
    ts = [p.spawn(ptsevent.sleep, 10) for _ in range(3)]
    assert p.free_count() == 0 and p.full()
    p.killone(ts[0])
    assert p.free_count() == 1
    p.kill()
    assert p.free_count() == 3


def test_unbounded_pool_never_blocks():
    p = Pool()
    assert p.size is None
    ts = [p.spawn(ptsevent.sleep, 0.01) for _ in range(50)]
    assert len(p) == 50
    assert p.free_count() == sys.maxsize and not p.full()
    assert p.wait_available() == sys.maxsize
    p.join()
    assert all(t.dead for t in ts)


def test_wait_available_returns_the_free_count_without_taking_a_slot():
    p = Pool(2)
    assert p.wait_available() == 2
    t = p.spawn(ptsevent.sleep, 0.02)
    assert p.wait_available(timeout=0) == 1
    p.spawn(ptsevent.sleep, 0.02)
    start = time.monotonic()
    assert p.wait_available() >= 1
    assert time.monotonic() - start >= 0.01
    assert t.dead
    assert p.free_count() >= 1
    p.join()


def test_wait_available_times_out_returning_zero():
    p = Pool(1)
    p.spawn(ptsevent.sleep, 10)
    start = time.monotonic()
    assert p.wait_available(timeout=0.05) == 0
    assert 0.04 <= time.monotonic() - start < 1
    assert len(p._slots.available._waiters.wq) == 0
    p.kill()


def test_wait_available_killed_while_waiting_leaves_no_waiter():
    p = Pool(1)
    p.spawn(ptsevent.sleep, 10)
    w = ptsevent.spawn(p.wait_available)
    run_ready()
    assert len(p._slots.available._waiters.wq) == 1
    w.kill()
    assert len(p._slots.available._waiters.wq) == 0
    p.kill()
    assert p.wait_available() == 1


def test_wait_available_wakes_when_a_killed_spawner_gives_its_slot_back():
    p = Pool(1)
    gate = ptsevent.Event()
    holder = p.spawn(gate.wait)
    spawner = ptsevent.spawn(p.spawn, int)
    waiter = ptsevent.spawn(p.wait_available)
    run_ready()
    gate.set()
    holder.join()
    p.killone(holder)  # the slot is handed to the spawner...
    spawner.kill()  # ...which dies before it could use it
    assert waiter.get(timeout=2) == 1
    assert p.free_count() == 1


def test_wait_available_lets_waiting_spawners_go_first():
    p = Pool(1)
    gate = ptsevent.Event()
    p.spawn(gate.wait)
    spawner = ptsevent.spawn(p.spawn, ptsevent.sleep, 0.02)
    run_ready()
    w = ptsevent.spawn(p.wait_available)
    run_ready()
    gate.set()
    assert w.get(timeout=5) == 1
    assert spawner.dead and spawner.value.dead  # its tasklet ran first
    p.join()


# --- apply -------------------------------------------------------------------------


def test_apply_returns_the_result_from_a_tasklet_of_the_group(group):
    me = ptsevent.getcurrent()
    seen = []

    def job(a, b=0):
        seen.append(ptsevent.getcurrent())
        return a + b

    assert group.apply(job, (1,), {"b": 2}) == 3
    assert group.apply(job, [5]) == 5
    assert seen[0] is not me
    assert len(group) == 0


def test_apply_raises_the_exception_without_logging_it(group, caplog):
    with pytest.raises(MyError, match="boom"):
        group.apply(fail_at("boom"), ("boom",))
    assert not [r for r in caplog.records if r.name == "ptsevent"]
    assert len(group) == 0


def test_apply_from_a_member_runs_inline_so_a_full_pool_cannot_deadlock():
    p = Pool(1)
    inner = []

    def outer():
        return p.apply(lambda: inner.append(ptsevent.getcurrent()) or 7)

    t = p.spawn(outer)
    assert t.get(timeout=5) == 7
    assert inner == [t]
    p.join()


def test_apply_caller_killed_while_waiting_kills_the_job(group):
    started = ptsevent.Event()

    def job():
        started.set()
        ptsevent.sleep(10)

    caller = ptsevent.spawn(group.apply, job)
    started.wait()
    assert len(group) == 1
    caller.kill()
    run_ready()
    assert len(group) == 0


def test_apply_of_a_killed_job_raises_cancelled_error(group):
    caller = ptsevent.spawn(group.apply, ptsevent.sleep, (10,))
    run_ready()
    group.kill()
    with pytest.raises(concurrent.futures.CancelledError):
        caller.get(timeout=5)


def test_apply_async_returns_the_tasklet_and_calls_back_with_the_value(group):
    got = []
    t = group.apply_async(divmod, (7, 3), callback=got.append)
    assert isinstance(t, ptsevent.Tasklet)
    assert t.get() == (2, 1)
    group.join()
    run_ready()
    assert got == [(2, 1)]


def test_apply_async_does_not_call_back_on_failure_or_kill(group, caplog):
    caplog.set_level(logging.CRITICAL, logger="ptsevent")
    got = []
    failed = group.apply_async(fail_at(1), (1,), callback=got.append)
    killed = group.apply_async(ptsevent.sleep, (10,), callback=got.append)
    ptsevent.sleep(0)
    group.kill()
    run_ready()
    assert isinstance(failed.exception, MyError)
    assert killed.dead
    assert got == []


def test_apply_async_on_a_full_pool_returns_at_once_and_join_waits_for_it():
    p = Pool(1)
    gate = ptsevent.Event()
    p.spawn(gate.wait)
    got = []
    t = p.apply_async(divmod, (9, 2), callback=got.append)
    assert not t.dead
    ptsevent.spawn_later(0.01, gate.set)
    assert p.join() is True
    assert t.dead and t.value == (4, 1)
    assert got == [(4, 1)]


def test_kill_kills_apply_async_helpers_waiting_for_a_slot():
    p = Pool(1)
    p.spawn(ptsevent.sleep, 10)
    t = p.apply_async(int)
    run_ready()
    p.kill()
    assert t.dead
    assert slot_waiters(p) == 0 and p.free_count() == 1


# --- map / imap ----------------------------------------------------------------------


def test_map_returns_results_in_order(group):
    delays = [0.03, 0.0, 0.02, 0.01, 0.0]

    def job(i):
        ptsevent.sleep(delays[i])
        return i * i

    assert group.map(job, range(5)) == [0, 1, 4, 9, 16]
    assert group.map(job, []) == []
    assert len(group) == 0


@pytest.mark.parametrize("size", [1, 3])
def test_pool_map_never_runs_more_than_size_at_once(size):
    p = Pool(size)
    job = Concurrency()
    assert p.map(job, range(12)) == [x * 10 for x in range(12)]
    assert job.peak == size


@pytest.mark.parametrize("size", [1, 3])
def test_pool_imap_never_runs_more_than_size_at_once(size):
    p = Pool(size)
    job = Concurrency()
    assert sorted(p.imap_unordered(job, range(12))) == [x * 10 for x in range(12)]
    assert job.peak == size
    job = Concurrency()
    assert list(p.imap(job, range(12))) == [x * 10 for x in range(12)]
    assert job.peak == size


def test_map_raises_the_first_failure_in_order_and_kills_the_rest(group, caplog):
    started = []

    def job(x):
        started.append(x)
        if x == 0:
            ptsevent.sleep(0.03)  # an earlier item that succeeds: waited for
            return x
        if x == 1:
            ptsevent.sleep(0.02)
            raise MyError("first in order")
        if x == 2:
            raise MyError("first in time")
        ptsevent.sleep(10)

    t0 = time.monotonic()
    with pytest.raises(MyError, match="first in order"):
        group.map(job, range(6))
    assert 0.02 <= time.monotonic() - t0 < 1  # the sleepers were killed
    assert len(group) == 0
    run_ready()  # the link callbacks of the killed tasklets
    assert ptsevent.hub_stats()["tasklets"] == 0
    assert not [r for r in caplog.records if r.name == "ptsevent"]


def test_group_kill_during_map_raises_cancelled_error_in_the_caller(group):
    caller = ptsevent.spawn(group.map, ptsevent.sleep, [10, 10])
    run_ready()
    group.kill()
    with pytest.raises(concurrent.futures.CancelledError):
        caller.get(timeout=5)
    assert len(group) == 0


def test_map_caller_killed_leaves_no_tasklet(group):
    caller = ptsevent.spawn(group.map, ptsevent.sleep, [10, 10, 10])
    run_ready()
    assert len(group) == 3
    caller.kill()
    run_ready()
    assert len(group) == 0
    assert ptsevent.hub_stats()["tasklets"] == 0


def test_imap_zips_several_iterables_like_builtin_map(group):
    it = group.imap(pow, [2, 3, 4], [5, 2], maxsize=2)
    assert list(it) == list(map(pow, [2, 3, 4], [5, 2]))


def test_imap_starts_at_once_and_reads_input_lazily_with_a_pool():
    read = []

    def source():
        for i in range(100):
            read.append(i)
            yield i

    p = Pool(2)
    gate = ptsevent.Event()
    it = p.imap(lambda x: gate.wait() and x, source())
    run_ready()
    assert read == [0, 1]  # one item per slot, nothing read ahead
    gate.set()
    assert next(it) == 0
    it.close()
    assert len(p) == 0
    assert next(it, "end") == "end"


def test_imap_maxsize_bounds_items_in_flight():
    read = []

    def source():
        for i in range(20):
            read.append(i)
            yield i

    g = Group()
    with g.imap(lambda x: x, source(), maxsize=3) as it:
        run_ready()
        assert len(read) == 3
        assert next(it) == 0
        run_ready()
        assert len(read) == 4
        assert list(it) == list(range(1, 20))
    assert len(g) == 0


def test_imap_unordered_yields_results_as_they_finish(group):
    def job(d):
        ptsevent.sleep(d)
        return d

    assert list(group.imap_unordered(job, [0.03, 0.0, 0.015])) == [0.0, 0.015, 0.03]


def test_imap_unordered_raises_the_first_failure_to_finish(group):
    def job(x):
        ptsevent.sleep(0.02 if x == 0 else 0.0 if x == 1 else 10)
        if x < 2:
            raise MyError(x)

    with pytest.raises(MyError) as info:
        list(group.imap_unordered(job, range(3)))
    assert info.value.args == (1,)
    assert len(group) == 0


def test_imap_raises_input_errors_at_their_place():
    def source():
        yield 1
        yield 2
        raise MyError("input")

    it = Pool(2).imap(lambda x: x * 2, source())
    assert next(it) == 2
    assert next(it) == 4
    with pytest.raises(MyError, match="input"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_imap_close_kills_the_running_calls(group):
    it = group.imap(ptsevent.sleep, [10, 10])
    run_ready()
    assert len(group) == 2
    it.close()
    assert len(group) == 0
    run_ready()
    assert ptsevent.hub_stats()["tasklets"] == 0
    it.close()  # again: nothing to do
    assert list(it) == []


def test_imap_dropped_unfinished_kills_its_tasklets(group):
    for x in group.imap(lambda x: (ptsevent.sleep(0.01 * x), x)[1], range(5)):
        if x == 1:
            break
    run_ready()
    assert len(group) == 0
    assert ptsevent.hub_stats()["tasklets"] == 0


def test_imap_never_iterated_and_dropped_leaves_nothing(group):
    group.imap(ptsevent.sleep, [10])
    run_ready()
    assert len(group) == 0


def test_group_kill_stops_an_imap_feeder():
    p = Pool(1)
    it = p.imap(ptsevent.sleep, [10, 10, 10])
    run_ready()
    assert len(p._feeders) == 1
    p.kill()
    assert not p._feeders and len(p) == 0
    with pytest.raises(concurrent.futures.CancelledError):
        next(it)


def test_join_does_not_wait_for_an_imap_reader_that_has_not_read():
    g = Group()
    with g.imap(int, ["1", "2"], maxsize=1) as it:
        assert g.join(timeout=1) is True
        assert list(it) == [1, 2]


def test_module_exports():
    assert set(pool_mod.__all__) == {"Group", "Pool", "PoolFull"}

"""ptsevent.queue: Queue, LifoQueue, PriorityQueue.

The standard `queue` contract (order, maxsize, Full/Empty, timeouts, bad
input, task_done/join, storage hooks) is parametrized over `ptsevent.queue`
(concurrency from tasklets) and the standard `queue` module (concurrency
from plain threads). Fair service of blocked getters and putters, kills
while waiting and put_nowait from another OS thread concern ptsevent alone.
"""

import math
import queue as stdqueue
import threading
import time

import pytest

import ptsevent
import ptsevent.queue as pqueue
from support import elapsed_of, run_ready

IMPLS = [pytest.param(pqueue, id="ptsevent"), pytest.param(stdqueue, id="stdlib")]
KINDS = ["Queue", "LifoQueue", "PriorityQueue"]


@pytest.fixture(params=IMPLS)
def mod(request):
    return request.param


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


# --- helpers ----------------------------------------------------------------


def background(mod, fn, *args):
    """Run fn concurrently: a tasklet for ptsevent, a thread for stdlib;
    returns result(timeout) -> value."""
    if mod is pqueue:
        t = ptsevent.spawn(fn, *args)
        return lambda timeout=10: t.get(timeout=timeout)
    box = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to result()
            box["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()

    def result(timeout=10):
        th.join(timeout)
        assert not th.is_alive(), "background thread did not finish"
        if "error" in box:
            raise box["error"]
        return box.get("value")

    return result


def pause(mod, seconds):
    (ptsevent.sleep if mod is pqueue else time.sleep)(seconds)


def waiting(w):
    """Tasklets blocked on one side of a queue: q._getters, q._putters or
    q._joiners are (blocked, handed-but-not-yet-returned) pairs."""
    return w[0]


def handed(w):
    return w[1]


# --- the standard contract ---------------------------------------------------


def test_exceptions_are_the_standard_ones():
    assert pqueue.Full is stdqueue.Full
    assert pqueue.Empty is stdqueue.Empty
    for name in KINDS:
        assert getattr(ptsevent, name) is getattr(pqueue, name)
        assert name in ptsevent.__all__


@pytest.mark.parametrize("kind, expected", [
    ("Queue", [3, 1, 2]), ("LifoQueue", [2, 1, 3]), ("PriorityQueue", [1, 2, 3])])
def test_retrieval_order(mod, kind, expected):
    q = getattr(mod, kind)()
    for item in (3, 1, 2):
        q.put(item)
    assert [q.get() for _ in range(3)] == expected


def test_initial_state(mod, kind):
    q = getattr(mod, kind)()
    assert q.qsize() == 0
    assert q.empty() is True
    assert q.full() is False
    assert q.maxsize == 0
    assert q.unfinished_tasks == 0


@pytest.mark.parametrize("maxsize", [0, -1, -5])
def test_maxsize_zero_or_negative_is_unbounded(mod, kind, maxsize):
    q = getattr(mod, kind)(maxsize)
    for n in range(100):
        q.put_nowait(n)
    assert q.full() is False
    assert q.qsize() == 100


def test_bounded_queue_full_and_put_nowait_raises_full(mod, kind):
    q = getattr(mod, kind)(2)
    q.put(1)
    assert q.full() is False
    q.put_nowait(2)
    assert q.full() is True
    assert q.qsize() == 2
    with pytest.raises(stdqueue.Full):
        q.put_nowait(3)
    with pytest.raises(stdqueue.Full):
        q.put(3, block=False)
    with pytest.raises(stdqueue.Full):
        q.put(3, False, 5)
    assert q.qsize() == 2
    q.get()
    q.put_nowait(3)
    assert q.qsize() == 2


def test_get_nowait_on_empty_raises_empty(mod, kind):
    q = getattr(mod, kind)()
    with pytest.raises(stdqueue.Empty):
        q.get_nowait()
    with pytest.raises(stdqueue.Empty):
        q.get(False)
    with pytest.raises(stdqueue.Empty):
        q.get(block=False, timeout=-1)  # the timeout is ignored when not blocking


def test_get_times_out_with_empty(mod, kind):
    q = getattr(mod, kind)()
    start = time.monotonic()
    with pytest.raises(stdqueue.Empty):
        q.get(timeout=0.05)
    assert 0.045 <= time.monotonic() - start < 1.0
    with pytest.raises(stdqueue.Empty):
        q.get(timeout=0)


def test_put_on_full_queue_times_out_with_full(mod, kind):
    q = getattr(mod, kind)(1)
    q.put(1)
    start = time.monotonic()
    with pytest.raises(stdqueue.Full):
        q.put(2, timeout=0.05)
    assert 0.045 <= time.monotonic() - start < 1.0
    with pytest.raises(stdqueue.Full):
        q.put(2, timeout=0)
    assert q.qsize() == 1


def test_get_negative_timeout_raises_value_error_even_with_items(mod, kind):
    q = getattr(mod, kind)()
    q.put(1)
    with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
        q.get(timeout=-1)
    assert q.qsize() == 1


def test_put_negative_timeout_raises_value_error_only_when_bounded(mod, kind):
    q = getattr(mod, kind)(5)
    with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
        q.put(1, timeout=-1)
    assert q.qsize() == 0
    unbounded = getattr(mod, kind)()
    unbounded.put(1, timeout=-1)
    assert unbounded.qsize() == 1


@pytest.mark.parametrize("method", ["get", "put"])
def test_non_number_timeout_raises_type_error(mod, method):
    q = mod.Queue(1)
    if method == "get":
        with pytest.raises(TypeError):
            q.get(timeout="1")
    else:
        with pytest.raises(TypeError):
            q.put(1, timeout="1")


def test_task_done_too_many_times_raises_value_error(mod, kind):
    q = getattr(mod, kind)()
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()
    q.put(1)
    q.get()
    q.task_done()
    with pytest.raises(ValueError):
        q.task_done()
    assert q.unfinished_tasks == 0


def test_join_returns_at_once_when_nothing_is_unfinished(mod, kind):
    q = getattr(mod, kind)()
    q.join()
    q.put(1)
    q.get()
    q.task_done()
    q.join()


def test_join_waits_until_every_item_is_done(mod, kind):
    q = getattr(mod, kind)()
    done = []

    def worker():
        for _ in range(3):
            item = q.get()
            pause(mod, 0.005)
            done.append(item)
            q.task_done()

    for n in range(3):
        q.put(n)
    result = background(mod, worker)
    q.join()
    assert sorted(done) == [0, 1, 2]
    assert q.unfinished_tasks == 0
    result()


def test_producer_consumer_with_a_bounded_queue(mod, kind):
    q = getattr(mod, kind)(2)
    got = []

    def consumer():
        for _ in range(20):
            got.append(q.get(timeout=5))

    result = background(mod, consumer)
    for n in range(20):
        q.put(n, timeout=5)
    result()
    assert sorted(got) == list(range(20))
    if kind == "Queue":
        assert got == list(range(20))


def test_subclass_storage_hooks(mod):
    class SetQueue(mod.Queue):
        def _init(self, maxsize):
            self.queue = []
            self.seen = set()

        def _put(self, item):
            if item not in self.seen:
                self.seen.add(item)
                self.queue.append(item)

        def _get(self):
            return self.queue.pop(0)

    q = SetQueue()
    for item in (1, 2, 1, 3, 2):
        q.put(item)
    assert q.qsize() == 3
    assert [q.get() for _ in range(3)] == [1, 2, 3]
    assert q.unfinished_tasks == 5


def test_queue_attribute_holds_the_items(mod, kind):
    q = getattr(mod, kind)()
    q.put(1)
    assert list(q.queue) == [1]


def test_class_is_subscriptable_for_typing(mod, kind):
    alias = getattr(mod, kind)[int]
    assert alias.__origin__ is getattr(mod, kind)


def test_priority_queue_with_uncomparable_items_raises_type_error(mod):
    q = mod.PriorityQueue()
    q.put(1)
    with pytest.raises(TypeError):
        q.put("a")


def test_put_and_get_take_their_arguments_by_keyword(mod, kind):
    q = getattr(mod, kind)(2)
    q.put(item=1, block=True, timeout=1)
    q.put(2, timeout=1.5)
    with pytest.raises(stdqueue.Full):
        q.put(3, block=False)
    assert q.get(block=True, timeout=1) in (1, 2)
    assert q.get(False) in (1, 2)
    with pytest.raises(stdqueue.Empty):
        q.get(timeout=0)
    with pytest.raises(TypeError):
        q.put(1, wait=True)
    with pytest.raises(TypeError):
        q.get(True, 1, 2)
    with pytest.raises(TypeError):
        q.put()


def test_maxsize_can_be_raised_on_a_full_queue(mod, kind):
    q = getattr(mod, kind)(1)
    q.put(1)
    assert q.full()
    q.maxsize = 2
    assert not q.full()
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2


def test_repr_names_the_class_maxsize_and_size():
    q = pqueue.Queue(3)
    q.put("x")
    assert repr(q).startswith("<ptsevent.queue.Queue at 0x")
    assert repr(q).endswith(" maxsize=3 qsize=1>")
    assert "<ptsevent.queue.LifoQueue at " in repr(pqueue.LifoQueue())


def test_a_queue_holding_itself_is_collected(kind):
    import gc
    import weakref

    q = getattr(pqueue, kind)()
    q.put(q) if kind != "PriorityQueue" else q.put((1, [q]))
    q.extra = [q]
    ref = weakref.ref(q)
    del q
    gc.collect()
    assert ref() is None


# --- ptsevent: tasklets ------------------------------------------------------


def test_put_get_without_waiting_create_no_wait_queue():
    q = pqueue.Queue(3)
    for n in range(3):
        q.put(n)
    for n in range(3):
        assert q.get() == n
    q.task_done()
    assert not q._has_waiters


def test_blocked_getters_are_served_in_fifo_order():
    q = pqueue.Queue()
    got = []

    def getter(n):
        got.append((n, q.get()))

    ts = [ptsevent.spawn(getter, n) for n in range(5)]
    ptsevent.sleep(0)
    assert waiting(q._getters) == 5
    for item in "abcde":
        q.put(item)
    ptsevent.joinall(ts)
    assert got == list(zip(range(5), "abcde"))
    assert waiting(q._getters) == 0


def test_blocked_putters_are_served_in_fifo_order():
    q = pqueue.Queue(1)
    q.put("first")

    ts = [ptsevent.spawn(q.put, n) for n in range(4)]
    ptsevent.sleep(0)
    assert waiting(q._putters) == 4
    got = []
    for _ in range(5):
        got.append(q.get())
        run_ready()
    ptsevent.joinall(ts)
    assert got == ["first", 0, 1, 2, 3]
    assert waiting(q._putters) == 0


def test_put_reserves_the_item_for_the_waiting_getter():
    q = pqueue.Queue()
    t = ptsevent.spawn(q.get)
    ptsevent.sleep(0)
    q.put("for t")
    # t has not run yet, but the item is its own.
    with pytest.raises(stdqueue.Empty):
        q.get_nowait()
    assert q.qsize() == 1
    assert t.get() == "for t"


def test_get_reserves_the_free_slot_for_the_waiting_putter():
    q = pqueue.Queue(1)
    q.put(0)
    t = ptsevent.spawn(q.put, 1)
    ptsevent.sleep(0)
    assert q.get() == 0
    with pytest.raises(stdqueue.Full):
        q.put_nowait("barging")
    t.join()
    assert q.get_nowait() == 1


def test_get_in_main_tasklet_waits_while_others_run():
    q = pqueue.Queue()
    ptsevent.spawn_later(0.01, q.put, "late")
    result, elapsed = elapsed_of(q.get)
    assert result == "late"
    assert elapsed >= 0.009


def test_timed_out_getter_leaves_no_waiter_and_no_timer():
    q = pqueue.Queue()
    t = ptsevent.spawn(q.get, True, 0.03)
    ptsevent.sleep(0)
    assert waiting(q._getters) == 1
    t.join()
    assert isinstance(t.exception, stdqueue.Empty)
    assert waiting(q._getters) == 0
    assert ptsevent.hub_stats()["events"] == 0
    q.put(1)
    assert q.get_nowait() == 1


def test_killed_getter_leaves_no_waiter():
    q = pqueue.Queue()
    t = ptsevent.spawn(q.get)
    ptsevent.sleep(0)
    t.kill()
    assert waiting(q._getters) == 0
    q.put(1)
    assert handed(q._getters) == 0
    assert q.get_nowait() == 1


def test_timeout_exception_while_getting_leaves_no_waiter():
    q = pqueue.Queue()
    with pytest.raises(ptsevent.Timeout):
        with ptsevent.Timeout(0.03):
            q.get()
    assert waiting(q._getters) == 0


def test_killing_the_getter_an_item_was_reserved_for_passes_it_to_the_next():
    q = pqueue.Queue()
    a = ptsevent.spawn(q.get)
    b = ptsevent.spawn(q.get)
    ptsevent.sleep(0)
    q.put("item")
    a.kill(block=False)
    assert b.get(timeout=5) == "item"
    assert a.dead
    assert handed(q._getters) == 0
    assert waiting(q._getters) == 0


def test_killing_the_getter_an_item_was_reserved_for_frees_it_when_nobody_waits():
    q = pqueue.Queue()
    a = ptsevent.spawn(q.get)
    ptsevent.sleep(0)
    q.put("item")
    a.kill(block=False)
    a.join()
    assert handed(q._getters) == 0
    assert q.get_nowait() == "item", "the reserved item was lost"


def test_killing_a_putter_given_a_slot_passes_the_slot_on_or_frees_it():
    q = pqueue.Queue(1)
    q.put(0)
    a = ptsevent.spawn(q.put, "a")
    b = ptsevent.spawn(q.put, "b")
    ptsevent.sleep(0)
    q.get()
    a.kill(block=False)
    b.join()
    assert list(q.queue) == ["b"]
    assert handed(q._putters) == 0
    # alone this time
    c = ptsevent.spawn(q.put, "c")
    ptsevent.sleep(0)
    q.get()
    c.kill(block=False)
    c.join()
    assert handed(q._putters) == 0
    q.put_nowait("free slot")
    assert list(q.queue) == ["free slot"]


def test_killed_putter_leaves_no_waiter_and_no_item():
    q = pqueue.Queue(1)
    q.put(0)
    t = ptsevent.spawn(q.put, 1)
    ptsevent.sleep(0)
    t.kill()
    assert waiting(q._putters) == 0
    assert list(q.queue) == [0]
    assert q.unfinished_tasks == 1


def test_join_wakes_every_joiner_and_kill_leaves_no_waiter():
    q = pqueue.Queue()
    q.put(1)
    joiners = [ptsevent.spawn(q.join) for _ in range(3)]
    killed = ptsevent.spawn(q.join)
    ptsevent.sleep(0)
    assert waiting(q._joiners) == 4
    killed.kill()
    assert waiting(q._joiners) == 3
    q.get()
    ptsevent.sleep(0)
    assert not any(t.dead for t in joiners)
    q.task_done()
    ptsevent.joinall(joiners)
    assert waiting(q._joiners) == 0


def test_join_keeps_waiting_if_new_items_arrive_before_it_runs():
    q = pqueue.Queue()
    q.put(1)
    t = ptsevent.spawn(q.join)
    ptsevent.sleep(0)
    q.get()
    q.task_done()
    q.put(2)  # before the joiner runs
    run_ready()
    assert not t.dead
    q.get()
    q.task_done()
    t.join(5)
    assert t.dead


def test_put_nowait_from_another_os_thread_wakes_the_getter():
    q = pqueue.Queue()
    t = ptsevent.spawn(q.get, True, 5)
    ptsevent.sleep(0)
    th = threading.Thread(target=q.put_nowait, args=("from thread",))
    th.start()
    th.join()
    assert t.get(timeout=5) == "from thread"
    assert q.qsize() == 0
    assert handed(q._getters) == 0


def test_items_from_a_producer_thread_arrive_in_order_to_several_getters():
    q = pqueue.Queue()
    n_items = 500
    got = []

    def consumer():
        while True:
            item = q.get(timeout=5)
            if item is None:
                return
            got.append(item)

    consumers = [ptsevent.spawn(consumer) for _ in range(3)]
    ptsevent.sleep(0)

    def producer():
        for n in range(n_items):
            q.put_nowait(n)
            if n % 50 == 0:
                time.sleep(0.001)
        for _ in consumers:
            q.put_nowait(None)

    th = threading.Thread(target=producer)
    th.start()
    assert len(ptsevent.joinall(consumers, timeout=10)) == 3
    th.join()
    assert got == list(range(n_items))
    assert q.qsize() == 0
    assert handed(q._getters) == 0
    assert waiting(q._getters) == 0


def test_get_in_main_tasklet_with_timeout_receives_from_thread():
    q = pqueue.Queue()

    def producer():
        time.sleep(0.02)
        q.put("x")

    th = threading.Thread(target=producer)
    th.start()
    assert q.get(timeout=5) == "x"
    th.join()


def test_task_done_from_another_os_thread_wakes_the_joiner():
    q = pqueue.Queue()
    q.put(1)
    t = ptsevent.spawn(q.join)
    ptsevent.sleep(0)

    def worker():
        q.get_nowait()
        q.task_done()

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    t.join(5)
    assert t.dead


def test_get_nowait_from_another_os_thread_wakes_a_blocked_putter():
    q = pqueue.Queue(1)
    q.put(0)
    t = ptsevent.spawn(q.put, 1, True, 5)
    ptsevent.sleep(0)
    th = threading.Thread(target=q.get_nowait)
    th.start()
    th.join()
    t.get(timeout=5)
    assert list(q.queue) == [1]


def test_priority_queue_reserved_getter_takes_the_lowest_item():
    q = pqueue.PriorityQueue()
    t = ptsevent.spawn(q.get)
    ptsevent.sleep(0)
    q.put(5)
    q.put(1)
    assert t.get() == 1
    assert q.get_nowait() == 5


def test_nan_timeout_raises_value_error_instead_of_spinning():
    # The standard queue busy-loops forever on a NaN timeout.
    q = pqueue.Queue()
    with pytest.raises(ValueError):
        q.get(timeout=math.nan)


def test_clearing_the_queue_under_mutex_leaves_a_reserved_getter_waiting(mod):
    q = mod.Queue()
    result = background(mod, q.get, True, 5)
    pause(mod, 0.02)
    with q.mutex:
        q.put_nowait("x") if mod is pqueue else q.queue.append("x")
        q.queue.clear()
    pause(mod, 0.02)
    q.put("y")
    assert result() == "y"


def test_reserved_getter_whose_item_vanished_times_out_with_empty():
    q = pqueue.Queue()
    t = ptsevent.spawn(q.get, True, 0.05)
    ptsevent.sleep(0)
    q.put("x")
    q.queue.clear()  # behind the queue's back, before t runs
    start = time.monotonic()
    t.join()
    assert isinstance(t.exception, stdqueue.Empty)
    assert time.monotonic() - start < 1.0
    assert handed(q._getters) == 0

"""patch_queue: the queue module's classes wait cooperatively, keep the
attributes code relies on, and can be shared with real OS threads as the
README states. Each test runs in an interpreter of its own."""

import pytest

from _patched import run_json

PATCH = """
import json, time, warnings
warnings.simplefilter("ignore")
import ptsevent.patch as P
P.patch_all()
import queue, threading, ptsevent
"""

ONLY_QUEUE = """
import json, time, warnings
warnings.simplefilter("ignore")
import ptsevent.patch as P
P.patch_all(thread=False)
import queue, threading, ptsevent
"""


@pytest.mark.parametrize("prelude", [PATCH, ONLY_QUEUE],
                         ids=["patch_all", "thread=False"])
def test_queues_wait_cooperatively_with_their_attributes(prelude):
    out = run_json(prelude + """
class Mine(queue.Queue):  # a subclass made after patching
    pass
attrs = {}
for cls in (queue.Queue, queue.LifoQueue, queue.PriorityQueue, Mine):
    q = cls(2)
    attrs[cls.__name__] = [type(q.mutex).__module__,
                           type(q.not_empty).__name__,
                           q.not_full._lock is q.mutex,
                           q.all_tasks_done._lock is q.mutex,
                           q.unfinished_tasks, type(q.queue).__name__]
# A getter that times out while another tasklet keeps running.
q = queue.Queue()
ticks = []
def ticker():
    for _ in range(5):
        ticks.append(1); time.sleep(0.02)
g = ptsevent.spawn(ticker)
t0 = time.monotonic()
try:
    q.get(timeout=0.2)
    timed_out = False
except queue.Empty:
    timed_out = True
waited = time.monotonic() - t0
g.join()
# Producer/consumer across tasklets, bounded, with join()/task_done().
q = queue.Queue(maxsize=3)
got = []
def consumer():
    while True:
        item = q.get()
        got.append(item)
        q.task_done()
ptsevent.spawn(consumer)
for i in range(20):
    q.put(i)
q.join()
lifo = queue.LifoQueue(); [lifo.put(i) for i in range(3)]
prio = queue.PriorityQueue(); [prio.put(i) for i in (3, 1, 2)]
# The mutex and conditions as code uses them directly.
with q.mutex:
    q.queue.clear()
with q.not_empty:
    q.not_empty.notify_all()
sq = queue.SimpleQueue()
ptsevent.spawn_later(0.05, sq.put, "late")
t1 = time.monotonic()
simple = [sq.get(timeout=2), time.monotonic() - t1, type(sq).__module__,
          isinstance(sq, queue.SimpleQueue)]
print(json.dumps({"attrs": attrs, "timed_out": timed_out, "waited": waited,
                  "ticks": len(ticks), "got": got,
                  "lifo": [lifo.get() for _ in range(3)],
                  "prio": [prio.get() for _ in range(3)],
                  "simple": simple, "hint": str(queue.SimpleQueue[int])}))
""")
    for name, (mutex_mod, cond, nf, atd, unfinished, _storage) in out["attrs"].items():
        assert mutex_mod.startswith("ptsevent") and cond == "Condition", name
        assert nf is True and atd is True and unfinished == 0
    assert out["attrs"]["Queue"][5] == "deque"
    assert out["attrs"]["PriorityQueue"][5] == "list"
    assert out["timed_out"] is True and 0.18 < out["waited"] < 0.6
    assert out["ticks"] == 5
    assert out["got"] == list(range(20))
    assert out["lifo"] == [2, 1, 0] and out["prio"] == [1, 2, 3]
    value, took, module, isinst = out["simple"]
    assert value == "late" and took < 1 and module == "queue" and isinst
    assert out["hint"] == "queue.SimpleQueue[int]"


def test_queue_classes_bound_before_patching_follow():
    # urllib3's ConnectionPool.QueueCls = queue.LifoQueue, bound at import:
    # the class is changed in place, so the pool's queue is cooperative.
    out = run_json("""
import json, queue, time, warnings
class Pool:
    QueueCls = queue.LifoQueue
class MyQueue(queue.Queue):
    pass
warnings.simplefilter("ignore")
import ptsevent.patch as P
P.patch_all()
import ptsevent
res = {}
for cls in (Pool.QueueCls, MyQueue):
    q = cls()
    ptsevent.spawn_later(0.05, q.put, "x")
    t0 = time.monotonic()
    res[cls.__name__] = [q.get(timeout=2), time.monotonic() - t0,
                         type(q.mutex).__module__]
print(json.dumps(res))
""")
    for name, (value, took, mod) in out.items():
        assert value == "x" and took < 1 and mod.startswith("ptsevent"), name


def test_a_real_os_thread_shares_a_patched_queue_as_documented():
    # What the README states: an OS thread may put into a patched queue
    # (a tasklet blocked in get() wakes), take without blocking, and block
    # in get() itself while no tasklet waits on the same queue; if tasklets
    # of another thread already wait there, its blocking get() raises
    # RuntimeError instead of waiting.
    out = run_json(PATCH + """
res = {}
for cls in (queue.Queue, queue.SimpleQueue):
    q = cls()
    def produce():
        for i in range(200):
            q.put(i)
    ptsevent.spawn(ptsevent.run_in_thread, produce)
    got = [q.get(timeout=5) for _ in range(200)]
    q.put("n")
    nowait = ptsevent.run_in_thread(q.get_nowait)
    ptsevent.spawn_later(0.05, q.put, "from a tasklet")
    blocking = ptsevent.run_in_thread(q.get, timeout=2)
    res[cls.__name__] = [got == list(range(200)), nowait, blocking]
# Tasklets of the main thread wait on q; an OS thread's blocking get().
both = []
for cls in (queue.Queue, queue.SimpleQueue):
    q = cls()
    waiter = ptsevent.spawn(q.get, timeout=1)
    ptsevent.sleep(0.01)
    try:
        ptsevent.run_in_thread(q.get, timeout=0.5)
        both.append("returned")
    except RuntimeError as e:
        both.append("RuntimeError")
    q.put("for the tasklet")
    waiter.join()
    both.append(waiter.value)
print(json.dumps({"res": res, "both": both}))
""")
    for name, (ok, nowait, blocking) in out["res"].items():
        assert ok is True and nowait == "n" and blocking == "from a tasklet", name
    assert out["both"] == ["RuntimeError", "for the tasklet"] * 2

"""Worker greenlets keep their Python frames in small root chunks (py/datastack.h)."""

import sys
import threading

import pytest

import ptsevent
from ptsevent import _core

pytestmark = pytest.mark.skipif(
    not _core._datastack_stats()["enabled"],
    reason="small data stacks are enabled on CPython 3.11 only")


def _spawn_many(n, fn, *args):
    tasklets = [ptsevent.spawn(fn, *args) for _ in range(n)]
    ptsevent.sleep(0)
    return tasklets


def test_suspended_workers_use_small_root_chunks():
    before = _core._datastack_stats()
    gate = ptsevent.Event()

    def waiter():
        gate.wait()
        return sys._getframe().f_code.co_name

    tasklets = _spawn_many(300, waiter)
    during = _core._datastack_stats()
    # one root chunk per worker greenlet (more workers than the pool keeps)
    assert during["roots_in_use"] >= before["roots_in_use"] + 300 - 256
    gate.set()
    assert [t.get() for t in tasklets] == ["waiter"] * 300


def test_deep_calls_spill_into_ordinary_chunks_and_come_back():
    def depth(n):
        return 0 if n == 0 else 1 + depth(n - 1)

    def job(n):
        ptsevent.sleep(0)
        r = depth(n)  # far deeper than a root chunk holds
        ptsevent.sleep(0)
        return r + depth(5)

    tasklets = [ptsevent.spawn(job, n) for n in (10, 100, 500, 3)]
    assert [t.get() for t in tasklets] == [15, 105, 505, 8]


def test_frames_outlive_their_chunk_through_frame_objects():
    def job():
        frame = sys._getframe()
        local = "kept"  # noqa: F841
        ptsevent.sleep(0)
        return frame

    frames = [ptsevent.spawn(job) for _ in range(20)]
    frames = [t.get() for t in frames]
    # the worker greenlets ran other jobs since: the frames were copied out
    _spawn_many(20, ptsevent.sleep, 0)
    ptsevent.sleep(0)
    assert all(f.f_locals["local"] == "kept" for f in frames)


def test_killed_and_unfinished_workers_give_their_chunks_back():
    base = _core._datastack_stats()["roots_in_use"]
    gate = ptsevent.Event()
    tasklets = _spawn_many(400, gate.wait)
    ptsevent.killall(tasklets)
    assert all(t.dead for t in tasklets)
    del tasklets
    # at most the pool's worth stays in use
    assert _core._datastack_stats()["roots_in_use"] <= base + 256


def test_workers_in_another_thread():
    out = []

    def run():
        def job(n):
            ptsevent.sleep(0.001)
            return sum(range(n))
        out.extend(t.get() for t in [ptsevent.spawn(job, n) for n in range(50)])

    th = threading.Thread(target=run)
    th.start()
    th.join()
    assert out == [sum(range(n)) for n in range(50)]

"""Context-switch benchmarks: ptsevent against gevent, uvloop, asyncio, greenlet.

Workloads (see bench/README.md):

  sleep0  round-robin sleep(0) over 1000 tasklets while a 10 ms timer keeps
          firing, so that the loop has to poll for real between rounds;
          plain greenlet instead switches two greenlets back and forth
          (the floor any greenlet-based library pays per switch);
  spawn   spawn 200,000 tasklets that do nothing, then join them all;
  timers  10,000 tasklets each sleeping 1 ms 20 times.

Run with no arguments to measure every implementation, each in its own
pinned subprocess, and print one table per workload:

    python bench/switch.py [--quick] [--repeat N] [--impl a,b] [--workload w]

One run of one implementation, printed as JSON:

    python bench/switch.py --impl gevent --workload sleep0 --json
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

IMPLS = ("ptsevent", "gevent", "uvloop", "asyncio", "greenlet")

perf_counter = time.perf_counter

# How often the timer that stays live during sleep0 fires.
TICK = 0.01


# --------------------------------------------------------------------------
# Helpers


def _calibrate(run, target, start):
    """Choose a loop count so that ``run(count)`` takes about ``target`` s.

    ``run(count) -> seconds``.  The calibration runs double as warm-up.
    """
    count = start
    while True:
        seconds = run(count)
        if seconds >= 0.05:
            break
        count *= 4
    return max(1, int(count * target / seconds))


def _asyncio_runner(impl):
    import asyncio

    if impl == "uvloop":
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return asyncio.Runner()


def _loop_name(loop):
    cls = type(loop)
    return f"{cls.__module__}.{cls.__qualname__}"


# --------------------------------------------------------------------------
# ptsevent and gevent share the same code: spawn, sleep, joinall, kill have
# the same signatures and meaning in both.


def _hub_sleep0(impl, p):
    lib = _common.green_module(impl)
    sleep, spawn, joinall = lib.sleep, lib.spawn, lib.joinall
    ntasks = p["tasklets"]
    ticks = [0]

    def ticker():
        while True:
            sleep(TICK)
            ticks[0] += 1

    def worker(k):
        for _ in range(k):
            sleep(0)

    def run(k):
        tick = spawn(ticker)
        ticks[0] = 0
        t0 = perf_counter()
        workers = [spawn(worker, k) for _ in range(ntasks)]
        joinall(workers)
        seconds = perf_counter() - t0
        seen = ticks[0]
        tick.kill()
        _common.check_tasklets(workers)
        return seconds, seen

    k = p.get("k") or _calibrate(lambda k: run(k)[0], p["target"], 4)
    seconds, seen = run(k)
    return {
        "ops": ntasks * k,
        "seconds": seconds,
        "extra": {"k": k, "ticks_per_s": seen / seconds},
    }


def _hub_spawn(impl, p):
    lib = _common.green_module(impl)
    spawn, joinall = lib.spawn, lib.joinall
    n = p["tasklets"]

    def f():
        pass

    def run(n):
        t0 = perf_counter()
        tasklets = [spawn(f) for _ in range(n)]
        joinall(tasklets)
        seconds = perf_counter() - t0
        _common.check_tasklets(tasklets)
        return seconds

    run(max(1, n // 10))  # warm-up
    return {"ops": n, "seconds": run(n)}


def _hub_timers(impl, p):
    lib = _common.green_module(impl)
    sleep, spawn, joinall = lib.sleep, lib.spawn, lib.joinall
    loops, delay = p["loops"], p["delay"]

    def worker():
        for _ in range(loops):
            sleep(delay)

    def run(n):
        t0 = perf_counter()
        tasklets = [spawn(worker) for _ in range(n)]
        joinall(tasklets)
        seconds = perf_counter() - t0
        _common.check_tasklets(tasklets)
        return seconds

    run(max(1, p["tasklets"] // 10))  # warm-up
    n = p["tasklets"]
    return {"ops": n * loops, "seconds": run(n)}


# --------------------------------------------------------------------------
# asyncio, with its default loop or with uvloop.


def _aio_sleep0(impl, p):
    import asyncio

    sleep = asyncio.sleep
    ntasks = p["tasklets"]

    async def worker(k):
        for _ in range(k):
            await sleep(0)

    async def run(k):
        loop = asyncio.get_running_loop()
        ticks = 0
        handle = None

        def tick():
            nonlocal ticks, handle
            ticks += 1
            handle = loop.call_later(TICK, tick)

        handle = loop.call_later(TICK, tick)
        t0 = perf_counter()
        tasks = [asyncio.create_task(worker(k)) for _ in range(ntasks)]
        await asyncio.gather(*tasks)
        seconds = perf_counter() - t0
        handle.cancel()
        return seconds, ticks, _loop_name(loop)

    with _asyncio_runner(impl) as runner:
        k = p.get("k") or _calibrate(lambda k: runner.run(run(k))[0], p["target"], 4)
        seconds, ticks, loop_name = runner.run(run(k))
    return {
        "ops": ntasks * k,
        "seconds": seconds,
        "extra": {"k": k, "ticks_per_s": ticks / seconds, "loop": loop_name},
    }


def _aio_gather(impl, n, make):
    """Create n tasks of make() and gather them (after a warm-up of n/10):
    (seconds, loop class name)."""
    import asyncio

    async def run(count):
        create_task = asyncio.get_running_loop().create_task
        t0 = perf_counter()
        tasks = [create_task(make()) for _ in range(count)]
        await asyncio.gather(*tasks)
        return perf_counter() - t0, _loop_name(asyncio.get_running_loop())

    with _asyncio_runner(impl) as runner:
        runner.run(run(max(1, n // 10)))  # warm-up
        return runner.run(run(n))


def _aio_spawn(impl, p):
    async def f():
        pass

    n = p["tasklets"]
    seconds, loop_name = _aio_gather(impl, n, f)
    return {"ops": n, "seconds": seconds, "extra": {"loop": loop_name}}


def _aio_timers(impl, p):
    import asyncio

    sleep = asyncio.sleep
    loops, delay = p["loops"], p["delay"]

    async def worker():
        for _ in range(loops):
            await sleep(delay)

    n = p["tasklets"]
    seconds, loop_name = _aio_gather(impl, n, worker)
    return {"ops": n * loops, "seconds": seconds, "extra": {"loop": loop_name}}


# --------------------------------------------------------------------------
# Plain greenlet: no loop at all, only the switches.


def _greenlet_sleep0(p):
    from greenlet import greenlet, getcurrent

    def ping_pong(n):
        def partner():
            back = getcurrent().parent.switch
            while True:
                back()

        g = greenlet(partner)
        switch = g.switch
        t0 = perf_counter()
        for _ in range(n):
            switch()  # there and back: two one-way switches
        seconds = perf_counter() - t0
        g.throw()  # GreenletExit ends the partner
        return seconds

    n = p.get("k") or _calibrate(ping_pong, p["target"], 10_000)
    seconds = ping_pong(n)
    return {"ops": 2 * n, "seconds": seconds, "extra": {"k": n}}


def _greenlet_spawn(p):
    from greenlet import greenlet

    def f():
        pass

    def run(n):
        t0 = perf_counter()
        glets = [greenlet(f) for _ in range(n)]
        for g in glets:
            g.switch()
        seconds = perf_counter() - t0
        if not all(g.dead for g in glets):
            raise RuntimeError("a greenlet did not run to completion")
        return seconds

    n = p["tasklets"]
    run(max(1, n // 10))  # warm-up
    return {"ops": n, "seconds": run(n)}


# --------------------------------------------------------------------------


def _per_impl(hub_fn, aio_fn, greenlet_fn=None):
    runners = {
        "ptsevent": lambda p: hub_fn("ptsevent", p),
        "gevent": lambda p: hub_fn("gevent", p),
        "uvloop": lambda p: aio_fn("uvloop", p),
        "asyncio": lambda p: aio_fn("asyncio", p),
    }
    if greenlet_fn is not None:
        runners["greenlet"] = greenlet_fn
    return runners


WORKLOADS = [
    _common.Workload(
        name="sleep0",
        title=(
            "round-robin sleep(0) over {tasklets:,} tasklets, each looping K "
            "times (run ~{target:g} s), a %g ms repeating timer live; "
            "greenlet: two greenlets switching back and forth" % (TICK * 1000)
        ),
        unit="sleep(0) calls (greenlet: one-way switches)",
        runners=_per_impl(_hub_sleep0, _aio_sleep0, _greenlet_sleep0),
        params={"tasklets": 1000, "target": 1.0},
        quick_params={"tasklets": 1000, "target": 0.25},
        extra_column=("timer ticks/s", "ticks_per_s", lambda v: f"{v:.0f}"),
    ),
    _common.Workload(
        name="spawn",
        title="spawn {tasklets:,} tasklets that return at once, then join them all",
        unit="tasklets spawned and joined",
        runners=_per_impl(_hub_spawn, _aio_spawn, _greenlet_spawn),
        params={"tasklets": 200_000},
        quick_params={"tasklets": 50_000},
    ),
    _common.Workload(
        name="timers",
        title="{tasklets:,} tasklets each looping {loops} times over sleep({delay:g})",
        unit="completed sleeps",
        runners=_per_impl(_hub_timers, _aio_timers),
        params={"tasklets": 10_000, "loops": 20, "delay": 0.001},
        quick_params={"tasklets": 2_000, "loops": 20, "delay": 0.001},
    ),
]


if __name__ == "__main__":
    sys.exit(
        _common.main(
            __file__,
            "Context-switch benchmarks: ptsevent against gevent, uvloop, asyncio and greenlet.",
            WORKLOADS,
            IMPLS,
        )
    )

"""Channel and coordination benchmarks: ptsevent against gevent and greenlet.

Workloads (see bench/README.md):

  pingpong  two tasklets passing a value back and forth over two Stackless
            channels (ptsevent.stackless.channel); gevent: gevent.queue.Channel,
            its rendezvous channel; greenlet: two plain greenlets switching
            back and forth, the floor. Rate: round trips (two transfers, or
            two greenlet switches, each);
  queue     1000 producers and 1000 consumers on one bounded Queue
            (ptsevent.queue.Queue / gevent.queue.Queue). Rate: items put
            and got;
  event     10,000 tasklets waiting on one Event, set once per round, all
            woken; the last one to wake tells the main tasklet (a second
            Event). Rate: wake-ups;
  lock      100 tasklets taking one Lock in turn, each sleep(0)-ing while it
            holds it (ptsevent.locks.Lock / gevent's threading.Lock,
            gevent.thread.LockType). Rate: acquisitions;
  rlock     the same with an RLock (ptsevent.locks.RLock /
            gevent.lock.RLock);
  semaphore the same with a Semaphore(1) (ptsevent.locks.Semaphore /
            gevent.lock.Semaphore).

Run with no arguments to measure every implementation, each in its own
pinned subprocess, print one table per workload and check the targets:

    python bench/channels.py [--quick] [--repeat N] [--impl a,b] [--workload w]

One run of one implementation, printed as JSON:

    python bench/channels.py --impl gevent --workload pingpong --json

A workload whose ptsevent module (ptsevent.queue, .event, .locks) is not
importable yet is reported as missing for that workload only.
"""

import argparse
import datetime
import importlib
import os
import platform
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

IMPLS = ("ptsevent", "gevent", "greenlet")

perf_counter = time.perf_counter

# The module each (workload, implementation) needs beyond the library itself.
REQUIRES = {
    "pingpong": {"ptsevent": "ptsevent.stackless", "gevent": "gevent.queue"},
    "queue": {"ptsevent": "ptsevent.queue", "gevent": "gevent.queue"},
    "event": {"ptsevent": "ptsevent.event", "gevent": "gevent.event"},
    "lock": {"ptsevent": "ptsevent.locks", "gevent": "gevent.thread"},
    "rlock": {"ptsevent": "ptsevent.locks", "gevent": "gevent.lock"},
    "semaphore": {"ptsevent": "ptsevent.locks", "gevent": "gevent.lock"},
}


# --------------------------------------------------------------------------
# Helpers


def _calibrate(run, target, start):
    """A count for which ``run(count)`` (-> seconds) takes about ``target`` s.

    The calibration runs double as warm-up."""
    count = start
    while True:
        seconds = run(count)
        if seconds >= 0.05:
            break
        count *= 4
    return max(1, int(count * target / seconds))


# --------------------------------------------------------------------------
# pingpong


def _hub_pingpong(impl, p):
    lib = _common.green_module(impl)
    spawn, joinall = lib.spawn, lib.joinall
    if impl == "ptsevent":
        from ptsevent.stackless import channel

        def pair():
            a, b = channel(), channel()
            return a.send, a.receive, b.send, b.receive

    else:
        from gevent.queue import Channel

        def pair():
            a, b = Channel(), Channel()
            return a.put, a.get, b.put, b.get

    def run(n):
        a_send, a_receive, b_send, b_receive = pair()

        def ping():
            for i in range(n):
                a_send(i)
                if b_receive() != i:
                    raise RuntimeError("pong sent back a wrong value")

        def pong():
            for _ in range(n):
                b_send(a_receive())

        t0 = perf_counter()
        tasklets = [spawn(ping), spawn(pong)]
        joinall(tasklets)
        seconds = perf_counter() - t0
        _common.check_tasklets(tasklets)
        return seconds

    n = p.get("n") or _calibrate(run, p["target"], 1000)
    return {"ops": n, "seconds": run(n), "extra": {"n": n}}


def _greenlet_pingpong(p):
    from greenlet import getcurrent, greenlet

    def run(n):
        def partner():
            back = getcurrent().parent.switch
            while True:
                back()

        g = greenlet(partner)
        switch = g.switch
        t0 = perf_counter()
        for _ in range(n):
            switch()  # there and back: one round trip, two switches
        seconds = perf_counter() - t0
        g.throw()  # GreenletExit ends the partner
        return seconds

    n = p.get("n") or _calibrate(run, p["target"], 10_000)
    return {"ops": n, "seconds": run(n), "extra": {"n": n}}


# --------------------------------------------------------------------------
# queue


def _hub_queue(impl, p):
    lib = _common.green_module(impl)
    spawn, joinall = lib.spawn, lib.joinall
    if impl == "ptsevent":
        from ptsevent.queue import Queue
    else:
        from gevent.queue import Queue
    pairs, maxsize = p["pairs"], p["maxsize"]

    def run(k):
        q = Queue(maxsize)
        got = [0]

        def producer():
            put = q.put
            for i in range(k):
                put(i)

        def consumer():
            get = q.get
            for _ in range(k):
                get()
            got[0] += k

        t0 = perf_counter()
        tasklets = [spawn(producer) for _ in range(pairs)]
        tasklets += [spawn(consumer) for _ in range(pairs)]
        joinall(tasklets)
        seconds = perf_counter() - t0
        _common.check_tasklets(tasklets)
        if got[0] != pairs * k or q.qsize():
            raise RuntimeError(f"{got[0]} items got of {pairs * k}, {q.qsize()} left")
        return seconds

    k = p.get("items") or _calibrate(run, p["target"], 2)
    return {"ops": pairs * k, "seconds": run(k), "extra": {"items": k}}


# --------------------------------------------------------------------------
# event


def _hub_event(impl, p):
    lib = _common.green_module(impl)
    spawn, joinall, sleep = lib.spawn, lib.joinall, lib.sleep
    if impl == "ptsevent":
        from ptsevent.event import Event
    else:
        from gevent.event import Event
    waiters = p["waiters"]

    def run(rounds):
        events = [Event() for _ in range(rounds)]
        done = [Event() for _ in range(rounds)]
        state = {"ready": 0, "woken": 0}

        def waiter():
            state["ready"] += 1
            for ev, finished in zip(events, done):
                ev.wait()
                state["woken"] += 1
                if state["woken"] == waiters:
                    state["woken"] = 0
                    finished.set()

        tasklets = [spawn(waiter) for _ in range(waiters)]
        while state["ready"] < waiters:
            sleep(0)  # every waiter now waits on events[0]
        t0 = perf_counter()
        for ev, finished in zip(events, done):
            ev.set()
            finished.wait()
        seconds = perf_counter() - t0
        joinall(tasklets)
        _common.check_tasklets(tasklets)
        return seconds

    run(max(1, p["rounds"] // 10))  # warm-up
    rounds = p["rounds"]
    return {"ops": waiters * rounds, "seconds": run(rounds), "extra": {"rounds": rounds}}


# --------------------------------------------------------------------------
# lock


def _lock_type(impl, kind):
    if impl == "ptsevent":
        from ptsevent import locks
        return getattr(locks, kind)
    if kind == "Lock":
        from gevent.thread import LockType
        return LockType
    from gevent import lock
    return getattr(lock, kind)


def _hub_lock(impl, p, kind="Lock"):
    lib = _common.green_module(impl)
    spawn, joinall, sleep = lib.spawn, lib.joinall, lib.sleep
    Lock = _lock_type(impl, kind)
    contenders = p["tasklets"]

    def run(k):
        lock = Lock()
        held = [0]

        def worker():
            for _ in range(k):
                with lock:
                    held[0] += 1
                    sleep(0)  # the others queue up on the lock meanwhile
                    held[0] -= 1
                    if held[0]:
                        raise RuntimeError("two holders at once")

        t0 = perf_counter()
        tasklets = [spawn(worker) for _ in range(contenders)]
        joinall(tasklets)
        seconds = perf_counter() - t0
        _common.check_tasklets(tasklets)
        return seconds

    k = p.get("loops") or _calibrate(run, p["target"], 4)
    return {"ops": contenders * k, "seconds": run(k), "extra": {"loops": k}}


# --------------------------------------------------------------------------


def _both(fn):
    return {"ptsevent": lambda p: fn("ptsevent", p), "gevent": lambda p: fn("gevent", p)}


WORKLOADS = [
    _common.Workload(
        name="pingpong",
        title=(
            "two tasklets, a value sent back and forth over two channels N times "
            "(run ~{target:g} s); gevent: gevent.queue.Channel; greenlet: two "
            "greenlets switching back and forth"
        ),
        unit="round trips (2 channel transfers; greenlet: 2 switches)",
        runners={**_both(_hub_pingpong), "greenlet": _greenlet_pingpong},
        params={"target": 1.0},
        quick_params={"target": 0.25},
    ),
    _common.Workload(
        name="queue",
        title=(
            "{pairs:,} producers each putting K items into one Queue(maxsize="
            "{maxsize}) and {pairs:,} consumers each getting K (run ~{target:g} s)"
        ),
        unit="items put and got",
        runners=_both(_hub_queue),
        params={"pairs": 1000, "maxsize": 100, "target": 1.0},
        quick_params={"pairs": 1000, "maxsize": 100, "target": 0.25},
    ),
    _common.Workload(
        name="event",
        title=(
            "{waiters:,} tasklets waiting on one Event, set once per round, "
            "{rounds} rounds; the last one woken sets a second Event for main"
        ),
        unit="wake-ups",
        runners=_both(_hub_event),
        params={"waiters": 10_000, "rounds": 20},
        quick_params={"waiters": 10_000, "rounds": 5},
    ),
    _common.Workload(
        name="lock",
        title=(
            "{tasklets} tasklets each taking one Lock K times, sleep(0) while "
            "holding it (run ~{target:g} s)"
        ),
        unit="lock acquisitions",
        runners=_both(_hub_lock),
        params={"tasklets": 100, "target": 1.0},
        quick_params={"tasklets": 100, "target": 0.25},
    ),
    _common.Workload(
        name="rlock",
        title=(
            "{tasklets} tasklets each taking one RLock K times, sleep(0) while "
            "holding it (run ~{target:g} s)"
        ),
        unit="lock acquisitions",
        runners=_both(lambda impl, p: _hub_lock(impl, p, "RLock")),
        params={"tasklets": 100, "target": 1.0},
        quick_params={"tasklets": 100, "target": 0.25},
    ),
    _common.Workload(
        name="semaphore",
        title=(
            "{tasklets} tasklets each taking one Semaphore(1) K times, "
            "sleep(0) while holding it (run ~{target:g} s)"
        ),
        unit="acquisitions",
        runners=_both(lambda impl, p: _hub_lock(impl, p, "Semaphore")),
        params={"tasklets": 100, "target": 1.0},
        quick_params={"tasklets": 100, "target": 0.25},
    ),
]

BY_NAME = {w.name: w for w in WORKLOADS}

# (workload, peer, factor): ptsevent's median must be >= factor x the peer's.
TARGETS = [
    ("pingpong", "gevent", 2.0),
    ("pingpong", "greenlet", 0.5),
    ("queue", "gevent", 2.0),
    ("event", "gevent", 2.0),
    ("lock", "gevent", 2.0),
]


# --------------------------------------------------------------------------
# Child mode: one run of one implementation, as _common.run_child, except
# that a module missing for this workload only is reported as missing.


def run_child(workload, impl, params, cpu):
    module = REQUIRES.get(workload.name, {}).get(impl)
    if module and impl in workload.runners:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return {
                "impl": impl,
                "workload": workload.name,
                "status": _common.MISSING,
                "error": f"{module}: {type(exc).__name__}: {exc}",
            }
    return _common.run_child(workload, impl, params, cpu)


# --------------------------------------------------------------------------
# Driver


def drive(workloads, impls, args):
    cpu = None if args.no_pin else (args.cpu if args.cpu is not None else _common.default_cpu())
    if cpu is not None:
        pin_note = f"each run pinned to CPU {cpu} (os.sched_setaffinity)"
    elif args.no_pin:
        pin_note = "runs not pinned (--no-pin)"
    else:
        pin_note = "runs not pinned: os.sched_setaffinity is not available here"
    shown = os.path.relpath(sys.executable)
    if shown.startswith(".."):
        shown = sys.executable
    header = [
        f"command: {shlex.join([shown] + sys.argv)}",
        f"date:    {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"machine: {_common.machine_description()}",
        f"python:  {platform.python_version()} ({sys.executable})",
        f"load:    {_common.load_average()} (1, 5, 15 min) at start",
        f"runs:    {args.repeat} per implementation and workload, each in a fresh "
        f"process; {pin_note}" + ("; --quick sizes" if args.quick else ""),
    ]
    print("\n".join(header), flush=True)

    started = time.monotonic()
    script = os.path.abspath(__file__)
    missing = {}  # (workload, impl) -> why
    all_results = []
    medians = {}
    for workload in workloads:
        params = dict(workload.quick_params if args.quick else workload.params)
        by_impl = {impl: [] for impl in impls}
        for rep in range(args.repeat):
            for impl in impls:
                if impl not in workload.runners:
                    if not by_impl[impl]:
                        by_impl[impl].append({"impl": impl, "status": _common.NOT_APPLICABLE})
                    continue
                if (workload.name, impl) in missing:
                    continue
                print(f"  [{workload.name} {rep + 1}/{args.repeat}] {impl} ...",
                      end="", file=sys.stderr, flush=True)
                r = _common.spawn_child(script, impl, workload.name, params, cpu,
                                        args.timeout, sys.executable)
                if r.get("status") == _common.OK:
                    msg = f" {_common.format_rate(r['rate'])}/s"
                else:
                    msg = f" {r.get('status')}: {r.get('error', '')}"
                print(msg, file=sys.stderr, flush=True)
                if r.get("status") == _common.MISSING:
                    missing[(workload.name, impl)] = r.get("error", "not importable")
                by_impl[impl].append(r)
                all_results.append(r)
        print()
        print("\n".join(_common.format_table(workload, impls, by_impl, params)), flush=True)
        for impl, results in by_impl.items():
            stats = _common.summarize(results)
            if stats:
                medians[(workload.name, impl)] = stats["median"]

    print()
    print("targets (medians):")
    for name, peer, factor in TARGETS:
        if name not in {w.name for w in workloads}:
            continue
        goal = f"{name}: ptsevent >= {factor:g}x {peer}"
        mine = medians.get((name, "ptsevent"))
        theirs = medians.get((name, peer))
        if mine is None or theirs is None:
            why = missing.get((name, "ptsevent")) or missing.get((name, peer))
            if why is None:
                unselected = [i for i in ("ptsevent", peer) if i not in impls]
                why = (f"{', '.join(unselected)} not selected" if unselected
                       else "failed, see the table")
            print(f"  {goal}: not measured ({why})")
            continue
        ok = mine >= factor * theirs
        print(f"  {goal}: ptsevent {_common.format_rate(mine)}/s, {peer} "
              f"{_common.format_rate(theirs)}/s = {mine / theirs:.2f}x  "
              f"{'PASS' if ok else 'FAIL'}")

    print()
    if missing:
        print("missing (not importable with this interpreter):")
        for (name, impl), why in missing.items():
            print(f"  {name} / {impl}: {why}")
    else:
        print("missing: none")
    print(f"total time: {time.monotonic() - started:.0f} s")
    if args.save:
        import json

        os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
        with open(args.save, "w") as f:
            json.dump({"header": header, "results": all_results}, f, indent=1)
        print(f"raw results written to {args.save}")
    return 0


def main():
    parser = argparse.ArgumentParser(
        description="Channel, Queue, Event and Lock benchmarks: ptsevent against "
        "gevent and greenlet."
    )
    parser.add_argument("--impl", help=f"comma-separated subset of: {','.join(IMPLS)}")
    parser.add_argument("--workload", help=f"comma-separated subset of: {','.join(BY_NAME)}")
    parser.add_argument("--repeat", type=int,
                        help="runs per implementation and workload (default 5, 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smaller workloads, 3 runs: a smoke test")
    parser.add_argument("--cpu", type=int, help="CPU to pin each run to (default: the last one)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin runs to a CPU")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds before a run is abandoned (default 120)")
    parser.add_argument("--save", metavar="PATH", help="also write every raw result as JSON to PATH")
    parser.add_argument("--json", action="store_true",
                        help="child mode: run one implementation and workload, print one JSON object")
    parser.add_argument("--params", help=argparse.SUPPRESS)  # driver -> child
    args = parser.parse_args()

    def pick(value, known, what):
        return _common.pick_names(parser, value, known, what)

    impls = pick(args.impl, IMPLS, "implementation")
    names = pick(args.workload, list(BY_NAME), "workload")
    if args.json:
        import json

        if len(impls) != 1 or len(names) != 1:
            parser.error("--json runs exactly one implementation (--impl) and one workload (--workload)")
        w = BY_NAME[names[0]]
        params = dict(w.quick_params if args.quick else w.params)
        if args.params:
            params.update(json.loads(args.params))
        result = run_child(w, impls[0], params, args.cpu)
        print(json.dumps(result), flush=True)
        return 0 if result["status"] in (_common.OK, _common.MISSING, _common.NOT_APPLICABLE) else 1

    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return drive([BY_NAME[n] for n in names], impls, args)


if __name__ == "__main__":
    sys.exit(main())

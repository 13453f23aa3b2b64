"""patch_thread: threading.Thread runs as a tasklet, threading's primitives
wait cooperatively, thread identity is per tasklet. Each test runs in an
interpreter of its own (tests/_patched.py)."""

from _patched import run_json, run_snippet

PATCH = """
import json, time, warnings
warnings.simplefilter("ignore")
import ptsevent.patch as P
P.patch_all()
import threading, _thread, ptsevent
"""


def test_identity_is_per_tasklet_and_the_main_tasklet_is_the_main_thread():
    out = run_json(PATCH + """
os_ident = P.original("_thread", "get_ident")
seen = {}
def body(name):
    time.sleep(0.05)
    cur = threading.current_thread()
    seen[name] = [threading.get_ident(), cur.ident, cur.name,
                  threading.get_native_id(), cur is threading.main_thread()]
ts = [threading.Thread(target=body, args=(f"t{i}",), name=f"t{i}")
      for i in range(3)]
for t in ts:
    t.start()
idents_while_alive = [t.ident for t in ts]
for t in ts:
    t.join()
dummy = {}
def spawned():
    dummy["name"] = threading.current_thread().name
    dummy["ident"] = threading.get_ident()
g = ptsevent.spawn(spawned)
g.join()
ptsevent.sleep(0.01)  # the tasklet's link runs
print(json.dumps({
    "main_is_current": threading.main_thread() is threading.current_thread(),
    "main_ident": [threading.get_ident(), os_ident(),
                   threading.main_thread().ident, _thread.get_ident()],
    "native": threading.get_native_id(),
    "seen": seen, "alive_idents": idents_while_alive,
    "dummy": dummy, "dummy_forgotten": dummy["ident"] not in threading._active,
    "enumerate": len(threading.enumerate()),
}))
""")
    assert out["main_is_current"] is True
    a, b, c, d = out["main_ident"]
    assert a == b == c == d
    idents = set()
    for name, (ident, cur_ident, cur_name, native, is_main) in out["seen"].items():
        assert ident == cur_ident and cur_name == name and is_main is False
        assert native == out["native"]  # a tasklet of the same OS thread
        idents.add(ident)
    assert len(idents) == 3 and a not in idents
    assert sorted(idents) == sorted(out["alive_idents"])
    assert out["dummy"]["name"].startswith("Dummy-")
    assert out["dummy_forgotten"] is True
    assert out["enumerate"] == 1


def test_threads_overlap_their_blocking_calls():
    out = run_json(PATCH + """
def work(i, results):
    time.sleep(0.2)
    results[i] = threading.current_thread().name
results = {}
t0 = time.monotonic()
ts = [threading.Thread(target=work, args=(i, results)) for i in range(100)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({"took": time.monotonic() - t0, "n": len(results),
                  "alive": sum(t.is_alive() for t in ts)}))
""")
    assert out["n"] == 100 and out["alive"] == 0
    assert out["took"] < 1.0, out  # 20 s one after the other


def test_threading_primitives_are_ptsevent_and_cooperative():
    out = run_json(PATCH + """
import ptsevent.locks
kinds = {n: type(getattr(threading, n)()).__module__
         for n in ("Lock", "RLock", "Condition", "Event", "Semaphore",
                   "BoundedSemaphore")}
kinds["_thread.allocate_lock"] = type(_thread.allocate_lock()).__module__
kinds["_thread.RLock"] = type(_thread.RLock()).__module__

# Lock held across a sleep: the waiter waits, another thread still runs.
lock = threading.Lock()
ticks = []
def holder():
    with lock:
        time.sleep(0.2)
def waiter():
    with lock:
        ticks.append("got")
def ticker():
    for _ in range(5):
        ticks.append("tick")
        time.sleep(0.02)
ts = [threading.Thread(target=f) for f in (holder, waiter, ticker)]
for t in ts: t.start()
for t in ts: t.join()

# Condition + Event + Semaphore + Barrier + RLock between threads.
cond = threading.Condition()
box = []
def consumer():
    with cond:
        cond.wait_for(lambda: box, timeout=5)
        box.append("consumed")
c = threading.Thread(target=consumer); c.start()
time.sleep(0.05)
with cond:
    box.append("item"); cond.notify()
c.join()

ev = threading.Event()
woke = []
ws = [threading.Thread(target=lambda: woke.append(ev.wait(5))) for _ in range(5)]
for t in ws: t.start()
time.sleep(0.05); ev.set()
for t in ws: t.join()

sem = threading.BoundedSemaphore(3)
active = [0, 0]
def limited():
    with sem:
        active[0] += 1; active[1] = max(active)
        time.sleep(0.05)
        active[0] -= 1
ls = [threading.Thread(target=limited) for _ in range(10)]
t0 = time.monotonic()
for t in ls: t.start()
for t in ls: t.join()
sem_took = time.monotonic() - t0

barrier = threading.Barrier(5, timeout=5)
passed = []
bs = [threading.Thread(target=lambda: passed.append(barrier.wait())) for _ in range(5)]
for t in bs: t.start()
for t in bs: t.join()

rl = threading.RLock()
def reenter():
    with rl:
        with rl:
            time.sleep(0.01)
rs = [threading.Thread(target=reenter) for _ in range(3)]
for t in rs: t.start()
for t in rs: t.join()

print(json.dumps({"kinds": kinds, "ticks": ticks, "box": box, "woke": woke,
                  "sem_max": active[1], "sem_took": sem_took,
                  "barrier": sorted(passed), "rlock_free": rl.acquire(False)}))
""")
    assert all(m.startswith("ptsevent") for m in out["kinds"].values()), out
    # the ticker ran while the waiter waited for the lock
    assert out["ticks"].index("got") >= 3, out["ticks"]
    assert out["box"] == ["item", "consumed"]
    assert out["woke"] == [True] * 5
    assert out["sem_max"] == 3 and out["sem_took"] < 0.5
    assert out["barrier"] == [0, 1, 2, 3, 4]
    assert out["rlock_free"] is True


def test_local_is_per_thread_and_timer_fires_or_cancels():
    out = run_json(PATCH + """
data = threading.local()
data.v = "main"
seen = []
def body(i):
    data.v = i
    time.sleep(0.02)
    seen.append(data.v == i)
ts = [threading.Thread(target=body, args=(i,)) for i in range(20)]
for t in ts: t.start()
for t in ts: t.join()
fired = []
t0 = time.monotonic()
t1 = threading.Timer(0.1, lambda: fired.append(time.monotonic() - t0))
t2 = threading.Timer(0.1, lambda: fired.append("cancelled one fired"))
t1.start(); t2.start(); t2.cancel()
t1.join(); t2.join()
print(json.dumps({"seen": seen, "main": data.v, "fired": fired,
                  "local_type": type(data).__module__}))
""")
    assert out["seen"] == [True] * 20 and out["main"] == "main"
    assert len(out["fired"]) == 1 and 0.09 < out["fired"][0] < 0.5
    assert out["local_type"] == "ptsevent._local"


def test_exit_joins_non_daemon_threads_and_not_daemon_ones():
    proc = run_snippet(PATCH + """
def late():
    time.sleep(0.3)
    print("non-daemon done", flush=True)
def forever():
    time.sleep(30)
    print("daemon done", flush=True)
threading.Thread(target=late).start()
threading.Thread(target=forever, daemon=True).start()
print("main done", flush=True)
""", timeout=20)
    assert proc.stdout.split() == ["main", "done", "non-daemon", "done"]
    # the daemon thread ends with the interpreter, silently
    assert proc.stderr == ""


def test_a_killed_thread_ends_silently_and_join_returns():
    out = run_json(PATCH + """
import io, sys, contextlib
err = io.StringIO()
def forever():
    time.sleep(30)
with contextlib.redirect_stderr(err):
    t = threading.Thread(target=forever); t.start()
    time.sleep(0.01)
    tasklet = [g for g in ptsevent._core._live_tasklets()
               if id(g) == t.ident][0]
    tasklet.kill()
    t.join(2)
print(json.dumps({"alive": t.is_alive(), "stderr": err.getvalue()}))
""")
    assert out == {"alive": False, "stderr": ""}


def test_uncaught_exception_in_a_thread_goes_to_excepthook():
    out = run_json(PATCH + """
caught = []
threading.excepthook = lambda args: caught.append(
    (args.exc_type.__name__, str(args.exc_value), args.thread.name))
def boom():
    time.sleep(0.01)
    raise ValueError("boom")
t = threading.Thread(target=boom, name="bomber"); t.start(); t.join()
print(json.dumps({"caught": caught, "alive": t.is_alive()}))
""")
    assert out == {"caught": [["ValueError", "boom", "bomber"]], "alive": False}


def test_thread_pool_executor_runs_50_sleeps_at_once():
    out = run_json(PATCH + """
from concurrent.futures import ThreadPoolExecutor
def job(i):
    time.sleep(0.2)
    return i * i
t0 = time.monotonic()
with ThreadPoolExecutor(max_workers=50) as ex:
    results = list(ex.map(job, range(50)))
print(json.dumps({"took": time.monotonic() - t0,
                  "ok": results == [i * i for i in range(50)]}))
""")
    assert out["ok"] is True
    assert out["took"] < 0.6, out  # 10 s in turn


def test_internals_keep_os_threads_and_old_locks_are_not_swapped():
    out = run_json("""
import json, threading, _thread, warnings, os
warnings.simplefilter("ignore")
old_lock = threading.Lock()
old_type = type(old_lock)
import ptsevent.patch as P
P.patch_all()
import ptsevent
def natives():
    main = threading.get_native_id()
    return [ptsevent.run_in_thread(threading.get_native_id) != main,
            ptsevent.run_in_thread(P.original("_thread", "get_ident"))
            != P.original("_thread", "get_ident")()]
before = natives()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, json.dumps(natives()).encode()); os._exit(0)
os.waitpid(pid, 0)
after = json.loads(os.read(r, 100))
print(json.dumps({"before": before, "child": after,
                  "old_kept": type(old_lock) is old_type
                              and type(threading.Lock()) is not old_type,
                  "orig_ident": P.original("_thread", "get_ident")
                                is _thread.get_ident,
                  "call_threadsafe_thread": isinstance(
                      threading.main_thread(), threading.Thread)}))
""")
    assert out["before"] == [True, True]
    assert out["child"] == [True, True]
    assert out["old_kept"] is True
    assert out["orig_ident"] is False


def test_call_threadsafe_with_a_patched_thread_reaches_its_hub():
    out = run_json(PATCH + """
done = threading.Event()
ran = []
def body():
    done.wait(5)
t = threading.Thread(target=body); t.start()
def from_os_thread():
    ptsevent.call_threadsafe(t, lambda: (ran.append(threading.get_native_id()),
                                         done.set()))
ptsevent.run_in_thread(from_os_thread)
t.join(5)
print(json.dumps({"ran": ran, "main": threading.get_native_id(),
                  "alive": t.is_alive()}))
""")
    assert out == {"ran": [out["main"]], "main": out["main"], "alive": False}


def test_stackless_imported_after_patching_keeps_os_thread_ids():
    out = run_json(PATCH + """
from ptsevent import stackless
ids = []
def make():  # in a tasklet: get_ident() is the tasklet's own there
    t = stackless.tasklet(lambda: ids.append(stackless.getcurrent().thread_id))
    ids.append(t.thread_id)
    t()
ptsevent.spawn(make).join()
stackless.run()
print(json.dumps({"ids": ids, "main": threading.main_thread().ident}))
""")
    assert out["ids"] == [out["main"], out["main"]]

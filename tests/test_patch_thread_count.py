"""patch_thread: _thread._count() counts the program's threads (tasklet
threads while they run), not the OS threads of ptsevent's own pool, so
leak checks that compare it before and after some work (CPython's
threading_helper) hold. Each test runs in an interpreter of its own."""

from _patched import run_json


def test_count_follows_tasklet_threads_and_ignores_pool_threads():
    out = run_json("""
import json, warnings
import ptsevent.patch as P
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    P.patch_all()
import _thread, socket, threading, ptsevent
from ptsevent.threadpool import os_threads
start = _thread._count()
socket.getaddrinfo("localhost", 80)       # a lookup in the pool
ptsevent.run_in_thread(sum, [1, 2])
pool = os_threads()
after_pool = _thread._count()
go = threading.Event()
ts = [threading.Thread(target=go.wait) for _ in range(3)]
for t in ts:
    t.start()
running = _thread._count()
go.set()
for t in ts:
    t.join()
print(json.dumps({"start": start, "pool": pool, "after_pool": after_pool,
                  "running": running, "end": _thread._count()}))
""")
    assert out["pool"] >= 1  # the pool did start an OS thread
    assert out["after_pool"] == out["start"]
    assert out["running"] == out["start"] + 3
    assert out["end"] == out["start"]

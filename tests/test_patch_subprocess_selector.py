"""patch_subprocess: communicate()'s selector is poll-based like the
standard one, so it takes any descriptor, and it waits cooperatively.
Each test runs in an interpreter of its own (tests/_patched.py)."""

from _patched import run_json


def test_popen_selector_accepts_a_regular_file_and_waits_cooperatively():
    out = run_json("""
import json, os, selectors, tempfile, time, warnings
import ptsevent.patch as P
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    P.patch_subprocess()
import subprocess, ptsevent
sel = subprocess._PopenSelector()
with tempfile.TemporaryFile() as f:
    sel.register(f, selectors.EVENT_WRITE)   # epoll would refuse (EPERM)
    ready = [key.fileobj is f for key, _ in sel.select(0)]
    sel.unregister(f)
r, w = os.pipe()
sel.register(r, selectors.EVENT_READ)
ticks = []
def ticker():
    for _ in range(5):
        ticks.append(1)
        ptsevent.sleep(0.01)
t = ptsevent.spawn(ticker)
start = time.monotonic()
nothing = sel.select(0.2)
waited = time.monotonic() - start
t.join()
print(json.dumps({"ready": ready, "nothing": nothing,
                  "waited": waited, "ticks": len(ticks)}))
""")
    assert out["ready"] == [True]
    assert out["nothing"] == []
    assert out["waited"] >= 0.15
    assert out["ticks"] == 5  # the other tasklet ran while select waited

"""patch_signal keeps the standard promises about when a handler has run:
signal.pause() returns after it, raise_signal() and interrupt_main()
return after it (its exception raised there), and the replaced functions
are found as signal's own. Each test runs in an interpreter of its own."""

from _patched import run_json

PATCH = """
import json, os, pickle, signal, time, warnings, _thread
import ptsevent.patch as P
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    P.patch_all()
import ptsevent
"""


def test_pause_returns_once_the_handler_tasklet_has_run():
    out = run_json(PATCH + """
called = []
def handler(signum, frame):
    time.sleep(0.05)          # blocks cooperatively, in its tasklet
    called.append(signum)
signal.signal(signal.SIGALRM, handler)
ticks = []
def ticker():
    for _ in range(5):
        ticks.append(1)
        time.sleep(0.02)
t = ptsevent.spawn(ticker)
signal.setitimer(signal.ITIMER_REAL, 0.1)
start = time.monotonic()
signal.pause()
print(json.dumps({"called": called, "waited": time.monotonic() - start,
                  "ticks": len(ticks)}))
""")
    assert out["called"] == [14]
    assert out["waited"] >= 0.1
    assert out["ticks"] >= 3  # other tasklets ran while pause() waited


def test_raise_signal_and_interrupt_main_return_after_the_handler():
    out = run_json(PATCH + """
seen = []
signal.signal(signal.SIGUSR1, lambda s, f: seen.append("usr1"))
signal.raise_signal(signal.SIGUSR1)
after_raise = list(seen)
def boom(s, f):
    1 / 0
signal.signal(signal.SIGTERM, boom)
try:
    _thread.interrupt_main(signal.SIGTERM)
    raised = None
except ZeroDivisionError:
    raised = "ZeroDivisionError"
print(json.dumps({"after_raise": after_raise, "raised": raised,
                  "modules": [f.__module__ for f in (
                      signal.signal, signal.getsignal, signal.pause,
                      signal.raise_signal, signal.set_wakeup_fd)],
                  "pickled": pickle.loads(pickle.dumps(signal.signal))
                  is signal.signal}))
""")
    assert out["after_raise"] == ["usr1"]
    assert out["raised"] == "ZeroDivisionError"
    assert out["modules"] == ["signal"] * 5
    assert out["pickled"] is True

"""patch_signal: handlers run in tasklets, user wake-up fds are chained with
the hub's. Real signals (os.kill to the process itself and from a child);
each test in an interpreter of its own (tests/_patched.py)."""

import pytest

from _patched import run_json


def test_a_handler_may_block_without_holding_the_other_tasklets():
    out = run_json("""
        import json, os, signal, socket, time
        import ptsevent, ptsevent.patch
        ptsevent.patch.patch_all()
        ticks, handled = [], {}
        def ticker():
            for _ in range(12):
                ticks.append(time.monotonic())
                time.sleep(0.025)
        def echo(conn):
            conn.sendall(conn.recv(100).upper())
        def handler(signum, frame):
            handled["start"] = time.monotonic()
            time.sleep(0.2)               # blocks only this tasklet
            a, b = socket.socketpair()
            ptsevent.spawn(echo, b)
            a.sendall(b"ping")
            handled["echo"] = a.recv(100).decode()
            handled["end"] = time.monotonic()
            handled["signum"] = signum
        previous = signal.signal(signal.SIGUSR1, handler)
        t = ptsevent.spawn(ticker)
        time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGUSR1)
        t.join()
        time.sleep(0.05)
        during = [x for x in ticks if handled["start"] < x < handled["end"]]
        print(json.dumps({"handled": handled, "during": len(during),
                          "previous": previous == signal.SIG_DFL,
                          "get": signal.getsignal(signal.SIGUSR1) is handler,
                          "back": signal.signal(signal.SIGUSR1,
                                                signal.SIG_DFL) is handler}))
    """)
    assert out["handled"]["signum"] == 10 and out["handled"]["echo"] == "PING"
    # The ticker went on while the handler slept and did socket I/O.
    assert out["during"] >= 5
    assert out["previous"] and out["get"] and out["back"]


def test_a_user_wakeup_fd_gets_the_signal_bytes_and_the_hub_still_wakes():
    out = run_json("""
        import json, os, signal, socket, subprocess, sys, time
        import ptsevent.patch
        ptsevent.patch.patch_all()
        seen = []
        signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
        signal.signal(signal.SIGUSR2, lambda s, f: seen.append(s))
        r, w = socket.socketpair()
        r.setblocking(False)
        w.setblocking(False)
        first = signal.set_wakeup_fd(w.fileno())
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        # From another process: the hub's poll wakes (it waits with no
        # timer due before 5 s), and the bytes reach the user's fd too.
        t0 = time.monotonic()
        subprocess.Popen([sys.executable, "-c",
            f"import os, signal, time; time.sleep(0.2); "
            f"os.kill({os.getpid()}, signal.SIGUSR2)"])
        got = r.recv(10)
        import select
        select.select([r], [], [], 5)
        got += r.recv(10)
        waited = time.monotonic() - t0
        again = signal.set_wakeup_fd(-1)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        try:
            after = r.recv(10)
        except BlockingIOError:
            after = b""
        print(json.dumps({"first": first, "again": again == w.fileno(),
                          "bytes": list(got), "seen": seen, "after": list(after),
                          "waited": waited}))
    """)
    assert out["first"] == -1
    assert out["again"]
    assert out["bytes"] == [10, 12]
    assert out["seen"] == [10, 12, 10]  # handlers ran, also after -1
    assert out["after"] == []           # -1: nothing forwarded any more
    assert out["waited"] < 2


def test_set_wakeup_fd_checks_its_argument_as_the_standard_one_does():
    out = run_json("""
        import json, os, signal
        import ptsevent, ptsevent.patch
        ptsevent.patch.patch_all()
        errors = {}
        r, w = os.pipe()
        try:
            signal.set_wakeup_fd(w)
        except ValueError as e:
            errors["blocking"] = str(e)
        os.close(r); os.close(w)
        try:
            signal.set_wakeup_fd(w)
        except OSError as e:
            errors["closed"] = type(e).__name__
        def other():
            try:
                signal.set_wakeup_fd(-1)
            except ValueError as e:
                errors["thread"] = str(e)
        # A real OS thread: under patch_all(), threading.Thread is a
        # tasklet of the main thread.
        ptsevent.run_in_thread(other)
        print(json.dumps(errors))
    """)
    assert out["blocking"] == f"the fd {out['blocking'].split()[2]} must be in non-blocking mode"
    assert out["closed"] == "OSError"
    assert "main thread" in out["thread"]


def test_a_wakeup_fd_set_before_the_hub_keeps_receiving():
    out = run_json("""
        import json, os, signal, socket, time
        r, w = socket.socketpair()
        r.setblocking(False)
        w.setblocking(False)
        signal.set_wakeup_fd(w.fileno())   # before ptsevent exists
        import ptsevent.patch
        ptsevent.patch.patch_all()
        signal.signal(signal.SIGUSR1, lambda s, f: None)
        time.sleep(0)                      # the hub now exists
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        print(json.dumps({"bytes": list(r.recv(10)),
                          "previous": signal.set_wakeup_fd(-1) == w.fileno()}))
    """)
    assert out == {"bytes": [10], "previous": True}


@pytest.mark.sigint
def test_sigint_and_a_handlers_exception_reach_the_main_tasklet():
    out = run_json("""
        import json, os, signal, sys, time
        import ptsevent, ptsevent.patch
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ptsevent.patch.patch_all()
        res = {}
        t = ptsevent.spawn(time.sleep, 10)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(2)
        except KeyboardInterrupt:
            res["sigint"] = "KeyboardInterrupt in main"
        signal.signal(signal.SIGTERM, lambda s, f: sys.exit(3))
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(2)
        except SystemExit as e:
            res["sigterm"] = e.code
        res["other_alive"] = not t.dead
        t.kill()
        print(json.dumps(res))
    """)
    assert out == {"sigint": "KeyboardInterrupt in main", "sigterm": 3,
                   "other_alive": True}


def test_a_handler_counts_as_something_that_can_wake_the_main_tasklet():
    out = run_json("""
        import json, os, signal, subprocess, sys
        import ptsevent, ptsevent.patch
        ptsevent.patch.patch_all()
        ev = ptsevent.Event()
        signal.signal(signal.SIGUSR1, lambda s, f: ev.set())
        # Nothing else can wake the main tasklet: no LoopExit, the
        # child's signal does.
        subprocess.Popen([sys.executable, "-c",
            f"import os, signal, time; time.sleep(0.2); "
            f"os.kill({os.getpid()}, signal.SIGUSR1)"], start_new_session=True)
        print(json.dumps({"set": ev.wait(5)}))
    """)
    assert out == {"set": True}

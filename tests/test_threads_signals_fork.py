"""run_in_thread, one hub per OS thread, signals and fork.

Anything that delivers a real signal or forks runs in a fresh interpreter with
a timeout, so a hang or a crash fails one test instead of the run.
"""

import errno as errno_module
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ptsevent


class MyError(Exception):
    pass


# --- run_in_thread -----------------------------------------------------------


def test_run_in_thread_returns_result_computed_in_another_os_thread():
    assert ptsevent.run_in_thread(threading.get_ident) != threading.get_ident()
    assert ptsevent.run_in_thread(lambda a, b, c=0: a * b + c, 6, 7, c=1) == 43
    assert ptsevent.hub_stats()["thread_jobs"] == 0


def test_run_in_thread_reraises_the_function_exception():
    raised = []

    def fail(msg):
        exc = MyError(msg)
        raised.append(exc)
        raise exc

    with pytest.raises(MyError, match="^in thread$") as info:
        ptsevent.run_in_thread(fail, "in thread")
    assert info.value is raised[0]
    assert ptsevent.hub_stats()["thread_jobs"] == 0


def test_run_in_thread_blocks_only_the_calling_tasklet():
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            ptsevent.sleep(0.02)

    tick = ptsevent.spawn(ticker)
    try:
        jobs = [ptsevent.spawn(ptsevent.run_in_thread, time.sleep, 0.2) for _ in range(5)]
        ptsevent.sleep(0.05)
        assert ptsevent.hub_stats()["thread_jobs"] == 5
        start = time.monotonic()
        ptsevent.joinall(jobs)
        elapsed = time.monotonic() - start
        assert all(j.successful() for j in jobs)
        # five 0.2 s jobs one after another would take 1 s
        assert elapsed < 0.75
        assert len(ticks) >= 5
        assert ptsevent.hub_stats()["thread_jobs"] == 0
    finally:
        tick.kill()


def test_run_in_thread_pending_job_is_counted_until_delivered():
    t = ptsevent.spawn(ptsevent.run_in_thread, time.sleep, 0.1)
    ptsevent.sleep(0.02)
    stats = ptsevent.hub_stats()
    assert stats["thread_jobs"] == 1
    assert stats["tasklets"] == 1
    t.join()
    assert ptsevent.hub_stats()["thread_jobs"] == 0


def test_hub_releases_gil_while_main_waits_in_sleep():
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            time.sleep(0.005)
            count[0] += 1

    th = threading.Thread(target=spin)
    th.start()
    try:
        ptsevent.sleep(0.02)
        before = count[0]
        ptsevent.sleep(0.3)
        progressed = count[0] - before
    finally:
        stop.set()
        th.join()
    # with the GIL held through the poll the thread would make no progress
    assert progressed >= 10


# --- one hub per OS thread -----------------------------------------------------


def test_each_os_thread_has_its_own_hub_and_runs_tasklets_independently():
    spawned = threading.Barrier(3)
    checked = threading.Event()
    results = {}
    errors = []
    main_tasklet = ptsevent.getcurrent()

    def thread_main(name):
        try:
            order = []

            def worker(i):
                for j in range(2):
                    order.append((i, j))
                    ptsevent.sleep(0)

            ts = [ptsevent.spawn(worker, i) for i in range(3)]
            spawned.wait(5)
            checked.wait(5)
            stats_with_tasklets = ptsevent.hub_stats()
            start = time.monotonic()
            ptsevent.joinall(ts)
            ptsevent.sleep(0.3)
            results[name] = {
                "order": order,
                "tasklets_before": stats_with_tasklets["tasklets"],
                "stats_after": ptsevent.hub_stats(),
                "elapsed": time.monotonic() - start,
                "own_main": ptsevent.getcurrent() is not main_tasklet,
            }
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=thread_main, args=(n,)) for n in ("t1", "t2")]
    for th in threads:
        th.start()
    local = None
    try:
        spawned.wait(5)
        # the other threads' tasklets are not in this thread's hub
        assert ptsevent.hub_stats()["tasklets"] == 0
        local = ptsevent.spawn(ptsevent.sleep, 0.05)
        start = time.monotonic()
    finally:
        checked.set()
        for th in threads:
            th.join(10)
    local.join()
    assert local.dead
    total = time.monotonic() - start
    assert errors == []
    expected_order = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    for name in ("t1", "t2"):
        r = results[name]
        assert r["order"] == expected_order
        assert r["tasklets_before"] == 3
        assert r["stats_after"]["tasklets"] == 0
        assert r["stats_after"]["events"] == 0
        assert r["own_main"] is True
    # both threads slept 0.3 s at the same time, while this one slept too
    assert total < 0.55


def test_tasklets_in_thread_use_run_in_thread_and_wait_read():
    out = {}

    def thread_main():
        r, w = os.pipe()
        try:

            def writer():
                ptsevent.sleep(0.01)
                os.write(w, b"t")

            t = ptsevent.spawn(writer)
            ptsevent.wait_read(r, timeout=2)
            out["data"] = os.read(r, 1)
            out["job"] = ptsevent.run_in_thread(lambda: "job done")
            t.join()
            out["stats"] = ptsevent.hub_stats()
        except BaseException as e:
            out["error"] = e
        finally:
            os.close(r)
            os.close(w)

    th = threading.Thread(target=thread_main)
    th.start()
    th.join(10)
    assert "error" not in out, out
    assert out["data"] == b"t"
    assert out["job"] == "job done"
    assert out["stats"]["events"] == 0
    assert out["stats"]["thread_jobs"] == 0


# --- sockets shared between threads ---------------------------------------------


def _hub_thread(body):
    """Run body() in a new OS thread (its own hub); returns (thread, box)."""
    box = {}

    def run():
        try:
            box["value"] = body()
        except BaseException as e:  # noqa: BLE001 - checked by the test
            box["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, box


def test_io_handle_dropped_in_another_thread_is_unregistered_by_its_hub():
    # The last reference to a descriptor's handle, registered with another
    # thread's (polling) hub, goes here: that hub drops the registration
    # itself (the handle lives until then) instead of this thread touching
    # its event base while it polls.
    from ptsevent import _core
    r, w = os.pipe()
    holder = {"h": _core.IoHandle(r, stream=True)}
    stop = threading.Event()
    counts = []

    def body():
        with pytest.raises(TimeoutError):
            holder["h"].wait_read(0.01)  # registers the descriptor here
        counts.append(ptsevent.hub_stats()["io_handles"])
        holder["registered"] = True
        while not stop.is_set():
            ptsevent.sleep(0.005)
            counts.append(ptsevent.hub_stats()["io_handles"])

    th, box = _hub_thread(body)
    deadline = time.monotonic() + 5
    while "registered" not in holder and time.monotonic() < deadline:
        time.sleep(0.001)
    del holder["h"]  # the last reference: dealloc starts in this thread
    time.sleep(0.1)
    stop.set()
    th.join(10)
    os.close(r)
    os.close(w)
    assert "error" not in box, box.get("error")
    assert counts[0] == 1 and counts[-1] == 0, counts


def test_a_thread_may_end_while_its_tasklets_wait(run_python):
    # The thread's hub is torn down with tasklets suspended in recv, sleep,
    # Event.wait, Lock.acquire, Queue.get and join: each gets GreenletExit
    # at its wait point (finally blocks run) and the process goes on.
    proc = run_python("""
        import threading
        import ptsevent
        from ptsevent import socket as psocket

        a, b = psocket.socketpair()
        cleaned = []

        def waits(what, fn, *args):
            try:
                fn(*args)
            finally:
                cleaned.append(what)

        def body():
            lock = ptsevent.Lock()
            lock.acquire()
            sleeper = ptsevent.spawn(waits, "sleep", ptsevent.sleep, 30)
            for what, fn, args in [
                    ("recv", a.recv, (10,)),
                    ("event", ptsevent.Event().wait, ()),
                    ("lock", lock.acquire, ()),
                    ("queue", ptsevent.Queue().get, ()),
                    ("join", sleeper.join, ())]:
                ptsevent.spawn(waits, what, fn, *args)
            ptsevent.sleep(0.01)  # every one of them is now waiting

        for _ in range(3):
            th = threading.Thread(target=body)
            th.start()
            th.join()
        print(sorted(set(cleaned)), len(cleaned))
        a.close()
        b.close()
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == (
        "['event', 'join', 'lock', 'queue', 'recv', 'sleep'] 18"), proc.stdout


def test_close_from_another_thread_wakes_the_waiter_in_its_hub_at_once():
    # The waiter's hub is blocked in its poll (GIL released): close() from
    # this thread must wake it through that hub, not leave it to a timeout.
    from ptsevent import socket as psocket
    a, b = psocket.socketpair()
    waiting = threading.Event()

    def body():
        def reader():
            waiting.set()
            with pytest.raises(OSError) as info:
                a.recv(10)
            return info.value.errno, time.monotonic()
        return ptsevent.spawn(reader).get(timeout=10)

    th, box = _hub_thread(body)
    assert waiting.wait(5)
    time.sleep(0.1)  # the other hub is now polling
    start = time.monotonic()
    a.close()
    th.join(15)
    b.close()
    assert "error" not in box, box.get("error")
    err, woke = box["value"]
    assert err == errno_module.EBADF
    assert woke - start < 1.0


def test_socket_handed_between_threads_moves_its_registration():
    # A socket watched by another thread's hub (which goes on polling) is
    # used, then dropped, here: the registration moves without touching the
    # other hub while it polls. Repeated to give races a chance.
    from ptsevent import socket as psocket
    stop = threading.Event()
    inbox = []

    def body():
        while not stop.is_set():
            if inbox:
                a, got = inbox.pop()
                t = ptsevent.spawn(a.recv, 1)  # registers a in this hub
                ptsevent.sleep(0.001)
                got.append(t.get(timeout=5))
            ptsevent.sleep(0.001)  # keeps polling

    th, box = _hub_thread(body)
    try:
        for n in range(100):
            a, b = psocket.socketpair()
            got = []
            inbox.append((a, got))
            time.sleep(0.002)
            b.sendall(b"x")
            deadline = time.monotonic() + 5
            while not got and time.monotonic() < deadline:
                time.sleep(0.001)
            assert got == [b"x"], n
            ptsevent.spawn_later(0.002, b.sendall, b"yz")
            assert a.recv(2) == b"yz"  # waits here, in this thread's hub
            a.close()
            b.close()
    finally:
        stop.set()
        th.join(10)
    assert "error" not in box, box.get("error")


# --- signal_handler in this process: bad input ------------------------------


def test_signal_handler_outside_main_thread_raises_value_error_like_signal_signal():
    got = {}

    def thread_main():
        for name, fn in (
            ("signal", lambda: signal.signal(signal.SIGUSR2, lambda *a: None)),
            ("ptsevent", lambda: ptsevent.signal_handler(signal.SIGUSR2, lambda: None)),
        ):
            try:
                fn()
            except BaseException as e:
                got[name] = type(e)
            else:
                got[name] = None

    th = threading.Thread(target=thread_main)
    th.start()
    th.join(10)
    assert got == {"signal": ValueError, "ptsevent": ValueError}


def _stdlib_signal(signum):
    signal.signal(signum, lambda *a: None)


def _ptsevent_signal(signum):
    handle = ptsevent.signal_handler(signum, lambda: None)
    handle.cancel()


@pytest.mark.parametrize("register", [_stdlib_signal, _ptsevent_signal], ids=["signal", "ptsevent"])
@pytest.mark.parametrize(
    "signum, exc",
    [
        pytest.param(0, ValueError, id="zero"),
        pytest.param(-1, ValueError, id="negative"),
        pytest.param(100000, ValueError, id="out-of-range"),
        pytest.param(signal.SIGKILL, OSError, id="SIGKILL"),
        pytest.param("SIGUSR1", TypeError, id="str"),
    ],
)
def test_signal_handler_bad_signal_number_raises_like_signal_signal(register, signum, exc):
    with pytest.raises(exc):
        register(signum)


# --- real signals, in a subprocess --------------------------------------------


def _readline(stream, timeout):
    sel = selectors.DefaultSelector()
    try:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            pytest.fail("subprocess printed nothing in time")
    finally:
        sel.close()
    return stream.readline()


SIGINT_WAITS = {
    "sleep": "ptsevent.sleep(10)",
    "wait_read": "ptsevent.wait_read(r)",
    "join": "ptsevent.spawn(ptsevent.wait_read, r).join()",
    "timeout-sleep": "ptsevent.with_timeout(10, ptsevent.sleep, 20)",
}


@pytest.mark.sigint
@pytest.mark.parametrize("wait", list(SIGINT_WAITS))
def test_sigint_raises_keyboard_interrupt_promptly_in_blocked_main(wait):
    source = textwrap.dedent(
        f"""
        import os, signal, time, ptsevent
        # what this test relies on, whatever the parent left ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
        r, w = os.pipe()
        ptsevent.hub_stats()
        print("READY", flush=True)
        start = time.monotonic()
        try:
            {SIGINT_WAITS[wait]}
        except KeyboardInterrupt:
            print("KeyboardInterrupt", time.monotonic() - start < 2.0, flush=True)
        else:
            print("returned without KeyboardInterrupt", flush=True)
        print("after", ptsevent.spawn(lambda: 1).get(), flush=True)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", source],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert _readline(proc.stdout, 15) == "READY\n"
            time.sleep(0.2)
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
            assert time.monotonic() - sent < 3.0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert out.splitlines() == ["KeyboardInterrupt True", "after 1"], err


@pytest.mark.sigint
def test_sigint_from_another_thread_wakes_the_hub(run_python):
    proc = run_python(
        """
        import os, signal, threading, time, ptsevent
        signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        try:
            ptsevent.sleep(10)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", time.monotonic() - start < 2.0)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["KeyboardInterrupt True"]


def test_signal_handler_runs_fn_with_args_in_a_new_tasklet_per_signal(run_python):
    proc = run_python(
        """
        import os, signal, ptsevent
        main = ptsevent.getcurrent()
        calls = []
        runners = []

        def fn(*args, **kwargs):
            runners.append(ptsevent.getcurrent())
            calls.append(("fn", args, kwargs))

        h = ptsevent.signal_handler(signal.SIGUSR1, fn, 1, "two", key="v")
        os.kill(os.getpid(), signal.SIGUSR1)
        ptsevent.sleep(0.1)
        os.kill(os.getpid(), signal.SIGUSR1)
        ptsevent.sleep(0.1)
        print("calls", calls)
        print("new tasklets", len(runners) == 2 and runners[0] is not runners[1]
              and all(isinstance(t, ptsevent.Tasklet) and t is not main for t in runners))
        h.cancel()
        print("stats", ptsevent.hub_stats()["tasklets"], ptsevent.hub_stats()["events"])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "calls [('fn', (1, 'two'), {'key': 'v'}), ('fn', (1, 'two'), {'key': 'v'})]",
        "new tasklets True",
        "stats 0 0",
    ], proc.stderr


def test_signal_from_another_thread_runs_handler_promptly_while_hub_polls(run_python):
    proc = run_python(
        """
        import os, signal, threading, time, ptsevent
        ran = []
        h = ptsevent.signal_handler(signal.SIGUSR1, lambda: ran.append(time.monotonic()))
        start = time.monotonic()
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        ptsevent.sleep(0.6)
        print("ran", len(ran), ran and ran[0] - start < 0.4)
        h.cancel()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["ran 1 True"], proc.stderr


def test_signal_handler_cancel_restores_previous_handler(run_python):
    proc = run_python(
        """
        import os, signal, ptsevent
        calls = []

        def previous(signum, frame):
            calls.append(("previous", signum == signal.SIGUSR1))

        signal.signal(signal.SIGUSR1, previous)
        h = ptsevent.signal_handler(signal.SIGUSR1, calls.append, "fn")
        print("replaced", signal.getsignal(signal.SIGUSR1) is not previous)
        h.cancel()
        print("restored", signal.getsignal(signal.SIGUSR1) is previous)
        os.kill(os.getpid(), signal.SIGUSR1)
        ptsevent.sleep(0.05)
        print("calls", calls)
        print("stats", ptsevent.hub_stats()["tasklets"], ptsevent.hub_stats()["events"])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "replaced True",
        "restored True",
        "calls [('previous', True)]",
        "stats 0 0",
    ], proc.stderr


def test_registered_signal_handler_counts_as_something_that_can_wake_main(run_python):
    proc = run_python(
        """
        import os, signal, threading, ptsevent

        def deadlocked_pair():
            holder = {}
            a = ptsevent.spawn(lambda: holder["b"].join())
            b = ptsevent.spawn(lambda: holder["a"].join())
            holder.update(a=a, b=b)
            return a, b

        a, b = deadlocked_pair()
        h = ptsevent.signal_handler(signal.SIGUSR1, b.kill)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        try:
            a.join()
            print("joined", a.dead, b.dead)
        except ptsevent.LoopExit:
            print("LoopExit while a handler is registered")
        h.cancel()

        a, b = deadlocked_pair()
        try:
            a.join()
            print("joined after cancel")
        except ptsevent.LoopExit:
            print("LoopExit after cancel")
        ptsevent.killall([a, b])
        print("stats", ptsevent.hub_stats()["tasklets"], ptsevent.hub_stats()["events"])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "joined True True",
        "LoopExit after cancel",
        "stats 0 0",
    ], proc.stderr


def test_blocking_call_in_signal_signal_handler_run_by_hub_raises_blocking_switch_out_error(
    run_python,
):
    proc = run_python(
        """
        import signal, time, ptsevent
        seen = []

        def handler(signum, frame):
            try:
                ptsevent.sleep(0)
            except ptsevent.BlockingSwitchOutError as e:
                seen.append(type(e).__name__)
                raise

        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        start = time.monotonic()
        try:
            ptsevent.sleep(3)
        except ptsevent.BlockingSwitchOutError:
            print("main got BlockingSwitchOutError", seen, time.monotonic() - start < 2.0)
        else:
            print("no error", seen)
        print("hub still works", ptsevent.spawn(lambda: 2).get())
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "main got BlockingSwitchOutError ['BlockingSwitchOutError'] True",
        "hub still works 2",
    ], proc.stderr


# --- fork ----------------------------------------------------------------------


@pytest.mark.sigint
def test_child_hub_works_after_fork(run_python):
    proc = run_python(script="fork_child.py", timeout=15)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "child exit status 0",
        "parent ok",
    ], proc.stderr


def test_tasklet_of_another_thread_cannot_be_started_or_joined_here():
    made = {}

    def in_thread():
        made["idle"] = ptsevent.Tasklet(lambda: 1)
        made["live"] = ptsevent.spawn(ptsevent.sleep, 0.01)
        made["live"].join()

    th = threading.Thread(target=in_thread)
    th.start()
    th.join()
    with pytest.raises(RuntimeError, match="another thread's hub"):
        made["idle"].start()
    # already dead: joining it is a no-op, as for a finished thread
    assert made["live"].join() is None
    assert made["live"].dead

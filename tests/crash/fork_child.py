"""Fork a process whose hub, thread pool and signal wake-up are already in use,
then check that the child's hub still runs tasklets, timers, descriptor waits,
thread jobs and Ctrl-C, and that the parent's hub is unaffected.

Prints "child exit status N" and "parent ok"; anything else is a failure.
"""

import faulthandler
import os
import signal
import sys
import threading
import time
import traceback

import ptsevent


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def exercise_hub(who):
    order = []
    ts = [ptsevent.spawn(order.append, i) for i in range(3)]
    ptsevent.joinall(ts)
    check(order == [0, 1, 2], f"{who}: spawn order {order}")

    start = time.monotonic()
    ptsevent.sleep(0.05)
    elapsed = time.monotonic() - start
    check(0.045 <= elapsed < 1.0, f"{who}: sleep took {elapsed}")

    r, w = os.pipe()
    try:

        def writer():
            ptsevent.sleep(0.01)
            os.write(w, b"x")

        t = ptsevent.spawn(writer)
        ptsevent.wait_read(r, timeout=2)
        check(os.read(r, 1) == b"x", f"{who}: pipe data")
        t.join()
    finally:
        os.close(r)
        os.close(w)

    check(ptsevent.run_in_thread(os.getpid) == os.getpid(), f"{who}: run_in_thread pid")
    check(
        ptsevent.run_in_thread(threading.get_ident) != threading.get_ident(),
        f"{who}: run_in_thread in another thread",
    )
    jobs = [ptsevent.spawn(ptsevent.run_in_thread, time.sleep, 0.1) for _ in range(3)]
    start = time.monotonic()
    ptsevent.joinall(jobs)
    check(time.monotonic() - start < 0.29, f"{who}: thread jobs ran one after another")

    stats = ptsevent.hub_stats()
    check(stats["tasklets"] == 0 and stats["events"] == 0, f"{who}: stats {stats}")
    check(stats["thread_jobs"] == 0, f"{who}: stats {stats}")
    check(
        stats["libevent_events"] == stats["events"] + stats["internal_events"],
        f"{who}: stats {stats}",
    )


def child():
    exercise_hub("child")
    # Ctrl-C still wakes the child's hub (its wake-up descriptors are its own);
    # SIGINT may have been inherited as ignored (a test run in the background)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    try:
        ptsevent.sleep(5)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("child: no KeyboardInterrupt")
    check(time.monotonic() - start < 2.0, "child: KeyboardInterrupt was late")


def main():
    # put the parent's hub, its thread pool and its timers to work before forking
    exercise_hub("parent before fork")

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child()
            code = 0
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)

    deadline = time.monotonic() + 15
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            print("child hung")
            return 1
        # the parent's hub keeps working while the child runs
        ptsevent.sleep(0.01)
    print("child exit status", os.waitstatus_to_exitcode(status), flush=True)

    exercise_hub("parent after fork")
    print("parent ok", flush=True)
    return 0


if __name__ == "__main__":
    # a hang prints every thread's stack and exits instead of waiting for
    # the test's own timeout
    faulthandler.dump_traceback_later(10, exit=True)
    sys.exit(main())

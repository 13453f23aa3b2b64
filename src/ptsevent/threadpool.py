"""run_in_thread: blocking work in OS threads, waited for cooperatively.

The pool must stay made of real OS threads whatever has been patched:
patching `threading`, `queue` or `time` turns their names into cooperative
ones, and a pool built from those would run its jobs as tasklets of the
very hub they were meant to keep free. So the thread starter, the lock and
the job queue are the C primitives, bound here when the module is imported
(before any patching) and used again when the pool is rebuilt after fork.
"""

import os
from _queue import SimpleQueue as _SimpleQueue
from _thread import allocate_lock as _allocate_lock
from _thread import start_new_thread as _start_new_thread

from ptsevent import _core

MAX_THREADS = int(os.environ.get("PTSEVENT_THREADS", "10"))


class _Pool:
    def __init__(self, maxthreads):
        self.maxthreads = maxthreads
        self._jobs = _SimpleQueue()
        self._lock = _allocate_lock()
        self._threads = 0
        self._idle = 0

    def submit(self, waiter, fn, args, kwargs):
        with self._lock:
            if self._idle == 0 and self._threads < self.maxthreads:
                self._threads += 1
                # A bare OS thread: not a threading.Thread, so it needs no
                # threading lock to start and is not joined at exit (the
                # daemon behaviour the pool wants).
                _start_new_thread(self._work, ())
            else:
                self._idle -= 1 if self._idle else 0
        self._jobs.put((waiter, fn, args, kwargs))

    def _work(self):
        while True:
            waiter, fn, args, kwargs = self._jobs.get()
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                waiter.throw(e)
            else:
                waiter.switch(result)
            del waiter, fn, args, kwargs
            with self._lock:
                self._idle += 1


_pool = _Pool(MAX_THREADS)


def os_threads():
    """How many OS threads the pool has started in this process (they
    never end): what the interpreter's _thread._count() counts for it."""
    return _pool._threads


def _reset_after_fork():
    global _pool
    _pool = _Pool(MAX_THREADS)


def run_in_thread(fn, *args, **kwargs):
    """Run fn(*args, **kwargs) in an OS thread; block only this tasklet.

    Returns fn's result or raises its exception."""
    if not callable(fn):
        raise TypeError(f"'{type(fn).__name__}' object is not callable")
    waiter = _core.Waiter(remote=True)
    _pool.submit(waiter, fn, args, kwargs)
    return waiter.get()

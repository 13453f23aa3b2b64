"""Lock, RLock, Semaphore, BoundedSemaphore and Condition for tasklets.

Each has the signatures, return values and exceptions of its ``threading``
counterpart, so it can stand in for it once threads are patched; waiting
suspends only the calling tasklet.

The locks and semaphores are fair: waiters are served oldest first, and a
release hands the lock (or permit) directly to the oldest waiter, so a
tasklet that releases and re-acquires at once cannot starve the others.
A release with no waiter, and an acquire of a free lock, touch nothing but
the object's own fields.

Threads. The tasklets waiting on one object must all belong to one OS thread
(the hub that runs them); the object moves to another thread's hub when
nobody waits on it. Another OS thread may *release* a Lock or Semaphore (as
with ``threading``) and may acquire one that is free: the state changes at
once and the owning hub hands it on to its oldest waiter soon after.
"""

import time as _time_mod

from ptsevent import _core

__all__ = ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition"]

_LoopExit = _core.LoopExit
_time = _time_mod.monotonic


# Lock, RLock, Semaphore and BoundedSemaphore are in C++ (src/core/hub/:
# lock.cpp, rlock.cpp, semaphore.cpp), on the one waiter protocol of the
# core (waiters.h): a Python frame per call would cost more than the work.
Lock = _core.Lock
RLock = _core.RLock
Semaphore = _core.Semaphore
BoundedSemaphore = _core.BoundedSemaphore


# ------------------------------------------------------------- Condition


class Condition:
    """A condition variable, as ``threading.Condition``.

    ``lock`` defaults to a new RLock. wait() releases it, suspends the
    tasklet until notify() (FIFO) or the timeout, and always holds the lock
    again when it returns or raises: a kill or Timeout that arrives while it
    re-acquires the lock is raised once the lock is held.
    """

    __slots__ = ("_lock", "acquire", "release", "_release_save",
                 "_acquire_restore", "_is_owned", "_wq", "__weakref__")

    def __init__(self, lock=None):
        if lock is None:
            lock = RLock()
        self._lock = lock
        self.acquire = lock.acquire
        self.release = lock.release
        self._release_save = getattr(lock, "_release_save", lock.release)
        restore = getattr(lock, "_acquire_restore", None)
        self._acquire_restore = (
            restore if restore is not None else lambda _state: lock.acquire())
        is_owned = getattr(lock, "_is_owned", None)
        if is_owned is None:
            is_owned = lock.locked if isinstance(lock, Lock) else self._owned_by_try
        self._is_owned = is_owned
        self._wq = _core.WaitQueue()  # the waits, in C++ (wait_queue.cpp)

    def _owned_by_try(self):
        # As threading, for a lock without _is_owned().
        if self._lock.acquire(False):
            self._lock.release()
            return False
        return True

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def wait(self, timeout=None):
        """Release the lock, wait for notify() or the timeout, re-acquire.

        True if notified, False if the timeout passed."""
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        saved = self._release_save()
        try:
            if timeout is None:
                return self._wq.wait()
            if timeout > 0:
                return self._wq.wait(timeout)
            return False
        finally:
            self._reacquire(saved)

    def _reacquire(self, saved):
        pending = None
        while True:
            try:
                self._acquire_restore(saved)
                break
            except _LoopExit:
                raise
            except BaseException as e:  # noqa: BLE001 - raised below
                # The caller's `with` releases the lock: hold it first.
                if pending is None:
                    pending = e
        if pending is not None:
            raise pending

    def wait_for(self, predicate, timeout=None):
        """Wait until predicate() is true, or the timeout; return its last
        value (as threading.Condition.wait_for)."""
        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = _time() + waittime
                else:
                    waittime = endtime - _time()
                    if waittime <= 0:
                        break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n=1):
        """Wake up to n waiting tasklets, oldest first."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        wq = self._wq
        if len(wq) and n > 0:
            try:
                wq.notify(n)
            except RuntimeError:
                pass  # from another thread whose hub is gone: nobody waits

    def notify_all(self):
        """Wake every waiting tasklet."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        wq = self._wq
        if len(wq):
            try:
                wq.notify_all()
            except RuntimeError:
                pass  # from another thread whose hub is gone: nobody waits

    def notifyAll(self):
        """Deprecated alias of notify_all()."""
        import warnings
        warnings.warn('notifyAll() is deprecated, use notify_all() instead',
                      DeprecationWarning, stacklevel=2)
        self.notify_all()

    @property
    def _waiters(self):
        # None before any wait, else (wq: waiting tasklets, woken).
        return self._wq._waiters

    def _at_fork_reinit(self):
        self._lock._at_fork_reinit()
        self._wq = _core.WaitQueue()  # the waiting tasklets stayed in the parent

    def __repr__(self):
        return "<Condition(%s, %d)>" % (self._lock, len(self._wq))

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
from ptsevent.patch._registry import os_thread_ident as _get_ident

__all__ = ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition"]

_WaitQueue = _core.WaitQueue
_call_threadsafe = _core.call_threadsafe
_getcurrent = _core.getcurrent
_LoopExit = _core.LoopExit
_time = _time_mod.monotonic


# --------------------------------------------------------------- waiters


class _Waiters:
    """The FIFO of tasklets waiting on one primitive, built lazily on its
    first wait, and the bookkeeping of direct handoff.

    ``woken`` counts the waiters handed a resource (notified) that have not
    yet returned from wait(). The C++ WaitQueue passes the notification of a
    waiter interrupted after it was notified (kill, Timeout) on to the next
    waiter; when there is none the resource would be lost, so the interrupted
    waiter works out how many handoffs nobody holds any more and gives them
    back (``give_back``), see wait().

    Cross-thread protocol. A WaitQueue belongs to the hub of the thread that
    made it (``tid``). Another OS thread never hands off itself: it changes
    the primitive's state first, then reads the primitive's ``_waiters`` and,
    if there are any, posts the primitive's dispatch to ``tid`` (post()). A
    tasklet about to wait reads the state after publishing ``_waiters``. With
    the GIL ordering these steps, either the waiter sees the new state or the
    other thread sees the waiters and the dispatch (which runs in the hub
    after the waiter is queued) serves it: no wake-up is lost.
    """

    __slots__ = ("wq", "tid", "woken", "nwait", "posted")

    def __init__(self):
        self.wq = _WaitQueue()
        self.tid = _get_ident()
        self.woken = 0  # handed a resource, not yet returned from wait()
        self.nwait = 0  # tasklets inside wait()
        self.posted = False  # a dispatch is queued for the owner hub

    def wait(self, timeout, give_back=None):
        """True when handed the resource, False on timeout."""
        wq = self.wq
        self.nwait += 1
        try:
            if wq.wait(timeout):
                self.woken -= 1
                return True
            return False
        except BaseException:
            # Every notified tasklet that has not returned yet holds one
            # handoff: the other (nwait - 1) waiters minus those still
            # queued. Any handoff beyond that was passed on to an empty
            # queue. No tasklet switch happens between the C++ pass-on and
            # this line, so the count is exact.
            lost = self.woken - (self.nwait - 1 - len(wq))
            if lost > 0:
                self.woken -= lost
                if give_back is not None:
                    give_back(lost)
            raise
        finally:
            self.nwait -= 1

    def post(self, dispatch):
        """From another OS thread: run dispatch(self) in the owner's hub."""
        if self.posted:
            return
        self.posted = True
        try:
            _call_threadsafe(self.tid, dispatch, self)
        except RuntimeError:
            # The owner thread's hub is gone, and its waiters with it.
            self.posted = False

    def notify_all(self):
        try:
            self.wq.notify_all()
        except RuntimeError:
            pass  # from another thread whose hub is gone: nobody waits

    def idle(self):
        return not len(self.wq) and not self.woken


def _adopt(w, owner):
    """New waiters for the running thread (the previous ones are unused)."""
    if w is not None and not w.idle():
        raise RuntimeError(
            f"{type(owner).__name__}: tasklets of another thread wait on this "
            "object; only the tasklets of one thread can wait on it at a time")
    return _Waiters()


# acquire()'s (blocking, timeout) checked as _thread.lock.acquire checks
# them: None (no limit) or seconds >= 0. Shared with the C++ Lock.
_lock_timeout = _core._lock_timeout


# ------------------------------------------------------------------ Lock


# Lock is in C++ (src/core/hub/lock.cpp): the same fair hand-off and
# thread rules as the primitives below, without a Python frame per call.
Lock = _core.Lock


# ----------------------------------------------------------------- RLock

# The owner while a released RLock is on its way to the oldest waiter.
_HANDOFF = object()


class RLock:
    """A reentrant lock, as ``threading.RLock``; the owner is the tasklet
    (``ptsevent.getcurrent()``) that acquired it. Fair as Lock."""

    __slots__ = ("_owner", "_count", "_waiters", "__weakref__")

    def __init__(self):
        self._owner = None
        self._count = 0
        self._waiters = None

    def acquire(self, blocking=True, timeout=-1):
        """Acquire the lock, or add one level if this tasklet owns it."""
        if timeout != -1 or not blocking:
            timeout = _lock_timeout(blocking, timeout)
        else:
            timeout = None
        me = _getcurrent()
        owner = self._owner
        if owner is None:
            self._owner = me
            self._count = 1
            return True
        if owner is me:
            self._count += 1
            return True
        if timeout == 0:
            return False
        w = self._waiters
        if w is None or w.tid != _get_ident():
            w = self._waiters = _adopt(w, self)
            if self._owner is None:  # see _Waiters
                self._owner = me
                self._count = 1
                return True
        if w.wait(timeout, self._give_back):
            self._owner = me
            self._count = 1
            return True
        return False

    __enter__ = acquire

    def release(self):
        """Drop one level; at the last one the oldest waiter owns it next."""
        if self._owner is not _getcurrent():
            raise RuntimeError("cannot release un-acquired lock")
        count = self._count - 1
        if count:
            self._count = count
        else:
            self._free()

    def __exit__(self, t, v, tb):
        self.release()

    def _free(self):
        self._count = 0
        w = self._waiters
        if w is not None and w.tid == _get_ident():
            if w.wq.notify(1):
                self._owner = _HANDOFF
                w.woken += 1
            else:
                self._owner = None
            return
        self._owner = None
        w = self._waiters
        if w is not None:
            w.post(self._dispatch)

    def _give_back(self, n):
        if self._owner is _HANDOFF:
            self._owner = None

    def _dispatch(self, w):
        w.posted = False
        if self._waiters is w and self._owner is None and w.wq.notify(1):
            self._owner = _HANDOFF
            w.woken += 1

    # Condition support, as threading.RLock.
    def _is_owned(self):
        return self._owner is _getcurrent()

    def _release_save(self):
        if self._count == 0:
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._free()
        return state

    def _acquire_restore(self, state):
        self.acquire()
        self._count, self._owner = state

    def _recursion_count(self):
        return self._count if self._owner is _getcurrent() else 0

    def _at_fork_reinit(self):
        self._owner = None
        self._count = 0
        self._waiters = None

    def __repr__(self):
        cls = type(self)
        owner = self._owner
        if owner is _HANDOFF:
            owner = None
        return (f"<{'locked' if self._count or owner is not None else 'unlocked'} "
                f"{cls.__module__}.{cls.__qualname__} object owner={owner!r} "
                f"count={self._count} at {id(self):#x}>")


# ------------------------------------------------------------- Semaphore


class Semaphore:
    """A counting semaphore, as ``threading.Semaphore``; waiters are served
    in FIFO order and a release hands the permit to the oldest one."""

    __slots__ = ("_value", "_waiters", "__weakref__")

    def __init__(self, value=1):
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value
        self._waiters = None

    def acquire(self, blocking=True, timeout=None):
        """Take one permit; True, or False if none came (blocking false, or
        the timeout passed)."""
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        if self._value > 0:
            self._value -= 1
            return True
        if not blocking:
            return False
        # As threading: a timeout that is not > 0 gives up at once.
        if timeout is not None and not timeout > 0:
            return False
        w = self._waiters
        if w is None or w.tid != _get_ident():
            w = self._waiters = _adopt(w, self)
            if self._value > 0:  # see _Waiters
                self._value -= 1
                return True
        return w.wait(timeout, self._give_back)

    __enter__ = acquire

    def release(self, n=1):
        """Return n permits; each goes to the oldest waiter, if any."""
        if n < 1:
            raise ValueError('n must be one or more')
        w = self._waiters
        if w is not None and w.tid == _get_ident():
            woken = w.wq.notify(n)
            w.woken += woken
            self._value += n - woken
            return
        self._value += n
        w = self._waiters
        if w is not None:
            w.post(self._dispatch)

    def __exit__(self, t, v, tb):
        self.release()

    def _give_back(self, n):
        self._value += n

    def _dispatch(self, w):
        w.posted = False
        if self._waiters is w:
            k = min(self._value, len(w.wq))
            if k > 0:
                k = w.wq.notify(k)
                self._value -= k
                w.woken += k

    def __repr__(self):
        cls = type(self)
        return (f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}:"
                f" value={self._value}>")


class BoundedSemaphore(Semaphore):
    """A semaphore whose release() raises ValueError past the initial value,
    as ``threading.BoundedSemaphore``."""

    __slots__ = ("_initial_value",)

    def __init__(self, value=1):
        Semaphore.__init__(self, value)
        self._initial_value = value

    def release(self, n=1):
        if n < 1:
            raise ValueError('n must be one or more')
        w = self._waiters
        # Permits handed to waiters that have not run yet count as released.
        handed = w.woken if w is not None else 0
        if self._value + handed + n > self._initial_value:
            raise ValueError("Semaphore released too many times")
        Semaphore.release(self, n)

    def __repr__(self):
        cls = type(self)
        return (f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}:"
                f" value={self._value}/{self._initial_value}>")


# ------------------------------------------------------------- Condition


class Condition:
    """A condition variable, as ``threading.Condition``.

    ``lock`` defaults to a new RLock. wait() releases it, suspends the
    tasklet until notify() (FIFO) or the timeout, and always holds the lock
    again when it returns or raises: a kill or Timeout that arrives while it
    re-acquires the lock is raised once the lock is held.
    """

    __slots__ = ("_lock", "acquire", "release", "_release_save",
                 "_acquire_restore", "_is_owned", "_waiters", "__weakref__")

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
        self._waiters = None

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
        w = self._waiters
        if w is None or w.tid != _get_ident():
            w = self._waiters = _adopt(w, self)
        saved = self._release_save()
        try:
            if timeout is None:
                return w.wq.wait()
            if timeout > 0:
                return w.wq.wait(timeout)
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
        w = self._waiters
        if w is not None and len(w.wq) and n > 0:
            try:
                w.wq.notify(n)
            except RuntimeError:
                pass  # from another thread whose hub is gone: nobody waits

    def notify_all(self):
        """Wake every waiting tasklet."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        w = self._waiters
        if w is not None:
            w.notify_all()

    def notifyAll(self):
        """Deprecated alias of notify_all()."""
        import warnings
        warnings.warn('notifyAll() is deprecated, use notify_all() instead',
                      DeprecationWarning, stacklevel=2)
        self.notify_all()

    def _at_fork_reinit(self):
        self._lock._at_fork_reinit()
        self._waiters = None

    def __repr__(self):
        w = self._waiters
        return "<Condition(%s, %d)>" % (self._lock, len(w.wq) if w else 0)

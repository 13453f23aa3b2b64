"""Event, AsyncResult and call_threadsafe.

``Event`` has the interface of ``threading.Event``; ``AsyncResult`` that of
gevent's (a one-shot result slot that any number of tasklets wait on).
Another OS thread may call ``Event.set``, ``AsyncResult.set`` and
``AsyncResult.set_exception``: the flag changes at once and the waiting
tasklets are woken through their hub's thread-safe wake-up.

The tasklets waiting on one object must belong to one OS thread; the object
moves to another thread's hub when nobody waits on it. A tasklet waiting
without a timeout in the main tasklet, with only another OS thread left to
wake it, gets ``LoopExit`` as with any other wait: give it a timeout.
"""

import threading as _threading
from time import monotonic as _monotonic

from ptsevent import _core
from ptsevent.locks import _adopt
from ptsevent.patch._registry import os_thread_ident as _get_ident

__all__ = ["Event", "AsyncResult", "call_threadsafe"]


def call_threadsafe(thread, fn, *args):
    """Run fn(*args) in a new tasklet of the hub of OS thread ``thread``.

    ``thread`` is a ``threading.Thread`` or a thread identifier
    (``threading.get_ident()``). Any thread may call it; it returns at once.
    RuntimeError if that thread has no running ptsevent hub."""
    if isinstance(thread, _threading.Thread):
        # A Thread started under ptsevent.patch is a tasklet: its hub is
        # that of the OS thread it runs in.
        ident = getattr(thread, "_ptsevent_os_ident", None) or thread.ident
        if ident is None:
            raise RuntimeError(f"{thread!r} has not been started")
    else:
        ident = thread
    _core.call_threadsafe(ident, fn, *args)


def _wait_flag(obj, timeout):
    """Wait until obj._flag is set (True) or the timeout (False).

    obj has _flag, _gen (bumped by every set) and _waiters. A wake-up
    without a set since the wait began (a notification passed on by an
    interrupted waiter) waits again for what is left of the timeout."""
    if timeout is not None and not timeout > 0:
        return obj._flag  # as threading: no waiting at all
    w = obj._waiters
    if w is None or w.tid != _get_ident():
        w = obj._waiters = _adopt(w, obj)
    # Read after publishing _waiters, see locks._Waiters.
    gen = obj._gen
    if obj._flag:
        return True
    wq = w.wq
    deadline = None if timeout is None else _monotonic() + timeout
    while True:
        notified = wq.wait(timeout)
        if obj._gen != gen or obj._flag:
            return True
        if not notified:
            return False
        if deadline is not None:
            timeout = deadline - _monotonic()
            if timeout <= 0:
                return False


class Event:
    """A flag tasklets wait for, as ``threading.Event``."""

    __slots__ = ("_flag", "_gen", "_waiters", "__weakref__")

    def __init__(self):
        self._flag = False
        self._gen = 0
        self._waiters = None

    def is_set(self):
        """True if the flag is set."""
        return self._flag

    def isSet(self):
        """Deprecated alias of is_set()."""
        import warnings
        warnings.warn('isSet() is deprecated, use is_set() instead',
                      DeprecationWarning, stacklevel=2)
        return self.is_set()

    def set(self):
        """Set the flag and wake every waiting tasklet (any thread)."""
        if self._flag:
            return
        self._gen += 1
        self._flag = True
        w = self._waiters  # read after the flag, see locks._Waiters
        if w is not None:
            w.notify_all()

    def clear(self):
        """Reset the flag."""
        self._flag = False

    def wait(self, timeout=None):
        """Block until the flag is set or the timeout passes; return True if
        it was set (before or during the wait), False on timeout."""
        if self._flag:
            return True
        return _wait_flag(self, timeout)

    def _at_fork_reinit(self):
        self._flag = False
        self._waiters = None

    def __repr__(self):
        cls = type(self)
        status = 'set' if self._flag else 'unset'
        return f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: {status}>"


class AsyncResult:
    """A one-shot result: set(value) or set_exception(exc) once ready, and
    any number of tasklets wait for it with get() or wait().

    As gevent's AsyncResult, except that get() raises the built-in
    TimeoutError (not a Timeout) when no result comes in time or when
    block is false and none is there. Setting again replaces the result.
    """

    __slots__ = ("_flag", "_gen", "_waiters", "_value", "_exc_info",
                 "__weakref__")

    def __init__(self):
        self._flag = False
        self._gen = 0
        self._waiters = None
        self._value = None
        self._exc_info = None

    def _wake(self):
        self._gen += 1
        self._flag = True
        w = self._waiters
        if w is not None:
            w.notify_all()

    def set(self, value=None):
        """Store value and wake every waiter (any thread)."""
        self._value = value
        self._exc_info = None
        self._wake()

    def set_exception(self, exception, exc_info=None):
        """Store an exception (instance or class) that get() will raise, and
        wake every waiter (any thread). exc_info, if given, is the
        (type, value, traceback) to raise it with."""
        if isinstance(exception, type) and issubclass(exception, BaseException):
            exception = exception()
        elif not isinstance(exception, BaseException):
            raise TypeError("exceptions must derive from BaseException, not "
                            f"{type(exception).__name__}")
        if exc_info is None:
            exc_info = (type(exception), exception, exception.__traceback__)
        else:
            exc_info = tuple(exc_info)
        self._value = None
        self._exc_info = exc_info
        self._wake()

    def ready(self):
        """True once set() or set_exception() was called."""
        return self._flag

    def successful(self):
        """True once set() (not set_exception()) was called."""
        return self._flag and self._exc_info is None

    @property
    def value(self):
        """The value given to set(), else None."""
        return self._value

    @property
    def exception(self):
        """The exception given to set_exception(), else None."""
        exc_info = self._exc_info
        return exc_info[1] if exc_info is not None else None

    @property
    def exc_info(self):
        """(type, value, traceback) of the stored exception, else ()."""
        return self._exc_info or ()

    def get(self, block=True, timeout=None):
        """Return the value, or raise the stored exception; wait for it
        first unless block is false. TimeoutError if none comes."""
        if not self._flag:
            if not block or not _wait_flag(self, timeout):
                raise TimeoutError("no result from the AsyncResult in time")
        exc_info = self._exc_info
        if exc_info is not None:
            raise exc_info[1].with_traceback(exc_info[2])
        return self._value

    def get_nowait(self):
        """get(block=False)."""
        return self.get(block=False)

    def wait(self, timeout=None):
        """Wait until ready or the timeout; return value (None if not ready
        or if an exception was stored), as gevent."""
        if not self._flag:
            _wait_flag(self, timeout)
        return self._value

    def __repr__(self):
        cls = type(self)
        if not self._flag:
            state = "unset"
        elif self._exc_info is not None:
            state = f"exception={self._exc_info[1]!r}"
        else:
            state = f"value={self._value!r}"
        return f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: {state}>"

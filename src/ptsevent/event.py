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

from ptsevent import _core

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


# Event is in C++ (src/core/hub/event.cpp), on the one waiter protocol of
# the core (waiters.h).
Event = _core.Event


class AsyncResult:
    """A one-shot result: set(value) or set_exception(exc) once ready, and
    any number of tasklets wait for it with get() or wait().

    As gevent's AsyncResult, except that get() raises the built-in
    TimeoutError (not a Timeout) when no result comes in time or when
    block is false and none is there. Setting again replaces the result.
    """

    __slots__ = ("_event", "_value", "_exc_info", "__weakref__")

    def __init__(self):
        self._event = Event()  # the waits; set once ready
        self._value = None
        self._exc_info = None

    @property
    def _waiters(self):
        # None before any wait, else (wq: waiting tasklets, woken).
        return self._event._waiters

    def _wake(self):
        # Setting again replaces the result: the waiters of an event that
        # is already set have all been woken.
        self._event.set()

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
        return self._event.is_set()

    def successful(self):
        """True once set() (not set_exception()) was called."""
        return self._event.is_set() and self._exc_info is None

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
        if not self._event.is_set():
            if not block or not self._event.wait(timeout):
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
        if not self._event.is_set():
            self._event.wait(timeout)
        return self._value

    def __repr__(self):
        cls = type(self)
        if not self._event.is_set():
            state = "unset"
        elif self._exc_info is not None:
            state = f"exception={self._exc_info[1]!r}"
        else:
            state = f"value={self._value!r}"
        return f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: {state}>"

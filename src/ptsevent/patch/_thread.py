"""The cooperative replacements of ``_thread`` and ``threading``.

A "thread" started after patching is a tasklet of the hub of the OS thread
that started it. Its identity is the tasklet's: ``get_ident()`` is
``id(tasklet)`` for a spawned tasklet and the OS thread's own identifier
for the main tasklet of an OS thread, so the main tasklet of the main
thread keeps the identifier ``threading.main_thread()`` was registered
with, and ``threading.current_thread()`` finds it.

The standard ``threading.Thread`` class is kept (subclasses and objects
made before patching keep working): it starts, identifies and joins its
thread through ``threading``'s module-level names (``_start_new_thread``,
``get_ident``, ``_set_sentinel``, ``Lock`` ...), and those are the names
patching replaces. ``_set_sentinel`` returns a lock that the thread
holds while its tasklet runs, released when the tasklet ends:
``Thread.join`` and the interpreter's ``threading._shutdown`` (which
joins non-daemon threads at exit) wait for it cooperatively.
"""

import sys
import traceback
from _thread import _count as _os_count
from _thread import get_ident as _os_get_ident

from ptsevent import _core

_getcurrent = _core.getcurrent
_Tasklet = _core.Tasklet
_Lock = _core.Lock

# The sentinel lock of a thread's tasklet, in the tasklet's __dict__.
_SENTINEL = "_ptsevent.thread.sentinel"


def get_ident():
    """The current "thread": the running tasklet, or the OS thread for its
    main tasklet. Non-zero, unique among live tasklets and threads."""
    try:
        t = _getcurrent()
    except RuntimeError:
        return _os_get_ident()  # the hub itself (a callback of the loop)
    if t.is_main:
        return _os_get_ident()
    return id(t)


# Threads started through start_new_thread whose tasklet has not ended.
_running = 0


def _count():
    """_thread._count(): the threads started through _thread that are still
    running: the tasklet threads, and OS threads started before patching;
    not ptsevent's own pool threads (threading_helper's leak checks compare
    it before and after a test, and a DNS lookup may start a pool thread)."""
    from ptsevent.threadpool import os_threads

    return _running + max(0, _os_count() - os_threads())


def _run(function, args, kwargs):
    global _running
    try:
        function(*args, **kwargs)
    except (SystemExit, _core.TaskletExit):
        pass
    except BaseException:  # noqa: BLE001 - reported as _thread reports it
        print(f"Exception ignored in thread started by: {function!r}",
              file=sys.stderr)
        traceback.print_exc()
    finally:
        _running -= 1
        lock = _getcurrent().__dict__.pop(_SENTINEL, None)
        if lock is not None and lock.locked():
            lock.release()


def start_new_thread(function, args, kwargs=None):
    """Start function(*args, **kwargs) in a new tasklet; return its ident."""
    if not isinstance(args, tuple):
        raise TypeError("2nd arg must be a tuple")
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict):
        raise TypeError("optional 3rd arg must be a dictionary")
    global _running
    t = _Tasklet(_run, function, args, kwargs)
    t.start()
    _running += 1
    return id(t)


def make_invoke_excepthook(std_make):
    """threading._make_invoke_excepthook, whose hook says nothing about a
    thread's tasklet that was killed (TaskletExit: a kill(), or the
    interpreter's exit ending a daemon thread), as nothing is said about a
    killed tasklet or a daemon OS thread that stops at exit."""
    def _make_invoke_excepthook():
        invoke = std_make()

        def invoke_excepthook(thread):
            if isinstance(sys.exc_info()[1], _core.TaskletExit):
                return
            invoke(thread)

        return invoke_excepthook

    return _make_invoke_excepthook


def _set_sentinel():
    """A lock that the thread acquires (threading does it) and that is
    released when the calling thread's tasklet ends."""
    lock = _Lock()
    t = _getcurrent()
    if not t.is_main:
        t.__dict__[_SENTINEL] = lock
    return lock


def allocate_lock():
    """A new cooperative lock (ptsevent.Lock)."""
    return _Lock()


def _make_current_thread(threading):
    active = threading._active
    dummy = threading._DummyThread

    def current_thread():
        """The Thread object of the calling tasklet: a dummy one for a
        tasklet not started through threading, forgotten when it ends."""
        ident = get_ident()
        try:
            return active[ident]
        except KeyError:
            pass
        thread = dummy()
        t = _getcurrent()
        if not t.is_main:
            t.link(lambda _t, ident=ident, thread=thread:
                   active.get(ident) is thread and active.pop(ident, None))
        return thread

    return current_thread


def thread_set_ident(self):
    """Thread._set_ident: the tasklet's ident, and the OS thread's for
    ptsevent.call_threadsafe(thread, ...)."""
    self._ident = get_ident()
    self._ptsevent_os_ident = _os_get_ident()


thread_set_ident.__name__ = "_set_ident"
thread_set_ident.__qualname__ = "Thread._set_ident"

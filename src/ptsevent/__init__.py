"""ptsevent: coroutine-based non-blocking network I/O for Python 3.

Blocking-style code runs in lightweight tasklets scheduled by a C++ hub over
libevent and greenlet. This package is the public API; the core lives in
``ptsevent._core``.
"""

from ptsevent._core import (
    BlockingSwitchOutError,
    LoopExit,
    Tasklet,
    TaskletExit,
    getcurrent,
    hub_stats,
    sleep,
    spawn,
    spawn_later,
    wait_read,
    wait_write,
)
from ptsevent.hub import joinall, killall, signal_handler
from ptsevent.threadpool import run_in_thread
from ptsevent.timeout import Timeout, with_timeout
from ptsevent.event import AsyncResult, Event, call_threadsafe
from ptsevent.locks import BoundedSemaphore, Condition, Lock, RLock, Semaphore
from ptsevent.queue import LifoQueue, PriorityQueue, Queue
from ptsevent._local import local  # ptsevent.local is the class, as threading.local
from ptsevent.pool import Group, Pool

# The original API's file functions: ptsevent.open is ptsevent.os.open (a
# builtins.open that does not block the hub on pipes, FIFOs, ttys and
# devices), with fdopen and the file_compat alias. Left out of __all__ so
# that a star import does not shadow the builtin open.
from ptsevent.os import fdopen, file_compat, open  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    # tasklets and waiting
    "BlockingSwitchOutError",
    "LoopExit",
    "Tasklet",
    "TaskletExit",
    "Timeout",
    "getcurrent",
    "hub_stats",
    "joinall",
    "killall",
    "run_in_thread",
    "signal_handler",
    "sleep",
    "spawn",
    "spawn_later",
    "wait_read",
    "wait_write",
    "with_timeout",
    # coordination
    "AsyncResult",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "LifoQueue",
    "Lock",
    "PriorityQueue",
    "Queue",
    "RLock",
    "Semaphore",
    "call_threadsafe",
    # bounded concurrency, tasklet-local storage
    "Group",
    "Pool",
    "local",
]

# The modules that mirror a standard one are attributes of the package as
# well (``ptsevent.socket.create_connection``), imported on first use so that
# ``import ptsevent`` stays cheap. ptsevent.gunicorn is only for gunicorn's
# -k option and needs gunicorn installed: it is imported by name only.
_SUBMODULES = frozenset({"hub", "os", "select", "socket", "ssl", "stackless",
                         "wsgi"})


def __getattr__(name):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES)

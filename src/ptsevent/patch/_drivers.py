"""Database drivers whose waits are C code that patching cannot reach,
switched to a cooperative wait when they are imported.

psycopg (3) chooses its wait function when ``psycopg.waiting`` is
imported: a C one (``wait_c``, a blocking poll in C) unless it detects a
patched select. Under ptsevent it is switched to ``wait_poll``, which
calls ``select.poll()`` at each wait, and that is ptsevent's once select
is patched (``wait_conn``, used to connect, already uses the patched
selectors). A ``PSYCOPG_WAIT_FUNC`` set in the environment is the
user's choice and is kept.

psycopg2 waits in C too, unless a wait callback is set
(``psycopg2.extensions.set_wait_callback``): ptsevent sets one that polls
the connection and waits for its descriptor cooperatively. Note that a
wait callback makes psycopg2 use its asynchronous protocol, which does not
support COPY or a connection's ``async_`` mode.

Either module may be imported before or after patching: what is imported
later is switched as soon as its import completes.
"""

import importlib.abc
import os
import sys

from ptsevent import _core
from ptsevent.patch._registry import replace


def _psycopg_waiting(waiting):
    if "PSYCOPG_WAIT_FUNC" in os.environ:
        return
    if getattr(waiting, "wait_c", None) is not None and waiting.wait is waiting.wait_c:
        replace(waiting.__name__, "wait", waiting.wait_poll)


def psycopg2_wait(conn, timeout=None):
    """psycopg2's wait callback: poll the connection, wait cooperatively
    for its descriptor until the operation is complete."""
    from psycopg2 import OperationalError, extensions

    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        if state == extensions.POLL_READ:
            _core.wait_read(conn.fileno(), timeout)
        elif state == extensions.POLL_WRITE:
            _core.wait_write(conn.fileno(), timeout)
        else:
            raise OperationalError(f"unexpected state from connection poll: {state!r}")


def _psycopg2_extensions(extensions):
    if extensions.get_wait_callback() is None:
        extensions.set_wait_callback(psycopg2_wait)


_FIXES = {"psycopg.waiting": _psycopg_waiting,
          "psycopg2.extensions": _psycopg2_extensions}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a fix on a module as soon as its import has executed it."""

    def __init__(self):
        self.pending = dict(_FIXES)

    def find_spec(self, name, path, target=None):
        fix = self.pending.get(name)
        if fix is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        del self.pending[name]
        exec_module = loader.exec_module

        def exec_then_fix(module):
            exec_module(module)
            fix(module)

        # A file loader is an object of this module's own.
        loader.exec_module = exec_then_fix
        return spec


_hook = None


def patch_drivers():
    """Switches the drivers imported so far; the others when imported."""
    global _hook
    if _hook is not None:
        return
    _hook = _AfterImport()
    for name, fix in _FIXES.items():
        module = sys.modules.get(name)
        if module is not None:
            del _hook.pending[name]
            fix(module)
    sys.meta_path.insert(0, _hook)

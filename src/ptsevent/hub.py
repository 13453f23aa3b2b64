"""Process-level glue for the C++ hub: error reporting, fork, exit, and the
helpers that compose tasklet primitives (joinall, killall, signal_handler)."""

import atexit
import logging
import os
import signal as _signal

from ptsevent import _core
from ptsevent._deadline import deadline as _deadline
from ptsevent._deadline import remaining as _remaining

logger = logging.getLogger("ptsevent")

# The real signal.signal, bound before any patching: ptsevent.patch may make
# the module's one install handlers that run in tasklets, while this module
# installs the handler that the hub itself calls.
_signal_signal = _signal.signal


def _report_error(tasklet, exc):
    # Through logging, so an application redirects or silences it as any
    # other log record; with no logging configured, Python's last-resort
    # handler prints it to stderr with the traceback.
    logger.error("uncaught exception in %r", tasklet,
                 exc_info=(type(exc), exc, exc.__traceback__))


_core._set_error_handler(_report_error)


def _after_fork_in_child():
    _core._after_fork()
    from ptsevent import threadpool
    threadpool._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _shutdown():
    # Kill what is still running (each gets TaskletExit at its wait point and
    # may clean up), then free the hub with nothing left registered.
    try:
        live = _core._live_tasklets()
        if live:
            killall(live, block=True, timeout=1.0)
    except BaseException:  # noqa: BLE001 - exiting anyway
        logger.debug("error while killing tasklets at exit", exc_info=True)
    _core._shutdown()


atexit.register(_shutdown)


def joinall(tasklets, timeout=None, raise_error=False):
    """Wait until every tasklet is dead, or the timeout passes.

    Returns the list of tasklets that are dead. With raise_error, the
    exception of the first tasklet to fail is raised as soon as it fails."""
    tasklets = list(tasklets)
    for t in tasklets:
        if not isinstance(t, _core.Tasklet):
            raise TypeError(f"expected a Tasklet, got {type(t).__name__}")
    if raise_error:
        _join_any_failure(tasklets, timeout)
    else:
        end = _deadline(timeout)
        for t in tasklets:
            if end is None:
                t.join()
            else:
                left = _remaining(end)
                if left <= 0:
                    break
                t.join(left)
    return [t for t in tasklets if t.dead]


def _join_any_failure(tasklets, timeout):
    for t in tasklets:
        if t.dead and t.exception is not None:
            raise t.exception
    pending = [t for t in tasklets if not t.dead]
    if not pending:
        return
    state = {"left": len(pending), "failure": None, "waiter": _core.Waiter()}

    def on_done(t):
        state["left"] -= 1
        if t.exception is not None and state["failure"] is None:
            state["failure"] = t.exception
        waiter = state["waiter"]
        if waiter is not None and (state["failure"] is not None
                                   or state["left"] == 0):
            state["waiter"] = None
            waiter.switch()

    for t in pending:
        t.link(on_done)
    try:
        try:
            state["waiter"] and state["waiter"].get(timeout)
        except TimeoutError:
            pass
        if state["failure"] is not None:
            raise state["failure"]
    finally:
        state["waiter"] = None
        for t in pending:
            t.unlink(on_done)


def killall(tasklets, exception=_core.TaskletExit, block=True, timeout=None):
    """Kill every tasklet; with block, wait (up to timeout) until all are dead."""
    tasklets = list(tasklets)
    for t in tasklets:
        if not isinstance(t, _core.Tasklet):
            raise TypeError(f"expected a Tasklet, got {type(t).__name__}")
    current = _core.getcurrent()
    for t in tasklets:
        if t is not current:
            t.kill(exception, block=False)
    if block:
        joinall([t for t in tasklets if t is not current], timeout=timeout)


class SignalHandler:
    """What signal_handler() returns; cancel() restores the previous handler."""

    def __init__(self, signum, handler, args, kwargs):
        self.signum = signum
        self.handler = handler
        self.args = args
        self.kwargs = kwargs
        self._previous = _signal_signal(signum, self._on_signal)
        self._active = True
        _core._add_signal_handlers(1)

    def _on_signal(self, signum, frame):
        # Runs in the hub (or between bytecodes of a tasklet): only spawn.
        _core.spawn(self.handler, *self.args, **self.kwargs)

    def cancel(self):
        if self._active:
            self._active = False
            _core._add_signal_handlers(-1)
            _signal_signal(self.signum, self._previous)

    def __repr__(self):
        return f"<SignalHandler {self.signum} -> {self.handler!r}>"


def signal_handler(signum, handler, *args, **kwargs):
    """Run handler(*args, **kwargs) in a new tasklet each time signum arrives."""
    if not callable(handler):
        raise TypeError(f"'{type(handler).__name__}' object is not callable")
    return SignalHandler(signum, handler, args, kwargs)

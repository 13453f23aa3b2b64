"""The blocked-hub warning: a real OS thread that watches a hub's turns.

A WSGI app that makes a blocking call which is not cooperative (an
unpatched ``time.sleep``, a C database driver) holds its thread's hub:
every other request of the process waits, and nothing says why. The hub
publishes when it last polled and whether it is waiting for events now
(``_core.hub_turns``); a watchdog thread reads that a few times per
threshold. When the hub has been held longer than the threshold inside a
call of a watched app, it logs one WARNING on the ``ptsevent.wsgi``
logger naming the request's route (method and path) and the innermost
frame of the hub's thread (file:line function: the blocking call's
caller), once per route.

The watchdog costs the hub nothing (the hub stores three numbers per
poll either way) and wakes every threshold/4 (at most every 0.25 s),
taking the GIL for a few microseconds. One watchdog per hub thread,
shared by the servers of that thread.
"""

import logging
import os
import sys
import time

from ptsevent import _core
from ptsevent.patch import original

log = logging.getLogger("ptsevent.wsgi")

ENV_THRESHOLD = "PTSEVENT_BLOCKED_WARNING"
DEFAULT_THRESHOLD = 1.0
MAX_ROUTES = 100  # distinct routes reported, then silence


def default_threshold():
    """Seconds from PTSEVENT_BLOCKED_WARNING (0 disables), else 1.0."""
    text = os.environ.get(ENV_THRESHOLD, "").strip()
    if not text:
        return DEFAULT_THRESHOLD
    try:
        value = float(text)
    except ValueError:
        log.warning("ignoring %s=%r: not a number of seconds", ENV_THRESHOLD, text)
        return DEFAULT_THRESHOLD
    return max(value, 0.0)


def _app_code(app):
    """The code object that runs when the server calls app(environ,
    start_response): the function's, or its class's __call__."""
    fn = getattr(app, "__func__", app)
    code = getattr(fn, "__code__", None)
    if code is None:
        # The class's __call__ function itself, not a callable() test.
        call = getattr(type(app), "__call__", None)  # noqa: B004
        code = getattr(getattr(call, "__func__", call), "__code__", None)
    return code


def _environ_of(frame):
    """The WSGI environ among the arguments of an app's frame."""
    code = frame.f_code
    local = frame.f_locals
    for name in code.co_varnames[:code.co_argcount]:
        value = local.get(name)
        if isinstance(value, dict) and "REQUEST_METHOD" in value:
            return value
    return None


def _where(frame):
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno} {code.co_name}"


class _Watchdog:
    def __init__(self, ident):
        self.ident = ident
        self.apps = {}  # code object -> number of servers with that app
        self.thresholds = []
        self.reported = set()  # route keys
        self.stall = None  # the hub's passes when the current stall was seen
        # Real OS primitives, whatever is patched: the watchdog must run
        # while the hub's thread is stuck.
        self.stop = original("_thread", "allocate_lock")()
        self.stop.acquire()
        self.running = original("_thread", "allocate_lock")()
        self.running.acquire()
        original("_thread", "start_new_thread")(self._run, ())

    @property
    def threshold(self):
        # Read from the watchdog thread while a server may detach.
        return min(self.thresholds, default=DEFAULT_THRESHOLD)

    def _run(self):
        try:
            while not self.stop.acquire(True, min(self.threshold / 4, 0.25)):
                self.check()
        finally:
            self.running.release()

    def check(self):
        turns = _core.hub_turns(self.ident)
        if turns is None:
            return
        passes, last_poll, polling = turns
        if polling or passes == 0 or passes == self.stall:
            return
        held = time.monotonic() - last_poll
        threshold = self.threshold
        if held < threshold:
            return
        self.stall = passes  # one look per stall
        frame = sys._current_frames().get(self.ident)
        innermost, app_frame = frame, None
        while frame is not None:
            if frame.f_code in self.apps:
                app_frame = frame  # keep going: the outermost one
            frame = frame.f_back
        if app_frame is None:
            return  # not inside a request's app call
        environ = _environ_of(app_frame) or {}
        method = environ.get("REQUEST_METHOD", "?")
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        route = (method, path)
        if route in self.reported or len(self.reported) >= MAX_ROUTES:
            return
        self.reported.add(route)
        last = len(self.reported) == MAX_ROUTES
        log.warning(
            "the app held the hub for %.1f s (threshold %.1f s) in %s %s, "
            "blocked at %s: a blocking call that is not cooperative stalls "
            "every request of this process (patch it: ptsevent.patch."
            "patch_all(), or run it with ptsevent.run_in_thread); reported "
            "once per route%s", held, threshold, method, path,
            _where(innermost),
            "; no more routes will be reported" if last else "")


_watchdogs = {}  # hub thread ident -> _Watchdog
# A forked child has none of its parent's watchdog threads (and its main
# thread keeps the parent's ident): it starts its own.
os.register_at_fork(after_in_child=_watchdogs.clear)


def attach(app, threshold, ident):
    """Watches calls of `app` on the hub of thread `ident`; returns a
    handle for detach(). None (nothing to do) when threshold is 0."""
    if not threshold or threshold <= 0:
        return None
    code = _app_code(app)
    if code is None:
        return None
    dog = _watchdogs.get(ident)
    if dog is None:
        dog = _watchdogs[ident] = _Watchdog(ident)
    dog.apps[code] = dog.apps.get(code, 0) + 1
    dog.thresholds.append(threshold)
    return (ident, code, threshold)


def detach(handle):
    """Stops watching what attach() returned; the last one stops the
    thread (and waits for it)."""
    if handle is None:
        return
    ident, code, threshold = handle
    dog = _watchdogs.get(ident)
    if dog is None:
        return
    dog.thresholds.remove(threshold)
    dog.apps[code] -= 1
    if not dog.apps[code]:
        del dog.apps[code]
    if not dog.thresholds:
        del _watchdogs[ident]
        dog.stop.release()
        dog.running.acquire()  # its thread has ended
        dog.running.release()

"""patch_signal: signal handlers run in tasklets; user wake-up fds chained.

CPython runs a Python signal handler in the main thread between two
bytecodes of whatever runs there: under ptsevent that is the hub or some
tasklet, so a handler that blocks (sleeps, talks to a socket, takes a
lock) would hold every tasklet of the thread. Once patched, a handler given
to ``signal.signal`` runs in a tasklet of its own, where it may block
cooperatively. An exception it raises (``sys.exit()`` in a SIGTERM handler)
goes to the main tasklet, where the standard library would have raised it.

The hub itself owns CPython's wake-up fd (``_signal.set_wakeup_fd``): it
is how a signal ends the hub's poll. ``signal.set_wakeup_fd`` of user code
(asyncio, gunicorn's arbiter) no longer takes it away: the hub forwards
the signal bytes it reads to the descriptor the user set, and the function
returns what the user set before, as the standard one does.
"""

import os
import signal as _signal

from ptsevent import _core


class _InTasklet:
    """The handler installed with CPython: starts the user's handler in a
    new tasklet. signal.getsignal and signal.signal return the user's."""

    __slots__ = ("handler",)

    def __init__(self, handler):
        self.handler = handler

    def __call__(self, signum, frame):
        # In the hub or between a tasklet's bytecodes: only spawn.
        _core.spawn(_run_handler, self.handler, signum, frame)

    def __repr__(self):
        return f"<handler run in a tasklet: {self.handler!r}>"


# The tasklets in signal.pause(): woken when a handler has run.
_pausing = None


def _run_handler(handler, signum, frame):
    try:
        handler(signum, frame)
    except _core.TaskletExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - handed to the main tasklet
        main = _core.getmain()
        if main.dead or main is _core.getcurrent():
            raise
        # Where CPython would have raised it: in the main thread's code.
        main.kill(exc, block=False)
    finally:
        if _pausing is not None:
            _pausing.notify_all()


def _as_signal_function(function, name):
    # Named as the function it replaces, so that it is found (and pickled
    # by reference) as signal.<name>.
    function.__module__ = "signal"
    function.__name__ = function.__qualname__ = name
    return function


def pause():
    """Suspend the calling tasklet until a signal's handler has run.

    The standard pause() returns once the interpreter has run the handler;
    a handler installed through signal.signal runs in a tasklet of its own,
    so this waits for that tasklet to finish. A signal with the default
    SIGINT handler raises KeyboardInterrupt here, in the main tasklet."""
    global _pausing
    if _pausing is None:
        _pausing = _core.WaitQueue()
    _pausing.wait()


def make_then_run_handlers(std_function, module):
    """raise_signal and interrupt_main: the standard function, then one turn
    of the hub, so that the handler's tasklet (started by the signal) runs
    before the call returns, as the standard handler would have run."""
    def function(*args):
        std_function(*args)
        _core.sleep(0)

    function.__doc__ = std_function.__doc__
    function.__module__ = module
    function.__name__ = function.__qualname__ = std_function.__name__
    return function


def _unwrap(handler):
    return handler.handler if isinstance(handler, _InTasklet) else handler


def make_signal(std_signal):
    def signal(signalnum, handler, /):
        if callable(handler) and handler is not _signal.default_int_handler:
            # default_int_handler stays as it is: KeyboardInterrupt is
            # raised by the hub in the main tasklet, as before.
            installed = _InTasklet(handler)
        else:
            installed = handler
        previous = std_signal(signalnum, installed)
        was = isinstance(previous, _InTasklet)
        now = isinstance(installed, _InTasklet)
        if was != now:
            # A handler that runs in a tasklet is something that can wake
            # a waiting main tasklet (no LoopExit while one is installed).
            _core._add_signal_handlers(1 if now else -1)
        return _unwrap(previous)

    signal.__doc__ = std_signal.__doc__
    return _as_signal_function(signal, "signal")


def make_getsignal(std_getsignal):
    def getsignal(signalnum, /):
        return _unwrap(std_getsignal(signalnum))

    getsignal.__doc__ = std_getsignal.__doc__
    return _as_signal_function(getsignal, "getsignal")


def set_wakeup_fd(fd, /, *, warn_on_full_buffer=True):
    """Sets the descriptor that receives one byte (the signal number) per
    signal; -1 for none. Returns the one set before. The hub keeps its own
    wake-up descriptor and forwards the bytes to this one. Bytes that do
    not fit in a full descriptor are dropped (warn_on_full_buffer is
    accepted and ignored)."""
    fd = fd.__index__()
    if fd != -1:
        os.fstat(fd)  # OSError for a descriptor that is not open
        if os.get_blocking(fd):
            raise ValueError(f"the fd {fd} must be in non-blocking mode")
    return _core._chain_wakeup_fd(fd)


_as_signal_function(set_wakeup_fd, "set_wakeup_fd")
_as_signal_function(pause, "pause")

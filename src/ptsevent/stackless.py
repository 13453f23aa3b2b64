"""The Stackless Python API on ptsevent tasklets.

    from ptsevent import stackless

    def worker(name, ch):
        for value in ch:
            print(name, "got", value)

    ch = stackless.channel()
    stackless.tasklet(worker)("w", ch)   # bound, then scheduled by the call
    stackless.tasklet(ch.send_sequence)([1, 2, 3])
    stackless.run()                      # until nothing else is runnable

A :class:`tasklet` *is* a :class:`ptsevent.Tasklet` (a subclass that only adds
the Stackless methods), so Stackless tasklets and ``ptsevent.spawn`` tasklets
are the same kind of thing: a Stackless tasklet can ``ptsevent.sleep``, use
``ptsevent.socket``, be joined (``join``, ``get``, ``value``) or killed with
``ptsevent.killall``; a spawned tasklet can use channels. :class:`channel` is
the C++ channel (``ptsevent._core.Channel``): send and receive are a
rendezvous, as in Stackless, and never run Python code of their own.

Scheduling follows Stackless: ``tasklet(f)(...)`` and ``insert()`` append
to the runnables, ``schedule()`` moves the current tasklet behind them, and a
channel transfer to a waiting tasklet obeys the channel's ``preference``
(-1, the default: a sender switches to the waiting receiver at once and goes
behind the runnables itself; 1: the sender goes on and the receiver is
appended to the runnables; 0: whoever acts goes on, the counterpart is
appended, in both directions).

Differences from Stackless
--------------------------

These remain, by design or because the core has no way to do otherwise:

* No pickling of tasklets or channels: a tasklet's frames live on a
  greenlet's C stack.
* No pre-emptive scheduling: ``run(timeout)`` raises NotImplementedError;
  there is no ``atomic``/``set_atomic``/``ignore_nesting`` (nothing pre-empts
  a tasklet, so code that used them only against ``run(timeout)`` can drop
  them), no ``set_schedule_callback``/``set_channel_callback``, no
  ``enable_softswitch``, no ``bomb`` type and no channel ``schedule_all``.
* One run queue, split in passes: channel transfers, ``tasklet(f)()``,
  ``insert()`` and ``schedule()`` all append to the end of the hub's current
  pass, in one FIFO as in Stackless; ``ptsevent.sleep(0)`` and wake-ups from
  timers, descriptors or ``kill()`` go to the next pass (after the hub polls
  libevent). After 4,096 tasklets in one pass, appends go to the next pass
  too, so I/O is never starved.
* ``run()`` returns once no other tasklet is runnable. Tasklets waiting for a
  timer or a descriptor (``ptsevent.sleep``, sockets) are not runnable, so
  ``run()`` can return before they end: ``join()`` them. The main tasklet is
  not parked in a watchdog: it stays on the run queue, behind the others.
* A wait that nothing can ever end (the main tasklet receiving on a channel
  no other tasklet will send on) raises ``ptsevent.LoopExit`` in the main
  tasklet where Stackless raises RuntimeError ("Deadlock").
* An exception that ends a tasklet is logged (logger ``"ptsevent"``) and kept
  in ``tasklet.exception`` (``tasklet.get()`` raises it) instead of being
  raised again in the main tasklet. ``TaskletExit`` is ``ptsevent.TaskletExit``
  (``greenlet.GreenletExit``, a BaseException), not a SystemExit subclass.
* A tasklet runs once: ``bind()`` and ``setup()`` raise RuntimeError once it
  has been inserted (Stackless can rebind a dead or paused tasklet).
* ``next`` and ``prev`` are None: the run queue is a C++ deque, not a chain
  of tasklets.
* ``blocked`` is True for any wait, not only on a channel (``ptsevent.sleep``,
  a socket, a lock, ``join``); ``scheduled`` is True for runnable and blocked
  tasklets (and the current one); ``paused`` for a tasklet that is alive but
  neither (bound with arguments and not inserted, removed, or suspended in
  ``schedule_remove()``).
* ``remove()`` works on a tasklet that is waiting for its first run or that
  is runnable because it called ``schedule()``: it stops before it would run
  and waits for ``insert()``. A tasklet made runnable by a channel, timer or
  descriptor cannot be taken off the run queue: RuntimeError. ``getruncount()``
  still counts a removed tasklet until its turn has passed.
* No direct switch to a given tasklet: ``tasklet.run()`` is ``insert()`` then
  ``schedule()``, and ``tasklet.switch()`` is ``insert()`` then
  ``schedule_remove()``; the target runs before the caller resumes, but after
  the tasklets that were already runnable. ``throw()`` and
  ``raise_exception()`` without ``pending`` likewise make the target
  runnable and then ``schedule()``.
* ``kill()`` without ``pending`` waits until the tasklet is dead (ptsevent's
  ``Tasklet.kill``); Stackless resumes the caller as soon as the killed
  tasklet blocks or ends, which differs only for a tasklet that blocks while
  dying. ``kill(pending=True)`` leaves a tasklet blocked on a channel counted
  in ``balance`` until it runs.
* Channels belong to the hub of the thread that made them: an operation from
  another thread raises RuntimeError (Stackless channels work across
  threads). ``preference`` outside -1..1 raises ValueError (Stackless clamps
  it). ``close()`` wakes the receivers already waiting: their ``receive()``
  raises ValueError and a ``for`` loop over the channel ends (Stackless
  leaves them blocked).
* ``tempval`` is read-only.
* ``getcurrent()`` and ``getmain()`` return the very ``ptsevent.Tasklet``
  objects. A plain one (the main tasklet, or one made by ``ptsevent.spawn``)
  is given this interface in place: its class becomes :class:`tasklet`,
  which only adds methods (and whose ``kill()`` still accepts ptsevent's
  ``kill(exception, block, timeout)``).
"""

import threading

from ptsevent import _core
from ptsevent._core import BlockingSwitchOutError, LoopExit, TaskletExit
from ptsevent.patch._registry import os_thread_ident as _get_ident

__all__ = [
    "LoopExit",
    "TaskletExit",
    "channel",
    "getcurrent",
    "getmain",
    "getruncount",
    "run",
    "schedule",
    "schedule_remove",
    "tasklet",
]

channel = _core.Channel

_Tasklet = _core.Tasklet
_getcurrent = _core.getcurrent
_hub_stats = _core.hub_stats
_schedule = _core._schedule  # to the end of this pass's runnables
_WaitQueue = _core.WaitQueue

# The default retval of schedule() and schedule_remove(): the current tasklet.
_CURRENT = object()

# Tasklets suspended in schedule() right now: remove() may take them off the
# run queue (they park when their turn comes).
_yielding = set()
_yielding_add = _yielding.add
_yielding_discard = _yielding.discard

# Per OS thread: its main tasklet, once found.
_local = threading.local()


def _unbound(*args, **kwargs):
    # The job of a tasklet until bind() gives it one.
    raise RuntimeError("the tasklet was not bound to a function")


def _start(func, args, kwargs):
    # The job of every bound stackless.tasklet: a remove() that came after the
    # tasklet was put on the run queue, before its first run, is honoured here.
    t = _getcurrent()
    if t._slp_remove:
        _park(t)
    if kwargs:
        return func(*args, **kwargs)
    return func(*args)


def _park(t):
    # Suspends t (the current tasklet) until insert() notifies it.
    q = _WaitQueue()
    t._slp_park = q
    t._slp_remove = False
    try:
        q.wait()
    finally:
        t._slp_park = None


def _current_or_none():
    # None in the hub itself (a hub callback formatting a tasklet's repr).
    try:
        return _getcurrent()
    except BlockingSwitchOutError:
        return None


def _make_exception(exc, val, tb):
    # An exception instance as `raise exc` / generator.throw(exc, val, tb).
    if isinstance(exc, BaseException):
        if val is not None:
            raise TypeError("instance exception may not have a separate value")
        inst = exc
    elif isinstance(exc, type) and issubclass(exc, BaseException):
        if val is None:
            inst = exc()
        elif isinstance(val, exc):
            inst = val
        elif isinstance(val, tuple):
            inst = exc(*val)
        else:
            inst = exc(val)
    else:
        raise TypeError(
            "exceptions must be classes or instances deriving from BaseException"
        )
    if tb is not None:
        inst = inst.with_traceback(tb)
    return inst


def _as_stackless(t):
    # A plain Tasklet gets the Stackless interface in place: tasklet adds no
    # storage (the base type already has __dict__ and weakrefs), so the
    # layouts are the same and __class__ assignment is allowed.
    if type(t) is _Tasklet:
        t.__class__ = tasklet
        t._slp_thread = _get_ident()
    return t


class tasklet(_Tasklet):
    """tasklet(func=None, args=None, kwargs=None): a Stackless tasklet.

    ``tasklet(f)`` binds f; calling the tasklet with arguments
    (``tasklet(f)(1, 2)``, the same as ``setup(1, 2)``) binds them and
    inserts it into the runnables. It is a ``ptsevent.Tasklet``: ``join``,
    ``get``, ``value``, ``exception`` and ``dead`` work as for ``spawn``.
    """

    # Stackless state, in the instance dict. The class attributes are the
    # defaults, which also serve plain Tasklets given this class by
    # getcurrent() or getmain().
    _slp_func = None  # the bound callable
    _slp_ready = False  # bound with arguments: alive, runnable once inserted
    _slp_park = None  # a WaitQueue while suspended in schedule_remove()
    _slp_remove = False  # remove() came while it was on the run queue
    _slp_thread = None

    def __new__(cls, func=None, args=None, kwargs=None):
        # ptsevent.Tasklet needs a job: a placeholder until bind().
        return _Tasklet.__new__(cls, _unbound)

    def __init__(self, func=None, args=None, kwargs=None):
        self._slp_thread = _get_ident()
        if args is None and kwargs is None and func is not None:
            # tasklet(f), the common case: bind() without its checks for a
            # tasklet that was never started.
            if not callable(func):
                raise TypeError("tasklet function must be a callable or None")
            self._bind(func)
            self._slp_func = func
        elif func is not None or args is not None or kwargs is not None:
            self.bind(func, args, kwargs)

    # --- binding and scheduling

    def bind(self, func=None, args=None, kwargs=None):
        """Bind the tasklet to func; with args and/or kwargs, also to its
        arguments (the tasklet is then alive and paused, not yet runnable).
        All None unbinds it. Returns the tasklet."""
        if func is not None and not callable(func):
            raise TypeError("tasklet function must be a callable or None")
        if args is not None and not isinstance(args, tuple):
            raise TypeError("tasklet args must be a tuple or None")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError("tasklet kwargs must be a dictionary or None")
        if self is _current_or_none():
            raise RuntimeError("can't (re)bind the current tasklet")
        if self.started:
            if self.scheduled:
                raise RuntimeError("tasklet is scheduled")
            raise RuntimeError("ptsevent cannot rebind a tasklet that has been started")
        if args is None and kwargs is None:
            self._bind(_unbound if func is None else func)
            self._slp_func = func
            self._slp_ready = False
            return self
        if func is None:
            func = self._slp_func
            if func is None:
                raise RuntimeError("the tasklet was not bound to a function")
        self._bind(_start, (func, () if args is None else args, kwargs))
        self._slp_func = func
        self._slp_ready = True
        return self

    def setup(self, *args, **kwargs):
        """Bind the arguments and insert the tasklet into the runnables."""
        if self._slp_ready or self.started:
            if self.alive:
                raise RuntimeError("tasklet is alive")
            self.bind(None, args, kwargs)  # raises: it ran already
        func = self._slp_func
        if func is None:
            raise RuntimeError("the tasklet was not bound to a function")
        # bind(None, args, kwargs) + insert() for a tasklet never started.
        self._bind(_start, (func, args, kwargs))
        self._slp_ready = True
        self._insert()
        return self

    __call__ = setup

    def insert(self):
        """Append the tasklet to the runnables unless it is scheduled already."""
        if self.blocked:
            raise RuntimeError("You cannot run a blocked tasklet")
        if not self.alive:
            raise RuntimeError("You cannot run an unbound(dead) tasklet")
        if not self.started:
            self._insert()
        elif self._slp_park is not None:
            self._slp_park.notify()
        elif self._slp_remove:
            self._slp_remove = False  # still on the run queue: it stays
        return self

    def remove(self):
        """Take the tasklet off the runnables; insert() puts it back."""
        if self.blocked:
            raise RuntimeError("You cannot remove a blocked tasklet.")
        if self is _current_or_none():
            raise RuntimeError("The current tasklet cannot be removed.")
        if not self.scheduled:
            return self
        if not self._waiting or self in _yielding:
            # Waiting for its first run, or runnable in schedule(): it parks
            # when its turn comes.
            self._slp_remove = True
            return self
        raise RuntimeError(
            "ptsevent cannot take this tasklet off the run queue: it was made "
            "runnable by a channel, a timer or a descriptor"
        )

    def run(self):
        """Insert the tasklet and schedule(): it runs before the caller resumes."""
        if self is _current_or_none():
            return None
        self.insert()
        schedule()
        return None

    def switch(self):
        """As run(), but the caller is removed (paused) until inserted again."""
        if self is _current_or_none():
            return None
        self.insert()
        schedule_remove()
        return None

    # --- exceptions

    def kill(self, *args, pending=False, **kwargs):
        """kill(pending=False): raise TaskletExit in the tasklet.

        Without pending, wait until it is dead; with pending, return at once
        (it dies when it next runs). A tasklet that is not alive is left
        alone. ptsevent's form, kill(exception=TaskletExit, block=True,
        timeout=None), is accepted too."""
        if len(args) == 1 and not kwargs and isinstance(args[0], bool):
            pending, args = args[0], ()  # Stackless: kill(True)
        if args or kwargs:
            return _Tasklet.kill(self, *args, **kwargs)
        if not self.alive:
            return None
        return _Tasklet.kill(self, TaskletExit, block=not pending)

    def throw(self, exc=None, val=None, tb=None, pending=False):
        """Raise exc (as the raise statement would) in the tasklet.

        Without pending, the caller schedule()s so that the tasklet runs
        first; with pending it is only made runnable."""
        return self._throw(_make_exception(exc, val, tb), pending)

    def raise_exception(self, exc_class, *args):
        """Raise exc_class(*args) in the tasklet, which runs before the caller
        resumes."""
        if not (isinstance(exc_class, type) and issubclass(exc_class, BaseException)):
            raise TypeError("raise_exception() needs an exception class")
        return self._throw(exc_class(*args), False)

    def _throw(self, inst, pending):
        if self is _current_or_none():
            raise inst
        if not self.alive:
            if isinstance(inst, TaskletExit):
                return None  # ending what has ended is no error
            raise RuntimeError("You cannot throw to a dead tasklet")
        started = self.started
        _Tasklet.kill(self, inst, block=False)
        if started and not pending:
            # kill() made the target runnable in the hub's next pass: yield
            # behind it there (schedule() would stay in this pass).
            _core.sleep(0)
        return None

    # --- state

    @property
    def alive(self):
        """True from binding with arguments until the tasklet ends."""
        if self.started:
            return not self.dead
        return self._slp_ready

    @property
    def blocked(self):
        """True while the tasklet waits: on a channel, or for anything else
        (a timer, a descriptor, a lock, a join)."""
        return self._waiting and not self._queued and self._slp_park is None

    @property
    def scheduled(self):
        """True if the tasklet is current, runnable or blocked."""
        if self.dead:
            return False
        if self._slp_park is not None:
            return self._queued  # insert() woke it up
        if self._slp_remove:
            return False
        return self._queued or self.blocked or self is _current_or_none()

    @property
    def paused(self):
        """True if the tasklet is alive but neither scheduled nor blocked."""
        return self.alive and not self.scheduled

    @property
    def is_current(self):
        return self is _current_or_none()

    @property
    def tempval(self):
        """The value of a channel transfer in progress."""
        return self._tempval

    @property
    def thread_id(self):
        return self._slp_thread

    @property
    def next(self):
        """Always None: the run queue is not a chain of tasklets here."""
        return None

    @property
    def prev(self):
        """Always None: the run queue is not a chain of tasklets here."""
        return None

    def __repr__(self):
        func = self._slp_func
        if func is None:
            return _Tasklet.__repr__(self)
        if self.dead:
            state = "dead"
        elif self.blocked:
            state = "blocked"
        elif self.scheduled:
            state = "scheduled"
        elif self.alive:
            state = "paused"
        else:
            state = "bound"
        name = getattr(func, "__qualname__", None) or repr(func)
        return f"<stackless.tasklet {name} at {id(self):#x}: {state}>"


# --- the scheduler


def getcurrent():
    """The running tasklet."""
    return _as_stackless(_getcurrent())


def getmain():
    """The main tasklet of this thread (its root greenlet's tasklet)."""
    return _as_stackless(_core.getmain())


def getruncount():
    """The number of runnable tasklets, the current one included."""
    return _hub_stats()["ready"] + 1


def schedule(retval=_CURRENT):
    """Move the current tasklet behind the runnables and run them.

    Returns retval (by default the current tasklet)."""
    cur = _getcurrent()
    _yielding_add(cur)
    try:
        _schedule()
    finally:
        _yielding_discard(cur)
    if getattr(cur, "_slp_remove", False):
        _park(cur)  # remove() was called meanwhile
    return cur if retval is _CURRENT else retval


def schedule_remove(retval=_CURRENT):
    """Suspend the current tasklet until tasklet.insert() is called on it.

    Returns retval (by default the current tasklet)."""
    cur = _getcurrent()
    _park(cur)
    return cur if retval is _CURRENT else retval


def run(timeout=0, threadblock=False, soft=False, ignore_nesting=False,
        totaltimeout=False):
    """Run the runnable tasklets until only the caller is left.

    Tasklets blocked on channels (or waiting for timers and descriptors) are
    not runnable: run() returns without them. ptsevent has no pre-emptive
    scheduling: a timeout raises NotImplementedError."""
    if timeout:
        raise NotImplementedError(
            "ptsevent has no pre-emptive scheduling: run(timeout) is not supported"
        )
    while _hub_stats()["ready"]:
        _schedule()


def __getattr__(name):
    # Stackless's module attributes stackless.current, .main and .runcount.
    if name == "current":
        return getcurrent()
    if name == "main":
        return getmain()
    if name == "runcount":
        return getruncount()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

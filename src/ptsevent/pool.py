"""Group and Pool: tasklets managed as a set, with a bound on how many run.

A ``Group`` tracks the tasklets it spawns (or is given) until they finish,
so that they can be waited for (``join``) or killed (``kill``) together, and
runs functions over iterables in tasklets of its own (``map``, ``imap``,
``imap_unordered``, ``apply``). A ``Pool(size)`` is a Group that never runs
more than ``size`` tasklets at once: ``spawn`` waits for a free slot, and the
waiting spawners get the slots in the order they asked for them.

The API is gevent's ``gevent.pool``, with these differences:

* ``Pool(0)``, ``Pool(-1)`` raise ValueError, as ``multiprocessing.Pool``
  and ``concurrent.futures.ThreadPoolExecutor`` do (gevent accepts 0: a pool
  where spawn waits forever); a size that is not an integer is a TypeError.
  ``Pool(None)`` has no limit; its ``free_count()`` is ``sys.maxsize``
  (gevent: 1).
* ``map``, ``imap``, ``imap_unordered`` and ``apply`` check that the
  function is callable (TypeError) and that the iterables are iterable
  before anything runs. The first failure, in the order of the results,
  propagates to the caller, and every tasklet still working for that call
  is killed; an error raised by the input iterable is raised at its place
  in the results. An exception handed to the caller this way is not also
  logged as an uncaught tasklet error (gevent logs it and raises it).
* An item whose tasklet was killed (``Group.kill()`` during a ``map``)
  raises ``concurrent.futures.CancelledError`` in the reader, as a
  cancelled future does in ``Executor.map``; gevent yields the
  ``GreenletExit`` instance as if it were a result.
* ``imap(..., maxsize=n)`` bounds the items in flight (running, or finished
  and not yet read) to n; the input is read only when an item can start, so
  a slow reader also slows the reading of the input. ``maxsize`` must be
  None or >= 1 (gevent treats 0 as no limit).
* An ``imap`` iterator that is closed (``close()``, ``with``, or dropped
  without being read to the end) kills the tasklets still working for it.
  ``Group.kill()`` also kills the tasklets that read the input of a running
  ``imap`` and those that ``apply_async`` started on a full pool.
* ``apply(...)`` interrupted in its caller (kill, Timeout) kills the tasklet
  running the function: nobody is left to take the result.
* Iterating a group lists its tasklets in the order they were added; ``join``
  from one of the group's own tasklets raises RuntimeError (it could only
  wait for itself); ``kill`` never kills the calling tasklet (as
  ``ptsevent.killall``).
* ``Pool.add(..., blocking=False)`` on a full pool raises ``PoolFull`` (a
  ``queue.Full``), as in gevent; ``wait_available`` waits until a spawn would
  not block (no spawner is waiting and a slot is free) without taking the
  slot, and returns ``free_count()``: 0 only when the timeout passed.

Not provided: gevent's ``greenlet_class``, ``map_async``, ``map_cb`` and
``apply_cb``.

As in gevent, ``spawn`` or ``map`` from a tasklet of a full pool waits for
another of its tasklets to finish (``apply`` runs inline there instead), and
``join`` does not wait for the input of an ``imap`` nobody reads yet.

A tasklet leaves its group when it is dead and the group's link callback has
run (one hub turn later); ``join`` and ``kill`` drop the dead ones at once.
"""

import sys
from collections import deque
from concurrent.futures import CancelledError
from functools import partial
from itertools import chain
from operator import index as _index
from queue import Full

from ptsevent import _core
from ptsevent._deadline import deadline as _deadline
from ptsevent._deadline import remaining as _remaining
from ptsevent.event import Event
from ptsevent.hub import joinall, killall
from ptsevent.locks import Semaphore

__all__ = ["Group", "Pool", "PoolFull"]

_getcurrent = _core.getcurrent
_spawn = _core.spawn
_Tasklet = _core.Tasklet
_TaskletExit = _core.TaskletExit
_END = object()


class PoolFull(Full):
    """Pool.add() could not get a slot: the pool is full (blocking false) or
    no slot freed up before the timeout."""


def _check_callable(fn):
    if not callable(fn):
        raise TypeError(f"'{type(fn).__name__}' object is not callable")


def _check_tasklet(t):
    if not isinstance(t, _Tasklet):
        raise TypeError(f"expected a Tasklet, got {type(t).__name__}")


def _killed_error(t):
    """What the reader of a result gets when its tasklet died without one."""
    if t.exception is not None:
        return t.exception  # killed with, or failed on, a BaseException
    return CancelledError(f"{t!r} was killed before it returned a result")


def _capture(box, func, args, kwds):
    # The result (or Exception) goes to the caller of apply(), which raises
    # it: not an uncaught error of this tasklet, so not logged as one.
    try:
        box.append((True, func(*args, **kwds)))
    except Exception as e:  # noqa: BLE001 - handed to the caller
        box.append((False, e))


class _PassValue:
    """Link callback of apply_async: callback(value) if the tasklet returned
    (not failed, not killed)."""

    __slots__ = ("callback",)

    def __init__(self, callback):
        self.callback = callback

    def __call__(self, t):
        if t.exception is None and not isinstance(t.value, _TaskletExit):
            self.callback(t.value)


class Group:
    """The tasklets spawned by (or added to) this group, until they finish.

    ``Group(tasklets=())`` starts tracking the given tasklets.
    """

    def __init__(self, tasklets=()):
        # tasklet -> callback(tasklet) run when it leaves the group dead, or
        # None. A dict: iteration follows the order tasklets were added.
        self._members = {}
        # apply_async() tasklets waiting for a slot of a full pool: join()
        # waits for them, kill() kills them.
        self._helpers = set()
        # imap() tasklets reading the input: kill() kills them; join() does
        # not wait for them (their reader drives them, maybe after join).
        self._feeders = set()
        self._dying = set()  # killed, not dead yet: not killed twice
        for t in tasklets:
            self.add(t)

    # ---------------------------------------------------------- the set

    def __len__(self):
        """The number of tasklets tracked (a group is false when empty)."""
        return len(self._members)

    def __contains__(self, tasklet):
        return tasklet in self._members

    def __iter__(self):
        """The tracked tasklets, in the order they were added (a snapshot)."""
        return iter(list(self._members))

    def __repr__(self):
        cls = type(self)
        return (f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: "
                f"{len(self._members)} tasklets>")

    def add(self, tasklet):
        """Track tasklet until it is dead (no-op if already tracked)."""
        _check_tasklet(tasklet)
        if tasklet not in self._members:
            self._track(tasklet)

    def discard(self, tasklet):
        """Stop tracking tasklet (it keeps running)."""
        if tasklet in self._members:
            del self._members[tasklet]
            self._dying.discard(tasklet)
            self._release_slot()
            tasklet.unlink(self._on_death)

    def start(self, tasklet):
        """Track the tasklet (not yet started), then start it."""
        self.add(tasklet)
        tasklet.start()

    def spawn(self, fn, /, *args, **kwargs):
        """Run fn(*args, **kwargs) in a new tasklet of the group; return it."""
        _check_callable(fn)
        self._acquire_slot()
        return self._start_member(None, fn, args, kwargs)

    def _track(self, t, hook=None):
        self._members[t] = hook
        # A dead tasklet's link runs at once (in a new tasklet): no race.
        t.link(self._on_death)

    def _start_member(self, hook, fn, args, kwargs):
        # The caller holds a slot; it is the new tasklet's, or given back.
        try:
            t = _spawn(fn, *args, **kwargs)
        except BaseException:
            self._release_slot()
            raise
        self._track(t, hook)
        return t

    def _on_death(self, t):
        # Link callback, in a tasklet of its own once t is dead.
        self._forget(t)

    def _forget(self, t):
        try:
            hook = self._members.pop(t)
        except KeyError:
            return  # discarded, or already dropped by _prune
        self._dying.discard(t)
        self._release_slot()
        if hook is not None:
            hook(t)

    def _prune(self):
        """Drop the dead tasklets now rather than when their links run."""
        for t in [t for t in self._members if t.dead]:
            self._forget(t)
        for s in (self._helpers, self._feeders, self._dying):
            s.difference_update([t for t in s if t.dead])

    # A Group has no bound: these are the hooks Pool fills in.

    def _acquire_slot(self):
        return True

    def _release_slot(self):
        pass

    def full(self):
        """True if spawn() would block: never for a Group."""
        return False

    def wait_available(self, timeout=None):
        """Wait until spawn() would not block: at once for a Group."""
        return None

    # ------------------------------------------------------ join / kill

    def join(self, timeout=None, raise_error=False):
        """Wait until every tasklet of the group is dead, or the timeout.

        True if the group became empty, False on timeout. With raise_error,
        the exception of the first failed tasklet (in the order they were
        added) among those tracked when join() was called is raised."""
        me = _getcurrent()
        if me in self._members or me in self._helpers:
            raise RuntimeError("cannot join a group from one of its own tasklets")
        watched = list(self._members) if raise_error else ()
        deadline = _deadline(timeout)
        done = False
        while True:
            live = [t for t in chain(self._helpers, self._members) if not t.dead]
            if not live:
                done = True
                break
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                break
            joinall(live, timeout=remaining)
        self._prune()
        for t in watched:
            if t.dead and t.exception is not None:
                raise t.exception
        return done

    def kill(self, exception=_TaskletExit, block=True, timeout=None):
        """Kill every tasklet of the group (not the calling one); with block,
        wait (up to timeout) until they are dead. Tasklets added while
        waiting are killed too."""
        me = _getcurrent()
        deadline = _deadline(timeout)
        try:
            while True:
                # Feeders and helpers first: they would spawn more members.
                live = [t for t in chain(self._feeders, self._helpers,
                                         self._members)
                        if t is not me and not t.dead]
                for t in live:
                    if t not in self._dying:
                        t.kill(exception, block=False)
                        self._dying.add(t)
                if not block or not live:
                    break
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    break
                joinall(live, timeout=remaining)
        finally:
            self._prune()

    def killone(self, tasklet, exception=_TaskletExit, block=True, timeout=None):
        """Kill tasklet if the group tracks it; with block, wait (up to
        timeout) until it is dead."""
        if tasklet in self._members and tasklet not in self._dying \
                and not tasklet.dead:
            tasklet.kill(exception, block=False)
            self._dying.add(tasklet)
            if block:
                tasklet.join(timeout)
        if tasklet.dead:
            self._forget(tasklet)

    # ----------------------------------------------------------- apply

    def apply(self, func, args=(), kwds=None):
        """Return func(*args, **kwds) run in a tasklet of the group, or raise
        its exception. Called from one of the group's tasklets, func runs
        right there (a full pool would otherwise wait for itself)."""
        _check_callable(func)
        args = () if args is None else tuple(args)
        kwds = {} if kwds is None else dict(kwds)
        if _getcurrent() in self._members:
            return func(*args, **kwds)
        box = []
        self._acquire_slot()
        t = self._start_member(None, _capture, (box, func, args, kwds), {})
        try:
            t.join()
        except BaseException:
            # The caller gave up (kill, Timeout): nobody wants the result.
            if not t.dead:
                t.kill(block=False)
            raise
        finally:
            if t.dead:
                self._forget(t)
        if not box:
            raise _killed_error(t)
        ok, value = box.pop()
        if ok:
            return value
        try:
            raise value
        finally:
            value = None  # no cycle through this frame

    def apply_async(self, func, args=(), kwds=None, callback=None):
        """Start func(*args, **kwds) in a tasklet and return that tasklet at
        once, even when the pool is full; callback(result) runs when it
        returns (not when it fails)."""
        _check_callable(func)
        if callback is not None:
            _check_callable(callback)
        args = () if args is None else tuple(args)
        kwds = {} if kwds is None else dict(kwds)
        if self.full():
            # spawn() would block: a helper waits for the slot instead.
            helper = _spawn(self._apply_helper, func, args, kwds, callback)
            self._helpers.add(helper)
            return helper
        t = self.spawn(func, *args, **kwds)
        if callback is not None:
            t.link(_PassValue(callback))
        return t

    def _apply_helper(self, func, args, kwds, callback):
        try:
            result = self.apply(func, args, kwds)
        finally:
            self._helpers.discard(_getcurrent())
        if callback is not None:
            callback(result)
        return result

    # -------------------------------------------------------------- map

    def map(self, func, iterable):
        """[func(x) for x in iterable], each call in a tasklet of the group;
        the first exception (in the order of iterable) is raised and the
        calls still running are killed."""
        it = _IMap(self, func, (iterable,), None, True, "map")
        try:
            return list(it)
        finally:
            it.close()

    def imap(self, func, *iterables, maxsize=None):
        """An iterator over func(*args) for args in zip(*iterables), in order,
        each call in a tasklet of the group; maxsize bounds the calls in
        flight (running, or done and not yet read)."""
        return _IMap(self, func, iterables, maxsize, True, "imap")

    def imap_unordered(self, func, *iterables, maxsize=None):
        """As imap(), yielding each result as soon as it is ready."""
        return _IMap(self, func, iterables, maxsize, False, "imap_unordered")


class _Slots(Semaphore):
    """The slots of a Pool: a fair Semaphore that also sets ``available``
    (the Event wait_available() waits on, made on demand) when a permit
    comes back with no spawner waiting for it. That includes a permit
    handed to a spawner killed before it could use it: the Semaphore
    releases that one again, through release()."""

    __slots__ = ("available",)

    def __init__(self, value):
        Semaphore.__init__(self, value)
        self.available = None

    def release(self, n=1):
        Semaphore.release(self, n)  # to the oldest waiting spawner, if any
        if self.available is not None and self._value > 0:
            self.available.set()


class Pool(Group):
    """A Group that runs at most ``size`` tasklets at once (None: no limit).

    spawn() waits for a free slot; the waiting spawners get slots in the
    order they asked (first come, first served).
    """

    def __init__(self, size=None):
        if size is not None:
            size = _index(size)  # TypeError for 2.5, "3" ...
            if size < 1:
                raise ValueError(
                    f"size must be at least 1, or None for no limit: {size!r}")
        self.size = size
        self._slots = None if size is None else _Slots(size)
        Group.__init__(self)

    def __repr__(self):
        cls = type(self)
        return (f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: "
                f"{len(self._members)} tasklets, size={self.size}>")

    def free_count(self):
        """How many tasklets can be spawned now without blocking
        (sys.maxsize without a limit)."""
        if self._slots is None:
            return sys.maxsize
        return self._slots._value

    def full(self):
        """True if spawn() would block."""
        return self._slots is not None and self._slots._value <= 0

    def wait_available(self, timeout=None):
        """Wait until spawn() would not block, or the timeout; return
        free_count() (0 when the timeout passed). The slot is not taken."""
        slots = self._slots
        if slots is None:
            return sys.maxsize
        deadline = _deadline(timeout)
        while True:
            n = slots._value
            if n > 0:
                return n
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                return 0
            if slots.available is None:
                slots.available = Event()
            slots.available.clear()
            slots.available.wait(remaining)

    def add(self, tasklet, blocking=True, timeout=None):
        """Track tasklet, taking a slot: wait for one unless blocking is
        false; PoolFull if none came (in timeout seconds)."""
        _check_tasklet(tasklet)
        if tasklet in self._members:
            return
        if not self._acquire_slot(blocking, timeout):
            raise PoolFull(f"no free slot in {self!r}")
        try:
            self._track(tasklet)
        except BaseException:
            self._release_slot()
            raise

    def start(self, tasklet, blocking=True, timeout=None):
        """add() the tasklet (not yet started), then start it."""
        self.add(tasklet, blocking, timeout)
        tasklet.start()

    def _acquire_slot(self, blocking=True, timeout=None):
        slots = self._slots
        if slots is None:
            return True
        if not blocking:
            return slots.acquire(False)
        return slots.acquire(True, timeout)

    def _release_slot(self):
        if self._slots is not None:
            self._slots.release()


# ------------------------------------------------------------------ imap


class _MapState:
    """One imap() call: the feeder tasklet reads the input and starts a
    worker tasklet (a member of the group) per item; the reader (the
    iterator's caller) takes the results.

    Kept apart from the iterator object, which the tasklets never reference,
    so that dropping the iterator closes it (see _IMap.__del__).
    """

    def __init__(self, group, func, source, ordered, maxsize):
        self.group = group
        self.func = func
        self.source = source
        self.ordered = ordered
        # ordered: index -> (ok, value); unordered: (ok, value) as they come
        self.results = {} if ordered else deque()
        self.taken = 0  # results read (ordered: the next index to read)
        self.started = 0  # items read from the input and started
        self.workers = {}  # index -> tasklet that has not delivered yet
        self.input_done = False
        self.input_error = None
        self.ready = Event()  # set on each delivery and at the input's end
        self.room = None if maxsize is None else Semaphore(maxsize)
        self.closed = False
        self.feeder = None

    def feed(self):
        group = self.group
        source = self.source
        try:
            while True:
                # Room for a result first, then the pool slot, then the
                # input: nothing is read before it can run, and no slot is
                # held while waiting for the reader.
                if self.room is not None:
                    self.room.acquire()
                group._acquire_slot()
                try:
                    args = next(source, _END)
                except BaseException:
                    group._release_slot()
                    raise
                if args is _END:
                    group._release_slot()
                    break
                index = self.started
                t = group._start_member(partial(self.on_worker_death, index),
                                        self.work, (index, args), {})
                self.workers[index] = t
                self.started = index + 1
        except _TaskletExit:
            if not self.closed:  # killed from outside (Group.kill)
                self.input_error = CancelledError(
                    "the map was killed before it read all of its input")
        except BaseException as e:  # noqa: BLE001 - raised in the reader
            self.input_error = e
        finally:
            self.source = None
            self.input_done = True
            group._feeders.discard(_getcurrent())
            self.ready.set()

    def work(self, index, args):
        try:
            value = self.func(*args)
        except Exception as e:  # noqa: BLE001 - raised in the reader
            self.deliver(index, False, e)
        else:
            self.deliver(index, True, value)

    def on_worker_death(self, index, t):
        # The worker left the group: if it did not deliver, it was killed
        # (maybe before it ever ran).
        if index in self.workers:
            self.deliver(index, False, _killed_error(t))

    def deliver(self, index, ok, value):
        if self.workers.pop(index, None) is None:
            return  # closed meanwhile
        if self.ordered:
            self.results[index] = (ok, value)
        else:
            self.results.append((ok, value))
        self.ready.set()

    def next(self):
        while True:
            if self.closed:
                raise StopIteration
            if self.ordered:
                item = self.results.pop(self.taken, None)
            else:
                item = self.results.popleft() if self.results else None
            if item is not None:
                self.taken += 1
                break
            if self.input_done and self.taken >= self.started:
                error, self.input_error = self.input_error, None
                self.close()
                if error is not None:
                    raise error
                raise StopIteration
            # No switch since the checks above: no delivery can be missed.
            self.ready.clear()
            self.ready.wait()
        if self.room is not None:
            self.room.release()
        ok, value = item
        if ok:
            return value
        self.close()
        try:
            raise value
        finally:
            value = item = None

    def close(self, block=True):
        if self.closed:
            return
        self.closed = True
        targets = [t for t in self.workers.values() if not t.dead]
        feeder = self.feeder
        if feeder is not None and not feeder.dead:
            targets.insert(0, feeder)  # first: it would start more
        self.workers.clear()
        self.results.clear()
        try:
            if targets:
                killall(targets, block=block)
        finally:
            self.group._feeders.discard(feeder)
            self.group._prune()


class _IMap:
    """The iterator that imap() and imap_unordered() return.

    close() (or leaving a ``with`` block, or dropping the iterator) kills
    the tasklets still working for it.
    """

    __slots__ = ("_state", "__weakref__")

    def __init__(self, group, func, iterables, maxsize, ordered, name):
        self._state = None
        _check_callable(func)
        if not iterables:
            raise TypeError(f"{name}() must have at least two arguments.")
        if maxsize is not None:
            maxsize = _index(maxsize)
            if maxsize < 1:
                raise ValueError(
                    f"maxsize must be at least 1, or None for no limit: {maxsize!r}")
        source = zip(*iterables)  # TypeError now if one is not iterable
        state = _MapState(group, func, source, ordered, maxsize)
        state.feeder = _spawn(state.feed)
        group._feeders.add(state.feeder)
        self._state = state

    def __iter__(self):
        return self

    def __next__(self):
        return self._state.next()

    def close(self):
        """Stop: kill the tasklets still working for this iterator and wait
        until they are dead. Further next() calls raise StopIteration."""
        self._state.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        state = self._state
        if state is None or state.closed:
            return
        try:
            _getcurrent()  # raises in the hub greenlet: close from a tasklet
        except Exception:  # noqa: BLE001
            try:
                _spawn(state.close, False)
            except Exception:  # noqa: BLE001 - hub gone: nothing runs anyway
                pass
            return
        try:
            state.close(block=False)
        except Exception:  # noqa: BLE001 - nowhere to raise from __del__
            pass

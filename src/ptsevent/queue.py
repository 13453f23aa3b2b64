"""Queue, LifoQueue and PriorityQueue for tasklets.

The interface, the ``maxsize`` semantics and the exceptions are those of the
standard ``queue`` module (``queue.Full`` and ``queue.Empty`` themselves);
subclasses customise storage through the same ``_init``/``_qsize``/``_put``
/``_get`` hooks. Blocked getters and putters are served oldest first: a put
reserves its item for the oldest waiting getter (a get frees a slot for the
oldest waiting putter), so a tasklet that did not wait cannot take it first.

Another OS thread may call ``put_nowait`` (and ``put`` on a queue that is
not full): the item is stored at once and the owning hub wakes its oldest
waiting getter. The tasklets blocked on one queue must belong to one OS
thread.
"""

import types as _types
from _thread import get_ident as _get_ident
from collections import deque as _deque
from heapq import heappop as _heappop
from heapq import heappush as _heappush
from queue import Empty, Full
from time import monotonic as _monotonic

from ptsevent.locks import Lock, _adopt

__all__ = ["Empty", "Full", "Queue", "LifoQueue", "PriorityQueue"]


class Queue:
    """A FIFO queue, as ``queue.Queue``; maxsize <= 0 means unbounded."""

    __slots__ = ("maxsize", "queue", "unfinished_tasks", "_getters",
                 "_putters", "_joiners", "_mutex", "__weakref__", "__dict__")

    def __init__(self, maxsize=0):
        self.maxsize = maxsize
        self._init(maxsize)
        self.unfinished_tasks = 0
        self._getters = None  # _Waiters of blocked get()
        self._putters = None  # _Waiters of blocked put()
        self._joiners = None  # _Waiters of join()
        self._mutex = None

    @property
    def mutex(self):
        """A Lock, for code written against queue.Queue that holds
        ``q.mutex`` while it touches ``q.queue`` directly. The queue's own
        methods do not take it: no tasklet switch happens inside them."""
        if self._mutex is None:
            self._mutex = Lock()
        return self._mutex

    __class_getitem__ = classmethod(_types.GenericAlias)

    # ------------------------------------------------------------- put

    def put(self, item, block=True, timeout=None):
        """Put item in the queue; when it is full wait (block true) up to
        timeout seconds for a free slot, else raise queue.Full."""
        maxsize = self.maxsize
        if maxsize > 0:
            p = self._putters
            reserved = p.woken if p is not None else 0
            if not block:
                if self._qsize() + reserved >= maxsize:
                    raise Full
            elif timeout is not None and timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
            elif self._qsize() + reserved >= maxsize:
                self._wait_slot(timeout)
        self._put(item)
        self.unfinished_tasks += 1
        g = self._getters
        if g is not None:
            if g.tid == _get_ident():
                # Reserve the item for the oldest waiting getter.
                if g.wq.notify(1):
                    g.woken += 1
            else:
                g.post(self._dispatch_getters)

    def put_nowait(self, item):
        """put(item, block=False)."""
        return self.put(item, False)

    def _wait_slot(self, timeout):
        p = self._putters
        if p is None or p.tid != _get_ident():
            p = self._putters = _adopt(p, self)
            # Read after publishing _putters, see locks._Waiters.
            if self._qsize() < self.maxsize:
                return
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            if not p.wait(timeout):
                raise Full
            # A slot was reserved for this tasklet; it is still there unless
            # code outside the queue's methods filled self.queue meanwhile.
            if not 0 < self.maxsize <= self._qsize():
                return
            if deadline is not None:
                timeout = deadline - _monotonic()
                if timeout <= 0:
                    raise Full

    # ------------------------------------------------------------- get

    def get(self, block=True, timeout=None):
        """Remove and return an item; when the queue is empty wait (block
        true) up to timeout seconds for one, else raise queue.Empty."""
        if block and timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        g = self._getters
        # Items reserved for woken getters are not available.
        if self._qsize() > (g.woken if g is not None else 0):
            item = self._get()
        elif not block:
            raise Empty
        else:
            self._wait_item(timeout)
            item = self._get()
        p = self._putters
        if p is not None:
            if p.tid == _get_ident():
                # Reserve the free slot for the oldest waiting putter.
                if p.wq.notify(1):
                    p.woken += 1
            else:
                p.post(self._dispatch_putters)
        return item

    def get_nowait(self):
        """get(block=False)."""
        return self.get(False)

    def _wait_item(self, timeout):
        g = self._getters
        if g is None or g.tid != _get_ident():
            g = self._getters = _adopt(g, self)
            if self._qsize():  # see locks._Waiters
                return
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            if not g.wait(timeout):
                raise Empty
            # An item was reserved for this tasklet; it is still there unless
            # code outside the queue's methods emptied self.queue meanwhile.
            if self._qsize():
                return
            if deadline is not None:
                timeout = deadline - _monotonic()
                if timeout <= 0:
                    raise Empty

    # --------------------------------------------- cross-thread dispatch

    def _dispatch_getters(self, g):
        # In the owner hub, after a put from another thread.
        g.posted = False
        if self._getters is g:
            k = min(self._qsize() - g.woken, len(g.wq))
            if k > 0:
                g.woken += g.wq.notify(k)

    def _dispatch_putters(self, p):
        p.posted = False
        if self._putters is p:
            waiting = len(p.wq)
            if self.maxsize > 0:
                waiting = min(self.maxsize - self._qsize() - p.woken, waiting)
            if waiting > 0:
                p.woken += p.wq.notify(waiting)

    # ------------------------------------------------------- task_done

    def task_done(self):
        """Mark one task taken with get() as done; ValueError if called more
        times than there were items put."""
        unfinished = self.unfinished_tasks - 1
        if unfinished < 0:
            raise ValueError('task_done() called too many times')
        self.unfinished_tasks = unfinished
        if not unfinished:
            j = self._joiners  # read after the count, see locks._Waiters
            if j is not None:
                j.notify_all()

    def join(self):
        """Block until every item put has been marked done (task_done)."""
        if not self.unfinished_tasks:
            return
        j = self._joiners
        if j is None or j.tid != _get_ident():
            j = self._joiners = _adopt(j, self)
        wq = j.wq
        while self.unfinished_tasks:
            wq.wait()

    # ------------------------------------------------------------ state

    def qsize(self):
        """The number of items in the queue."""
        return self._qsize()

    def empty(self):
        """True if the queue holds no item."""
        return not self._qsize()

    def full(self):
        """True if the queue holds maxsize items (never when unbounded)."""
        return 0 < self.maxsize <= self._qsize()

    # The storage hooks, as queue.Queue.
    def _init(self, maxsize):
        self.queue = _deque()

    def _qsize(self):
        return len(self.queue)

    def _put(self, item):
        self.queue.append(item)

    def _get(self):
        return self.queue.popleft()

    def __repr__(self):
        cls = type(self)
        return (f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x} "
                f"maxsize={self.maxsize!r} qsize={self._qsize()}>")


class PriorityQueue(Queue):
    """Retrieves the lowest entry first (heapq order), as
    ``queue.PriorityQueue``."""

    __slots__ = ()

    def _init(self, maxsize):
        self.queue = []

    def _qsize(self):
        return len(self.queue)

    def _put(self, item):
        _heappush(self.queue, item)

    def _get(self):
        return _heappop(self.queue)


class LifoQueue(Queue):
    """Retrieves the most recently added entry first, as
    ``queue.LifoQueue``."""

    __slots__ = ()

    def _init(self, maxsize):
        self.queue = []

    def _qsize(self):
        return len(self.queue)

    def _put(self, item):
        self.queue.append(item)

    def _get(self):
        return self.queue.pop()

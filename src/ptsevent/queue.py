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

from heapq import heappop as _heappop
from heapq import heappush as _heappush
from queue import Empty, Full

from ptsevent import _core

__all__ = ["Empty", "Full", "Queue", "LifoQueue", "PriorityQueue"]

# Queue is in C++ (src/core/hub/queue.cpp): put/get/join/task_done with the
# reservations described above, calling the storage hooks only when a
# subclass overrides them.
Queue = _core.Queue


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

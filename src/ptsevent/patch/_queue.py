"""The cooperative parts of the ``queue`` module.

``queue.Queue`` (and so LifoQueue, PriorityQueue and every subclass, made
before patching or after) is kept and changed in place: its ``__init__``
makes the mutex and the three conditions from ptsevent's Lock and
Condition, so ``put``/``get``/``join`` wait cooperatively while the
attributes code relies on (``mutex``, ``not_empty``, ``not_full``,
``all_tasks_done``, ``queue``, ``unfinished_tasks``) keep their meaning.
``queue.SimpleQueue`` (a C type) becomes the class below.
"""

import types

from ptsevent import _core
from ptsevent.locks import Condition

_Lock = _core.Lock


def queue_init(self, maxsize=0):
    """Queue.__init__ with cooperative locks."""
    self.maxsize = maxsize
    self._init(maxsize)
    self.mutex = _Lock()
    self.not_empty = Condition(self.mutex)
    self.not_full = Condition(self.mutex)
    self.all_tasks_done = Condition(self.mutex)
    self.unfinished_tasks = 0


queue_init.__name__ = "__init__"
queue_init.__qualname__ = "Queue.__init__"


class SimpleQueue(_core.Queue):
    """An unbounded FIFO queue, as ``queue.SimpleQueue``; get() waits
    cooperatively. Another OS thread may put() into it."""

    __slots__ = ()

    def __init__(self):
        _core.Queue.__init__(self, 0)

    __class_getitem__ = classmethod(types.GenericAlias)


SimpleQueue.__module__ = "queue"

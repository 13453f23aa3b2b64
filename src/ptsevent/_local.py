"""Tasklet-local data, as ``threading.local`` is thread-local data.

``local()`` is an object whose attributes each tasklet sees separately::

    data = local()
    data.user = "alice"        # only this tasklet sees data.user

A subclass may take ``__init__`` arguments, as with ``threading.local``:
the first time a tasklet touches the object, ``__init__`` runs in it with
the arguments given when the object was made (in the tasklet that made it,
it runs as the object is made). If it raises, it runs again at the next
access. Attributes in a subclass's ``__slots__``, and class attributes, are
shared by every tasklet, as they are shared by every thread with
``threading.local``.

"Tasklet" means ``ptsevent.getcurrent()``: every spawned tasklet, and the
main tasklet of each OS thread, has its own attributes. They live in the
Tasklet object itself, so they are freed with it (usually right when it
finishes, unless something still references the Tasklet) and reference
cycles through them are collected. When the ``local`` object is freed, its
entries are removed from the tasklets that still live.

Differences from ``threading.local`` (and from ``gevent.local``): the
first use in an OS thread creates that thread's ptsevent hub (as any other
ptsevent call), and touching a ``local`` from the hub itself (a signal
handler run in the event loop) raises ``ptsevent.BlockingSwitchOutError``,
as there is no tasklet to own the data there.
"""

from weakref import WeakSet

from ptsevent import _core

__all__ = ["local"]

_getcurrent = _core.getcurrent
_object_getattribute = object.__getattribute__
_object_setattr = object.__setattr__
_object_init = object.__init__
_MISSING = object()


class _LocalImpl:
    """The per-object bookkeeping: the key of its dict in each tasklet's
    ``__dict__``, the ``__init__`` arguments, and the tasklets that hold one.

    Only the ``local`` object references it, so it is freed with that object
    and takes the tasklets' entries with it: the key (built from ``id``) can
    then be reused by a new object without finding stale data.
    """

    __slots__ = ("key", "args", "kwargs", "tasklets", "__weakref__")

    def __init__(self, args, kwargs):
        self.key = f"_ptsevent.local.{id(self):#x}"
        self.args = args
        self.kwargs = kwargs
        self.tasklets = WeakSet()

    def create(self, tasklet, tdict):
        d = tdict[self.key] = {}
        self.tasklets.add(tasklet)
        return d

    def forget(self, tasklet, tdict):
        tdict.pop(self.key, None)
        self.tasklets.discard(tasklet)

    def __del__(self):
        key = self.key
        for t in list(self.tasklets):
            t.__dict__.pop(key, None)


def _localdict(self):
    """The calling tasklet's dict for self, made (and __init__ run) on its
    first access."""
    impl = _object_getattribute(self, "_local__impl")
    t = _getcurrent()
    tdict = t.__dict__
    d = tdict.get(impl.key)
    if d is None:
        d = impl.create(t, tdict)
        init = type(self).__init__
        if init is not _object_init:
            try:
                init(self, *impl.args, **impl.kwargs)
            except BaseException:
                impl.forget(t, tdict)  # __init__ runs again next time
                raise
    return d


def _type_lookup(cls, name):
    # What type attribute lookup finds, without calling descriptors.
    for base in cls.__mro__:
        attr = base.__dict__.get(name, _MISSING)
        if attr is not _MISSING:
            return attr
    return _MISSING


def _no_attribute(self, name):
    return AttributeError(
        f"'{type(self).__name__}' object has no attribute '{name}'",
        name=name, obj=self)


def _dict_read_only(self):
    return AttributeError(
        f"'{type(self).__name__}' object attribute '__dict__' is read-only")


class local:
    """Tasklet-local data: each tasklet sees its own attributes."""

    __slots__ = ("_local__impl", "__weakref__")

    def __new__(cls, /, *args, **kwargs):
        if (args or kwargs) and cls.__init__ is _object_init:
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        impl = _LocalImpl(args, kwargs)
        _object_setattr(self, "_local__impl", impl)
        # The creating tasklet gets its dict now: Python calls __init__
        # in it next, which must not run __init__ a second time.
        t = _getcurrent()
        impl.create(t, t.__dict__)
        return self

    # Attribute access follows object's rules (data descriptors of the
    # class, then the instance dict, then other class attributes), with the
    # calling tasklet's dict as the instance dict. The dict is looked up on
    # every access rather than swapped into the object, so that tasklets
    # of other OS threads using the same object never see each other's.

    def __getattribute__(self, name):
        d = _localdict(self)
        if name == "__dict__":
            return d
        cls = type(self)
        attr = _type_lookup(cls, name)
        if attr is not _MISSING:
            tp = type(attr)
            get = getattr(tp, "__get__", None)
            if get is not None and (hasattr(tp, "__set__")
                                    or hasattr(tp, "__delete__")):
                return get(attr, self, cls)
        value = d.get(name, _MISSING)
        if value is not _MISSING:
            return value
        if attr is not _MISSING:
            get = getattr(type(attr), "__get__", None)
            return attr if get is None else get(attr, self, cls)
        raise _no_attribute(self, name)

    def __setattr__(self, name, value):
        if name == "__dict__":
            raise _dict_read_only(self)
        d = _localdict(self)
        attr = _type_lookup(type(self), name)
        if attr is not _MISSING:
            set_ = getattr(type(attr), "__set__", None)
            if set_ is not None:
                set_(attr, self, value)
                return
        d[name] = value

    def __delattr__(self, name):
        if name == "__dict__":
            raise _dict_read_only(self)
        d = _localdict(self)
        attr = _type_lookup(type(self), name)
        if attr is not _MISSING:
            delete = getattr(type(attr), "__delete__", None)
            if delete is not None:
                delete(attr, self)
                return
        try:
            del d[name]
        except KeyError:
            raise _no_attribute(self, name) from None

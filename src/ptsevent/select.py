"""Cooperative `select`: select(), poll() and a selectors selector.

select() and poll() stand on one C++ primitive that first asks poll(2)
without waiting, then lets only the calling tasklet wait for any of the
descriptors and takes the exact revents from poll(2) again; like their
standard counterparts they see the descriptors given when the call starts.
epoll (and the selector, which is the standard EpollSelector over it) waits
for the epoll descriptor itself, so it sees registrations made while it
waits, as the standard epoll does. They validate their arguments as the
standard `select` module does.
"""

import errno as _errno
import os as _os
import select as _select
import selectors as _selectors
from select import (POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT,  # noqa: F401
                    POLLPRI, POLLRDNORM, POLLWRNORM, error)

from ptsevent import _core
from ptsevent._deadline import deadline as _deadline
from ptsevent._deadline import remaining as _remaining
from ptsevent.patch._registry import os_thread_ident as _get_ident

__all__ = ["select", "poll", "epoll", "error", "PtseventSelector",
           "PtseventPollSelector",
           "DefaultSelector",
           "POLLIN", "POLLOUT", "POLLPRI", "POLLERR", "POLLHUP", "POLLNVAL"]

# Bound at import: ptsevent.patch puts this module's epoll in `select`.
_std_epoll = _select.epoll

_READ = POLLIN | POLLHUP | POLLERR
_WRITE = POLLOUT | POLLERR


def _fd(obj):
    if isinstance(obj, int):
        fd = obj
    else:
        try:
            fileno = obj.fileno
        except AttributeError:
            raise TypeError("argument must be an int, or have a fileno() "
                            "method.") from None
        fd = fileno()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(
            f"file descriptor cannot be a negative integer ({fd})")
    return fd


def select(rlist, wlist, xlist, timeout=None):
    """Wait until descriptors are ready, as select.select, cooperatively."""
    timeout = _core.parse_timeout(timeout, "select")
    lists = [_with_fds(rlist), _with_fds(wlist), _with_fds(xlist)]
    masks = {}
    for pairs, bit in zip(lists, (POLLIN, POLLOUT, POLLPRI)):
        for _obj, fd in pairs:
            masks[fd] = masks.get(fd, 0) | bit
    ready = dict(_poll_yielding(list(masks.items()), timeout))
    if any(rev & POLLNVAL for rev in ready.values()):
        raise OSError(_errno.EBADF, _os.strerror(_errno.EBADF))
    return ([o for o, fd in lists[0] if ready.get(fd, 0) & _READ],
            [o for o, fd in lists[1] if ready.get(fd, 0) & _WRITE],
            [o for o, fd in lists[2] if ready.get(fd, 0) & POLLPRI])


def _with_fds(objs):
    """[(obj, fd)], each fileno() called once, as the standard select does:
    a list is walked while its length allows, so a fileno() that shortens
    it ends the walk there."""
    if not isinstance(objs, list):
        objs = list(objs)
    pairs = []
    i = 0
    while i < len(objs):
        obj = objs[i]
        pairs.append((obj, _fd(obj)))
        i += 1
    return pairs


def _poll_yielding(fds, timeout):
    """poll_fds, but a call that finds descriptors ready at once (or that
    was asked not to wait) first lets the other tasklets run and the hub
    poll: a loop of select() calls that always find something ready (an
    asyncore server whose socket is always writable, a loop over
    select(..., 0)) would otherwise never give the hub a turn, and every
    other tasklet of the thread, waiting for I/O, would wait forever. A
    standard select() in an OS thread gives the other threads their turn
    as it drops the GIL. The readiness returned is the one seen after
    that turn, so it is not stale."""
    ready = _core.poll_fds(fds, 0)
    if not ready and timeout != 0:
        return _core.poll_fds(fds, timeout)
    _core.sleep(0)
    ready = _core.poll_fds(fds, 0)
    if ready or timeout == 0:
        return ready
    return _core.poll_fds(fds, timeout)


class poll:
    """A cooperative select.poll object."""

    def __init__(self):
        self._fds = {}

    def register(self, fd, eventmask=POLLIN | POLLPRI | POLLOUT):
        self._fds[_fd(fd)] = self._mask(eventmask)

    def modify(self, fd, eventmask):
        fd = _fd(fd)
        if fd not in self._fds:
            raise FileNotFoundError(_errno.ENOENT, _os.strerror(_errno.ENOENT))
        self._fds[fd] = self._mask(eventmask)

    def unregister(self, fd):
        del self._fds[_fd(fd)]

    def poll(self, timeout=None):
        """Events ready within timeout milliseconds (None or < 0: forever)."""
        # Milliseconds; None or negative: forever.
        timeout = _core.parse_timeout(timeout, "poll")
        if timeout is not None:
            timeout /= 1000.0
        return _poll_yielding(list(self._fds.items()), timeout)

    @staticmethod
    def _mask(eventmask):
        if not isinstance(eventmask, int):
            raise TypeError("an integer is required")
        if not 0 <= eventmask <= 0xFFFF:
            raise OverflowError("Python int too large for C unsigned short")
        # poll(2) takes a short: keep the bits, as the standard module does.
        return eventmask - 0x10000 if eventmask & 0x8000 else eventmask


class epoll:
    """A cooperative select.epoll: the kernel's epoll object, whose poll()
    blocks only the calling tasklet.

    The epoll descriptor is itself readable while any registered descriptor
    is ready, so poll() waits for that through the hub, then asks the
    kernel without waiting. A descriptor registered, modified or removed by
    another tasklet (or thread) while a poll() waits therefore counts at
    once, as with the standard epoll.
    """

    def __init__(self, sizehint=-1, flags=0, *, _ep=None):
        self._ep = _std_epoll(sizehint, flags) if _ep is None else _ep
        self._io = None  # the hub's registration, made on the first wait
        self._io_thread = None

    @classmethod
    def fromfd(cls, fd):
        return cls(_ep=_std_epoll.fromfd(fd))

    def fileno(self):
        return self._ep.fileno()

    @property
    def closed(self):
        return self._ep.closed

    def close(self):
        if self._io is not None:
            self._io.close()
            self._io = None
        self._ep.close()

    def register(self, fd, eventmask=POLLIN | POLLPRI | POLLOUT):
        self._ep.register(fd, eventmask)

    def modify(self, fd, eventmask):
        self._ep.modify(fd, eventmask)

    def unregister(self, fd):
        self._ep.unregister(fd)

    def poll(self, timeout=None, maxevents=-1):
        """Events ready within timeout seconds (None or < 0: forever)."""
        timeout = _core.parse_timeout(timeout, "poll")  # < 0: None
        ready = self._ep.poll(0, maxevents)  # validates maxevents, closed
        if ready or timeout == 0:
            # As _poll_yielding: a loop over ready descriptors lets the
            # other tasklets run and the hub poll between its calls.
            _core.sleep(0)
            if self._ep.closed:
                return []
            ready = self._ep.poll(0, maxevents)
            if ready or timeout == 0:
                return ready
        end = _deadline(timeout)
        while True:
            left = _remaining(end)
            if left is not None and left <= 0:
                return []
            try:
                self._wait(left)
            except TimeoutError:
                return []
            except OSError:
                # Closed by another tasklet or thread meanwhile: the wait
                # ends with nothing ready, as epoll_wait(2) on a closed
                # epoll would; the next poll() raises ValueError.
                if self._ep.closed:
                    return []
                raise
            ready = self._ep.poll(0, maxevents)
            if ready:
                return ready

    def _wait(self, timeout):
        # The epoll descriptor stays registered with this thread's hub
        # while the object lives (no registration per wait); a poll from
        # another thread waits through that thread's hub instead.
        if self._io is None:
            self._io = _core.IoHandle(self._ep.fileno())
            self._io_thread = _get_ident()
        elif self._io_thread != _get_ident():
            _core.wait_read(self._ep.fileno(), timeout)
            return
        self._io.wait_read(timeout)

    def __enter__(self):
        if self._ep.closed:
            raise ValueError("I/O operation on closed epoll object")
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        if getattr(self, "_io", None) is not None:
            try:
                self._io.close()
            except Exception:  # noqa: BLE001 - finalizer
                pass


class PtseventSelector(_selectors.EpollSelector):
    """A selectors selector that blocks only the calling tasklet.

    The standard EpollSelector over the cooperative epoll: it sees
    descriptors registered while it waits (a server loop in select() while
    other tasklets or threads hand connections back to it)."""

    _selector_cls = epoll


DefaultSelector = PtseventSelector


class PtseventPollSelector(_selectors.PollSelector):
    """The standard PollSelector over the cooperative poll: like the
    standard one it accepts any descriptor (a regular file is always
    ready; epoll refuses those), and it sees the descriptors registered
    when select() starts."""

    _selector_cls = poll

# What the standard module also exports, unchanged.
PIPE_BUF = _select.PIPE_BUF

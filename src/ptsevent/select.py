"""Cooperative `select`: select(), poll() and a selectors selector.

All three stand on one C++ primitive that first asks poll(2) without
waiting, then lets only the calling tasklet wait for any of the descriptors
and takes the exact revents from poll(2) again. They validate their
arguments as the standard `select` module does.
"""

import errno as _errno
import os as _os
import select as _select
import selectors as _selectors
from select import (POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT,  # noqa: F401
                    POLLPRI, POLLRDNORM, POLLWRNORM, error)

from ptsevent import _core

__all__ = ["select", "poll", "error", "PtseventSelector", "DefaultSelector",
           "POLLIN", "POLLOUT", "POLLPRI", "POLLERR", "POLLHUP", "POLLNVAL"]

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


def _timeout_seconds(timeout):
    if timeout is None:
        return None
    if isinstance(timeout, (str, bytes)) or not hasattr(type(timeout),
                                                         "__float__"):
        raise TypeError("timeout must be a float or None")
    timeout = float(timeout)
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    if timeout < 0:
        raise ValueError("timeout must be non-negative")
    return timeout


def select(rlist, wlist, xlist, timeout=None):
    """Wait until descriptors are ready, as select.select, cooperatively."""
    timeout = _timeout_seconds(timeout)
    lists = [list(rlist), list(wlist), list(xlist)]
    masks = {}
    for objs, bit in zip(lists, (POLLIN, POLLOUT, POLLPRI)):
        for obj in objs:
            fd = _fd(obj)
            masks[fd] = masks.get(fd, 0) | bit
    ready = dict(_core.poll_fds(list(masks.items()), timeout))
    if any(rev & POLLNVAL for rev in ready.values()):
        raise OSError(_errno.EBADF, _os.strerror(_errno.EBADF))
    return ([o for o in lists[0] if ready.get(_fd(o), 0) & _READ],
            [o for o in lists[1] if ready.get(_fd(o), 0) & _WRITE],
            [o for o in lists[2] if ready.get(_fd(o), 0) & POLLPRI])


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
        if timeout is not None:
            if isinstance(timeout, (str, bytes)) or not hasattr(
                    type(timeout), "__float__"):
                raise TypeError("timeout must be an integer or None")
            timeout = float(timeout)
            timeout = None if timeout < 0 else timeout / 1000.0
        return _core.poll_fds(list(self._fds.items()), timeout)

    @staticmethod
    def _mask(eventmask):
        if not isinstance(eventmask, int):
            raise TypeError("an integer is required")
        if not 0 <= eventmask <= 0xFFFF:
            raise OverflowError("Python int too large for C unsigned short")
        # poll(2) takes a short: keep the bits, as the standard module does.
        return eventmask - 0x10000 if eventmask & 0x8000 else eventmask


class PtseventSelector(_selectors._BaseSelectorImpl):
    """A selectors selector that blocks only the calling tasklet."""

    def select(self, timeout=None):
        if timeout is not None:
            timeout = max(timeout, 0)
        fds = []
        for key in self._fd_to_key.values():
            mask = 0
            if key.events & _selectors.EVENT_READ:
                mask |= POLLIN
            if key.events & _selectors.EVENT_WRITE:
                mask |= POLLOUT
            fds.append((key.fd, mask))
        ready = []
        for fd, revents in _core.poll_fds(fds, timeout):
            key = self._fd_to_key.get(fd)
            if key is None:
                continue
            events = 0
            if revents & ~POLLOUT:
                events |= _selectors.EVENT_READ
            if revents & (POLLOUT | POLLERR | POLLHUP):
                events |= _selectors.EVENT_WRITE
            events &= key.events
            if events:
                ready.append((key, events))
        return ready


DefaultSelector = PtseventSelector

# What the standard module also exports, unchanged.
PIPE_BUF = _select.PIPE_BUF

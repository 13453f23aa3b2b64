"""Cooperative sockets: the `socket` module's API, blocking only the tasklet.

`ptsevent.socket.socket` is a subclass of the standard `socket.socket`
whose descriptor is always non-blocking underneath; its timeout (None, 0 or
seconds, from `socket.getdefaulttimeout()` at creation) is kept in Python
and applied by the C++ wait loops, which raise `TimeoutError("timed out")`
as the standard library does. recv, recv_into, send and sendall loop in C++
(system call first, wait on EAGAIN); the other calls retry in Python around
the same waits. `makefile()` is the standard one, over these methods.
"""

import _socket as _c_socket
import errno as _errno
import os as _os
import socket as _socket
import time as _time
from socket import *  # noqa: F401,F403 - constants and helpers re-exported

from ptsevent import _core
from ptsevent.threadpool import run_in_thread as _run_in_thread

__all__ = [name for name in dir(_socket) if not name.startswith("_")]

_std_socket = _socket.socket
_MISSING = object()


def _remaining(deadline):
    if deadline is None:
        return None
    return max(0.0, deadline - _time.monotonic())


class socket(_std_socket):
    """A socket whose blocking calls suspend only the calling tasklet."""

    __slots__ = ("_io", "_ptimeout")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        super().__init__(family, type, proto, fileno)
        self._ptimeout = _socket.getdefaulttimeout()
        _std_socket.settimeout(self, 0.0)
        self._io = _core.IoHandle(_std_socket.fileno(self))

    # -- timeouts -----------------------------------------------------------

    def settimeout(self, value):
        if value is not None:
            value = float(value)
            if value != value:
                raise ValueError("Invalid value NaN (not a number)")
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._ptimeout = value

    def gettimeout(self):
        return self._ptimeout

    def setblocking(self, flag):
        self._ptimeout = None if flag else 0.0

    def getblocking(self):
        return self._ptimeout != 0.0

    @property
    def timeout(self):
        return self._ptimeout

    # -- the C++ loops ------------------------------------------------------

    def recv(self, bufsize, flags=0):
        return self._io.recv(bufsize, flags, self._ptimeout)

    def recv_into(self, buffer, nbytes=0, flags=0):
        return self._io.recv_into(buffer, nbytes, flags, self._ptimeout)

    def send(self, data, flags=0):
        return self._io.send(data, flags, self._ptimeout)

    def sendall(self, data, flags=0):
        return self._io.sendall(data, flags, self._ptimeout)

    # -- retried in Python around the same waits ----------------------------

    def _retry(self, wait, call, *args):
        timeout = self._ptimeout
        deadline = None if timeout is None else _time.monotonic() + timeout
        while True:
            try:
                return call(*args)
            except BlockingIOError:
                if timeout == 0.0:
                    raise
                wait(_remaining(deadline))
            except InterruptedError:
                continue

    def _accept(self):
        return self._retry(self._io.wait_read, super()._accept)

    def recvfrom(self, bufsize, flags=0):
        return self._retry(self._io.wait_read, super().recvfrom, bufsize, flags)

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        return self._retry(self._io.wait_read, super().recvfrom_into, buffer,
                           nbytes, flags)

    def recvmsg(self, *args):
        return self._retry(self._io.wait_read, super().recvmsg, *args)

    def recvmsg_into(self, *args):
        return self._retry(self._io.wait_read, super().recvmsg_into, *args)

    def sendto(self, *args):
        return self._retry(self._io.wait_write, super().sendto, *args)

    def sendmsg(self, *args):
        return self._retry(self._io.wait_write, super().sendmsg, *args)

    def connect(self, address):
        err = self._connect(address)
        if err:
            raise OSError(err, _os.strerror(err))

    def connect_ex(self, address):
        try:
            return self._connect(address)
        except TimeoutError:
            return _errno.EAGAIN if self._ptimeout == 0.0 else _errno.ETIMEDOUT

    def _connect(self, address):
        err = super().connect_ex(address)
        if err in (_errno.EINPROGRESS, _errno.EAGAIN, _errno.EALREADY):
            if self._ptimeout == 0.0:
                return err
            self._io.wait_write(self._ptimeout)
            err = self.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
        elif err == _errno.EISCONN:
            err = 0
        return err

    def sendfile(self, file, offset=0, count=None):
        """Send a file with os.sendfile (zero-copy), waiting cooperatively."""
        self._check_sendfile_params(file, offset, count)
        if self.gettimeout() == 0:
            raise ValueError("non-blocking sockets are not supported")
        try:
            fileno = file.fileno()
        except (AttributeError, OSError):
            return self._sendfile_use_send(file, offset, count)
        try:
            fsize = _os.fstat(fileno).st_size
        except OSError:
            return self._sendfile_use_send(file, offset, count)
        if not fsize:
            return 0
        total = 0
        blocksize = min(count or fsize, 2 ** 30)
        timeout = self._ptimeout
        deadline = None if timeout is None else _time.monotonic() + timeout
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        break
                try:
                    sent = _os.sendfile(self.fileno(), fileno, offset, blocksize)
                except BlockingIOError:
                    self._io.wait_write(_remaining(deadline))
                    continue
                except OSError as err:
                    if total == 0 and err.errno in (_errno.EINVAL, _errno.ENOTSOCK):
                        return self._sendfile_use_send(file, offset, count)
                    raise
                if sent == 0:
                    break
                offset += sent
                total += sent
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset)

    # -- lifetime ------------------------------------------------------------

    def _real_close(self, _ss=_c_socket.socket):
        # Runs when the socket and every makefile() over it are closed.
        self._io.close()
        _ss.close(self)

    def detach(self):
        self._io.close()
        return super().detach()

    def dup(self):
        fd = _os.dup(self.fileno())
        sock = self.__class__(self.family, self.type, self.proto, fileno=fd)
        sock.settimeout(self.gettimeout())
        return sock

    def accept(self):
        fd, addr = self._accept()
        sock = socket(self.family, self.type, self.proto, fileno=fd)
        if _socket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        return sock, addr

    def __repr__(self):
        return super().__repr__().replace("<socket.socket", "<ptsevent.socket",
                                          1)

    def __getstate__(self):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")


SocketType = socket


def socketpair(family=None, type=_socket.SOCK_STREAM, proto=0):
    """A pair of connected cooperative sockets (as socket.socketpair)."""
    if family is None:
        family = getattr(_socket, "AF_UNIX", _socket.AF_INET)
    a, b = _socket.socketpair(family, type, proto)
    return (socket(family, type, proto, a.detach()),
            socket(family, type, proto, b.detach()))


def fromfd(fd, family, type, proto=0):
    """A cooperative socket on a duplicate of fd (as socket.fromfd)."""
    return socket(family, type, proto, _os.dup(fd))


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """socket.getaddrinfo in the thread pool (libc semantics, NSS honoured).

    A numeric host (or None) needs no lookup and is answered in place."""
    if host is None or isinstance(host, (str, bytes)):
        try:
            return _socket.getaddrinfo(host, port, family, type, proto,
                                       flags | _socket.AI_NUMERICHOST)
        except _socket.gaierror:
            pass
    return _run_in_thread(_socket.getaddrinfo, host, port, family, type,
                          proto, flags)


def gethostbyname(hostname):
    return _run_in_thread(_socket.gethostbyname, hostname)


def gethostbyname_ex(hostname):
    return _run_in_thread(_socket.gethostbyname_ex, hostname)


def gethostbyaddr(ip_address):
    return _run_in_thread(_socket.gethostbyaddr, ip_address)


def getnameinfo(sockaddr, flags):
    return _run_in_thread(_socket.getnameinfo, sockaddr, flags)


def getfqdn(name=""):
    """As socket.getfqdn, resolving in the thread pool."""
    return _run_in_thread(_socket.getfqdn, name)


def create_connection(address, timeout=_MISSING, source_address=None, *,
                      all_errors=False):
    """Connect to (host, port), trying every address getaddrinfo returns."""
    host, port = address
    exceptions = []
    for res in getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        af, socktype, proto, _canonname, sa = res
        sock = None
        try:
            sock = socket(af, socktype, proto)
            if timeout is not _MISSING:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sa)
            exceptions.clear()
            return sock
        except OSError as exc:
            if not all_errors:
                exceptions.clear()
            exceptions.append(exc)
            if sock is not None:
                sock.close()
    if exceptions:
        try:
            if not all_errors:
                raise exceptions[0]
            raise ExceptionGroup("create_connection failed", exceptions)
        finally:
            exceptions.clear()
    raise OSError("getaddrinfo returns an empty list")


def create_server(address, *, family=_socket.AF_INET, backlog=None,
                  reuse_port=False, dualstack_ipv6=False):
    """As socket.create_server, returning a cooperative listening socket."""
    std = _socket.create_server(address, family=family, backlog=backlog,
                                reuse_port=reuse_port,
                                dualstack_ipv6=dualstack_ipv6)
    return socket(std.family, std.type, std.proto, std.detach())


# The names of the original Syncless API.
socket_compat = socket
realsocket_compat = socket
socket_fromfd = fromfd

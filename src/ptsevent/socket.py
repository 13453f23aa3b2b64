"""Cooperative sockets: the `socket` module's API, blocking only the tasklet.

`ptsevent.socket.socket` is a subclass of the standard `socket.socket`
whose descriptor is always non-blocking underneath. Its timeout (None, 0 or
seconds, from `socket.getdefaulttimeout()` at creation) has one owner: the
C++ IoHandle, whose loops apply it (system call first, wait on EAGAIN, one
deadline per call) and raise `TimeoutError("timed out")` as the standard
library does. recv, recv_into, send, sendall, recvfrom, recvfrom_into and
sendto make their system calls in C++; accept, recvmsg, sendmsg and
sendfile make the standard call inside the same C++ loop (retry_read/
retry_write). MSG_DONTWAIT in a call's flags makes that call non-blocking.
`makefile()` is the standard one, over these methods.
"""

import _socket as _c_socket
import errno as _errno
from operator import attrgetter as _attrgetter
import os as _os
import socket as _socket
from socket import *  # noqa: F401,F403 - constants and helpers re-exported

from ptsevent import _core
from ptsevent.os import _give_back, _make_nonblocking
from ptsevent.threadpool import run_in_thread as _run_in_thread

__all__ = [name for name in dir(_socket) if not name.startswith("_")]

# The standard functions this module builds on, bound at import: once
# ptsevent.patch has installed this module's functions in `socket`, looking
# them up there at call time would find these very functions again.
_std_socket = _socket.socket
_std_getaddrinfo = _socket.getaddrinfo
_std_create_server = _socket.create_server
# create_connection's "no timeout given": the standard library's own marker,
# which its callers (http.client, ftplib, smtplib ...) pass explicitly.
_MISSING = _socket._GLOBAL_DEFAULT_TIMEOUT
# In _restore_flags: the descriptor, its registration and its saved flags
# now belong to another object over the same descriptor (an SSL socket);
# this one's detach() or close() leaves the descriptor's mode alone.
_HANDED_OVER = object()
_SOCK_NONBLOCK = getattr(_socket, "SOCK_NONBLOCK", 0)


def _arg(args, index):
    return args[index] if len(args) > index else 0


class socket(_std_socket):
    """A socket whose blocking calls suspend only the calling tasklet."""

    __slots__ = ("_io", "_restore_flags")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        super().__init__(family, type, proto, fileno)
        # O_NONBLOCK is shared with every holder of this open file (a
        # dup, a parent process): a descriptor we were given gets its
        # flags back on close and detach.
        self._restore_flags = None
        if fileno is not None:
            self._restore_flags = _make_nonblocking(_std_socket.fileno(self))
        # The C socket's own timeout stays 0: its descriptor is always
        # non-blocking, and its calls return EAGAIN to the C++ loops.
        timeout = _std_socket.gettimeout(self)
        _std_socket.settimeout(self, 0.0)
        self._io = _core.IoHandle(_std_socket.fileno(self),
                                  self.type == _socket.SOCK_STREAM)
        self._io.timeout = timeout

    # -- timeouts: the IoHandle's ------------------------------------------

    def settimeout(self, value):
        # Read as the standard settimeout reads it (same errors, whole
        # nanoseconds); the descriptor itself stays non-blocking.
        self._io.timeout = value

    def gettimeout(self):
        return self._io.timeout

    def setblocking(self, flag):
        # The descriptor stays non-blocking; setting it so again checks it
        # as the standard setblocking does (OSError for a closed one).
        _c_socket.socket.setblocking(self, False)
        self._io.timeout = None if flag else 0.0

    def getblocking(self):
        return self._io.timeout != 0.0

    timeout = property(_attrgetter("_io.timeout"),
                       doc="the timeout (None, 0.0 or seconds)")

    # -- the C++ loops ------------------------------------------------------
    # Looking one of these up yields the IoHandle's own C method (it keeps
    # the socket's timeout): a message costs one C call and no Python frame,
    # and no per-socket dictionary is needed for it.

    recv = property(_attrgetter("_io.recv"), doc="recv(bufsize[, flags])")
    recv_into = property(_attrgetter("_io.recv_into"),
                         doc="recv_into(buffer[, nbytes[, flags]])")
    send = property(_attrgetter("_io.send"), doc="send(data[, flags])")
    sendall = property(_attrgetter("_io.sendall"),
                       doc="sendall(data[, flags]): the timeout bounds the call")

    # -- the same loops around the standard call -----------------------------
    # recvfrom, recvfrom_into and sendto make the system call in C++ for
    # IPv4/IPv6/Unix addresses (NotImplemented otherwise, before any call);
    # the others run the standard call in the IoHandle's loop, which waits
    # on BlockingIOError within the timeout (flags: MSG_DONTWAIT).

    def _accept(self):
        return self._io.retry_read(0, super()._accept)

    def recvfrom(self, bufsize, flags=0):
        got = self._io.recvfrom(bufsize, flags)
        if got is NotImplemented:
            got = self._io.retry_read(flags, super().recvfrom, bufsize, flags)
        return got

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        got = self._io.recvfrom_into(buffer, nbytes, flags)
        if got is NotImplemented:
            got = self._io.retry_read(flags, super().recvfrom_into, buffer,
                                      nbytes, flags)
        return got

    def sendto(self, *args):
        sent = self._io.sendto(*args)
        if sent is NotImplemented:
            # sendto(data, flags, address) or sendto(data, address)
            flags = args[1] if len(args) > 2 else 0
            sent = self._io.retry_write(flags, super().sendto, *args)
        return sent

    # Their flags come third: recvmsg(bufsize, ancbufsize, flags),
    # recvmsg_into(buffers, ancbufsize, flags), sendmsg(buffers, ancdata,
    # flags, address).

    def recvmsg(self, *args):
        return self._io.retry_read(_arg(args, 2), super().recvmsg, *args)

    def recvmsg_into(self, *args):
        return self._io.retry_read(_arg(args, 2), super().recvmsg_into, *args)

    def sendmsg(self, *args):
        return self._io.retry_write(_arg(args, 2), super().sendmsg, *args)

    def connect(self, address):
        err = self._io.finish_connect(super().connect_ex(address))
        if err:
            raise OSError(err, _os.strerror(err))

    def connect_ex(self, address):
        try:
            return self._io.finish_connect(super().connect_ex(address))
        except TimeoutError:
            return _errno.EWOULDBLOCK  # what CPython's connect_ex returns

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
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        break
                try:
                    # The timeout bounds each wait, as the standard
                    # sendfile's does.
                    sent = self._io.retry_write(0, _os.sendfile, self.fileno(),
                                                fileno, offset, blocksize)
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

    def _hand_over(self):
        """Give this socket's registration and saved blocking flags to a new
        object over the same descriptor, which must install them (see
        ptsevent.ssl): returns (IoHandle, saved flags). This socket keeps a
        stand-in handle (never registered) for its detach() to close, and
        neither detach() nor close() touches the descriptor's mode: it never
        flickers to blocking mode, and the flags are restored once, by the
        new owner. _take_back() undoes it if the new owner never took over.
        """
        handed = self._io, self._restore_flags
        self._io = _core.IoHandle(_std_socket.fileno(self),
                                  self.type == _socket.SOCK_STREAM)
        self._io.timeout = handed[0].timeout
        self._restore_flags = _HANDED_OVER
        return handed

    def _take_back(self, handed):
        self._io.close()
        self._io, self._restore_flags = handed

    def _give_back_blocking_mode(self):
        fd = _std_socket.fileno(self)
        if fd < 0:
            return
        if self._restore_flags is _HANDED_OVER:
            self._restore_flags = None
            return
        if self._restore_flags is not None:
            _give_back(fd, self._restore_flags)
            self._restore_flags = None
        elif self._io.timeout is None:
            _os.set_blocking(fd, True)

    def _real_close(self, _ss=_c_socket.socket):
        # Runs when the socket and every makefile() over it are closed.
        self._io.close()
        if self._restore_flags is not None:
            try:
                self._give_back_blocking_mode()
            except OSError:
                pass
        _ss.close(self)

    def detach(self):
        self._io.close()
        try:
            self._give_back_blocking_mode()
        except OSError:
            pass  # closed under us (EBADF): detach() itself never fails
        return super().detach()

    def dup(self):
        fd = _os.dup(self.fileno())
        sock = self.__class__(self.family, self.type, self.proto, fileno=fd)
        sock.settimeout(self.gettimeout())
        return sock

    def accept(self):
        fd, addr = self._accept()
        sock = socket(self.family, self.type, self.proto, fileno=fd)
        sock._restore_flags = None  # ours alone: nothing to give back
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
    a, b = _c_socket.socketpair(family, type, proto)
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
            return _std_getaddrinfo(host, port, family, type, proto,
                                    flags | _socket.AI_NUMERICHOST)
        except _socket.gaierror:
            pass
    return _run_in_thread(_std_getaddrinfo, host, port, family, type,
                          proto, flags)


def gethostbyname(hostname):
    return _run_in_thread(_c_socket.gethostbyname, hostname)


def gethostbyname_ex(hostname):
    return _run_in_thread(_c_socket.gethostbyname_ex, hostname)


def gethostbyaddr(ip_address):
    return _run_in_thread(_c_socket.gethostbyaddr, ip_address)


def getnameinfo(sockaddr, flags):
    if not isinstance(sockaddr, tuple):
        # Raised here, as the standard function does, not from the thread
        # pool; the traceback keeps this frame, so not the argument too.
        del sockaddr
        raise TypeError("getnameinfo() argument 1 must be a tuple")
    return _run_in_thread(_c_socket.getnameinfo, sockaddr, flags)


def getfqdn(name=""):
    """As socket.getfqdn: the first name with a dot among the host's name
    and aliases (from gethostbyaddr, in the thread pool), else its name."""
    name = name.strip()
    if not name or name in ("0.0.0.0", "::"):
        name = _c_socket.gethostname()
    try:
        hostname, aliases, _addresses = gethostbyaddr(name)
    except OSError:
        return name
    return next((n for n in [hostname, *aliases] if "." in n), hostname)


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
    std = _std_create_server(address, family=family, backlog=backlog,
                             reuse_port=reuse_port,
                             dualstack_ipv6=dualstack_ipv6)
    if isinstance(std, socket):  # `socket.socket` is ours (patched)
        return std
    return socket(std.family, std.type, std.proto, std.detach())


def socketfile_compat(sock, mode="r", buffering=None, *, encoding=None,
                      errors=None, newline=None):
    """The file object of a cooperative socket: ``sock.makefile(...)``.

    Python 3's counterpart of the ``socket._fileobject`` class the original
    name replaced: a buffered (or text) file over the socket whose reads and
    writes block only the calling tasklet. ``sock`` must be a ptsevent
    socket, since a plain socket's file would block the whole thread."""
    if not isinstance(sock, socket):
        raise TypeError(f"socketfile_compat() needs a ptsevent socket, not "
                        f"{type(sock).__name__}")
    return sock.makefile(mode, buffering, encoding=encoding, errors=errors,
                         newline=newline)


# The names of the original Syncless API.
socket_compat = socket
realsocket_compat = socket
socket_fromfd = fromfd


# -- the fast buffered socket -------------------------------------------------

_BUFFERED_METHODS = ("read", "read1", "readline", "read_upto", "find", "peek",
                     "discard", "unread", "readlines", "write", "flush")


def _timeval_seconds(value):
    if isinstance(value, (bytes, bytearray)):
        import struct
        sec, usec = struct.unpack("@ll", bytes(value)[:struct.calcsize("@ll")])
        seconds = sec + usec / 1e6
    else:
        seconds = float(value)
    return None if seconds <= 0 else seconds


class _BufferedMixin:
    """Delegates the buffered file API to a C++ BufferedIo in self._buf."""

    __slots__ = ()

    def __iter__(self):
        return self._buf  # iterating the C++ object: no Python frame a line

    def __next__(self):
        return next(self._buf)

    def readable(self):
        return True

    def writable(self):
        return True


for _name in _BUFFERED_METHODS:
    def _delegate(self, *args, _name=_name, **kwargs):
        return getattr(self._buf, _name)(*args, **kwargs)
    _delegate.__name__ = _name
    _delegate.__doc__ = getattr(_core.BufferedIo, _name).__doc__
    setattr(_BufferedMixin, _name, _delegate)
del _name, _delegate


class fastsocket(_BufferedMixin, socket):
    """A socket whose makefile() is itself, with C++ read/write buffers.

    It has no Python-level timeout: its waits are bounded by the
    SO_RCVTIMEO / SO_SNDTIMEO values set on it (which the kernel ignores on
    non-blocking descriptors). readline, read(n), read_upto, find, peek,
    discard, unread and iteration are served from the read buffer; write()
    buffers until flush() (or 64 KiB); sendall() flushes first.
    """

    # No __slots__: the buffered methods are bound per instance straight
    # to the C++ object, on first use (_BoundOnFirstUse, set below), so
    # readline() costs one C call, no Python frame.

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        super().__init__(family, type, proto, fileno)
        self._io.timeout = None
        self._buf = _core.BufferedIo(self._io)

    def settimeout(self, value):
        if value is not None:
            raise ValueError("a fastsocket has no Python-level timeout: set "
                             "SO_RCVTIMEO / SO_SNDTIMEO instead")

    def setblocking(self, flag):
        if not flag:
            raise ValueError("a fastsocket always waits cooperatively")

    def setsockopt(self, level, optname, value, *args):
        super().setsockopt(level, optname, value, *args)
        if level == _socket.SOL_SOCKET and optname == _socket.SO_RCVTIMEO:
            self._buf.read_timeout = _timeval_seconds(value)
        elif level == _socket.SOL_SOCKET and optname == _socket.SO_SNDTIMEO:
            self._buf.write_timeout = _timeval_seconds(value)

    def makefile(self, *args, **kwargs):
        return self

    def recv(self, bufsize, flags=0):
        if flags:
            return super().recv(bufsize, flags)
        return self._buf.read1(bufsize)

    def send(self, data, flags=0):
        self._buf.flush()
        return super().send(data, flags)

    def sendall(self, data, flags=0):
        if flags:
            self._buf.flush()
            return super().sendall(data, flags)
        return self._buf.sendall(data)

    def _real_close(self, _ss=_c_socket.socket):
        try:
            if not self._io.closed:
                self._buf.flush()
        finally:
            super()._real_close(_ss)

    def accept(self):
        fd, addr = self._accept()
        sock = fastsocket(self.family, self.type, self.proto, fileno=fd)
        sock._restore_flags = None
        return sock, addr


class _BoundOnFirstUse:
    """A buffered method of a fastsocket: the C++ object's own bound method,
    stored in the instance's dict the first time it is looked up, where
    later lookups find it (one C call a readline(), no Python frame). An
    idle socket holds only the ones it used."""

    def __init__(self, name):
        self.name = name
        self.__doc__ = getattr(_core.BufferedIo, name).__doc__

    def __get__(self, obj, cls=None):
        if obj is None:  # fastsocket.readline: the plain delegating function
            return getattr(_BufferedMixin, self.name)
        method = getattr(obj._buf, self.name)
        obj.__dict__[self.name] = method
        return method


for _name in _BUFFERED_METHODS:
    setattr(fastsocket, _name, _BoundOnFirstUse(_name))
del _name


class nbfile(_BufferedMixin):
    """The fastsocket's buffers over any descriptors: pipes, ttys, sockets.

    nbfile(fd_in, fd_out=None, closefd=True). The descriptors are switched
    to non-blocking mode and put back as they were on close(), since that
    flag is shared with every process holding the same open file.
    """


    def __init__(self, fd_in, fd_out=None, closefd=True):
        fd_out = fd_in if fd_out is None else fd_out
        fds = [fd_in] if fd_in == fd_out else [fd_in, fd_out]
        self._flags = {}
        for fd in fds:
            if not isinstance(fd, int) or isinstance(fd, bool):
                raise TypeError("nbfile() needs integer descriptors")
            if fd < 0:
                raise ValueError(
                    f"file descriptor cannot be a negative integer ({fd})")
            self._flags[fd] = _make_nonblocking(fd)
        self._fds = (fd_in, fd_out)
        self._closefd = closefd
        self._ins = _core.IoHandle(fd_in)
        self._outs = self._ins if fd_in == fd_out else _core.IoHandle(fd_out)
        self._buf = buf = _core.BufferedIo(self._ins, self._outs)
        for name in _BUFFERED_METHODS:
            setattr(self, name, getattr(buf, name))

    def fileno(self):
        return self._fds[0]

    @property
    def closed(self):
        return self._ins.closed

    def sendall(self, data):
        self._buf.sendall(data)

    def set_timeouts(self, read=None, write=None):
        self._buf.read_timeout = read
        self._buf.write_timeout = write

    def close(self):
        if self._ins.closed:
            return
        try:
            self._buf.flush()
        finally:
            self._ins.close()
            self._outs.close()
            for fd, flags in self._flags.items():
                try:
                    _give_back(fd, flags)
                    if self._closefd:
                        _os.close(fd)
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - finalizer
            pass

    def __repr__(self):
        return f"<ptsevent.nbfile fds={self._fds} closed={self.closed}>"

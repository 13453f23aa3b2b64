"""Cooperative TLS: the `ssl` module's API, blocking only the tasklet.

`ptsevent.ssl.SSLSocket` is both an `ssl.SSLSocket` and a
`ptsevent.socket.socket`, made by the standard library's own
`SSLSocket._create` (its checks, among them the refusal of data received
before the handshake on a socket closed since, come with it). The
descriptor stays non-blocking at the C level, so every OpenSSL call returns
at once; the handshake, reads, writes and the shutdown loop here on
`SSLWantReadError`/`SSLWantWriteError`, waiting cooperatively, each call
bounded by the socket's timeout with the standard library's messages.

Writers on one SSLSocket are served one at a time, and readers likewise:
OpenSSL must be given the same bytes again after a write that could not
finish, so a whole `sendall()` goes out before the next writer starts.

`ssl.SSLContext` is never replaced: `SSLContext` here is a subclass whose
`sslsocket_class` is this module's `SSLSocket`, and `_install()` sets that
attribute on any context class (the standard one included), which makes
every context of that class, old or new, wrap cooperatively.
`wrap_bio()`/`SSLObject` do no I/O and stay the standard ones.
"""

import _socket as _c_socket
import socket as _socket
import ssl as _ssl
from ssl import *  # noqa: F401,F403 - constants, exceptions, helpers
from ssl import (
    CERT_NONE,
    CERT_REQUIRED,
    PROTOCOL_TLS_CLIENT,
    SSL_ERROR_EOF,
    DER_cert_to_PEM_cert,
    Purpose,
    SSLError,
    SSLWantReadError,
    SSLWantWriteError,
)

from ptsevent import _core
from ptsevent import socket as _psocket
from ptsevent._deadline import deadline as _deadline
from ptsevent._deadline import remaining as _remaining
from ptsevent.locks import Lock as _Lock
from ptsevent.socket import create_connection, socket  # noqa: F401

__all__ = [name for name in dir(_ssl) if not name.startswith("_")]
for _name in ("sslsocket_compat", "sslsocketfile_compat"):
    __all__.append(_name)
del _name

# unwrap() on a socket without a timeout: how long to wait for the peer's
# close_notify before giving up (the clear-text socket is then unusable).
SHUTDOWN_TIMEOUT = 30.0

_READ_TIMED_OUT = "The read operation timed out"
_WRITE_TIMED_OUT = "The write operation timed out"
_HANDSHAKE_TIMED_OUT = "The handshake operation timed out"
_handshake_timed_out = []  # the interpreter's own text, found on first use


def _handshake_timeout_error():
    """TimeoutError with the text this interpreter's _ssl gives a handshake
    that timed out (some versions prefix it with their source position):
    found once, by letting a handshake over a socket pair time out."""
    if not _handshake_timed_out:
        text = _HANDSHAKE_TIMED_OUT

        class _Plain(_c_socket.socket):  # the C socket, with a weak reference
            pass

        a, b = (_Plain(fileno=s.detach()) for s in _c_socket.socketpair())
        try:
            ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = CERT_NONE
            a.settimeout(1e-6)
            try:
                ctx._wrap_socket(a, False, None).do_handshake()
            except TimeoutError as exc:
                if str(exc).endswith(_HANDSHAKE_TIMED_OUT):
                    text = str(exc)
            except OSError:
                pass
        finally:
            a.close()
            b.close()
        _handshake_timed_out.append(text)
    return TimeoutError(_handshake_timed_out[0])


def _acquire(lock, timeout, message):
    """Wait for a direction's lock, busy in another tasklet, within the
    call's timeout; returns what is left of it. Non-blocking, a busy
    direction is a Want error, as a full buffer is."""
    if timeout == 0.0:
        if message is _WRITE_TIMED_OUT:
            raise SSLWantWriteError(_ssl.SSL_ERROR_WANT_WRITE,
                                    "another tasklet is writing")
        raise SSLWantReadError(_ssl.SSL_ERROR_WANT_READ,
                               "another tasklet is reading")
    if timeout is None:
        lock.acquire()
        return None
    end = _deadline(timeout)
    if not lock.acquire(True, timeout):
        raise TimeoutError(message or _WRITE_TIMED_OUT)
    return _remaining(end)


class SSLSocket(_ssl.SSLSocket, _psocket.socket):
    """An ssl.SSLSocket whose handshake, reads, writes and shutdown suspend
    only the calling tasklet. Made by SSLContext.wrap_socket()."""

    @classmethod
    def _create(cls, sock, server_side=False, do_handshake_on_connect=True,
                suppress_ragged_eofs=True, server_hostname=None,
                context=None, session=None):
        # The standard _create makes the object over sock's descriptor and
        # detaches sock; the handshake is done below, once this object holds
        # sock's registration and saved flags.
        handed = sock._hand_over() if isinstance(sock, _psocket.socket) else None
        try:
            self = super()._create(
                sock, server_side=server_side, do_handshake_on_connect=False,
                suppress_ragged_eofs=suppress_ragged_eofs,
                server_hostname=server_hostname, context=context,
                session=session)
        except BaseException:
            if handed is not None:
                if _socket.socket.fileno(sock) >= 0:  # not detached yet
                    sock._take_back(handed)
                else:
                    handed[0].close()
            raise
        if handed is not None:
            handed[0].timeout = self._io.timeout  # what _create set
            self._io.close()  # made by our __init__, never registered
            self._io, self._restore_flags = handed
        self._rlock = _Lock()
        self._wlock = _Lock()
        self.do_handshake_on_connect = do_handshake_on_connect
        if self._connected and do_handshake_on_connect:
            try:
                if self._io.timeout == 0.0:
                    raise ValueError("do_handshake_on_connect should not be "
                                     "specified for non-blocking sockets")
                self.do_handshake()
            except BaseException:
                # Also when killed or timed out (ptsevent.Timeout) while
                # waiting: nobody else holds the object to close it.
                self.close()
                raise
        return self

    # -- the OpenSSL calls, waiting on SSLWantRead/WriteError -----------------
    # read() and write() run in the IoHandle's tls_read()/tls_write() (C++,
    # the same loop) unless non-blocking or their lock is busy.

    def _ssl_call(self, call, args, lock, message, timeout=False):
        """call(*args) until it stops asking to wait, with lock (if any)
        held meanwhile. The timeout bounds the whole call, waiting for the
        lock included; 0 means non-blocking: the Want errors reach the
        caller, as with the standard library."""
        if timeout is False:
            timeout = self._io.timeout
        if lock is None:
            return self._ssl_loop(call, args, message, timeout)
        if not lock.acquire(False):
            timeout = _acquire(lock, timeout, message)
        try:
            return self._ssl_loop(call, args, message, timeout)
        finally:
            lock.release()

    def _ssl_loop(self, call, args, message, timeout):
        """The retry loop."""
        io = self._io
        deadline = False  # set at the first wait
        while True:
            try:
                return call(*args)
            except (SSLWantReadError, SSLWantWriteError) as exc:
                want = exc
            if timeout == 0.0:
                raise want
            if isinstance(want, SSLWantReadError):
                wait = io.wait_read
                timed_out = message or _READ_TIMED_OUT
            else:
                wait = io.wait_write
                timed_out = message or _WRITE_TIMED_OUT
            want = None  # its traceback holds this frame: no cycle
            if deadline is False:
                deadline = _deadline(timeout)
            try:
                wait(_remaining(deadline))
            except TimeoutError:
                if timed_out is _HANDSHAKE_TIMED_OUT:
                    raise _handshake_timeout_error() from None
                raise TimeoutError(timed_out) from None

    def do_handshake(self, block=False):
        """Perform the TLS handshake, waiting cooperatively."""
        self._check_connected()
        timeout = self._io.timeout
        if timeout == 0.0 and block:
            timeout = None
        self._ssl_call(self._sslobj.do_handshake, (), None,
                       _HANDSHAKE_TIMED_OUT, timeout)

    def read(self, len=1024, buffer=None):
        """Read up to len bytes (into buffer if given) from the TLS channel."""
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        try:
            # The common case in one C++ call: the readers' lock, a wait
            # first when nothing is buffered on either side of OpenSSL, the
            # read, the waits it asks for.
            data = self._io.tls_read(sslobj, self._rlock, len, buffer)
            if data is NotImplemented:  # non-blocking, or another reader
                args = (len,) if buffer is None else (len, buffer)
                data = self._ssl_call(sslobj.read, args, self._rlock,
                                      _READ_TIMED_OUT)
            return data
        except SSLError as exc:
            if exc.args[0] == SSL_ERROR_EOF and self.suppress_ragged_eofs:
                return b"" if buffer is None else 0
            raise

    # recv() and sendall() are C (installed below the class): these are
    # what they call for every case but a blocking socket's plain bytes.
    def _recv_slow(self, buflen=1024, flags=0):
        sslobj = self._sslobj
        if sslobj is None or flags:
            return super().recv(buflen, flags)
        # read(buflen) without its frame, in the common case.
        try:
            data = self._io.tls_read(sslobj, self._rlock, buflen)
        except SSLError as exc:
            if exc.args[0] == SSL_ERROR_EOF and self.suppress_ragged_eofs:
                return b""
            raise
        return self.read(buflen) if data is NotImplemented else data

    def write(self, data):
        """Write data to the TLS channel; returns the number of bytes."""
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        # As read(). After a Want error OpenSSL keeps what it could not
        # send: the same call again, before any other writer's, finishes it.
        n = self._io.tls_write(sslobj, self._wlock, data)
        if n is NotImplemented:  # non-blocking, or another writer
            n = self._ssl_call(sslobj.write, (data,), self._wlock,
                               _WRITE_TIMED_OUT)
        return n

    def send(self, data, flags=0):
        if self._sslobj is None or flags:
            return super().send(data, flags)
        return self.write(data)

    def _sendall_slow(self, data, flags=0):
        sslobj = self._sslobj
        if sslobj is None or flags:
            return super().sendall(data, flags)
        # One SSL_write takes the whole buffer (the socket does not enable
        # partial writes) and write() holds the writers' lock until it is
        # done: the message goes out in one piece.
        if type(data) is not bytes:
            with memoryview(data) as view, view.cast("B") as byte_view:
                if byte_view.nbytes:
                    self.write(byte_view)
        elif data and self._io.tls_write(sslobj, self._wlock,
                                         data) is NotImplemented:
            self.write(data)  # non-blocking, or another writer

    def pending(self):
        """The decrypted bytes a read returns without waiting; 1 when only
        records read ahead wait in OpenSSL, not decrypted yet (during bulk
        transfers reads take several records at once, and the descriptor
        no longer shows them: a caller that checks pending() before
        select() still reads them first)."""
        n = super().pending()
        sslobj = self._sslobj
        if not n and sslobj is not None and self._io.tls_read_ahead(sslobj):
            return 1
        return n

    def unwrap(self):
        """Shut TLS down and return the socket, usable in the clear.

        Bounded by the socket's timeout, or SHUTDOWN_TIMEOUT without one."""
        sslobj = self._sslobj
        if not sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        timeout = self._io.timeout
        if timeout is None:
            timeout = SHUTDOWN_TIMEOUT
        # After the writer in progress, if any: OpenSSL must finish a write
        # it started before it sends close_notify.
        sock = self._ssl_call(sslobj.shutdown, (), self._wlock, None, timeout)
        self._sslobj = None
        return sock

    def verify_client_post_handshake(self):
        sslobj = self._sslobj
        if not sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        return self._ssl_call(sslobj.verify_client_post_handshake, (),
                              self._wlock, _WRITE_TIMED_OUT)

    def accept(self):
        """Accept a connection and wrap it server-side, cooperatively (the
        handshake, if done on connect, runs in the calling tasklet)."""
        newsock, addr = _psocket.socket.accept(self)
        newsock = type(self)._create(
            newsock, server_side=True, context=self.context,
            do_handshake_on_connect=self.do_handshake_on_connect,
            suppress_ragged_eofs=self.suppress_ragged_eofs)
        return newsock, addr


SSLSocket.recv, SSLSocket.sendall = _core.tls_socket_methods(SSLSocket)


class SSLContext(_ssl.SSLContext):
    """An ssl.SSLContext whose wrap_socket() returns cooperative sockets."""

    sslsocket_class = SSLSocket


def _install(ctx_class=_ssl.SSLContext):
    """Make ctx_class (and its subclasses that do not set their own) wrap
    sockets cooperatively, contexts made before included. Returns the
    previous sslsocket_class, for _uninstall()."""
    previous = ctx_class.__dict__.get("sslsocket_class")
    ctx_class.sslsocket_class = SSLSocket
    return previous


def _uninstall(previous, ctx_class=_ssl.SSLContext):
    if previous is None:
        del ctx_class.sslsocket_class
    else:
        ctx_class.sslsocket_class = previous


def _cooperative(context):
    # The standard factories build a plain ssl.SSLContext: the same object
    # as ours, only its class says which socket class wraps.
    if type(context) is _ssl.SSLContext:
        context.__class__ = SSLContext
    return context


def create_default_context(purpose=Purpose.SERVER_AUTH, *, cafile=None,
                           capath=None, cadata=None):
    """ssl.create_default_context, returning a ptsevent SSLContext."""
    return _cooperative(_ssl.create_default_context(
        purpose, cafile=cafile, capath=capath, cadata=cadata))


def _create_unverified_context(*args, **kwargs):
    return _cooperative(_ssl._create_unverified_context(*args, **kwargs))


_create_default_https_context = create_default_context
_create_stdlib_context = _create_unverified_context


def get_server_certificate(addr, ssl_version=PROTOCOL_TLS_CLIENT,
                           ca_certs=None, timeout=_socket._GLOBAL_DEFAULT_TIMEOUT):
    """The PEM certificate of the TLS server at addr = (host, port),
    verified against ca_certs if given."""
    host, _port = addr
    context = _create_stdlib_context(
        ssl_version, cert_reqs=CERT_REQUIRED if ca_certs else CERT_NONE,
        cafile=ca_certs)
    with create_connection(addr, timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=host) as sslsock:
            der = sslsock.getpeercert(True)
    return DER_cert_to_PEM_cert(der)


if hasattr(_ssl, "wrap_socket"):  # deprecated, gone in Python 3.12
    def wrap_socket(sock, keyfile=None, certfile=None, server_side=False,
                    cert_reqs=CERT_NONE, ssl_version=_ssl.PROTOCOL_TLS,
                    ca_certs=None, do_handshake_on_connect=True,
                    suppress_ragged_eofs=True, ciphers=None):
        """ssl.wrap_socket over a ptsevent SSLContext."""
        if server_side and not certfile:
            raise ValueError("certfile must be specified for server-side "
                             "operations")
        if keyfile and not certfile:
            raise ValueError("certfile must be specified")
        context = SSLContext(ssl_version)
        context.verify_mode = cert_reqs
        if ca_certs:
            context.load_verify_locations(ca_certs)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
        if ciphers:
            context.set_ciphers(ciphers)
        return context.wrap_socket(
            sock, server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs)


# The original API's names. An SSLSocket is a ptsevent socket: its file
# object is what sock.makefile() returns, as for the plain socket.
sslsocketfile_compat = _psocket.socketfile_compat
sslsocket_compat = SSLSocket

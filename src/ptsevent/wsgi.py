"""The built-in HTTP/1.1 WSGI server (PEP 3333).

Connection handling, parsing (llhttp in strict mode, plus the checks of the
server's own), and response writing are C++; each request's application
call runs in a tasklet, so an application may block on sockets, DNS or
``ptsevent.sleep`` without stalling other connections. An idle keep-alive
connection holds no tasklet and no greenlet.

    from ptsevent.wsgi import WSGIServer
    WSGIServer(("127.0.0.1", 8080), app).serve_forever()

Request header names containing ``_`` are dropped from the environ (as nginx
does by default): ``X_Forwarded_For`` would otherwise land on the same
``HTTP_X_FORWARDED_FOR`` key as ``X-Forwarded-For``.

Command line: ``python -m ptsevent.wsgi [--host H] [--port P] module:app``.
"""

import argparse
import importlib
import logging
import os
import signal
import socket as _stdsocket
import sys
from _thread import get_ident as _get_ident

from . import _core
from ._core import getcurrent

__all__ = ["WSGIServer", "serve", "FileWrapper", "RequestEntityTooLarge", "DEFAULTS"]

FileWrapper = _core.FileWrapper
#: Raised by ``wsgi.input`` when the request body goes over ``max_body``
#: (a ``ValueError``); the server then answers 413 and closes.
RequestEntityTooLarge = _core.RequestEntityTooLarge
log = logging.getLogger("ptsevent.wsgi")
access_logger = logging.getLogger("ptsevent.wsgi.access")

#: Limits and timeouts, with their defaults (keyword arguments of WSGIServer).
DEFAULTS = {
    "max_request_line": 8190,  # bytes: else 414
    "max_header_line": 8190,  # bytes of one field: else 431
    "max_header_block": 65536,  # bytes of the whole head: else 431
    "max_headers": 100,  # fields: else 431
    "max_body": 1 << 30,  # decoded body bytes: else 413
    "max_trailer_block": 8192,  # bytes of trailer fields: else 431
    "max_drain": 65536,  # unread body bytes drained to keep a connection
    "header_timeout": 10.0,  # seconds from a head's first byte to its end
    "body_timeout": 30.0,  # seconds per wait for body bytes
    "keepalive_timeout": 30.0,  # seconds a connection may idle between requests
    "write_timeout": 30.0,  # seconds per wait to write the response
    "accept_backoff": 0.1,  # seconds without accept() after EMFILE/ENFILE
}


def _log_error(message, exc):
    log.error("%s", message, exc_info=exc)


def _access(line):
    access_logger.info("%s", line)


def _listener(address, backlog, reuse_port):
    if isinstance(address, tuple):
        if len(address) < 2:
            raise ValueError("address must be (host, port)")
        host = address[0]
        family = _stdsocket.AF_INET6 if host and ":" in host else _stdsocket.AF_INET
        sock = _stdsocket.socket(family, _stdsocket.SOCK_STREAM)
        try:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock, True
    if isinstance(address, str):
        sock = _stdsocket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
        try:
            sock.bind(address)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock, True
    if hasattr(address, "fileno") and hasattr(address, "accept"):
        return address, False
    raise TypeError(
        "listener must be a (host, port) tuple, a Unix socket path or a listening "
        f"socket, not {type(address).__name__}"
    )


class WSGIServer:
    """An HTTP/1.1 server for one WSGI application, on this thread's hub.

    ``listener`` is a ``(host, port)`` address, a Unix socket path, or a
    listening socket (the server does not close a socket it was given).
    Keyword arguments: the limits and timeouts of :data:`DEFAULTS`, and
    ``backlog`` (1024), ``reuse_port`` (SO_REUSEPORT, for one process per
    core), ``defer_accept`` (TCP_DEFER_ACCEPT seconds, 0 = off),
    ``access_log`` (a callable given one line per request, ``True`` for the
    ``ptsevent.wsgi.access`` logger, default off), ``error_log`` (a callable
    ``(message, exception)``; default: the ``ptsevent.wsgi`` logger),
    ``server_name``, ``url_scheme``, ``multiprocess``.
    """

    def __init__(self, listener, application, *, backlog=1024, reuse_port=False,
                 defer_accept=0, access_log=None, error_log=None, server_name=None,
                 url_scheme="http", multiprocess=False, **limits):
        if not callable(application):
            raise TypeError("application must be callable")
        if not isinstance(backlog, int) or isinstance(backlog, bool):
            raise TypeError("backlog must be an int")
        unknown = set(limits) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        self.application = application
        self.socket, self._owns_socket = _listener(listener, backlog, reuse_port)
        try:
            if defer_accept and self.socket.family in (_stdsocket.AF_INET, _stdsocket.AF_INET6):
                self.socket.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_DEFER_ACCEPT,
                                       int(defer_accept))
            addr = self.socket.getsockname()
            if isinstance(addr, tuple):
                host, port = addr[0], addr[1]
            else:
                host, port = addr or "localhost", 0
            self.address = addr
            if server_name is None:
                server_name = host if host not in ("0.0.0.0", "::", "") else _stdsocket.gethostname()
            if access_log is True:
                access_log = _access
            self._core = _core.HttpServer(
                self.socket, application, server_name=str(server_name),
                server_port=str(port), url_scheme=url_scheme, errors=sys.stderr,
                log_error=error_log or _log_error, access_log=access_log,
                multiprocess=bool(multiprocess), **limits)
        except BaseException:
            if self._owns_socket:
                self.socket.close()
            raise
        self._started = False
        self._closed = False
        self._waiter = None
        self._thread = _get_ident()  # the thread whose hub runs the server

    @property
    def server_port(self):
        return self.address[1] if isinstance(self.address, tuple) else None

    def stats(self):
        """Counters: connections, active (running the app), idle, requests."""
        return self._core.stats()

    def start(self):
        """Starts accepting on this thread's hub and returns."""
        if self._closed:
            raise RuntimeError("the server is closed")
        if self._started:
            raise RuntimeError("the server is already started")
        self._core.start()
        self._started = True

    def serve_forever(self):
        """Starts (if needed) and waits until :meth:`stop` or :meth:`close`."""
        if not self._started:
            self.start()
        if self._closed:
            return
        self._waiter = _core.Waiter()
        try:
            self._waiter.get()
        finally:
            self._waiter = None

    def stop(self, timeout=None):
        """Stops accepting, closes idle connections at once, lets requests in
        flight finish for up to ``timeout`` seconds (None: as long as they
        take), then closes what is left. From another thread it runs in the
        server's thread and returns when done."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be non-negative or None")
        if self._closed:
            return
        if self._thread != _get_ident():
            return self._in_owner(self.stop, timeout)
        if self._started:
            self._core.stop_accepting()
        # New clients are refused at once rather than queued in the backlog
        # of a listener nobody will accept from again (a listening socket
        # given by the caller stays open: it is only no longer accepted on).
        self._close_listener()
        if self._started:
            self._core.close_idle()
            # Woken by the last request to end, or by the clock.
            self._core.wait_drained(timeout)
        self.close()

    def close(self):
        """Closes the listener (if the server made it) and every connection
        now. From another thread it runs in the server's thread and returns
        when done."""
        if self._closed:
            return
        if self._thread != _get_ident():
            return self._in_owner(self.close)
        self._closed = True
        if self._started:
            self._core.close()
        self._close_listener()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and waiter is not getcurrent():
            waiter.switch(None)

    def _close_listener(self):
        if self._owns_socket:
            self.socket.close()

    def _in_owner(self, method, *args):
        """Runs method(*args) in the server's thread (whose hub owns its
        events and may be polling without the GIL) and waits for it."""
        done = _core.Waiter(remote=True)  # set from the server's thread

        def run():
            try:
                method(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                done.throw(exc)
            else:
                done.switch(None)

        try:
            _core.call_threadsafe(self._thread, run)
        except RuntimeError:
            raise RuntimeError(
                "the server's thread has no running ptsevent hub any more") from None
        done.get()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve(application, host="127.0.0.1", port=8080, **options):
    """Serves ``application`` on ``host:port`` until interrupted."""
    server = WSGIServer((host, port), application, **options)
    try:
        server.serve_forever()
    finally:
        server.close()


def _load(spec):
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ValueError(f"expected module:app, got {spec!r}")
    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj = module
    for part in (attr or "application").split("."):
        obj = getattr(obj, part)
    return obj


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ptsevent.wsgi",
                                     description="Serve a WSGI application.")
    parser.add_argument("app", help="module:callable (callable defaults to 'application')")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1,
                        help="processes sharing the port with SO_REUSEPORT")
    parser.add_argument("--backlog", type=int, default=1024)
    parser.add_argument("--access-log", action="store_true",
                        help="log one line per request to stderr")
    parser.add_argument("--defer-accept", type=int, default=0,
                        help="TCP_DEFER_ACCEPT seconds (0: off)")
    for name, value in DEFAULTS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = _load(args.app)
    limits = {name: getattr(args, name) for name in DEFAULTS}
    children = []
    if args.workers > 1:
        for _ in range(args.workers):
            pid = os.fork()
            if pid == 0:
                children = None
                break
            children.append(pid)
        if children:
            try:
                for pid in children:
                    os.waitpid(pid, 0)
            except KeyboardInterrupt:
                for pid in children:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            return 0
    server = WSGIServer((args.host, args.port), app, backlog=args.backlog,
                        reuse_port=args.workers > 1, defer_accept=args.defer_accept,
                        access_log=True if args.access_log else None,
                        multiprocess=args.workers > 1, **limits)
    from .hub import signal_handler

    signal_handler(signal.SIGTERM, server.close)
    print(f"ptsevent.wsgi: serving {args.app} on http://{args.host}:{server.server_port}/ "
          f"(pid {os.getpid()})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

Command line: ``python -m ptsevent.wsgi [--host H] [--port P] [--workers N]
[--graceful-timeout S] module:app`` (``--help`` lists every option).
"""

import argparse
import errno
import importlib
import logging
import os
import signal
import socket as _stdsocket
import stat
import sys

from . import _core, _watchdog
from ._core import getcurrent, sleep
from ptsevent.patch._registry import os_thread_ident as _get_ident

__all__ = ["WSGIServer", "serve", "FileWrapper", "RequestEntityTooLarge", "DEFAULTS"]

FileWrapper = _core.FileWrapper
#: Raised by ``wsgi.input`` when the request body goes over ``max_body``
#: (a ``ValueError``); the server then answers 413 and closes.
RequestEntityTooLarge = _core.RequestEntityTooLarge
log = logging.getLogger("ptsevent.wsgi")
access_logger = logging.getLogger("ptsevent.wsgi.access")

#: Limits and timeouts, with their defaults (keyword arguments of WSGIServer):
#: a copy of ``_core.HTTP_OPTIONS``, the C++ server's own table, which also
#: decides which of these names WSGIServer accepts. Sizes are in bytes (or
#: fields), timeouts in seconds: ``max_request_line`` (414),
#: ``max_header_line``, ``max_header_block``, ``max_headers`` (431),
#: ``max_body`` (413), ``max_trailer_block``, ``max_drain`` (unread body bytes
#: drained to keep a connection), ``header_timeout`` (first byte of a head to
#: its end), ``body_timeout`` and ``write_timeout`` (each wait),
#: ``keepalive_timeout`` (idle between requests), ``accept_backoff`` (no
#: accept() after EMFILE/ENFILE).
DEFAULTS = dict(_core.HTTP_OPTIONS)


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
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or not _stale_unix_socket(address):
                    raise
                os.unlink(address)
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


def _stale_unix_socket(path):
    """Whether `path` is a socket file nobody listens on (left behind by a
    server that did not get to remove it): connecting is refused."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    probe = _stdsocket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def _socket_file(sock):
    """(path, device, inode, pid) of the Unix socket file `sock` was bound
    to here, or None (not a file: TCP, an abstract name)."""
    if sock.family != getattr(_stdsocket, "AF_UNIX", None):
        return None
    path = sock.getsockname()
    if not isinstance(path, str) or not path or path.startswith("\0"):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return path, st.st_dev, st.st_ino, os.getpid()


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
    ``server_name``, ``url_scheme``, ``multiprocess``, ``blocked_warning``
    (seconds: an app call that holds the hub longer logs one warning per
    route naming the blocking line; 0 disables; default 1.0 or
    ``PTSEVENT_BLOCKED_WARNING``).
    """

    def __init__(self, listener, application, *, backlog=1024, reuse_port=False,
                 defer_accept=0, access_log=None, error_log=None, server_name=None,
                 url_scheme="http", multiprocess=False, blocked_warning=None,
                 **limits):
        if not callable(application):
            raise TypeError("application must be callable")
        if blocked_warning is None:
            blocked_warning = _watchdog.default_threshold()
        elif not blocked_warning >= 0:
            raise ValueError("blocked_warning must be a number of seconds >= 0")
        self._blocked_warning = blocked_warning
        self._watch = None
        if not isinstance(backlog, int) or isinstance(backlog, bool):
            raise TypeError("backlog must be an int")
        self.application = application
        self.socket, self._owns_socket = _listener(listener, backlog, reuse_port)
        # A socket file this server made is removed when it closes.
        self._socket_file = _socket_file(self.socket) if self._owns_socket else None
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
            self._close_listener()
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
        self._watch = _watchdog.attach(self.application, self._blocked_warning,
                                       self._thread)

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
        watch, self._watch = self._watch, None
        _watchdog.detach(watch)
        if self._started:
            self._core.close()
        self._close_listener()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and waiter is not getcurrent():
            waiter.switch(None)

    def _close_listener(self):
        if not self._owns_socket:
            return
        made, self._socket_file = self._socket_file, None
        # Only the file this process made: not one a new server has put at
        # the same path since, nor from a child that inherited the server.
        if made is not None and made[3] == os.getpid():
            path, dev, ino, _ = made
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.unlink(path)
            except OSError:
                pass
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


class _CliError(Exception):
    """A problem the command line reports in one line: (message, exit code)."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def _app_spec(spec):
    """argparse type of the app argument: ``module`` or ``module:callable``."""
    module_name, sep, attr = spec.partition(":")

    def dotted(name):
        return bool(name) and all(part.isidentifier() for part in name.split("."))

    if not dotted(module_name) or (sep and not dotted(attr)):
        raise argparse.ArgumentTypeError(
            f"invalid value {spec!r} (for example myapp:app, or "
            "mysite.wsgi:application)")
    return spec


def _strip_import_frames(tb):
    # The frames of importlib and of this module say nothing about the
    # application's own error.
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename not in (__file__, importlib.__file__) and not filename.startswith(
                "<frozen importlib"):
            break
        tb = tb.tb_next
    return tb


def _load(spec):
    """The WSGI callable that ``module:callable`` names; _CliError if none."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "application"
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise _CliError(
                f"no module named {exc.name!r} (looked in the current directory "
                f"{os.getcwd()} and sys.path); the app argument is module:callable",
                2) from None
        raise _CliError(_import_failure(module_name, exc)) from None
    except Exception as exc:  # noqa: BLE001 - the app module's own error, reported
        raise _CliError(_import_failure(module_name, exc)) from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            hint = "" if ":" in spec else f" (name it after a colon: {module_name}:<callable>)"
            raise _CliError(f"module {module_name!r} has no attribute {attr!r}{hint}",
                            2) from None
    if not callable(obj):
        raise _CliError(f"{module_name}:{attr} is a {type(obj).__name__}, not a WSGI "
                        "callable", 2)
    return obj


def _import_failure(module_name, exc):
    # The traceback of the application's own error is what its author needs;
    # the message line says what failed.
    import traceback

    traceback.print_exception(type(exc), exc, _strip_import_frames(exc.__traceback__),
                              file=sys.stderr)
    return f"cannot import {module_name}: {type(exc).__name__}: {exc}"


def _url_host(host):
    return f"[{host}]" if ":" in host else host


def _bind(args):
    """The listening sockets, bound here, before any fork: one, or one per
    worker with --reuse-port. _CliError with one line if the address is
    unusable."""
    count = args.workers if args.reuse_port else 1
    socks = []
    port = args.port
    try:
        for _ in range(count):
            sock, _ = _listener((args.host, port), args.backlog, args.reuse_port)
            socks.append(sock)
            port = sock.getsockname()[1]  # port 0: the others join the first
    except (OSError, OverflowError) as exc:
        for sock in socks:
            sock.close()
        raise _CliError(f"cannot listen on {_url_host(args.host)}:{args.port}: {exc}") from None
    return socks


def _die_with_parent(parent):
    """In a worker: SIGTERM (a graceful stop) when the parent process dies,
    even by SIGKILL. The kernel sends it (PR_SET_PDEATHSIG): nothing to
    poll, no descriptor to inherit. Returns False if it is not available."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:
        # Gone before prctl: the signal is ours to send (blocked until the
        # handlers are in place).
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def _watch_parent(parent, stop, *args):
    # Without PR_SET_PDEATHSIG: notice the parent's death by polling.
    while os.getppid() == parent:
        sleep(1.0)
    stop(*args)


def _serve(args, app, sock, limits, unblock, parent=None):
    """Serves on `sock` in this process until SIGTERM or SIGINT, which stop
    the server gracefully (requests in flight get --graceful-timeout); a
    second SIGINT closes it at once."""
    from .hub import signal_handler

    server = WSGIServer(sock, app, defer_accept=args.defer_accept,
                        access_log=True if args.access_log else None,
                        multiprocess=args.workers > 1,
                        blocked_warning=args.blocked_warning, **limits)
    server._owns_socket = True  # this process's listener: closed on stop
    received = set()

    def stop(signum):
        if signum in received:
            # Ctrl-C twice: do not wait any more. (SIGTERM may well come
            # twice to a worker: from its parent and from a service manager
            # that signals the whole group.)
            if signum == signal.SIGINT:
                server.close()
            return
        received.add(signum)
        if len(received) == 1:
            server.stop(args.graceful_timeout)

    handlers = [signal_handler(signal.SIGTERM, stop, signal.SIGTERM)]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # nohup, "&"
        handlers.append(signal_handler(signal.SIGINT, stop, signal.SIGINT))
    watcher = None
    if parent is not None and not _die_with_parent(parent):
        watcher = _core.spawn(_watch_parent, parent, stop, signal.SIGTERM)
    unblock()
    try:
        server.serve_forever()
    finally:
        # Stopped: a late signal (the parent passing one on, a service
        # manager's) must not turn the exit into a death by signal. Blocked
        # while the handlers give way to SIG_IGN: cancel() puts the previous
        # disposition (SIG_DFL) back for a moment, and a signal landing
        # then would kill the process; one left pending is discarded.
        signums = {handler.signum for handler in handlers}
        signal.pthread_sigmask(signal.SIG_BLOCK, signums)
        for handler in handlers:
            handler.cancel()
            signal.signal(handler.signum, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signums)
        if watcher is not None:
            watcher.kill()
        server.close()
    return 0


def _run_workers(args, app, socks, limits, banner):
    """Forks --workers processes that serve on the sockets bound here, passes
    SIGTERM and SIGINT on to them and waits until they have all ended."""
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked across the forks: a signal arriving meanwhile waits until the
    # process that receives it has its handlers.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    def unblock():
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    parent = os.getpid()
    workers = []
    for i in range(args.workers):
        try:
            pid = os.fork()
        except OSError as exc:
            for pid in workers:
                os.kill(pid, signal.SIGTERM)
            unblock()
            raise _CliError(f"cannot start worker {i + 1}: {exc}") from None
        if pid == 0:
            mine = socks[i] if len(socks) > 1 else socks[0]
            for sock in socks:
                if sock is not mine:
                    sock.close()
            return _serve(args, app, mine, limits, unblock, parent=parent)
        workers.append(pid)
    for sock in socks:
        sock.close()  # the workers hold the listeners now
    alive = set(workers)

    def forward(signum, frame):
        # Always SIGTERM: a Ctrl-C in a terminal also sends the workers a
        # SIGINT of their own, and a second SIGINT means "now".
        for pid in alive:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for signum in stop_signals:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, forward)
    print(f"{banner} (pid {parent}, workers {' '.join(map(str, workers))})",
          file=sys.stderr, flush=True)
    unblock()
    status = 0
    while alive:
        try:
            pid, wstatus = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid not in alive:
            continue
        alive.discard(pid)
        code = os.waitstatus_to_exitcode(wstatus)
        if code != 0:
            log.error("worker %d exited with %s", pid,
                      f"signal {-code}" if code < 0 else f"status {code}")
            status = 1
    return status


def _configure_logging():
    """The server's own records (errors, the access log) to stderr, through
    the ``ptsevent`` logger only: the root logger is the application's, and a
    handler there would print every line of the application's that
    propagates a second time. Left alone if the application configured the
    ``ptsevent`` logger itself."""
    logger = logging.getLogger("ptsevent")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def _seconds_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value

    parse.__name__ = kind.__name__
    return parse


def _port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not in 0-65535")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ptsevent.wsgi",
                                     usage="%(prog)s [options] module:callable",
                                     description="Serve a WSGI application.")
    parser.add_argument("app", type=_app_spec, metavar="module:callable",
                        help="the WSGI application, imported from the current "
                             "directory or sys.path (callable: 'application' if "
                             "not given)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s; "
                             "0.0.0.0 or :: for every interface)")
    parser.add_argument("--port", type=_port, default=8080,
                        help="default %(default)s; 0 picks a free port")
    parser.add_argument("--workers", type=_positive(int), default=1, metavar="N",
                        help="processes, all accepting on one listening socket "
                             "(one socket each with --reuse-port)")
    parser.add_argument("--reuse-port", action="store_true",
                        help="SO_REUSEPORT: one listening socket per worker, and "
                             "other processes that set it may share the port")
    parser.add_argument("--graceful-timeout", type=_seconds, default=30.0,
                        metavar="SECONDS",
                        help="seconds requests in flight get to finish after SIGTERM "
                             "or SIGINT (default 30)")
    parser.add_argument("--backlog", type=_positive(int), default=1024,
                        help="listen() backlog (default %(default)s)")
    parser.add_argument("--access-log", action="store_true",
                        help="log one line per request to stderr")
    parser.add_argument("--defer-accept", type=_seconds_int, default=0,
                        metavar="SECONDS",
                        help="TCP_DEFER_ACCEPT seconds (0: off)")
    parser.add_argument("--no-patch", action="store_true",
                        help="do not call ptsevent.patch.patch_all() before loading "
                             "the app (also: PTSEVENT_NO_PATCH=1)")
    parser.add_argument("--blocked-warning", type=_seconds, default=None,
                        metavar="SECONDS",
                        help="warn once per route when an app call holds the hub "
                             "longer (default 1.0 or PTSEVENT_BLOCKED_WARNING; 0: off)")
    for name, value in DEFAULTS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=_positive(type(value)),
                            default=value, metavar="N",
                            help="default %(default)s (WSGIServer's " + name + ")")
    args = parser.parse_args(argv)
    limits = {name: getattr(args, name) for name in DEFAULTS}
    from .patch._serving import patch_for_serving

    # Before the app's modules are imported: what they bind at import
    # (from socket import socket, selector classes) is cooperative then.
    patch_for_serving(args.no_patch)
    try:
        app = _load(args.app)
        _configure_logging()
        socks = _bind(args)
        port = socks[0].getsockname()[1]
        banner = (f"ptsevent.wsgi: serving {args.app} on "
                  f"http://{_url_host(args.host)}:{port}/")
        if args.workers > 1:
            return _run_workers(args, app, socks, limits, banner)
    except _CliError as exc:
        print(f"ptsevent.wsgi: {exc}", file=sys.stderr, flush=True)
        return exc.code
    print(f"{banner} (pid {os.getpid()})", file=sys.stderr, flush=True)
    return _serve(args, app, socks[0], limits, lambda: None)


if __name__ == "__main__":
    sys.exit(main())

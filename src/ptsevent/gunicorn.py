"""A gunicorn worker that serves with ptsevent's C++ WSGI server.

    gunicorn -k ptsevent.gunicorn.Worker -w 4 module:app

Each worker process runs one ptsevent hub; every listener gunicorn hands
the worker gets a :class:`ptsevent.wsgi.WSGIServer`. gunicorn's settings
map as follows: ``timeout`` (the worker heartbeat), ``graceful_timeout``
(:meth:`WSGIServer.stop`), ``keepalive`` (keep-alive idle timeout, seconds),
``limit_request_line`` / ``limit_request_field_size`` /
``limit_request_fields`` (request line, header line, header count),
``max_requests`` (the worker restarts after that many requests).

The worker calls ``ptsevent.patch.patch_all()`` when it starts, before it
loads the app (the standard library and the libraries the app imports
become cooperative); ``PTSEVENT_NO_PATCH=1`` in the environment switches
that off. With ``--preload`` the app is imported in the arbiter, before
any worker patches: patch at the top of the app module instead. An app
call that holds the hub longer than ``PTSEVENT_BLOCKED_WARNING`` seconds
(default 1.0, 0: off) logs one warning per route.

HTTPS is not served by this worker yet: with ``--certfile``/``--keyfile``
gunicorn stops at start with an error instead of serving plain HTTP on what
it announces as an https:// address. Terminate TLS in front of gunicorn.
"""

import os
import signal
import sys

from gunicorn.workers.base import Worker as _BaseWorker

import ptsevent
from ptsevent.wsgi import WSGIServer

__all__ = ["Worker"]


_NO_TLS = ("ptsevent.gunicorn.Worker does not serve HTTPS yet (--certfile/--keyfile "
           "are set): terminate TLS in front of gunicorn (nginx, HAProxy) or use "
           "another worker class")


class Worker(_BaseWorker):
    """gunicorn worker class: ``-k ptsevent.gunicorn.Worker``."""

    @classmethod
    def check_config(cls, cfg, log):
        # The arbiter calls this before it starts any worker; gunicorn
        # reports a RuntimeError as "Error: ..." and exits 1.
        if cfg.is_ssl:
            raise RuntimeError(_NO_TLS)

    def init_process(self):
        if self.cfg.is_ssl:  # an arbiter that did not call check_config
            from gunicorn.arbiter import Arbiter

            self.log.error("%s", _NO_TLS)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        from ptsevent.patch._serving import patch_for_serving

        # Before gunicorn installs its signal handlers and wake-up fd (they
        # then run in a tasklet / are chained with the hub's) and before
        # it loads the app.
        patch_for_serving()
        super().init_process()

    def init_signals(self):
        super().init_signals()
        # gunicorn's handlers only set flags; they run in the hub, which the
        # heartbeat loop below polls.

    def _limits(self):
        cfg = self.cfg
        limits = {}
        if cfg.limit_request_line > 0:
            limits["max_request_line"] = cfg.limit_request_line
        if cfg.limit_request_field_size > 0:
            limits["max_header_line"] = cfg.limit_request_field_size
        if cfg.limit_request_fields > 0:
            limits["max_headers"] = cfg.limit_request_fields
        if cfg.keepalive > 0:
            limits["keepalive_timeout"] = float(cfg.keepalive)
        return limits

    def run(self):
        access = None
        if self.cfg.accesslog:
            def access(line, _log=self.log.access_log):
                _log.info("%s", line)
        servers = []
        for sock in self.sockets:
            server = WSGIServer(sock, self.wsgi, access_log=access,
                                multiprocess=self.cfg.workers > 1, **self._limits())
            server.start()
            servers.append(server)
        ppid = self.ppid
        beat = max(0.05, min(1.0, self.timeout / 2.0)) if self.timeout else 1.0
        try:
            while self.alive:
                self.notify()
                if os.getppid() != ppid:
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
                if self.max_requests and sum(
                        s.stats()["requests"] for s in servers) >= self.max_requests:
                    self.log.info("Autorestarting worker after current request.")
                    break
                ptsevent.sleep(beat)
        finally:
            for server in servers:
                server.stop(timeout=self.cfg.graceful_timeout)

    def handle_quit(self, sig, frame):
        self.alive = False

    def handle_exit(self, sig, frame):
        self.alive = False


# gunicorn resolves "-k ptsevent.gunicorn" to this module's attribute too.
PtseventWorker = Worker
del signal

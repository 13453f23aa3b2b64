"""Shared fixtures: every test must leave the hub and the process as it found them.

After each test the hub is given a few turns to finish what was scheduled, then
its debug counters must be back to zero and no descriptor may have been opened
or closed behind the test's back.
"""

import gc
import os
import subprocess
import sys
import textwrap

import pytest

import ptsevent
from _http import Conn
from support import made_then_closed

HERE = os.path.dirname(os.path.abspath(__file__))
CRASH_DIR = os.path.join(HERE, "crash")


def open_fds():
    """Descriptor numbers open in this process, with what each one points at.

    Listing /proc/self/fd opens one descriptor for the listing itself; it is
    closed again by the time readlink runs, so it drops out here.
    """
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink("/proc/self/fd/" + name)
        except FileNotFoundError:
            pass
    return fds


def settle():
    for _ in range(5):
        ptsevent.sleep(0)


def assert_hub_clean(stats=None):
    stats = ptsevent.hub_stats() if stats is None else stats
    assert stats["tasklets"] == 0, stats
    assert stats["events"] == 0, stats
    assert stats["io_handles"] == 0, stats
    assert stats["io_waiters"] == 0, stats
    assert stats["native_events"] == 0, stats
    assert stats["libevent_events"] == stats["events"] + stats["internal_events"], stats
    assert stats["thread_jobs"] == 0, stats
    assert stats["ready"] == 0, stats


def live_tasklets():
    main = ptsevent.getcurrent()
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, ptsevent.Tasklet) and o is not main and not o.dead
    ]


@pytest.fixture(autouse=True)
def hub_left_clean():
    # The first call creates this thread's hub with its own descriptors
    # (event_base backend, wake-up fds); they are part of the baseline.
    ptsevent.hub_stats()
    before = open_fds()
    yield
    settle()
    stats = ptsevent.hub_stats()
    if stats["tasklets"]:
        # Kill what the test left behind before failing it, so that one
        # failure does not make every later test fail too.
        leftover = live_tasklets()
        ptsevent.killall(leftover, timeout=2)
        settle()
    assert_hub_clean(stats)
    after = open_fds()
    assert sorted(after) == sorted(before), {
        "opened": {fd: after[fd] for fd in after.keys() - before.keys()},
        "closed": {fd: before[fd] for fd in before.keys() - after.keys()},
    }


@pytest.fixture
def run_python():
    """Run Python source (or a script under tests/crash/) in a fresh interpreter.

    Returns the CompletedProcess; a hang fails the test through the timeout
    instead of hanging the whole run.
    """

    def run(source=None, script=None, args=(), timeout=10, **kwargs):
        if script is not None:
            cmd = [sys.executable, os.path.join(CRASH_DIR, script), *args]
        else:
            cmd = [sys.executable, "-c", textwrap.dedent(source), *args]
        try:
            return subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                **kwargs,
            )
        except subprocess.TimeoutExpired as e:
            hung = e
        out, err = (
            s.decode(errors="replace") if isinstance(s, bytes) else s
            for s in (hung.stdout, hung.stderr)
        )
        pytest.fail(f"subprocess hung for {timeout}s\nstdout:\n{out}\nstderr:\n{err}")

    return run


@pytest.fixture
def track():
    """track(sock) -> sock; every tracked socket is closed after the test."""
    objs = []

    def add(obj):
        objs.append(obj)
        return obj

    yield add
    for obj in reversed(objs):
        try:
            obj.close()
        except OSError:
            pass


@pytest.fixture
def socketpair():
    import socket

    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture
def pipe():
    # Tests using this fixture never close the ends themselves: a second close
    # could hit a descriptor number reused in between.
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        os.close(r)
        os.close(w)


@pytest.fixture
def serve_app():
    """Start ptsevent.wsgi servers on 127.0.0.1 (an ephemeral port) in this
    thread's hub; every app is wrapped in wsgiref.validate.validator unless
    validate=False. All are closed after the test.

        server = serve_app(app, header_timeout=1)
        server.server_port
    """
    import wsgiref.validate

    from ptsevent.wsgi import WSGIServer

    servers = []

    def start(app, validate=True, **options):
        if validate:
            app = wsgiref.validate.validator(app)
        server = WSGIServer(("127.0.0.1", 0), app, **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close()
    settle()


@pytest.fixture
def connect():
    """connect(port) -> Conn; every connection is closed after the test."""
    with made_then_closed(Conn) as make:
        yield make


# -- TLS: a certificate authority and contexts made at test time --------------


@pytest.fixture(scope="session")
def ca():
    """A trustme CA; its certificate for localhost and 127.0.0.1 serves."""
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ctx(ca):
    import ssl

    import ptsevent.ssl

    ctx = ptsevent.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_ctx(ca):
    import ptsevent.ssl

    ctx = ptsevent.ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx

"""Helpers the test files share: each has one home here (the fixtures are in
conftest.py, the HTTP client side in _http.py, snippets in a patched
interpreter in _patched.py).

* Waiting in the test's tasklet: `wait_for` (poll a condition
  cooperatively), `run_ready` (let the ready tasklets run), `elapsed_of`.
* A call running concurrently, with its result: `background` (a tasklet for
  ptsevent's objects, a real OS thread for the standard library's, so that
  one test runs against both).
* Server processes: `free_port`, `start_cli` (``python -m ptsevent.wsgi``
  with its banner on a pipe), `Served` with `serve_cli` and
  `serve_gunicorn` (a process reached over HTTP, stopped after the test).
* `made_then_closed`: the body of a fixture that makes objects for a test
  and closes every one of them after it.
"""

import concurrent.futures
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

import ptsevent

HOST = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))
CRASH_DIR = os.path.join(HERE, "crash")


# --- waiting ------------------------------------------------------------------


def wait_for(predicate, timeout=5.0, step=0.01):
    """True once predicate() is true, False after `timeout` seconds; the
    other tasklets (a server in this hub) run meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        ptsevent.sleep(step)
    return True


def run_ready():
    """Let the tasklets made ready so far run (and those they wake)."""
    for _ in range(3):
        ptsevent.sleep(0)


def elapsed_of(fn, *args, **kwargs):
    """(fn's result, seconds it took)."""
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


# --- a call running concurrently ------------------------------------------------


class TaskletJob:
    def __init__(self, fn, *args, **kwargs):
        self.tasklet = ptsevent.spawn(fn, *args, **kwargs)

    def result(self, timeout=10):
        return self.tasklet.get(timeout=timeout)


class ThreadJob:
    def __init__(self, fn, *args, **kwargs):
        self.value = self.error = None

        def run():
            try:
                self.value = fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - handed to result()
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout=10):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background thread did not finish"
        if self.error is not None:
            raise self.error
        return self.value


def background(in_tasklet, fn, *args, **kwargs):
    """Run fn concurrently, in a tasklet or in a real OS thread; the job's
    result(timeout) returns its value or raises its exception."""
    return (TaskletJob if in_tasklet else ThreadJob)(fn, *args, **kwargs)


# --- server processes ------------------------------------------------------------


def free_port(host=HOST):
    """A TCP port nothing listens on now (for a server that needs a fixed one)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_cli(spec, *args, cwd=CRASH_DIR):
    """``python -m ptsevent.wsgi SPEC ARGS...`` in `cwd` (tests/crash holds
    wsgi_cli_app.py), its stderr (the banner, the log) on a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "ptsevent.wsgi", spec, *args],
        cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)


class Served:
    """A server process started with `cmd` in `cwd` (a tmp_path, on
    PYTHONPATH), stdout and stderr to a file there; the constructor returns
    once `port` accepts connections."""

    def __init__(self, cmd, cwd, port, env=None):
        self.log = open(cwd / "stderr.log", "wb+")
        self.port = port
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(cwd),
                                          **(env or {})})
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((HOST, port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    pytest.fail(f"server did not start:\n{self.output()}")
                time.sleep(0.05)

    def get(self, path, timeout=15):
        """The body of GET `path`, as text."""
        url = f"http://{HOST}:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()

    def get_all(self, paths):
        """GETs every path at once (real OS threads); (bodies, seconds)."""
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
            bodies = list(pool.map(self.get, paths))
        return bodies, time.monotonic() - t0

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        """SIGTERM (once), wait; returns all it wrote. The exit status is
        then self.proc.returncode."""
        if self.log.closed:
            return self.out
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out = self.output()
        self.log.close()
        return self.out


def _app_module(tmp_path, source, spec):
    (tmp_path / (spec.split(":")[0] + ".py")).write_text(source)


def serve_cli(tmp_path, source, spec, *args, env=None):
    """`source` saved as SPEC's module, served by ``python -m ptsevent.wsgi``."""
    _app_module(tmp_path, source, spec)
    port = free_port()
    return Served([sys.executable, "-m", "ptsevent.wsgi", spec, "--port",
                   str(port), *args], tmp_path, port, env)


def serve_gunicorn(tmp_path, source, spec, workers=1, env=None):
    """`source` saved as SPEC's module, served by gunicorn with ptsevent's
    worker class (graceful timeout 2 s)."""
    pytest.importorskip("gunicorn")
    _app_module(tmp_path, source, spec)
    port = free_port()
    return Served([sys.executable, "-m", "gunicorn", "-k",
                   "ptsevent.gunicorn.Worker", "-w", str(workers), "-b",
                   f"{HOST}:{port}", "--graceful-timeout", "2",
                   "--no-control-socket", spec], tmp_path, port, env)


# --- fixtures' bodies ----------------------------------------------------------


@contextlib.contextmanager
def made_then_closed(factory, close=lambda obj: obj.close()):
    """Yields make(*args, **kwargs) -> factory(...); on exit, close(obj) for
    every object made, in the order they were made."""
    made = []

    def make(*args, **kwargs):
        obj = factory(*args, **kwargs)
        made.append(obj)
        return obj

    yield make
    for obj in made:
        close(obj)

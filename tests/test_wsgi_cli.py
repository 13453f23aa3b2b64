"""The command line, `python -m ptsevent.wsgi module:app`, run as a real
subprocess with real signals and real clients."""

import concurrent.futures
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import ptsevent
from support import free_port, start_cli, wait_for

HOST = "127.0.0.1"

APP = '''
import os
import ptsevent

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        ptsevent.sleep(float(environ["QUERY_STRING"] or 0.5))
    body = ("pid=%d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''

# Runs the command line with SIGINT at its Python default, whatever the test
# runner inherited (a background `make test` ignores it).
SIGINT_DEFAULT = (
    "import runpy, signal, sys;"
    "signal.signal(signal.SIGINT, signal.default_int_handler);"
    "sys.argv[0] = 'ptsevent.wsgi';"
    "runpy.run_module('ptsevent.wsgi', run_name='__main__', alter_sys=True)"
)

BANNER = re.compile(r"serving \S+ on http://(\S+):(\d+)/ \(pid (\d+)(?:, workers ([\d ]+))?\)")


class Cli:
    def __init__(self, proc):
        self.proc = proc
        self.err = b""
        self.port = None
        self.workers = []

    def read_err(self, until, timeout=15):
        """Reads stderr until `until` (a regex) matches; the match or None."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stderr, selectors.EVENT_READ)
            while True:
                m = re.search(until, self.err.decode(errors="replace"))
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(timeout=left):
                    return None
                chunk = os.read(self.proc.stderr.fileno(), 65536)
                if not chunk:
                    return re.search(until, self.err.decode(errors="replace"))
                self.err += chunk

    def wait_banner(self):
        m = self.read_err(BANNER)
        assert m, self.finish()
        self.host, self.port = m.group(1), int(m.group(2))
        self.pid = int(m.group(3))
        self.workers = [int(p) for p in (m.group(4) or "").split()]
        return self

    def finish(self, timeout=15):
        """Waits for the exit; returns (exit code, all of stderr)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rest = self.proc.stderr.read()
            pytest.fail(f"the command line did not exit: {(self.err + rest).decode()}")
        self.err += self.proc.stderr.read()
        return self.proc.returncode, self.err.decode(errors="replace")


@pytest.fixture
def cli(tmp_path):
    (tmp_path / "cliapp.py").write_text(APP)
    started = []

    def run(*args, sigint_default=False, wait=True):
        head = ["-c", SIGINT_DEFAULT] if sigint_default else ["-m", "ptsevent.wsgi"]
        proc = subprocess.Popen([sys.executable, *head, *args], cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        c = Cli(proc)
        started.append(c)
        return c.wait_banner() if wait else c

    yield run
    for c in started:
        for pid in [c.proc.pid, *c.workers]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        c.proc.wait()
        c.proc.stderr.close()


def http_get(port, path="/", timeout=10, host=HOST):
    """(status line, body) of one request on a new connection."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


def refused(port, host=HOST):
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def gone(pid):
    """The process has ended (a zombie waiting for its reaper counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


# --- one app served, then SIGTERM ----------------------------------------------


def test_cli_serves_an_app_and_exits_0_on_sigterm():
    proc = start_cli("wsgi_cli_app:app", "--port", "0")
    try:
        def banner():
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stderr, selectors.EVENT_READ)
                line = b""
                deadline = time.monotonic() + 15
                while not line.endswith(b"\n") and time.monotonic() < deadline:
                    if sel.select(timeout=0.5):
                        ch = os.read(proc.stderr.fileno(), 1)
                        if not ch:
                            break
                        line += ch
                return line.decode()

        line = ptsevent.run_in_thread(banner)
        m = re.search(r"serving wsgi_cli_app:app on http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        port = int(m.group(1))
        assert port != 0

        def fetch():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/cli?z=9", timeout=5) as r:
                return r.status, r.read()

        assert ptsevent.run_in_thread(fetch) == (200, b"cli GET /cli z=9")
        proc.send_signal(signal.SIGTERM)
        rc = ptsevent.run_in_thread(proc.wait, 10)
        assert rc == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


# --- graceful stop on SIGTERM and SIGINT ---------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("workers", [1, 2])
def test_signal_lets_requests_in_flight_finish_then_exits_0(cli, signum, workers):
    c = cli("cliapp:app", "--port", "0", "--workers", str(workers), sigint_default=True)
    assert http_get(c.port)[0] == "HTTP/1.1 200 OK"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(http_get, c.port, "/slow", 10) for _ in range(4)]
        time.sleep(0.3)  # the requests are in the app
        os.kill(c.pid, signum)
        answers = [f.result() for f in slow]
    for status, body in answers:
        assert status == "HTTP/1.1 200 OK"
        assert body.startswith(b"pid=")
    code, err = c.finish()
    assert code == 0, err
    assert "Traceback" not in err, err
    assert refused(c.port)
    for pid in c.workers:
        assert gone(pid)


def test_new_connections_are_refused_while_sigterm_drains(cli):
    c = cli("cliapp:app", "--port", "0")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(http_get, c.port, "/slow?1.0", 10)
        time.sleep(0.3)
        c.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert c.proc.poll() is None  # still draining
        assert refused(c.port)
        assert slow.result()[0] == "HTTP/1.1 200 OK"
    assert c.finish()[0] == 0


def test_graceful_timeout_bounds_the_drain(cli):
    c = cli("cliapp:app", "--port", "0", "--graceful-timeout", "0.3")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(http_get, c.port, "/slow?30", 10)
        time.sleep(0.3)
        t0 = time.monotonic()
        c.proc.send_signal(signal.SIGTERM)
        code, err = c.finish()
        assert time.monotonic() - t0 < 3
        assert slow.result()[0] == ""  # cut: no answer
    assert code == 0, err


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_twice_stops_at_once(cli, workers):
    c = cli("cliapp:app", "--port", "0", "--workers", str(workers), sigint_default=True)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(http_get, c.port, "/slow?30", 10) for _ in range(2)]
        time.sleep(0.3)
        group = [c.pid, *c.workers]  # a terminal's Ctrl-C reaches every process
        for pid in group:
            os.kill(pid, signal.SIGINT)
        time.sleep(0.3)
        assert c.proc.poll() is None  # stopping gracefully: not cut by one Ctrl-C
        t0 = time.monotonic()
        for pid in group:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass  # a worker already gone (and reaped)
        code, err = c.finish()
        assert time.monotonic() - t0 < 3
        assert [f.result()[0] for f in slow] == ["", ""]  # cut
    assert code == 0, err


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_to_every_process_still_drains(cli, workers):
    # A service manager may signal the whole group: each worker then gets
    # SIGTERM twice, from it and from the parent.
    c = cli("cliapp:app", "--port", "0", "--workers", str(workers))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(http_get, c.port, "/slow?1", 10) for _ in range(2)]
        time.sleep(0.3)
        for _ in range(2):
            for pid in [c.pid, *c.workers]:
                os.kill(pid, signal.SIGTERM)
        assert [f.result()[0] for f in slow] == ["HTTP/1.1 200 OK"] * 2
    assert c.finish()[0] == 0


# --- workers --------------------------------------------------------------------


def test_sigterm_to_the_parent_ends_every_worker(cli):
    c = cli("cliapp:app", "--port", "0", "--workers", "2")
    assert len(c.workers) == 2
    assert http_get(c.port)[0] == "HTTP/1.1 200 OK"
    c.proc.send_signal(signal.SIGTERM)
    code, err = c.finish()
    assert code == 0, err
    assert all(gone(pid) for pid in c.workers)
    assert refused(c.port)


def test_workers_end_when_the_parent_is_killed(cli):
    c = cli("cliapp:app", "--port", "0", "--workers", "2")
    assert http_get(c.port)[0] == "HTTP/1.1 200 OK"
    c.proc.kill()
    c.proc.wait()
    assert wait_for(lambda: all(gone(pid) for pid in c.workers), timeout=10), c.workers
    assert refused(c.port)


def test_workers_share_one_listening_socket_without_reuse_port(cli):
    c = cli("cliapp:app", "--port", "0", "--workers", "2")

    def listeners(pid):
        # The inodes of the sockets the worker has open that listen on the port.
        inodes = set()
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{name}")
            except FileNotFoundError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        return inodes & listening_inodes(c.port)

    first, second = (listeners(pid) for pid in c.workers)
    assert len(first) == 1 and first == second


def listening_inodes(port):
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def test_reuse_port_gives_each_worker_its_own_socket(cli):
    c = cli("cliapp:app", "--port", "0", "--workers", "2", "--reuse-port")
    assert len(listening_inodes(c.port)) == 2
    assert http_get(c.port)[0] == "HTTP/1.1 200 OK"


# --- the port is taken ------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_in_use_exits_non_zero_with_one_line(cli, workers):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        c = cli("cliapp:app", "--port", str(port), "--workers", str(workers), wait=False)
        code, err = c.finish()
    assert code == 1, err
    assert err.strip() == (f"ptsevent.wsgi: cannot listen on 127.0.0.1:{port}: "
                           "[Errno 98] Address already in use"), err


def test_a_second_instance_does_not_share_the_port(cli):
    first = cli("cliapp:app", "--port", "0", "--workers", "2")
    second = cli("cliapp:app", "--port", str(first.port), "--workers", "2", wait=False)
    code, err = second.finish()
    assert code == 1, err
    assert "Address already in use" in err and "Traceback" not in err, err
    assert len(listening_inodes(first.port)) == 1


def test_two_instances_share_the_port_when_both_ask_for_it(cli):
    first = cli("cliapp:app", "--port", "0", "--reuse-port")
    second = cli("cliapp:app", "--port", str(first.port), "--reuse-port")
    assert second.port == first.port
    assert len(listening_inodes(first.port)) == 2


# --- the app argument -----------------------------------------------------------


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_module_that_does_not_exist(cli):
    code, err = cli("nosuchmodule", wait=False).finish()
    assert code == 2
    assert one_line(err).startswith("ptsevent.wsgi: no module named 'nosuchmodule'")


def test_a_missing_attribute(cli):
    code, err = cli("cliapp", wait=False).finish()
    assert code == 2
    assert one_line(err) == ("ptsevent.wsgi: module 'cliapp' has no attribute "
                             "'application' (name it after a colon: cliapp:<callable>)")
    code, err = cli("cliapp:nope", wait=False).finish()
    assert code == 2
    assert one_line(err) == "ptsevent.wsgi: module 'cliapp' has no attribute 'nope'"


def test_something_not_callable(cli):
    code, err = cli("cliapp:os", wait=False).finish()
    assert code == 2
    assert one_line(err) == "ptsevent.wsgi: cliapp:os is a module, not a WSGI callable"


def test_a_malformed_app_argument(cli):
    code, err = cli(":app", wait=False).finish()
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "python -m ptsevent.wsgi: error: argument module:callable: invalid value "
        "':app' (for example myapp:app, or mysite.wsgi:application)"), err
    assert "Traceback" not in err


def test_an_error_while_importing_the_app_shows_its_own_traceback(cli, tmp_path):
    (tmp_path / "brokenapp.py").write_text("import json\nimport no_such_dependency\n")
    code, err = cli("brokenapp:app", wait=False).finish()
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[-1] == ("ptsevent.wsgi: cannot import brokenapp: ModuleNotFoundError: "
                         "No module named 'no_such_dependency'")
    assert lines[0] == "Traceback (most recent call last):"
    assert 'brokenapp.py", line 2' in lines[1]  # the app's frame, no import machinery
    assert "importlib" not in err and "ptsevent" not in "\n".join(lines[:-1])


# --- logging ----------------------------------------------------------------------

LOGGING_APP = '''
import logging, sys

# As a framework's logging setup does: the application's own handler on the
# root logger.
handler = logging.StreamHandler(sys.stderr)
handler.setFormatter(logging.Formatter("app-root: %(name)s: %(message)s"))
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)
log = logging.getLogger("myapp")

def app(environ, start_response):
    log.info("hello from the app")
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("the app failed")
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
'''


def test_the_command_line_configures_only_its_own_loggers(cli, tmp_path):
    (tmp_path / "logapp.py").write_text(LOGGING_APP)
    c = cli("logapp:app", "--port", "0", "--access-log")
    assert http_get(c.port, "/hello")[0] == "HTTP/1.1 200 OK"
    assert http_get(c.port, "/fail")[0] == "HTTP/1.1 500 Internal Server Error"
    c.proc.send_signal(signal.SIGTERM)
    code, err = c.finish()
    assert code == 0, err
    lines = err.splitlines()
    # Each record is printed once: the app's through its own handler, the
    # server's (access log, the app's error) through ptsevent's.
    assert [line for line in lines if "hello from the app" in line] == [
        "app-root: myapp: hello from the app"] * 2, err
    assert len([line for line in lines if "GET /hello" in line]) == 1, err
    assert len([line for line in lines if "error in the WSGI application" in line]) == 1, err
    assert not any(line.startswith("app-root: ptsevent") for line in lines), err


# --- the banner -------------------------------------------------------------------


def ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_an_ipv6_listener_prints_a_usable_url(cli):
    c = cli("cliapp:app", "--host", "::1", "--port", "0")
    assert c.host == "[::1]", c.err
    assert f"on http://[::1]:{c.port}/ " in c.err.decode()
    assert http_get(c.port, host="::1")[0] == "HTTP/1.1 200 OK"


# --- the gunicorn worker ----------------------------------------------------------


def test_gunicorn_worker_refuses_to_serve_https_as_plain_http(tmp_path):
    pytest.importorskip("gunicorn")
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(tmp_path / "key.pem"),
         "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60)
    (tmp_path / "cliapp.py").write_text(APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "ptsevent.gunicorn.Worker",
         "-b", f"127.0.0.1:{port}", "--certfile", str(tmp_path / "cert.pem"),
         "--keyfile", str(tmp_path / "key.pem"), "--no-control-socket", "cliapp:app"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    plain = []
    try:
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                status, _ = http_get(port, timeout=1)
            except OSError:
                pass
            else:
                if status.startswith("HTTP/"):
                    plain.append(status)
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.communicate(timeout=10)[1].decode(errors="replace")
    assert not plain, err
    assert proc.returncode not in (0, -signal.SIGKILL), err
    assert "ptsevent.gunicorn.Worker does not serve HTTPS" in err, err

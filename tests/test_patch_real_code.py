"""Unmodified standard-library code under ptsevent.patch.patch_all(), many
calls at once on loopback; each program runs in an interpreter of its own
(tests/_patched.py), and the command line runner is tried as a user would."""

import http.server
import json

import pytest

import ptsevent
from ptsevent import socket as psocket
from _patched import TASKLET_TCP_SERVER, run_json, run_snippet

PATCH = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import ptsevent, ptsevent.patch
ptsevent.patch.patch_all()
"""


def slow_app(environ, start_response):
    ptsevent.sleep(0.2)
    body = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def test_urllib_and_http_client_fetch_200_slow_urls_at_once(serve_app):
    # The server (in this process's hub) takes 0.2 s per request: 200 of
    # them one after the other would take 40 s.
    port = serve_app(slow_app).server_port
    out = run_json(PATCH + f"""
import http.client, urllib.request
PORT = {port}
def by_urllib(i):
    # No timeout: urllib passes socket's own "default timeout" sentinel.
    with urllib.request.urlopen(f"http://127.0.0.1:{{PORT}}/u{{i}}") as r:
        return r.status, r.read().decode()
def by_http_client(i):
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    try:
        conn.request("GET", f"/h{{i}}")
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()
out = {{}}
for fetch in (by_urllib, by_http_client):
    t0 = time.monotonic()
    tasklets = [ptsevent.spawn(fetch, i) for i in range(200)]
    ptsevent.joinall(tasklets)
    took = time.monotonic() - t0
    errors = [repr(t.exception) for t in tasklets if t.exception is not None]
    ok = sum(t.value == (200, "/" + fetch.__name__[3] + str(i))
             for i, t in enumerate(tasklets) if t.exception is None)
    out[fetch.__name__] = [ok, took, errors[:3]]
print(json.dumps(out))
""", timeout=60)
    for name, (ok, took, errors) in out.items():
        assert errors == [] and ok == 200, (name, out)
        assert took < 2.0, (name, out)  # about 0.2 s; 40 s if serial


SOCKETSERVER = PATCH + """
import socket, socketserver
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline()
        time.sleep(0.2)                     # a slow client's request
        self.wfile.write(line.upper())
""" + TASKLET_TCP_SERVER + """
server = TaskletTCPServer(("127.0.0.1", 0), Echo)
port = server.server_address[1]
loop = ptsevent.spawn(server.serve_forever, 0.5)

def client(i):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"hello %d\\n" % i)
        return s.makefile("rb").readline()
"""


def test_socketserver_serve_forever_in_a_tasklet_serves_100_slow_clients():
    out = run_json(SOCKETSERVER + """
t0 = time.monotonic()
clients = [ptsevent.spawn(client, i) for i in range(100)]
ptsevent.joinall(clients)
took = time.monotonic() - t0
ok = sum(c.value == b"HELLO %d\\n" % i for i, c in enumerate(clients))
# shutdown() from a tasklet: its threading.Event is cooperative.
t1 = time.monotonic()
server.shutdown()
stopped = time.monotonic() - t1
loop.join(5)
server.server_close()
print(json.dumps({"ok": ok, "took": took, "stopped": stopped, "dead": loop.dead}))
""")
    assert out["ok"] == 100
    assert out["took"] < 2.0, out  # 20 s if the 100 were served in turn
    # serve_forever's select waits 0.5 s at a time: shutdown is noticed
    # within one wait, and the loop (a tasklet) has returned.
    assert out["stopped"] < 1.5 and out["dead"] is True, out


def test_threading_http_server_serves_100_slow_clients():
    # Its handler threads are tasklets of the main OS thread, as are the
    # clients; shutdown() from a tasklet returns.
    out = run_json(PATCH + """
import http.server, threading, urllib.request
natives = set()
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.2)
        natives.add(threading.get_native_id())
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.path)))
        self.end_headers()
        self.wfile.write(self.path.encode())
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
server = Server(("127.0.0.1", 0), Slow)
loop = ptsevent.spawn(server.serve_forever, 0.5)
url = "http://127.0.0.1:%d/p%d"
def get(i):
    with urllib.request.urlopen(url % (server.server_address[1], i), timeout=10) as r:
        return r.read()
t0 = time.monotonic()
clients = [ptsevent.spawn(get, i) for i in range(100)]
ptsevent.joinall(clients)
took = time.monotonic() - t0
ok = sum(c.value == b"/p%d" % i for i, c in enumerate(clients))
server.shutdown()
loop.join(5)
server.server_close()
print(json.dumps({"ok": ok, "took": took, "dead": loop.dead,
                  "natives": sorted(natives),
                  "main": threading.get_native_id()}))
""")
    assert out["ok"] == 100
    assert out["took"] < 2.0, out
    assert out["dead"] is True
    assert out["natives"] == [out["main"]]


def test_50_subprocess_runs_in_tasklets_take_about_one_run():
    out = run_json(PATCH + """
import subprocess
t0 = time.monotonic()
runs = [ptsevent.spawn(subprocess.run, ["sleep", "0.2"]) for _ in range(50)]
ptsevent.joinall(runs)
took = time.monotonic() - t0
print(json.dumps({"took": took,
                  "codes": sorted({r.value.returncode for r in runs if r.exception is None}),
                  "errors": [repr(r.exception) for r in runs if r.exception][:3]}))
""")
    assert out["errors"] == [] and out["codes"] == [0]
    assert out["took"] < 1.5, out  # 10 s one after the other


def test_communicate_and_wait_timeouts_block_only_the_tasklet():
    out = run_json(PATCH + """
import subprocess
ticks = []
def ticker():
    while True:
        ticks.append(1); ptsevent.sleep(0.01)
t = ptsevent.spawn(ticker)
out = {}
# One pipe: the standard communicate() would read it with one blocking call.
out["check_output"] = subprocess.check_output(["sh", "-c", "sleep 0.3; echo hi"]).decode()
out["ticks_output"] = len(ticks); del ticks[:]
out["input"] = subprocess.run(["sh", "-c", "sleep 0.3; cat"], input="data",
                              capture_output=True, text=True).stdout
out["ticks_input"] = len(ticks); del ticks[:]
p = subprocess.Popen(["sleep", "5"])
try:
    p.wait(timeout=0.3)
except subprocess.TimeoutExpired as e:
    out["timeout"] = str(e)
out["ticks_wait"] = len(ticks)
p.kill()
out["killed"] = p.wait()
# Two tasklets waiting for one child both get its status.
p = subprocess.Popen(["sleep", "0.2"])
waiters = [ptsevent.spawn(p.wait) for _ in range(2)]
ptsevent.joinall(waiters)
out["both"] = [w.value for w in waiters]
t.kill()
print(json.dumps(out))
""")
    assert out["check_output"] == "hi\n" and out["input"] == "data"
    assert out["timeout"] == "Command '['sleep', '5']' timed out after 0.3 seconds"
    assert out["killed"] == -9 and out["both"] == [0, 0]
    for key in ("ticks_output", "ticks_input", "ticks_wait"):
        assert out[key] >= 15, (key, out)  # 0.3 s of 10 ms ticks


# -- python -m ptsevent.patch ----------------------------------------------------

PROGRAM = """
import json, os, socket, sys, time
print(json.dumps({"name": __name__, "argv": sys.argv, "path0": sys.path[0],
                  "sleep": time.sleep.__module__,
                  "socket": socket.socket.__module__}))
"""


def test_runner_runs_a_script_patched_with_its_argv(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    proc = run_snippet(None, str(script), "a", "--b",
                       python_args=["-m", "ptsevent.patch"])
    out = json.loads(proc.stdout)
    assert out == {"name": "__main__", "argv": [str(script), "a", "--b"],
                   "path0": str(tmp_path), "sleep": "ptsevent.patch",
                   "socket": "ptsevent.socket"}
    assert proc.stderr == ""  # everything patched: nothing to warn about
    # A directory with a __main__.py, as python runs one: the directory
    # itself first on sys.path.
    app = tmp_path / "app"
    app.mkdir()
    (app / "__main__.py").write_text(PROGRAM)
    out = json.loads(run_snippet(None, str(app), "c", python_args=[
        "-W", "ignore", "-m", "ptsevent.patch"]).stdout)
    assert (out["name"], out["argv"], out["path0"]) == ("__main__", [str(app), "c"],
                                                        str(app))


def test_runner_runs_a_module_with_dash_m(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text(PROGRAM)
    proc = run_snippet(None, "-m", "mypkg.tool", "x",
                       python_args=["-m", "ptsevent.patch"], cwd=tmp_path)
    out = json.loads(proc.stdout)
    assert out["name"] == "__main__"
    assert out["argv"] == [str(pkg / "tool.py"), "x"]
    assert out["sleep"] == "ptsevent.patch" and out["socket"] == "ptsevent.socket"


def test_runner_says_in_one_line_what_it_cannot_run(tmp_path):
    missing = run_snippet(None, str(tmp_path / "nope.py"), check=False,
                          python_args=["-m", "ptsevent.patch"])
    assert missing.returncode == 2
    assert missing.stderr == (f"ptsevent.patch: can't open file "
                              f"'{tmp_path / 'nope.py'}': [Errno 2] No such file "
                              "or directory\n")
    no_main = run_snippet(None, str(tmp_path), check=False,
                          python_args=["-m", "ptsevent.patch"])
    assert no_main.returncode == 1
    assert no_main.stderr == (f"ptsevent.patch: can't find '__main__' module "
                              f"in '{tmp_path}'\n")
    no_module = run_snippet(None, "-m", "no_such_module_here", check=False,
                            python_args=["-W", "ignore", "-m", "ptsevent.patch"])
    assert no_module.returncode == 1
    assert no_module.stderr == "ptsevent.patch: No module named 'no_such_module_here'\n"
    usage = run_snippet(None, check=False, python_args=["-m", "ptsevent.patch"])
    assert usage.returncode == 2 and usage.stderr.startswith("usage: ")


def test_runner_leaves_the_programs_own_errors_and_exit_codes_alone(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import sys\nif sys.argv[1] == 'exit':\n    sys.exit(5)\n"
                      "raise RuntimeError('from the program')\n")
    raised = run_snippet(None, str(script), "raise", check=False,
                         python_args=["-W", "ignore", "-m", "ptsevent.patch"])
    assert raised.returncode == 1
    assert "Traceback" in raised.stderr
    assert raised.stderr.rstrip().endswith("RuntimeError: from the program")
    exited = run_snippet(None, str(script), "exit", check=False,
                         python_args=["-W", "ignore", "-m", "ptsevent.patch"])
    assert exited.returncode == 5 and exited.stderr == ""



def test_child_waits_without_pidfd_fall_back_and_stay_cooperative():
    # A kernel older than 5.3 has no pidfd_open: waits fall back to the
    # thread pool (no timeout) or to polling with the cooperative sleep.
    out = run_json(PATCH + """
import os, subprocess
def no_pidfd(pid):
    raise OSError(38, "Function not implemented")
os.pidfd_open = no_pidfd
ticks = []
def ticker():
    while True:
        ticks.append(1); ptsevent.sleep(0.01)
t = ptsevent.spawn(ticker)
t0 = time.monotonic()
runs = [ptsevent.spawn(subprocess.run, ["sleep", "0.2"]) for _ in range(8)]
ptsevent.joinall(runs)
took = time.monotonic() - t0
p = subprocess.Popen(["sleep", "5"])
try:
    p.wait(timeout=0.2)
except subprocess.TimeoutExpired as e:
    timeout = str(e)
p.kill()
code = p.wait()
t.kill()
print(json.dumps({"took": took, "codes": [r.value.returncode for r in runs],
                  "timeout": timeout, "code": code, "ticks": len(ticks)}))
""")
    assert out["codes"] == [0] * 8 and out["code"] == -9
    assert out["took"] < 1.5, out
    assert out["timeout"] == "Command '['sleep', '5']' timed out after 0.2 seconds"
    assert out["ticks"] >= 20, out


# -- TLS -----------------------------------------------------------------------


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 over whatever socket it is given; 0.2 s a GET."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        ptsevent.sleep(0.2)
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def https_port(server_ctx):
    """A slow HTTPS server in this process's hub: a tasklet a connection."""
    listener = psocket.create_server(("127.0.0.1", 0), backlog=256)
    tasklets = []

    def connection(conn, addr):
        with conn, server_ctx.wrap_socket(conn, server_side=True) as tls:
            SlowHandler(tls, addr, None)

    def accept_loop():
        while True:
            conn, addr = listener.accept()
            conn.settimeout(10)
            tasklets.append(ptsevent.spawn(connection, conn, addr))

    tasklets.append(ptsevent.spawn(accept_loop))
    yield listener.getsockname()[1]
    ptsevent.killall([t for t in tasklets if not t.dead], timeout=2)
    listener.close()


def test_requests_and_urllib_with_tls_made_before_patching_overlap(
        https_port, ca, tmp_path):
    # A requests Session and an ssl context made before patch_all(), as an
    # application's module-level ones are: 50 HTTPS GETs at once each.
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    out = run_json(f"""
import json, ssl, sys, time, warnings
import requests, urllib.request
session = requests.Session()
session.verify = {str(cafile)!r}
session.trust_env = False  # no proxy or CA bundle from the environment
context = ssl.create_default_context(cafile={str(cafile)!r})
warnings.simplefilter("ignore")
import ptsevent, ptsevent.patch
ptsevent.patch.patch_all()
URL = "https://localhost:{https_port}/"
def by_requests(i):
    r = session.get(URL + f"r{{i}}", timeout=30)
    return r.status_code, r.text
def by_urllib(i):
    with urllib.request.urlopen(URL + f"u{{i}}", context=context, timeout=30) as r:
        return r.status, r.read().decode()
out = {{}}
for fetch, tag in ((by_requests, "r"), (by_urllib, "u")):
    t0 = time.monotonic()
    tasklets = [ptsevent.spawn(fetch, i) for i in range(50)]
    ptsevent.joinall(tasklets)
    took = time.monotonic() - t0
    ok = sum(t.value == (200, f"/{{tag}}{{i}}") for i, t in enumerate(tasklets))
    errors = [repr(t.exception) for t in tasklets if t.exception is not None]
    out[tag] = [ok, took, errors[:3]]
print(json.dumps(out))
""", timeout=60)
    for tag, (ok, took, errors) in out.items():
        assert errors == [] and ok == 50, (tag, out)
        assert took < 2.5, (tag, out)  # 10 s one after the other

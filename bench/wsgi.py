"""WSGI HTTP benchmark: ptsevent's C++ WSGI server against the other servers, with wrk.

Every server runs the same apps (bench/wsgi_apps.py) in a single process (one
worker), in a fresh process per (run, app), pinned to one CPU; wrk runs
pinned to another one. For each app and connection count the driver runs

    wrk -t1 -cN -d<duration>s --latency --timeout 5s [-s script.lua] http://127.0.0.1:PORT/

and reads requests/s and the 99th percentile latency from its report, and
the server's CPU time (utime + stime of every process of the server, all
threads, from /proc/<pid>/stat) before and after the run.

Servers:

  ptsevent         ptsevent.wsgi.WSGIServer (C++), sleep = ptsevent.sleep
  bjoern           bjoern.run (C, libev), no cooperative sleep: time.sleep
  gevent.pywsgi    gevent.pywsgi.WSGIServer, sleep = gevent.sleep
  gevent.pywsgi-nodelay  the same with TCP_NODELAY set on each connection
                   (pywsgi writes headers and body separately: Nagle + delayed ACK)
  waitress         waitress.serve, 4 threads (its default), sleep = time.sleep
  gunicorn-gevent  gunicorn -k gevent -w 1 (arbiter + one worker), sleep = gevent.sleep
  meinheld         meinheld.server.run (C, picoev), if it installs; time.sleep
  nginx            nginx, one worker, a fixed body: the physical-limit reference

Apps (rows):

  hello   GET, "Hello, World!" with Content-Length, at 1, 50 and 256 keep-alive
          connections, and 50 connections with 16 pipelined requests each
  64k     GET, a 64 KiB body; the same rows
  echo    POST of 1 MiB, echoed back; 1, 50 and 256 connections
  sleep   GET, the app sleeps 10 ms (cooperatively where the server can)
          then says hello; 1, 50 and 256 connections (ideal: N / 10 ms)

    python bench/wsgi.py [--quick] [--repeat N] [--impl a,b] [--apps a,b] [--save PATH]

Peers that pin conflicting versions live in virtual environments of their
own (bench/.venv-peers, bench/.venv-meinheld; `make bench-wsgi` creates
them); each server runs with the first interpreter that can import it.
See bench/README.md for what is measured and how to read the tables.
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common  # noqa: E402
import wsgi_apps  # noqa: E402

IMPLS = ("ptsevent", "bjoern", "gevent.pywsgi", "gevent.pywsgi-nodelay", "waitress",
         "gunicorn-gevent", "meinheld", "nginx")
APPS = ("hello", "64k", "echo", "sleep")
CONNS = (1, 50, 256)
PIPELINE_DEPTH = 16
PIPELINE_CONNS = 50
PIPELINE_APPS = ("hello", "64k")  # a pipelined 1 MiB POST or 10 ms sleep says nothing new
# --quick: the rows the targets are about, and one row per other app.
QUICK_CONNS = {"hello": (50, 256), "64k": (50,), "echo": (50,), "sleep": (256,)}
QUICK_PIPELINE_APPS = ("hello",)

POST_SIZE = 1 << 20
WAITRESS_THREADS = 4  # waitress's default
BACKLOG = 1024
MAX_CONNS = 16384  # per-server connection limits, raised where a server has one
KEEPALIVE = 300  # seconds of idle keep-alive allowed where a server limits it

PEERS_VENV = os.path.join(HERE, ".venv-peers")
MEINHELD_VENV = os.path.join(HERE, ".venv-meinheld")
MEINHELD_NOTE = os.path.join(MEINHELD_VENV, "INSTALL-NOTE")
MEINHELD_FAILED = os.path.join(MEINHELD_VENV, "INSTALL-FAILED")

# Interpreters to try for each server, in order (None: the driver's own).
INTERPRETERS = {
    "ptsevent": (None,),
    "bjoern": (PEERS_VENV, None),
    "gevent.pywsgi": (None, PEERS_VENV),
    "gevent.pywsgi-nodelay": (None, PEERS_VENV),
    "waitress": (PEERS_VENV, None),
    "gunicorn-gevent": (PEERS_VENV, None),
    "meinheld": (MEINHELD_VENV, None),
    "nginx": (None,),
}

# What each server's sleeping app sleeps with.
SLEEP_APP = {
    "ptsevent": "sleep_ptsevent",
    "bjoern": "sleep_blocking",
    "gevent.pywsgi": "sleep_gevent",
    "gevent.pywsgi-nodelay": "sleep_gevent",
    "waitress": "sleep_blocking",
    "gunicorn-gevent": "sleep_gevent",
    "meinheld": "sleep_blocking",
}
SLEEP_NOTE = {
    "bjoern": "time.sleep: blocks the server",
    "waitress": f"time.sleep in {WAITRESS_THREADS} threads",
    "meinheld": "time.sleep: meinheld.server.sleep takes whole seconds",
}
NGINX_APPS = ("hello", "64k")  # nginx serves a fixed body, nothing else

# A row whose wrk used at least this share of its CPU is marked: the rate
# may then be wrk's limit rather than the server's.
CLIENT_BOUND = 0.90

READY_TIMEOUT = 20.0  # seconds for a server to print its ready line and listen
CHECK_TIMEOUT = 10.0  # seconds for the correctness check of one server
PIPELINE_CHECK_TIMEOUT = 3.0  # seconds for all the responses to a pipelined batch


def app_name(impl, app):
    """The wsgi_apps attribute ``impl`` serves for workload ``app``."""
    if app == "sleep":
        return SLEEP_APP[impl]
    return {"hello": "hello", "64k": "bytes64k", "echo": "echo"}[app]


def applicable(impl, app):
    if impl == "nginx":
        return app in NGINX_APPS
    return True


def raise_nofile():
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the new one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


# --------------------------------------------------------------------------
# Server (launcher) mode: one server, one app, on 127.0.0.1:PORT, until killed.


def find_nginx():
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )


def _version(dist, module=None):
    return _common._dist_version(dist, module)


def import_server(impl):
    """Import what ``impl`` needs; return ``(version, description)``.

    Raises :class:`_common.Missing` when it is not importable (or, for
    nginx, not installed).
    """
    try:
        if impl == "ptsevent":
            import ptsevent
            from ptsevent.wsgi import WSGIServer  # noqa: F401

            return _version("ptsevent", ptsevent), "ptsevent.wsgi.WSGIServer (C++)"
        if impl == "bjoern":
            import bjoern  # noqa: F401

            return _version("bjoern"), "bjoern (C, libev)"
        if impl in ("gevent.pywsgi", "gevent.pywsgi-nodelay"):
            import gevent
            from gevent.pywsgi import WSGIServer  # noqa: F401

            if impl == "gevent.pywsgi":
                return gevent.__version__, "gevent.pywsgi.WSGIServer"
            return gevent.__version__, "gevent.pywsgi.WSGIServer, TCP_NODELAY per connection"
        if impl == "waitress":
            import waitress  # noqa: F401

            return _version("waitress"), f"waitress, {WAITRESS_THREADS} threads"
        if impl == "gunicorn-gevent":
            import gevent
            import gunicorn
            from gunicorn.workers import ggevent  # noqa: F401

            return gunicorn.__version__, f"gunicorn -k gevent -w 1 (gevent {gevent.__version__})"
        if impl == "meinheld":
            from meinheld import server  # noqa: F401

            desc = "meinheld (C, picoev)"
            try:
                import greenlet

                if int(greenlet.__version__.split(".")[0]) >= 1:
                    desc += f", with greenlet {greenlet.__version__} (its pin is <0.5)"
            except Exception:  # noqa: BLE001 - the description only
                pass
            return _version("meinheld"), desc
        if impl == "nginx":
            nginx = find_nginx()
            if nginx is None:
                raise _common.Missing("nginx is not installed (Debian package nginx)")
            out = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=30)
            m = re.search(r"nginx/(\S+)", out.stderr + out.stdout)
            return (m.group(1) if m else "?"), "nginx, 1 worker, fixed body"
    except ImportError as exc:
        raise _common.Missing(f"{type(exc).__name__}: {exc}") from None
    raise ValueError(f"unknown server {impl!r}")


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
{user}
events {{
    worker_connections {max_conns};
}}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_timeout {keepalive}s;
    keepalive_requests 1000000000;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    server {{
        listen 127.0.0.1:{port} backlog={backlog};
        root {root};
        location = / {{
            {body}
        }}
    }}
}}
"""


def _serve_nginx(app, port, tmp, ready):
    nginx = find_nginx()
    root = os.path.join(tmp, f"nginx-{port}")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "64k.bin"), "wb") as f:
        f.write(wsgi_apps.BODY_64K)
    if app == "hello":
        body = f'default_type text/plain; return 200 "{wsgi_apps.HELLO.decode()}";'
    elif app == "bytes64k":
        body = "default_type application/octet-stream; try_files /64k.bin =404;"
    else:
        raise ValueError(f"nginx serves only fixed bodies, not {app!r}")
    conf = os.path.join(root, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(
            root=root, port=port, body=body, backlog=BACKLOG, keepalive=KEEPALIVE,
            nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[0], max_conns=MAX_CONNS,
            user="user root root;" if os.geteuid() == 0 else "",
        ))
    proc = subprocess.Popen([nginx, "-p", root + "/", "-e", os.path.join(root, "error.log"),
                             "-c", conf], stdin=subprocess.DEVNULL)
    ready()
    code = proc.wait()
    try:
        with open(os.path.join(root, "error.log")) as f:
            tail = (f.read().strip().splitlines() or [""])[-1]
    except OSError:
        tail = ""
    raise RuntimeError(f"nginx exited with status {code}: {tail}")


def _serve_gunicorn(app, port, ready):
    from gunicorn.app.wsgiapp import run

    sys.argv = [
        "gunicorn", "-k", "gevent", "-w", "1",
        "-b", f"127.0.0.1:{port}",
        "--backlog", str(BACKLOG),
        "--worker-connections", str(MAX_CONNS),
        "--keep-alive", str(KEEPALIVE),
        "--graceful-timeout", "1",
        "--log-level", "warning",
        "--chdir", HERE,
        f"wsgi_apps:{app}",
    ]
    ready()
    run()


def serve(impl, app, port, cpu, tmp, lifetime):
    """Server mode: print one JSON line (ready, missing or error), then serve."""
    # A server never outlives its run, even if the driver is killed: SIGALRM's
    # default action ends a one-process server (whose C loop might never run
    # a Python handler). The launchers of nginx and gunicorn run Python code
    # while they wait, and lead their own process group: there the alarm
    # ends the whole group, master and worker included.
    def end_group(*_):
        os.killpg(os.getpgrp(), signal.SIGKILL)

    if impl in ("nginx", "gunicorn-gevent"):
        signal.signal(signal.SIGALRM, end_group)
    signal.alarm(max(1, int(lifetime)))
    nofile = raise_nofile()
    if cpu is not None:
        _common.pin_to_cpu(cpu)  # inherited by nginx's and gunicorn's processes

    def say(**kw):
        print(json.dumps(kw), flush=True)

    try:
        version, description = import_server(impl)
    except _common.Missing as exc:
        say(status=_common.MISSING, error=str(exc))
        return 0

    def ready():
        say(status=_common.OK, pid=os.getpid(), version=version, description=description,
            python=sys.executable, nofile=nofile, cpu=cpu)

    try:
        if impl == "nginx":
            _serve_nginx(app, port, tmp, ready)
        elif impl == "gunicorn-gevent":
            _serve_gunicorn(app, port, ready)
        else:
            application = getattr(wsgi_apps, app)
            if impl == "ptsevent":
                from ptsevent.wsgi import WSGIServer

                server = WSGIServer(("127.0.0.1", port), application)
                ready()
                server.serve_forever()
            elif impl == "bjoern":
                import bjoern

                bjoern.listen(application, "127.0.0.1", port, listen_backlog=BACKLOG)
                ready()
                bjoern.run()
            elif impl in ("gevent.pywsgi", "gevent.pywsgi-nodelay"):
                from gevent.pywsgi import WSGIHandler, WSGIServer

                class NoDelayHandler(WSGIHandler):
                    # pywsgi sends the headers and the body in two writes:
                    # without TCP_NODELAY, Nagle holds the body until the
                    # client's delayed ACK of the headers (~40 ms).
                    def handle(self):
                        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        return super().handle()

                kw = {"handler_class": NoDelayHandler} if impl.endswith("-nodelay") else {}
                server = WSGIServer(("127.0.0.1", port), application, log=None,
                                    backlog=BACKLOG, **kw)
                ready()
                server.serve_forever()
            elif impl == "waitress":
                import waitress

                ready()
                waitress.serve(application, host="127.0.0.1", port=port,
                               threads=WAITRESS_THREADS, backlog=BACKLOG,
                               connection_limit=MAX_CONNS, channel_timeout=KEEPALIVE,
                               asyncore_use_poll=True, _quiet=True)
            elif impl == "meinheld":
                from meinheld import server

                server.set_access_logger(None)
                server.set_keepalive(KEEPALIVE)
                server.set_backlog(BACKLOG)
                server.set_picoev_max_fd(nofile)
                server.listen(("127.0.0.1", port))
                ready()
                server.run(application)
    except BaseException as exc:
        say(status=_common.ERROR, error=f"{type(exc).__name__}: {exc}")
        raise
    return 0


def probe(impl):
    """Probe mode: print whether ``impl`` is importable here, and its version."""
    try:
        version, description = import_server(impl)
    except _common.Missing as exc:
        print(json.dumps({"status": _common.MISSING, "error": str(exc)}), flush=True)
        return 0
    print(json.dumps({"status": _common.OK, "version": version, "description": description,
                      "python": sys.executable}), flush=True)
    return 0


# --------------------------------------------------------------------------
# Driver: processes.


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def interpreter(venv):
    return sys.executable if venv is None else os.path.join(venv, "bin", "python")


def find_interpreters(impls):
    """For each server, the first interpreter that can import it.

    Returns ``({impl: probe result with "python"}, {impl: why missing})``.
    """
    found, missing = {}, {}
    for impl in impls:
        why = []
        seen = set()
        for venv in INTERPRETERS[impl]:
            python = interpreter(venv)
            if python in seen:
                continue
            seen.add(python)
            if not os.path.exists(python):
                why.append(f"{os.path.relpath(python)}: no such interpreter")
                continue
            try:
                proc = subprocess.run([python, os.path.abspath(__file__), "--probe", impl],
                                      capture_output=True, text=True, timeout=60)
                r = json.loads(proc.stdout.strip().splitlines()[-1])
            except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
                why.append(f"{os.path.relpath(python)}: probe failed ({exc})")
                continue
            if r.get("status") == _common.OK:
                r["python"] = python
                found[impl] = r
                break
            why.append(f"{_shown(python)}: {r.get('error', '?')}")
        else:
            if impl == "meinheld" and os.path.exists(MEINHELD_FAILED):
                with open(MEINHELD_FAILED) as f:
                    missing[impl] = f"does not install ({f.read().strip()})"
            else:
                missing[impl] = "; ".join(why) or "no interpreter"
    return found, missing


def _shown(path):
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def read_stat(pid):
    """(ppid, utime + stime in clock ticks) of ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


_TICK = os.sysconf("SC_CLK_TCK")


def process_tree(pid):
    """``pid`` and all its descendants (from the ppid of every process)."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid, _ = read_stat(int(name))
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def tree_cpu(pids):
    """utime + stime of all ``pids`` (every thread of each), in seconds."""
    return sum(read_stat(p)[1] for p in pids) / _TICK


def tree_rss(pids):
    """Sum of VmRSS of ``pids``, in bytes."""
    total = 0
    for p in pids:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def tree_fds(pids):
    return sum(len(os.listdir(f"/proc/{p}/fd")) for p in pids)


class Server(_common.ChildServer):
    """One running server process group (or why it is not running)."""

    def __init__(self, impl, app, python, cpu, tmp, lifetime):
        self.impl = impl
        self.port = free_port()
        self.proc = None
        self.info = {}
        self.error = None
        self.missing = False
        self.pids = []
        self._stopped = False
        self._stderr = tempfile.TemporaryFile(mode="w+")
        cmd = [python, os.path.abspath(__file__), "--serve", impl, "--app", app,
               "--port", str(self.port), "--tmp", tmp, "--lifetime", str(int(lifetime))]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=self._stderr, start_new_session=True)
        except OSError as exc:
            self.error = f"cannot start: {exc}"
            return
        deadline = time.monotonic() + READY_TIMEOUT
        line, _ = _common.read_line(self.proc.stdout.fileno(), b"", READY_TIMEOUT)
        if line is None:
            self.error = f"no ready line after {READY_TIMEOUT:g} s: {self.stderr_tail()}"
            self.stop()
            return
        try:
            self.info = json.loads(line)
        except ValueError:
            self.error = f"bad ready line {line!r}: {self.stderr_tail()}"
            self.stop()
            return
        if self.info.get("status") != _common.OK:
            self.missing = self.info.get("status") == _common.MISSING
            self.error = self.info.get("error", "?")
            self.stop()
            return
        # Listening? (the ready line may come just before the listen call)
        while True:
            if self.proc.poll() is not None:
                self.error = f"exited (status {self.proc.returncode}): {self.stderr_tail()}"
                self.stop()
                return
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.error = f"not listening after {READY_TIMEOUT:g} s: {self.stderr_tail()}"
                    self.stop()
                    return
                time.sleep(0.05)
        # nginx's worker and gunicorn's worker come up after the listener:
        # launcher + master + worker, launcher (the arbiter) + worker.
        want = {"nginx": 3, "gunicorn-gevent": 2}.get(impl, 1)
        while len(process_tree(self.proc.pid)) < want and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pids = process_tree(self.proc.pid)

    def stop(self):
        """SIGKILL the process group this launcher leads (nginx's and
        gunicorn's processes included, even if the launcher is gone)."""
        if self.proc is None or self._stopped:
            return
        self._stopped = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


# --------------------------------------------------------------------------
# Driver: a minimal HTTP/1.1 client, to check each server before timing it.


def parse_response(buf, eof=False):
    """``(status, headers, body, consumed)`` if ``buf`` starts with a whole
    response, else None. Headers: a dict with lowercase names."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ValueError(f"bad status line {lines[0]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    pos = end + 4
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(buf) < pos + n:
            return None
        return status, headers, buf[pos:pos + n], pos + n
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(buf[pos:eol].split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n", pos)
                while trailer_end > pos:  # skip trailer fields
                    pos = trailer_end + 2
                    trailer_end = buf.find(b"\r\n", pos)
                if trailer_end < 0:
                    return None
                return status, headers, b"".join(chunks), trailer_end + 2
            if len(buf) < pos + size + 2:
                return None
            chunks.append(buf[pos:pos + size])
            pos += size + 2
    if eof:
        return status, headers, buf[pos:], len(buf)
    return None


def request_bytes(app, body=None):
    if app == "echo":
        return (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)) + body
    return b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def converse(port, steps, timeout):
    """On one connection, for each ``(data, count)``: send data, read
    ``count`` responses. Returns ``[(status, headers, body, seconds)]``."""
    out = []
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        buf = b""
        for data, count in steps:
            started = time.monotonic()
            s.sendall(data)
            got = 0
            eof = False
            while got < count:
                r = parse_response(buf, eof)
                if r is not None:
                    status, headers, body, used = r
                    buf = buf[used:]
                    out.append((status, headers, body, time.monotonic() - started))
                    got += 1
                    continue
                if eof:
                    raise ConnectionError(
                        f"connection closed after {len(out)} response(s)")
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = s.recv(1 << 20)
                except TimeoutError:
                    raise TimeoutError(f"{got} of {count} response(s) within "
                                       f"{timeout:g} s") from None
                if not chunk:
                    eof = True
                buf += chunk
    return out


ECHO_BODY = (bytes(range(251)) * (POST_SIZE // 251 + 1))[:POST_SIZE]


def expected_body(app):
    return {"hello": wsgi_apps.HELLO, "sleep": wsgi_apps.HELLO,
            "64k": wsgi_apps.BODY_64K, "echo": ECHO_BODY}[app]


def check_server(port, app, warm):
    """Two requests on one keep-alive connection, checked, then ``warm``
    more; return None if all is well, else what is wrong."""
    req = request_bytes(app, ECHO_BODY if app == "echo" else None)
    want = expected_body(app)
    try:
        resps = converse(port, [(req, 1), (req, 1)] + [(req, 1)] * warm, CHECK_TIMEOUT)
    except (OSError, ValueError) as exc:
        return f"check failed: {type(exc).__name__}: {exc}"
    for i, (status, headers, body, seconds) in enumerate(resps):
        if status != 200:
            return f"check failed: status {status} (want 200)"
        if body != want:
            return f"check failed: body of {len(body)} bytes is not the expected {len(want)} bytes"
        if app != "echo" and "content-length" not in headers:
            return "check failed: no Content-Length in the response"
        if app == "sleep" and seconds < wsgi_apps.SLEEP_SECONDS * 0.9:
            return f"check failed: answered in {seconds * 1e3:.1f} ms, before the 10 ms sleep"
        if i == 0 and headers.get("connection", "").lower() == "close":
            return "check failed: the server closes keep-alive connections"
    return None


def check_pipelining(port, app, depth):
    req = request_bytes(app, ECHO_BODY if app == "echo" else None)
    want = expected_body(app)
    try:
        resps = converse(port, [(req * depth, depth)], PIPELINE_CHECK_TIMEOUT)
    except (OSError, ValueError) as exc:
        return f"pipelining check failed: {type(exc).__name__}: {exc}"
    bad = [r for r in resps if r[0] != 200 or r[2] != want]
    if bad:
        return f"pipelining check failed: {len(bad)} of {depth} responses wrong"
    return None


# --------------------------------------------------------------------------
# Driver: wrk.


@dataclasses.dataclass(frozen=True)
class Row:
    app: str
    conns: int
    depth: int = 1  # requests in flight per connection (pipelined if > 1)

    @property
    def name(self):
        return f"{self.app} c{self.conns}" + (f" p{self.depth}" if self.depth > 1 else "")


APP_TITLES = {
    "hello": 'GET / -> 200 "Hello, World!" (13 bytes, Content-Length)',
    "64k": "GET / -> 200, a 64 KiB body (Content-Length)",
    "echo": f"POST / with a {POST_SIZE >> 20} MiB body -> 200, the body echoed back",
    "sleep": "GET / -> the app sleeps 10 ms (cooperatively where the server can), then 'Hello, World!'",
}


def row_title(row, duration):
    flight = (f"{row.depth} pipelined requests in flight each" if row.depth > 1
              else "one request in flight each")
    title = (f"{APP_TITLES[row.app]}; {row.conns} keep-alive connection"
             f"{'s' if row.conns > 1 else ''}, {flight} (wrk -t1 -c{row.conns} -d{duration}s)")
    if row.app == "sleep":
        title += f"; ideal {row.conns / wsgi_apps.SLEEP_SECONDS:,.0f} req/s"
    return title


POST_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("x", {size})
"""

PIPELINE_LUA = """\
init = function(args)
   local r = {{}}
   for i = 1, {depth} do
      r[i] = wrk.format(nil, nil)
   end
   req = table.concat(r)
end

request = function()
   return req
end
"""


def lua_script(row, tmp):
    """The wrk script for ``row`` (written into ``tmp``), or None."""
    if row.app == "echo" and row.depth == 1:
        text, name = POST_LUA.format(size=POST_SIZE), "post.lua"
    elif row.depth > 1:
        if row.app == "echo":
            raise ValueError("pipelined POST rows are not supported")
        text, name = PIPELINE_LUA.format(depth=row.depth), f"pipeline{row.depth}.lua"
    else:
        return None
    path = os.path.join(tmp, name)
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(text)
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(out):
    """What wrk printed: requests, seconds, rate, p99 (ms), socket errors, non-2xx."""
    r = {}
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if m:
        r["rate"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", out)
    if m:
        r["requests"] = int(m.group(1))
        r["seconds"] = float(m.group(2)) * _UNITS[m.group(3)] / 1e3
    pct = {float(p): float(v) * _UNITS[u] for p, v, u in
           re.findall(r"^\s*([\d.]+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)}
    # wrk 4.1 sometimes prints 0.00us for the 99th percentile of pipelined
    # runs (below the 90th): that figure is dropped, not reported.
    if 99.0 in pct and pct[99.0] > 0 and pct[99.0] >= pct.get(90.0, 0):
        r["p99_ms"] = pct[99.0]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["errors"] = dict(zip(("connect", "read", "write", "timeout"),
                           (int(x) for x in m.groups()))) if m else {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    return r


def run_wrk(server, row, args, tmp, wrk):
    """One timed wrk run against ``server``; a result dict for the tables."""
    base = {"impl": server.impl, "row": row.name, "status": _common.ERROR,
            "version": server.info.get("version")}
    cmd = [wrk, "-t1", f"-c{row.conns}", f"-d{args.duration}s", "--latency",
           "--timeout", f"{args.wrk_timeout:g}s"]
    script = lua_script(row, tmp)
    if script:
        cmd += ["-s", script]
    cmd.append(f"http://127.0.0.1:{server.port}/")
    try:
        cpu0 = tree_cpu(server.pids)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=args.duration + 30 + args.wrk_timeout)
        except subprocess.TimeoutExpired:
            return {**base, "error": f"wrk did not finish within {args.duration + 30:g} s"}
        wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu1 = tree_cpu(server.pids)
    except OSError as exc:  # /proc/<pid> gone: a server process died
        server.alive()
        return {**base, "error": f"server process gone ({exc}); {server.error or ''}".rstrip("; ")}
    if not server.alive():
        return {**base, "error": server.error}
    w = parse_wrk(proc.stdout)
    if proc.returncode != 0 or "rate" not in w:
        tail = ((proc.stderr + proc.stdout).strip().splitlines() or ["(no output)"])[-1]
        return {**base, "error": f"wrk exit status {proc.returncode}: {tail}"}
    # No response at all within the run is a result (bjoern with the sleep
    # app at 256 connections answers nothing in its first 2.56 s), not an
    # error: the server passed its check just before.
    requests = w.get("requests", 0)
    if requests == 0 and server.impl == _common.BASELINE:  # ratios divide by it
        return {**base, "error": "no response completed within the run"}
    srv_cpu = cpu1 - cpu0
    cli_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    errors = w["errors"]
    return {
        **base,
        "status": _common.OK,
        "description": server.info.get("description"),
        "python": server.info.get("python"),
        "rate": w["rate"],
        "ops": requests,
        "seconds": w.get("seconds"),
        "conns": row.conns,
        "depth": row.depth,
        "app": row.app,
        "extra": {
            "p99_ms": w.get("p99_ms"),
            "srv_cpu": srv_cpu,
            "srv_cpu_us_per_req": srv_cpu / requests * 1e6 if requests else None,
            "srv_util": srv_cpu / wall,
            "cli_util": cli_cpu / wall,
            "errors": sum(errors.values()),
            "timeouts": errors.get("timeout", 0),
            "non2xx": w["non2xx"],
            "socket_errors": errors,
            "wall": wall,
        },
    }


# --------------------------------------------------------------------------
# Driver: tables.


def _pct(v):
    return f"{100 * v:.0f}%"


def _row_note_for(row):
    def note(ok_results):
        if not ok_results:
            return ""
        parts = []
        impl = ok_results[0]["impl"]
        if row.app == "sleep" and impl in SLEEP_NOTE:
            parts.append(SLEEP_NOTE[impl])
        bound = sum(1 for r in ok_results if r["extra"]["cli_util"] >= CLIENT_BOUND)
        if bound:
            parts.append(f"CLIENT-BOUND in {bound}/{len(ok_results)} runs "
                         f"(wrk >= {CLIENT_BOUND:.0%} of a CPU)")
        non2xx = statistics.median(r["extra"]["non2xx"] for r in ok_results)
        if non2xx:
            parts.append(f"{non2xx:,.0f} non-2xx responses per run")
        timeouts = statistics.median(r["extra"]["timeouts"] for r in ok_results)
        if timeouts:
            parts.append(f"{timeouts:,.0f} wrk timeouts per run")
        idle = sum(1 for r in ok_results if r["ops"] == 0)
        if idle:
            parts.append(f"no response at all in {idle}/{len(ok_results)} runs")
        return "; ".join(parts)

    return note


def table_for(row, duration):
    return _common.Workload(
        name=row.name,
        title=row_title(row, duration).replace("{", "{{").replace("}", "}}"),
        unit="requests",
        runners={},
        params={},
        quick_params={},
        extra_columns=(
            ("p99 ms", "p99_ms", lambda v: f"{v:.2f}"),
            ("srv CPU us/req", "srv_cpu_us_per_req", lambda v: f"{v:.1f}"),
            ("srv CPU", "srv_util", _pct),
            ("wrk CPU", "cli_util", _pct),
            ("errors", "errors", lambda v: f"{v:,.0f}"),
        ),
        row_note=_row_note_for(row),
    )


def _median_rate(results):
    s = _common.summarize(results or [])
    return s["median"] if s else None


def targets(results, rows):
    """The issue's goals for ptsevent, checked against the medians measured."""
    def rate(row_name, impl):
        return _median_rate(results.get(row_name, {}).get(impl))

    lines = ["targets (the hello and sleep rows; nginx and bjoern on the 50-connection, "
             "non-pipelined row):"]
    names = {r.name for r in rows}

    def verdict(ok):
        return "PASS" if ok else "FAIL"

    def compare(row_name, peer, factor, goal):
        if row_name not in names:
            lines.append(f"  {goal}: row {row_name} not run")
            return
        mine, theirs = rate(row_name, "ptsevent"), rate(row_name, peer)
        if mine is None or theirs is None:
            who = "ptsevent" if mine is None else peer
            lines.append(f"  {goal}: not measured ({who} has no result)")
            return
        ratio = f"{mine / theirs:.2f}x" if theirs else "-"
        lines.append(f"  {goal}: ptsevent {_common.format_rate(mine)}/s, {peer} "
                     f"{_common.format_rate(theirs)}/s = {ratio}  "
                     f"{verdict(mine >= factor * theirs)}")

    compare("hello c50", "bjoern", 1.0, "hello c50 >= bjoern")
    compare("hello c50", "nginx", 0.8, "hello c50 >= 80% of nginx")
    compare("hello c50", "gevent.pywsgi", 10.0, "hello c50 >= 10x gevent.pywsgi")
    compare("hello c50", "gevent.pywsgi-nodelay", 10.0,
            "hello c50 >= 10x gevent.pywsgi with TCP_NODELAY")
    goal = 0.8 * 256 / wsgi_apps.SLEEP_SECONDS
    if "sleep c256" in names:
        mine, bj = rate("sleep c256", "ptsevent"), rate("sleep c256", "bjoern")
        text = f"  sleep c256 >= {goal:,.0f} req/s (80% of 25,600): "
        if mine is None:
            text += "not measured (ptsevent has no result)"
        else:
            text += f"ptsevent {_common.format_rate(mine)}/s  {verdict(mine >= goal)}"
        if bj is not None:
            text += f"; bjoern {_common.format_rate(bj)}/s ({'reaches' if bj >= goal else 'cannot reach'} it)"
        lines.append(text)
    else:
        lines.append("  sleep c256: row not run")
    lines.append("  memory per idle connection < 1 KiB: see bench/wsgi_idle_memory.py")
    return lines


# --------------------------------------------------------------------------
# Driver.


def build_rows(args):
    rows = []
    for app in args.apps:
        conns = args.conns or (QUICK_CONNS[app] if args.quick else CONNS)
        rows += [Row(app, c) for c in conns]
        pipelined = QUICK_PIPELINE_APPS if args.quick else PIPELINE_APPS
        if args.pipeline > 1 and app in pipelined:
            rows.append(Row(app, args.pipeline_conns, args.pipeline))
    return rows


def meinheld_note():
    """What `make bench-wsgi` had to do to install meinheld, if anything."""
    if os.path.exists(MEINHELD_NOTE):
        with open(MEINHELD_NOTE) as f:
            return f.read().strip()
    return None


def drive(args, impls):
    started = time.monotonic()
    server_cpu, client_cpu, pin_note = _common.plan_cpus(
        args.no_pin, args.server_cpu, args.client_cpu, client="wrk")
    raise_nofile()

    rows = build_rows(args)
    wrk = shutil.which("wrk")
    wrk_version = "?"
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True)
        wrk_version = (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else "?"

    header = [
        f"command: {shlex.join([_shown(sys.executable)] + sys.argv)}",
        f"date:    {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"machine: {_common.machine_description()}",
        f"python:  {platform.python_version()} ({sys.executable})",
        f"load:    {_common.load_average()} (1, 5, 15 min) at start",
        f"runs:    {args.repeat} per server and row; each run a fresh server process per app "
        f"(single process, one worker); {args.duration} s of wrk per row"
        + ("; --quick rows" if args.quick else ""),
        f"cpus:    {pin_note}",
        f"wrk:     {wrk_version}" if wrk else "wrk:     not found (Debian package wrk)",
    ]
    found, missing = find_interpreters(impls)
    for impl in impls:
        if impl in found:
            f = found[impl]
            shown = "-" if impl == "nginx" else _shown(f["python"])
            header.append(f"server:  {impl} {f['version']}: {f['description']} [{shown}]")
        else:
            header.append(f"server:  {impl}: missing: {missing[impl]}")
    note = meinheld_note()
    if "meinheld" in impls and note:
        header.append(f"note:    meinheld: {note}")
    print("\n".join(header), flush=True)
    if not wrk:
        print("\ncannot run: wrk is not installed (make bench-wsgi installs it)")
        return 2

    results = {row.name: {impl: [] for impl in impls} for row in rows}
    all_results = []
    pipe_failed = {}
    lifetime_per_app = max(
        (sum(1 for r in rows if r.app == app) for app in args.apps), default=1
    ) * (args.duration + 40 + args.wrk_timeout) + 2 * READY_TIMEOUT + 60
    with tempfile.TemporaryDirectory(prefix="ptsevent-wsgi-bench-") as tmp:
        for rep in range(args.repeat):
            for app in args.apps:
                app_rows = [r for r in rows if r.app == app]
                if not app_rows:
                    continue
                for impl in impls:
                    def record(r, row):
                        r.setdefault("impl", impl)
                        r["row"] = row.name
                        r["run"] = rep + 1
                        results[row.name][impl].append(r)
                        all_results.append(r)

                    if not applicable(impl, app):
                        if rep == 0:
                            for row in app_rows:
                                record({"status": _common.NOT_APPLICABLE}, row)
                        continue
                    if impl in missing:
                        if rep == 0:
                            for row in app_rows:
                                record({"status": _common.MISSING, "error": missing[impl]}, row)
                        continue
                    print(f"  [run {rep + 1}/{args.repeat}] {app} {impl}: starting ...",
                          end="", file=sys.stderr, flush=True)
                    server = Server(impl, app_name(impl, app), found[impl]["python"],
                                    server_cpu, tmp, lifetime_per_app)
                    try:
                        if not server.ok:
                            print(f" {server.error}", file=sys.stderr, flush=True)
                            for row in app_rows:
                                record({"status": _common.ERROR,
                                        "error": f"server: {server.error}"}, row)
                            continue
                        warm = 10 if app == "sleep" else 100
                        problem = check_server(server.port, app, warm)
                        pipe_problem = None
                        if not problem and any(r.depth > 1 for r in app_rows):
                            # A server that failed it once is not asked again.
                            if (impl, app) not in pipe_failed:
                                depth = max(r.depth for r in app_rows)
                                pipe_problem = check_pipelining(server.port, app, depth)
                                if pipe_problem:
                                    pipe_failed[impl, app] = pipe_problem
                            else:
                                pipe_problem = pipe_failed[impl, app]
                        print(f" {problem or 'checked'}", file=sys.stderr, flush=True)
                        for row in app_rows:
                            why = problem or (pipe_problem if row.depth > 1 else None)
                            if why is None and not server.alive():
                                why = server.error
                            print(f"  [run {rep + 1}/{args.repeat}] {row.name} {impl} ...",
                                  end="", file=sys.stderr, flush=True)
                            if why:
                                r = {"status": _common.ERROR, "error": why,
                                     "version": server.info.get("version")}
                            else:
                                r = run_wrk(server, row, args, tmp, wrk)
                            if r["status"] == _common.OK:
                                ex = r["extra"]
                                p99 = ex["p99_ms"]
                                msg = (f" {_common.format_rate(r['rate'])}/s, p99 "
                                       + ("-" if p99 is None else f"{p99:.2f} ms")
                                       + f", server {_pct(ex['srv_util'])}, "
                                       f"wrk {_pct(ex['cli_util'])}")
                            else:
                                msg = f" {r['status']}: {r.get('error', '')}"
                            print(msg, file=sys.stderr, flush=True)
                            record(r, row)
                    finally:
                        server.stop()

    print()
    print("rate = requests/s reported by wrk (median over runs); vs ptsevent = median / "
          "ptsevent's median (above 1.00x the peer is faster)")
    print("p99 ms = wrk's 99th percentile latency (median over runs); with pipelining, "
          "wrk times each batch")
    print("srv CPU us/req = server utime+stime (/proc/<pid>/stat, all its processes and threads) "
          "during the wrk run / requests, in microseconds")
    print("srv CPU, wrk CPU = share of one CPU the server / wrk used during the run")
    print("errors = wrk's socket errors (connect, read, write, timeout) per run")
    print(f"CLIENT-BOUND = wrk used >= {CLIENT_BOUND:.0%} of its CPU: the rate may be wrk's limit")
    for row in rows:
        workload = table_for(row, args.duration)
        print()
        print("\n".join(_common.format_table(workload, impls, results[row.name], {})),
              flush=True)
    print()
    print("\n".join(targets(results, rows)))
    _common.finish(missing, started, args.save, header, all_results)
    return 0


def main():
    parser = argparse.ArgumentParser(
        description="WSGI HTTP benchmark with wrk: ptsevent against bjoern, gevent.pywsgi, "
        "waitress, gunicorn (gevent worker), meinheld and nginx."
    )
    parser.add_argument("--impl", help=f"comma-separated subset of: {','.join(IMPLS)}")
    parser.add_argument("--apps", help=f"comma-separated subset of: {','.join(APPS)}")
    parser.add_argument("--conns", help="comma-separated keep-alive connection counts "
                        "(default 1,50,256; fewer with --quick)")
    parser.add_argument("--pipeline", type=int, default=PIPELINE_DEPTH,
                        help=f"pipelining depth of the pipelined rows (default {PIPELINE_DEPTH}; "
                        "0 or 1: no pipelined rows)")
    parser.add_argument("--pipeline-conns", type=int, default=PIPELINE_CONNS,
                        help=f"connections of the pipelined rows (default {PIPELINE_CONNS})")
    parser.add_argument("--duration", type=int,
                        help="seconds of wrk per row, a whole number (default 1)")
    parser.add_argument("--repeat", type=int, help="runs per server and row (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer rows, one run: a smoke test (~1 min)")
    parser.add_argument("--wrk-timeout", type=float, default=5.0,
                        help="wrk --timeout: a response later than this is a timeout error (default 5)")
    parser.add_argument("--server-cpu", type=int, help="CPU the servers are pinned to (default: the last allowed)")
    parser.add_argument("--client-cpu", type=int, help="CPU wrk is pinned to (default: another one)")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--save", metavar="PATH", help="also write every raw result as JSON to PATH")
    # Server and probe modes, started by the driver.
    parser.add_argument("--serve", metavar="IMPL", help=argparse.SUPPRESS)
    parser.add_argument("--probe", metavar="IMPL", help=argparse.SUPPRESS)
    parser.add_argument("--app", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=3600, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.probe:
        return probe(args.probe)
    if args.serve:
        if args.serve not in IMPLS:
            parser.error(f"--serve: unknown server {args.serve!r}")
        return serve(args.serve, args.app, args.port, args.cpu, args.tmp, args.lifetime)

    def pick(value, known, what):
        return _common.pick_names(parser, value, known, what)

    impls = pick(args.impl, IMPLS, "server")
    args.apps = pick(args.apps, APPS, "app")
    if args.conns:
        try:
            args.conns = [int(c) for c in args.conns.split(",") if c.strip()]
        except ValueError:
            parser.error(f"bad --conns {args.conns!r}")
        if any(c < 1 for c in args.conns):
            parser.error("connection counts must be >= 1")
    if args.duration is None:
        args.duration = 1
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1 or args.duration < 1 or args.pipeline_conns < 1:
        parser.error("--repeat, --duration and --pipeline-conns must be >= 1")
    return drive(args, impls)


if __name__ == "__main__":
    sys.exit(main())

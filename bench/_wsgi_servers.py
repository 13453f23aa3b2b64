"""The servers of bench/wsgi.py and bench/wsgi_idle_memory.py: how each one
is found (the first interpreter that imports it), started (one process, or
nginx's and gunicorn's process group, pinned to one CPU, ready line on
stdout), measured (CPU time, RSS and descriptors of its process tree) and
checked (a minimal HTTP/1.1 response parser).

The driver starts this file as a child:

    python bench/_wsgi_servers.py --probe IMPL
    python bench/_wsgi_servers.py --serve IMPL --app APP --port P --tmp DIR [--cpu N] [--lifetime S]
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
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

READY_TIMEOUT = 20.0  # seconds for a server to print its ready line and listen


def app_name(impl, app):
    """The wsgi_apps attribute ``impl`` serves for workload ``app``."""
    if app == "sleep":
        return SLEEP_APP[impl]
    return {"hello": "hello", "64k": "bytes64k", "echo": "echo"}[app]


def applicable(impl, app):
    if impl == "nginx":
        return app in NGINX_APPS
    return True


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
    nofile = _common.raise_nofile()
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
            why.append(f"{shown(python)}: {r.get('error', '?')}")
        else:
            if impl == "meinheld" and os.path.exists(MEINHELD_FAILED):
                with open(MEINHELD_FAILED) as f:
                    missing[impl] = f"does not install ({f.read().strip()})"
            else:
                missing[impl] = "; ".join(why) or "no interpreter"
    return found, missing


def shown(path):
    """``path`` relative to the current directory when it is below it."""
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



def main():
    parser = argparse.ArgumentParser(description="one WSGI benchmark server (started by bench/wsgi.py)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", metavar="IMPL", choices=IMPLS)
    mode.add_argument("--probe", metavar="IMPL", choices=IMPLS)
    parser.add_argument("--app")
    parser.add_argument("--port", type=int)
    parser.add_argument("--tmp")
    parser.add_argument("--cpu", type=int)
    parser.add_argument("--lifetime", type=float, default=3600)
    args = parser.parse_args()
    if args.probe:
        return probe(args.probe)
    return serve(args.serve, args.app, args.port, args.cpu, args.tmp, args.lifetime)


if __name__ == "__main__":
    sys.exit(main())

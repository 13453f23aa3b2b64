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
import os
import platform
import re
import resource
import shlex
import shutil
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
from _wsgi_servers import (  # noqa: E402
    IMPLS,
    MEINHELD_NOTE,
    READY_TIMEOUT,
    SLEEP_NOTE,
    Server,
    app_name,
    applicable,
    find_interpreters,
    parse_response,
    shown,
    tree_cpu,
)

APPS = ("hello", "64k", "echo", "sleep")
CONNS = (1, 50, 256)
PIPELINE_DEPTH = 16
PIPELINE_CONNS = 50
PIPELINE_APPS = ("hello", "64k")  # a pipelined 1 MiB POST or 10 ms sleep says nothing new
# --quick: the rows the targets are about, and one row per other app.
QUICK_CONNS = {"hello": (50, 256), "64k": (50,), "echo": (50,), "sleep": (256,)}
QUICK_PIPELINE_APPS = ("hello",)

POST_SIZE = 1 << 20


# A row whose wrk used at least this share of its CPU is marked: the rate
# may then be wrk's limit rather than the server's.
CLIENT_BOUND = 0.90

CHECK_TIMEOUT = 10.0  # seconds for the correctness check of one server
PIPELINE_CHECK_TIMEOUT = 3.0  # seconds for all the responses to a pipelined batch




# --------------------------------------------------------------------------
# Driver: a minimal HTTP/1.1 client, to check each server before timing it.



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
    _common.raise_nofile()

    rows = build_rows(args)
    wrk = shutil.which("wrk")
    wrk_version = "?"
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True)
        wrk_version = (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else "?"

    header = [
        f"command: {shlex.join([shown(sys.executable)] + sys.argv)}",
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
            where = "-" if impl == "nginx" else shown(f["python"])
            header.append(f"server:  {impl} {f['version']}: {f['description']} [{where}]")
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
                    def record(r, row, impl=impl, rep=rep):
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
    args = parser.parse_args()

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

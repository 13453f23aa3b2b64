"""Unmodified blocking client code under ptsevent.patch.patch_all() and
under gevent's monkey.patch_all(), in one run.

Workloads, each all at once (one tasklet/greenlet per request):

  httpclient  N raw http.client requests, a new connection each, tiny
              response: socket-bound;
  urllib      N urllib.request.urlopen() fetches: parsing-bound;
  requests    N requests.get() fetches: parsing-bound;
  subprocess  M subprocess.run(["true"]).

For the three HTTP workloads the "ceiling" row is the same request done
one after the other in an unpatched interpreter: its CPU per request is
what the library costs in Python whatever the event loop, so its rate
(1 / CPU per request) is the most any patched run can reach on one core.

Every run is a fresh interpreter pinned to one CPU; the HTTP server
(ptsevent's WSGI server, a 13-byte response) is a process of its own,
started once and pinned to another CPU. Rates and times are medians over
the repeats.

    python bench/patched.py [--quick] [--repeat N] [--workload a,b]
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

IMPLS = ("ptsevent", "gevent", "ceiling")
WORKLOADS = ("httpclient", "urllib", "requests", "subprocess")
HTTP = ("httpclient", "urllib", "requests")


# -- the server ----------------------------------------------------------------


def serve(cpu):
    """Serve the tiny app; print the port; run until stdin closes."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    import ptsevent
    from ptsevent.wsgi import WSGIServer
    from wsgi_apps import hello

    server = WSGIServer(("127.0.0.1", 0), hello, backlog=4096)
    print(server.socket.getsockname()[1], flush=True)
    ptsevent.spawn(server.serve_forever)
    ptsevent.run_in_thread(sys.stdin.read)  # the driver exits: stdin closes
    server.close()


# -- one run (child mode) -----------------------------------------------------


def _one(workload, port):
    """The request (or command) each tasklet runs once, after patching."""
    url = f"http://127.0.0.1:{port}/"
    if workload == "httpclient":
        import http.client

        def one():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/")
            body = conn.getresponse().read()
            conn.close()
            return body
    elif workload == "urllib":
        import urllib.request

        def one():
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.read()
    elif workload == "requests":
        import requests

        def one():
            return requests.get(url, timeout=30).content
    else:
        import subprocess as sp

        def one():
            return b"Hello, World!" * (sp.run(["true"]).returncode == 0)
    return one


def child(impl, workload, n, port):
    if impl == "ptsevent":
        import ptsevent.patch

        ptsevent.patch.patch_all()
        import ptsevent

        spawn, joinall = ptsevent.spawn, ptsevent.joinall
    elif impl == "gevent":
        from gevent import monkey

        monkey.patch_all()
        import gevent

        spawn, joinall = gevent.spawn, gevent.joinall
    one = _one(workload, port)
    one()  # warm-up: imports, first connection
    c0, t0 = time.process_time(), time.perf_counter()
    if impl == "ceiling":
        results = [one() for _ in range(n)]
    else:
        jobs = [spawn(one) for _ in range(n)]
        joinall(jobs)
        results = [j.value for j in jobs]
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    ok = sum(r == b"Hello, World!" for r in results)
    return {"ok": ok, "n": n, "seconds": seconds, "cpu": cpu}


# -- the driver ---------------------------------------------------------------


def run_child(impl, workload, n, port, cpu, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", impl,
           "--workload", workload, "--n", str(n), "--port", str(port)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def _cpus():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[-1], cpus[-2]  # children, server


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="200 requests, 20 processes, 1 run: a smoke test")
    ap.add_argument("--repeat", type=int, help="runs per row (default 5)")
    ap.add_argument("--workload", help=f"subset of {','.join(WORKLOADS)}")
    ap.add_argument("--requests", type=int, help="HTTP requests (1000)")
    ap.add_argument("--processes", type=int, help="subprocess.run (100)")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.cpu)
    if args.child:
        print(json.dumps(child(args.child, args.workload, args.n, args.port)))
        return 0

    workloads = (args.workload.split(",") if args.workload else WORKLOADS)
    repeat = args.repeat or (1 if args.quick else 5)
    nreq = args.requests or (200 if args.quick else 1000)
    nproc = args.processes or (20 if args.quick else 100)
    child_cpu, server_cpu = _cpus()
    cmd = [sys.executable, os.path.abspath(__file__), "--serve"]
    if server_cpu is not None:
        cmd += ["--cpu", str(server_cpu)]
    server = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    print(f"command: {shlex.join([os.path.relpath(sys.executable)] + sys.argv)}")
    print(f"runs:    {repeat} per row, each a fresh interpreter "
          f"(CPU {child_cpu}); server: ptsevent.wsgi, 13-byte response "
          f"(CPU {server_cpu}); medians")
    print()
    head = ("workload", "impl", "req/s", "total s", "CPU us/req",
            "vs gevent", "of ceiling", "ok")
    rows = []
    try:
        for w in workloads:
            n = nproc if w == "subprocess" else nreq
            impls = IMPLS if w in HTTP else IMPLS[:2]
            runs = {i: [] for i in impls}
            for _ in range(repeat):
                for impl in impls:
                    r = run_child(impl, w, n, port, child_cpu, args.timeout)
                    if "error" in r:
                        print(f"  {w} {impl}: {r['error']}", file=sys.stderr)
                    else:
                        runs[impl].append(r)
            med = {}
            for impl, rs in runs.items():
                if rs:
                    med[impl] = {
                        "rate": statistics.median(r["n"] / r["seconds"] for r in rs),
                        "secs": statistics.median(r["seconds"] for r in rs),
                        "cpu": statistics.median(r["cpu"] / r["n"] for r in rs),
                        "ok": min(r["ok"] for r in rs), "n": n}
            ceiling = (1 / med["ceiling"]["cpu"]) if "ceiling" in med else None
            for impl in impls:
                m = med.get(impl)
                if m is None:
                    rows.append((w, impl, "failed") + ("-",) * 5)
                    continue
                g = med.get("gevent")
                vs = f"{m['rate'] / g['rate']:.2f}x" if g and impl != "ceiling" else ""
                of = (f"{m['rate'] / ceiling:.0%}" if ceiling and impl != "ceiling"
                      else "")
                rate = (f"{ceiling:.0f} (1/CPU)" if impl == "ceiling"
                        else f"{m['rate']:.0f}")
                rows.append((w, impl, rate, f"{m['secs']:.3f}",
                             f"{m['cpu'] * 1e6:.0f}", vs, of,
                             f"{m['ok']}/{m['n']}"))
    finally:
        server.stdin.close()
        server.wait(10)
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(v).ljust(wd) if i < 2 else str(v).rjust(wd)
                        for i, (v, wd) in enumerate(zip(r, widths))).rstrip())
    print()
    print("targets: httpclient >= 2x gevent; urllib and requests >= 1.2x "
          "gevent and >= 85% of the ceiling (the unpatched CPU per request, "
          "one after the other)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

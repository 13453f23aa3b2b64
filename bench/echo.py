"""Echo-server benchmark: ptsevent sockets against gevent, asyncio, uvloop and C.

For every implementation an echo server runs in its own fresh process, pinned
to one CPU; a small C load generator (bench/echo_client.c, compiled here with
``cc -O2``) runs pinned to another CPU. The client opens N connections on
loopback; each sends a fixed-size message, waits for the whole echo and sends
the next. Messages completed in a fixed window are counted, and the server's
CPU time (utime + stime from /proc/<pid>/stat) and the client's own are
sampled at the start and end of that same window.

Implementations (server side):

  ptsevent         one tasklet per connection, ptsevent.socket: recv(65536) / sendall
  gevent           gevent.server.StreamServer, the same loop on gevent's socket
  asyncio-streams  asyncio.start_server, StreamReader.read(65536) / write + drain
  uvloop-streams   the same on uvloop's loop
  uvloop-protocol  an asyncio.Protocol on uvloop writing back in data_received
  c-epoll          bench/echo_server.c: plain C, epoll, the reference ceiling

    python bench/echo.py [--quick] [--impl a,b] [--conns 10,100] [--sizes 1k,10k,100k]

See bench/README.md for what is measured and how to read the table.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common  # noqa: E402
import _servers  # noqa: E402

IMPLS = _servers.IMPLS + ("c-epoll",)
LIBRARY = _servers.LIBRARY
CONNS = (10, 100)
SIZES = (1024, 10 * 1024, 100 * 1024)

CLIENT_SRC = os.path.join(HERE, "echo_client.c")
SERVER_SRC = os.path.join(HERE, "echo_server.c")

# A row whose client used at least this share of its CPU is marked: the
# client may have limited the rate, which is then a lower bound.
CLIENT_BOUND = 0.90

READY_TIMEOUT = 20.0  # seconds for a server to start listening


# --------------------------------------------------------------------------
# Server mode: one implementation, listening on 127.0.0.1, until killed.


def _ready(port, impl):
    lib = LIBRARY[impl]
    version, description = _common.import_impl(lib)
    print(
        json.dumps(
            {
                "status": _common.OK,
                "port": port,
                "pid": os.getpid(),
                "version": version,
                "description": description,
            }
        ),
        flush=True,
    )


def serve(impl, cpu, lifetime, recv_size):
    """Server mode: print one JSON line (ready, missing or error), then serve."""
    _servers.RECV_SIZE = recv_size
    # SIGALRM's default action ends the process: a server never outlives
    # its run, even if the driver is killed before it can stop it.
    signal.alarm(max(1, int(lifetime)))
    if cpu is not None:
        _common.pin_to_cpu(cpu)
    try:
        _common.import_impl(LIBRARY[impl])
    except _common.Missing as exc:
        print(json.dumps({"status": _common.MISSING, "error": str(exc)}), flush=True)
        return 0
    try:
        _servers.serve(impl, lambda port: _ready(port, impl))
    except BaseException as exc:
        print(
            json.dumps({"status": _common.ERROR, "error": f"{type(exc).__name__}: {exc}"}),
            flush=True,
        )
        raise
    return 0


# --------------------------------------------------------------------------
# Driver.


class Server(_common.ChildServer):
    """One running echo server process (or why it is not running)."""

    def __init__(self, impl, cmd):
        self.impl = impl
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.launch(cmd, READY_TIMEOUT)


def server_cmd(impl, c_server, cpu, lifetime, recv_size):
    if impl == "c-epoll":
        cmd = [c_server, "--lifetime", str(int(lifetime))]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--serve", impl]
        cmd += ["--lifetime", str(int(lifetime)), "--recv-size", str(recv_size)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    return cmd


def run_client(client, server, conns, size, args, cpu):
    """One measurement against a running server: a result dict for the table."""
    base = {"impl": server.impl, "conns": conns, "size": size, "status": _common.ERROR}
    cmd = [
        client,
        "--port", str(server.info["port"]),
        "--conns", str(conns),
        "--size", str(size),
        "--warmup", repr(args.warmup),
        "--duration", repr(args.duration),
        "--server-pid", str(server.proc.pid),
    ]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if args.server_cpu is not None:
        cmd += ["--server-cpu", str(args.server_cpu)]
    r, failed = _common.run_c_client(
        cmd, server, base, args.warmup + args.duration + args.timeout)
    if failed:
        return failed
    messages = r["messages"]
    if messages <= 0:
        return {**base, "error": "no message completed in the timed window"}
    extra = {
        "client_util": r["client_util"],
        "server_util": r["server_util"],
        "client_core_busy": r.get("client_core_busy"),
        "server_core_busy": r.get("server_core_busy"),
        "server_cpu": r["server_cpu"],
        "srv_cpu_per_10k": (
            None if r["server_cpu"] is None else r["server_cpu"] / messages * 1e4
        ),
        "mib_per_s": r["rate"] * size / 2**20,
        "per_conn_min": r["per_conn_min"],
        "per_conn_max": r["per_conn_max"],
    }
    return {
        **base,
        "status": _common.OK,
        "version": server.info.get("version"),
        "description": server.info.get("description"),
        "rate": r["rate"],
        "ops": messages,
        "seconds": r["seconds"],
        "server_cpu_pinned": server.info.get("cpu", args.server_cpu),
        "client_cpu_pinned": r.get("client_cpu_pinned"),
        "extra": extra,
    }


def format_size(n):
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def parse_size(text):
    t = text.strip().lower().replace("ib", "").replace("b", "")
    mult = 1
    if t.endswith("k"):
        t, mult = t[:-1], 1024
    elif t.endswith("m"):
        t, mult = t[:-1], 1024 * 1024
    return int(float(t) * mult)


def _pct(v):
    return f"{100 * v:.0f}%"


def _client_load(r):
    """How busy the client's CPU was: the whole core if known, else the process."""
    core = r["extra"].get("client_core_busy")
    return core if core is not None else r["extra"]["client_util"]


def _client_note(ok_results):
    loads = sorted(_client_load(r) for r in ok_results)
    if not loads:
        return ""
    bound = sum(1 for x in loads if x >= CLIENT_BOUND)
    if bound:
        return f"CLIENT-BOUND in {bound}/{len(loads)} runs (client CPU >= {CLIENT_BOUND:.0%} busy)"
    return ""


def table_for(conns, size, args):
    params = {
        "conns": conns,
        "size_h": format_size(size),
        "duration": args.duration,
        "warmup": args.warmup,
    }
    workload = _common.Workload(
        name=f"echo {conns} x {format_size(size)}",
        title=(
            "{conns} connections, {size_h} messages, one in flight per connection "
            "({duration:g} s timed after {warmup:g} s warm-up)"
        ),
        unit="echoed messages",
        runners={},
        params=params,
        quick_params=params,
        extra_columns=(
            ("srv CPU s/10k msg", "srv_cpu_per_10k", lambda v: f"{v:.3f}"),
            ("srv proc", "server_util", _pct),
            ("srv core", "server_core_busy", _pct),
            ("cli proc", "client_util", _pct),
            ("cli core", "client_core_busy", _pct),
        ),
        row_note=_client_note,
    )
    return workload, params


def drive(args, impls, conns_list, sizes):
    started = time.monotonic()
    server_cpu, client_cpu, pin_note = _common.plan_cpus(
        args.no_pin, args.server_cpu, args.client_cpu)
    args.server_cpu = server_cpu

    shown = os.path.relpath(sys.executable)
    if shown.startswith(".."):
        shown = sys.executable
    header = [
        f"command: {shlex.join([shown] + sys.argv)}",
        f"date:    {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"machine: {_common.machine_description()}",
        f"python:  {platform.python_version()} ({sys.executable})",
        f"load:    {_common.load_average()} (1, 5, 15 min) at start",
        f"runs:    {args.repeat} per implementation and configuration; each run a fresh "
        f"server process per implementation; {args.duration:g} s timed after "
        f"{args.warmup:g} s warm-up per measurement",
        f"cpus:    {pin_note}",
        f"reads:   recv({args.recv_size}) / read({args.recv_size}) per call in the Python byte "
        "echoes; c-epoll reads up to 262144",
    ]

    client, why = _common.build_c(CLIENT_SRC, "echo_client")
    c_server = None
    if client is None:
        print("\n".join(header), flush=True)
        print(f"\ncannot run: the C load generator could not be built: {why}")
        return 2
    if "c-epoll" in impls:
        c_server, c_why = _common.build_c(SERVER_SRC, "echo_server")
    cc = os.environ.get("CC", "cc")
    header.append(f"client:  {os.path.relpath(client)} ({_common.cc_version(cc)}, -O2), "
                  "one thread, epoll, loopback, TCP_NODELAY")
    print("\n".join(header), flush=True)

    configs = [(c, s) for c in conns_list for s in sizes]
    per_measure = args.warmup + args.duration + 5
    lifetime = len(configs) * len(impls) * per_measure + 120
    results = {cfg: {impl: [] for impl in impls} for cfg in configs}
    missing = {}
    all_results = []

    for rep in range(args.repeat):
        servers = {}
        try:
            for impl in impls:
                if impl in missing:
                    continue
                if impl == "c-epoll" and c_server is None:
                    missing[impl] = c_why
                    continue
                s = Server(impl, server_cmd(impl, c_server, server_cpu, lifetime, args.recv_size))
                if s.missing:
                    missing[impl] = s.error
                    continue
                if impl == "c-epoll" and s.ok:
                    s.info["version"] = _common.cc_version(cc).split()[-1]
                    s.info["description"] = "C, epoll"
                servers[impl] = s
            for cfg in configs:
                conns, size = cfg
                for impl in impls:
                    if impl in missing:
                        if not results[cfg][impl]:
                            results[cfg][impl].append(
                                {"impl": impl, "status": _common.MISSING, "error": missing[impl]}
                            )
                        continue
                    s = servers[impl]
                    print(
                        f"  [run {rep + 1}/{args.repeat}] {conns} x {format_size(size)} {impl} ...",
                        end="",
                        file=sys.stderr,
                        flush=True,
                    )
                    if s.ok and s.alive():
                        r = run_client(client, s, conns, size, args, client_cpu)
                    else:
                        r = {"impl": impl, "conns": conns, "size": size,
                             "status": _common.ERROR, "error": s.error}
                    r["run"] = rep + 1
                    if r["status"] == _common.OK:
                        ex = r["extra"]
                        msg = (
                            f" {_common.format_rate(r['rate'])}/s, server "
                            f"{_pct(ex['server_util'] or 0)}, client "
                            f"{_pct(ex['client_util'])} (core "
                            f"{_pct(_client_load(r))})"
                        )
                    else:
                        msg = f" {r['status']}: {r.get('error', '')}"
                    print(msg, file=sys.stderr, flush=True)
                    results[cfg][impl].append(r)
                    all_results.append(r)
        finally:
            for s in servers.values():
                s.stop()

    print()
    print("rate = messages echoed per second (median over runs); vs ptsevent = median / ptsevent's median")
    print("srv CPU s/10k msg = server utime+stime (/proc/<pid>/stat) over the timed window per 10,000 messages")
    print("srv proc, cli proc = share of one CPU the server / client process used (utime+stime) in the window")
    print("srv core, cli core = how busy the server's / client's CPU was in the window (/proc/stat: all but")
    print("  idle+iowait, so it includes the loopback TCP softirq work that is not charged to either process)")
    print(f"CLIENT-BOUND = the client's CPU was >= {CLIENT_BOUND:.0%} busy: the rate may be the client's limit")
    for cfg in configs:
        workload, params = table_for(cfg[0], cfg[1], args)
        print()
        print("\n".join(_common.format_table(workload, impls, results[cfg], params)), flush=True)

    print_targets(configs, results)
    _common.finish(missing, started, args.save, header, all_results)
    return 0


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def print_targets(configs, results):
    """ptsevent's targets, row by row, beside the same ratios for plain C.

    The C server is the ceiling of this set-up: the client on the other CPU
    costs about as much per message as the C server (loopback TCP work is
    mostly the sender's), so no server can be measured much faster than C
    here. A ratio to gevent above C's own is out of reach on this machine.
    """
    def med(cfg, impl, key):
        rs = [r for r in results[cfg].get(impl, ()) if r["status"] == _common.OK]
        if key == "rate":
            return _median(r["rate"] for r in rs)
        return _median(r["extra"][key] for r in rs)

    def ratio(a, b):
        return "-" if a is None or b is None or not b else f"{a / b:.2f}x"

    rows = []
    for cfg in configs:
        rate = {i: med(cfg, i, "rate") for i in ("ptsevent", "gevent", "uvloop-protocol", "c-epoll")}
        cpu = {i: med(cfg, i, "srv_cpu_per_10k") for i in ("ptsevent", "gevent", "c-epoll")}
        if rate["ptsevent"] is None:
            continue
        rows.append((
            f"{cfg[0]} x {format_size(cfg[1])}",
            ratio(rate["ptsevent"], rate["gevent"]),
            ratio(cpu["gevent"], cpu["ptsevent"]),
            ratio(rate["c-epoll"], rate["gevent"]),
            ratio(cpu["gevent"], cpu["c-epoll"]),
            ratio(rate["ptsevent"], rate["uvloop-protocol"]),
            ratio(rate["ptsevent"], rate["c-epoll"]),
        ))
    if not rows:
        return
    head = ("row", "ptsevent/gevent", "by srv CPU", "c-epoll/gevent", "by srv CPU",
            "ptsevent/uvloop-protocol", "ptsevent/c-epoll")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    print()
    print("targets: ptsevent >= 2.5x gevent and >= uvloop-protocol; rates are medians, \"by srv CPU\"")
    print("compares server CPU seconds per message instead; c-epoll/gevent is what plain C reaches")
    print("against the same client, the ceiling of this set-up")
    for r in [head] + rows:
        print("  " + "  ".join(str(v).rjust(w) if i else str(v).ljust(w)
                               for i, (v, w) in enumerate(zip(r, widths))))


def main():
    parser = argparse.ArgumentParser(
        description="Echo-server benchmark: ptsevent against gevent, asyncio, uvloop and C."
    )
    parser.add_argument("--impl", help=f"comma-separated subset of: {','.join(IMPLS)}")
    parser.add_argument(
        "--conns", help="comma-separated connection counts (default: 10,100)"
    )
    parser.add_argument(
        "--sizes", help="comma-separated message sizes, e.g. 1k,10k,100k or bytes (default: 1k,10k,100k)"
    )
    parser.add_argument(
        "--duration", type=float, help="timed seconds per measurement (default 3; 0.5 with --quick)"
    )
    parser.add_argument(
        "--warmup", type=float, help="untimed seconds before each measurement (default 0.25; 0.1 with --quick)"
    )
    parser.add_argument(
        "--repeat", type=int, help="runs per implementation and configuration (default 3; 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="short measurements, one run: a smoke test")
    parser.add_argument("--server-cpu", type=int, help="CPU the servers are pinned to (default: the last allowed)")
    parser.add_argument("--client-cpu", type=int, help="CPU the client is pinned to (default: the one before)")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument(
        "--timeout", type=float, default=30.0,
        help="seconds beyond warm-up + duration before a client is abandoned (default 30)",
    )
    parser.add_argument(
        "--recv-size", type=parse_size, default=_servers.RECV_SIZE,
        help=f"bytes the Python byte echoes ask recv()/read() for (default {_servers.RECV_SIZE})",
    )
    parser.add_argument("--save", metavar="PATH", help="also write every raw result as JSON to PATH")
    # Server mode, started by the driver.
    parser.add_argument("--serve", metavar="IMPL", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=3600, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        if args.serve not in _servers.LIBRARY:
            parser.error(f"--serve: unknown implementation {args.serve!r}")
        return serve(args.serve, args.cpu, args.lifetime, args.recv_size)

    def pick(value, known, what, convert=str):
        if not value:
            return list(known)
        try:
            names = [convert(v) for v in value.split(",") if v.strip()]
        except ValueError:
            parser.error(f"bad {what} list {value!r}")
        if convert is str:
            names = [n.strip() for n in names]
            for n in names:
                if n not in known:
                    parser.error(f"unknown {what} {n!r}; choose from {', '.join(known)}")
        return names

    impls = pick(args.impl, IMPLS, "implementation")
    conns = pick(args.conns, CONNS, "connection count", int)
    sizes = pick(args.sizes, SIZES, "size", parse_size)
    if any(c < 1 for c in conns) or any(s < 1 for s in sizes) or args.recv_size < 1:
        parser.error("connection counts, sizes and --recv-size must be positive")
    if args.duration is None:
        args.duration = 0.5 if args.quick else 3.0
    if args.warmup is None:
        args.warmup = 0.1 if args.quick else 0.25
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--repeat must be >= 1, --duration > 0, --warmup >= 0")
    return drive(args, impls, conns, sizes)


if __name__ == "__main__":
    sys.exit(main())

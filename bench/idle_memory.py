"""Idle-connection memory: resident bytes per idle connection of an echo server.

For every implementation an echo server runs in its own fresh process on
127.0.0.1. A client process (plain blocking sockets in a few threads) first
warms the server up with 100 connections that each echo one line and are
then closed; the driver then reads the server's VmRSS (the baseline). The
client opens N connections (10,000 by default), sends one 16-byte line on
each, reads the echo and keeps them all open and idle; once every one has
echoed and the server has gone quiet, the driver reads VmRSS again.

    bytes per connection = (RSS after - RSS baseline) / N

Implementations (server side):

  ptsevent             one tasklet per connection blocked in conn.recv(65536)
  ptsevent-fastsocket  one tasklet per connection blocked in fastsocket.readline()
  gevent               gevent.server.StreamServer, handler blocked in recv(65536)
  asyncio-streams      asyncio.start_server, a coroutine awaiting reader.read(65536)
  uvloop-streams       the same on uvloop's loop
  uvloop-protocol      an asyncio.Protocol per connection on uvloop

    python bench/idle_memory.py [--quick] [--impl a,b] [--conns 10000] [--repeat 3]

See bench/README.md for what is measured and how to read the table.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common  # noqa: E402
import _servers  # noqa: E402

# The servers idle in recv (or readline, or an awaited read); the line
# servers that echo.py also runs would measure the same as these.
IMPLS = ("ptsevent", "ptsevent-fastsocket", "gevent", "asyncio-streams",
         "uvloop-streams", "uvloop-protocol")
LIBRARY = _servers.LIBRARY

CONNS = 10_000
QUICK_CONNS = 1_000
WARM_CONNS = 100
CLIENT_THREADS = 4
LINE_SIZE = 16  # bytes per message, the last one b"\n"
BACKLOG = 1024

SOCKET_TIMEOUT = 10.0  # seconds for the client's connect and echo on one socket
READY_TIMEOUT = 20.0  # seconds for a server to start listening
WARM_TIMEOUT = 20.0  # seconds for the warm-up connections
QUIET_INTERVAL = 0.25  # the server is quiet when its CPU time and RSS stay
QUIET_MAX = 5.0  # the same over one interval; wait at most this long


def message(i):
    return b"%015d\n" % (i % 10**15)


# --------------------------------------------------------------------------
# Server mode: one implementation, listening on 127.0.0.1, until killed.


def _ready(port, impl):
    version, description = _common.import_impl(LIBRARY[impl])
    print(
        json.dumps(
            {
                "status": _common.OK,
                "port": port,
                "pid": os.getpid(),
                "version": version,
                "description": description,
                "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            }
        ),
        flush=True,
    )




def serve(impl, cpu, lifetime):
    """Server mode: print one JSON line (ready, missing or error), then serve."""
    # SIGALRM's default action ends the process: a server never outlives
    # its run, even if the driver is killed before it can stop it.
    signal.alarm(max(1, int(lifetime)))
    _common.raise_nofile()
    if cpu is not None:
        _common.pin_to_cpu(cpu)
    try:
        _common.import_impl(LIBRARY[impl])
    except _common.Missing as exc:
        print(json.dumps({"status": _common.MISSING, "error": str(exc)}), flush=True)
        return 0
    try:
        # no TCP_NODELAY: idle connections send nothing
        _servers.serve(impl, lambda port: _ready(port, impl), BACKLOG,
                       nodelay=False)
    except BaseException as exc:
        print(
            json.dumps({"status": _common.ERROR, "error": f"{type(exc).__name__}: {exc}"}),
            flush=True,
        )
        raise
    return 0


# --------------------------------------------------------------------------
# Client mode: blocking sockets in a few threads, steered over stdin/stdout.


def _open_echoed(port, first, count, timeout, out, errors):
    """Open ``count`` connections, echo one line on each, append them to ``out``."""
    try:
        for i in range(first, first + count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            out.append(s)  # closed with the others, even if it fails below
            s.settimeout(timeout)
            s.connect(("127.0.0.1", port))
            msg = message(i)
            s.sendall(msg)
            got = b""
            while not got.endswith(b"\n"):
                chunk = s.recv(LINE_SIZE - len(got))
                if not chunk:
                    raise ConnectionError(f"connection {i}: closed by the server")
                got += chunk
            if got != msg:
                raise ValueError(f"connection {i}: echoed {got!r}, sent {msg!r}")
    except Exception as exc:  # noqa: BLE001 - reported to the driver
        errors.append(f"{type(exc).__name__}: {exc}")


def _open_all(port, conns, threads, timeout):
    """``conns`` echoed connections opened by ``threads`` threads, or raise."""
    socks, errors, workers = [], [], []
    per, extra = divmod(conns, threads)
    first = 0
    for t in range(threads):
        count = per + (1 if t < extra else 0)
        out = []
        socks.append(out)
        w = threading.Thread(
            target=_open_echoed, args=(port, first, count, timeout, out, errors), daemon=True
        )
        first += count
        workers.append(w)
        w.start()
    for w in workers:
        w.join()
    flat = [s for out in socks for s in out]
    if errors:
        for s in flat:
            s.close()
        raise RuntimeError(errors[0])
    return flat


def client(port, conns, warm, cpu, lifetime, timeout):
    """Client mode: warm up, wait for "go", open the connections, hold them."""
    signal.alarm(max(1, int(lifetime)))
    nofile = _common.raise_nofile()
    if cpu is not None:
        _common.pin_to_cpu(cpu)

    def say(**kw):
        print(json.dumps(kw), flush=True)

    if nofile < conns + 64:
        say(phase="error", error=f"RLIMIT_NOFILE is {nofile}: too low for {conns} connections")
        return 1
    try:
        # Warm-up: all at once, then closed cleanly (the server sees EOF).
        started = time.monotonic()
        for s in _open_all(port, warm, min(CLIENT_THREADS, warm), timeout):
            s.close()
        say(phase="warm", seconds=time.monotonic() - started)
        if sys.stdin.readline().strip() != "go":
            return 0
        started = time.monotonic()
        socks = _open_all(port, conns, CLIENT_THREADS, timeout)
        say(phase="done", conns=len(socks), seconds=time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - reported to the driver
        say(phase="error", error=str(exc))
        return 1
    sys.stdin.readline()  # hold every connection open until told (or EOF)
    return 0


# --------------------------------------------------------------------------
# Driver: /proc readings.


def read_rss(pid):
    """VmRSS of ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS in /proc/{pid}/status")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_cpu(pid):
    """utime + stime of ``pid`` in seconds (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def count_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_quiet(pid):
    """Wait until the server's CPU time and RSS stop moving; return True if they did."""
    deadline = time.monotonic() + QUIET_MAX
    before = (read_cpu(pid), read_rss(pid))
    while time.monotonic() < deadline:
        time.sleep(QUIET_INTERVAL)
        now = (read_cpu(pid), read_rss(pid))
        if now == before:
            return True
        before = now
    return False


def one_run(impl, args, server_cpu, client_cpu):
    """Start a server and a client, measure once; return a result dict."""
    script = os.path.abspath(__file__)
    lifetime = READY_TIMEOUT + WARM_TIMEOUT + args.timeout + 4 * QUIET_MAX + 30
    base = {"impl": impl, "conns": args.conns, "status": _common.ERROR}
    cmd = [sys.executable, script, "--serve", impl, "--lifetime", str(int(lifetime))]
    if server_cpu is not None:
        cmd += ["--cpu", str(server_cpu)]
    server = _common.Proc(cmd)
    cli = None
    try:
        info = server.read_json(READY_TIMEOUT)
        if info is None:
            return {**base, "error": "server " + server.why_silent("ready line", READY_TIMEOUT)}
        if info.get("status") != _common.OK:
            return {**base, "status": info.get("status", _common.ERROR),
                    "error": info.get("error", "?")}
        pid = server.proc.pid
        base["version"] = info.get("version")
        base["description"] = info.get("description")
        if info.get("nofile", 0) < args.conns + 64:
            return {**base, "error": f"server RLIMIT_NOFILE is {info.get('nofile')}: "
                    f"too low for {args.conns} connections"}
        fds_listening = count_fds(pid)

        cmd = [
            sys.executable, script, "--client",
            "--port", str(info["port"]),
            "--conns", str(args.conns),
            "--warm", str(args.warm),
            "--lifetime", str(int(lifetime)),
            "--timeout", str(args.timeout),
        ]
        if client_cpu is not None:
            cmd += ["--cpu", str(client_cpu)]
        cli = _common.Proc(cmd, stdin=subprocess.PIPE)

        # Warm-up, then wait until the server has closed its side of every
        # warm-up connection and gone quiet: that RSS is the baseline.
        r = cli.read_json(WARM_TIMEOUT)
        if r is None or r.get("phase") != "warm":
            why = r.get("error") if r else cli.why_silent("warm-up", WARM_TIMEOUT)
            return {**base, "error": f"warm-up: {why}"}
        deadline = time.monotonic() + QUIET_MAX
        while count_fds(pid) > fds_listening and time.monotonic() < deadline:
            time.sleep(0.05)
        if count_fds(pid) > fds_listening:
            return {**base, "error": "server still holds warm-up connections "
                    f"after {QUIET_MAX:g} s"}
        quiet_base = wait_quiet(pid)
        rss_base = read_rss(pid)
        cpu_base = read_cpu(pid)

        # The N idle connections.
        cli.send("go\n")
        r = cli.read_json(args.timeout)
        if r is None or r.get("phase") != "done":
            why = r.get("error") if r else cli.why_silent("echo on every connection",
                                                          args.timeout)
            if server.proc.poll() is not None:
                why += f"; server exited (status {server.proc.returncode}): {server.stderr_tail()}"
            return {**base, "error": why}
        quiet_after = wait_quiet(pid)
        rss_after = read_rss(pid)
        cpu_after = read_cpu(pid)
        held = count_fds(pid) - fds_listening
        if held < args.conns:
            return {**base, "error": f"server holds {held} connections, not {args.conns}"}
    except OSError as exc:  # e.g. /proc/<pid> gone: the server died
        code = server.proc.poll()
        return {**base, "error": f"{type(exc).__name__}: {exc}"
                + (f"; server exited (status {code}): {server.stderr_tail()}"
                   if code is not None else "")}
    finally:
        server.stop()  # first: the client then closes into a dead peer
        if cli is not None:
            cli.stop()

    per_conn = (rss_after - rss_base) / args.conns
    return {
        **base,
        "status": _common.OK,
        "bytes_per_conn": per_conn,
        "extra": {
            "rss_base": rss_base,
            "rss_after": rss_after,
            "server_cpu": cpu_after - cpu_base,
            "server_cpu_total": cpu_after,
            "open_seconds": r["seconds"],
            "quiet": quiet_base and quiet_after,
        },
    }


# --------------------------------------------------------------------------
# Driver: the table.


def _mib(v):
    return f"{v / 2**20:.1f}"


COLUMNS = (
    # header, key in "extra", formatter (applied to the median over the runs)
    ("base MiB", "rss_base", _mib),
    ("+MiB", "delta", _mib),
    ("srv CPU s", "server_cpu", lambda v: f"{v:.2f}"),
    ("open s", "open_seconds", lambda v: f"{v:.2f}"),
)


def format_table(impls, results, conns):
    return _common.memory_table(
        impls, results, "median B/conn", lambda v: f"{v:,.0f}", COLUMNS,
        [f"idle connections: {conns:,} connections held open after one 16-byte echo each",
         "  B/conn = (server VmRSS with them open - VmRSS after the warm-up) / connections"],
        QUIET_MAX)


def drive(args, impls):
    started = time.monotonic()
    server_cpu, client_cpu, pin_note = _common.plan_cpus(args.no_pin)

    shown = os.path.relpath(sys.executable)
    if shown.startswith(".."):
        shown = sys.executable
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    header = [
        f"command: {shlex.join([shown] + sys.argv)}",
        f"date:    {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"machine: {_common.machine_description()}",
        f"python:  {platform.python_version()} ({sys.executable})",
        f"load:    {_common.load_average()} (1, 5, 15 min) at start",
        f"runs:    {args.repeat} per implementation, each a fresh server and client "
        f"process; {args.conns:,} connections after a warm-up of {args.warm}"
        + ("; --quick" if args.quick else ""),
        f"cpus:    {pin_note}",
        f"nofile:  RLIMIT_NOFILE hard limit {hard}; server and client raise "
        f"their soft limit to it",
        f"client:  {CLIENT_THREADS} threads, blocking sockets, loopback; each connection "
        f"sends one {LINE_SIZE}-byte line and reads its echo",
    ]
    print("\n".join(header), flush=True)

    results = {impl: [] for impl in impls}
    missing = {}
    all_results = []
    for rep in range(args.repeat):
        for impl in impls:
            if impl in missing:
                continue
            print(f"  [run {rep + 1}/{args.repeat}] {impl} ...", end="",
                  file=sys.stderr, flush=True)
            r = one_run(impl, args, server_cpu, client_cpu)
            r["run"] = rep + 1
            if r["status"] == _common.OK:
                ex = r["extra"]
                msg = (f" {r['bytes_per_conn']:,.0f} B/conn (RSS {_mib(ex['rss_base'])} -> "
                       f"{_mib(ex['rss_after'])} MiB), server CPU {ex['server_cpu']:.2f} s")
            else:
                msg = f" {r['status']}: {r.get('error', '')}"
                if r["status"] == _common.MISSING:
                    missing[impl] = r.get("error", "not importable")
            print(msg, file=sys.stderr, flush=True)
            results[impl].append(r)
            all_results.append(r)

    print()
    print("vs ptsevent = median / ptsevent's median (above 1.00x the peer uses more memory per connection)")
    print("base MiB = server VmRSS after listening and a warm-up of "
          f"{args.warm} connections (echoed, then closed)")
    print("+MiB = VmRSS growth with the connections open; srv CPU s = server utime+stime "
          "(/proc/<pid>/stat)")
    print("  from the baseline until the connections are idle (accepting them, one echo each)")
    print("open s = client wall time to open every connection and get its echo; "
          "all columns are medians")
    print("kernel socket buffers are not in VmRSS: this is the process's own memory")
    print()
    print("\n".join(format_table(impls, results, args.conns)), flush=True)
    _common.finish(missing, started, args.save, header, all_results)
    return 0


def main():
    parser = argparse.ArgumentParser(
        description="Resident memory per idle connection of an echo server: "
        "ptsevent against gevent, asyncio and uvloop."
    )
    parser.add_argument("--impl", help=f"comma-separated subset of: {','.join(IMPLS)}")
    parser.add_argument("--conns", type=int,
                        help=f"idle connections per run (default {CONNS:,}; {QUICK_CONNS:,} with --quick)")
    parser.add_argument("--warm", type=int, default=WARM_CONNS,
                        help=f"warm-up connections before the baseline (default {WARM_CONNS})")
    parser.add_argument("--repeat", type=int, help="runs per implementation (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_CONNS:,} connections, one run: a smoke test")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds for the client to open and echo every connection (default 60)")
    parser.add_argument("--save", metavar="PATH", help="also write every raw result as JSON to PATH")
    # Server and client modes, started by the driver.
    parser.add_argument("--serve", metavar="IMPL", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=600, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        if args.serve not in IMPLS:
            parser.error(f"--serve: unknown implementation {args.serve!r}")
        return serve(args.serve, args.cpu, args.lifetime)
    if args.client:
        return client(args.port, args.conns, args.warm, args.cpu, args.lifetime,
                      min(SOCKET_TIMEOUT, args.timeout))

    if args.impl:
        impls = [n.strip() for n in args.impl.split(",") if n.strip()]
        for n in impls:
            if n not in IMPLS:
                parser.error(f"unknown implementation {n!r}; choose from {', '.join(IMPLS)}")
    else:
        impls = list(IMPLS)
    if args.conns is None:
        args.conns = QUICK_CONNS if args.quick else CONNS
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.conns < 1 or args.warm < 1 or args.repeat < 1 or args.timeout <= 0:
        parser.error("--conns, --warm and --repeat must be >= 1, --timeout > 0")
    return drive(args, impls)


if __name__ == "__main__":
    sys.exit(main())

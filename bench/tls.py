"""TLS benchmark: ptsevent.ssl against gevent, asyncio, uvloop and C (OpenSSL).

Every implementation runs a TLS echo server in a fresh process pinned to one
CPU; a small C load generator over OpenSSL (bench/tls_client.c) runs pinned
to another. All servers load the same certificates, made for this run by the
``openssl`` command (a self-signed ECDSA P-256 one and an RSA-2048 one), and
the client offers exactly one TLS 1.3 cipher suite (TLS_AES_128_GCM_SHA256)
and one group (X25519), so every server negotiates the same; the client
reports what was negotiated and the driver checks it.

Workloads:

  handshake full / resumed, ECDSA P-256 and RSA-2048: 10 connections at a
      time, each connect + handshake + 1 byte echoed + close, in a loop;
      resumed = offering the session ticket of the previous connection
  echo C x SIZE: C connections (10, 100) handshaken before the window, then
      one message of SIZE (1 KiB, 16 KiB, 256 KiB) in flight on each

Implementations (server side):

  ptsevent         ptsevent.ssl.SSLContext.wrap_socket in a tasklet per
                   connection, recv(65536) / sendall
  gevent           gevent.server.StreamServer, gevent.ssl's wrap_socket, the same loop
  asyncio-protocol loop.create_server(ssl=ctx), an asyncio.Protocol echoing in data_received
  uvloop-protocol  the same on uvloop's loop
  uvloop-streams   asyncio.start_server(ssl=ctx) on uvloop, read(65536) / write + drain
  c-openssl        bench/tls_server.c: C, epoll, non-blocking OpenSSL: the ceiling

    python bench/tls.py [--quick] [--impl a,b] [--workload hs,echo] [--repeat N]
"""

import argparse
import datetime
import json
import os
import platform
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

IMPLS = ("ptsevent", "gevent", "asyncio-protocol", "uvloop-protocol",
         "uvloop-streams", "c-openssl")
LIBRARY = {"ptsevent": "ptsevent", "gevent": "gevent",
           "asyncio-protocol": "asyncio", "uvloop-protocol": "uvloop",
           "uvloop-streams": "uvloop"}
SUITE = "TLS_AES_128_GCM_SHA256"  # what tls_client.c offers, alone
KEYS = ("ecdsa", "rsa")
KEY_NAMES = {"ecdsa": "ECDSA P-256", "rsa": "RSA-2048"}
HANDSHAKE_CONNS = 10
ECHO_CONNS = (10, 100)
ECHO_SIZES = (1024, 16 * 1024, 256 * 1024)
RECV_SIZE = 65536
CLIENT_BOUND = 0.90
READY_TIMEOUT = 20.0
_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --------------------------------------------------------------------------
# Certificates, made at run time.


def make_certs(directory):
    """A self-signed certificate and key per key type; {key: (cert, key)}."""
    specs = {
        "ecdsa": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "rsa": ["-newkey", "rsa:2048"],
    }
    out = {}
    for name, newkey in specs.items():
        cert = os.path.join(directory, f"{name}.pem")
        key = os.path.join(directory, f"{name}.key")
        subprocess.run(
            ["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key,
             "-out", cert, "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60)
        out[name] = (cert, key)
    return out


# --------------------------------------------------------------------------
# Server mode: one implementation, listening on 127.0.0.1, until killed.


def _server_context(ssl_module, cert, key):
    ctx = ssl_module.SSLContext(ssl_module.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def _echo(conn, ctx):
    """One connection of the green servers: handshake, then echo."""
    try:
        conn.setsockopt(*_NODELAY)
        tls = ctx.wrap_socket(conn, server_side=True)
        recv, sendall = tls.recv, tls.sendall
        while True:
            data = recv(RECV_SIZE)
            if not data:
                break
            sendall(data)
        tls.close()
    except OSError:  # resets, ragged EOFs: the client closes with a reset
        pass
    finally:
        conn.close()


def _serve_ptsevent(cert, key, ready):
    import ptsevent
    import ptsevent.ssl
    from ptsevent import socket as psocket

    ctx = _server_context(ptsevent.ssl, cert, key)
    listener = psocket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)

    def accept_loop():
        while True:
            conn, _ = listener.accept()
            ptsevent.spawn(_echo, conn, ctx)

    acceptor = ptsevent.spawn(accept_loop)
    ready(listener.getsockname()[1])
    acceptor.join()


def _serve_gevent(cert, key, ready):
    import gevent.ssl
    from gevent.server import StreamServer

    ctx = _server_context(gevent.ssl, cert, key)
    server = StreamServer(("127.0.0.1", 0), lambda conn, _a: _echo(conn, ctx),
                          backlog=1024)
    server.start()
    ready(server.server_port)
    server.serve_forever()


def _serve_asyncio(impl, cert, key, ready):
    import asyncio
    import ssl

    ctx = _server_context(ssl, cert, key)

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def handle(reader, writer):
        try:
            while True:
                data = await reader.read(RECV_SIZE)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def main():
        loop = asyncio.get_running_loop()
        if impl.endswith("-protocol"):
            server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=1024,
                                              ssl=ctx)
        else:
            server = await asyncio.start_server(handle, "127.0.0.1", 0,
                                                backlog=1024, ssl=ctx)
        ready(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    loop = asyncio.new_event_loop()
    if impl.startswith("uvloop"):
        import uvloop

        loop = uvloop.new_event_loop()
    # The client ends handshake-loop connections with a reset: asyncio
    # would log each one.
    loop.set_exception_handler(lambda _loop, _context: None)
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        runner.run(main())


def serve(impl, cert, key, cpu, lifetime):
    """Server mode: print one JSON line (ready, missing or error), then serve."""
    signal.alarm(max(1, int(lifetime)))
    if cpu is not None:
        _common.pin_to_cpu(cpu)
    try:
        version, description = _common.import_impl(LIBRARY[impl])
    except _common.Missing as exc:
        print(json.dumps({"status": _common.MISSING, "error": str(exc)}), flush=True)
        return 0

    def ready(port):
        print(json.dumps({"status": _common.OK, "port": port, "pid": os.getpid(),
                          "version": version, "description": description}),
              flush=True)

    try:
        if impl == "ptsevent":
            _serve_ptsevent(cert, key, ready)
        elif impl == "gevent":
            _serve_gevent(cert, key, ready)
        else:
            _serve_asyncio(impl, cert, key, ready)
    except BaseException as exc:
        print(json.dumps({"status": _common.ERROR,
                          "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        raise
    return 0


# --------------------------------------------------------------------------
# Driver.


class Server(_common.ChildServer):
    """One running TLS echo server process (or why it is not running)."""

    def __init__(self, impl, cmd):
        self.impl = impl
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.launch(cmd, READY_TIMEOUT)


def server_cmd(impl, c_server, cert, key, cpu, lifetime):
    if impl == "c-openssl":
        cmd = [c_server, "--cert", cert, "--key", key, "--lifetime", str(int(lifetime))]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--serve", impl,
               "--cert", cert, "--key", key, "--lifetime", str(int(lifetime))]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    return cmd


def format_size(n):
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


class Config:
    """One row group of the output: a workload with its client arguments."""

    def __init__(self, kind, key, conns, size=1, resume=False):
        self.kind, self.key, self.conns, self.size, self.resume = (
            kind, key, conns, size, resume)
        if kind == "handshake":
            how = "resumed" if resume else "full"
            self.name = f"handshake {how} {KEY_NAMES[key]}"
            self.title = (f"{conns} connections at a time: connect, {how} handshake "
                          f"({KEY_NAMES[key]} certificate), 1 byte echoed, close")
            self.unit = "handshakes"
        else:
            self.name = f"echo {conns} x {format_size(size)}"
            self.title = (f"{conns} TLS connections, {format_size(size)} messages, one "
                          "in flight per connection")
            self.unit = "echoed messages"

    def client_args(self):
        args = ["--mode", self.kind, "--conns", str(self.conns)]
        if self.kind == "echo":
            args += ["--size", str(self.size)]
        if self.resume:
            args.append("--resume")
        return args


def run_client(client, server, cfg, args, cpu):
    base = {"impl": server.impl, "workload": cfg.name, "status": _common.ERROR}
    cmd = [client, "--port", str(server.info["port"]), *cfg.client_args(),
           "--warmup", repr(args.warmup), "--duration", repr(args.duration),
           "--server-pid", str(server.proc.pid)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if args.server_cpu is not None:
        cmd += ["--server-cpu", str(args.server_cpu)]
    r, failed = _common.run_c_client(
        cmd, server, base, args.warmup + args.duration + 30)
    if failed:
        return failed
    if r["suite"] != SUITE:
        return {**base, "error": f"negotiated {r['suite']}, not {SUITE}"}
    if cfg.resume and r["resumed_share"] < 0.99:
        return {**base, "error": f"only {r['resumed_share']:.0%} of the handshakes resumed"}
    done = r["messages"]
    if done <= 0:
        return {**base, "error": "nothing completed in the timed window"}
    extra = {
        "client_util": r["client_util"],
        "server_util": r["server_util"],
        "client_core_busy": r.get("client_core_busy"),
        "server_core_busy": r.get("server_core_busy"),
        "srv_us_per_op": None if r["server_cpu"] is None else r["server_cpu"] / done * 1e6,
        "resumed_share": r["resumed_share"],
    }
    return {**base, "status": _common.OK, "version": server.info.get("version"),
            "description": server.info.get("description"), "rate": r["rate"],
            "ops": done, "seconds": r["seconds"], "extra": extra}


def _pct(v):
    return f"{100 * v:.0f}%"


def _client_note(ok_results):
    loads = sorted(r["extra"]["client_core_busy"] if r["extra"].get("client_core_busy")
                   is not None else r["extra"]["client_util"] for r in ok_results)
    bound = sum(1 for x in loads if x >= CLIENT_BOUND)
    if bound:
        return f"CLIENT-BOUND in {bound}/{len(loads)} runs"
    return ""


def workload_for(cfg):
    return _common.Workload(
        name=cfg.name, title=cfg.title, unit=cfg.unit, runners={}, params={},
        quick_params={},
        extra_columns=(
            ("srv CPU us/op", "srv_us_per_op", lambda v: f"{v:.1f}"),
            ("srv proc", "server_util", _pct),
            ("cli core", "client_core_busy", _pct),
        ),
        row_note=_client_note)


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def print_targets(configs, results):
    """The issue's targets, row by row, with the C server's ratios beside."""
    def med(cfg, impl, key="rate"):
        rs = [r for r in results[cfg.name].get(impl, ()) if r["status"] == _common.OK]
        if key == "rate":
            return _median(r["rate"] for r in rs)
        return _median(r["extra"][key] for r in rs)

    def ratio(a, b):
        return None if a is None or b is None or not b else a / b

    def fmt(x):
        return "-" if x is None else f"{x:.2f}x"

    rows = []
    for cfg in configs:
        p, g, u, c = (med(cfg, i) for i in ("ptsevent", "gevent", "uvloop-protocol",
                                            "c-openssl"))
        pg, pu, cg = ratio(p, g), ratio(p, u), ratio(c, g)
        cpu_pg = ratio(med(cfg, "gevent", "srv_us_per_op"),
                       med(cfg, "ptsevent", "srv_us_per_op"))
        if cfg.kind == "handshake":
            goal, needed = ">= 1.0x gevent, >= 0.9x uvloop", (pg, pu)
            ok = None not in needed and pg >= 1.0 and pu >= 0.9
        elif cfg.size < 256 * 1024:
            goal, needed = ">= 1.5x gevent, >= 0.9x uvloop", (pg, pu)
            ok = None not in needed and pg >= 1.5 and pu >= 0.9
        else:
            goal, needed = ">= 0.9 x (c-openssl/gevent)", (pg, cg)
            ok = None not in needed and pg >= 0.9 * cg
        verdict = "not measured" if None in needed else "met" if ok else "NOT MET"
        if cfg.kind != "handshake" and cfg.size < 256 * 1024 and cg is not None and cg < 1.5:
            verdict += " (1.5x gevent is above the C ceiling)"
        rows.append((cfg.name, fmt(pg), fmt(cpu_pg), fmt(pu), fmt(cg), goal, verdict))
    head = ("workload", "ptsevent/gevent", "by srv CPU", "ptsevent/uvloop-protocol",
            "c-openssl/gevent", "target", "")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    print()
    print("targets (medians; \"by srv CPU\" = gevent's server CPU per op / ptsevent's):")
    for r in [head] + rows:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())


def drive(args, impls, configs, certs):
    started = time.monotonic()
    server_cpu, client_cpu, pin_note = _common.plan_cpus(args.no_pin, args.server_cpu,
                                                         args.client_cpu)
    args.server_cpu = server_cpu
    shown = os.path.relpath(sys.executable)
    if shown.startswith(".."):
        shown = sys.executable
    openssl_version = subprocess.run(["openssl", "version"], capture_output=True,
                                     text=True).stdout.strip()
    header = [
        f"command: {shlex.join([shown] + sys.argv)}",
        f"date:    {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"machine: {_common.machine_description()}",
        f"python:  {platform.python_version()} ({sys.executable}), "
        f"ssl {__import__('ssl').OPENSSL_VERSION}",
        f"load:    {_common.load_average()} (1, 5, 15 min) at start",
        f"runs:    {args.repeat} per implementation and workload; a fresh server process "
        f"per implementation, key type and run; {args.duration:g} s timed after "
        f"{args.warmup:g} s warm-up",
        f"cpus:    {pin_note}",
        f"tls:     TLS 1.3, {SUITE}, X25519 (the only ones the client offers); "
        f"self-signed certificates made by {openssl_version}",
    ]
    libs = ("-lssl", "-lcrypto")
    client, why = _common.build_c(os.path.join(HERE, "tls_client.c"), "tls_client", libs)
    if client is None:
        print("\n".join(header), flush=True)
        print(f"\ncannot run: the C load generator could not be built: {why}")
        return 2
    c_server, c_why = None, None
    if "c-openssl" in impls:
        c_server, c_why = _common.build_c(os.path.join(HERE, "tls_server.c"),
                                          "tls_server", libs)
    header.append(f"client:  {os.path.relpath(client)} ({_common.cc_version()}, -O2), "
                  "one thread, epoll, loopback, TCP_NODELAY")
    print("\n".join(header), flush=True)

    per_measure = args.warmup + args.duration + 5
    lifetime = len(configs) * per_measure + 120
    results = {cfg.name: {impl: [] for impl in impls} for cfg in configs}
    missing = {}
    all_results = []
    for rep in range(args.repeat):
        for key in KEYS:
            key_configs = [c for c in configs if c.key == key]
            if not key_configs:
                continue
            cert, keyfile = certs[key]
            servers = {}
            try:
                for impl in impls:
                    if impl in missing:
                        continue
                    if impl == "c-openssl" and c_server is None:
                        missing[impl] = c_why
                        continue
                    s = Server(impl, server_cmd(impl, c_server, cert, keyfile, server_cpu,
                                                lifetime))
                    if s.missing:
                        missing[impl] = s.error
                        continue
                    if impl == "c-openssl" and s.ok:
                        s.info["description"] = "C, epoll, OpenSSL"
                        s.info["version"] = s.info.get("version", "").split()[1]
                    servers[impl] = s
                for cfg in key_configs:
                    for impl in impls:
                        if impl in missing:
                            if not results[cfg.name][impl]:
                                results[cfg.name][impl].append(
                                    {"impl": impl, "status": _common.MISSING,
                                     "error": missing[impl]})
                            continue
                        s = servers[impl]
                        print(f"  [run {rep + 1}/{args.repeat}] {cfg.name} {impl} ...",
                              end="", file=sys.stderr, flush=True)
                        if s.ok and s.alive():
                            r = run_client(client, s, cfg, args, client_cpu)
                        else:
                            r = {"impl": impl, "workload": cfg.name,
                                 "status": _common.ERROR, "error": s.error}
                        r["run"] = rep + 1
                        if r["status"] == _common.OK:
                            print(f" {_common.format_rate(r['rate'])}/s, server "
                                  f"{_pct(r['extra']['server_util'] or 0)}",
                                  file=sys.stderr, flush=True)
                        else:
                            print(f" {r['status']}: {r.get('error', '')}",
                                  file=sys.stderr, flush=True)
                        results[cfg.name][impl].append(r)
                        all_results.append(r)
            finally:
                for s in servers.values():
                    s.stop()

    print()
    print("rate = handshakes or echoed messages per second (median over runs); "
          "vs ptsevent = median / ptsevent's median")
    print("srv CPU us/op = server utime+stime over the timed window per handshake or "
          "message, in microseconds")
    print("srv proc = share of one CPU the server process used; cli core = how busy the "
          "client's CPU was")
    print(f"CLIENT-BOUND = the client's CPU was >= {CLIENT_BOUND:.0%} busy: the rate is "
          "then a lower bound of the server's")
    for cfg in configs:
        print()
        print("\n".join(_common.format_table(workload_for(cfg), impls,
                                             results[cfg.name], {})), flush=True)
    print_targets(configs, results)
    _common.finish(missing, started, args.save, header, all_results)
    return 0


def main():
    parser = argparse.ArgumentParser(
        description="TLS benchmark: ptsevent.ssl against gevent, asyncio, uvloop and C.")
    parser.add_argument("--impl", help=f"comma-separated subset of: {','.join(IMPLS)}")
    parser.add_argument("--workload", default="hs,echo",
                        help="hs (handshakes), echo, or both (default hs,echo)")
    parser.add_argument("--duration", type=float,
                        help="timed seconds per measurement (default 2; 0.5 with --quick)")
    parser.add_argument("--warmup", type=float,
                        help="untimed seconds before each measurement "
                        "(default 0.5; 0.2 with --quick)")
    parser.add_argument("--repeat", type=int,
                        help="runs per implementation and workload (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="short measurements, one run: a smoke test")
    parser.add_argument("--server-cpu", type=int, help="CPU the servers are pinned to")
    parser.add_argument("--client-cpu", type=int, help="CPU the client is pinned to")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--save", metavar="PATH",
                        help="also write every raw result as JSON to PATH")
    parser.add_argument("--serve", metavar="IMPL", help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=3600, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        if args.serve not in LIBRARY:
            parser.error(f"--serve: unknown implementation {args.serve!r}")
        return serve(args.serve, args.cert, args.key, args.cpu, args.lifetime)

    impls = _common.pick_names(parser, args.impl, IMPLS, "implementation")
    kinds = _common.pick_names(parser, args.workload, ("hs", "echo"), "workload")
    if args.duration is None:
        args.duration = 0.5 if args.quick else 2.0
    if args.warmup is None:
        args.warmup = 0.2 if args.quick else 0.5
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--repeat must be >= 1, --duration > 0, --warmup >= 0")
    if shutil.which("openssl") is None:
        parser.error("the openssl command is needed to make the certificates")

    configs = []
    if "hs" in kinds:
        for key in KEYS:
            for resume in (False, True):
                configs.append(Config("handshake", key, HANDSHAKE_CONNS, resume=resume))
    if "echo" in kinds:
        for conns in ECHO_CONNS:
            for size in ECHO_SIZES:
                configs.append(Config("echo", "ecdsa", conns, size))
    with tempfile.TemporaryDirectory(prefix="ptsevent-tls-bench-") as tmp:
        certs = make_certs(tmp)
        return drive(args, impls, configs, certs)


if __name__ == "__main__":
    sys.exit(main())

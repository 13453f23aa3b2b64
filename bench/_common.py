"""Helpers shared by the benchmark scripts in bench/.

A benchmark script describes its workloads (what to run for each
implementation) and hands them to :func:`main`.  The same script then works
in two modes:

* child mode, ``script.py --impl NAME --workload W --json``: runs one
  workload for one implementation in this process, optionally pinned to one
  CPU, and prints exactly one JSON object on stdout;
* driver mode (no ``--json``): starts one child process per implementation,
  workload and repeat, interleaving the implementations so that slow drift
  of the machine affects all of them alike, and prints for each workload a
  table with the median, min and max rate and the ratio to ptsevent.

Each implementation runs in a fresh interpreter so that nothing one loop
library installs (hubs, policies, monkey-patches, allocator state) can
touch another one's numbers.
"""

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import re
import resource
import select
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

BASELINE = "ptsevent"

# Child exit statuses, carried in the JSON object.
OK = "ok"
MISSING = "missing"  # the implementation's modules are not importable
ERROR = "error"  # the child raised, crashed, timed out or printed no JSON
NOT_APPLICABLE = "n/a"


class Missing(Exception):
    """Raised by an implementation's setup when a module cannot be imported."""


@dataclasses.dataclass
class Workload:
    """One workload of a benchmark script.

    ``runners`` maps an implementation name to ``fn(params) -> dict``; the
    dict has at least ``ops`` and ``seconds`` (the timed region only) and
    may add ``extra`` (a dict of numbers or strings shown in the JSON, some
    of which a column can summarise).  Implementations listed in the
    script's ``impls`` but absent here are reported as not applicable.
    """

    name: str
    title: str  # str.format()-ed with the parameters of the run
    unit: str  # what one operation is, e.g. "sleep(0) calls"
    runners: dict
    params: dict  # default parameters
    quick_params: dict  # parameters under --quick
    # Optional extra column: (header, key in "extra", formatter).
    extra_column: tuple = None
    # Further columns of the same form, shown after extra_column (the median
    # over the successful runs of each), e.g. for echo.py's CPU figures.
    extra_columns: tuple = ()
    # Optional ``fn(ok_results) -> str``: added to a row's note column.
    row_note: object = None


# --------------------------------------------------------------------------
# Implementations: import and describe.


def import_impl(impl):
    """Import what ``impl`` needs; return ``(version, description)``.

    Raises :class:`Missing` if a module is not importable.  Anything else
    (a module that imports but is broken) propagates as an error.
    """
    try:
        if impl == "ptsevent":
            import ptsevent

            return _dist_version("ptsevent", ptsevent), "ptsevent"
        if impl == "gevent":
            import gevent

            return gevent.__version__, "gevent"
        if impl == "uvloop":
            import uvloop

            return uvloop.__version__, "asyncio + uvloop"
        if impl == "asyncio":
            import asyncio  # noqa: F401

            return platform.python_version(), "asyncio (default loop)"
        if impl == "greenlet":
            import greenlet

            return greenlet.__version__, "greenlet"
    except ImportError as exc:
        raise Missing(f"{type(exc).__name__}: {exc}") from None
    raise ValueError(f"unknown implementation {impl!r}")


def _dist_version(dist, module):
    version = getattr(module, "__version__", None)
    if version:
        return version
    try:
        from importlib import metadata

        return metadata.version(dist)
    except Exception:
        return "?"


# --------------------------------------------------------------------------
# CPU pinning.


def default_cpu():
    """The CPU children are pinned to: the highest one this process may use.

    The driver itself mostly sleeps in ``subprocess.run``; taking the last
    CPU keeps the children off CPU 0, where interrupts tend to land.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    return max(os.sched_getaffinity(0))


def pin_to_cpu(cpu):
    """Pin this process to ``cpu``; return True if it could be done."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    os.sched_setaffinity(0, {cpu})
    return True


# --------------------------------------------------------------------------
# Child mode.


def run_child(workload, impl, params, cpu):
    """Run one workload for one implementation here; return the result dict."""
    result = {
        "impl": impl,
        "workload": workload.name,
        "unit": workload.unit,
        "params": params,
        "python": platform.python_version(),
        "cpu": None,
    }
    if cpu is not None and pin_to_cpu(cpu):
        result["cpu"] = cpu
    runner = workload.runners.get(impl)
    if runner is None:
        result["status"] = NOT_APPLICABLE
        return result
    try:
        result["version"], result["description"] = import_impl(impl)
    except Missing as exc:
        result["status"] = MISSING
        result["error"] = str(exc)
        return result
    try:
        measured = runner(dict(params))
    except BaseException as exc:  # report, do not crash the driver's parse
        result["status"] = ERROR
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
        return result
    result.update(measured)
    result["rate"] = measured["ops"] / measured["seconds"]
    result["status"] = OK
    return result


# --------------------------------------------------------------------------
# Driver mode.


def spawn_child(script, impl, workload, params, cpu, timeout, python):
    """Run ``script`` in child mode in a new interpreter; return its result.

    Whatever goes wrong (a crash, a hang, no JSON) comes back as a result
    with status ``error`` so that one broken implementation never stops the
    others from being measured.
    """
    cmd = [
        python,
        script,
        "--impl",
        impl,
        "--workload",
        workload,
        "--json",
        "--params",
        json.dumps(params),
    ]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    base = {"impl": impl, "workload": workload, "status": ERROR}
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {**base, "error": f"exit status {proc.returncode}: {tail}"}


def summarize(results):
    """Median, min and max rate over the successful results, or None."""
    rates = [r["rate"] for r in results if r.get("status") == OK]
    if not rates:
        return None
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "n": len(rates),
    }


def format_rate(rate):
    if rate is None:
        return "-"
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f} k"
    return f"{rate:.0f}"


def format_table(workload, impls, results_by_impl, params):
    """The table for one workload, as a list of lines."""
    headers = ["impl", "version", "median", "min", "max", f"vs {BASELINE}"]
    extras = ([workload.extra_column] if workload.extra_column else []) + list(
        workload.extra_columns
    )
    headers += [e[0] for e in extras]
    headers += ["runs", "note"]

    base = summarize(results_by_impl.get(BASELINE, []))
    rows = []
    errors = []
    for impl in impls:
        results = results_by_impl.get(impl, [])
        statuses = {r.get("status") for r in results}
        stats = summarize(results)
        version = next((r["version"] for r in results if r.get("version")), "")
        failed = [r for r in results if r.get("status") == ERROR]
        if failed:
            errors.append(f"  {impl}: {failed[-1].get('error')}")
        if stats is None:
            if NOT_APPLICABLE in statuses:
                note = "not applicable"
            elif MISSING in statuses:
                note = "missing (not importable)"
            else:
                note = "failed, see below"
            blanks = ["-"] * (len(headers) - 4)
            rows.append([impl, version] + blanks + ["0", note])
            continue
        if impl == BASELINE:
            ratio = "1.00x"
        elif base:
            ratio = f"{stats['median'] / base['median']:.2f}x"
        else:
            ratio = "-"
        row = [
            impl,
            version,
            format_rate(stats["median"]),
            format_rate(stats["min"]),
            format_rate(stats["max"]),
            ratio,
        ]
        for extra in extras:
            values = [
                r["extra"][extra[1]]
                for r in results
                if r.get("status") == OK
                and r.get("extra", {}).get(extra[1]) is not None
            ]
            row.append(extra[2](statistics.median(values)) if values else "-")
        row.append(str(stats["n"]))
        notes = []
        if workload.row_note is not None:
            notes.append(workload.row_note([r for r in results if r.get("status") == OK]))
        if failed:
            notes.append(f"{len(failed)} run(s) failed, see below")
        row.append("; ".join(n for n in notes if n))
        rows.append(row)

    widths = [
        max(len(str(x)) for x in [h] + [row[i] for row in rows])
        for i, h in enumerate(headers)
    ]
    # Numbers right-aligned; names, versions and the note left-aligned.
    numeric = set(range(2, len(headers) - 1))

    def fmt(cells):
        out = []
        for i, cell in enumerate(cells):
            cell = str(cell)
            out.append(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [f"{workload.name}: {workload.title.format(**params)}"]
    lines.append(f"  rate = {workload.unit} per second")
    lines.append("  " + fmt(headers))
    lines.append("  " + "  ".join("-" * w for w in widths))
    lines += ["  " + fmt(row) for row in rows]
    if errors:
        lines.append("  failures (last error of each):")
        lines += ["  " + e for e in errors]
    return lines


def machine_description():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def load_average():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "unknown"


def drive(script, workloads, impls, args):
    """Run every (workload, implementation) ``args.repeat`` times; print tables."""
    cpu = None if args.no_pin else (args.cpu if args.cpu is not None else default_cpu())
    python = sys.executable
    if cpu is not None:
        pin_note = f"each run pinned to CPU {cpu} (os.sched_setaffinity)"
    elif args.no_pin:
        pin_note = "runs not pinned (--no-pin)"
    else:
        pin_note = "runs not pinned: os.sched_setaffinity is not available here"

    shown = os.path.relpath(python)
    if shown.startswith(".."):
        shown = python
    header = [
        f"command: {shlex.join([shown] + sys.argv)}",
        f"date:    {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"machine: {machine_description()}",
        f"python:  {platform.python_version()} ({python})",
        f"load:    {load_average()} (1, 5, 15 min) at start",
        f"runs:    {args.repeat} per implementation and workload, "
        f"each in a fresh process; {pin_note}"
        + ("; --quick sizes" if args.quick else ""),
    ]
    print("\n".join(header), flush=True)

    missing = {}
    all_results = []
    started = time.monotonic()
    for workload in workloads:
        params = dict(workload.quick_params if args.quick else workload.params)
        by_impl = {impl: [] for impl in impls}
        for rep in range(args.repeat):
            for impl in impls:
                if impl not in workload.runners:
                    if not by_impl[impl]:
                        by_impl[impl].append({"impl": impl, "status": NOT_APPLICABLE})
                    continue
                if impl in missing:
                    if not by_impl[impl]:
                        by_impl[impl].append(
                            {"impl": impl, "status": MISSING, "error": missing[impl]}
                        )
                    continue
                print(
                    f"  [{workload.name} {rep + 1}/{args.repeat}] {impl} ...",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
                r = spawn_child(
                    script, impl, workload.name, params, cpu, args.timeout, python
                )
                if r.get("status") == OK:
                    msg = f" {format_rate(r['rate'])}/s"
                else:
                    msg = f" {r.get('status')}: {r.get('error', '')}"
                print(msg, file=sys.stderr, flush=True)
                if r.get("status") == MISSING:
                    missing[impl] = r.get("error", "not importable")
                by_impl[impl].append(r)
                all_results.append(r)
        print()
        print("\n".join(format_table(workload, impls, by_impl, params)), flush=True)

    finish(missing, started, args.save, header, all_results)


def read_line(fd, buf, timeout):
    """Read from the pipe `fd` until `buf` holds a whole line, for at most
    `timeout` seconds. Returns (line without its newline, the bytes after
    it), or (None, what was read so far) on EOF or timeout."""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, buf
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None, buf
        chunk = os.read(fd, 4096)
        if not chunk:
            return None, buf
        buf += chunk
    line, rest = buf.split(b"\n", 1)
    return line, rest


def finish(missing, started, save, header, all_results):
    """The closing lines of a driver run: what was missing, the total time,
    and the raw results written to `save` (a path, or None)."""
    print()
    if missing:
        print("missing (not importable with this interpreter):")
        for impl, why in missing.items():
            print(f"  {impl}: {why}")
    else:
        print("missing: none")
    print(f"total time: {time.monotonic() - started:.0f} s")

    if save:
        os.makedirs(os.path.dirname(os.path.abspath(save)), exist_ok=True)
        with open(save, "w") as f:
            json.dump({"header": header, "results": all_results}, f, indent=1)
        print(f"raw results written to {save}")


# --------------------------------------------------------------------------
# Command line.


def main(script, description, workloads, impls):
    """Entry point of a benchmark script: parse the command line and run."""
    by_name = {w.name: w for w in workloads}
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--impl",
        help="with --json: the one implementation to run; otherwise a "
        f"comma-separated subset to drive (default: {','.join(impls)})",
    )
    parser.add_argument(
        "--workload",
        help="with --json: the one workload to run; otherwise a "
        f"comma-separated subset (default: {','.join(by_name)})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="child mode: run one implementation and workload, print one JSON object",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        help="runs per implementation and workload (default 5, 3 with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller workloads and 3 runs, for a smoke test",
    )
    parser.add_argument(
        "--cpu", type=int, help="CPU to pin each run to (default: the last one)"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin runs to a CPU"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds before a run is abandoned (default 120)",
    )
    parser.add_argument(
        "--save", metavar="PATH", help="also write every raw result as JSON to PATH"
    )
    parser.add_argument("--params", help=argparse.SUPPRESS)  # driver -> child
    args = parser.parse_args()

    def pick(value, known, what):
        return pick_names(parser, value, known, what)

    if args.json:
        if not args.impl or not args.workload:
            parser.error("--json needs --impl NAME and --workload W")
        impl = pick(args.impl, impls, "implementation")
        workload = pick(args.workload, list(by_name), "workload")
        if len(impl) != 1 or len(workload) != 1:
            parser.error("--json runs exactly one implementation and one workload")
        w = by_name[workload[0]]
        params = dict(w.quick_params if args.quick else w.params)
        if args.params:
            params.update(json.loads(args.params))
        result = run_child(w, impl[0], params, args.cpu)
        print(json.dumps(result), flush=True)
        return 0 if result["status"] in (OK, MISSING, NOT_APPLICABLE) else 1

    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    chosen_impls = pick(args.impl, impls, "implementation")
    chosen = [by_name[n] for n in pick(args.workload, list(by_name), "workload")]
    drive(os.path.abspath(script), chosen, chosen_impls, args)
    return 0


def green_module(impl):
    """ptsevent or gevent: their spawn, sleep, joinall and kill share
    signatures and meaning, so one workload serves both."""
    if impl == "ptsevent":
        import ptsevent

        return ptsevent
    import gevent

    return gevent


def check_tasklets(tasklets):
    """Raise unless every tasklet ran to completion without an exception."""
    unfinished = sum(1 for t in tasklets if not t.dead)
    if unfinished:
        raise RuntimeError(f"joinall returned with {unfinished} tasklets alive")
    failed = [t for t in tasklets if not t.successful()]
    if failed:
        raise RuntimeError(
            f"{len(failed)} tasklets failed, the first with {failed[0].exception!r}"
        )


class ChildServer:
    """What the benchmarks' server-process classes share: a subclass sets
    ``proc`` (a Popen or None), ``error`` and ``_stderr`` (a temporary file
    the child's stderr goes to)."""

    proc = None
    error = None
    missing = False
    info = {}

    def launch(self, cmd, ready_timeout, what="not listening"):
        """Start ``cmd`` and read its ready line (one JSON object) into
        ``info``. On failure, ``error`` says why (``missing`` when the child
        reported its library not importable) and the child is stopped.
        Returns True when the child is ready."""
        self.info = {}
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=self._stderr)
        except OSError as exc:
            self.error = f"cannot start: {exc}"
            return False
        line, _ = read_line(self.proc.stdout.fileno(), b"", ready_timeout)
        if line is None:
            self.error = f"{what} after {ready_timeout:g} s: {self.stderr_tail()}"
        else:
            try:
                self.info = json.loads(line)
            except ValueError:
                self.error = f"bad ready line {line!r}: {self.stderr_tail()}"
            else:
                if self.info.get("status") != OK:
                    self.missing = self.info.get("status") == MISSING
                    self.error = self.info.get("error", "?")
        if self.error is not None:
            self.stop()
            return False
        return True

    def stop(self):
        """Terminate the child (kill it if it lingers) and close its pipes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    @property
    def ok(self):
        return self.error is None and self.proc is not None

    def alive(self):
        if self.proc is None or self.proc.poll() is not None:
            if self.error is None:
                code = None if self.proc is None else self.proc.returncode
                self.error = f"server exited (status {code}): {self.stderr_tail()}"
            return False
        return True

    def stderr_tail(self):
        """The last non-empty line the child wrote to stderr."""
        try:
            self._stderr.seek(0)
            lines = [ln for ln in self._stderr.read().strip().splitlines() if ln.strip()]
        except (OSError, ValueError):
            return "?"
        return lines[-1].strip() if lines else "(no output)"


def pick_names(parser, value, known, what):
    """The names of a comma-separated option (all of ``known`` when empty);
    an unknown name is a usage error."""
    if not value:
        return list(known)
    names = [v.strip() for v in value.split(",") if v.strip()]
    for n in names:
        if n not in known:
            parser.error(f"unknown {what} {n!r}; choose from {', '.join(known)}")
    return names


def plan_cpus(no_pin, server_cpu=None, client_cpu=None, client="client"):
    """Where a benchmark's server and its client run: the server on the last
    allowed CPU (or ``server_cpu``), the client on another one (or
    ``client_cpu``). Pins this driver process to the client's CPU (it only
    waits) and returns ``(server_cpu, client_cpu, note)``; both None when
    not pinning."""
    if no_pin:
        return None, None, "not pinned (--no-pin)"
    if not hasattr(os, "sched_setaffinity"):
        return None, None, "not pinned: os.sched_setaffinity is not available here"
    allowed = sorted(os.sched_getaffinity(0))
    if server_cpu is None:
        server_cpu = allowed[-1]
    if client_cpu is None:
        others = [c for c in allowed if c != server_cpu]
        client_cpu = others[-1] if others else server_cpu
    pin_to_cpu(client_cpu)
    if client_cpu == server_cpu:
        note = (f"server and {client} both on CPU {server_cpu} (only one CPU allowed): "
                "they compete, CPU shares are not comparable")
    else:
        note = (f"server pinned to CPU {server_cpu}, {client} (and the driver) to CPU "
                f"{client_cpu} (os.sched_setaffinity)")
    return server_cpu, client_cpu, note


# --------------------------------------------------------------------------
# Building the benchmarks' C programs, once, into bench/.build/.

BUILD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".build")


def cc_version(cc=None):
    cc = cc or os.environ.get("CC", "cc")
    try:
        out = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
        return out.splitlines()[0].strip() if out else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def build_c(src, name, libs=()):
    """Compile ``src`` with ``cc -O2`` (linked with ``libs``, e.g. ``-lssl``);
    return ``(path, None)`` or ``(None, why)``.

    The binary is cached under bench/.build/, keyed on the source, the
    libraries and the compiler, so later invocations reuse it.
    """
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return None, f"no C compiler: {cc!r} is not on PATH (set CC or install cc)"
    try:
        with open(src, "rb") as f:
            source = f.read()
    except OSError as exc:
        return None, f"cannot read {src}: {exc}"
    # The local headers it includes are part of what is built.
    for header in re.findall(rb'^#include "([^"]+)"', source, re.M):
        try:
            with open(os.path.join(os.path.dirname(src), header.decode()), "rb") as f:
                source += f.read()
        except OSError as exc:
            return None, f"cannot read {header.decode()}: {exc}"
    key = hashlib.sha256(
        source + " ".join(libs).encode() + cc_version(cc).encode()
    ).hexdigest()[:16]
    out = os.path.join(BUILD_DIR, f"{name}-{key}")
    if os.path.exists(out):
        return out, None
    os.makedirs(BUILD_DIR, exist_ok=True)
    ignore = os.path.join(BUILD_DIR, ".gitignore")
    if not os.path.exists(ignore):
        with open(ignore, "w") as f:
            f.write("# build cache of the benchmarks' C programs\n*\n")
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=BUILD_DIR)
    os.close(fd)
    try:
        proc = subprocess.run(
            [cc, "-O2", "-Wall", "-o", tmp, src, *libs],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return None, f"{cc} -O2 {os.path.basename(src)} failed: {tail}"
        os.replace(tmp, out)
        for old in os.listdir(BUILD_DIR):  # binaries of older sources
            if old.startswith(f"{name}-") and old != os.path.basename(out):
                os.unlink(os.path.join(BUILD_DIR, old))
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{cc} -O2 {os.path.basename(src)} failed: {exc}"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out, None


def run_c_client(cmd, server, base, timeout):
    """Runs a C load generator (cmd) against server and reads the JSON
    object it prints last: (result, None), or (None, a result dict with
    the error) when it timed out, printed nothing usable, or reported a
    failure (the server's own error first, if it died)."""
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, {**base, "error": f"client timed out after {timeout:g} s"}
    r = None
    for line in reversed(proc.stdout.splitlines()):
        if line.strip().startswith("{"):
            try:
                r = json.loads(line)
            except ValueError:
                pass
            break
    if r is None:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return None, {**base, "error": f"client exit status {proc.returncode}: {tail}"}
    if r.get("status") != OK:
        if not server.alive():
            return None, {**base, "error": server.error}
        return None, {**base, "error": r.get("error", "?")}
    return r, None


def raise_nofile():
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the new one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


class Proc:
    """A child process whose stdout is read line by line with a deadline."""

    def __init__(self, cmd, stdin=subprocess.DEVNULL):
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._buf = b""
        self.proc = subprocess.Popen(
            cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=self._stderr
        )

    def read_json(self, timeout):
        """The next stdout line as a dict, or None on EOF, junk or timeout."""
        line, self._buf = read_line(self.proc.stdout.fileno(),
                                            self._buf, timeout)
        if line is None:
            return None
        try:
            return json.loads(line)
        except ValueError:
            return None

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def stderr_tail(self):
        try:
            self._stderr.seek(0)
            lines = self._stderr.read().strip().splitlines()
        except (OSError, ValueError):
            return "?"
        return lines[-1] if lines else "(no output)"

    def why_silent(self, what, timeout):
        code = self.proc.poll()
        if code is None:
            return f"no {what} within {timeout:g} s"
        return f"exited (status {code}) before {what}: {self.stderr_tail()}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: nothing to flush, and it cannot hang
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self._stderr.close()


def memory_table(impls, results, value_header, fmt_value, columns, title, quiet_max,
                 notes_for=None):
    """The table of a memory-per-connection benchmark (idle_memory.py and
    wsgi_idle_memory.py): one row per implementation, the median of
    ``bytes_per_conn`` formatted by ``fmt_value``, the ratio to ptsevent,
    ``columns`` ((header, extra key or "delta", formatter) medians), and
    notes (``notes_for(impl, good_results)`` adds its own; a run whose
    server was not quiet after ``quiet_max`` seconds is counted)."""
    headers = ["impl", "version", value_header, "min", "max",
               f"vs {BASELINE}"] + [c[0] for c in columns] + ["runs", "note"]

    def ok(rs):
        return [r for r in rs if r.get("status") == OK]

    base_ok = ok(results.get(BASELINE, []))
    base_median = statistics.median(r["bytes_per_conn"] for r in base_ok) if base_ok else None
    rows, errors = [], []
    for impl in impls:
        rs = results.get(impl, [])
        good = ok(rs)
        failed = [r for r in rs if r.get("status") == ERROR]
        version = next((r["version"] for r in rs if r.get("version")), "")
        if failed:
            errors.append(f"  {impl}: {failed[-1].get('error')}")
        if not good:
            if any(r.get("status") == MISSING for r in rs):
                note = "missing (not importable)"
            else:
                note = "failed, see below"
            rows.append([impl, version] + ["-"] * (len(headers) - 4) + ["0", note])
            continue
        values = [r["bytes_per_conn"] for r in good]
        median = statistics.median(values)
        ratio = f"{median / base_median:.2f}x" if base_median else "-"
        row = [impl, version, fmt_value(median), fmt_value(min(values)),
               fmt_value(max(values)), ratio]
        for _header, key, fmt in columns:
            if key == "delta":
                vals = [r["extra"]["rss_after"] - r["extra"]["rss_base"] for r in good]
            else:
                vals = [r["extra"][key] for r in good]
            row.append(fmt(statistics.median(vals)))
        row.append(str(len(good)))
        notes = list(notes_for(impl, good)) if notes_for else []
        unquiet = sum(1 for r in good if not r["extra"]["quiet"])
        if unquiet:
            notes.append(f"server not quiet after {quiet_max:g} s in {unquiet} run(s)")
        if failed:
            notes.append(f"{len(failed)} run(s) failed, see below")
        row.append("; ".join(notes))
        rows.append(row)

    widths = [max(len(str(x)) for x in [h] + [row[i] for row in rows])
              for i, h in enumerate(headers)]
    numeric = set(range(2, len(headers) - 1))

    def fmt(cells):
        return "  ".join(
            str(c).rjust(widths[i]) if i in numeric else str(c).ljust(widths[i])
            for i, c in enumerate(cells)
        ).rstrip()

    lines = list(title) + [
        "  " + fmt(headers),
        "  " + "  ".join("-" * w for w in widths),
    ]
    lines += ["  " + fmt(row) for row in rows]
    if errors:
        lines.append("  failures (last error of each):")
        lines += ["  " + e for e in errors]
    return lines

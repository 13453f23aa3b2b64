"""Run CPython's own test modules with ptsevent's modules in place.

    python -m ptsevent.testing.stdlib [options] MODULE [MODULE ...]

Each MODULE (``test_ssl``, or a dotted name importable on its own) runs in
a process of its own, with a time limit: first with ptsevent's cooperative
modules installed before ``test.support`` is imported, then unpatched (the
baseline: what this interpreter and this machine can pass at all). The
baseline reruns only the tests that did not pass with ptsevent (a test that
passes with ptsevent needs no baseline), or the whole module when the
ptsevent run was cut short or failed outside a test (``--full-baseline``
always runs it all). The two runs of a module never overlap, as their
servers may share fixed ports. A test that passes in the baseline and fails
with ptsevent is a regression and makes the exit status 1; failures and
skips of the interpreter's own (no network, no IPv6, ...) do not count
against ptsevent.

Inside a child the module's tests are loaded and run by unittest's own
machinery (so module and class fixtures, ``load_tests`` and subtests behave
as under regrtest); a result class records each test's outcome and streams
it to the parent as one JSON line per event, so a module cut off by its time
limit still reports what ran and which test hung.

Tests that cannot work with ptsevent are named in ``SKIPS`` below, each with
the reason; an entry without one is rejected.

What gets installed for a module comes from ``INSTALLERS`` and
``MODULE_AREAS``: one entry per area of ``ptsevent.patch`` (``socket``,
``dns``, ``ssl``, ``select``, ...), and ``all`` for ``patch_all()``, the
default.
"""

import argparse
import concurrent.futures
import dataclasses
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

# --------------------------------------------------------------------------
# The skip list.


@dataclasses.dataclass(frozen=True)
class Skip:
    """One test (or a class or module of tests) not run with ptsevent, and why.

    ``test`` is a test id without the ``test.`` package prefix, e.g.
    ``test_ssl.ThreadedTests.test_echo``; an id that names a class or a
    module covers every test under it. ``why`` says what makes the test
    unable to pass with ptsevent in place: a limitation that holds, not
    "it fails". ``everywhere``: the test cannot run on this kind of
    machine at all (it hangs unpatched too), so the baseline skips it as
    well.
    """

    test: str
    why: str
    everywhere: bool = False

    def __post_init__(self):
        if not isinstance(self.test, str) or not self.test.strip():
            raise ValueError(f"skip entry without a test id: {self!r}")
        if not isinstance(self.why, str) or len(self.why.strip()) < 10:
            raise ValueError(
                f"skip entry {self.test!r} must say why it is skipped "
                f"(a reason of at least 10 characters), got {self.why!r}"
            )

    def covers(self, test_id):
        return test_id == self.test or test_id.startswith(self.test + ".")


SKIPS = (
    # -- the machine, patched or not -------------------------------------------
    Skip("test_socket.ThreadedVSOCKSocketStreamTest",
         "a VSOCK connection to the machine's own CID is never accepted in "
         "a container or VM without vsock loopback: setUp's accept() waits "
         "forever, unpatched too", everywhere=True),

    # -- tests that need preemptive threads -----------------------------------
    # A patched thread is a tasklet: it runs when the others wait (for I/O,
    # a lock, a sleep), never in the middle of a pure-Python loop. These
    # tests loop on the CPU in one thread until another thread has made
    # progress, and so loop forever.
    Skip("test_signal.StressTest.test_stress_modifying_handlers",
         "the main thread calls signal.signal() in a loop until another "
         "thread has raised 100 signals; that thread, a tasklet, never "
         "gets a turn (no preemption between tasklets)"),
    Skip("test_signal.ItimerTest.test_itimer_virtual",
         "spins on the CPU until the SIGVTALRM handler has stopped the "
         "timer; a handler runs in a tasklet, which a CPU loop never lets "
         "run (the test gives up after 30 s as if the machine were slow)"),
    Skip("test_signal.ItimerTest.test_itimer_prof",
         "spins on the CPU until the SIGPROF handler has stopped the timer; "
         "the handler's tasklet never gets a turn during the loop"),
    Skip("test_threading.InterruptMainTests.test_can_interrupt_tight_loops",
         "the main thread spins until a thread has started, and that "
         "thread spins until the main thread clears a flag: neither tasklet "
         "ever gives the other a turn"),
    Skip("test_threading.InterruptMainTests.test_interrupt_main_subthread",
         "_thread.interrupt_main() makes the main OS thread raise "
         "KeyboardInterrupt in whatever runs on it next: that is the "
         "calling tasklet thread itself, not the main thread's tasklet"),

    # -- identity: a patched thread is a tasklet, not an OS thread ------------
    Skip("test_threading.ThreadTests.test_various_ops",
         "expects a distinct threading.get_native_id() per thread; it stays "
         "the OS thread's by design (every tasklet thread shares it)"),
    Skip("test_threading.ThreadTests.test_various_ops_small_stack",
         "runs test_various_ops: get_native_id() stays the OS thread's"),
    Skip("test_threading.ThreadTests.test_various_ops_large_stack",
         "runs test_various_ops: get_native_id() stays the OS thread's"),
    Skip("test_threading.ThreadTests.test_PyThreadState_SetAsyncExc",
         "raises an exception into a thread through "
         "ctypes.pythonapi.PyThreadState_SetAsyncExc(thread id): a tasklet "
         "thread's ident names no interpreter thread state"),

    # -- ptsevent's classes are its own public classes, not the standard ones -
    Skip("test_threading.ThreadTests.test_disallow_instantiation",
         "expects type(_thread.allocate_lock()) to refuse instantiation, "
         "as the C lock type does; ptsevent.Lock is a public class"),
    Skip("test_select.SelectTestCase.test_disallow_instantiation",
         "expects type(select.poll()) to refuse instantiation, as the C "
         "type does; ptsevent's cooperative poll is a public class"),
    Skip("test_threading.MiscTestCase.test__all__",
         "derives threading.__all__ from the objects whose __module__ is "
         "'threading'; the patched Lock, RLock, Semaphore, "
         "BoundedSemaphore and local are ptsevent's"),
    Skip("test_threading.SemaphoreTests.test_repr",
         "matches repr() against '<\\w+\\.Semaphore at ...>', a module "
         "name without a dot; ptsevent's is ptsevent.locks"),
    Skip("test_threading.BoundedSemaphoreTests.test_repr",
         "matches repr() against '<\\w+\\.BoundedSemaphore at ...>'; "
         "ptsevent's class lives in ptsevent.locks"),
    Skip("test_threading.EventTests.test_repr",
         "matches repr() against '<\\w+\\.Event at ...>'; ptsevent's "
         "class lives in ptsevent.event"),
    Skip("test_threading.EventTests.test_at_fork_reinit",
         "reaches into threading.Event's private _cond; ptsevent.Event "
         "waits on the hub, without a Condition"),

    # -- cooperative subprocess ----------------------------------------------
    Skip("test_subprocess.POSIXProcessTestCase."
         "test_communicate_BrokenPipeError_stdin_write",
         "mocks Popen.stdin to see communicate()'s fast path call "
         "stdin.write(); the cooperative communicate always takes the "
         "selector loop (the fast path's write to a pipe would block the "
         "hub), which writes with os.write"),

    # -- ptsevent's sockets keep their descriptor non-blocking ----------------
    Skip("test_socket.NonBlockingTCPTests.testSetBlocking",
         "reads O_NONBLOCK off the descriptor of a blocking socket; a "
         "ptsevent socket's descriptor is non-blocking in every mode (a "
         "blocking call waits through the hub)"),
    Skip("test_socket.NonBlockingTCPTests.testSetBlocking_overflow",
         "reads O_NONBLOCK off the descriptor, which ptsevent keeps "
         "non-blocking in every mode"),
    Skip("test_socket.NonblockConstantTest.test_SOCK_NONBLOCK",
         "reads O_NONBLOCK off the descriptor of a socket with a timeout "
         "of None; ptsevent keeps it non-blocking in every mode"),
    Skip("test_socket.NetworkConnectionNoServer.test_create_connection_timeout",
         "swaps socket.socket for a mock class and expects "
         "socket.create_connection to build that; the patched "
         "create_connection builds ptsevent's socket"),
)

# Resources (as regrtest's -u) enabled in the children: everything that
# stays on this machine. "network" and "urlfetch" reach the internet.
DEFAULT_RESOURCES = ("subprocess", "walltime", "decimal", "cpu")

# Modules whose "network" is the loopback only get it too (checked by
# reading them: every address is socket_helper.HOST or a Unix socket).
MODULE_RESOURCES = {
    "test_socketserver": ("network",),
}

DEFAULT_TIMEOUT = 600.0  # seconds per module and run

SKIP_PREFIX = "ptsevent skip list: "


# --------------------------------------------------------------------------
# What is installed in a child, per area.


def _area(function_name):
    """An installer calling ptsevent.patch's function of that name; it
    returns the names the call replaced (module.attribute)."""

    def install():
        from ptsevent import patch

        before = set(patch.patched_names())
        getattr(patch, function_name)()
        return sorted(f"{module}.{name}" for module, name
                      in set(patch.patched_names()) - before)

    install.__name__ = f"install_{function_name}"
    return install


# area name -> function installing it, returning what it replaced. One
# entry per ptsevent.patch area, and "all" for patch_all().
INSTALLERS = {
    area: _area(f"patch_{area}")
    for area in ("socket", "dns", "ssl", "select", "selectors", "time", "os",
                 "subprocess", "thread", "queue", "signal")
}
INSTALLERS["all"] = _area("patch_all")

# Areas installed for a module; a module not named here gets DEFAULT_AREAS.
# test_ssl runs with what cooperative TLS is made of: ssl first, so that
# patching socket finds it done and has nothing to warn about.
DEFAULT_AREAS = ("all",)
MODULE_AREAS = {
    "test_ssl": ("ssl", "socket", "dns"),
}


def areas_for(module):
    return MODULE_AREAS.get(module, DEFAULT_AREAS)


def install(areas):
    done = []
    for area in areas:
        try:
            installer = INSTALLERS[area]
        except KeyError:
            raise ValueError(
                f"unknown area {area!r}; known: {', '.join(INSTALLERS)}") from None
        done += installer()
    return done


# --------------------------------------------------------------------------
# Test ids.


def full_name(module):
    """The importable name of MODULE: test_x -> test.test_x when the `test`
    package has it, else MODULE itself."""
    import importlib.util

    if "." not in module:
        try:
            if importlib.util.find_spec(f"test.{module}") is not None:
                return f"test.{module}"
        except ImportError:
            pass
    return module


def short_id(test_id):
    return test_id[len("test."):] if test_id.startswith("test.") else test_id


def matches_filter(test_id, patterns):
    """As unittest's -k: a pattern without wildcards matches as a substring;
    one with wildcards matches the whole id (with or without ``test.``)."""
    if not patterns:
        return True
    for pattern in patterns:
        if not any(c in pattern for c in "*?["):
            pattern = f"*{pattern}*"
        if fnmatch.fnmatchcase(test_id, pattern):
            return True
    return False


# --------------------------------------------------------------------------
# Child side: run one module in this process.

# Outcomes, from the least to the most severe: a test's recorded outcome is
# the most severe one reported for it (a failed subtest fails the test).
RANK = {"skipped": 0, "passed": 1, "xfail": 1, "failed": 2, "error": 3}


def _child_main(args):
    import importlib

    out = open(args.result, "w", buffering=1)

    def emit(**event):
        out.write(json.dumps(event) + "\n")
        out.flush()

    # The tests expect Ctrl-C to raise KeyboardInterrupt even when the
    # runner was started with SIGINT ignored (a background `make test`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    areas = [a for a in args.install.split(",") if a] if args.install else []
    installed = install(areas)
    emit(event="installed", areas=areas, names=installed)
    if args.timeout:
        # A hang leaves every thread's stack in the child's log.
        import faulthandler

        faulthandler.dump_traceback_later(max(1.0, args.timeout - 5), exit=False)

    from test import support

    support.verbose = 1 if args.verbose else 0
    support.use_resources = [r for r in args.use.split(",") if r]

    skips = [Skip(**entry) for entry in json.loads(args.skips)]
    filters = args.filter or []
    only = None
    if args.only:
        with open(args.only) as f:
            only = set(json.load(f))
    started = time.monotonic()
    try:
        module = importlib.import_module(full_name(args.module))
    except unittest.SkipTest as exc:
        emit(event="outcome", id=args.module, outcome="skipped", detail=str(exc))
        emit(event="done", seconds=time.monotonic() - started)
        return 0
    except BaseException:
        import traceback

        emit(event="outcome", id=args.module, outcome="error",
             detail="import failed:\n" + traceback.format_exc())
        emit(event="done", seconds=time.monotonic() - started)
        return 0

    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    used = set()
    _select(suite, filters, skips, used, only)
    for entry in skips:
        if entry.test.split(".")[0] == short_id(module.__name__).split(".")[0] \
                and entry not in used and not filters and only is None:
            emit(event="unused_skip", id=entry.test, why=entry.why)

    result = _Recorder(emit)
    result.startTestRun()
    try:
        suite.run(result)
    finally:
        result.stopTestRun()
    emit(event="done", seconds=time.monotonic() - started)
    return 0


def _select(suite, filters, skips, used, only=None):
    """Drop tests the filter excludes (and those not in ``only``, a set of
    ids, if given); mark the skip list's tests skipped."""
    kept = []
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            _select(test, filters, skips, used, only)
            kept.append(test)
            continue
        tid = short_id(test.id())
        if not (matches_filter(tid, filters) or matches_filter(test.id(), filters)):
            continue
        if only is not None and tid not in only:
            continue
        for entry in skips:
            if entry.covers(tid):
                used.add(entry)
                _mark_skipped(test, entry.why)
                break
        kept.append(test)
    suite._tests = kept


def _mark_skipped(case, why):
    # TestCase.run looks the method up on the instance and honours its
    # __unittest_skip__ flag: the test is reported skipped with this reason
    # and neither setUp nor the method runs.
    def skipped(*args, **kwargs):
        pass

    skipped.__unittest_skip__ = True
    skipped.__unittest_skip_why__ = SKIP_PREFIX + why
    name = getattr(case, "_testMethodName", None)
    if name:
        setattr(case, name, skipped)


class _Recorder(unittest.TestResult):
    """Streams each test's start and outcome to the parent."""

    def __init__(self, emit):
        super().__init__()
        self._emit = emit

    @staticmethod
    def _id(test):
        # A subtest reports under the test it belongs to.
        return short_id(getattr(test, "test_case", test).id())

    def _detail(self, err, test):
        text = self._exc_info_to_string(err, getattr(test, "test_case", test))
        return text[-6000:]

    def startTest(self, test):
        super().startTest(test)
        self._emit(event="start", id=self._id(test))

    def stopTest(self, test):
        super().stopTest(test)
        self._emit(event="stop", id=self._id(test))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._emit(event="outcome", id=self._id(test), outcome="passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._emit(event="outcome", id=self._id(test), outcome="failed",
                   detail=self._detail(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._emit(event="outcome", id=self._id(test), outcome="error",
                   detail=self._detail(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._emit(event="outcome", id=self._id(test), outcome="skipped",
                   detail=reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._emit(event="outcome", id=self._id(test), outcome="xfail")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._emit(event="outcome", id=self._id(test), outcome="failed",
                   detail="unexpected success")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            outcome = ("failed" if issubclass(err[0], test.failureException)
                       else "error")
            self._emit(event="outcome", id=self._id(test), outcome=outcome,
                       detail=f"{subtest._subDescription()}\n"
                       + self._detail(err, test))


# --------------------------------------------------------------------------
# Parent side: one child per module and mode.


@dataclasses.dataclass
class ModuleRun:
    module: str
    mode: str  # "baseline" or "ptsevent"
    outcomes: dict = dataclasses.field(default_factory=dict)  # id -> outcome
    details: dict = dataclasses.field(default_factory=dict)  # id -> text
    installed: list = dataclasses.field(default_factory=list)
    unused_skips: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    finished: bool = False
    problem: str = ""  # why the child did not finish (timeout, crash)
    log: str = ""

    def count(self, outcome):
        if outcome == "passed":
            return sum(1 for o in self.outcomes.values() if o in ("passed", "xfail"))
        return sum(1 for o in self.outcomes.values() if o == outcome)

    def as_json(self):
        return dataclasses.asdict(self)


def run_child(module, mode, opts, skips, log_dir, only=None):
    """Run MODULE in a child process (only the test ids in ``only``, if
    given); return its ModuleRun."""
    tag = f"{module}.{mode}"
    result_path = os.path.join(log_dir, tag + ".jsonl")
    log_path = os.path.join(log_dir, tag + ".log")
    install_areas = "" if mode == "baseline" else ",".join(
        opts.install.split(",") if opts.install else areas_for(module))
    cmd = [sys.executable, "-m", "ptsevent.testing.stdlib", "--child", module,
           "--result", result_path, "--install", install_areas,
           "--use", ",".join([opts.use, *MODULE_RESOURCES.get(module, ())]),
           "--timeout", repr(opts.timeout),
           # The skip list is ptsevent's: the baseline runs every test but
           # those that cannot run on this machine at all.
           "--skips", json.dumps([dataclasses.asdict(s) for s in skips
                                  if mode != "baseline" or s.everywhere])]
    for pattern in opts.filter or []:
        cmd += ["-k", pattern]
    if only is not None:
        only_path = os.path.join(log_dir, tag + ".only.json")
        with open(only_path, "w") as f:
            json.dump(sorted(only), f)
        cmd += ["--only", only_path]
    if opts.verbose:
        cmd.append("--verbose")
    run = ModuleRun(module, mode, log=log_path)
    # Tests write their files (TESTFN) into the current directory: each
    # child gets an empty one; the caller's stays importable, as under -m.
    workdir = tempfile.mkdtemp(prefix=tag + ".", dir=log_dir)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (env.get("PYTHONPATH"), os.getcwd()) if p)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=workdir, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=opts.timeout)
        except subprocess.TimeoutExpired:
            rc = None
            run.problem = f"timed out after {opts.timeout:g} s"
        finally:
            # The child's session: its servers, threads' subprocesses.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    run.seconds = time.monotonic() - started
    shutil.rmtree(workdir, ignore_errors=True)
    running = None
    try:
        with open(result_path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        kind = event.get("event")
        if kind == "installed":
            run.installed = event["names"]
        elif kind == "start":
            running = event["id"]
        elif kind == "stop":
            running = None
        elif kind == "outcome":
            tid, outcome = event["id"], event["outcome"]
            if RANK[outcome] >= RANK.get(run.outcomes.get(tid), -1):
                run.outcomes[tid] = outcome
                if event.get("detail"):
                    run.details[tid] = event["detail"]
        elif kind == "unused_skip":
            run.unused_skips.append(event["id"])
        elif kind == "done":
            run.finished = True
    if not run.finished and not run.problem:
        run.problem = f"child exited with status {rc} before the end"
    if not run.finished and running is not None:
        run.outcomes[running] = "error"
        run.details[running] = f"{run.problem} while this test ran (see {log_path})"
    return run


def _plain_test_id(tid):
    # module.Class.method; not a fixture's error ("setUpClass (...)") nor
    # a module that failed to import.
    return " " not in tid and tid.count(".") >= 2


def rerun_ids(run):
    """The ids the baseline must run after this ptsevent run: those that did
    not pass; None (the whole module) when the run was cut short or failed
    outside a test, which the baseline can only tell by running it all."""
    if not run.finished:
        return None
    ids = [tid for tid, outcome in run.outcomes.items()
           if outcome not in ("passed", "xfail")]
    if not all(_plain_test_id(tid) for tid in ids):
        return None
    return ids


def run_module(module, opts, skips, log_dir):
    """The module's runs, one after the other: [baseline] with --baseline,
    else [ptsevent, baseline of what did not pass]."""
    if opts.baseline:
        return [run_child(module, "baseline", opts, skips, log_dir)]
    mine = run_child(module, "ptsevent", opts, skips, log_dir)
    only = None if opts.full_baseline else rerun_ids(mine)
    if only is not None and not only:
        base = ModuleRun(module, "baseline", finished=True)  # nothing to rerun
    else:
        base = run_child(module, "baseline", opts, skips, log_dir, only)
    return [mine, base]


def beyond_baseline(base, run):
    """(skipped, regressed): ids that passed in the baseline and did not here.

    A failure under an id the finished baseline never reported (an import,
    a setUpClass or setUpModule) is a regression too."""
    skipped, regressed = [], []
    for tid, outcome in sorted(run.outcomes.items()):
        before = base.outcomes.get(tid)
        if before is None and base.finished and outcome in ("failed", "error"):
            regressed.append(tid)
            continue
        if before not in ("passed", "xfail"):
            continue
        if outcome == "skipped":
            skipped.append(tid)
        elif outcome in ("failed", "error"):
            regressed.append(tid)
    return skipped, regressed


def _table(rows, headers):
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows])
              for i, h in enumerate(headers)]

    def fmt(cells):
        return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [fmt(headers), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


def report(runs, modules, baseline_only, out=sys.stdout, full_baseline=True):
    """Print the per-module table and the details; return the exit status."""
    headers = ["module", "run", "tests", "passed", "skipped", "failed", "errors",
               "skipped+", "failed+", "time"]
    rows = []
    status = 0
    notes = []
    for module in modules:
        base = runs.get((module, "baseline"))
        mine = runs.get((module, "ptsevent"))
        for run in (mine, base):
            if run is None:
                continue
            extra_skip = extra_fail = "-"
            if run is mine and base is not None:
                skipped, regressed = beyond_baseline(base, run)
                extra_skip, extra_fail = len(skipped), len(regressed)
                if regressed:
                    status = 1
                for tid in regressed:
                    notes.append(f"REGRESSION {tid} ({run.outcomes[tid]}; passes unpatched):")
                    notes += ["    " + line for line in
                              _summary(run.details.get(tid, "")).splitlines()]
                for tid in skipped:
                    notes.append(f"skipped beyond baseline {tid}: "
                                 f"{run.details.get(tid, '')}")
            if run.problem:
                notes.append(f"{run.module} ({run.mode}): {run.problem}; log {run.log}; "
                             "its last lines:")
                notes += ["    " + line for line in _log_tail(run.log).splitlines()]
                if run is mine or baseline_only:
                    status = 1
            for tid in run.unused_skips:
                notes.append(f"{run.module}: skip entry {tid!r} matched no test")
            rows.append([
                module, run.mode + ("" if run.finished else " (cut)"),
                len(run.outcomes), run.count("passed"), run.count("skipped"),
                run.count("failed"), run.count("error"), extra_skip, extra_fail,
                f"{run.seconds:.1f} s",
            ])
    for line in _table(rows, headers):
        print(line, file=out)
    installed = sorted({name for (m, mode), run in runs.items()
                        if mode == "ptsevent" for name in run.installed})
    if installed:
        print("installed for the ptsevent runs: " + ", ".join(installed), file=out)
    print("skipped+ / failed+: tests that pass unpatched but are skipped / fail "
          "with ptsevent", file=out)
    if not baseline_only and not full_baseline:
        print("baseline: only the tests that did not pass with ptsevent "
              "(--full-baseline runs them all)", file=out)
    for note in notes:
        print(note, file=out)
    return status


def _log_tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(cannot read the log: {exc})"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _summary(detail, lines=12):
    """The end of a traceback: where it failed and the exception."""
    text = detail.rstrip().splitlines()
    return "\n".join(text[-lines:])


def parse_skip(text):
    tid, sep, why = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(
            f"--skip {text!r}: give the reason as ID=REASON")
    try:
        return Skip(tid.strip(), why.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m ptsevent.testing.stdlib",
        description="Run CPython's test modules unpatched and with ptsevent's "
        "modules installed; compare.")
    p.add_argument("modules", nargs="+", metavar="MODULE",
                   help="test_ssl, ... (from the `test` package), or any importable "
                   "module of unittest tests")
    p.add_argument("--baseline", action="store_true",
                   help="only the unpatched run, of every test")
    p.add_argument("--full-baseline", action="store_true",
                   help="the unpatched run runs every test; by default it "
                   "reruns only the tests that did not pass with ptsevent (a "
                   "test that passes with ptsevent needs no baseline), or the "
                   "whole module when the ptsevent run was cut short or "
                   "failed outside a test")
    p.add_argument("-k", dest="filter", action="append", metavar="PATTERN",
                   help="only tests whose id matches (as unittest -k); repeatable")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="seconds per module and run (default %(default)g)")
    p.add_argument("-j", "--jobs", type=int, default=2,
                   help="children at a time (default %(default)d)")
    p.add_argument("--use", default=",".join(DEFAULT_RESOURCES),
                   help="test resources to enable (default %(default)s)")
    p.add_argument("--install", default=None,
                   help="areas to install, comma-separated "
                   f"({', '.join(INSTALLERS)}; default per module)")
    p.add_argument("--skip", action="append", type=parse_skip, default=[],
                   metavar="ID=REASON", help="one more skip entry; repeatable")
    p.add_argument("--no-skips", action="store_true",
                   help="ignore the built-in skip list")
    p.add_argument("--json", metavar="FILE", help="write every outcome here")
    p.add_argument("--keep-logs", metavar="DIR",
                   help="keep the children's logs in DIR")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="support.verbose in the children (their logs)")
    # Internal: child mode.
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--skips", default="[]", help=argparse.SUPPRESS)
    p.add_argument("--only", help=argparse.SUPPRESS)
    return p


def main(argv=None):
    opts = build_parser().parse_args(argv)
    if opts.child:
        opts.module = opts.modules[0]
        return _child_main(opts)
    if opts.install:
        for area in opts.install.split(","):
            if area not in INSTALLERS:
                print(f"unknown area {area!r}; known: {', '.join(INSTALLERS)}",
                      file=sys.stderr)
                return 2
    skips = ([] if opts.no_skips else list(SKIPS)) + opts.skip
    log_dir = opts.keep_logs or tempfile.mkdtemp(prefix="ptsevent-stdlib-")
    os.makedirs(log_dir, exist_ok=True)
    modes = ("baseline",) if opts.baseline else ("ptsevent", "baseline")
    print(f"running {len(opts.modules)} module(s) x {' then '.join(modes)}, "
          f"{opts.jobs} module(s) at a time, {opts.timeout:g} s limit each; "
          f"logs in {log_dir}", flush=True)
    runs = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, opts.jobs)) as pool:
        futures = [pool.submit(run_module, m, opts, skips, log_dir)
                   for m in opts.modules]
        for fut in concurrent.futures.as_completed(futures):
            for run in fut.result():
                runs[(run.module, run.mode)] = run
                print(f"  {run.module} ({run.mode}): {len(run.outcomes)} tests "
                      f"in {run.seconds:.1f} s"
                      f"{'; ' + run.problem if run.problem else ''}", flush=True)
    status = report(runs, opts.modules, opts.baseline,
                    full_baseline=opts.full_baseline)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"status": status,
                       "skips": [dataclasses.asdict(s) for s in skips],
                       "runs": [r.as_json() for r in runs.values()]}, f, indent=1)
    if not opts.keep_logs and status == 0:
        shutil.rmtree(log_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

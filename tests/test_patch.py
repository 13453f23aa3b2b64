"""ptsevent.patch: the registry, patch_all, each area, and ptsevent's own
internals under patching. Every patching test runs in an interpreter of its
own (tests/_patched.py); the selector tests without patching run here."""

import os
import selectors
import socket
import threading
import time
from textwrap import dedent

import pytest

import ptsevent
from ptsevent import select as pselect
from _patched import run_json, run_snippet


# -- the registry and patch_all ------------------------------------------------


def test_is_patched_and_original_follow_each_replacement():
    out = run_json("""
        import json, socket, _socket, subprocess, time, warnings
        warnings.simplefilter("ignore")
        import ptsevent.patch as P
        before = [P.is_patched("time", "sleep"), P.original("time", "sleep") is time.sleep]
        std_sleep, std_socket, std_wait = time.sleep, socket.socket, subprocess.Popen._wait
        import select, selectors
        std_epoll = select.epoll
        P.patch_all()
        print(json.dumps({
            "before": before,
            "sleep": [P.is_patched("time", "sleep"), time.sleep is not std_sleep,
                      P.original("time", "sleep") is std_sleep,
                      P.original(time, "sleep") is std_sleep],
            "socket": [P.is_patched("socket", "socket"),
                       P.original("socket", "socket") is std_socket,
                       socket.socket.__module__],
            "popen": [P.is_patched("subprocess", "Popen._wait"),
                      P.original("subprocess", "Popen._wait") is std_wait,
                      subprocess.Popen._wait is not std_wait],
            "epoll": [P.original("select", "epoll") is std_epoll,
                      P.original("selectors", "EpollSelector._selector_cls") is std_epoll,
                      selectors.EpollSelector._selector_cls is select.epoll,
                      select.epoll is not std_epoll],
            "stage2": [P.is_patched("threading", "Thread"),
                       P.is_patched("queue", "Queue"),
                       P.is_patched("signal", "signal"),
                       P.is_patched("os", "read"), P.is_patched("os", "write")],
            "names": len(P.patched_names()),
        }))
    """)
    assert out["before"] == [False, True]
    assert out["sleep"] == [True, True, True, True]
    assert out["socket"] == [True, True, "ptsevent.socket"]
    assert out["popen"] == [True, True, True]
    assert out["epoll"] == [True, True, True, True]
    assert out["stage2"] == [False, False, True, False, False]
    assert out["names"] >= 20


def test_patch_all_again_changes_nothing_and_says_nothing():
    out = run_json("""
        import json, time, warnings
        import ptsevent.patch as P
        with warnings.catch_warnings(record=True) as first:
            warnings.simplefilter("always")
            P.patch_all()
        sleep, names = time.sleep, P.patched_names()
        with warnings.catch_warnings(record=True) as again:
            warnings.simplefilter("always")
            P.patch_all()
            P.patch_time()
            P.patch_select()
        print(json.dumps({"same": time.sleep is sleep and P.patched_names() == names,
                          "first": [str(w.message) for w in first],
                          "again": [str(w.message) for w in again]}))
    """)
    assert out == {"same": True, "first": [], "again": []}


def test_patch_all_with_other_arguments_warns_once_naming_the_difference():
    out = run_json("""
        import json, socket, time, warnings
        import ptsevent.patch as P
        warnings.simplefilter("always")
        P.patch_all(dns=False, time=False)
        first = [P.is_patched("socket", "getaddrinfo"), P.is_patched("time", "sleep")]
        with warnings.catch_warnings(record=True) as grow:
            warnings.simplefilter("always")
            P.patch_all(time=False)
        with warnings.catch_warnings(record=True) as same:
            warnings.simplefilter("always")
            P.patch_all(time=False)
        with warnings.catch_warnings(record=True) as shrink:
            warnings.simplefilter("always")
            P.patch_all(socket=False, time=False)
        print(json.dumps({
            "first": first,
            "grow": [(w.category.__name__, str(w.message)) for w in grow],
            "dns_now": P.is_patched("socket", "getaddrinfo"),
            "same": len(same),
            "shrink": [str(w.message) for w in shrink],
            "socket_still": P.is_patched("socket", "socket"),
        }))
    """)
    assert out["first"] == [False, False]
    assert len(out["grow"]) == 1
    category, message = out["grow"][0]
    assert category == "PatchWarning"
    assert "dns=True (before: False)" in message and "time" not in message
    assert out["dns_now"] is True
    assert out["same"] == 0
    assert len(out["shrink"]) == 1 and "socket=False (before: True)" in out["shrink"][0]
    assert out["socket_still"] is True


def test_patching_socket_without_ssl_warns_that_tls_blocks():
    out = run_json("""
        import json, warnings
        import ptsevent.patch as P
        def caught(fn, **kwargs):
            with warnings.catch_warnings(record=True) as got:
                warnings.simplefilter("always")
                fn(**kwargs)
            return [(w.category.__name__, str(w.message)) for w in got]
        out = {"other": caught(P.patch_time) + caught(P.patch_select) + caught(P.patch_os),
               "socket": caught(P.patch_socket),
               "again": caught(P.patch_socket)}
        print(json.dumps(out))
    """)
    assert out["other"] == [] and out["again"] == []  # said once
    assert len(out["socket"]) == 1
    category, message = out["socket"][0]
    assert category == "PatchWarning" and "ssl is not" in message
    assert "patch_ssl()" in message


def test_patch_all_patches_ssl_in_place_and_warns_only_without_it():
    out = run_json("""
        import json, ssl, warnings
        before = ssl.create_default_context()
        std_class, std_socket_class = ssl.SSLContext, ssl.SSLContext.sslsocket_class
        import ptsevent.patch as P, ptsevent.ssl
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            P.patch_all()
        after = ssl.create_default_context()
        for ctx in (before, after):
            ctx.options |= ssl.OP_NO_TICKET  # the class and its properties intact
        print(json.dumps({
            "warnings": [str(w.message) for w in got],
            "class_kept": ssl.SSLContext is std_class and type(before) is std_class,
            "socket_class": [c.sslsocket_class is ptsevent.ssl.SSLSocket for c in (before, after)],
            "original": P.original("ssl", "SSLContext.sslsocket_class") is std_socket_class,
            "subclass": issubclass(ptsevent.ssl.SSLSocket, ssl.SSLSocket),
        }))
    """)
    assert out == {"warnings": [], "class_kept": True, "socket_class": [True, True],
                   "original": True, "subclass": True}
    without = run_snippet("""
        import warnings
        import ptsevent.patch as P
        warnings.simplefilter("always")
        P.patch_all(ssl=False)
    """)
    assert without.stderr.count("PatchWarning") == 1 and "ssl is not" in without.stderr


def test_socket_type_stays_the_c_type_and_socket_becomes_ptsevents():
    out = run_json("""
        import json, warnings
        warnings.simplefilter("ignore")
        import ptsevent.patch; ptsevent.patch.patch_all()
        import socket, _socket, ptsevent.socket as ps
        a, b = socket.socketpair()
        s = socket.socket()
        print(json.dumps([socket.SocketType is _socket.socket,
                          socket.socket is ps.socket, type(a) is ps.socket,
                          type(s) is ps.socket, s.gettimeout()]))
        s.close(); a.close(); b.close()
    """)
    assert out == [True, True, True, True, None]


# -- ptsevent's internals keep the originals -----------------------------------

# What a later patch_thread/patch_queue will do to these modules, done by
# hand: Thread, start_new_thread, the locks and the queues become tasklet
# based. A thread pool that looked them up would run its jobs in the hub's
# own thread (or never).
STAND_INS = """
import _thread, queue, threading, ptsevent, ptsevent.queue
class TaskletThread:
    def __init__(self, target=None, args=(), kwargs=None, daemon=None, name=None):
        self._run = (target, args, kwargs or {})
    def start(self):
        target, args, kwargs = self._run
        ptsevent.spawn(target, *args, **kwargs)
threading.Thread = TaskletThread
_thread.start_new_thread = threading._start_new_thread = (
    lambda fn, args, kwargs={}: ptsevent.spawn(fn, *args, **kwargs) and 0)
threading.Lock = _thread.allocate_lock = ptsevent.Lock
queue.SimpleQueue = ptsevent.queue.Queue
"""


def test_run_in_thread_uses_os_threads_when_threading_is_cooperative():
    out = run_json(dedent("""
        import json, os, threading, warnings
        warnings.simplefilter("ignore")
        import ptsevent, ptsevent.patch
        ptsevent.patch.patch_all()
    """) + STAND_INS + dedent("""
        main = threading.get_native_id()
        parent = ptsevent.run_in_thread(threading.get_native_id) != main
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            child_main = threading.get_native_id()
            ok = ptsevent.run_in_thread(threading.get_native_id) != child_main
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
        os.close(w)
        child = os.read(r, 1)
        os.waitpid(pid, 0)
        print(json.dumps({"parent": parent, "child": child.decode()}))
    """), timeout=20)
    assert out == {"parent": True, "child": "1"}


def test_internal_resolvers_and_socketpair_do_not_call_themselves():
    # ptsevent.socket's functions call the standard ones; once patching
    # has put them in `socket`, a call-time lookup would recurse.
    out = run_json("""
        import json, warnings
        warnings.simplefilter("ignore")
        import ptsevent.patch; ptsevent.patch.patch_all()
        import socket
        a, b = socket.socketpair()
        a.sendall(b"x")
        srv = socket.create_server(("127.0.0.1", 0))
        c = socket.create_connection(srv.getsockname(), timeout=5)
        print(json.dumps({
            "pair": b.recv(1).decode(),
            "server": type(srv).__module__,
            "addrinfo": sorted({ai[4][0] for ai in
                                socket.getaddrinfo("localhost", 80, socket.AF_INET)}),
            "byname": socket.gethostbyname("localhost"),
            "ex": socket.gethostbyname_ex("localhost")[2],
            "nameinfo": socket.getnameinfo(("127.0.0.1", 80),
                                           socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
            "fqdn": bool(socket.getfqdn("localhost")),
            "pool": ptsevent.hub_stats()["thread_jobs"],
        }))
        for s in (a, b, c, srv): s.close()
    """)
    assert out["pair"] == "x"
    assert out["server"] == "ptsevent.socket"
    assert out["addrinfo"] == ["127.0.0.1"]
    assert out["byname"] == "127.0.0.1" and out["ex"] == ["127.0.0.1"]
    assert out["nameinfo"] == ["127.0.0.1", "80"]
    assert out["fqdn"] is True and out["pool"] == 0


# -- time, os ------------------------------------------------------------------


def test_time_sleep_suspends_only_the_tasklet_and_keeps_its_errors():
    out = run_json("""
        import json, threading, time, warnings
        warnings.simplefilter("ignore")
        import ptsevent, ptsevent.patch; ptsevent.patch.patch_all()
        t0 = time.monotonic()
        ptsevent.joinall([ptsevent.spawn(time.sleep, 0.2) for _ in range(20)])
        together = time.monotonic() - t0
        errors = []
        for bad in (-1, "x"):
            try:
                time.sleep(bad)
            except (ValueError, TypeError) as e:
                errors.append(type(e).__name__)
        th = threading.Thread(target=time.sleep, args=(0.05,)); th.start(); th.join()
        print(json.dumps({"together": together, "errors": errors}))
    """)
    assert out["together"] < 1.0, out  # 20 x 0.2 s in a row would be 4 s
    assert out["errors"] == ["ValueError", "TypeError"]


def test_waitpid_lets_other_tasklets_run_and_installs_no_sigchld_handler():
    out = run_json("""
        import json, os, signal, time, warnings
        warnings.simplefilter("ignore")
        import ptsevent, ptsevent.patch; ptsevent.patch.patch_all()
        ticks = []
        def ticker():
            while True:
                ticks.append(time.monotonic()); ptsevent.sleep(0.01)
        t = ptsevent.spawn(ticker)
        results = {}
        for name in ("waitpid", "wait4"):
            pid = os.fork()
            if pid == 0:
                time.sleep(0.3); os._exit(7)
            del ticks[:]
            res = getattr(os, name)(pid, 0)
            results[name] = [res[0] == pid, os.waitstatus_to_exitcode(res[1]), len(ticks)]
        pid = os.fork()
        if pid == 0:
            os._exit(3)
        results["wait"] = os.wait()[0] == pid
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            results["echild"] = True
        t.kill()
        results["sigchld"] = signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
        results["read_patched"] = ptsevent.patch.is_patched("os", "read")
        print(json.dumps(results))
    """)
    for name in ("waitpid", "wait4"):
        same_pid, code, ticks = out[name]
        assert same_pid and code == 7
        assert ticks >= 10, out  # the ticker ran while the parent waited 0.3 s
    assert out["wait"] is True and out["echild"] is True
    assert out["sigchld"] is True and out["read_patched"] is False


def test_os_read_keeps_raising_blocking_io_error_on_non_blocking_descriptors():
    out = run_json("""
        import json, os, warnings
        warnings.simplefilter("ignore")
        import ptsevent.patch; ptsevent.patch.patch_all()
        r, w = os.pipe(); os.set_blocking(r, False)
        try:
            os.read(r, 1); what = "read"
        except BlockingIOError:
            what = "BlockingIOError"
        print(json.dumps(what))
    """)
    assert out == "BlockingIOError"


# -- select and selectors ------------------------------------------------------


def register_later(by, sel, sock):
    if by == "tasklet":
        ptsevent.spawn_later(0.05, sel.register, sock, selectors.EVENT_READ, by)
        return None
    th = threading.Timer(0.05, sel.register, (sock, selectors.EVENT_READ, by))
    th.start()
    return th


@pytest.mark.parametrize("by", ["tasklet", "os thread"])
def test_selector_sees_a_registration_made_while_it_waits(by, socketpair):
    a, b = socketpair
    b.send(b"ready")  # a is readable before anyone registers it
    with pselect.DefaultSelector() as sel:
        th = register_later(by, sel, a)
        t0 = time.monotonic()
        ready = sel.select(5)
        took = time.monotonic() - t0
        if th is not None:
            th.join()
    assert [(key.data, ev) for key, ev in ready] == [(by, selectors.EVENT_READ)]
    assert took < 1.0


def test_selector_sees_a_modify_made_while_it_waits():
    a, b = socket.socketpair()
    try:
        with pselect.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ)  # nothing to read
            ptsevent.spawn_later(0.05, sel.modify, a, selectors.EVENT_WRITE)
            t0 = time.monotonic()
            ready = sel.select(5)
            assert [ev for _, ev in ready] == [selectors.EVENT_WRITE]
            assert time.monotonic() - t0 < 1.0
    finally:
        a.close()
        b.close()


def test_epoll_poll_times_out_and_closes_its_registration():
    ep = pselect.epoll()
    r, w = os.pipe()
    try:
        ep.register(r, pselect.POLLIN)
        t0 = time.monotonic()
        assert ep.poll(0.05) == []
        assert 0.04 < time.monotonic() - t0 < 1.0
        os.write(w, b"x")
        assert ep.poll(None) == [(r, pselect.POLLIN)]
    finally:
        ep.close()
        os.close(r)
        os.close(w)
    assert ep.closed


def test_selectors_patched_in_place_wait_cooperatively():
    # Selector classes bound before patching (as socketserver, subprocess
    # and multiprocessing.connection bind PollSelector at import) and the
    # select module's functions all let a ticker run while they wait, and
    # so do selector objects made (and registered with) before patching.
    out = run_json("""
        import json, os, selectors, time, warnings
        BoundEarly = selectors.PollSelector
        r, w = os.pipe()
        early = {"early " + c.__name__: c() for c in (
            selectors.PollSelector, selectors.EpollSelector, selectors.SelectSelector)}
        for sel in early.values():
            sel.register(r, selectors.EVENT_READ, "early")
        warnings.simplefilter("ignore")
        import ptsevent, ptsevent.patch; ptsevent.patch.patch_all()
        import select
        ticks = []
        def ticker():
            while True:
                ticks.append(1); ptsevent.sleep(0.01)
        t = ptsevent.spawn(ticker)
        def waits(kind):
            if kind == "select":
                return select.select([r], [], [], 0.2)
            if kind == "poll":
                p = select.poll(); p.register(r, select.POLLIN); return p.poll(200)
            if kind == "epoll":
                with select.epoll() as p:
                    p.register(r, select.EPOLLIN); return p.poll(0.2)
            if kind in early:
                return early[kind].select(0.2)
            cls = BoundEarly if kind == "PollSelector" else getattr(selectors, kind)
            with cls() as sel:
                sel.register(r, selectors.EVENT_READ); return sel.select(0.2)
        out = {}
        for kind in ("select", "poll", "epoll", "PollSelector",
                     "SelectSelector", "EpollSelector", "DefaultSelector",
                     *early):
            del ticks[:]
            waits(kind)
            out[kind] = len(ticks)
        os.write(w, b"x")
        with selectors.PollSelector() as sel:
            sel.register(r, selectors.EVENT_READ, "d")
            out["ready"] = [k.data for k, ev in sel.select(1)]
        for kind, sel in early.items():
            out["ready " + kind] = [k.data for k, ev in sel.select(1)]
            sel.close()
        t.kill()
        print(json.dumps(out))
    """)
    assert out.pop("ready") == ["d"]
    for kind in ("PollSelector", "EpollSelector", "SelectSelector"):
        assert out.pop("ready early " + kind) == ["early"]
    for kind, ticks in out.items():
        assert ticks >= 10, (kind, out)  # 0.2 s of 10 ms ticks


def test_epoll_closed_while_a_tasklet_waits_ends_that_wait_empty(socketpair):
    a, _ = socketpair
    sel = pselect.DefaultSelector()
    sel.register(a, selectors.EVENT_READ)
    waiter = ptsevent.spawn(sel.select, 5)
    ptsevent.sleep(0.02)
    t0 = time.monotonic()
    sel.close()
    waiter.join(2)
    assert waiter.dead and waiter.exception is None and waiter.value == []
    assert time.monotonic() - t0 < 1.0

"""Late patching: what was imported or made before patch_all() is found,
reported once (LatePatchWarning) naming each module and attribute, and
repaired where that is safe; C-level I/O modules are reported when imported.
The modules are real files written to a temporary directory; each test runs
in an interpreter of its own."""

import textwrap

from _patched import run_json

LATEMOD = '''
import queue, socket, threading, time
from socket import socket, create_connection
from time import sleep
from time import sleep as _sleep
from threading import Lock, local   # Lock is _thread.allocate_lock too
real_sleep = time.sleep          # kept on purpose under another name
LOCK = threading.Lock()
RLOCK = threading.RLock()
Q = queue.Queue()

class Client:
    QueueCls = queue.LifoQueue   # cooperative: the class changes in place
    SockCls = socket
    pause = staticmethod(sleep)
    lock_class = Lock
    lock = threading.Lock()

class MySock(socket):
    pass
'''

# What every test's snippet prints: the warnings, by category.
REPORT = """
def report(caught):
    return [[w.category.__name__, str(w.message)] for w in caught]
"""


def _write(tmp_path, name, source):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))


def test_module_and_class_references_reported_once_and_rebound(tmp_path):
    _write(tmp_path, "latemod", LATEMOD)
    out = run_json(REPORT + """
import json, sys, warnings
sys.path.insert(0, sys.argv[1])
import latemod, threading
old_lock = latemod.LOCK
stop = threading.Event()
early = threading.Thread(target=stop.wait, name="early-worker")
early.start()
import ptsevent.patch as P
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    P.patch_all()
import socket, threading, time, ptsevent
t0 = time.monotonic()
ptsevent.spawn(latemod.Client.pause, 0.1)
latemod.sleep(0.1)              # cooperative: overlaps the tasklet's
both = time.monotonic() - t0
stop.set()
early.join()
q = latemod.Client.QueueCls()
ptsevent.spawn_later(0.05, q.put, "x")
print(json.dumps({
    "warnings": report(caught),
    "rebound": [latemod.socket is socket.socket,
                latemod.create_connection is socket.create_connection,
                latemod.sleep is time.sleep, latemod._sleep is time.sleep,
                latemod.Client.SockCls is socket.socket,
                latemod.Client.pause is time.sleep,
                latemod.Lock is threading.Lock, latemod.local is threading.local,
                type(latemod.Client.lock_class()) is type(threading.Lock())],
    "kept": [latemod.real_sleep is P.original("time", "sleep"),
             latemod.LOCK is old_lock],
    "both": both, "queue": q.get(timeout=2),
}))
""", str(tmp_path))
    late = [m for c, m in out["warnings"] if c == "LatePatchWarning"]
    assert len(late) == 1, out["warnings"]
    msg = late[0]
    for name in ("latemod.socket was the blocking socket.socket",
                 "latemod.create_connection was the blocking "
                 "socket.create_connection",
                 "latemod.sleep was the blocking time.sleep",
                 "latemod._sleep was the blocking time.sleep",
                 "latemod.real_sleep holds the blocking time.sleep under "
                 "another name",
                 "latemod.Client.SockCls was the blocking socket.socket",
                 "latemod.Client.pause was the blocking time.sleep",
                 "latemod.Lock was the blocking threading.Lock",
                 "latemod.local was the blocking _thread._local",
                 "latemod.Client.lock_class was the blocking",
                 "latemod.MySock subclasses the blocking socket.socket",
                 "latemod.LOCK is a lock made before patching",
                 "latemod.RLOCK is a RLock made before patching",
                 "latemod.Q is a Queue made before patching",
                 "latemod.Client.lock is a lock made before patching",
                 "thread 'early-worker' (threading.Thread) was started "
                 "before patching: it stays an OS thread"):
        assert name in msg, (name, msg)
    assert "QueueCls" not in msg
    # the standard library's own references are not the program's doing
    assert "\n  ssl." not in msg and "\n  threading." not in msg
    assert out["rebound"] == [True] * 9
    assert out["kept"] == [True, True]
    assert out["both"] < 0.18, out
    assert out["queue"] == "x"


def test_a_second_patch_all_does_not_report_again(tmp_path):
    _write(tmp_path, "latemod", LATEMOD)
    out = run_json(REPORT + """
import json, sys, warnings
sys.path.insert(0, sys.argv[1])
import latemod
import ptsevent.patch as P
with warnings.catch_warnings(record=True) as first:
    warnings.simplefilter("always")
    P.patch_all()
with warnings.catch_warnings(record=True) as again:
    warnings.simplefilter("always")
    P.patch_all()
print(json.dumps({"first": len(report(first)), "again": report(again)}))
""", str(tmp_path))
    assert out == {"first": 1, "again": []}


def test_patching_first_reports_nothing(tmp_path):
    _write(tmp_path, "latemod", LATEMOD)
    out = run_json(REPORT + """
import json, sys, warnings
sys.path.insert(0, sys.argv[1])
import ptsevent.patch as P
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    P.patch_all()
    import latemod
    import requests, urllib.request, http.server, logging
import socket
print(json.dumps({"warnings": report(caught),
                  "sock": latemod.socket is socket.socket}))
""", str(tmp_path))
    assert out == {"warnings": [], "sock": True}


def test_standard_library_references_are_rebound_quietly():
    out = run_json(REPORT + """
import json, warnings, reprlib, functools, threading, _thread
import ptsevent.patch as P
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    P.patch_all()
import _socket, socket
print(json.dumps({
    "warnings": report(caught),
    "reprlib": reprlib.get_ident is _thread.get_ident,
    "c_modules_kept": _socket.gethostbyname is not socket.gethostbyname,
}))
""")
    assert out == {"warnings": [], "reprlib": True, "c_modules_kept": True}


def test_c_level_io_module_warned_at_patch_time_and_at_import(tmp_path):
    # A real module file named pylibmc (and one named grpc): importing it
    # is what the warning is about; the package itself is not needed.
    _write(tmp_path, "pylibmc", "VALUE = 1\n")
    (tmp_path / "grpc").mkdir()
    _write(tmp_path / "grpc", "__init__", "VALUE = 2\n")
    out = run_json(REPORT + """
import json, sys, warnings
sys.path.insert(0, sys.argv[1])
import ptsevent.patch as P
with warnings.catch_warnings(record=True) as at_patch:
    warnings.simplefilter("always")
    import grpc
    P.patch_all()
with warnings.catch_warnings(record=True) as at_import:
    warnings.simplefilter("always")
    import pylibmc
    import pylibmc  # once
    import json as _j  # others say nothing
print(json.dumps({"at_patch": report(at_patch),
                  "at_import": report(at_import),
                  "values": [grpc.VALUE, pylibmc.VALUE],
                  "subclass": issubclass(P.UnpatchableWarning,
                                         P.PatchWarning)}))
""", str(tmp_path))
    assert [c for c, _ in out["at_patch"]] == ["UnpatchableWarning"]
    assert "grpc is imported" in out["at_patch"][0][1]
    assert [c for c, _ in out["at_import"]] == ["UnpatchableWarning"]
    assert "pylibmc is imported" in out["at_import"][0][1]
    assert "blocks every tasklet" in out["at_import"][0][1]
    assert out["values"] == [2, 1]
    assert out["subclass"] is True

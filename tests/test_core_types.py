"""The types of ptsevent._core as Python objects: every instance holds a
reference to its (heap) type and gives it back when freed, objects that
hold Python objects take part in garbage collection, and every callable
has a signature inspect can read."""

import gc
import http.client
import inspect
import os
import socket
import sys
import weakref

import pytest

import ptsevent
from ptsevent import _core
from ptsevent.wsgi import WSGIServer


def _noop():
    pass


def _app(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture
def devnull():
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock
    finally:
        sock.close()


def make_server(sock, app=_app):
    return _core.HttpServer(
        sock, app, server_name="localhost", server_port="0",
        url_scheme="http", errors=sys.stderr, log_error=None,
        access_log=None, multiprocess=False)


# name -> factory(fixtures) of one instance, dropped right away.
FACTORIES = {
    "Tasklet": lambda fx: _core.Tasklet(_noop),
    "Timer": lambda fx: _core.Timer(),
    "Waiter": lambda fx: _core.Waiter(),
    "WaitQueue": lambda fx: _core.WaitQueue(),
    "Channel": lambda fx: _core.Channel(),
    "Lock": lambda fx: _core.Lock(),
    "RLock": lambda fx: _core.RLock(),
    "Semaphore": lambda fx: _core.Semaphore(),
    "BoundedSemaphore": lambda fx: _core.BoundedSemaphore(),
    "Event": lambda fx: _core.Event(),
    "Queue": lambda fx: _core.Queue(),
    "IoHandle": lambda fx: _core.IoHandle(fx["devnull"]),
    "BufferedIo": lambda fx: _core.BufferedIo(_core.IoHandle(fx["devnull"])),
    "FileWrapper": lambda fx: _core.FileWrapper(fx["file"]),
    "HttpServer": lambda fx: make_server(fx["listener"]),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_instances_give_their_type_reference_back(name, devnull, listener,
                                                  tmp_path):
    tp = getattr(_core, name)
    with open(tmp_path / "f", "wb+") as f:
        fx = {"devnull": devnull, "listener": listener, "file": f}
        FACTORIES[name](fx)  # warm up (caches, interned strings)
        gc.collect()
        before = sys.getrefcount(tp)
        for _ in range(1000):
            FACTORIES[name](fx)
        gc.collect()
        assert sys.getrefcount(tp) == before


def test_every_type_of_the_core_is_covered():
    types = {name for name, obj in vars(_core).items()
             if isinstance(obj, type) and not issubclass(obj, BaseException)}
    assert types == set(FACTORIES)


def _request_types():
    """The per-request types the server makes (wsgi.input, start_response),
    found through a request."""
    seen = {}

    def app(environ, start_response):
        seen["input"] = type(environ["wsgi.input"])
        seen["start_response"] = type(start_response)
        start_response("200 OK", [("Content-Length", "0")])
        return []

    srv = WSGIServer(("127.0.0.1", 0), app)
    srv.start()
    try:
        ptsevent.run_in_thread(_get, srv.server_port, 1)
    finally:
        srv.close()
    return seen["input"], seen["start_response"]


def _get(port, n, body=b""):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(n):
            conn.request("POST", "/", body=body)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
    finally:
        conn.close()


def test_requests_give_the_per_request_type_references_back():
    input_type, start_response_type = _request_types()
    assert input_type.__name__ == "Input"
    srv = WSGIServer(("127.0.0.1", 0), _app)
    srv.start()
    try:
        ptsevent.run_in_thread(_get, srv.server_port, 5, b"warm")
        gc.collect()
        before = (sys.getrefcount(input_type),
                  sys.getrefcount(start_response_type))
        ptsevent.run_in_thread(_get, srv.server_port, 500, b"body")
        gc.collect()
        after = (sys.getrefcount(input_type),
                 sys.getrefcount(start_response_type))
    finally:
        srv.close()
    assert after == before


def test_server_and_app_in_a_cycle_are_collected():
    class App:
        def __call__(self, environ, start_response):
            start_response("200 OK", [("Content-Length", "0")])
            return []

    app = App()
    srv = WSGIServer(("127.0.0.1", 0), app)
    app.server = srv  # app -> WSGIServer -> HttpServer -> app
    app.core = srv._core
    srv.start()
    ptsevent.run_in_thread(_get, srv.server_port, 2)
    srv.close()
    ref = weakref.ref(app)
    core_ref = weakref.ref(srv._core) if _supports_weakref(srv._core) else None
    del app, srv
    gc.collect()
    assert ref() is None
    if core_ref is not None:
        assert core_ref() is None


def test_a_closure_app_holding_its_core_server_is_collected(listener):
    holder = {}

    def app(environ, start_response):  # pragma: no cover (never called)
        # `del holder` below empties this cell only after the cycle is made.
        return holder["srv"]  # noqa: F821

    srv = make_server(listener, app)
    holder["srv"] = srv  # HttpServer -> app -> closure cell -> dict -> srv
    ref = weakref.ref(app)
    assert gc.is_tracked(srv)
    del app, srv, holder
    gc.collect()
    assert ref() is None


def _supports_weakref(obj):
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


# ------------------------------------------------------------- signatures

def _core_callables():
    """(qualified name, callable) for every function of _core, every type
    (its constructor) and every method its types define."""
    out = []
    for name, obj in sorted(vars(_core).items()):
        if name.startswith("__"):
            continue
        if isinstance(obj, type):
            if issubclass(obj, BaseException):
                continue  # the standard exception constructors
            out.append((name, obj))
            for attr, value in sorted(vars(obj).items()):
                if attr.startswith("__") and attr not in (
                        "__enter__", "__exit__", "__class_getitem__"):
                    continue  # slot wrappers: CPython writes their signatures
                if callable(value) or isinstance(value, classmethod):
                    out.append((f"{name}.{attr}", getattr(obj, attr)))
        elif callable(obj):
            out.append((name, obj))
    return out


@pytest.mark.parametrize("name, obj", _core_callables(),
                         ids=[n for n, _ in _core_callables()])
def test_inspect_reads_the_signature_of_every_core_callable(name, obj):
    inspect.signature(obj)


def test_signatures_match_how_the_functions_are_called():
    t = ptsevent.spawn(ptsevent.sleep, 10)
    assert list(inspect.signature(t.kill).parameters) == [
        "exception", "block", "timeout"]
    t.kill(None)  # the default exception, as the signature says
    assert t.dead and t.successful()
    assert str(inspect.signature(ptsevent.sleep)) == "(seconds=0)"
    assert str(inspect.signature(ptsevent.spawn)) == "(fn, /, *args, **kwargs)"
    assert str(inspect.signature(_core.Queue().put)) == (
        "(item, block=True, timeout=None)")
    assert str(inspect.signature(_core.Tasklet)) == "(run, /, *args, **kwargs)"


@pytest.mark.parametrize("name", ["sleep", "spawn", "spawn_later",
                                  "getcurrent", "wait_read", "wait_write",
                                  "hub_stats", "Tasklet"])
def test_the_reexported_core_functions_have_signatures(name):
    assert getattr(ptsevent, name) is getattr(_core, name)
    inspect.signature(getattr(ptsevent, name))

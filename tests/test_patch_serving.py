"""The serving side patches by default (python -m ptsevent.wsgi, the
gunicorn worker), with --no-patch / PTSEVENT_NO_PATCH=1 to switch it off;
and the blocked-hub warning when an unpatched app call holds the hub.
Real processes, real clients on loopback."""

import re
import time
import urllib.request

import pytest

import ptsevent.patch
from support import Served, made_then_closed, serve_cli, serve_gunicorn

FLASK_APP = '''
import threading, time
from flask import Flask

app = Flask(__name__)
local = threading.local()

@app.route("/sleep")
def sleep():
    time.sleep(float(__import__("flask").request.args.get("s", "1")))
    return "slept"

@app.route("/local/<int:n>")
def mine(n):
    local.value = n
    time.sleep(0.2)          # the other requests run meanwhile
    return str(local.value)
'''

PLAIN_APP = '''
import time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(1.5)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''

BANNER = re.compile(rb"serving \S+ on http://\S+:(\d+)/")


@pytest.fixture
def served():
    """served(Served) -> it; each is stopped after the test."""
    with made_then_closed(lambda s: s, close=Served.stop) as track:
        yield track


def test_cli_patches_so_five_flask_views_sleeping_1s_take_about_1s(tmp_path, served):
    pytest.importorskip("flask")
    srv = served(serve_cli(tmp_path, FLASK_APP, "fapp:app"))
    bodies, took = srv.get_all(["/sleep?s=1"] * 5)
    assert bodies == ["slept"] * 5
    assert took < 2.0, took


def test_no_patch_serves_them_one_after_the_other(tmp_path, served):
    pytest.importorskip("flask")
    srv = served(serve_cli(tmp_path, FLASK_APP, "fapp:app", "--no-patch",
                     "--blocked-warning", "0"))
    bodies, took = srv.get_all(["/sleep?s=0.4"] * 5)
    assert bodies == ["slept"] * 5
    assert took >= 1.9, took


def test_the_environment_switches_patching_off_too(tmp_path, served):
    pytest.importorskip("flask")
    srv = served(serve_cli(tmp_path, FLASK_APP, "fapp:app",
                     env={"PTSEVENT_NO_PATCH": "1", "PTSEVENT_BLOCKED_WARNING": "0"}))
    _, took = srv.get_all(["/sleep?s=0.4"] * 5)
    assert took >= 1.9, took


@pytest.mark.xfail(not hasattr(ptsevent.patch, "patch_thread"), strict=True,
                   reason="needs patch_thread")
def test_a_threading_local_is_not_shared_by_concurrent_requests(tmp_path, served):
    pytest.importorskip("flask")
    srv = served(serve_cli(tmp_path, FLASK_APP, "fapp:app"))
    bodies, took = srv.get_all([f"/local/{n}" for n in range(20)])
    assert bodies == [str(n) for n in range(20)]
    assert took < 2.0, took


def test_the_gunicorn_worker_patches_unless_told_not_to(tmp_path, served):
    pytest.importorskip("flask")
    srv = served(serve_gunicorn(tmp_path, FLASK_APP, "fapp:app"))
    _, took = srv.get_all(["/sleep?s=0.5"] * 5)
    assert took < 1.5, took
    srv.stop()
    srv = served(serve_gunicorn(tmp_path, FLASK_APP, "fapp:app",
                          env={"PTSEVENT_NO_PATCH": "1"}))
    _, took = srv.get_all(["/sleep?s=0.5"] * 5)
    assert took >= 2.4, took


# -- the blocked-hub warning ---------------------------------------------------


def warnings_in(output):
    return [line for line in output.splitlines() if "held the hub" in line]


def test_an_unpatched_blocking_app_call_warns_once_naming_route_and_line(
        tmp_path, served):
    srv = served(serve_cli(tmp_path, PLAIN_APP, "papp:app", "--no-patch"))
    assert srv.get("/fast") == "ok"
    # Two slow requests one after the other, the second with a query:
    # the same route, one warning; a fast request meanwhile waits.
    bodies, took = srv.get_all(["/slow", "/slow?again=1", "/fast"])
    assert bodies == ["ok"] * 3 and took >= 2.9
    out = srv.stop()
    found = warnings_in(out)
    assert len(found) == 1, out
    line = PLAIN_APP.splitlines().index("        time.sleep(1.5)") + 1
    assert "GET /slow" in found[0]
    assert f"papp.py:{line} app" in found[0], found[0]


def test_the_same_app_patched_or_fast_does_not_warn(tmp_path, served):
    srv = served(serve_cli(tmp_path, PLAIN_APP, "papp:app"))
    bodies, took = srv.get_all(["/slow", "/slow", "/fast"])
    assert bodies == ["ok"] * 3 and took < 2.5
    out = srv.stop()
    assert warnings_in(out) == [], out
    srv = served(serve_cli(tmp_path, PLAIN_APP, "papp:app", "--no-patch"))
    for _ in range(20):
        srv.get("/fast")
    out = srv.stop()
    assert warnings_in(out) == [], out


def test_the_threshold_is_an_option_and_zero_disables_it(tmp_path, served):
    srv = served(serve_cli(tmp_path, PLAIN_APP, "papp:app", "--no-patch",
                     "--blocked-warning", "0"))
    srv.get("/slow")
    out = srv.stop()
    assert warnings_in(out) == [], out
    srv = served(serve_cli(tmp_path, PLAIN_APP, "papp:app", "--no-patch",
                     env={"PTSEVENT_BLOCKED_WARNING": "5"}))
    srv.get("/slow")
    out = srv.stop()
    assert warnings_in(out) == [], out


def test_wsgiserver_option_logs_on_ptsevent_wsgi_and_stops_its_thread(caplog):
    import logging
    import threading

    import ptsevent
    from ptsevent import _watchdog
    from ptsevent.wsgi import WSGIServer

    class App:  # a callable object: its __call__ is the app's frame
        def __call__(self, environ, start_response):
            blocking_sleep(0.5)
            start_response("200 OK", [])
            return [b"ok"]

    blocking_sleep = time.sleep  # this test process is not patched
    caplog.set_level(logging.WARNING, logger="ptsevent.wsgi")
    with WSGIServer(("127.0.0.1", 0), App(), blocked_warning=0.2) as server:
        server.start()
        dog = _watchdog._watchdogs[threading.get_ident()]
        assert dog.running.locked()  # its thread runs
        url = f"http://127.0.0.1:{server.server_port}/a/b"
        body = ptsevent.run_in_thread(lambda: urllib.request.urlopen(url).read())
        assert body == b"ok"
    assert not dog.running.locked() and not _watchdog._watchdogs
    records = [r for r in caplog.records if "held the hub" in r.getMessage()]
    assert len(records) == 1
    assert records[0].name == "ptsevent.wsgi"
    assert records[0].levelno == logging.WARNING
    assert "GET /a/b" in records[0].getMessage()
    assert "test_patch_serving.py:" in records[0].getMessage()
    assert " __call__" in records[0].getMessage()

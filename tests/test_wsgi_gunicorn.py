"""The gunicorn worker class: gunicorn -k ptsevent.gunicorn.Worker."""

import pytest

from support import serve_gunicorn

pytest.importorskip("gunicorn")

APP = '''
import ptsevent

def app(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        ptsevent.sleep(0.2)
    body = ("pid=%d multiprocess=%s" % (__import__("os").getpid(),
                                        environ["wsgi.multiprocess"])).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def test_gunicorn_serves_through_ptsevent_workers_and_stops_on_sigterm(tmp_path):
    srv = serve_gunicorn(tmp_path, APP, "gapp:app", workers=2)
    try:
        assert "multiprocess=True" in srv.get("/")
        # Ten sleeping requests at once overlap inside the workers' hubs.
        bodies, took = srv.get_all(["/sleep"] * 10)
        assert all(b.startswith("pid=") for b in bodies)
        assert took < 1.5  # 10 x 0.2 s serially would be 2 s
    finally:
        out = srv.stop()  # SIGTERM
    assert srv.proc.returncode == 0, out
    assert "Traceback" not in out, out

"""The gunicorn worker class: gunicorn -k ptsevent.gunicorn.Worker."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def test_gunicorn_serves_through_ptsevent_workers_and_stops_on_sigterm(tmp_path):
    (tmp_path / "gapp.py").write_text(APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "ptsevent.gunicorn.Worker", "-w", "2",
         "-b", f"127.0.0.1:{port}", "--graceful-timeout", "2", "--no-control-socket", "gapp:app"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)})
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                status, body = get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert status == 200
        assert "multiprocess=True" in body
        # Ten sleeping requests at once overlap inside the workers' hubs.
        import concurrent.futures

        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lambda _: get(f"http://127.0.0.1:{port}/sleep"), range(10)))
        assert all(s == 200 for s, _ in results)
        assert time.monotonic() - start < 1.5  # 10 x 0.2 s serially would be 2 s
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out.decode(errors="replace")
    assert b"Traceback" not in out, out.decode(errors="replace")

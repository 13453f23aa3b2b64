"""The WSGI server's life cycle: signals while requests run, stop(), fork,
Unix socket files. Servers that must die or fork run in a subprocess."""

import concurrent.futures
import os
import signal
import socket as stdsocket
import subprocess
import sys
import textwrap
import time

import pytest

import ptsevent
from ptsevent import socket as psocket
from ptsevent.wsgi import WSGIServer

HOST = "127.0.0.1"


def spawn_server(source, *args, env=None):
    """Starts `source` in a fresh interpreter; it prints its port first.
    Returns (process, port)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env)
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"server did not start: {line!r}{out}\n{err}")
    return proc, int(line)


def raw_request(port, path="/", timeout=10.0):
    """One request on its own blocking connection: everything received until
    the server closes (b"" when it closed or reset without answering)."""
    with stdsocket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        return data


# --- Ctrl-C while requests run ------------------------------------------------

BUSY_SERVER = """
    import signal, sys, time
    import ptsevent
    from ptsevent.wsgi import WSGIServer

    # The test may run with SIGINT ignored (started in the background).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def app(environ, start_response):
        # Cooperative, but running Python code nearly all the time: that is
        # where the interpreter runs the SIGINT handler.
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            sum(range(3000))
            ptsevent.sleep(0)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = WSGIServer(("127.0.0.1", 0), app)
    print(server.server_port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("KeyboardInterrupt in the main tasklet", flush=True)
        server.close()
        sys.exit(7)
    print("serve_forever returned", flush=True)
"""


@pytest.mark.parametrize("trial", range(3))
def test_ctrl_c_with_requests_in_flight_reaches_the_main_tasklet(trial):
    proc, port = spawn_server(BUSY_SERVER)
    try:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            futures = [pool.submit(raw_request, port, f"/{i}") for i in range(20)]
            time.sleep(0.5)  # every request is inside the app by now
            proc.send_signal(signal.SIGINT)
            answers = [f.result(timeout=15) for f in futures]
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 7, (proc.returncode, out, err)
    assert "KeyboardInterrupt in the main tasklet" in out
    assert "error in the WSGI application" not in err, err
    assert "Traceback" not in err, err
    for data in answers:
        assert not data.startswith(b"HTTP/1.1 500"), data

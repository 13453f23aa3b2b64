"""10,000 concurrent connections held by one echo server process."""

import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), "crash", "many_connections.py")


def test_one_server_process_holds_and_serves_10000_connections():
    n = 10000
    server = subprocess.Popen([sys.executable, SCRIPT, "server", str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        port = int(server.stdout.readline())
        client = subprocess.run([sys.executable, SCRIPT, "client", str(port), str(n)],
                                capture_output=True, text=True, timeout=120)
        out, err = server.communicate(timeout=60)
    finally:
        server.kill()
        server.wait()
    assert client.returncode == 0, client.stdout + client.stderr
    assert client.stdout.strip() == f"client ok {n} failed 0"
    assert server.returncode == 0, out + err
    assert out.strip() == f"served {n} peak_open {n} dead {n}", err

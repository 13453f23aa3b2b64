"""Run a snippet of Python in a fresh interpreter, for tests of patching.

Patching changes the whole process, so every test that patches runs its
code in an interpreter of its own. The snippet's process is started from
ptsevent's thread pool: the test's own tasklet waits cooperatively, and a
server that the test runs in its hub keeps serving the snippet meanwhile.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import ptsevent

HERE = os.path.dirname(os.path.abspath(__file__))

#: Source for a snippet (after ``import ptsevent, socketserver``): a
#: socketserver.TCPServer that serves each connection in a tasklet of its
#: own, the way ThreadingMixIn starts a thread.
TASKLET_TCP_SERVER = """
class TaskletTCPServer(socketserver.TCPServer):
    allow_reuse_address = True
    request_queue_size = 128
    def process_request(self, request, client_address):
        ptsevent.spawn(self._serve_one, request, client_address)
    def _serve_one(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)
"""


def run_snippet(source, *args, timeout=60, check=True, cwd=None,
                python_args=()):
    """Run `source` as `python -c source args...`; return the
    CompletedProcess (text). With check, a non-zero exit fails the test
    with the snippet's stderr; a hang fails it after `timeout` seconds."""
    cmd = [sys.executable, *python_args]
    if source is not None:
        cmd += ["-c", textwrap.dedent(source)]
    cmd += list(args)
    try:
        proc = ptsevent.run_in_thread(
            subprocess.run, cmd, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"snippet hung for {timeout}s\nstdout:\n{e.stdout}\n"
                    f"stderr:\n{e.stderr}")
    if check and proc.returncode != 0:
        pytest.fail(f"snippet exited with {proc.returncode}\nstdout:\n"
                    f"{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_json(source, *args, **kwargs):
    """run_snippet, then the JSON document its last line of stdout holds."""
    proc = run_snippet(source, *args, **kwargs)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"snippet printed nothing\nstderr:\n{proc.stderr}"
    return json.loads(lines[-1])

"""The WSGI server's life cycle: signals while requests run, stop(), close()
and serve_forever() (from another tasklet or thread), fork, Unix socket
files. Servers that must die or fork run in a subprocess."""

import concurrent.futures
import os
import signal
import socket as stdsocket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

import ptsevent
from _http import get, path_app, request, text_app
from support import made_then_closed, wait_for
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


LOGGING_SERVER = """
    import signal, sys, time
    from ptsevent.wsgi import WSGIServer

    signal.signal(signal.SIGINT, signal.default_int_handler)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    def access_log(line):
        # The server's own call into Python, where the handler runs now.
        end = time.monotonic() + 0.005
        while time.monotonic() < end:
            sum(range(3000))

    server = WSGIServer(("127.0.0.1", 0), app, access_log=access_log)
    print(server.server_port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("KeyboardInterrupt in the main tasklet", flush=True)
        server.close()
        sys.exit(7)
"""


def test_ctrl_c_in_the_access_log_callable_reaches_the_main_tasklet():
    import threading

    proc, port = spawn_server(LOGGING_SERVER)
    done = threading.Event()

    def hammer():
        n = 0
        try:
            while not done.is_set():
                raw_request(port, "/", timeout=5)
                n += 1
        except OSError:
            pass
        return n

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(hammer) for _ in range(4)]
        try:
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
        finally:
            done.set()
        assert all(f.result(timeout=10) > 0 for f in futures)
    assert proc.returncode == 7, (proc.returncode, out, err)
    assert "Exception ignored" not in err, err


# --- stop(timeout) -------------------------------------------------------------


class Client:
    """A cooperative client connection (this process's hub runs the server)."""

    def __init__(self, port, timeout=5.0):
        self.sock = psocket.create_connection((HOST, port), timeout=timeout)

    def send(self, path="/", keep_alive=True):
        conn = "" if keep_alive else "Connection: close\r\n"
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{conn}\r\n".encode())

    def until_closed(self, timeout=5.0):
        self.sock.settimeout(timeout)
        data = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
        except ConnectionResetError:
            return data

    def close(self):
        self.sock.close()


@pytest.fixture
def client():
    """client(port, timeout=5.0) -> Client; each is closed after the test."""
    with made_then_closed(Client) as make:
        yield make


def ok_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def test_stop_refuses_new_connections_at_once_while_a_request_drains(serve_app, client):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            ptsevent.sleep(0.5)
        return ok_app(environ, start_response)

    server = serve_app(app, validate=False)
    port = server.server_port
    busy = client(port)
    busy.send("/slow", keep_alive=False)
    assert wait_for(lambda: server.stats()["active"] == 1)
    stopper = ptsevent.spawn(server.stop, 5)
    ptsevent.sleep(0.05)
    assert not stopper.dead  # still draining the slow request
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        psocket.create_connection((HOST, port), timeout=2).close()
    assert time.monotonic() - t0 < 0.1
    # The request in flight still gets its whole answer.
    assert busy.until_closed().endswith(b"\r\n\r\nok")
    stopper.get(timeout=5)


def test_stop_stops_accepting_on_a_listener_it_was_given(client):
    listener = stdsocket.socket()
    try:
        listener.bind((HOST, 0))
        listener.listen(16)
        port = listener.getsockname()[1]

        def app(environ, start_response):
            ptsevent.sleep(0.3)
            return ok_app(environ, start_response)

        server = WSGIServer(listener, app)
        server.start()
        busy = client(port)
        busy.send("/", keep_alive=False)
        assert wait_for(lambda: server.stats()["active"] == 1)
        stopper = ptsevent.spawn(server.stop, 5)
        ptsevent.sleep(0.05)
        late = client(port)  # queued in the listener's backlog, never served
        late.send("/late", keep_alive=False)
        assert busy.until_closed().endswith(b"\r\n\r\nok")
        stopper.get(timeout=5)
        assert listener.fileno() != -1  # the caller's socket stays open
        assert server.stats()["requests"] == 1
    finally:
        listener.close()


def test_stop_timeout_is_counted_on_the_clock(serve_app, client):
    # The app never ends and holds the hub 20 ms at a time: a timeout
    # counted in sleep steps would last far longer than asked.
    def app(environ, start_response):
        while True:
            time.sleep(0.02)
            ptsevent.sleep(0)

    server = serve_app(app, validate=False)
    busy = client(server.server_port)
    busy.send("/")
    assert wait_for(lambda: server.stats()["active"] == 1)
    t0 = time.monotonic()
    server.stop(timeout=0.3)
    elapsed = time.monotonic() - t0
    assert 0.29 <= elapsed < 0.55, elapsed  # sleep steps took 1.2 s here
    data = busy.until_closed()
    assert not data.startswith(b"HTTP/1.1 200"), data
    assert wait_for(lambda: server.stats()["connections"] == 0), server.stats()


def test_stop_waits_by_hand_off_and_returns_when_the_last_request_ends(serve_app, client):
    release = ptsevent.Event()

    def app(environ, start_response):
        release.wait()
        return ok_app(environ, start_response)

    server = serve_app(app, validate=False)
    busy = client(server.server_port)
    busy.send("/", keep_alive=False)
    assert wait_for(lambda: server.stats()["active"] == 1)
    stopper = ptsevent.spawn(server.stop)
    ptsevent.sleep(0.01)
    polls = ptsevent.hub_stats()["polls"]
    ptsevent.sleep(0.3)
    # Nothing happened meanwhile: the waiting stop() did not poll.
    assert ptsevent.hub_stats()["polls"] - polls < 6
    assert not stopper.dead
    t0 = time.monotonic()
    release.set()
    stopper.join(2)
    assert stopper.dead
    assert time.monotonic() - t0 < 0.05
    assert busy.until_closed().endswith(b"\r\n\r\nok")


def test_stop_called_by_the_app_waits_for_the_other_requests(serve_app, client):
    box = {}

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/stop":
            t0 = time.monotonic()
            box["server"].stop(timeout=None)
            box["waited"] = time.monotonic() - t0
        else:
            ptsevent.sleep(0.3)
        return ok_app(environ, start_response)

    server = box["server"] = serve_app(app, validate=False)
    busy = client(server.server_port)
    busy.send("/slow", keep_alive=False)
    assert wait_for(lambda: server.stats()["active"] == 1)
    stopper = client(server.server_port)
    stopper.send("/stop", keep_alive=False)
    assert busy.until_closed().endswith(b"\r\n\r\nok")
    stopper.until_closed()  # its own connection closes with the server
    assert wait_for(lambda: "waited" in box), box
    assert 0.1 < box["waited"] < 1.0, box  # for /slow, not for itself
    assert wait_for(lambda: server.stats()["connections"] == 0), server.stats()


def test_stop_closes_keep_alive_connections_after_their_answer(serve_app, client):
    # A keep-alive request finishes while stop() waits for another one; its
    # client had pipelined a bare CRLF. Its answer says Connection: close and
    # the connection ends then, not when the other request (or the header
    # timeout) does.
    def app(environ, start_response):
        ptsevent.sleep(0.1 if environ["PATH_INFO"] == "/short" else 1.5)
        return ok_app(environ, start_response)

    server = serve_app(app, validate=False, header_timeout=5)
    port = server.server_port
    long = client(port)
    long.send("/long", keep_alive=False)
    short = client(port)
    short.sock.sendall(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n\r\n")
    assert wait_for(lambda: server.stats()["active"] == 2)
    stopper = ptsevent.spawn(server.stop, 5)
    t0 = time.monotonic()
    answer = short.until_closed()
    assert answer.endswith(b"\r\n\r\nok") and b"Connection: close" in answer
    assert time.monotonic() - t0 < 0.8  # before /long ends
    assert long.until_closed().endswith(b"\r\n\r\nok")
    stopper.get(timeout=5)


# --- stop(), close() and serve_forever() with clients connected ----------------


def test_stop_closes_idle_lets_inflight_finish_and_refuses_new(serve_app, connect):
    big = b"slow-done;" * 10000

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            ptsevent.sleep(0.3)
            body = big
        else:
            body = b"quick"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    server = serve_app(app)
    port = server.server_port
    idle = connect(port)
    assert get(idle, "/").body == b"quick"
    busy = connect(port)
    busy.send(request("/slow"))
    assert wait_for(lambda: server.stats()["active"] == 1, timeout=2)

    t0 = time.monotonic()
    stopper = ptsevent.spawn(server.stop, 5)
    ptsevent.sleep(0.02)
    # The idle keep-alive connection is closed at once.
    assert idle.wait_closed(0.2) == (b"", True)
    assert time.monotonic() - t0 < 0.25
    # A new connection is refused or never served.
    try:
        late = connect(port, timeout=0.2)
    except (ConnectionRefusedError, TimeoutError):
        pass
    else:
        try:
            late.send(request("/"))
        except OSError:
            pass
        data, _ = late.wait_closed(0.2)
        assert not data.startswith(b"HTTP/"), data
    # The request in flight finishes and its response arrives whole.
    r = busy.response()
    assert r.status == 200 and r.body == big
    stopper.get(timeout=5)
    assert time.monotonic() - t0 < 2.0
    assert server.stats()["accepting"] is False
    with pytest.raises(ConnectionRefusedError):
        psocket.create_connection((HOST, port), timeout=1).close()


def test_stop_timeout_cuts_a_request_that_takes_too_long(serve_app, connect):
    def app(environ, start_response):
        ptsevent.sleep(10)
        return text_app()(environ, start_response)

    server = serve_app(app)
    busy = connect(server.server_port)
    busy.send(request("/"))
    assert wait_for(lambda: server.stats()["active"] == 1, timeout=2)
    t0 = time.monotonic()
    server.stop(timeout=0.3)
    assert 0.25 <= time.monotonic() - t0 < 1.5
    data, closed = busy.wait_closed(2.0)
    assert closed and not data.startswith(b"HTTP/1.1 200")
    # Nothing of the server is left running: the cut request's tasklet ends
    # too, instead of running the app on for the rest of its 10 s.
    assert wait_for(lambda: server.stats()["connections"] == 0, timeout=2), server.stats()
    assert server.stats()["active"] == 0
    assert ptsevent.hub_stats()["tasklets"] == 0


@pytest.mark.parametrize("how", ["stop", "close"])
def test_serve_forever_returns_after_stop_or_close_from_another_tasklet(serve_app, connect,
                                                                        how):
    server = WSGIServer((HOST, 0), path_app)
    try:
        runner = ptsevent.spawn(server.serve_forever)
        ptsevent.sleep(0.02)
        assert get(connect(server.server_port), "/up").body == b"/up"
        assert not runner.dead
        getattr(server, how)()
        runner.get(timeout=2)
        assert runner.dead
    finally:
        server.close()
    assert server.socket.fileno() == -1  # the listener it made is closed


@pytest.mark.parametrize("how", ["stop", "close"])
def test_stop_or_close_from_another_thread_runs_in_the_servers_thread(how):
    # The usual shape of a test harness: serve_forever() in a thread, stop()
    # from the main thread, which waits until the server is down.
    import threading

    ready = threading.Event()
    box = {}

    def serve():
        box["server"] = WSGIServer((HOST, 0), path_app)
        ready.set()
        box["server"].serve_forever()

    thread = threading.Thread(target=serve)
    thread.start()
    assert ready.wait(5)
    server = box["server"]
    with urllib.request.urlopen(f"http://{HOST}:{server.server_port}/hi", timeout=5) as r:
        assert r.read() == b"/hi"
    getattr(server, how)()
    assert server.socket.fileno() == -1  # done when stop()/close() returned
    thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(OSError):
        stdsocket.create_connection((HOST, server.server_port), timeout=1).close()


def test_close_from_another_thread_after_the_servers_thread_ended_says_so():
    import threading

    box = {}

    def run():
        box["server"] = WSGIServer((HOST, 0), path_app)
        box["server"].start()  # and the thread ends with the server open

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)
    with pytest.raises(RuntimeError, match="no running ptsevent hub"):
        box["server"].close()
    box["server"].socket.close()


# --- os.fork() while the server runs ------------------------------------------

FORKING_SERVER = """
    import json, os, sys
    import ptsevent
    from ptsevent.wsgi import WSGIServer

    where = sys.argv[1]

    def sockets():
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                n += os.readlink("/proc/self/fd/" + fd).startswith("socket:")
            except FileNotFoundError:
                pass  # the listing's own descriptor
        return n

    def child_side():
        # The inherited server must not serve here: wait while the parent is
        # asked to serve, then close it (which must not disturb the parent).
        try:
            ptsevent.sleep(0.6)
            report = {"pid": os.getpid(), "stats": server.stats(),
                      "sockets": sockets()}
            server.close()
            report["sockets_after_close"] = sockets()
            print("child " + json.dumps(report), flush=True)
        except BaseException as exc:
            print("child failed: %r" % exc, flush=True)
        finally:
            os._exit(0)

    def fork():
        if os.fork() == 0:
            child_side()

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/fork":
            if where == "app":
                fork()
            else:
                ptsevent.spawn_later(0.05, fork)
        elif path == "/slow":
            ptsevent.sleep(1.5)
        body = ("%s pid=%d" % (path, os.getpid())).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    server = WSGIServer(("127.0.0.1", 0), app)
    print(server.server_port, flush=True)
    server.serve_forever()
"""


class BlockingConn:
    def __init__(self, port):
        self.sock = stdsocket.create_connection((HOST, port), timeout=10)
        self.buf = b""

    def get(self, path):
        self.send(path)
        return self.response()

    def send(self, path):
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return head.split(b"\r\n")[0], body.decode()

    def _more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("closed by the server")
        self.buf += chunk

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("where", ["app", "tasklet"])
def test_a_forked_child_does_not_serve_and_its_close_leaves_the_parent_alone(where):
    import json

    proc, port = spawn_server(FORKING_SERVER, where)
    conns = []
    try:
        parent = f"pid={proc.pid}"
        keep = BlockingConn(port)
        slow = BlockingConn(port)
        forker = BlockingConn(port)
        conns += [keep, slow, forker]
        assert keep.get("/k1") == (b"HTTP/1.1 200 OK", f"/k1 {parent}")
        slow.send("/slow")
        time.sleep(0.1)
        assert forker.get("/fork")[1] == f"/fork {parent}"
        time.sleep(0.1)  # the child exists (forked in the app, or 50 ms later)
        # While the child holds the inherited server, only the parent serves:
        # new connections and the parent's keep-alive connection alike.
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            bodies = list(pool.map(lambda i: BlockingConn(port).get(f"/n{i}")[1], range(40)))
        assert bodies == [f"/n{i} {parent}" for i in range(40)]
        for i in range(5):
            assert keep.get(f"/k{i}")[1] == f"/k{i} {parent}"
        line = proc.stdout.readline()  # the child closed its copy
        assert line.startswith("child "), line
        child = json.loads(line[6:])
        assert child["pid"] != proc.pid
        assert child["stats"]["accepting"] is False
        # The child holds no client connection of the parent's, only the
        # listener until it closes it.
        assert child["sockets"] == 1, child
        assert child["sockets_after_close"] == 0, child
        # The request in flight in the parent gets its whole answer, and the
        # keep-alive connection goes on.
        assert slow.response() == (b"HTTP/1.1 200 OK", f"/slow {parent}")
        assert keep.get("/k-last")[1] == f"/k-last {parent}"
    finally:
        for c in conns:
            c.close()
        proc.kill()
        proc.communicate(timeout=10)


# --- Unix socket files -----------------------------------------------------------


def unix_get(path):
    s = psocket.socket(psocket.AF_UNIX, psocket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


@pytest.mark.parametrize("how", ["close", "stop"])
def test_a_closed_server_removes_its_unix_socket_file(tmp_path, how):
    path = str(tmp_path / "server.sock")
    for _ in range(2):  # the second start at the same path works
        server = WSGIServer(path, ok_app)
        server.start()
        try:
            assert unix_get(path).endswith(b"\r\n\r\nok")
        finally:
            getattr(server, how)()
        assert not os.path.exists(path)


def test_a_socket_file_replaced_meanwhile_is_left_alone(tmp_path):
    path = str(tmp_path / "server.sock")
    server = WSGIServer(path, ok_app)
    os.unlink(path)
    other = stdsocket.socket(stdsocket.AF_UNIX)
    try:
        other.bind(path)  # someone else's socket now
        server.close()
        assert os.path.exists(path)
    finally:
        other.close()


def test_a_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "server.sock")
    stale = stdsocket.socket(stdsocket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens (a server that crashed)
    with WSGIServer(path, ok_app) as server:
        server.start()
        assert unix_get(path).endswith(b"\r\n\r\nok")
    assert not os.path.exists(path)


def test_a_socket_file_someone_listens_on_is_in_use(tmp_path):
    import errno

    path = str(tmp_path / "server.sock")
    live = stdsocket.socket(stdsocket.AF_UNIX)
    try:
        live.bind(path)
        live.listen(1)
        with pytest.raises(OSError) as info:
            WSGIServer(path, ok_app)
        assert info.value.errno == errno.EADDRINUSE
        assert os.path.exists(path)
    finally:
        live.close()


def test_a_regular_file_at_the_path_is_not_removed(tmp_path):
    path = tmp_path / "server.sock"
    path.write_text("not a socket")
    with pytest.raises(OSError):
        WSGIServer(str(path), ok_app)
    assert path.read_text() == "not a socket"


def test_a_forked_child_closing_the_server_leaves_its_socket_file(run_python, tmp_path):
    path = str(tmp_path / "server.sock")
    proc = run_python("""
        import os, sys
        from ptsevent import socket as psocket
        from ptsevent.wsgi import WSGIServer

        def app(environ, start_response):
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]

        path = sys.argv[1]
        server = WSGIServer(path, app)
        server.start()
        pid = os.fork()
        if pid == 0:
            server.close()
            os._exit(0 if os.path.exists(path) else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        s = psocket.socket(psocket.AF_UNIX)
        s.connect(path)
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert data.endswith(b"\\r\\n\\r\\nok"), data
        s.close()
        server.close()
        assert not os.path.exists(path)
        print("ok")
    """, args=[path])
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr

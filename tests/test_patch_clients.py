"""Real client libraries under patch_all(), all concurrent, on loopback:
redis-py against a local redis-server started by the test, smtplib against
a small SMTP server written here. Each in an interpreter of its own."""

import shutil
import socket
import subprocess
import textwrap
import time

import pytest

import ptsevent
from _patched import TASKLET_TCP_SERVER, run_json
from support import free_port


@pytest.fixture
def redis_port(tmp_path):
    pytest.importorskip("redis")
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--daemonize", "no"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("redis-server did not start")
                ptsevent.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        ptsevent.run_in_thread(proc.wait, 10)


def test_redis_100_tasklets_blpop_get_set_finish_in_about_one_wait(redis_port):
    out = run_json("""
        import ptsevent.patch
        ptsevent.patch.patch_all()
        import json, sys, time
        import ptsevent, redis
        r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]),
                        max_connections=200)
        r.ping()
        def one(i):
            r.set(f"k{i}", i)
            got = int(r.get(f"k{i}"))
            popped = r.blpop([f"empty{i}"], timeout=0.2)   # waits 0.2 s
            return got, popped
        def pusher():
            time.sleep(0.1)
            r.rpush("work", "job")
        t0 = time.monotonic()
        ts = [ptsevent.spawn(one, i) for i in range(100)]
        waiter = ptsevent.spawn(r.blpop, ["work"], 2)
        ptsevent.spawn(pusher)
        results = [t.get() for t in ts]
        woken = waiter.get()
        took = time.monotonic() - t0
        print(json.dumps({"ok": results == [(i, None) for i in range(100)],
                          "woken": [x.decode() for x in woken], "took": took}))
    """, str(redis_port))
    assert out["ok"]
    assert out["woken"] == ["work", "job"]
    # One BLPOP wait (0.2 s) plus overhead, not 100 x 0.2 s.
    assert out["took"] < 1.5, out


def test_smtplib_20_concurrent_sends_to_a_slow_server_overlap():
    out = run_json("""
        import ptsevent.patch
        ptsevent.patch.patch_all()
        import json, smtplib, socketserver, time
        from email.message import EmailMessage
        import ptsevent

        received = []

        class Smtp(socketserver.StreamRequestHandler):
            def reply(self, line):
                self.wfile.write(line.encode() + b"\\r\\n")
                self.wfile.flush()

            def handle(self):
                self.reply("220 localhost test SMTP")
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        self.reply("250 localhost")
                    elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                        self.reply("250 OK")
                    elif verb == b"DATA":
                        self.reply("354 go on")
                        body = []
                        while (l := self.rfile.readline()) != b".\\r\\n":
                            body.append(l)
                        time.sleep(0.3)          # a slow server
                        received.append(b"".join(body))
                        self.reply("250 queued")
                    elif verb == b"QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 no")
    """ + textwrap.indent(TASKLET_TCP_SERVER, " " * 8) + """
        server = TaskletTCPServer(("127.0.0.1", 0), Smtp)
        port = server.server_address[1]
        serving = ptsevent.spawn(server.serve_forever, 0.05)

        def send(i):
            msg = EmailMessage()
            msg["From"], msg["To"] = "a@localhost", "b@localhost"
            msg["Subject"] = f"n{i}"
            msg.set_content(f"message {i}")
            # local_hostname: no getfqdn() (a name lookup) per connection
            with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost",
                              timeout=10) as s:
                s.send_message(msg)
            return i

        t0 = time.monotonic()
        ts = [ptsevent.spawn(send, i) for i in range(20)]
        done = [t.get() for t in ts]
        took = time.monotonic() - t0
        # Not server.shutdown(): it waits on a threading.Event, which
        # blocks the whole thread until threading is patched too.
        serving.kill()
        server.server_close()
        print(json.dumps({"done": done, "received": len(received),
                          "took": took}))
    """)
    assert out["done"] == list(range(20))
    assert out["received"] == 20
    # 20 x 0.3 s would be 6 s one after the other.
    assert out["took"] < 1.5, out

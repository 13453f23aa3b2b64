"""cheroot, a WSGI server built on OS threads and a selector loop, under
patch_all(): its worker threads are tasklets, and keep-alive connections
re-registered by the workers while the serve loop waits in select() are
served at once. Runs in an interpreter of its own."""

import pytest

from _patched import run_json

pytest.importorskip("cheroot")

SNIPPET = """
import json, time, warnings
warnings.simplefilter("ignore")
import ptsevent.patch as P
P.patch_all()
import http.client, threading, ptsevent
from cheroot import wsgi

def app(environ, start_response):
    body = b"hello " + environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]

# A listen backlog for 50 clients connecting at once (cheroot's default of
# 5 drops SYNs: 1 s retransmits), and room for 50 kept-alive connections
# (cheroot closes those beyond 10 by default).
server = wsgi.Server(("127.0.0.1", 0), app, numthreads=10,
                     request_queue_size=128)
server.keep_alive_conn_limit = 100
server.prepare()
port = server.bind_addr[1]
serving = threading.Thread(target=server.serve, daemon=True)
serving.start()
lat = []
ok = [0]
def client(i):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for j in range(10):
        t0 = time.monotonic()
        conn.request("GET", f"/c{i}/{j}")
        r = conn.getresponse()
        body = r.read()
        lat.append(time.monotonic() - t0)
        ok[0] += body == f"hello /c{i}/{j}".encode() and not r.will_close
    conn.close()
t0 = time.monotonic()
cs = [ptsevent.spawn(client, i) for i in range(50)]
ptsevent.joinall(cs)
took = time.monotonic() - t0
errors = [repr(c.exception) for c in cs if c.exception is not None]
lat.sort()
t1 = time.monotonic()
server.stop()
stop = time.monotonic() - t1
print(json.dumps({"ok": ok[0], "n": len(lat), "errors": errors[:3],
                  "p50": lat[len(lat) // 2] if lat else None,
                  "p99": lat[int(len(lat) * 0.99)] if lat else None,
                  "max": lat[-1] if lat else None, "took": took,
                  "stop": stop}))
"""


def test_cheroot_50_keep_alive_clients_x_10_requests():
    out = run_json(SNIPPET)
    assert out["errors"] == []
    # every response right, and every connection kept alive
    assert out["ok"] == 500 and out["n"] == 500
    # a keep-alive request that waited for the serve loop's 0.5 s select
    # to notice its connection would take up to 0.5 s
    assert out["p99"] < 0.25, out
    assert out["stop"] < 2, out

"""Real HTTP clients against the server: requests (a keep-alive session),
urllib.request, http.client and curl, each run in an OS thread through
ptsevent.run_in_thread while this process's hub serves.
"""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

import ptsevent
from _http import HOST, echo_app


def test_requests_session_keep_alive_post_and_chunked_upload(serve_app):
    requests = pytest.importorskip("requests")
    server = serve_app(echo_app)
    url = f"http://{HOST}:{server.server_port}"

    def run():
        out = {}
        with requests.Session() as s:
            out["gets"] = [s.get(url + f"/get/{i}", params={"q": "a b"}).json()
                           for i in range(3)]
            out["post"] = s.post(url + "/post", data=b"x=1&y=2",
                                 headers={"Content-Type": "text/plain"}).json()

            def gen():
                yield b"stream-"
                yield b"ed-"
                yield b"upload"

            out["chunked"] = s.post(url + "/up", data=gen()).json()
            r = s.get(url + "/last")
            out["last_headers"] = dict(r.headers)
            out["last"] = r.json()
        return out

    out = ptsevent.run_in_thread(run)
    assert [g["path"] for g in out["gets"]] == ["/get/0", "/get/1", "/get/2"]
    assert out["gets"][0]["query"] == "q=a+b"
    ports = {g["remote_port"] for g in out["gets"]} | {out["post"]["remote_port"],
                                                       out["chunked"]["remote_port"],
                                                       out["last"]["remote_port"]}
    assert len(ports) == 1, "the session did not reuse its connection"
    assert out["post"]["body"] == "x=1&y=2"
    assert out["post"]["content_length"] == "7"
    assert out["post"]["content_type"] == "text/plain"
    assert out["chunked"]["body"] == "stream-ed-upload"
    assert out["chunked"]["transfer_encoding"] == "chunked"
    assert out["last_headers"]["Content-Type"] == "application/json"


def test_urllib_request(serve_app):
    server = serve_app(echo_app)
    url = f"http://{HOST}:{server.server_port}"

    def run():
        with urllib.request.urlopen(url + "/u?x=1", timeout=5) as r:
            got = (r.status, r.headers["Content-Type"], json.loads(r.read()))
        req = urllib.request.Request(url + "/p", data=b"payload", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            posted = json.loads(r.read())
        return got, posted

    (status, ctype, info), posted = ptsevent.run_in_thread(run)
    assert status == 200 and ctype == "application/json"
    assert info["path"] == "/u" and info["query"] == "x=1" and info["method"] == "GET"
    assert posted["method"] == "POST" and posted["body"] == "payload"


def test_http_client_keep_alive_and_chunked_body(serve_app):
    import http.client

    server = serve_app(echo_app)

    def run():
        conn = http.client.HTTPConnection(HOST, server.server_port, timeout=5)
        try:
            out = []
            for path in ("/a", "/b"):
                conn.request("GET", path)
                r = conn.getresponse()
                out.append((r.status, json.loads(r.read())))
            conn.request("POST", "/c", body=iter([b"one,", b"two"]),
                         headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
            r = conn.getresponse()
            out.append((r.status, json.loads(r.read())))
            conn.request("HEAD", "/d")
            r = conn.getresponse()
            out.append((r.status, r.read(), r.getheader("Content-Length")))
            return out
        finally:
            conn.close()

    (s1, a), (s2, b), (s3, c), (s4, head_body, head_len) = ptsevent.run_in_thread(run)
    assert (s1, s2, s3, s4) == (200, 200, 200, 200)
    assert a["path"] == "/a" and b["path"] == "/b"
    assert a["remote_port"] == b["remote_port"] == c["remote_port"]
    assert c["body"] == "one,two" and c["transfer_encoding"] == "chunked"
    assert head_body == b"" and int(head_len) > 0


CURL = shutil.which("curl")


def run_curl(*args):
    # curl is not ours: under `make test-asan` it must not inherit the
    # preloaded sanitizer runtime.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    return subprocess.run([CURL, "-sS", "--max-time", "10", *args], env=env,
                          capture_output=True, timeout=20, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl_http11_http10_and_expect_100_continue(serve_app, tmp_path):
    server = serve_app(echo_app)
    url = f"http://{HOST}:{server.server_port}"
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"u" * 5000)

    p = ptsevent.run_in_thread(run_curl, "-i", url + "/c?x=1")
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    info = json.loads(body)
    assert info["path"] == "/c" and info["query"] == "x=1"
    assert info["protocol"] == "HTTP/1.1"

    p = ptsevent.run_in_thread(run_curl, "--http1.0", "-i", url + "/old")
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 200", head)
    assert b"connection: close" in head.lower()
    info = json.loads(body)
    assert info["protocol"] == "HTTP/1.0" and info["path"] == "/old"

    t0 = time.monotonic()
    p = ptsevent.run_in_thread(run_curl, "-v", "-H", "Expect: 100-continue",
                               "--data-binary", f"@{upload}", url + "/expect")
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["body"] == "u" * 5000 and info["expect"] == "100-continue"
    assert b"HTTP/1.1 100 Continue" in p.stderr
    # curl waits 1 s for the 100 before sending anyway: it did not have to.
    assert elapsed < 0.9, elapsed

"""Standard-library TLS clients over ptsevent.ssl, in concurrent tasklets.

http.client, urllib.request, smtplib (STARTTLS) and ftplib (FTP_TLS with
CCC) run unmodified against small servers written here, each connection
served in its own tasklet. The clients are given a ptsevent.ssl context;
their module's `socket` name is pointed at ptsevent.socket (what patching
will do module-wide), so that their clear-text phase is cooperative too.
Each server handler waits a little per command: run one after the other,
the clients would take many times longer than they are allowed to.
"""

import ftplib
import http.client
import smtplib
import ssl
import time
import urllib.request

import pytest

import ptsevent
import ptsevent.socket as psocket
import ptsevent.ssl as pssl

trustme = pytest.importorskip("trustme")

LOCAL = "127.0.0.1"
DELAY = 0.1  # server-side think time per request or command


@pytest.fixture
def serve():
    """serve(handler) -> port: a listener whose connections each run
    handler(conn) in a tasklet of their own; all stopped after the test."""
    listeners, tasklets, errors = [], [], []

    def run(handler, conn):
        try:
            with conn:
                handler(conn)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def accept_loop(listener, handler):
        while True:
            conn, _ = listener.accept()
            conn.settimeout(10)
            tasklets.append(ptsevent.spawn(run, handler, conn))

    def start(handler):
        listener = psocket.create_server((LOCAL, 0), backlog=128)
        listeners.append(listener)
        tasklets.append(ptsevent.spawn(accept_loop, listener, handler))
        return listener.getsockname()[1]

    start.errors = errors
    yield start
    ptsevent.killall([t for t in tasklets if not t.dead], timeout=2)
    for listener in listeners:
        listener.close()


def run_concurrently(func, n, limit):
    """Run func(i) for i < n in tasklets; all must finish within limit
    seconds (serially they would need n times as long)."""
    start = time.monotonic()
    tasklets = [ptsevent.spawn(func, i) for i in range(n)]
    ptsevent.joinall(tasklets, raise_error=True)
    elapsed = time.monotonic() - start
    assert elapsed < limit, elapsed
    return [t.value for t in tasklets]


# -- HTTPS ---------------------------------------------------------------------------


def https_handler(server_ctx):
    def handler(conn):
        with server_ctx.wrap_socket(conn, server_side=True) as tls, \
                tls.makefile("rb") as f:
            while True:
                request_line = f.readline()
                if not request_line:
                    return
                length = 0
                while True:
                    header = f.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = f.read(length) if length else b""
                ptsevent.sleep(DELAY)
                method, target, _ = request_line.split(b" ", 2)
                payload = b"%s %s %d" % (method, target, len(body))
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            b"Content-Length: %d\r\n\r\n%s"
                            % (len(payload), payload))
    return handler


def test_http_client_https_connections_in_concurrent_tasklets(
        serve, server_ctx, client_ctx, monkeypatch):
    monkeypatch.setattr(http.client, "socket", psocket)
    port = serve(https_handler(server_ctx))

    def client(i):
        conn = http.client.HTTPSConnection(LOCAL, port, context=client_ctx,
                                           timeout=10)
        try:
            bodies = []
            for k in range(3):  # one kept-alive TLS connection
                conn.request("POST", f"/c{i}/r{k}", body=b"x" * (i + k))
                resp = conn.getresponse()
                assert resp.status == 200
                bodies.append(resp.read())
            assert isinstance(conn.sock, pssl.SSLSocket)
            return bodies
        finally:
            conn.close()

    # 30 clients x 3 requests x DELAY: 9 s one after the other.
    results = run_concurrently(client, 30, limit=3 * DELAY * 6)
    for i, bodies in enumerate(results):
        assert bodies == [b"POST /c%d/r%d %d" % (i, k, i + k) for k in range(3)]
    assert serve.errors == []


def test_urllib_request_urlopen_with_a_context_in_concurrent_tasklets(
        serve, server_ctx, client_ctx, monkeypatch):
    monkeypatch.setattr(http.client, "socket", psocket)
    port = serve(https_handler(server_ctx))

    def client(i):
        url = f"https://{LOCAL}:{port}/item/{i}"
        # No timeout: urllib passes the socket module's default marker on.
        with urllib.request.urlopen(url, context=client_ctx) as r:
            return r.status, r.read()

    results = run_concurrently(client, 20, limit=20 * DELAY / 2)
    assert results == [(200, b"GET /item/%d 0" % i) for i in range(20)]


def test_urllib_refuses_a_server_the_context_does_not_trust(
        serve, server_ctx, monkeypatch):
    monkeypatch.setattr(http.client, "socket", psocket)
    port = serve(https_handler(server_ctx))
    other = pssl.create_default_context()
    trustme.CA().configure_trust(other)
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(f"https://{LOCAL}:{port}/", context=other,
                               timeout=10)
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


# -- SMTP with STARTTLS ----------------------------------------------------------------


def smtp_handler(server_ctx, inbox):
    def handler(conn):
        sock = conn
        f = sock.makefile("rb")
        sock.sendall(b"220 localhost ESMTP test\r\n")
        tls = False
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            ptsevent.sleep(DELAY / 4)
            if verb in (b"EHLO", b"HELO"):
                if tls:
                    sock.sendall(b"250-localhost\r\n250 SIZE 100000\r\n")
                else:
                    sock.sendall(b"250-localhost\r\n250 STARTTLS\r\n")
            elif verb == b"STAR":
                sock.sendall(b"220 Ready to start TLS\r\n")
                f.close()
                sock = server_ctx.wrap_socket(conn, server_side=True)
                f = sock.makefile("rb")
                tls = True
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                sock.sendall(b"250 OK\r\n")
            elif verb == b"DATA":
                sock.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                lines = []
                while True:
                    data = f.readline()
                    if data in (b".\r\n", b""):
                        break
                    lines.append(data)
                inbox.append((tls, b"".join(lines)))
                sock.sendall(b"250 OK queued\r\n")
            elif verb == b"QUIT":
                sock.sendall(b"221 Bye\r\n")
                if tls:
                    sock.close()
                return
            else:
                sock.sendall(b"502 Command not implemented\r\n")
    return handler


def test_smtplib_starttls_in_concurrent_tasklets(serve, server_ctx, client_ctx,
                                                 monkeypatch):
    monkeypatch.setattr(smtplib, "socket", psocket)
    inbox = []
    port = serve(smtp_handler(server_ctx, inbox))

    def client(i):
        with smtplib.SMTP(LOCAL, port, local_hostname="client.test",
                          timeout=10) as smtp:
            smtp.ehlo()
            assert smtp.has_extn("starttls")
            code, _ = smtp.starttls(context=client_ctx)
            assert code == 220
            assert isinstance(smtp.sock, pssl.SSLSocket)
            smtp.ehlo()
            assert not smtp.has_extn("starttls")
            smtp.sendmail("a@client.test", ["b@server.test"],
                          f"Subject: {i}\r\n\r\nmessage {i}\r\n")
        return i

    # About 9 commands x DELAY/4 each per client.
    run_concurrently(client, 20, limit=20 * 9 * DELAY / 4 / 3)
    assert len(inbox) == 20
    assert all(tls for tls, _ in inbox)
    assert sorted(int(body.split(b"message ")[1]) for _, body in inbox) == \
        list(range(20))
    assert serve.errors == []


# -- FTP over TLS, back to clear text with CCC --------------------------------------------

FILE_DATA = b"".join(b"line %d of the file\r\n" % i for i in range(2000))


def ftp_handler(server_ctx, serve, log):
    def handler(conn):
        sock = conn
        f = sock.makefile("rb")
        prot_private = False
        passive = None
        sock.sendall(b"220 test FTP\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            verb, _, arg = line.strip().partition(b" ")
            verb = verb.upper()
            log.append((verb, isinstance(sock, pssl.SSLSocket)
                        and sock._sslobj is not None))
            ptsevent.sleep(DELAY / 4)
            if verb == b"AUTH":
                sock.sendall(b"234 AUTH TLS successful\r\n")
                f.close()
                sock = server_ctx.wrap_socket(conn, server_side=True)
                f = sock.makefile("rb")
            elif verb == b"USER":
                sock.sendall(b"331 Password required\r\n")
            elif verb == b"PASS":
                sock.sendall(b"230 Logged in\r\n")
            elif verb == b"PBSZ":
                sock.sendall(b"200 PBSZ=0\r\n")
            elif verb == b"PROT":
                prot_private = arg.upper() == b"P"
                sock.sendall(b"200 Protection level set\r\n")
            elif verb == b"TYPE":
                sock.sendall(b"200 Type set\r\n")
            elif verb == b"PASV":
                passive = psocket.create_server((LOCAL, 0), backlog=1)
                p = passive.getsockname()[1]
                sock.sendall(b"227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n"
                             % (p >> 8, p & 255))
            elif verb == b"RETR":
                sock.sendall(b"150 Opening data connection\r\n")
                data, _ = passive.accept()
                passive.close()
                data.settimeout(10)
                if prot_private:
                    data = server_ctx.wrap_socket(data, server_side=True)
                with data:
                    data.sendall(FILE_DATA)
                    if prot_private:
                        data.unwrap()
                sock.sendall(b"226 Transfer complete\r\n")
            elif verb == b"CCC":
                sock.sendall(b"200 Clear command channel\r\n")
                sock = sock.unwrap()
            elif verb == b"NOOP":
                sock.sendall(b"200 NOOP ok\r\n")
            elif verb == b"QUIT":
                sock.sendall(b"221 Bye\r\n")
                return
            else:
                sock.sendall(b"502 Not implemented\r\n")
    return handler


def test_ftplib_ftp_tls_with_ccc_in_concurrent_tasklets(
        serve, server_ctx, client_ctx, monkeypatch):
    monkeypatch.setattr(ftplib, "socket", psocket)
    log = []
    port = serve(ftp_handler(server_ctx, serve, log))

    def client(i):
        ftp = ftplib.FTP_TLS(context=client_ctx, timeout=10)
        ftp.connect(LOCAL, port)
        ftp.login("user", "secret")  # AUTH TLS first
        assert isinstance(ftp.sock, pssl.SSLSocket)
        ftp.prot_p()
        chunks = []
        ftp.retrbinary(f"RETR file{i}", chunks.append)
        ftp.ccc()
        assert ftp.sock._sslobj is None  # the control channel is clear now
        assert ftp.voidcmd("NOOP").startswith("200")
        ftp.quit()
        return b"".join(chunks)

    # About 10 commands x DELAY/4 each per client.
    results = run_concurrently(client, 10, limit=10 * 10 * DELAY / 4 / 2)
    assert results == [FILE_DATA] * 10
    assert serve.errors == []
    # Each NOOP came after CCC, in the clear; each RETR under TLS.
    assert {tls for verb, tls in log if verb == b"NOOP"} == {False}
    assert {tls for verb, tls in log if verb == b"RETR"} == {True}

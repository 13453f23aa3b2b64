"""The WSGI applications bench/wsgi.py and bench/wsgi_idle_memory.py serve.

Every server runs exactly the same code; only the sleep function of the
sleeping app differs (each server's own cooperative sleep, or time.sleep for
the servers that have none). Usable from any server's command line, e.g.

    python -m ptsevent.wsgi --host 127.0.0.1 --port 8080 wsgi_apps:hello
    gunicorn -k gevent -w 1 wsgi_apps:sleep_gevent        (with bench/ on sys.path)

Apps:

  hello            GET -> 200, "Hello, World!" (13 bytes) with Content-Length
  bytes64k         GET -> 200, a fixed 64 KiB body (BODY_64K) with Content-Length
  echo             POST -> 200, the request body, read whole from wsgi.input
  sleep_ptsevent   ptsevent.sleep(0.01), then the hello response
  sleep_gevent     gevent.sleep(0.01), then the hello response
  sleep_blocking   time.sleep(0.01), then the hello response (servers without
                   a cooperative sleep: bjoern, waitress's threads, meinheld)

The sleep modules are imported on the first request, so that importing this
module pulls in no event library.
"""

HELLO = b"Hello, World!"
BODY_64K = bytes(range(256)) * 256  # 65,536 bytes, not compressible to nothing
SLEEP_SECONDS = 0.01

_HELLO_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(HELLO))),
]
_64K_HEADERS = [
    ("Content-Type", "application/octet-stream"),
    ("Content-Length", str(len(BODY_64K))),
]


def hello(environ, start_response):
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]


def bytes64k(environ, start_response):
    start_response("200 OK", list(_64K_HEADERS))
    return [BODY_64K]


def echo(environ, start_response):
    stream = environ["wsgi.input"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length >= 0:
        chunks, left = [], length
        while left > 0:  # read(n) may return less on some servers
            chunk = stream.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        body = b"".join(chunks)
    else:
        body = stream.read()
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _sleeper(sleep):
    def app(environ, start_response):
        sleep(SLEEP_SECONDS)
        start_response("200 OK", list(_HELLO_HEADERS))
        return [HELLO]

    return app


def _lazy(get_sleep):
    """An app that finds its sleep function on the first request."""
    box = []

    def app(environ, start_response):
        if not box:
            box.append(_sleeper(get_sleep()))
        return box[0](environ, start_response)

    return app


def _ptsevent_sleep():
    import ptsevent

    return ptsevent.sleep


def _gevent_sleep():
    import gevent

    return gevent.sleep


def _time_sleep():
    import time

    return time.sleep


sleep_ptsevent = _lazy(_ptsevent_sleep)
sleep_gevent = _lazy(_gevent_sleep)
sleep_blocking = _lazy(_time_sleep)

# The app names bench/wsgi.py uses, by workload; "sleep" is resolved per server.
APPS = {
    "hello": hello,
    "64k": bytes64k,
    "echo": echo,
}

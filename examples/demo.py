"""ptsevent demo: the built-in C++ WSGI server serving a small application.

    python examples/demo.py [--host 127.0.0.1] [--port 8080]

Every request runs in a tasklet, so a handler may block in plain
blocking style (here: ptsevent.sleep, a cooperative socket call) while
other connections go on being served. Try:

    curl http://127.0.0.1:8080/
    curl 'http://127.0.0.1:8080/sleep?seconds=1'     # 1,000 of these overlap
    curl -d 'hello' http://127.0.0.1:8080/echo
    curl http://127.0.0.1:8080/stream                # chunked response
    curl http://127.0.0.1:8080/fetch                 # a cooperative socket call
    curl http://127.0.0.1:8080/stats
    wrk -c 256 -d 5s http://127.0.0.1:8080/
"""

import argparse
import json
import sys
import time
from urllib.parse import parse_qs

import ptsevent
from ptsevent import socket
from ptsevent.wsgi import WSGIServer

SERVER = None
STARTED = time.time()


def text(start_response, body, status="200 OK", ctype="text/plain; charset=utf-8"):
    body = body.encode() if isinstance(body, str) else body
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def index(environ, start_response):
    return text(start_response, "Hello, World!\n")


def sleep(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        seconds = min(float(query.get("seconds", ["0.1"])[0]), 10.0)
    except ValueError:
        return text(start_response, "seconds must be a number\n", "400 Bad Request")
    ptsevent.sleep(seconds)
    return text(start_response, f"slept {seconds} s in tasklet {id(ptsevent.getcurrent()):#x}\n")


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    return text(start_response, body, ctype=environ.get("CONTENT_TYPE") or "application/octet-stream")


def stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    for i in range(5):
        yield f"chunk {i}\n".encode()
        ptsevent.sleep(0.05)


def fetch(environ, start_response):
    # The server talking to itself with a cooperative socket: this request's
    # tasklet waits on the socket; the hub serves the inner request meanwhile.
    with socket.create_connection(("127.0.0.1", SERVER.server_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        reply = s.makefile("rb").read()
    status_line = reply.split(b"\r\n", 1)[0].decode("latin-1")
    return text(start_response, f"the inner request answered: {status_line}\n")


def stats(environ, start_response):
    data = {"server": SERVER.stats(), "hub": ptsevent.hub_stats(),
            "uptime_seconds": round(time.time() - STARTED, 1)}
    return text(start_response, json.dumps(data, indent=2) + "\n", ctype="application/json")


ROUTES = {"/": index, "/sleep": sleep, "/echo": echo, "/stream": stream,
          "/fetch": fetch, "/stats": stats}


def app(environ, start_response):
    handler = ROUTES.get(environ["PATH_INFO"])
    if handler is None:
        return text(start_response, "not found\n", "404 Not Found")
    return handler(environ, start_response)


def main():
    global SERVER
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    SERVER = WSGIServer((args.host, args.port), app)
    ptsevent.signal_handler(__import__("signal").SIGTERM, SERVER.close)
    print(f"ptsevent demo: serving on http://{args.host}:{SERVER.server_port}/ "
          f"(routes: {', '.join(ROUTES)}); Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        SERVER.serve_forever()
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
        SERVER.stop(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

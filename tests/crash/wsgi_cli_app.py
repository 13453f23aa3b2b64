"""A tiny WSGI application for the `python -m ptsevent.wsgi` command-line test
(tests/test_wsgi_cli.py); run with this directory as the working directory."""


def app(environ, start_response):
    body = ("cli " + environ["REQUEST_METHOD"] + " " + environ["PATH_INFO"] + " "
            + environ["QUERY_STRING"]).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]

"""The WSGIServer object and its listener: the options and their defaults,
a listening socket given to it (never closed by it), and accept() when the
process runs out of descriptors.

stop(), close() and serve_forever() are in test_wsgi_lifecycle.py.
"""

import json
import socket as stdsocket

import pytest

from _http import HOST, get, path_app
from ptsevent.wsgi import DEFAULTS, WSGIServer


# --- options -------------------------------------------------------------------


def test_defaults_are_documented_and_unknown_options_refused():
    for name in ("header_timeout", "body_timeout", "keepalive_timeout", "write_timeout",
                 "max_body", "accept_backoff"):
        assert name in DEFAULTS
    with pytest.raises(TypeError):
        WSGIServer((HOST, 0), path_app, no_such_option=1)


# --- the listener --------------------------------------------------------------


def test_server_does_not_close_a_listening_socket_it_was_given(connect):
    listener = stdsocket.socket()
    try:
        listener.bind((HOST, 0))
        listener.listen(16)
        server = WSGIServer(listener, path_app)
        server.start()
        try:
            assert get(connect(listener.getsockname()[1]), "/given").body == b"/given"
        finally:
            server.close()
        assert listener.fileno() != -1
    finally:
        listener.close()


def test_emfile_backs_off_keeps_serving_and_recovers(run_python):
    proc = run_python(script="wsgi_emfile.py", timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["fill_errno"] == "EMFILE"
    assert out["keep_first"] == "/k-first"
    # accept() failed while descriptors were exhausted ...
    assert out["stats_exhausted"]["accept_errors"] > 0
    assert out["pending_answered_while_exhausted"] == 0
    # ... the existing keep-alive connection kept being served ...
    assert out["keep_bodies"] == out["keep_expected"] and len(out["keep_bodies"]) >= 5
    # ... without spinning (CPU time over ~1 s of wall time) ...
    assert out["wall"] >= 0.9
    assert out["cpu"] < 0.3, out["cpu"]
    # ... and once descriptors were free, the waiting and new clients got in.
    assert out["pending_bodies"] == out["pending_expected"]
    assert out["fresh"] == "/fresh"
    assert out["keep_last"] == "/k-last"
    assert out["recovery_seconds"] < 2.0

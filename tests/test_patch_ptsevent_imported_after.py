"""ptsevent's own modules imported after patch_all() still know which OS
thread they run in (patch_thread makes _thread.get_ident per tasklet), and
the command line, which patches after importing ptsevent.wsgi, starts
without a late-patching warning about ptsevent itself."""

from _patched import run_json
from support import start_cli


def test_a_server_imported_after_patching_stops_from_another_tasklet():
    out = run_json("""
        import json
        import ptsevent.patch
        ptsevent.patch.patch_all()
        import ptsevent
        from ptsevent.wsgi import WSGIServer
        from ptsevent.stackless import tasklet
        import ptsevent.select, ptsevent.locks, ptsevent.event

        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"x"]

        srv = WSGIServer(("127.0.0.1", 0), app)
        srv.start()
        with ptsevent.Timeout(5):
            ptsevent.spawn(srv.stop, 1).join()
        print(json.dumps({"closed": srv._closed}))
    """, timeout=30)
    assert out == {"closed": True}


def test_the_command_line_patches_without_warning_about_itself():
    proc = start_cli("wsgi_cli_app:app", "--port", "0")
    try:
        first = proc.stderr.readline().decode()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert first.startswith("ptsevent.wsgi: serving wsgi_cli_app:app on "), first

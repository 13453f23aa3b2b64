"""Database drivers that wait in C are switched to a cooperative wait by
patch_all(), imported before or after it. No database server here: the
tests check the switch and that the chosen wait is cooperative."""

import pytest

from _patched import run_json


@pytest.mark.parametrize("order", ["before", "after"])
def test_psycopg_uses_a_cooperative_wait(order):
    pytest.importorskip("psycopg")
    out = run_json(f"""
        import json, os, select, socket, time
        os.environ.pop("PSYCOPG_WAIT_FUNC", None)
        import ptsevent, ptsevent.patch
        if "{order}" == "before":
            import psycopg.waiting as waiting
            chosen_unpatched = waiting.wait.__name__
        ptsevent.patch.patch_all()
        import psycopg
        import psycopg.waiting as waiting
        if "{order}" == "after":
            chosen_unpatched = None
        # The chosen wait, driven by a generator that waits for a socket
        # to be readable: other tasklets run meanwhile.
        a, b = socket.socketpair()
        def gen():
            ready = yield waiting.Wait.R
            return ready
        ticks = []
        def ticker():
            for _ in range(5):
                ticks.append(1)
                time.sleep(0.02)
            b.send(b"x")
        ptsevent.spawn(ticker)
        ready = waiting.wait(gen(), a.fileno(), interval=1.0)
        print(json.dumps({{"name": waiting.wait.__name__,
                          "unpatched": chosen_unpatched,
                          "ready": int(ready), "ticks": len(ticks),
                          "patched": ptsevent.patch.is_patched(
                              "psycopg.waiting", "wait")}}))
    """)
    assert out["name"] == "wait_poll"
    assert out["patched"]
    assert out["ready"] & 1 and out["ticks"] == 5
    if order == "before":
        assert out["unpatched"] == "wait_c"


def test_psycopg_wait_func_from_the_environment_is_kept():
    pytest.importorskip("psycopg")
    out = run_json("""
        import json, os
        os.environ["PSYCOPG_WAIT_FUNC"] = "wait_select"
        import ptsevent.patch
        ptsevent.patch.patch_all()
        import psycopg.waiting as waiting
        print(json.dumps(waiting.wait.__name__))
    """)
    assert out == "wait_select"


@pytest.mark.parametrize("order", ["before", "after"])
def test_psycopg2_gets_a_cooperative_wait_callback(order):
    pytest.importorskip("psycopg2")
    out = run_json(f"""
        import json
        import ptsevent.patch
        if "{order}" == "before":
            import psycopg2.extensions
        ptsevent.patch.patch_all()
        import psycopg2.extensions
        from ptsevent.patch import _drivers
        print(json.dumps(psycopg2.extensions.get_wait_callback()
                         is _drivers.psycopg2_wait))
    """)
    assert out is True

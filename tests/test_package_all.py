"""`import ptsevent` gives what `ptsevent.__all__` promises, and a star
import gives exactly that list (without shadowing the builtin open)."""

import ptsevent
from _patched import run_snippet


def test_every_name_in_all_exists_once():
    assert len(ptsevent.__all__) == len(set(ptsevent.__all__))
    missing = [name for name in ptsevent.__all__ if not hasattr(ptsevent, name)]
    assert missing == []


def test_star_import_binds_exactly_all_and_keeps_builtin_open():
    proc = run_snippet("""
        import builtins, ptsevent
        ns = {}
        exec("from ptsevent import *", ns)
        got = sorted(n for n in ns if n != "__builtins__")
        assert got == sorted(ptsevent.__all__), set(got) ^ set(ptsevent.__all__)
        assert "open" not in ns and ptsevent.open is not builtins.open
        print("ok")
    """, timeout=30)
    assert proc.stdout == "ok\n"

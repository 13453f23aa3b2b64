"""`import ptsevent` gives what `ptsevent.__all__` promises, and a star
import gives exactly that list (without shadowing the builtin open)."""

import subprocess
import sys

import ptsevent


def test_every_name_in_all_exists_once():
    assert len(ptsevent.__all__) == len(set(ptsevent.__all__))
    missing = [name for name in ptsevent.__all__ if not hasattr(ptsevent, name)]
    assert missing == []


def test_star_import_binds_exactly_all_and_keeps_builtin_open():
    proc = subprocess.run(
        [sys.executable, "-c",
         "import builtins, ptsevent\n"
         "ns = {}\n"
         "exec('from ptsevent import *', ns)\n"
         "got = sorted(n for n in ns if n != '__builtins__')\n"
         "assert got == sorted(ptsevent.__all__), set(got) ^ set(ptsevent.__all__)\n"
         "assert 'open' not in ns and ptsevent.open is not builtins.open\n"
         "print('ok')\n"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"

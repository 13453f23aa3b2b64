"""The README's examples run as printed (a new user copies them first)."""

import os
import re
import subprocess
import sys

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "README.md")


def python_block_after(heading):
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index(heading)
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_a_taste_runs_and_prints_what_it_says():
    source = python_block_after("## A taste")
    proc = subprocess.run([sys.executable, "-c", source], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        str(sum(n * n for n in range(10_000))),
        "b'late hello'",
    ], proc.stderr


def test_package_gives_its_standard_module_counterparts_as_attributes():
    proc = subprocess.run(
        [sys.executable, "-c",
         "import ptsevent, sys\n"
         "assert 'ptsevent.wsgi' not in sys.modules\n"  # imported on first use
         "print(ptsevent.socket.socket.__module__, ptsevent.select.select.__module__,\n"
         "      ptsevent.wsgi.WSGIServer.__name__, ptsevent.stackless.__name__,\n"
         "      ptsevent.os.pipe.__module__, ptsevent.hub.__name__)\n"
         "print(all(n in dir(ptsevent) for n in ('socket', 'select', 'wsgi')))\n"
         "try:\n    ptsevent.no_such_thing\n"
         "except AttributeError as e:\n    print(e)\n"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "ptsevent.socket ptsevent.select WSGIServer ptsevent.stackless ptsevent.os ptsevent.hub",
        "True",
        "module 'ptsevent' has no attribute 'no_such_thing'",
    ]

"""docs/http-checklist.md stays true: every test it cites is collected by
pytest, every item cites a test or says it is not yet covered, and every
`test_lineNN_…` regression test is cited under item NN."""

import ast
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "http-checklist.md")
CHECKLIST_TESTS = "tests/test_wsgi_checklist.py"

ITEM = re.compile(r"^(\d+)\. ", re.M)
REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
LINE_TEST = re.compile(r"^test_line(\d\d)_")


def items():
    """{number: the item's text, up to the next item or heading}."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    starts = list(ITEM.finditer(text))
    out, twice = {}, []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        heading = text.find("\n#", m.start(), end)
        body = text[m.start():end if heading < 0 else heading]
        number = int(m.group(1))
        if number in out:
            twice.append(number)
        out[number] = body
    assert not twice, f"items numbered twice: {twice}"
    return out


def refs(body):
    return REF.findall(body)


def test_items_are_numbered_from_1_without_gaps():
    numbers = sorted(items())
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert len(numbers) >= 28, numbers


def test_every_item_cites_a_test_or_says_it_is_not_yet_covered():
    bare = [n for n, body in items().items()
            if not refs(body) and "not yet covered" not in body.lower()]
    assert not bare, f"items with neither a test nor 'not yet covered': {bare}"


def collected(files):
    """The test functions pytest collects from `files`, as (file, name)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *files],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = set()
    for line in proc.stdout.splitlines():
        path, sep, name = line.partition("::")
        if sep:
            out.add((path, name.split("[", 1)[0]))
    return out


def test_every_cited_test_is_collected():
    cited = {ref for body in items().values() for ref in refs(body)}
    assert cited
    files = sorted({path for path, _ in cited})
    missing_files = [p for p in files if not os.path.isfile(os.path.join(ROOT, p))]
    assert not missing_files, missing_files
    found = collected(files)
    missing = sorted(f"{path}::{name}" for path, name in cited - found)
    assert not missing, f"cited in docs/http-checklist.md but not collected: {missing}"


def checklist_line_tests():
    with open(os.path.join(ROOT, CHECKLIST_TESTS), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return [node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and LINE_TEST.match(node.name)]


def test_every_line_test_is_cited_under_its_item():
    doc = items()
    names = checklist_line_tests()
    assert names
    uncited = [name for name in names
               if (CHECKLIST_TESTS, name) not in refs(doc.get(int(LINE_TEST.match(name)[1]), ""))]
    assert not uncited, f"not cited under their own item: {uncited}"


def test_no_line_test_is_cited_under_another_item():
    misplaced = [(n, name) for n, body in items().items() for _, name in refs(body)
                 if LINE_TEST.match(name) and int(LINE_TEST.match(name)[1]) != n]
    assert not misplaced, f"test_lineNN cited under another item: {misplaced}"

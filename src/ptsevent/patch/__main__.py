"""python -m ptsevent.patch [-m module | script.py] args...

Runs a program with everything patched first (ptsevent.patch.patch_all()),
as ``python script.py args...`` or ``python -m module args...`` would: the
program sees the same sys.argv, runs as ``__main__``, and finds its own
directory (for a script) or the current one (for -m) first on sys.path.
The runner's own errors (no such script or module) are one line on stderr.
"""

import os
import runpy
import sys
import zipfile

USAGE = "usage: python -m ptsevent.patch [-m module | script.py] [args...]"


def _fail(message, code):
    print(f"ptsevent.patch: {message}", file=sys.stderr)
    return code


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "-m":
        if len(argv) < 2:
            return _fail("argument -m needs a module name", 2)
        return _run_module(argv[1], argv[2:])
    if argv[0].startswith("-"):
        return _fail(f"unknown option {argv[0]!r}\n{USAGE}", 2)
    return _run_script(argv[0], argv[1:])


def _run_script(path, args):
    # The checks python itself makes before running a script, a directory
    # or a zip file, and its exit codes.
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "__main__.py")):
            return _fail(f"can't find '__main__' module in {path!r}", 1)
    else:
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            return _fail(f"can't open file {os.path.abspath(path)!r}: "
                         f"[Errno {exc.errno}] {exc.strerror}", 2)
    _patch()
    sys.argv = [path, *args]
    # sys.path[0] is the current directory (we run under -m); python puts
    # a script's own directory there instead, and for a directory or zip
    # file the path itself, which run_path inserts.
    if os.path.isdir(path) or zipfile.is_zipfile(path):
        del sys.path[0]
    else:
        sys.path[0] = os.path.dirname(os.path.abspath(path))
    runpy.run_path(path, run_name="__main__")
    return 0


def _run_module(name, args):
    import importlib.util

    _patch()
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        spec, why = None, str(exc)
    else:
        why = f"No module named {name!r}"
    if spec is None:
        return _fail(why, 1)
    sys.argv = [name, *args]  # runpy puts the module's file in argv[0]
    runpy.run_module(name, run_name="__main__", alter_sys=True)
    return 0


def _patch():
    import warnings

    import ptsevent.patch

    # What patching warns about is said in one line each, naming the
    # runner rather than a line of it; -W and PYTHONWARNINGS still apply.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ptsevent.patch.PatchWarning)
        ptsevent.patch.patch_all()
    for w in caught:
        warnings.warn_explicit(w.message, w.category, "ptsevent.patch", 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""src/ptsevent/_core.pyi describes the extension module as it is.

The stub is read with `ast` and compared with the imported module: the
same names at module level (private ones too: ptsevent's own modules call
them), the same bases and public methods and attributes in every class, a
stub method for a module method and an attribute for an attribute, and the
same parameters (names and kinds) wherever the module states a signature
(`__text_signature__`, from the docstrings of the C code). Type aliases
the stub defines for itself (`_ExcArg = ...`) are not names of the module.
"""

import ast
import inspect
import pathlib

from ptsevent import _core

STUB = pathlib.Path(__file__).resolve().parent.parent / "src" / "ptsevent" / "_core.pyi"

# A test hook the module has only when its PTSEVENT_ASSERT checks are
# compiled in (the sanitizer build, _core._ASSERTS): not part of its API.
ASSERTS_ONLY = {"_assign_event_on_stack"}

KIND = {
    "posonly": inspect.Parameter.POSITIONAL_ONLY,
    "arg": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "vararg": inspect.Parameter.VAR_POSITIONAL,
    "kwonly": inspect.Parameter.KEYWORD_ONLY,
    "kwarg": inspect.Parameter.VAR_KEYWORD,
}


def stub_params(fn):
    """[(name, kind)] of a stub function, as inspect names the kinds."""
    a = fn.args
    out = [(x.arg, KIND["posonly"]) for x in a.posonlyargs]
    out += [(x.arg, KIND["arg"]) for x in a.args]
    if a.vararg:
        out.append((a.vararg.arg, KIND["vararg"]))
    out += [(x.arg, KIND["kwonly"]) for x in a.kwonlyargs]
    if a.kwarg:
        out.append((a.kwarg.arg, KIND["kwarg"]))
    return out


def module_params(obj):
    """[(name, kind)] from the object's __text_signature__, or None."""
    if not getattr(obj, "__text_signature__", None):
        return None
    try:
        sig = inspect.signature(obj)
    except ValueError:
        return None
    return [(p.name, p.kind) for p in sig.parameters.values()]


def is_property(fn):
    return any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)


def members(body):
    """{name: node} of the definitions in a module's or a class's body,
    without the stub's own type aliases (plain assignments)."""
    out = {}
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            out[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
    return out


def is_dunder(name):
    return name.startswith("__") and name.endswith("__")


def fmt(params):
    return ", ".join(f"{n}:{k.name.lower()}" for n, k in params)


def compare_params(where, want, have, problems):
    """Compares a stub's parameters with the module's (None: unstated)."""
    if have is not None and have != want:
        problems.append(f"{where}: stub ({fmt(want)}) but module ({fmt(have)})")


def compare_method(where, stub_fn, method, problems):
    have = module_params(method)
    # `self`: positional-only in C, a plain parameter in stubs.
    compare_params(where, stub_params(stub_fn)[1:], have and have[1:], problems)


def compare_class(name, node, cls, problems):
    bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
    real = [b.__name__ for b in cls.__bases__ if b is not object]
    if bases != real:
        problems.append(f"{name}: stub bases {bases} but module bases {real}")
    stub = members(node.body)
    own = {n for n in vars(cls) if not n.startswith("_")}
    for n in sorted(own - set(stub)):
        problems.append(f"{name}.{n}: in the module, not in the stub")
    for n, member in stub.items():
        where = f"{name}.{n}"
        if n == "__getattr__":  # the stub's way to say: any attribute
            if "__dict__" not in dir(cls):
                problems.append(f"{where}: the instances have no __dict__")
            continue
        if n == "__init__":  # the constructor's signature is the class's
            compare_params(where, stub_params(member)[1:], module_params(cls), problems)
            continue
        if not hasattr(cls, n):
            problems.append(f"{where}: in the stub, not in the module")
            continue
        attr = inspect.getattr_static(cls, n)
        data = inspect.isdatadescriptor(attr) or not callable(attr)
        if isinstance(member, ast.FunctionDef) and not is_property(member):
            if data:
                problems.append(f"{where}: a method in the stub, an attribute in the module")
            else:
                compare_method(where, member, attr, problems)
        elif not data:
            problems.append(f"{where}: an attribute in the stub, a method in the module")


def check(stub_text, module):
    """The differences between a stub's text and the module, one per line."""
    tree = ast.parse(stub_text)
    stub = members(tree.body)
    names = {n for n in vars(module) if not is_dunder(n)} - ASSERTS_ONLY
    problems = [f"{n}: in the module, not in the stub" for n in sorted(names - set(stub))]
    for n, node in stub.items():
        if n not in names:
            problems.append(f"{n}: in the stub, not in the module")
            continue
        obj = getattr(module, n)
        if isinstance(node, ast.ClassDef):
            if not isinstance(obj, type):
                problems.append(f"{n}: a class in the stub, a {type(obj).__name__} in the module")
            else:
                compare_class(n, node, obj, problems)
        elif isinstance(node, ast.FunctionDef):
            if not callable(obj) or isinstance(obj, type):
                problems.append(f"{n}: a function in the stub, a {type(obj).__name__} in the module")
            else:
                compare_params(n, stub_params(node), module_params(obj), problems)
    return problems


def test_stub_matches_the_module():
    problems = check(STUB.read_text(), _core)
    assert not problems, "\n".join(problems)


def _without(text, line_start):
    lines = text.splitlines(keepends=True)
    kept = [ln for ln in lines if not ln.startswith(line_start)]
    assert len(kept) == len(lines) - 1, line_start
    return "".join(kept)


def test_a_function_missing_from_the_stub_is_reported():
    text = _without(STUB.read_text(), "def getmain(")
    assert check(text, _core) == ["getmain: in the module, not in the stub"]


def test_a_name_missing_from_the_module_is_reported():
    text = STUB.read_text() + "\ndef resume_everything() -> None: ...\n"
    assert check(text, _core) == ["resume_everything: in the stub, not in the module"]


def test_a_method_missing_from_the_stub_is_reported():
    text = _without(STUB.read_text(), "    def read_upto(")
    assert check(text, _core) == ["BufferedIo.read_upto: in the module, not in the stub"]


def test_a_parameter_the_module_does_not_take_is_reported():
    text = STUB.read_text().replace("def sleep(seconds: float = 0)", "def sleep(secs: float = 0)")
    problems = check(text, _core)
    assert len(problems) == 1 and problems[0].startswith("sleep: stub (secs:")

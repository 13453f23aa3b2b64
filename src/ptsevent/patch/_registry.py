"""What ptsevent.patch has replaced, and what was there before.

Every replacement goes through `replace()`, which records the original
once: patching only grows, and asking for an original works whatever was
patched and in which order. A name is "module" plus an attribute path
inside it: "sleep", or "Popen._wait" for an attribute of a class that is
changed in place (the class itself is kept, so objects and subclasses made
before patching change with it).
"""

import importlib
# The OS thread's identifier for ptsevent's own modules, whenever they are
# imported: patch_thread makes _thread.get_ident per tasklet, and this
# module is imported before any patching (patching goes through it).
from _thread import get_ident as os_thread_ident  # noqa: F401

_ABSENT = object()

# (module name, attribute path) -> the value before patching (or _ABSENT)
_originals = {}


def _module_name(module):
    return module if isinstance(module, str) else module.__name__


def _owner(module, name):
    obj = importlib.import_module(_module_name(module))
    *path, attr = name.split(".")
    for part in path:
        obj = getattr(obj, part)
    return obj, attr


def replace(module, name, value):
    """Set module.name (a dotted path: in place on a class) to value,
    keeping the original; a second call for the same name does nothing."""
    key = (_module_name(module), name)
    if key in _originals:
        return False
    owner, attr = _owner(module, name)
    if isinstance(owner, type):
        # The class's own entry (a function, not a bound method), or
        # _ABSENT when it was inherited: original() then finds the base's.
        before = owner.__dict__.get(attr, _ABSENT)
    else:
        before = getattr(owner, attr, _ABSENT)
    _originals[key] = before
    setattr(owner, attr, value)
    return True


def is_patched(module, name):
    """True once ptsevent.patch has replaced module.name."""
    return (_module_name(module), name) in _originals


def original(module, name):
    """module.name as it was before ptsevent.patch replaced it (its current
    value if it was never patched). original("time", "sleep") is the
    blocking time.sleep whatever has been patched."""
    key = (_module_name(module), name)
    if key in _originals:
        before = _originals[key]
        if before is not _ABSENT:
            return before
        owner, attr = _owner(module, name)
        if isinstance(owner, type):
            for base in owner.__mro__[1:]:
                if attr in base.__dict__:
                    return base.__dict__[attr]
        raise AttributeError(f"{key[0]}.{name} did not exist before patching")
    owner, attr = _owner(module, name)
    return getattr(owner, attr)


def patched_names():
    """The (module, name) pairs replaced so far, in patching order."""
    return list(_originals)


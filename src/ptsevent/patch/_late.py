"""Late patching, found and reported once, repaired where that is safe.

After patch_all() every loaded module is looked at for what patching could
not reach because it was there first:

- a module-level name bound to an original under its own name (``from
  socket import socket``, ``from time import sleep as _sleep``): rebound
  to the cooperative object; under another name (``real_sleep =
  time.sleep``, kept on purpose): reported only;
- a class attribute bound to one (``SocketCls = socket.socket``, also as
  a staticmethod): rebound;
- a class that subclasses an original class: reported (its instances
  still block; it cannot be re-based);
- a lock, condition, event, semaphore or queue made before patching, at
  module level or as a class attribute: reported, never replaced (objects
  other code already holds cannot be swapped safely);
- a threading.Thread started before patching: reported (it stays an OS
  thread);
- a C extension that does its own blocking I/O, which no patch reaches:
  reported at patch time if imported, and when it is imported later.

Third-party modules and ``__main__`` are reported in one LatePatchWarning
naming each module and attribute. The standard library's own references
(``ssl.create_connection``...) are rebound without a word: they are not
the program's doing, and the standard classes that hold originals on
purpose (ssl.SSLSocket, based on the socket class) are left alone.
"""

import sys

# C extensions doing network I/O in C, where no patch can reach.
C_LEVEL_IO = {
    "grpc": "gRPC's C core",
    "MySQLdb": "mysqlclient (MySQLdb), libmysqlclient's blocking calls",
    "confluent_kafka": "confluent_kafka, librdkafka's own threads and waits",
    "pylibmc": "pylibmc, libmemcached's blocking calls",
}

# Names whose original is still cooperative once other names are patched
# (pure-Python threading classes built on the patched Lock): rebound, not
# reported.
_HARMLESS = {("threading", "Condition"), ("threading", "Event"),
             ("threading", "Semaphore"), ("threading", "BoundedSemaphore"),
             ("threading", "RLock"),
             ("threading", "current_thread"), ("threading", "currentThread")}

# References the standard library holds on purpose.
_KEEP = {("ssl", "socket")}

# Originals that stay cooperative because they were changed in place
# (subprocess's selector is selectors.PollSelector): never rebound.
_IN_PLACE = {("subprocess", "_PopenSelector")}

_warned_c = set()
_reported = set()  # lines already in a warning: a later patch_all is quiet
_finder = None


def _stdlib(modname):
    return modname.partition(".")[0] in sys.stdlib_module_names


def _skip(modname, patched_modules):
    # ptsevent itself, the patched modules, and the C modules the originals
    # come from (_socket, posix, _queue...: ptsevent calls them directly).
    top = modname.partition(".")[0]
    return (top == "ptsevent" or modname in patched_modules
            or modname in sys.builtin_module_names
            or (top.startswith("_") and modname != "__main__")
            or top in ("importlib", "_pytest", "pytest"))


def _originals():
    """id(original) -> (original, [(module, name)...]) for module-level
    names (one original may be several: threading.Lock is
    _thread.allocate_lock)."""
    from ptsevent.patch import _registry

    found = {}
    for key, before in _registry._originals.items():
        if ("." in key[1] or before is _registry._ABSENT
                or key in _IN_PLACE):
            continue
        found.setdefault(id(before), (before, []))[1].append(key)
    return found


def _pick(keys, attr):
    """The key whose name attr is (``_sleep`` is ``sleep``), else None."""
    for key in keys:
        if attr.lstrip("_") == key[1].lstrip("_"):
            return key
    return None


def _blocking_types():
    """The types of objects made before patching that block the thread."""
    import _queue
    import _thread
    import threading

    from ptsevent.patch._registry import original

    kinds = [type(original("_thread", "allocate_lock")()),
             original("_thread", "RLock"), _queue.SimpleQueue]
    for name in ("Condition", "Event", "Semaphore", "Barrier"):
        kinds.append(original("threading", name))
    del _thread, threading
    return tuple(k for k in kinds if isinstance(k, type))


def _real_lock_queue(value, lock_types):
    import queue

    return (isinstance(value, queue.Queue)
            and isinstance(getattr(value, "mutex", None), lock_types))


def _current(key):
    from ptsevent.patch._registry import _owner

    owner, attr = _owner(*key)
    return getattr(owner, attr)


def scan():
    """Repair what can be repaired; return the lines to report."""
    from ptsevent.patch import _registry

    originals = _originals()
    if not originals:
        return []
    patched_modules = {m for m, _ in _registry._originals}
    lock_types = _blocking_types()
    orig_classes = [(v, ks[0]) for v, ks in originals.values()
                    if isinstance(v, type) and not set(ks) & _HARMLESS]
    lines = []
    for modname, module in list(sys.modules.items()):
        # A module run as __main__ (python -m ptsevent.wsgi) is known by
        # its spec's name.
        spec = getattr(module, "__spec__", None) if module is not None else None
        if module is None or _skip(getattr(spec, "name", None) or modname,
                                   patched_modules):
            continue
        quiet = _stdlib(modname)
        try:
            items = list(vars(module).items())
        except TypeError:
            continue
        for attr, value in items:
            if (modname, attr) in _KEEP:
                continue
            hit = originals.get(id(value))
            if hit is not None and hit[0] is value:
                key = _pick(hit[1], attr)
                line = _rebind(module, modname, attr, key or hit[1][0],
                               key is not None)
                if not quiet and (key or hit[1][0]) not in _HARMLESS:
                    lines.append(line)
                continue
            if quiet:
                continue
            if isinstance(value, lock_types) or _real_lock_queue(
                    value, lock_types):
                lines.append(f"{modname}.{attr} is a {type(value).__name__}"
                             " made before patching: it still blocks the "
                             "whole thread (not replaced)")
            elif isinstance(value, type) and value.__module__ == modname:
                lines += _scan_class(modname, attr, value, originals,
                                     lock_types, orig_classes)
    return lines + _os_threads()


def _os_threads():
    # Threads started before patching run on as OS threads.
    import threading

    if "threading" not in {m for m, _ in _registry_keys()}:
        return []
    lines = []
    for t in list(threading._active.values()):
        if (t is threading.main_thread()
                or isinstance(t, threading._DummyThread)
                or hasattr(t, "_ptsevent_os_ident")):
            continue
        lines.append(f"thread {t.name!r} ({type(t).__module__}."
                     f"{type(t).__qualname__}) was started before patching:"
                     " it stays an OS thread (see the rules for OS threads "
                     "sharing ptsevent objects)")
    return lines


def _registry_keys():
    from ptsevent.patch import _registry

    return list(_registry._originals)


def _rebind(owner, where, attr, key, same_name, wrap=None):
    # `from time import sleep` and `from time import sleep as _sleep`
    # are rebound; another name (`real_sleep = time.sleep`) says the
    # original was kept on purpose, and is only reported.
    name = f"{where}.{attr}"
    if not same_name:
        return (f"{name} holds the blocking {'.'.join(key)} under another "
                "name: left as it is")
    new = _current(key)
    try:
        setattr(owner, attr, new if wrap is None else wrap(new))
    except (AttributeError, TypeError):
        return (f"{name} is the blocking {'.'.join(key)} and cannot be "
                "rebound")
    return (f"{name} was the blocking {'.'.join(key)}: rebound to the "
            "cooperative one")


def _scan_class(modname, attr, cls, originals, lock_types, orig_classes):
    lines = []
    where = f"{modname}.{attr}"
    for base, key in orig_classes:
        if base in cls.__mro__[1:]:
            lines.append(f"{where} subclasses the blocking {'.'.join(key)}:"
                         " its instances still block")
    for name, value in list(cls.__dict__.items()):
        inner = value.__func__ if isinstance(value, staticmethod) else value
        hit = originals.get(id(inner))
        if hit is not None and hit[0] is inner:
            # A class attribute names what it is for (QueueCls,
            # lock_class): rebound whatever its name.
            key = _pick(hit[1], name) or hit[1][0]
            line = _rebind(cls, where, name, key, True,
                           staticmethod if inner is not value else None)
            if key not in _HARMLESS:
                lines.append(line)
        elif isinstance(value, lock_types) or _real_lock_queue(
                value, lock_types):
            lines.append(f"{where}.{name} is a {type(value).__name__} made "
                         "before patching: it still blocks the whole thread"
                         " (not replaced)")
    return lines


def _c_level_message(name):
    return (f"ptsevent.patch: {name} is imported: {C_LEVEL_IO[name]} do "
            "network I/O in C that no patch reaches; each call blocks every "
            "tasklet of its thread (run them with ptsevent.run_in_thread)")


class _CLevelFinder:
    """Warns when a C-level I/O module is imported; finds nothing itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in C_LEVEL_IO and fullname not in _warned_c:
            _warned_c.add(fullname)
            _warn_c(fullname, stacklevel=2)
        return None


def _warn_c(name, stacklevel):
    import warnings

    from ptsevent.patch import UnpatchableWarning

    warnings.warn(_c_level_message(name), UnpatchableWarning,
                  stacklevel=stacklevel + 1)


def after_patch_all(warn, stacklevel):
    """Report (one LatePatchWarning) and repair; watch later imports."""
    global _finder
    from ptsevent.patch import LatePatchWarning

    lines = [line for line in scan() if line not in _reported]
    _reported.update(lines)
    if lines:
        warn("ptsevent.patch: patched after these were imported or made:\n  "
             + "\n  ".join(lines) + "\ncall patch_all() before importing "
             "them (python -m ptsevent.patch runs a program patched from "
             "the start)", stacklevel + 1, LatePatchWarning)
    for name in C_LEVEL_IO:
        if name in sys.modules and name not in _warned_c:
            _warned_c.add(name)
            _warn_c(name, stacklevel + 1)
    if _finder is None:
        _finder = _CLevelFinder()
        sys.meta_path.insert(0, _finder)

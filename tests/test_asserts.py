"""PTSEVENT_ASSERT: the invariants the core's comments state are checked in
the sanitizer build (`make test-asan`) and compiled out in release."""

import signal

import pytest

from ptsevent import _core


def sanitizer_loaded():
    """Whether AddressSanitizer's runtime is in this process (the extension
    built with PTSEVENT_SANITIZE=ON cannot load without it)."""
    with open("/proc/self/maps") as maps:
        return any("libasan" in line for line in maps)


def test_asserts_are_on_exactly_in_the_sanitizer_build():
    assert isinstance(_core._ASSERTS, bool)
    assert _core._ASSERTS == sanitizer_loaded()
    # The hook that breaks an invariant exists only where it is checked.
    assert hasattr(_core, "_assign_event_on_stack") == _core._ASSERTS


@pytest.mark.skipif(not _core._ASSERTS,
                    reason="PTSEVENT_ASSERT is compiled out of this build "
                    "(only the sanitizer build, make test-asan, has it)")
@pytest.mark.parametrize("where", ["main", "spawned"])
def test_a_stack_callback_argument_aborts_with_a_clear_message(where,
                                                               run_python):
    proc = run_python(f"""
        import ptsevent
        from ptsevent import _core
        if {where!r} == "main":
            _core._assign_event_on_stack()
        else:
            ptsevent.spawn(_core._assign_event_on_stack).join()
        print("not stopped")
        """, timeout=60)
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stderr)
    assert "not stopped" not in proc.stdout
    assert ("ptsevent: internal invariant broken: a libevent callback "
            "argument is on a C stack") in proc.stderr
    assert "event_owner.h" in proc.stderr

"""Deadlines of the Python layer's loops: a call's timeout turned into a
point on the monotonic clock once, so that the waits of the call share what
is left of it (the C++ loops have hub/clock.h's Deadline)."""

from time import monotonic as _monotonic


def deadline(timeout):
    """None (no limit), or when `timeout` seconds (negative: 0) from now end."""
    return None if timeout is None else _monotonic() + max(timeout, 0)


def remaining(deadline):
    """None (no limit), or the seconds left until `deadline` (at least 0)."""
    return None if deadline is None else max(0.0, deadline - _monotonic())

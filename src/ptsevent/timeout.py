"""Timeout: bound the time a block of code may wait."""

from ptsevent import _core

_UNSET = object()


class Timeout(BaseException):
    """Raise an exception in the current tasklet after ``seconds``.

    ``Timeout`` derives from BaseException, so an ``except Exception`` retry
    loop in library code cannot swallow it. When it expires the tasklet that
    started it gets, at its wait point, this Timeout itself (exception None),
    or ``exception`` (a class, instantiated then, or an instance). With
    ``exception=False`` a ``with`` block ends silently on expiry.
    ``seconds=None`` never expires.
    """

    def __init__(self, seconds=None, exception=None):
        _core.parse_timeout(seconds, "Timeout")  # TypeError, ValueError
        if not (exception is None or exception is False or
                isinstance(exception, BaseException) or
                (isinstance(exception, type) and
                 issubclass(exception, BaseException))):
            raise TypeError("exception must be None, False, or a "
                            "BaseException class or instance")
        BaseException.__init__(self, seconds)
        self.seconds = seconds
        self.exception = exception
        self._timer = _core.Timer()

    @classmethod
    def start_new(cls, seconds=None, exception=None):
        t = cls(seconds, exception)
        t.start()
        return t

    def start(self):
        if self.seconds is None:
            return
        exc = self if self.exception in (None, False) else self.exception
        self._timer.start(self.seconds, exc)

    @property
    def pending(self):
        return self._timer.pending

    def cancel(self):
        self._timer.cancel()

    close = cancel

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, typ, value, tb):
        self.cancel()
        return value is self and self.exception is False

    def __str__(self):
        if self.seconds is None:
            return ""
        suffix = "" if self.seconds == 1 else "s"
        if self.exception in (None, False):
            return f"{self.seconds} second{suffix}"
        return f"{self.seconds} second{suffix}: {self.exception}"

    def __repr__(self):
        return (f"<{type(self).__name__} seconds={self.seconds!r} "
                f"exception={self.exception!r} pending={self.pending}>")


def with_timeout(seconds, function, *args, timeout_value=_UNSET, **kwargs):
    """Call function(*args, **kwargs) bounded by a Timeout of ``seconds``.

    On expiry return ``timeout_value`` if given, else raise the Timeout."""
    timeout = Timeout.start_new(seconds)
    try:
        return function(*args, **kwargs)
    except Timeout as t:
        if t is timeout and timeout_value is not _UNSET:
            return timeout_value
        raise
    finally:
        timeout.cancel()

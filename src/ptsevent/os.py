"""Cooperative pipes and files: os.pipe/read/write, open and fdopen.

Pipes, FIFOs, sockets, ttys and character devices are used in non-blocking
mode and waited on through the hub, so only the calling tasklet blocks.
Regular files (and block devices) are read and written with plain calls:
epoll cannot wait on them (they are always "ready"), and a read from the
page cache costs far less than a round trip through the thread pool; use
`ptsevent.run_in_thread` around a call that may hit a slow disk.

O_NONBLOCK belongs to the open file description, shared with every process
that holds the same descriptor (the shell that started us, for stdin and
stdout): a descriptor ptsevent did not create is put back to its original
mode when its file is closed, and at exit.
"""

import atexit as _atexit
import errno as _errno
import fcntl as _fcntl
import io as _io
import os as _os
import stat as _stat

from ptsevent import _core
from ptsevent.threadpool import run_in_thread as _run_in_thread

# The standard child waits, bound before ptsevent.patch may replace them.
_std_waitpid = _os.waitpid
_std_wait3 = _os.wait3
_std_wait4 = _os.wait4

__all__ = ["pipe", "read", "write", "open", "fdopen", "file_compat",
           "set_nonblocking", "waitpid", "wait", "wait3", "wait4",
           "wait_child_exit"]

_restore = {}  # fd -> original flags, for descriptors we did not create


def _pollable(fd):
    mode = _os.fstat(fd).st_mode
    return not (_stat.S_ISREG(mode) or _stat.S_ISBLK(mode) or
                _stat.S_ISDIR(mode))


# The one place that switches a descriptor to non-blocking mode and back
# (sockets, nbfile and the files below use these two).

def _make_nonblocking(fd):
    """Put fd in non-blocking mode. Returns its previous flags if it was
    blocking (what _give_back() restores), else None."""
    flags = _fcntl.fcntl(fd, _fcntl.F_GETFL)
    if flags & _os.O_NONBLOCK:
        return None
    _fcntl.fcntl(fd, _fcntl.F_SETFL, flags | _os.O_NONBLOCK)
    return flags


def _give_back(fd, flags):
    """Restore the flags _make_nonblocking() returned (None: nothing)."""
    if flags is not None:
        _fcntl.fcntl(fd, _fcntl.F_SETFL, flags)


def set_nonblocking(fd, created=False):
    """Put fd in non-blocking mode; unless `created`, remember to restore."""
    flags = _make_nonblocking(fd)
    if flags is not None and not created:
        _restore.setdefault(fd, flags)


def _restore_mode(fd):
    try:
        _give_back(fd, _restore.pop(fd, None))
    except OSError:
        pass


@_atexit.register
def _restore_all():
    for fd in list(_restore):
        _restore_mode(fd)


def pipe():
    """os.pipe() whose ends are non-blocking and usable cooperatively."""
    r, w = _os.pipe()
    set_nonblocking(r, created=True)
    set_nonblocking(w, created=True)
    return r, w


def read(fd, n):
    """os.read that blocks only the calling tasklet."""
    return _core.retry_read(fd, _os.read, fd, n)


def write(fd, data):
    """os.write that blocks only the calling tasklet."""
    return _core.retry_write(fd, _os.write, fd, data)


class CooperativeFileIO(_io.RawIOBase):
    """A raw file over a pollable descriptor (pipe, FIFO, tty, socket,
    character device) whose reads and writes wait cooperatively."""

    def __init__(self, fd, mode="r", closefd=True, created=False):
        super().__init__()
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise TypeError("an integer is required")
        if fd < 0:
            raise ValueError("negative file descriptor")
        self._fd = fd
        self._mode = mode
        self._closefd = closefd
        self._io = _core.IoHandle(fd)
        set_nonblocking(fd, created=created)

    def fileno(self):
        self._checkClosed()
        return self._fd

    def readable(self):
        return "r" in self._mode or "+" in self._mode

    def writable(self):
        return any(c in self._mode for c in "wax+")

    def isatty(self):
        self._checkClosed()
        return _os.isatty(self._fd)

    def readinto(self, buffer):
        self._checkClosed()
        if not self.readable():
            raise _io.UnsupportedOperation("not readable")
        return self._io.retry_read(0, _os.readv, self._fd, [buffer])

    def write(self, data):
        self._checkClosed()
        if not self.writable():
            raise _io.UnsupportedOperation("not writable")
        return self._io.retry_write(0, _os.write, self._fd, data)

    def close(self):
        if self.closed:
            return
        try:
            super().close()
        finally:
            self._io.close()
            _restore_mode(self._fd)
            if self._closefd:
                _os.close(self._fd)

    @property
    def mode(self):
        return self._mode

    def __repr__(self):
        return f"<ptsevent.os.CooperativeFileIO fd={self._fd} mode={self._mode!r}>"


def _wrap(raw, mode, buffering, encoding, errors, newline):
    binary = "b" in mode
    if buffering == 0:
        if not binary:
            raise ValueError("can't have unbuffered text I/O")
        return raw
    size = _io.DEFAULT_BUFFER_SIZE if buffering in (-1, None) or buffering == 1 \
        else buffering
    if raw.readable() and raw.writable():
        buf = _io.BufferedRWPair(raw, raw, size)
    elif raw.writable():
        buf = _io.BufferedWriter(raw, size)
    else:
        buf = _io.BufferedReader(raw, size)
    if binary:
        return buf
    return _io.TextIOWrapper(buf, encoding, errors, newline,
                             line_buffering=buffering == 1)


def _check_mode(mode, buffering):
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not "
                        f"{type(mode).__name__}")
    if buffering == 0 and "b" not in mode:
        raise ValueError("can't have unbuffered text I/O")


def open(file, mode="r", buffering=-1, encoding=None, errors=None,
         newline=None, closefd=True, opener=None):
    """builtins.open, cooperative for pipes, FIFOs, ttys and devices.

    A FIFO's open waits cooperatively: a writer until a reader exists, a
    reader until a writer has written or closed. Regular files are opened
    by builtins.open unchanged (see the module docstring)."""
    _check_mode(mode, buffering)
    if isinstance(file, int):
        return fdopen(file, mode, buffering, encoding, errors, newline, closefd)
    path = _os.fspath(file)
    try:
        st = _os.stat(path)
    except OSError:
        st = None
    if st is None or not (_stat.S_ISFIFO(st.st_mode) or _stat.S_ISCHR(st.st_mode)
                          or _stat.S_ISSOCK(st.st_mode)):
        return _io.open(file, mode, buffering, encoding, errors, newline,
                        closefd, opener)
    flags = _os.O_CLOEXEC | _os.O_NONBLOCK
    if "+" in mode:
        flags |= _os.O_RDWR
    elif any(c in mode for c in "wax"):
        flags |= _os.O_WRONLY
    else:
        flags |= _os.O_RDONLY
    if "a" in mode:
        flags |= _os.O_APPEND
    fifo = _stat.S_ISFIFO(st.st_mode)
    while True:
        try:
            fd = opener(path, flags) if opener else _os.open(path, flags)
            break
        except OSError as e:
            # A FIFO's writer waits (cooperatively) for a reader, as a
            # blocking open(2) would; O_NONBLOCK makes it fail with ENXIO.
            # Polling is the only way: the kernel signals no reader's
            # arrival. inotify's IN_OPEN comes only once a reader's open
            # has returned, and a blocking reader's open (`cat fifo`)
            # returns only once a writer exists: it would never come.
            if not (fifo and e.errno == _errno.ENXIO):
                raise
            _core.sleep(0.005)
    raw = CooperativeFileIO(fd, mode.replace("b", "").replace("t", ""),
                            closefd=True, created=True)
    if fifo and flags & _os.O_ACCMODE == _os.O_RDONLY:
        # A blocking open for reading returns once a writer exists; here the
        # reader waits until the first writer has written or gone, so that
        # its first read does not see an end of file before any writer.
        try:
            raw._io.wait_read()
        except BaseException:
            raw.close()
            raise
    raw.name = path
    return _wrap(raw, mode, buffering, encoding, errors, newline)


def fdopen(fd, mode="r", buffering=-1, encoding=None, errors=None,
           newline=None, closefd=True):
    """os.fdopen, cooperative when fd is pollable (not a regular file)."""
    if not isinstance(fd, int) or isinstance(fd, bool):
        raise TypeError(f"an integer is required (got type {type(fd).__name__})")
    _check_mode(mode, buffering)
    if not _pollable(fd):
        return _io.open(fd, mode, buffering, encoding, errors, newline, closefd)
    raw = CooperativeFileIO(fd, mode.replace("b", "").replace("t", ""),
                            closefd=closefd)
    raw.name = fd
    return _wrap(raw, mode, buffering, encoding, errors, newline)


file_compat = open


# -- waiting for child processes ---------------------------------------------
# A child's exit makes its pidfd (Linux 5.3) readable: the hub waits for that,
# and the standard call, made with WNOHANG, then reaps it. No SIGCHLD handler
# is involved, so nothing else in the process (a library's own handler, a
# waitpid in another thread) is disturbed. What a pidfd cannot express (any
# child, a process group, stops and continues) runs the blocking call in the
# thread pool.

def wait_child_exit(pid, timeout=None):
    """Block the calling tasklet until child `pid` has exited (it is not
    reaped) or `timeout` seconds pass (TimeoutError). False if no pidfd can
    be had for it (too old a kernel, no such process): the caller falls back
    to another way of waiting."""
    try:
        fd = _os.pidfd_open(pid)
    except (AttributeError, OSError):
        return False
    try:
        _core.wait_read(fd, timeout)
    finally:
        _os.close(fd)
    return True


def _child_wait(call, pid, options, *args):
    # call(*args, options) is one of the standard waits, whose result
    # starts with the pid (0: nothing to report yet, with WNOHANG).
    if options & _os.WNOHANG:
        return call(*args, options)
    if pid <= 0 or options & (_os.WUNTRACED | _os.WCONTINUED):
        return _run_in_thread(call, *args, options)
    while True:
        result = call(*args, options | _os.WNOHANG)
        if result[0]:
            return result
        if not wait_child_exit(pid):
            return _run_in_thread(call, *args, options)


def waitpid(pid, options):
    """os.waitpid that blocks only the calling tasklet."""
    return _child_wait(_std_waitpid, pid, options, pid)


def wait():
    """os.wait (any child), waited for in the thread pool."""
    return _run_in_thread(_std_waitpid, -1, 0)


def wait3(options):
    """os.wait3 (any child): blocking calls run in the thread pool."""
    return _child_wait(_std_wait3, -1, options)


def wait4(pid, options):
    """os.wait4 that blocks only the calling tasklet."""
    return _child_wait(_std_wait4, pid, options, pid)

"""The waits of the standard subprocess.Popen, made cooperative.

Popen itself is kept (objects and subclasses made before patching change
with it); these two functions become its `_wait` and `communicate`.
"""

import os
import subprocess
from time import monotonic

from ptsevent import _core

_std_wait = subprocess.Popen._wait
_std_communicate = subprocess.Popen.communicate

# communicate() without a timeout reads or writes a lone pipe with one
# blocking call; with a timeout it always takes its selector loop, which
# waits through the (cooperative) selector. This stands for "no timeout".
_NO_TIMEOUT = 100 * 365 * 86400.0


def communicate(self, input=None, timeout=None):
    """Popen.communicate, blocking only the calling tasklet."""
    if timeout is None:
        return _std_communicate(self, input, _NO_TIMEOUT)
    return _std_communicate(self, input, timeout)


def _wait(self, timeout):
    """Popen._wait (behind wait(), call(), run()): the tasklet waits for the
    child's pidfd; the child is then reaped under Popen's own lock, which is
    never held while waiting, so several tasklets may wait for one child."""
    if self.returncode is not None:
        return self.returncode
    deadline = None if timeout is None else monotonic() + timeout
    delay = 0.0005
    while True:
        pidfd = None
        no_pidfd = False
        if self._waitpid_lock.acquire(False):
            try:
                if self.returncode is not None:
                    return self.returncode
                pid, status = self._try_wait(os.WNOHANG)
                if pid == self.pid:
                    self._handle_exitstatus(status)
                    return self.returncode
                # Still running, and unreaped while we hold the lock: its
                # pid cannot name another process yet.
                try:
                    pidfd = os.pidfd_open(self.pid)
                except OSError:
                    no_pidfd = True
            finally:
                self._waitpid_lock.release()
        if no_pidfd:
            # The standard wait (it takes the lock itself): with a timeout
            # it polls with time.sleep, without one it calls os.waitpid,
            # cooperative when those are patched.
            left = None if deadline is None else max(deadline - monotonic(), 0)
            try:
                return _std_wait(self, left)
            except subprocess.TimeoutExpired:
                raise subprocess.TimeoutExpired(self.args, timeout) from None
        left = None if deadline is None else deadline - monotonic()
        if left is not None and left <= 0:
            if pidfd is not None:
                os.close(pidfd)
            raise subprocess.TimeoutExpired(self.args, timeout)
        if pidfd is None:
            # Another waiter is reaping right now: look again shortly.
            delay = min(delay * 2, 0.05)
            _core.sleep(delay if left is None else min(delay, left))
            continue
        try:
            _core.wait_read(pidfd, left)
        except TimeoutError:
            raise subprocess.TimeoutExpired(self.args, timeout) from None
        finally:
            os.close(pidfd)


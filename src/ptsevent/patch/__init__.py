"""Monkey-patching: unmodified blocking libraries become cooperative.

    import ptsevent.patch
    ptsevent.patch.patch_all()      # first thing, before other imports

or, for a whole program: ``python -m ptsevent.patch script.py args...`` or
``python -m ptsevent.patch -m module args...``.

Each area has its own function (patch_socket, patch_dns, patch_ssl,
patch_select, patch_selectors, patch_time, patch_os, patch_subprocess,
patch_signal);
each is idempotent and patching only grows: nothing is ever put back. Modules are
changed in place where other modules hold on to their objects (selector
classes, Popen), so that code which bound them at import (socketserver,
subprocess, multiprocessing.connection) becomes cooperative too.

`is_patched(module, name)` says whether a name was replaced, and
`original(module, name)` gives what was there before (``original("time",
"sleep")`` is the blocking sleep). ptsevent's own internals never use the
patched names: its thread pool is made of real OS threads, its resolvers
call the real resolver functions.
"""

import warnings

from ptsevent import _core
from ptsevent.patch._registry import is_patched, original, patched_names
from ptsevent.patch._registry import replace as _replace

__all__ = ["PatchWarning", "is_patched", "original", "patch_all",
           "patch_dns", "patch_os", "patch_select", "patch_selectors",
           "patch_signal", "patch_socket", "patch_ssl", "patch_subprocess",
           "patch_time", "patched_names"]


class PatchWarning(RuntimeWarning):
    """Patching left something blocking, or was asked to do two things."""


def _warn(message, stacklevel):
    warnings.warn(message, PatchWarning, stacklevel=stacklevel + 1)


# -- the areas ---------------------------------------------------------------

_SOCKET_NAMES = ("socket", "socketpair", "fromfd", "create_connection",
                 "create_server")
_DNS_NAMES = ("getaddrinfo", "gethostbyname", "gethostbyname_ex",
              "gethostbyaddr", "getnameinfo")
_ssl_warned = False


def _patch_names(module, source, names):
    for name in names:
        _replace(module, name, getattr(source, name))


def patch_socket():
    """socket.socket and the functions that make sockets (socketpair,
    fromfd, create_connection, create_server) become ptsevent's.

    ``socket.SocketType`` stays the C type ``_socket.socket``, as the
    standard library has it. Warns (PatchWarning) unless ssl is patched
    too: a standard ssl.SSLSocket over a cooperative socket would wait
    with blocking calls, stalling every tasklet of the thread."""
    _patch_socket()
    _warn_ssl_not_patched(stacklevel=2)


def _patch_socket():
    import ptsevent.socket as psocket

    _patch_names("socket", psocket, _SOCKET_NAMES)


def _warn_ssl_not_patched(stacklevel):
    global _ssl_warned
    if _ssl_warned or is_patched("ssl", "SSLContext.sslsocket_class"):
        return
    _ssl_warned = True
    _warn("ptsevent.patch: socket is patched but ssl is not: a TLS "
          "connection (https, smtplib's starttls, TLS database drivers) "
          "would wait with blocking calls and stall every tasklet of its "
          "thread; call patch_ssl() too", stacklevel + 1)


def patch_ssl():
    """Every ssl.SSLContext wraps sockets cooperatively: the standard
    class's ``sslsocket_class`` becomes ``ptsevent.ssl.SSLSocket`` (a
    subclass of ssl.SSLSocket). The class itself is never replaced, so
    contexts made before patching (a urllib3 pool's, truststore's) become
    cooperative too, and ``isinstance`` and the context's properties work
    as before. wrap_bio()/SSLObject do no I/O and are unchanged."""
    import ptsevent.ssl as pssl

    _replace("ssl", "SSLContext.sslsocket_class", pssl.SSLSocket)


def patch_dns():
    """getaddrinfo, gethostbyname, gethostbyname_ex, gethostbyaddr and
    getnameinfo resolve in ptsevent's thread pool (libc semantics, NSS
    honoured), blocking only the calling tasklet; a numeric address is
    answered in place. socket.getfqdn uses them, so it is cooperative too."""
    import ptsevent.socket as psocket

    _patch_names("socket", psocket, _DNS_NAMES)


def patch_select():
    """select.select, select.poll and select.epoll become cooperative.

    select() and poll() see the descriptors given when they start, as the
    standard ones do; an epoll object also sees what is registered while
    it waits (it waits for the epoll descriptor itself)."""
    import ptsevent.select as pselect

    _patch_names("select", pselect, ("select", "poll", "epoll"))


def patch_selectors():
    """The selectors module's classes wait cooperatively, changed in place.

    socketserver, subprocess and multiprocessing.connection bind
    ``selectors.PollSelector`` when imported, and PollSelector bound
    ``select.poll`` when it was created: so the classes themselves are
    given the cooperative poll, epoll and select (their ``_selector_cls``
    and ``_select``), and every selector made from now on, of a subclass
    or not, waits cooperatively. A selector made before patching holds a
    standard poll or epoll object: its next select() swaps in a
    cooperative one with the same registrations. DefaultSelector is
    EpollSelector, which sees registrations made while it waits."""
    import selectors

    import ptsevent.select as pselect

    _replace("selectors", "SelectSelector._select",
             staticmethod(pselect.select))
    _replace("selectors", "PollSelector._selector_cls", pselect.poll)
    _replace("selectors", "PollSelector.select",
             _adopting(selectors.PollSelector.select, pselect.poll,
                       _adopt_poll))
    if hasattr(selectors, "EpollSelector"):
        _replace("selectors", "EpollSelector._selector_cls", pselect.epoll)
        _replace("selectors", "EpollSelector.select",
                 _adopting(selectors.EpollSelector.select, pselect.epoll,
                           lambda sel: pselect.epoll(_ep=sel._selector)))


def _adopting(std_select, cooperative, adopt):
    # The standard select(), after replacing a standard poll object (of
    # a selector made before patching) by a cooperative one.
    def select(self, timeout=None):
        if not isinstance(self._selector, cooperative):
            self._selector = adopt(self)
        return std_select(self, timeout)

    select.__doc__ = std_select.__doc__
    return select


def _adopt_poll(sel):
    import selectors

    import ptsevent.select as pselect

    poll = pselect.poll()
    for key in sel._fd_to_key.values():
        mask = 0
        if key.events & selectors.EVENT_READ:
            mask |= pselect.POLLIN
        if key.events & selectors.EVENT_WRITE:
            mask |= pselect.POLLOUT
        poll.register(key.fd, mask)
    return poll


def _sleep(secs):
    """time.sleep that suspends only the calling tasklet."""
    _core.sleep(secs)


_sleep.__name__ = _sleep.__qualname__ = "sleep"


def patch_time():
    """time.sleep suspends only the calling tasklet."""
    _replace("time", "sleep", _sleep)


def patch_os():
    """os.waitpid, os.wait, os.wait3 and os.wait4 block only the calling
    tasklet: a wait for one child waits for its pidfd (no SIGCHLD handler
    is installed); a wait for any child, a process group or stopped
    children runs in ptsevent's thread pool. os.read and os.write are not
    patched: code that set O_NONBLOCK expects BlockingIOError from them
    (use ptsevent.os.read/write, or files from ptsevent.os.open). os.fork
    needs no patch: ptsevent renews its hub and thread pool in the child."""
    import ptsevent.os as pos

    _patch_names("os", pos, ("waitpid", "wait", "wait3", "wait4"))


def patch_subprocess():
    """subprocess.Popen (the standard class, changed in place) waits
    cooperatively: wait(), communicate(), and so call(), run(),
    check_output(). 50 tasklets each running ``subprocess.run(["sleep",
    "0.2"])`` finish in about 0.2 s."""
    from ptsevent.patch import _subprocess
    from ptsevent.select import PtseventSelector

    _replace("subprocess", "Popen._wait", _subprocess._wait)
    _replace("subprocess", "Popen.communicate", _subprocess.communicate)
    # communicate()'s selector loop, cooperative whether or not the
    # selectors module is patched.
    _replace("subprocess", "_PopenSelector", PtseventSelector)


def patch_signal():
    """A handler given to signal.signal runs in a tasklet of its own, so it
    may block cooperatively (sleep, socket I/O) without holding the other
    tasklets; an exception it raises goes to the main tasklet.
    signal.getsignal and signal.signal return the handler as given.
    SIG_DFL, SIG_IGN and default_int_handler are installed as they are
    (SIGINT still raises KeyboardInterrupt in the main tasklet).
    signal.set_wakeup_fd chains the descriptor with the hub's own: it
    receives the signal bytes, and the call returns the one set before.
    Only handlers installed after patching run in tasklets."""
    from ptsevent.patch import _signal

    _replace("signal", "signal",
             _signal.make_signal(original("signal", "signal")))
    _replace("signal", "getsignal",
             _signal.make_getsignal(original("signal", "getsignal")))
    _replace("signal", "set_wakeup_fd", _signal.set_wakeup_fd)


# -- everything --------------------------------------------------------------

_AREAS = ("socket", "dns", "ssl", "select", "selectors", "time", "os",
          "thread", "queue", "subprocess", "signal")
_IMPLEMENTED = {
    "socket": _patch_socket,
    "dns": patch_dns,
    "ssl": patch_ssl,
    "select": patch_select,
    "selectors": patch_selectors,
    "time": patch_time,
    "os": patch_os,
    "subprocess": patch_subprocess,
    "signal": patch_signal,
}
_requested = None  # the union of what patch_all calls asked for


def patch_all(socket=True, dns=True, ssl=True, select=True, selectors=True,
              time=True, os=True, thread=True, queue=True, subprocess=True,
              signal=True):
    """Patch every area asked for; call it before importing what it should
    affect. Idempotent; patching only grows: a later call asking for less
    patches nothing back, and one asking for something different warns
    (PatchWarning) naming the difference.

    This version patches socket, dns, ssl, select, selectors, time, os,
    subprocess and signal. ``thread`` and ``queue`` are accepted but
    not patched yet: threading.Thread still starts OS threads, and
    threading's and queue's locks block the whole thread (a tasklet that
    waits on one stalls the others of its thread until an OS thread
    releases it).
    With socket patched and ssl not (``ssl=False``), a PatchWarning says
    that TLS blocks.
    """
    global _requested
    asked = {"socket": socket, "dns": dns, "ssl": ssl, "select": select,
             "selectors": selectors, "time": time, "os": os,
             "thread": thread, "queue": queue, "subprocess": subprocess,
             "signal": signal}
    if _requested is None:
        _requested = dict(asked)
    else:
        differ = [f"{a}={bool(asked[a])} (before: {bool(_requested[a])})"
                  for a in _AREAS if bool(asked[a]) != bool(_requested[a])]
        if differ:
            _warn("ptsevent.patch.patch_all() called again with other "
                  "arguments: " + ", ".join(differ) + "; patching only "
                  "grows, what was patched stays patched", 2)
        for a in _AREAS:
            _requested[a] = bool(_requested[a] or asked[a])
    for area in _AREAS:
        if _requested[area] and area in _IMPLEMENTED:
            _IMPLEMENTED[area]()
    if _requested["select"] and _requested["selectors"]:
        # Database drivers that wait in C (psycopg, psycopg2) wait
        # cooperatively through the patched select/poll.
        from ptsevent.patch import _drivers

        _drivers.patch_drivers()
    if _requested["socket"]:
        _warn_ssl_not_patched(stacklevel=2)

"""Monkey-patching: unmodified blocking libraries become cooperative.

    import ptsevent.patch
    ptsevent.patch.patch_all()      # first thing, before other imports

or, for a whole program: ``python -m ptsevent.patch script.py args...`` or
``python -m ptsevent.patch -m module args...``.

Each area has its own function (patch_socket, patch_dns, patch_ssl,
patch_select, patch_selectors, patch_time, patch_os, patch_thread,
patch_queue, patch_subprocess, patch_signal); each is idempotent and
patching only grows: nothing is ever put back. Modules are changed in place
where other modules hold on to their objects (selector classes, Popen,
Queue, threading.Thread), so that code which bound them at import
(socketserver, subprocess, multiprocessing.connection, urllib3) becomes
cooperative too.

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
           "LatePatchWarning", "patch_dns", "patch_os", "patch_queue",
           "patch_select", "patch_selectors", "patch_signal", "patch_thread",
           "patch_socket", "patch_ssl", "patch_subprocess", "patch_time",
           "patched_names", "UnpatchableWarning"]


class PatchWarning(RuntimeWarning):
    """Patching left something blocking, or was asked to do two things."""


class LatePatchWarning(PatchWarning):
    """Something was imported or made before patching and stays blocking:
    a module holds an original (repaired), a class subclasses one, a lock
    exists, or a C extension does I/O that no patch reaches."""


class UnpatchableWarning(PatchWarning):
    """A C extension that does its own blocking I/O (grpc, mysqlclient,
    confluent_kafka, pylibmc) is imported: no patch reaches it."""


def _warn(message, stacklevel, category=PatchWarning):
    warnings.warn(message, category, stacklevel=stacklevel + 1)


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
    from ptsevent.select import PtseventPollSelector

    _replace("subprocess", "Popen._wait", _subprocess._wait)
    _replace("subprocess", "Popen.communicate", _subprocess.communicate)
    # communicate()'s selector loop, cooperative whether or not the
    # selectors module is patched; poll-based as the standard one is, so
    # any descriptor a stream gives (even a regular file's) is accepted.
    _replace("subprocess", "_PopenSelector", PtseventPollSelector)


_THREAD_NAMES = ("start_new_thread", "start_new", "allocate_lock", "allocate",
                 "get_ident", "_set_sentinel", "_count")


def patch_thread():
    """``threading.Thread`` (the standard class, kept) runs its target in a
    tasklet; Lock, RLock, Condition, Event, Semaphore, BoundedSemaphore and
    local become ptsevent's, so Barrier, Timer and everything built on
    them (queue, concurrent.futures.ThreadPoolExecutor) wait cooperatively.

    get_ident() is per tasklet; the main tasklet of the main thread keeps
    the main thread's identifier, so ``main_thread() is current_thread()``
    there. get_native_id() stays the OS thread's. At exit the interpreter
    joins non-daemon tasklet threads. Lock objects made before patching
    are never replaced; ``original("_thread", "get_ident")`` is the OS
    thread's identifier (for profilers)."""
    import threading

    import ptsevent.locks as plocks
    from ptsevent._local import local
    from ptsevent.event import Event
    from ptsevent.patch import _thread

    for name in _THREAD_NAMES:
        alias = {"start_new": "start_new_thread", "allocate": "allocate_lock"}
        _replace("_thread", name, getattr(_thread, alias.get(name, name)))
    _replace("_thread", "LockType", plocks.Lock)
    _replace("_thread", "RLock", plocks.RLock)
    _replace("_thread", "_local", local)
    for name, value in (("_start_new_thread", _thread.start_new_thread),
                        ("_allocate_lock", _thread.allocate_lock),
                        ("_set_sentinel", _thread._set_sentinel),
                        ("get_ident", _thread.get_ident),
                        ("Lock", plocks.Lock), ("_CRLock", plocks.RLock),
                        ("RLock", plocks.RLock),
                        ("Condition", plocks.Condition), ("Event", Event),
                        ("Semaphore", plocks.Semaphore),
                        ("BoundedSemaphore", plocks.BoundedSemaphore),
                        ("local", local)):
        _replace("threading", name, value)
    _replace("threading", "Thread._set_ident", _thread.thread_set_ident)
    _replace("threading", "_make_invoke_excepthook",
             _thread.make_invoke_excepthook(threading._make_invoke_excepthook))
    # The standard currentThread() warns that it is deprecated, then calls
    # the module's current_thread(): this one, so it is left alone.
    _replace("threading", "current_thread",
             _thread._make_current_thread(threading))


def patch_queue():
    """queue.Queue, LifoQueue and PriorityQueue (the standard classes,
    changed in place: subclasses and class attributes made before patching
    follow) wait cooperatively, with their usual attributes (mutex,
    not_empty, not_full, all_tasks_done, queue, unfinished_tasks);
    queue.SimpleQueue becomes a cooperative class. Queues made before
    patching keep their blocking locks."""
    from ptsevent.patch import _queue

    _replace("queue", "Queue.__init__", _queue.queue_init)
    _replace("queue", "SimpleQueue", _queue.SimpleQueue)


def patch_signal():
    """A handler given to signal.signal runs in a tasklet of its own, so it
    may block cooperatively (sleep, socket I/O) without holding the other
    tasklets; an exception it raises goes to the main tasklet.
    signal.getsignal and signal.signal return the handler as given.
    SIG_DFL, SIG_IGN and default_int_handler are installed as they are
    (SIGINT still raises KeyboardInterrupt in the main tasklet).
    signal.set_wakeup_fd chains the descriptor with the hub's own: it
    receives the signal bytes, and the call returns the one set before.
    Only handlers installed after patching run in tasklets.
    signal.pause() suspends the calling tasklet until a handler has run;
    signal.raise_signal() and _thread.interrupt_main() let the handler's
    tasklet run before they return, as the standard ones run the handler."""
    from ptsevent.patch import _signal

    _replace("signal", "signal",
             _signal.make_signal(original("signal", "signal")))
    _replace("signal", "getsignal",
             _signal.make_getsignal(original("signal", "getsignal")))
    _replace("signal", "set_wakeup_fd", _signal.set_wakeup_fd)
    _replace("signal", "pause", _signal.pause)
    _replace("signal", "raise_signal", _signal.make_then_run_handlers(
        original("signal", "raise_signal"), "signal"))
    _replace("_thread", "interrupt_main", _signal.make_then_run_handlers(
        original("_thread", "interrupt_main"), "_thread"))


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
    "thread": patch_thread,
    "queue": patch_queue,
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
    thread, queue, subprocess and signal. Once patched, every loaded module
    is checked for what was there first (see ptsevent.patch._late): names
    bound to originals are rebound and one LatePatchWarning names each
    module and attribute that was, or that still blocks; a C extension
    doing its own I/O (grpc, mysqlclient, confluent_kafka, pylibmc) gives
    an UnpatchableWarning, now or when it is imported later. With socket
    patched and ssl not (``ssl=False``), a PatchWarning says that TLS
    blocks.
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
    from ptsevent.patch import _late

    _late.after_patch_all(_warn, stacklevel=2)

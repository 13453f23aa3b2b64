#include "io/io_handle.h"

#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <structmember.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>

#include "hub/tasklet.h"
#include "hub/timeout.h"
#include "hub/timer.h"
#include "io/tls_calls.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::io {

using hub::Hub;
using hub::Tasklet;

PyTypeObject* IoHandleType = nullptr;

// recv(n) receives into a per-thread scratch buffer and copies what came
// into a bytes object of the exact size, for n up to kScratchMax (or larger
// n on a stream whose queued bytes fit in it): cheaper than allocating n
// bytes and shrinking them for every message, and above glibc's mmap
// threshold (128 KiB) it avoids an mmap, page faults and a munmap per call.
// The buffer starts at kScratchSmall and grows on demand.
constexpr Py_ssize_t kScratchSmall = 64 * 1024;
constexpr Py_ssize_t kScratchMax = 256 * 1024;
// ... except after a read of kLargeRead bytes or more, when a request of at
// most kDirectMax (well below the mmap threshold) receives straight into
// its bytes object: copying that much from the scratch buffer costs more
// than shrinking a heap block.
constexpr Py_ssize_t kLargeRead = 32 * 1024;
constexpr Py_ssize_t kDirectMax = 64 * 1024;

namespace {

void set_ebadf() {
  errno = EBADF;
  PyErr_SetFromErrno(PyExc_OSError);
}

int parse_seconds(PyObject* obj, double* out) {
  return hub::parse_timeout(obj, hub::TimeoutMode::kStrict, out);
}

// The timeout of one call: 0 with MSG_DONTWAIT in its flags (the socket
// module's rule: that call never waits), else the argument when given
// (None: none), else the handle's own (what socket.settimeout stored).
int call_seconds(IoHandle* h, PyObject* obj, int flags, double* out) {
  if (flags & MSG_DONTWAIT) {
    *out = 0;
    return 0;
  }
  if (!obj) {
    *out = h->timeout_;
    return 0;
  }
  return parse_seconds(obj, out);
}

}  // namespace

// ---------------------------------------------------------------- waiting

void IoHandle::wake_all(hub::WaitList* list) noexcept {
  // Runs from libevent callbacks, maybe without the GIL: no Python.
  list->take_all([this](hub::WaitRecord* r) { hub_->schedule(r->tasklet); });
}

void IoHandle::on_event(evutil_socket_t, short what, void* arg) {
  IoHandle* h = static_cast<IoHandle*>(arg);
  if (what & EV_CLOSED) h->peer_closed_ = true;
  if (what & (EV_READ | EV_CLOSED)) {
    h->maybe_readable_ = true;
    h->wake_all(&h->readers_);
  }
  if (what & EV_WRITE) h->wake_all(&h->writers_);
}

void IoHandle::unregister() noexcept {
  if (!registered_) return;
  event_del(&ev_);
  registered_ = false;
  hub_->count(hub::Source::kIdleRegistration, -1);
}

int IoHandle::wait(short what, double seconds) {
  if (closed_) return set_ebadf(), -1;
  Hub* hub = Hub::get();
  if (!hub) return -1;
  if (hub != hub_ || hub->serial() != hub_serial_) {
    // First use from another thread: move the registration to its hub.
    if (!readers_.empty() || !writers_.empty()) {
      PyErr_SetString(PyExc_RuntimeError,
                      "this descriptor is being waited on in another thread");
      return -1;
    }
    if (registered_ && Hub::alive(hub_, hub_serial_) &&
        release_from_owner() < 0)
      return -1;
    registered_ = false;
    hub_ = hub;
    hub_serial_ = hub->serial();
  }
  Tasklet* t = hub->current();
  if (!t) return -1;
  if (!registered_) {
    // One persistent edge-triggered registration for the descriptor's
    // lifetime: epoll reports the current state on ADD, so a descriptor
    // that became ready before this point still wakes us.
    // EV_CLOSED (EPOLLRDHUP) tells a peer's shutdown apart from data, for
    // the drained-stream shortcut (maybe_readable_).
    hub::assign_event(&ev_, hub->base(), fd_,
                      EV_READ | EV_WRITE | EV_PERSIST | EV_ET | EV_CLOSED,
                      on_event, this);
    errno = 0;
    if (event_add(&ev_, nullptr) < 0) {
      if (errno)
        PyErr_SetFromErrno(PyExc_OSError);
      else
        PyErr_SetString(PyExc_OSError, "libevent: cannot watch the descriptor");
      return -1;
    }
    registered_ = true;
    hub->count(hub::Source::kIdleRegistration, 1);
  }
  IoWait* r = spare_.take();
  if (!r) return PyErr_NoMemory(), -1;
  // Listed, the tasklet waits on the persistent event: that counts as
  // something that can wake it.
  hub->count(hub::Source::kListedWaiter, 1);
  bool woken;  // wake_all took it off the list
  int rc = t->wait_listed(what == EV_READ ? &readers_ : &writers_, r, seconds,
                          &woken);
  hub->count(hub::Source::kListedWaiter, -1);
  spare_.give(r);
  if (rc < 0) return -1;
  if (closed_) return set_ebadf(), -1;
  return woken ? 0 : rc;
}

// The registration is moving to this thread's hub: the hub that holds it
// may be polling without the GIL right now, so it drops the registration
// itself (_release_in_owner, posted to it) and then hands this tasklet a
// remote Waiter's result: no polling here, one wake-up when it is done.
int IoHandle::release_from_owner() {
  py::Ref done = py::Ref::steal(PyObject_CallFunction(
      reinterpret_cast<PyObject*>(hub::WaiterType), "i", 1));
  if (!done) return -1;
  py::Ref args = py::Ref::steal(PyTuple_Pack(1, done.get()));
  if (!args) return -1;
  if (Hub::post_method(hub_->thread_ident(), self(), "_release_in_owner",
                       args.get()) < 0) {
    PyErr_Clear();  // that hub is closing: its base goes with it
    return 0;
  }
  // Bounded: a hub that closes before it runs the posted call never answers.
  py::Ref got = py::Ref::steal(
      PyObject_CallMethod(done.get(), "get", "d", kReleaseTimeout));
  if (!got) {
    if (!PyErr_ExceptionMatches(PyExc_TimeoutError)) return -1;
    PyErr_Clear();
  }
  if (registered_ && Hub::alive(hub_, hub_serial_)) {
    PyErr_SetString(PyExc_RuntimeError,
                    "the hub of the thread that last waited on this "
                    "descriptor did not release it");
    return -1;
  }
  return 0;
}

// ------------------------------------------------------------- the object

static PyObject* IoHandle_new(PyTypeObject* type, PyObject* args,
                              PyObject* kwds) {
  static const char* kwlist[] = {"fd", "stream", nullptr};
  int fd;
  int stream = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "i|p:IoHandle",
                                   const_cast<char**>(kwlist), &fd, &stream))
    return nullptr;
  if (fd < 0) {
    PyErr_Format(PyExc_ValueError,
                 "file descriptor cannot be a negative integer (%d)", fd);
    return nullptr;
  }
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  IoHandle* h = reinterpret_cast<IoHandle*>(type->tp_alloc(type, 0));
  if (!h) return nullptr;
  new (&h->readers_) hub::WaitList();
  new (&h->writers_) hub::WaitList();
  new (&h->spare_) hub::WaitRecordPool<IoWait>();
  h->hub_ = hub;
  h->hub_serial_ = hub->serial();
  h->fd_ = fd;
  h->stream_ = stream;
  h->timeout_ = -1;
  h->maybe_readable_ = true;
  return h->self();
}

// The last reference went in a thread other than the one whose hub has
// the descriptor registered: that hub may be polling without the GIL, so
// it drops the registration itself. The posted bound method resurrects the
// handle until then (it is freed afterwards, in that thread).
static void IoHandle_finalize(IoHandle* h) {
  if (!h->registered_ || Hub::here(h->hub_, h->hub_serial_) ||
      !Hub::alive(h->hub_, h->hub_serial_))
    return;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  if (Hub::post_method(h->hub_->thread_ident(), h->self(),
                       "_release_in_owner") < 0)
    PyErr_Clear();  // that hub is closing: its base goes with it
  PyErr_Restore(type, value, tb);
}

// After IoHandle_finalize (py::make_heap_type's dealloc).
static void IoHandle_destroy(IoHandle* h) {
  // Here: this thread's hub, or one that is closing (its thread is in its
  // teardown, not polling, while we hold the GIL).
  // A waiting tasklet holds a reference to the handle: nobody waits here.
  PTSEVENT_ASSERT(h->readers_.empty() && h->writers_.empty(),
                  "a descriptor handle is freed while tasklets wait on it");
  if (h->registered_ && Hub::alive(h->hub_, h->hub_serial_)) h->unregister();
  h->spare_.destroy();
}

// close(): forget the descriptor (the caller closes it afterwards). Waiters
// wake up and raise OSError(EBADF).
// Unregisters and wakes the waiters; in the handle's own hub thread.
static void close_here(IoHandle* h) {
  h->unregister();
  h->wake_all(&h->readers_);
  h->wake_all(&h->writers_);
}

static PyObject* IoHandle_close(IoHandle* h, PyObject*) {
  if (h->closed_) Py_RETURN_NONE;
  h->closed_ = true;
  if (Hub::here(h->hub_, h->hub_serial_)) {
    close_here(h);
  } else if (h->registered_ && Hub::alive(h->hub_, h->hub_serial_)) {
    // Another thread's hub, which may be polling without the GIL right
    // now: it unregisters and wakes its own waiters (the bound method
    // keeps this handle alive until then).
    if (Hub::post_method(h->hub_->thread_ident(), h->self(),
                         "_close_in_owner") < 0) {
      PyErr_Clear();  // that hub is closing: nothing is left to wake
      h->registered_ = false;
    }
  } else {
    h->registered_ = false;
  }
  Py_RETURN_NONE;
}

static PyObject* IoHandle_close_in_owner(IoHandle* h, PyObject*) {
  if (Hub::here(h->hub_, h->hub_serial_)) close_here(h);
  Py_RETURN_NONE;
}

// _release_in_owner([done]): in the owner hub's thread; done (a remote
// Waiter) tells the thread taking the descriptor over.
static PyObject* IoHandle_release_in_owner(IoHandle* h, PyObject* const* args,
                                           Py_ssize_t nargs) {
  if (Hub::here(h->hub_, h->hub_serial_)) h->unregister();
  if (nargs > 0) return PyObject_CallMethod(args[0], "switch", nullptr);
  Py_RETURN_NONE;
}

static PyObject* wait_call(IoHandle* h, short what, PyObject* const* args,
                           Py_ssize_t nargs) {
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "expected at most 1 argument (timeout)");
    return nullptr;
  }
  double seconds;
  if (parse_seconds(nargs ? args[0] : Py_None, &seconds) < 0) return nullptr;
  int rc = h->wait(what, seconds);
  if (rc < 0) return nullptr;
  if (rc == 1) {
    PyErr_SetString(PyExc_TimeoutError, "timed out");
    return nullptr;
  }
  Py_RETURN_NONE;
}

static PyObject* IoHandle_wait_read(IoHandle* h, PyObject* const* args,
                                    Py_ssize_t nargs) {
  return wait_call(h, EV_READ, args, nargs);
}

static PyObject* IoHandle_wait_write(IoHandle* h, PyObject* const* args,
                                     Py_ssize_t nargs) {
  return wait_call(h, EV_WRITE, args, nargs);
}

int wait_if_drained(IoHandle* h, const Deadline& d) {
  if (h->should_try_read() || d.never_wait()) return 0;
  errno = EAGAIN;
  return retry_after_failure(h, EV_READ, d) < 0 ? -1 : 0;
}

int retry_after_failure(IoHandle* h, short what, const Deadline& d) {
  int err = errno;
  if (err == EINTR) return Hub::check_signals() < 0 ? -1 : 1;
  if (what == EV_READ && (err == EAGAIN || err == EWOULDBLOCK) &&
      !h->peer_closed_) {
    h->maybe_readable_ = false;
    h->unconfirmed_ = false;
  }
  if (err != EAGAIN && err != EWOULDBLOCK) {
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
  }
  if (d.never_wait()) {
    PyErr_SetFromErrno(PyExc_OSError);  // BlockingIOError, as the stdlib
    return -1;
  }
  double left = d.wait_seconds();
  if (!d.forever() && left <= 0) {
    PyErr_SetString(PyExc_TimeoutError, "timed out");
    return -1;
  }
  int rc = h->wait(what, left);
  if (rc < 0) return -1;
  if (rc == 1) {
    PyErr_SetString(PyExc_TimeoutError, "timed out");
    return -1;
  }
  return 1;
}

// This thread's scratch buffer, at least `size` (<= kScratchMax) bytes.
static char* scratch_buffer(Py_ssize_t size) {
  static thread_local char small[kScratchSmall];
  static thread_local std::unique_ptr<char[]> large;
  if (size <= kScratchSmall) return small;
  if (!large) {
    large.reset(new (std::nothrow) char[kScratchMax]);
    if (!large) PyErr_NoMemory();
  }
  return large.get();
}

// recv(bufsize, flags=0, timeout=None) -> bytes
static PyObject* IoHandle_recv(IoHandle* h, PyObject* const* args,
                               Py_ssize_t nargs) {
  Py_ssize_t size;
  int flags = 0;
  PyObject* timeout = nullptr;
  if (nargs == 1 && PyLong_CheckExact(args[0])) {
    // recv(n), the common call: no format string to interpret.
    size = PyLong_AsSsize_t(args[0]);
    if (size == -1 && PyErr_Occurred()) return nullptr;
  } else if (!_PyArg_ParseStack(args, nargs, "n|iO:recv", &size, &flags,
                                &timeout)) {
    return nullptr;
  }
  if (size < 0) {
    PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
    return nullptr;
  }
  double seconds;
  if (call_seconds(h, timeout, flags, &seconds) < 0) return nullptr;
  // recv(0) asks for nothing: return at once, never wait for data.
  if (size == 0) return PyBytes_FromStringAndSize(nullptr, 0);
  Deadline d(seconds);
  if (size > kScratchMax && h->stream_ && !flags) {
    // More than the scratch buffer holds: if what is queued fits in it,
    // read at most that much there (a stream read may return less than
    // asked) rather than allocate `size` bytes for it.
    if (h->closed_) return set_ebadf(), nullptr;
    if (wait_if_drained(h, d) < 0) return nullptr;
    int queued = 0;
    if (ioctl(h->fd_, FIONREAD, &queued) == 0 && queued <= kScratchMax)
      size = kScratchMax;
  }
  bool direct =
      size > kScratchMax || (h->last_read_ >= kLargeRead && size <= kDirectMax);
  if (!direct) {
    char* scratch = scratch_buffer(size);
    if (!scratch) return nullptr;
    for (;;) {
      if (h->closed_) return set_ebadf(), nullptr;
      if (!flags && wait_if_drained(h, d) < 0) return nullptr;
      ssize_t n = recv(h->fd_, scratch, size, flags);
      if (n >= 0) {
        if (!flags) h->after_read(n, size);
        h->note_read(n);
        return PyBytes_FromStringAndSize(scratch, n);
      }
      if (retry_after_failure(h, EV_READ, d) < 0) return nullptr;
    }
  }
  PyObject* buf = PyBytes_FromStringAndSize(nullptr, size);
  if (!buf) return nullptr;
  for (;;) {
    if (h->closed_) {
      Py_DECREF(buf);
      return set_ebadf(), nullptr;
    }
    if (!flags && wait_if_drained(h, d) < 0) {
      Py_DECREF(buf);
      return nullptr;
    }
    ssize_t n = recv(h->fd_, PyBytes_AS_STRING(buf), size, flags);
    if (n >= 0) {
      if (!flags) h->after_read(n, size);
      h->note_read(n);
      if (n != size && _PyBytes_Resize(&buf, n) < 0) return nullptr;
      return buf;
    }
    int rc = retry_after_failure(h, EV_READ, d);
    if (rc < 0) {
      Py_DECREF(buf);
      return nullptr;
    }
  }
}

// recv_into(buffer, nbytes=0, flags=0, timeout=None) -> int
static PyObject* IoHandle_recv_into(IoHandle* h, PyObject* const* args,
                                    Py_ssize_t nargs) {
  Py_buffer view;
  Py_ssize_t nbytes = 0;
  int flags = 0;
  PyObject* timeout = nullptr;
  if (!_PyArg_ParseStack(args, nargs, "w*|niO:recv_into", &view, &nbytes,
                         &flags, &timeout))
    return nullptr;
  PyObject* result = nullptr;
  double seconds;
  if (nbytes < 0) {
    PyErr_SetString(PyExc_ValueError, "negative buffersize in recv_into");
  } else if (nbytes > view.len) {
    PyErr_SetString(PyExc_ValueError, "buffer too small for requested bytes");
  } else if (call_seconds(h, timeout, flags, &seconds) == 0) {
    if (nbytes == 0) nbytes = view.len;
    if (nbytes == 0) result = PyLong_FromLong(0);  // nothing asked for
    Deadline d(seconds);
    while (!result) {
      if (h->closed_) {
        set_ebadf();
        break;
      }
      if (!flags && wait_if_drained(h, d) < 0) break;
      ssize_t n = recv(h->fd_, view.buf, nbytes, flags);
      if (n >= 0) {
        if (!flags) h->after_read(n, nbytes);
        result = PyLong_FromSsize_t(n);
        break;
      }
      if (retry_after_failure(h, EV_READ, d) < 0) break;
    }
  }
  PyBuffer_Release(&view);
  return result;
}

// send(data, flags=0, timeout=None) -> int
// sendall(data, flags=0, timeout=None) -> None (timeout covers the call)
static PyObject* send_impl(IoHandle* h, PyObject* const* args, Py_ssize_t nargs,
                           bool all) {
  Py_buffer view;
  int flags = 0;
  PyObject* timeout = nullptr;
  if (nargs == 1 && PyBytes_CheckExact(args[0])) {
    // send(data) with bytes, the common call: the format string's result
    // without interpreting it.
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return nullptr;
  } else if (!_PyArg_ParseStack(args, nargs,
                                all ? "y*|iO:sendall" : "y*|iO:send", &view,
                                &flags, &timeout)) {
    return nullptr;
  }
  double seconds;
  if (call_seconds(h, timeout, flags, &seconds) < 0) {
    PyBuffer_Release(&view);
    return nullptr;
  }
  Deadline d(seconds);
  const char* p = static_cast<const char*>(view.buf);
  Py_ssize_t left = view.len;
  PyObject* result = nullptr;
  for (;;) {
    if (h->closed_) {
      set_ebadf();
      break;
    }
    ssize_t n = send(h->fd_, p, left, flags);
    if (n >= 0) {
      if (n > 0) h->after_send();
      if (!all) {
        result = PyLong_FromSsize_t(n);
        break;
      }
      p += n;
      left -= n;
      if (left == 0) {
        result = Py_NewRef(Py_None);
        break;
      }
      continue;
    }
    if (retry_after_failure(h, EV_WRITE, d) < 0) break;
  }
  PyBuffer_Release(&view);
  return result;
}

static PyObject* IoHandle_send(IoHandle* h, PyObject* const* args,
                               Py_ssize_t nargs) {
  return send_impl(h, args, nargs, false);
}

static PyObject* IoHandle_sendall(IoHandle* h, PyObject* const* args,
                                  Py_ssize_t nargs) {
  return send_impl(h, args, nargs, true);
}

// ------------------------------------------------- calls made in Python

// retry_read(flags, fn, *args) / retry_write(...): fn(*args) until it does
// not raise BlockingIOError, waiting for the descriptor in between, within
// the handle's timeout (one deadline for the whole call). With the timeout
// 0, or MSG_DONTWAIT in flags (an int; anything else is fn's to refuse),
// the BlockingIOError reaches the caller.
static PyObject* retry_call(IoHandle* h, short what, PyObject* const* args,
                            Py_ssize_t nargs) {
  if (nargs < 2) {
    PyErr_SetString(PyExc_TypeError,
                    "expected flags, a callable and its arguments");
    return nullptr;
  }
  int flags = 0;
  if (PyLong_Check(args[0])) {
    long v = PyLong_AsLong(args[0]);
    if (v == -1 && PyErr_Occurred()) PyErr_Clear();
    flags = static_cast<int>(v & MSG_DONTWAIT);
  }
  double seconds;
  call_seconds(h, nullptr, flags, &seconds);
  Deadline d(seconds);
  return retry_python_call(
      args + 1, static_cast<size_t>(nargs - 1), d, [&]() -> int {
        errno = EAGAIN;
        return retry_after_failure(h, what, d) < 0 ? -1 : 0;
      });
}

static PyObject* IoHandle_retry_read(IoHandle* h, PyObject* const* args,
                                     Py_ssize_t nargs) {
  return retry_call(h, EV_READ, args, nargs);
}

static PyObject* IoHandle_retry_write(IoHandle* h, PyObject* const* args,
                                      Py_ssize_t nargs) {
  return retry_call(h, EV_WRITE, args, nargs);
}

// finish_connect(err) -> err: after connect_ex() on the non-blocking
// descriptor returned err, what a blocking connect within the timeout
// would have: EINPROGRESS waits until writable (TimeoutError), then the
// socket's SO_ERROR; EISCONN is success. Non-blocking, err as it is.
static PyObject* IoHandle_finish_connect(IoHandle* h, PyObject* arg) {
  long value = PyLong_AsLong(arg);
  if (value == -1 && PyErr_Occurred()) return nullptr;
  int err = static_cast<int>(value);
  if (err == EISCONN) return PyLong_FromLong(0);
  if (err != EINPROGRESS && err != EAGAIN && err != EALREADY)
    return PyLong_FromLong(err);
  Deadline d(h->timeout_);
  if (d.never_wait()) return PyLong_FromLong(err);
  errno = EAGAIN;
  if (retry_after_failure(h, EV_WRITE, d) < 0) return nullptr;
  socklen_t len = sizeof err;
  if (getsockopt(h->fd_, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    return PyErr_SetFromErrno(PyExc_OSError);
  return PyLong_FromLong(err);
}

// --------------------------------------------------- datagram addresses
// recvfrom/recvfrom_into/sendto make the system call here for the
// families whose addresses the socket module writes simply (IPv4, IPv6,
// Unix); for the others, and for addresses that need a name lookup, they
// return NotImplemented before any system call, and the socket makes the
// standard call inside retry_read/retry_write.

namespace {

int family_of(IoHandle* h) {
  if (!h->family_) {
    int family = 0;
    socklen_t len = sizeof family;
    if (getsockopt(h->fd_, SOL_SOCKET, SO_DOMAIN, &family, &len) < 0)
      family = -1;
    h->family_ = family;
  }
  return h->family_;
}

bool native_family(int family) {
  return family == AF_INET || family == AF_INET6 || family == AF_UNIX;
}

// The address the socket module gives for `sa` (as its makesockaddr).
PyObject* address_object(const sockaddr_storage& ss, socklen_t len) {
  if (len == 0) Py_RETURN_NONE;
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  switch (ss.ss_family) {
    case AF_INET: {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
      if (!inet_ntop(AF_INET, &a->sin_addr, host, sizeof host))
        return PyErr_SetFromErrno(PyExc_OSError);
      return Py_BuildValue("(si)", host, ntohs(a->sin_port));
    }
    case AF_INET6: {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
      // A scope makes the text "addr%interface", as getnameinfo writes it.
      int rc =
          a->sin6_scope_id
              ? getnameinfo(reinterpret_cast<const sockaddr*>(a), len, host,
                            sizeof host, nullptr, 0, NI_NUMERICHOST)
              : (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host) ? 0
                                                                       : -1);
      if (rc != 0) {
        PyErr_SetString(PyExc_OSError, "cannot write an IPv6 address");
        return nullptr;
      }
      return Py_BuildValue("(siII)", host, ntohs(a->sin6_port),
                           ntohl(a->sin6_flowinfo), a->sin6_scope_id);
    }
    case AF_UNIX: {
      const auto* a = reinterpret_cast<const sockaddr_un*>(&ss);
      size_t off = offsetof(sockaddr_un, sun_path);
      size_t n = len > off ? len - off : 0;
      if (n > 0 && a->sun_path[0] == 0)  // the abstract namespace
        return PyBytes_FromStringAndSize(a->sun_path, n);
      return PyUnicode_DecodeFSDefaultAndSize(a->sun_path,
                                              strnlen(a->sun_path, n));
    }
  }
  PyErr_SetString(PyExc_OSError, "unexpected address family");
  return nullptr;
}

// Fills *ss from a numeric (host, port) for an IPv4 or IPv6 socket: false
// for anything else (a name, a scope, flowinfo, a port out of range: the
// socket module's own conversion says what it means or what is wrong).
bool numeric_address(int family, PyObject* addr, sockaddr_storage* ss,
                     socklen_t* len) {
  if (!PyTuple_CheckExact(addr) || PyTuple_GET_SIZE(addr) != 2) return false;
  PyObject* host = PyTuple_GET_ITEM(addr, 0);
  PyObject* port_obj = PyTuple_GET_ITEM(addr, 1);
  if (!PyUnicode_CheckExact(host) || !PyLong_CheckExact(port_obj)) return false;
  long port = PyLong_AsLong(port_obj);
  if (port < 0 || port > 65535) {
    PyErr_Clear();
    return false;
  }
  Py_ssize_t n;
  const char* text = PyUnicode_AsUTF8AndSize(host, &n);
  if (!text) {
    PyErr_Clear();
    return false;
  }
  std::memset(ss, 0, sizeof *ss);
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(ss);
    if (inet_pton(AF_INET, text, &a->sin_addr) != 1) return false;
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof *a;
    return true;
  }
  if (family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(ss);
    if (inet_pton(AF_INET6, text, &a->sin6_addr) != 1) return false;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof *a;
    return true;
  }
  return false;
}

}  // namespace

// recvfrom(bufsize, flags=0) -> (bytes, address), or NotImplemented.
static PyObject* IoHandle_recvfrom(IoHandle* h, PyObject* const* args,
                                   Py_ssize_t nargs) {
  Py_ssize_t size;
  int flags = 0;
  if (!_PyArg_ParseStack(args, nargs, "n|i:recvfrom", &size, &flags))
    return nullptr;
  if (size < 0) {
    PyErr_SetString(PyExc_ValueError, "negative buffersize in recvfrom");
    return nullptr;
  }
  if (h->closed_) return set_ebadf(), nullptr;
  if (!native_family(family_of(h))) Py_RETURN_NOTIMPLEMENTED;
  double seconds;
  call_seconds(h, nullptr, flags, &seconds);
  Deadline d(seconds);
  py::Ref buf = py::Ref::steal(PyBytes_FromStringAndSize(nullptr, size));
  if (!buf) return nullptr;
  for (;;) {
    if (h->closed_) return set_ebadf(), nullptr;
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ssize_t n = recvfrom(h->fd_, PyBytes_AS_STRING(buf.get()), size, flags,
                         reinterpret_cast<sockaddr*>(&ss), &len);
    if (n >= 0) {
      py::Ref addr = py::Ref::steal(address_object(ss, len));
      if (!addr) return nullptr;
      PyObject* data = buf.release();
      if (n != size && _PyBytes_Resize(&data, n) < 0) return nullptr;
      return PyTuple_Pack(2, py::Ref::steal(data).get(), addr.get());
    }
    if (retry_after_failure(h, EV_READ, d) < 0) return nullptr;
  }
}

// recvfrom_into(buffer, nbytes=0, flags=0) -> (nbytes, address), or
// NotImplemented.
static PyObject* IoHandle_recvfrom_into(IoHandle* h, PyObject* const* args,
                                        Py_ssize_t nargs) {
  Py_buffer view;
  Py_ssize_t nbytes = 0;
  int flags = 0;
  if (!_PyArg_ParseStack(args, nargs, "w*|ni:recvfrom_into", &view, &nbytes,
                         &flags))
    return nullptr;
  PyObject* result = nullptr;
  if (nbytes < 0) {
    PyErr_SetString(PyExc_ValueError, "negative buffersize in recvfrom_into");
  } else if (nbytes > view.len) {
    PyErr_SetString(PyExc_ValueError,
                    "nbytes is greater than the length of the buffer");
  } else if (h->closed_) {
    set_ebadf();
  } else if (!native_family(family_of(h))) {
    result = Py_NewRef(Py_NotImplemented);
  } else {
    if (nbytes == 0) nbytes = view.len;
    double seconds;
    call_seconds(h, nullptr, flags, &seconds);
    Deadline d(seconds);
    for (;;) {
      if (h->closed_) {
        set_ebadf();
        break;
      }
      sockaddr_storage ss;
      socklen_t len = sizeof ss;
      ssize_t n = recvfrom(h->fd_, view.buf, nbytes, flags,
                           reinterpret_cast<sockaddr*>(&ss), &len);
      if (n >= 0) {
        py::Ref addr = py::Ref::steal(address_object(ss, len));
        if (addr) result = Py_BuildValue("(nO)", n, addr.get());
        break;
      }
      if (retry_after_failure(h, EV_READ, d) < 0) break;
    }
  }
  PyBuffer_Release(&view);
  return result;
}

// sendto(data[, flags], address) -> int, or NotImplemented.
static PyObject* IoHandle_sendto(IoHandle* h, PyObject* const* args,
                                 Py_ssize_t nargs) {
  Py_buffer view;
  int flags = 0;
  PyObject* addr;
  if (nargs == 2) {
    if (!_PyArg_ParseStack(args, nargs, "y*O:sendto", &view, &addr))
      return nullptr;
  } else if (nargs == 3) {
    if (!_PyArg_ParseStack(args, nargs, "y*iO:sendto", &view, &flags, &addr))
      return nullptr;
  } else {
    PyErr_Format(PyExc_TypeError, "sendto() takes 2 or 3 arguments (%zd given)",
                 nargs);
    return nullptr;
  }
  PyObject* result = nullptr;
  sockaddr_storage ss;
  socklen_t len = 0;
  if (h->closed_) {
    set_ebadf();
  } else if (!numeric_address(family_of(h), addr, &ss, &len)) {
    result = Py_NewRef(Py_NotImplemented);
  } else {
    double seconds;
    call_seconds(h, nullptr, flags, &seconds);
    Deadline d(seconds);
    for (;;) {
      if (h->closed_) {
        set_ebadf();
        break;
      }
      ssize_t n = sendto(h->fd_, view.buf, view.len, flags,
                         reinterpret_cast<const sockaddr*>(&ss), len);
      if (n >= 0) {
        result = PyLong_FromSsize_t(n);
        break;
      }
      if (retry_after_failure(h, EV_WRITE, d) < 0) break;
    }
  }
  PyBuffer_Release(&view);
  return result;
}

static PyObject* IoHandle_get_fileno(IoHandle* h, void*) {
  return PyLong_FromLong(h->closed_ ? -1 : h->fd_);
}

static PyObject* IoHandle_get_closed(IoHandle* h, void*) {
  return PyBool_FromLong(h->closed_);
}

static PyObject* IoHandle_get_timeout(IoHandle* h, void*) {
  return h->timeout_ < 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(h->timeout_);
}

static int IoHandle_set_timeout(IoHandle* h, PyObject* v, void*) {
  if (!v) {
    PyErr_SetString(PyExc_AttributeError, "cannot delete the timeout");
    return -1;
  }
  return hub::parse_timeout(v, hub::TimeoutMode::kSocket, &h->timeout_);
}

static PyMethodDef IoHandle_methods[] = {
    {"wait_read", py::method(IoHandle_wait_read), METH_FASTCALL,
     "wait_read($self, timeout=None, /)\n--\n\n"
     "wait_read(timeout=None): wait until readable; TimeoutError."},
    {"tls_read", py::method(IoHandle_tls_read), METH_FASTCALL,
     "tls_read($self, sslobj, lock, len, buffer=None, /)\n--\n\n"
     "sslobj.read(len[, buffer]) with lock held, waiting while it raises "
     "SSLWantReadError/SSLWantWriteError, within the handle's timeout; "
     "NotImplemented when non-blocking or the lock is held elsewhere."},
    {"tls_write", py::method(IoHandle_tls_write), METH_FASTCALL,
     "tls_write($self, sslobj, lock, data, /)\n--\n\n"
     "sslobj.write(data) as tls_read() reads."},
    {"wait_write", py::method(IoHandle_wait_write), METH_FASTCALL,
     "wait_write($self, timeout=None, /)\n--\n\n"
     "wait_write(timeout=None): wait until writable; TimeoutError."},
    {"recv", py::method(IoHandle_recv), METH_FASTCALL,
     "recv($self, bufsize, flags=0, timeout=None, /)\n--\n\n"
     "recv(bufsize, flags=0, timeout=None) -> bytes"},
    {"recv_into", py::method(IoHandle_recv_into), METH_FASTCALL,
     "recv_into($self, buffer, nbytes=0, flags=0, timeout=None, /)\n--\n\n"
     "recv_into(buffer, nbytes=0, flags=0, timeout=None) -> int"},
    {"send", py::method(IoHandle_send), METH_FASTCALL,
     "send($self, data, flags=0, timeout=None, /)\n--\n\n"
     "send(data, flags=0, timeout=None) -> int"},
    {"sendall", py::method(IoHandle_sendall), METH_FASTCALL,
     "sendall($self, data, flags=0, timeout=None, /)\n--\n\n"
     "sendall(data, flags=0, timeout=None): the timeout bounds the call."},
    {"recvfrom", py::method(IoHandle_recvfrom), METH_FASTCALL,
     "recvfrom($self, bufsize, flags=0, /)\n--\n\n"
     "socket.recvfrom within the handle's timeout; NotImplemented for an "
     "address family it does not write."},
    {"recvfrom_into", py::method(IoHandle_recvfrom_into), METH_FASTCALL,
     "recvfrom_into($self, buffer, nbytes=0, flags=0, /)\n--\n\n"
     "socket.recvfrom_into as recvfrom()."},
    {"sendto", py::method(IoHandle_sendto), METH_FASTCALL,
     "sendto($self, data, flags_or_address, address=None, /)\n--\n\n"
     "socket.sendto within the handle's timeout; NotImplemented for an "
     "address that is not a numeric IPv4/IPv6 (host, port)."},
    {"retry_read", py::method(IoHandle_retry_read), METH_FASTCALL,
     "retry_read($self, flags, fn, /, *args)\n--\n\n"
     "fn(*args), waiting until readable while it raises BlockingIOError, "
     "within the handle's timeout (none with MSG_DONTWAIT in flags)."},
    {"retry_write", py::method(IoHandle_retry_write), METH_FASTCALL,
     "retry_write($self, flags, fn, /, *args)\n--\n\n"
     "retry_read() waiting until writable."},
    {"finish_connect", py::method(IoHandle_finish_connect), METH_O,
     "finish_connect($self, err, /)\n--\n\n"
     "After connect_ex() returned err: wait (within the timeout) for an "
     "EINPROGRESS connection; returns its error number (0: connected)."},
    {"close", py::method(IoHandle_close), METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Unregister; waiters raise OSError(EBADF). Does not close the fd."},
    {"_close_in_owner", py::method(IoHandle_close_in_owner), METH_NOARGS,
     "_close_in_owner($self, /)\n--\n\n"
     "close()'s work, posted to the handle's hub by another thread"},
    {"_release_in_owner", py::method(IoHandle_release_in_owner), METH_FASTCALL,
     "_release_in_owner($self, done=None, /)\n--\n\n"
     "drop the registration, posted to the handle's hub by a thread that "
     "takes the descriptor over"},
    {nullptr, nullptr, 0, nullptr}};

static PyGetSetDef IoHandle_getset[] = {
    {"fileno", reinterpret_cast<getter>(IoHandle_get_fileno), nullptr,
     "the descriptor, or -1 once closed", nullptr},
    {"closed", reinterpret_cast<getter>(IoHandle_get_closed), nullptr, nullptr,
     nullptr},
    {"timeout", reinterpret_cast<getter>(IoHandle_get_timeout),
     reinterpret_cast<setter>(IoHandle_set_timeout),
     "the socket's timeout (None: wait forever, 0: never), read as "
     "socket.settimeout reads it",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

static PyMemberDef IoHandle_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(IoHandle, weakrefs_), READONLY,
     nullptr},
    {nullptr, 0, 0, 0, nullptr}};

PyTypeObject* make_io_handle_type() {
  PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(IoHandle_new)},
      {Py_tp_methods, IoHandle_methods},
      {Py_tp_getset, IoHandle_getset},
      {Py_tp_members, IoHandle_members},
      {Py_tp_doc, const_cast<char*>(
                      "IoHandle(fd, stream=False)\n--\n\n"
                      "IoHandle(fd): cooperative waits and I/O loops for one "
                      "non-blocking descriptor.")},
      {0, nullptr}};
  PyType_Spec spec = {"ptsevent._core.IoHandle", sizeof(IoHandle), 0,
                      Py_TPFLAGS_DEFAULT, slots};
  IoHandleType = py::make_heap_type<IoHandle, nullptr, IoHandle_destroy,
                                    IoHandle_finalize>(&spec);
  return IoHandleType;
}

}  // namespace ptsevent::io

// The IoHandle engine (see io_handle.h): the registration and the waits,
// close, and the I/O loops (recv, send, the datagram calls, the retries of
// calls made in Python), on C++ arguments.
#include "io/io_handle.h"

#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>

#include "hub/tasklet.h"
#include "hub/timer.h"

namespace ptsevent::io {

using hub::Hub;
using hub::Tasklet;

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

// ---------------------------------------------------------------- close

// Unregisters and wakes the waiters; in the handle's own hub thread.
static void close_here(IoHandle* h) {
  h->unregister();
  h->wake_all(&h->readers_);
  h->wake_all(&h->writers_);
}

PyObject* io_handle_close(IoHandle* h) {
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

void io_handle_close_in_owner(IoHandle* h) {
  if (Hub::here(h->hub_, h->hub_serial_)) close_here(h);
}

void io_handle_release_in_owner(IoHandle* h) {
  if (Hub::here(h->hub_, h->hub_serial_)) h->unregister();
}

// ------------------------------------------------------------ the loops

PyObject* io_handle_wait(IoHandle* h, short what, double seconds) {
  int rc = h->wait(what, seconds);
  if (rc < 0) return nullptr;
  if (rc == 1) {
    PyErr_SetString(PyExc_TimeoutError, "timed out");
    return nullptr;
  }
  Py_RETURN_NONE;
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

// recv(): what comes after the argument checks.
PyObject* io_handle_recv(IoHandle* h, Py_ssize_t size, int flags,
                         double seconds) {
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

PyObject* io_handle_recv_into(IoHandle* h, void* buf, Py_ssize_t nbytes,
                              int flags, double seconds) {
  PyObject* result = nullptr;
  if (nbytes == 0) result = PyLong_FromLong(0);  // nothing asked for
  Deadline d(seconds);
  while (!result) {
    if (h->closed_) {
      set_ebadf();
      break;
    }
    if (!flags && wait_if_drained(h, d) < 0) break;
    ssize_t n = recv(h->fd_, buf, nbytes, flags);
    if (n >= 0) {
      if (!flags) h->after_read(n, nbytes);
      result = PyLong_FromSsize_t(n);
      break;
    }
    if (retry_after_failure(h, EV_READ, d) < 0) break;
  }
  return result;
}

PyObject* io_handle_send(IoHandle* h, const char* data, Py_ssize_t len,
                         int flags, double seconds, bool all) {
  Deadline d(seconds);
  const char* p = data;
  Py_ssize_t left = len;
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
  return result;
}

// ------------------------------------------------- calls made in Python

PyObject* io_handle_retry(IoHandle* h, short what, PyObject* const* call,
                          size_t n, double seconds) {
  Deadline d(seconds);
  return retry_python_call(call, n, d, [&]() -> int {
    errno = EAGAIN;
    return retry_after_failure(h, what, d) < 0 ? -1 : 0;
  });
}

PyObject* io_handle_finish_connect(IoHandle* h, int err) {
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

PyObject* io_handle_recvfrom(IoHandle* h, Py_ssize_t size, int flags,
                             double seconds) {
  if (h->closed_) return set_ebadf(), nullptr;
  if (!native_family(family_of(h))) Py_RETURN_NOTIMPLEMENTED;
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

PyObject* io_handle_recvfrom_into(IoHandle* h, void* buf, Py_ssize_t nbytes,
                                  int flags, double seconds) {
  PyObject* result = nullptr;
  if (h->closed_) {
    set_ebadf();
  } else if (!native_family(family_of(h))) {
    result = Py_NewRef(Py_NotImplemented);
  } else {
    Deadline d(seconds);
    for (;;) {
      if (h->closed_) {
        set_ebadf();
        break;
      }
      sockaddr_storage ss;
      socklen_t len = sizeof ss;
      ssize_t n = recvfrom(h->fd_, buf, nbytes, flags,
                           reinterpret_cast<sockaddr*>(&ss), &len);
      if (n >= 0) {
        py::Ref addr = py::Ref::steal(address_object(ss, len));
        if (addr) result = Py_BuildValue("(nO)", n, addr.get());
        break;
      }
      if (retry_after_failure(h, EV_READ, d) < 0) break;
    }
  }
  return result;
}

PyObject* io_handle_sendto(IoHandle* h, const void* data, Py_ssize_t len,
                           int flags, PyObject* addr, double seconds) {
  PyObject* result = nullptr;
  sockaddr_storage ss;
  socklen_t addr_len = 0;
  if (h->closed_) {
    set_ebadf();
  } else if (!numeric_address(family_of(h), addr, &ss, &addr_len)) {
    result = Py_NewRef(Py_NotImplemented);
  } else {
    Deadline d(seconds);
    for (;;) {
      if (h->closed_) {
        set_ebadf();
        break;
      }
      ssize_t n = sendto(h->fd_, data, len, flags,
                         reinterpret_cast<const sockaddr*>(&ss), addr_len);
      if (n >= 0) {
        result = PyLong_FromSsize_t(n);
        break;
      }
      if (retry_after_failure(h, EV_WRITE, d) < 0) break;
    }
  }
  return result;
}

}  // namespace ptsevent::io

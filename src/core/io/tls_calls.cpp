#include "io/tls_calls.h"

#include <poll.h>

#include <iterator>

#include "hub/lock.h"
#include "io/tls_ssl.h"
#include "py/method.h"

namespace ptsevent::io {

namespace {

constexpr const char* kReadTimedOut = "The read operation timed out";
constexpr const char* kWriteTimedOut = "The write operation timed out";
// The largest plaintext a TLS record carries: a read returns at most one
// record's worth.
constexpr Py_ssize_t kFullRecord = 16 * 1024;

// Interned method names and the ssl module's Want errors, for the life of
// the process (found on first use).
struct Names {
  PyObject* read;
  PyObject* write;
  PyObject* pending;
  PyObject* acquire;
  PyObject* release;
  // The SSLSocket's attributes and slow paths (ssl.py).
  PyObject* sslobj;
  PyObject* io;
  PyObject* rlock;
  PyObject* wlock;
  PyObject* suppress_ragged_eofs;
  PyObject* recv_slow;
  PyObject* sendall_slow;
  PyObject* len_1024;    // recv()'s default length
  PyObject* len_record;  // kFullRecord
  PyObject* want_read;
  PyObject* want_write;
  PyObject* ssl_error;
  long ssl_error_eof;
};
Names names;

int init_names() {
  if (names.want_write) return 0;
  const char* strings[] = {"read",       "write",
                           "pending",    "acquire",
                           "release",    "_sslobj",
                           "_io",        "_rlock",
                           "_wlock",     "suppress_ragged_eofs",
                           "_recv_slow", "_sendall_slow"};
  PyObject** slots[] = {&names.read,      &names.write,
                        &names.pending,   &names.acquire,
                        &names.release,   &names.sslobj,
                        &names.io,        &names.rlock,
                        &names.wlock,     &names.suppress_ragged_eofs,
                        &names.recv_slow, &names.sendall_slow};
  static_assert(std::size(strings) == std::size(slots));
  for (size_t i = 0; i < std::size(strings); ++i) {
    if (*slots[i]) continue;
    *slots[i] = PyUnicode_InternFromString(strings[i]);
    if (!*slots[i]) return -1;
  }
  if (!names.len_1024 && !(names.len_1024 = PyLong_FromLong(1024))) return -1;
  if (!names.len_record &&
      !(names.len_record = PyLong_FromSsize_t(kFullRecord)))
    return -1;
  PyObject* ssl = PyImport_ImportModule("ssl");
  if (!ssl) return -1;
  PyObject* want_read = PyObject_GetAttrString(ssl, "SSLWantReadError");
  PyObject* want_write =
      want_read ? PyObject_GetAttrString(ssl, "SSLWantWriteError") : nullptr;
  PyObject* ssl_error =
      want_write ? PyObject_GetAttrString(ssl, "SSLError") : nullptr;
  PyObject* eof =
      ssl_error ? PyObject_GetAttrString(ssl, "SSL_ERROR_EOF") : nullptr;
  Py_DECREF(ssl);
  long eof_code = eof ? PyLong_AsLong(eof) : -1;
  Py_XDECREF(eof);
  if (eof_code == -1 && PyErr_Occurred()) {
    Py_XDECREF(want_read);
    Py_XDECREF(want_write);
    Py_XDECREF(ssl_error);
    return -1;
  }
  names.want_read = want_read;
  names.ssl_error = ssl_error;
  names.ssl_error_eof = eof_code;
  names.want_write = want_write;  // last: the "done" mark
  return 0;
}

// lock.acquire(False): 1 taken, 0 held elsewhere, -1 error.
int try_acquire(PyObject* lock) {
  if (Py_IS_TYPE(lock, hub::LockType)) return hub::lock_try_acquire(lock);
  PyObject* args[] = {lock, Py_False};
  PyObject* got = PyObject_VectorcallMethod(names.acquire, args, 2, nullptr);
  if (!got) return -1;
  int taken = PyObject_IsTrue(got);
  Py_DECREF(got);
  return taken;
}

// lock.release(), keeping the error in flight (if any) unless release
// itself fails.
int release(PyObject* lock) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyObject* done =
      Py_IS_TYPE(lock, hub::LockType)
          ? hub::lock_release(lock)
          : PyObject_VectorcallMethod(names.release, &lock, 1, nullptr);
  if (!done) {
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return -1;
  }
  Py_DECREF(done);
  PyErr_Restore(type, value, tb);
  return type ? -1 : 0;
}

// The direction the failed call asks to wait for (EV_READ/EV_WRITE, the
// error cleared), or 0 for any other error (left set).
short wanted() {
  if (PyErr_ExceptionMatches(names.want_read)) {
    PyErr_Clear();
    return EV_READ;
  }
  if (PyErr_ExceptionMatches(names.want_write)) {
    PyErr_Clear();
    return EV_WRITE;
  }
  return 0;
}

// Waits within the call's deadline: 0 ready, -1 error (TimeoutError with
// the standard library's message when the deadline passed).
int wait_within(IoHandle* h, short what, const Deadline& d,
                const char* timed_out) {
  double left = d.wait_seconds();
  int rc = !d.forever() && left <= 0 ? 1 : h->wait(what, left);
  if (rc == 1) PyErr_SetString(PyExc_TimeoutError, timed_out);
  return rc == 0 ? 0 : -1;
}

// Before a read with nothing received left over in sslobj: when the
// descriptor has nothing either, wait for it first (a poll() costs less than
// an SSL_read failing with EAGAIN and reported as SSLWantReadError). ssl,
// when known, also tells of records read ahead and not yet decrypted.
// 0: no wait needed, 1: waited, -1: error.
int wait_before_read(IoHandle* h, PyObject* sslobj, tls::Ssl* ssl,
                     const Deadline& d) {
  int left_over;
  if (ssl) {
    left_over = tls::has_pending(ssl);
  } else {
    PyObject* pending =
        PyObject_VectorcallMethod(names.pending, &sslobj, 1, nullptr);
    if (!pending) return -1;
    left_over = PyObject_IsTrue(pending);
    Py_DECREF(pending);
  }
  if (left_over != 0 || h->closed_) return left_over < 0 ? -1 : 0;
  struct pollfd p = {h->fd_, POLLIN, 0};
  // Readable, or poll failed: the read itself tells.
  if (poll(&p, 1, 0) != 0) return 0;
  return wait_within(h, EV_READ, d, kReadTimedOut) < 0 ? -1 : 1;
}

// call(args) until it stops asking to wait, lock held; see tls_calls.h.
// want_len: for a read, the length asked for (else -1).
PyObject* call_loop(IoHandle* h, PyObject* method, PyObject* const* args,
                    Py_ssize_t nargs, PyObject* lock, Py_ssize_t want_len) {
  if (h->timeout_ == 0) Py_RETURN_NOTIMPLEMENTED;
  int taken = try_acquire(lock);
  if (taken <= 0) {
    if (taken < 0) return nullptr;
    Py_RETURN_NOTIMPLEMENTED;
  }
  Deadline d(h->timeout_);
  bool reading = want_len >= 0;
  const char* timed_out = reading ? kReadTimedOut : kWriteTimedOut;
  PyObject* result = nullptr;
  bool waited = false;
  // While the peer sends whole records (a bulk transfer), read ahead: one
  // read() takes several records, where OpenSSL otherwise reads each
  // record's header and body apart. Only inside this call: the handshake,
  // unwrap() and the standard library's own reads never read ahead.
  tls::Ssl* ssl = reading ? tls::ssl_of(args[0], h->fd_) : nullptr;
  bool ahead = ssl && h->tls_whole_records_;
  if (ahead) tls::set_read_ahead(ssl, true);
  if (reading && !h->tls_streaming_) {
    int rc = wait_before_read(h, args[0], ssl, d);
    if (rc < 0) goto done;
    waited = rc > 0;
  }
  for (;;) {
    result = PyObject_VectorcallMethod(method, args, nargs, nullptr);
    if (result) break;
    short what = wanted();
    if (!what || wait_within(h, what, d, timed_out) < 0) break;
    waited = true;
  }
  if (reading) {
    Py_ssize_t n = !result                      ? 0
                   : PyBytes_CheckExact(result) ? PyBytes_GET_SIZE(result)
                                                : PyLong_AsSsize_t(result);
    if (n < 0) PyErr_Clear();  // not a count: nothing to learn from it
    h->tls_streaming_ =
        !waited && (n >= kFullRecord || (n > 0 && n == want_len));
    h->tls_whole_records_ = n >= kFullRecord;
  }
done:
  if (ahead) tls::set_read_ahead(ssl, false);
  if (release(lock) < 0) Py_CLEAR(result);
  return result;
}

}  // namespace

PyObject* IoHandle_tls_read(IoHandle* h, PyObject* const* args,
                            Py_ssize_t nargs) {
  if (nargs < 3 || nargs > 4) {
    PyErr_SetString(
        PyExc_TypeError,
        "tls_read(sslobj, lock, len, buffer=None) takes 3 or 4 arguments");
    return nullptr;
  }
  // sslobj.read(len[, buffer])
  PyObject* call[] = {args[0], args[2], nargs == 4 ? args[3] : Py_None};
  Py_ssize_t n = nargs == 4 && args[3] != Py_None ? 3 : 2;
  if (init_names() < 0) return nullptr;
  Py_ssize_t len = PyNumber_AsSsize_t(args[2], nullptr);
  if (len == -1 && PyErr_Occurred()) PyErr_Clear();
  // A length read() refuses: its error at once, not after a wait.
  if (len < 0 && (n == 2 || !PyIndex_Check(args[2])))
    return PyObject_VectorcallMethod(names.read, call, n, nullptr);
  // One SSL_read returns one record at most: asked for more, _ssl would
  // allocate all of len, then shrink it to the record.
  if (n == 2 && len > kFullRecord) {
    call[1] = names.len_record;
    len = kFullRecord;
  }
  return call_loop(h, names.read, call, n, args[1], len < 0 ? 0 : len);
}

PyObject* IoHandle_tls_write(IoHandle* h, PyObject* const* args,
                             Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError,
                    "tls_write(sslobj, lock, data) takes 3 arguments");
    return nullptr;
  }
  PyObject* call[] = {args[0], args[2]};  // sslobj.write(data)
  if (init_names() < 0) return nullptr;
  return call_loop(h, names.write, call, 2, args[1], -1);
}

PyObject* IoHandle_tls_read_ahead(IoHandle* h, PyObject* sslobj) {
  tls::Ssl* ssl = tls::ssl_of(sslobj, h->fd_);
  return PyBool_FromLong(ssl && tls::has_pending(ssl));
}

namespace {

// ---------------------------------------------------------------------------
// SSLSocket.recv(buflen=1024, flags=0) and SSLSocket.sendall(data, flags=0)
// in C: the common case of a bulk transfer (a blocking socket, no flags,
// bytes to send) calls tls_read()/tls_write() without a Python frame; any
// other case goes to ssl.py's _recv_slow/_sendall_slow, which are what the
// methods were in Python.

// self.<method>(*args, **kwnames), for every case the fast path leaves.
PyObject* slow(PyObject* method, PyObject* self, PyObject* const* args,
               Py_ssize_t nargs, PyObject* kwnames) {
  constexpr Py_ssize_t kStack = 8;
  Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
  if (total >= kStack) {
    PyObject* bound = PyObject_GetAttr(self, method);
    if (!bound) return nullptr;
    PyObject* r = PyObject_Vectorcall(bound, args, nargs, kwnames);
    Py_DECREF(bound);
    return r;
  }
  PyObject* stack[kStack];
  stack[0] = self;
  for (Py_ssize_t i = 0; i < total; ++i) stack[i + 1] = args[i];
  return PyObject_VectorcallMethod(method, stack, nargs + 1, kwnames);
}

// True when flags (args[at]) are absent or exactly the int 0; anything
// else is for the slow path to accept or refuse.
bool plain_flags(PyObject* const* args, Py_ssize_t nargs, Py_ssize_t at) {
  if (nargs <= at) return true;
  PyObject* f = args[at];
  if (!PyLong_CheckExact(f)) return false;
  int overflow = 0;
  return PyLong_AsLongAndOverflow(f, &overflow) == 0 && !overflow;
}

// tls(self._io, (self._sslobj, self.<lock>, arg)) when the fast path
// applies; NotImplemented when it does not (no _sslobj, an _io that is not
// an IoHandle) or when tls() itself says so (non-blocking, lock busy); null
// with an error set.
PyObject* fast_call(PyObject* self, PyObject* lock_name, PyObject* arg,
                    PyObject* (*tls)(IoHandle*, PyObject* const*, Py_ssize_t)) {
  PyObject* sslobj = PyObject_GetAttr(self, names.sslobj);
  if (!sslobj) return nullptr;
  PyObject* io = sslobj == Py_None ? nullptr : PyObject_GetAttr(self, names.io);
  PyObject* result = nullptr;
  if (sslobj == Py_None || (io && !Py_IS_TYPE(io, IoHandleType))) {
    result = Py_NewRef(Py_NotImplemented);
  } else if (io) {
    PyObject* lock = PyObject_GetAttr(self, lock_name);
    if (lock) {
      PyObject* call[] = {sslobj, lock, arg};
      result = tls(reinterpret_cast<IoHandle*>(io), call, 3);
      Py_DECREF(lock);
    }
  }
  Py_XDECREF(io);
  Py_DECREF(sslobj);
  return result;
}

// An SSLError for a ragged end (SSL_ERROR_EOF) with suppress_ragged_eofs
// set: cleared, 1. Else 0 (the error left as is) or -1 (a new error).
int ragged_end(PyObject* self) {
  if (!PyErr_ExceptionMatches(names.ssl_error)) return 0;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  int eof = 0;
  PyObject* args = value ? PyObject_GetAttrString(value, "args") : nullptr;
  if (args && PyTuple_Check(args) && PyTuple_GET_SIZE(args) > 0 &&
      PyLong_Check(PyTuple_GET_ITEM(args, 0))) {
    long code = PyLong_AsLong(PyTuple_GET_ITEM(args, 0));
    eof = code == names.ssl_error_eof;
  }
  Py_XDECREF(args);
  PyErr_Clear();
  if (eof) {
    PyObject* suppress = PyObject_GetAttr(self, names.suppress_ragged_eofs);
    eof = suppress ? PyObject_IsTrue(suppress) : -1;
    Py_XDECREF(suppress);
  }
  if (eof == 0) {
    PyErr_Restore(type, value, tb);
    return 0;
  }
  // Suppressed (1), or suppress_ragged_eofs could not be read (-1: that
  // error is the one set).
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
  return eof;
}

PyObject* tls_socket_recv(PyObject* self, PyObject* const* args,
                          Py_ssize_t nargs, PyObject* kwnames) {
  if (init_names() < 0) return nullptr;
  if (kwnames || nargs > 2 || !plain_flags(args, nargs, 1))
    return slow(names.recv_slow, self, args, nargs, kwnames);
  PyObject* result =
      fast_call(self, names.rlock, nargs > 0 ? args[0] : names.len_1024,
                IoHandle_tls_read);
  if (result == Py_NotImplemented) {
    Py_DECREF(result);
    return slow(names.recv_slow, self, args, nargs, kwnames);
  }
  if (!result && ragged_end(self) == 1)
    return PyBytes_FromStringAndSize(nullptr, 0);
  return result;
}

PyObject* tls_socket_sendall(PyObject* self, PyObject* const* args,
                             Py_ssize_t nargs, PyObject* kwnames) {
  if (init_names() < 0) return nullptr;
  if (kwnames || nargs < 1 || nargs > 2 || !PyBytes_CheckExact(args[0]) ||
      PyBytes_GET_SIZE(args[0]) == 0 || !plain_flags(args, nargs, 1))
    return slow(names.sendall_slow, self, args, nargs, kwnames);
  PyObject* result = fast_call(self, names.wlock, args[0], IoHandle_tls_write);
  if (result == Py_NotImplemented) {
    Py_DECREF(result);
    return slow(names.sendall_slow, self, args, nargs, kwnames);
  }
  if (!result) return nullptr;
  // One SSL_write takes the whole buffer (partial writes are not enabled):
  // all of it went.
  Py_DECREF(result);
  Py_RETURN_NONE;
}

PyMethodDef tls_socket_recv_def = {
    "recv", py::method(tls_socket_recv), METH_FASTCALL | METH_KEYWORDS,
    "recv($self, buflen=1024, flags=0)\n--\n\n"
    "Read up to buflen bytes from the TLS channel, waiting cooperatively."};
PyMethodDef tls_socket_sendall_def = {
    "sendall", py::method(tls_socket_sendall), METH_FASTCALL | METH_KEYWORDS,
    "sendall($self, data, flags=0)\n--\n\n"
    "Send all of data; no other tasklet's data is interleaved."};

// _core.tls_socket_methods(socket_type) -> (recv, sendall): method
// descriptors for a subclass of socket_type (ptsevent.ssl.SSLSocket).
PyObject* tls_socket_methods(PyObject*, PyObject* type) {
  if (!PyType_Check(type)) {
    PyErr_SetString(PyExc_TypeError, "tls_socket_methods() takes a type");
    return nullptr;
  }
  auto* t = reinterpret_cast<PyTypeObject*>(type);
  PyObject* recv = PyDescr_NewMethod(t, &tls_socket_recv_def);
  PyObject* sendall =
      recv ? PyDescr_NewMethod(t, &tls_socket_sendall_def) : nullptr;
  PyObject* pair = sendall ? PyTuple_Pack(2, recv, sendall) : nullptr;
  Py_XDECREF(recv);
  Py_XDECREF(sendall);
  return pair;
}

}  // namespace

PyMethodDef tls_functions[] = {
    {"tls_socket_methods", tls_socket_methods, METH_O,
     "tls_socket_methods(socket_type, /)\n--\n\n"
     "(recv, sendall): ptsevent.ssl.SSLSocket's fast methods, bound to "
     "instances of socket_type."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace ptsevent::io

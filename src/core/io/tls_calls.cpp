#include "io/tls_calls.h"

#include <poll.h>

#include "hub/lock.h"
#include "io/tls_ssl.h"

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
  PyObject* want_read;
  PyObject* want_write;
};
Names names;

int init_names() {
  if (names.want_write) return 0;
  const char* strings[] = {"read", "write", "pending", "acquire", "release"};
  PyObject** slots[] = {&names.read, &names.write, &names.pending,
                        &names.acquire, &names.release};
  for (int i = 0; i < 5; ++i) {
    if (*slots[i]) continue;
    *slots[i] = PyUnicode_InternFromString(strings[i]);
    if (!*slots[i]) return -1;
  }
  PyObject* ssl = PyImport_ImportModule("ssl");
  if (!ssl) return -1;
  PyObject* want_read = PyObject_GetAttrString(ssl, "SSLWantReadError");
  PyObject* want_write =
      want_read ? PyObject_GetAttrString(ssl, "SSLWantWriteError") : nullptr;
  Py_DECREF(ssl);
  if (!want_write) {
    Py_XDECREF(want_read);
    return -1;
  }
  names.want_read = want_read;
  names.want_write = want_write;
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
  Py_ssize_t len = PyLong_AsSsize_t(args[2]);
  if (len == -1 && PyErr_Occurred()) PyErr_Clear();  // read() reports it
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

}  // namespace ptsevent::io

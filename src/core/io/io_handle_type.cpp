// The Python face of IoHandle (`_core.IoHandle`): construction and
// teardown, the argument parsing of its methods (the socket module's
// formats and timeouts), attributes, the method tables and the type. The
// engine is io_handle.cpp.
#include <Python.h>
#include <structmember.h>
#include <sys/socket.h>

#include <cstddef>
#include <new>

#include "hub/timeout.h"
#include "io/io_handle.h"
#include "io/tls_calls.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::io {

using hub::Hub;

PyTypeObject* IoHandleType = nullptr;

namespace {

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
static PyObject* IoHandle_close(IoHandle* h, PyObject*) {
  return io_handle_close(h);
}

static PyObject* IoHandle_close_in_owner(IoHandle* h, PyObject*) {
  io_handle_close_in_owner(h);
  Py_RETURN_NONE;
}

// _release_in_owner([done]): in the owner hub's thread; done (a remote
// Waiter) tells the thread taking the descriptor over.
static PyObject* IoHandle_release_in_owner(IoHandle* h, PyObject* const* args,
                                           Py_ssize_t nargs) {
  io_handle_release_in_owner(h);
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
  return io_handle_wait(h, what, seconds);
}

static PyObject* IoHandle_wait_read(IoHandle* h, PyObject* const* args,
                                    Py_ssize_t nargs) {
  return wait_call(h, EV_READ, args, nargs);
}

static PyObject* IoHandle_wait_write(IoHandle* h, PyObject* const* args,
                                     Py_ssize_t nargs) {
  return wait_call(h, EV_WRITE, args, nargs);
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
  return io_handle_recv(h, size, flags, seconds);
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
    result = io_handle_recv_into(h, view.buf, nbytes, flags, seconds);
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
  PyObject* result = io_handle_send(h, static_cast<const char*>(view.buf),
                                    view.len, flags, seconds, all);
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
  return io_handle_retry(h, what, args + 1, static_cast<size_t>(nargs - 1),
                         seconds);
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
  return io_handle_finish_connect(h, err);
}

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
  double seconds;
  call_seconds(h, nullptr, flags, &seconds);
  return io_handle_recvfrom(h, size, flags, seconds);
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
  } else {
    if (nbytes == 0) nbytes = view.len;
    double seconds;
    call_seconds(h, nullptr, flags, &seconds);
    result = io_handle_recvfrom_into(h, view.buf, nbytes, flags, seconds);
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
  double seconds;
  call_seconds(h, nullptr, flags, &seconds);
  PyObject* result =
      io_handle_sendto(h, view.buf, view.len, flags, addr, seconds);
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
    {"tls_read_ahead", py::method(IoHandle_tls_read_ahead), METH_O,
     "tls_read_ahead($self, sslobj, /)\n--\n\n"
     "Whether OpenSSL holds records tls_read() read ahead and did not "
     "decrypt yet (bytes sslobj.pending() does not count)."},
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

#include "io/buffered_io.h"

#include <errno.h>
#include <unistd.h>

#include <Python.h>
#include <structmember.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "hub/timeout.h"
#include "io/byte_buffer.h"
#include "io/io_handle.h"
#include "py/heap_type.h"
#include "py/ref.h"

namespace ptsevent::io {

PyTypeObject* BufferedIoType = nullptr;

namespace {

constexpr size_t kReadChunk = 65536;
constexpr size_t kWriteFlushAt = 65536;

struct BufferedIo {
  PyObject_HEAD
  PyObject* weakrefs_;
  py::Ref in_;   // IoHandle
  py::Ref out_;  // IoHandle (may be the same object)
  ByteBuffer rbuf_;
  ByteBuffer wbuf_;
  double read_timeout_;   // < 0: none
  double write_timeout_;
  bool eof_;

  IoHandle* in() { return reinterpret_cast<IoHandle*>(in_.get()); }
  IoHandle* out() { return reinterpret_cast<IoHandle*>(out_.get()); }
  PyObject* self() { return reinterpret_cast<PyObject*>(this); }
};

// Reads once into the buffer, waiting as needed. Returns the number of
// bytes added (0 at EOF) or -1 with an error.
Py_ssize_t fill(BufferedIo* b, const Deadline& d) {
  IoHandle* h = b->in();
  for (;;) {
    if (h->closed_) {
      errno = EBADF;
      PyErr_SetFromErrno(PyExc_OSError);
      return -1;
    }
    if (wait_if_drained(h, d) < 0) return -1;
    char* dst = b->rbuf_.reserve(kReadChunk);
    if (!dst) return PyErr_NoMemory(), -1;
    ssize_t n = read(h->fd_, dst, kReadChunk);
    if (n > 0) {
      h->after_read(n, kReadChunk);
      b->rbuf_.commit(n);
      return n;
    }
    if (n == 0) {
      b->eof_ = true;
      return 0;
    }
    // About to wait (maybe for long, on an idle connection): give back the
    // chunk reserved for this read if nothing is buffered.
    b->rbuf_.shrink_if_empty();
    if (retry_after_failure(h, EV_READ, d) < 0) return -1;
  }
}

PyObject* take(BufferedIo* b, size_t n) {
  if (n > b->rbuf_.size()) n = b->rbuf_.size();
  PyObject* r = PyBytes_FromStringAndSize(b->rbuf_.data(), n);
  if (r) {
    b->rbuf_.consume(n);
    b->rbuf_.shrink_if_empty();
  }
  return r;
}

// Fills until `delim` is buffered (or limit bytes, or EOF). Returns the
// length to take including the delimiter, or -1 with an error.
Py_ssize_t scan_for(BufferedIo* b, std::string_view delim, Py_ssize_t limit) {
  Deadline d(b->read_timeout_);
  size_t searched = 0;
  for (;;) {
    std::string_view have(b->rbuf_.data(), b->rbuf_.size());
    size_t from = searched >= delim.size() ? searched - delim.size() + 1 : 0;
    size_t pos = have.find(delim, from);
    if (pos != std::string_view::npos) {
      size_t len = pos + delim.size();
      return limit >= 0 && static_cast<size_t>(limit) < len ? limit : len;
    }
    if (limit >= 0 && have.size() >= static_cast<size_t>(limit)) return limit;
    searched = have.size();
    if (b->eof_) return have.size();
    Py_ssize_t n = fill(b, d);
    if (n < 0) return -1;
  }
}

int parse_delim(PyObject* obj, Py_buffer* view) {
  if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) return -1;
  if (view->len == 0) {
    PyBuffer_Release(view);
    PyErr_SetString(PyExc_ValueError, "empty delimiter");
    return -1;
  }
  return 0;
}

PyObject* readline_impl(BufferedIo* b, PyObject* delim_obj, Py_ssize_t limit) {
  Py_buffer view;
  if (delim_obj) {
    if (parse_delim(delim_obj, &view) < 0) return nullptr;
  }
  std::string_view delim =
      delim_obj ? std::string_view(static_cast<const char*>(view.buf), view.len)
                : std::string_view("\n", 1);
  Py_ssize_t len = scan_for(b, delim, limit);
  if (delim_obj) PyBuffer_Release(&view);
  if (len < 0) return nullptr;
  return take(b, len);
}

// ------------------------------------------------------------ the object

PyObject* BufferedIo_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"in_handle", "out_handle", nullptr};
  PyObject *in, *out = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:BufferedIo",
                                   const_cast<char**>(kwlist), &in, &out))
    return nullptr;
  if (!out) out = in;
  if (!is_io_handle(in) || !is_io_handle(out)) {
    PyErr_SetString(PyExc_TypeError, "BufferedIo needs IoHandle objects");
    return nullptr;
  }
  BufferedIo* b = reinterpret_cast<BufferedIo*>(type->tp_alloc(type, 0));
  if (!b) return nullptr;
  new (&b->in_) py::Ref(py::Ref::borrow(in));
  new (&b->out_) py::Ref(py::Ref::borrow(out));
  new (&b->rbuf_) ByteBuffer();
  new (&b->wbuf_) ByteBuffer();
  b->read_timeout_ = -1;
  b->write_timeout_ = -1;
  return b->self();
}

// py::make_heap_type's dealloc calls it.
void BufferedIo_destroy(BufferedIo* b) {
  b->in_.~Ref();
  b->out_.~Ref();
  b->rbuf_.~ByteBuffer();
  b->wbuf_.~ByteBuffer();
}

int send_all(BufferedIo* b, const char* p, size_t n, const Deadline& d) {
  IoHandle* h = b->out();
  while (n) {
    if (h->closed_) {
      errno = EBADF;
      PyErr_SetFromErrno(PyExc_OSError);
      return -1;
    }
    ssize_t k = write(h->fd_, p, n);
    if (k >= 0) {
      if (k > 0 && h == b->in()) h->after_send();
      p += k;
      n -= k;
      continue;
    }
    if (retry_after_failure(h, EV_WRITE, d) < 0) return -1;
  }
  return 0;
}

int flush_impl(BufferedIo* b) {
  if (b->wbuf_.empty()) return 0;
  Deadline d(b->write_timeout_);
  IoHandle* h = b->out();
  while (!b->wbuf_.empty()) {
    if (h->closed_) {
      errno = EBADF;
      PyErr_SetFromErrno(PyExc_OSError);
      return -1;
    }
    ssize_t k = write(h->fd_, b->wbuf_.data(), b->wbuf_.size());
    if (k >= 0) {
      if (k > 0 && h == b->in()) h->after_send();
      b->wbuf_.consume(k);  // what was sent leaves the buffer even on error
      continue;
    }
    if (retry_after_failure(h, EV_WRITE, d) < 0) return -1;
  }
  b->wbuf_.shrink_if_empty();
  return 0;
}

PyObject* BufferedIo_read(BufferedIo* b, PyObject* args) {
  Py_ssize_t n = -1;
  if (!PyArg_ParseTuple(args, "|n:read", &n)) return nullptr;
  Deadline d(b->read_timeout_);
  while ((n < 0 || b->rbuf_.size() < static_cast<size_t>(n)) && !b->eof_)
    if (fill(b, d) < 0) return nullptr;
  return take(b, n < 0 ? b->rbuf_.size() : n);
}

PyObject* BufferedIo_read1(BufferedIo* b, PyObject* args) {
  Py_ssize_t n = -1;
  if (!PyArg_ParseTuple(args, "|n:read1", &n)) return nullptr;
  if (b->rbuf_.empty() && !b->eof_) {
    Deadline d(b->read_timeout_);
    if (fill(b, d) < 0) return nullptr;
  }
  return take(b, n < 0 ? b->rbuf_.size() : n);
}

PyObject* BufferedIo_readline(BufferedIo* b, PyObject* const* args,
                              Py_ssize_t nargs, PyObject* kwnames) {
  // The hot call is readline() with no arguments: skip argument parsing.
  if (nargs == 0 && !kwnames) return readline_impl(b, nullptr, -1);
  static const char* const names[] = {"limit", "delim"};
  PyObject* a[2] = {nullptr, nullptr};
  if (nargs > 2) {
    PyErr_SetString(PyExc_TypeError, "readline() takes at most 2 arguments");
    return nullptr;
  }
  for (Py_ssize_t i = 0; i < nargs; ++i) a[i] = args[i];
  Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, k);
    int i = PyUnicode_CompareWithASCIIString(key, names[0]) == 0   ? 0
            : PyUnicode_CompareWithASCIIString(key, names[1]) == 0 ? 1
                                                                   : -1;
    if (i < 0 || a[i]) {
      PyErr_Format(PyExc_TypeError, "readline() got an unexpected or repeated "
                   "argument '%U'", key);
      return nullptr;
    }
    a[i] = args[nargs + k];
  }
  Py_ssize_t limit = -1;
  if (a[0] && a[0] != Py_None) {
    limit = PyNumber_AsSsize_t(a[0], PyExc_OverflowError);
    if (limit == -1 && PyErr_Occurred()) return nullptr;
  }
  return readline_impl(b, a[1], limit);
}

PyObject* BufferedIo_read_upto(BufferedIo* b, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"delim", "limit", nullptr};
  Py_ssize_t limit = -1;
  PyObject* delim;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O|n:read_upto",
                                   const_cast<char**>(kwlist), &delim, &limit))
    return nullptr;
  return readline_impl(b, delim, limit);
}

PyObject* BufferedIo_find(BufferedIo* b, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"delim", "limit", nullptr};
  Py_ssize_t limit = -1;
  PyObject* delim_obj;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O|n:find",
                                   const_cast<char**>(kwlist), &delim_obj,
                                   &limit))
    return nullptr;
  Py_buffer view;
  if (parse_delim(delim_obj, &view) < 0) return nullptr;
  std::string_view delim(static_cast<const char*>(view.buf), view.len);
  Py_ssize_t len = scan_for(b, delim, limit);
  PyBuffer_Release(&view);
  if (len < 0) return nullptr;
  std::string_view have(b->rbuf_.data(), len);
  size_t pos = have.find(delim);
  return PyLong_FromSsize_t(pos == std::string_view::npos
                                ? -1
                                : static_cast<Py_ssize_t>(pos));
}

PyObject* BufferedIo_peek(BufferedIo* b, PyObject* args) {
  Py_ssize_t n = 0;
  if (!PyArg_ParseTuple(args, "|n:peek", &n)) return nullptr;
  Deadline d(b->read_timeout_);
  size_t want = n > 0 ? n : 1;
  while (b->rbuf_.size() < want && !b->eof_)
    if (fill(b, d) < 0) return nullptr;
  size_t len = n > 0 ? std::min<size_t>(n, b->rbuf_.size()) : b->rbuf_.size();
  return PyBytes_FromStringAndSize(b->rbuf_.data(), len);
}

PyObject* BufferedIo_discard(BufferedIo* b, PyObject* args) {
  Py_ssize_t n;
  if (!PyArg_ParseTuple(args, "n:discard", &n)) return nullptr;
  if (n < 0) {
    PyErr_SetString(PyExc_ValueError, "discard() needs a non-negative count");
    return nullptr;
  }
  Deadline d(b->read_timeout_);
  Py_ssize_t done = 0;
  while (done < n) {
    if (b->rbuf_.empty()) {
      if (b->eof_) break;
      if (fill(b, d) < 0) return nullptr;
      continue;
    }
    size_t k = std::min<size_t>(n - done, b->rbuf_.size());
    b->rbuf_.consume(k);
    done += k;
  }
  b->rbuf_.shrink_if_empty();
  return PyLong_FromSsize_t(done);
}

PyObject* BufferedIo_unread(BufferedIo* b, PyObject* data) {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return nullptr;
  bool ok = b->rbuf_.prepend(static_cast<const char*>(view.buf), view.len);
  PyBuffer_Release(&view);
  if (!ok) return PyErr_NoMemory();
  if (view.len) b->eof_ = false;
  Py_RETURN_NONE;
}

PyObject* BufferedIo_readlines(BufferedIo* b, PyObject* args) {
  Py_ssize_t hint = -1;
  if (!PyArg_ParseTuple(args, "|n:readlines", &hint)) return nullptr;
  py::Ref list = py::Ref::steal(PyList_New(0));
  if (!list) return nullptr;
  Py_ssize_t total = 0;
  for (;;) {
    py::Ref line = py::Ref::steal(readline_impl(b, nullptr, -1));
    if (!line) return nullptr;
    Py_ssize_t len = PyBytes_GET_SIZE(line.get());
    if (len == 0) break;
    if (PyList_Append(list.get(), line.get()) < 0) return nullptr;
    total += len;
    if (hint > 0 && total >= hint) break;
  }
  return list.release();
}

PyObject* BufferedIo_iternext(BufferedIo* b) {
  PyObject* line = readline_impl(b, nullptr, -1);
  if (line && PyBytes_GET_SIZE(line) == 0) {
    Py_DECREF(line);
    return nullptr;  // StopIteration
  }
  return line;
}

PyObject* BufferedIo_iter(BufferedIo* b) { return Py_NewRef(b->self()); }

PyObject* BufferedIo_write(BufferedIo* b, PyObject* data) {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return nullptr;
  Py_ssize_t len = view.len;
  bool ok = b->wbuf_.append(static_cast<const char*>(view.buf), view.len);
  PyBuffer_Release(&view);
  if (!ok) return PyErr_NoMemory();
  if (b->wbuf_.size() >= kWriteFlushAt && flush_impl(b) < 0) return nullptr;
  return PyLong_FromSsize_t(len);
}

PyObject* BufferedIo_flush(BufferedIo* b, PyObject*) {
  if (flush_impl(b) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* BufferedIo_sendall(BufferedIo* b, PyObject* data) {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return nullptr;
  int rc = flush_impl(b);
  if (rc == 0) {
    Deadline d(b->write_timeout_);
    rc = send_all(b, static_cast<const char*>(view.buf), view.len, d);
  }
  PyBuffer_Release(&view);
  if (rc < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* get_timeout(double t) {
  return t < 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(t);
}

int set_timeout(PyObject* v, double* out) {
  if (!v) {
    PyErr_SetString(PyExc_AttributeError, "cannot delete the timeout");
    return -1;
  }
  double s;
  if (hub::parse_timeout(v, hub::TimeoutMode::kStrict, &s) < 0) return -1;
  *out = s;
  return 0;
}

PyObject* BufferedIo_get_rt(BufferedIo* b, void*) {
  return get_timeout(b->read_timeout_);
}
int BufferedIo_set_rt(BufferedIo* b, PyObject* v, void*) {
  return set_timeout(v, &b->read_timeout_);
}
PyObject* BufferedIo_get_wt(BufferedIo* b, void*) {
  return get_timeout(b->write_timeout_);
}
int BufferedIo_set_wt(BufferedIo* b, PyObject* v, void*) {
  return set_timeout(v, &b->write_timeout_);
}
PyObject* BufferedIo_get_rbuffered(BufferedIo* b, void*) {
  return PyLong_FromSize_t(b->rbuf_.size());
}
PyObject* BufferedIo_get_wbuffered(BufferedIo* b, void*) {
  return PyLong_FromSize_t(b->wbuf_.size());
}
PyObject* BufferedIo_get_eof(BufferedIo* b, void*) {
  return PyBool_FromLong(b->eof_ && b->rbuf_.empty());
}

#define METH(f) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f))

PyMethodDef BufferedIo_methods[] = {
    {"read", METH(BufferedIo_read), METH_VARARGS,
     "read($self, n=-1, /)\n--\n\n"
     "read(n=-1): n bytes (fewer only at EOF); all until EOF if n < 0."},
    {"read1", METH(BufferedIo_read1), METH_VARARGS,
     "read1($self, n=-1, /)\n--\n\n"
     "read1(n=-1): what is buffered, or one read(2), at most n bytes."},
    {"readline", METH(BufferedIo_readline), METH_FASTCALL | METH_KEYWORDS,
     "readline($self, limit=-1, delim=b'\\n')\n--\n\n"
     "readline(limit=-1, delim=b'\\n'): up to and including delim."},
    {"read_upto", METH(BufferedIo_read_upto), METH_VARARGS | METH_KEYWORDS,
     "read_upto($self, delim, limit=-1)\n--\n\n"
     "read_upto(delim, limit=-1): up to and including delim (any length)."},
    {"find", METH(BufferedIo_find), METH_VARARGS | METH_KEYWORDS,
     "find($self, delim, limit=-1)\n--\n\n"
     "find(delim, limit=-1): index of delim in the buffered data, reading "
     "as needed; -1 if EOF or limit comes first."},
    {"peek", METH(BufferedIo_peek), METH_VARARGS,
     "peek($self, n=0, /)\n--\n\n"
     "peek(n=0): buffered bytes without consuming them (reads if empty)."},
    {"discard", METH(BufferedIo_discard), METH_VARARGS,
     "discard($self, n, /)\n--\n\n"
     "discard(n): drop n bytes of input; returns how many were dropped."},
    {"unread", METH(BufferedIo_unread), METH_O,
     "unread($self, data, /)\n--\n\n"
     "unread(data): push data back in front of the input."},
    {"readlines", METH(BufferedIo_readlines), METH_VARARGS,
     "readlines($self, hint=-1, /)\n--\n\n"
     "readlines(hint=-1)"},
    {"write", METH(BufferedIo_write), METH_O,
     "write($self, data, /)\n--\n\n"
     "write(data): buffer data (sent by flush or when 64 KiB are waiting)."},
    {"flush", METH(BufferedIo_flush), METH_NOARGS, "flush($self, /)\n--\n\n"
     "Send the write buffer."},
    {"sendall", METH(BufferedIo_sendall), METH_O,
     "sendall($self, data, /)\n--\n\n"
     "sendall(data): flush, then send data in full."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef BufferedIo_getset[] = {
    {"read_timeout", reinterpret_cast<getter>(BufferedIo_get_rt),
     reinterpret_cast<setter>(BufferedIo_set_rt), nullptr, nullptr},
    {"write_timeout", reinterpret_cast<getter>(BufferedIo_get_wt),
     reinterpret_cast<setter>(BufferedIo_set_wt), nullptr, nullptr},
    {"read_buffered", reinterpret_cast<getter>(BufferedIo_get_rbuffered),
     nullptr, nullptr, nullptr},
    {"write_buffered", reinterpret_cast<getter>(BufferedIo_get_wbuffered),
     nullptr, nullptr, nullptr},
    {"at_eof", reinterpret_cast<getter>(BufferedIo_get_eof), nullptr, nullptr,
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMemberDef BufferedIo_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(BufferedIo, weakrefs_),
     READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr}};

}  // namespace

PyTypeObject* make_buffered_io_type() {
  PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(BufferedIo_new)},
      {Py_tp_iter, reinterpret_cast<void*>(BufferedIo_iter)},
      {Py_tp_iternext, reinterpret_cast<void*>(BufferedIo_iternext)},
      {Py_tp_methods, BufferedIo_methods},
      {Py_tp_getset, BufferedIo_getset},
      {Py_tp_members, BufferedIo_members},
      {Py_tp_doc, const_cast<char*>(
                      "BufferedIo(in_handle, out_handle=None)\n--\n\n"
                      "BufferedIo(in_handle, out_handle=None): C++ read and "
                      "write buffers over IoHandles.")},
      {0, nullptr}};
  PyType_Spec spec = {"ptsevent._core.BufferedIo", sizeof(BufferedIo), 0,
                      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots};
  BufferedIoType =
      py::make_heap_type<BufferedIo, nullptr, BufferedIo_destroy>(&spec);
  return BufferedIoType;
}

}  // namespace ptsevent::io

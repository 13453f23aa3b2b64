// The Python face of BufferedIo (buffered_io.h): construction, argument
// parsing, the attributes, the method table and the type.
#include <Python.h>
#include <structmember.h>

#include <string_view>

#include "hub/timeout.h"
#include "io/buffered_io.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::io {

PyTypeObject* BufferedIoType = nullptr;

namespace {

// A bytes-like delimiter's buffer (released by the caller), or -1 with an
// error: TypeError, or ValueError when it is empty.
int parse_delim(PyObject* obj, Py_buffer* view) {
  if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) return -1;
  if (view->len == 0) {
    PyBuffer_Release(view);
    PyErr_SetString(PyExc_ValueError, "empty delimiter");
    return -1;
  }
  return 0;
}

std::string_view as_view(const Py_buffer& view) {
  return std::string_view(static_cast<const char*>(view.buf), view.len);
}

// readline / read_upto with a delimiter object (null: b"\n").
PyObject* readline_with(BufferedIo* b, PyObject* delim_obj, Py_ssize_t limit) {
  if (!delim_obj) return b->readline("\n", limit);
  Py_buffer view;
  if (parse_delim(delim_obj, &view) < 0) return nullptr;
  PyObject* line = b->readline(as_view(view), limit);
  PyBuffer_Release(&view);
  return line;
}

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

PyObject* BufferedIo_read(BufferedIo* b, PyObject* args) {
  Py_ssize_t n = -1;
  if (!PyArg_ParseTuple(args, "|n:read", &n)) return nullptr;
  return b->read(n);
}

PyObject* BufferedIo_read1(BufferedIo* b, PyObject* args) {
  Py_ssize_t n = -1;
  if (!PyArg_ParseTuple(args, "|n:read1", &n)) return nullptr;
  return b->read1(n);
}

PyObject* BufferedIo_readline(BufferedIo* b, PyObject* const* args,
                              Py_ssize_t nargs, PyObject* kwnames) {
  // The hot call is readline() with no arguments: skip argument parsing.
  if (nargs == 0 && !kwnames) return b->readline("\n", -1);
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
      PyErr_Format(PyExc_TypeError,
                   "readline() got an unexpected or repeated "
                   "argument '%U'",
                   key);
      return nullptr;
    }
    a[i] = args[nargs + k];
  }
  Py_ssize_t limit = -1;
  if (a[0] && a[0] != Py_None) {
    limit = PyNumber_AsSsize_t(a[0], PyExc_OverflowError);
    if (limit == -1 && PyErr_Occurred()) return nullptr;
  }
  return readline_with(b, a[1], limit);
}

PyObject* BufferedIo_read_upto(BufferedIo* b, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"delim", "limit", nullptr};
  Py_ssize_t limit = -1;
  PyObject* delim;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O|n:read_upto",
                                   const_cast<char**>(kwlist), &delim, &limit))
    return nullptr;
  return readline_with(b, delim, limit);
}

PyObject* BufferedIo_find(BufferedIo* b, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"delim", "limit", nullptr};
  Py_ssize_t limit = -1;
  PyObject* delim_obj;
  if (!PyArg_ParseTupleAndKeywords(
          args, kw, "O|n:find", const_cast<char**>(kwlist), &delim_obj, &limit))
    return nullptr;
  Py_buffer view;
  if (parse_delim(delim_obj, &view) < 0) return nullptr;
  Py_ssize_t pos = b->find(as_view(view), limit);
  PyBuffer_Release(&view);
  if (pos == -2) return nullptr;
  return PyLong_FromSsize_t(pos);
}

PyObject* BufferedIo_peek(BufferedIo* b, PyObject* args) {
  Py_ssize_t n = 0;
  if (!PyArg_ParseTuple(args, "|n:peek", &n)) return nullptr;
  return b->peek(n);
}

PyObject* BufferedIo_discard(BufferedIo* b, PyObject* args) {
  Py_ssize_t n;
  if (!PyArg_ParseTuple(args, "n:discard", &n)) return nullptr;
  if (n < 0) {
    PyErr_SetString(PyExc_ValueError, "discard() needs a non-negative count");
    return nullptr;
  }
  Py_ssize_t done = b->discard(n);
  return done < 0 ? nullptr : PyLong_FromSsize_t(done);
}

PyObject* BufferedIo_unread(BufferedIo* b, PyObject* data) {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return nullptr;
  int rc = b->unread(as_view(view));
  PyBuffer_Release(&view);
  if (rc < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* BufferedIo_readlines(BufferedIo* b, PyObject* args) {
  Py_ssize_t hint = -1;
  if (!PyArg_ParseTuple(args, "|n:readlines", &hint)) return nullptr;
  return b->readlines(hint);
}

PyObject* BufferedIo_iternext(BufferedIo* b) {
  PyObject* line = b->readline("\n", -1);
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
  int rc = b->write(as_view(view));
  PyBuffer_Release(&view);
  if (rc < 0) return nullptr;
  return PyLong_FromSsize_t(len);
}

PyObject* BufferedIo_flush(BufferedIo* b, PyObject*) {
  if (b->flush() < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* BufferedIo_sendall(BufferedIo* b, PyObject* data) {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return nullptr;
  int rc = b->sendall(as_view(view));
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

PyMethodDef BufferedIo_methods[] = {
    {"read", py::method(BufferedIo_read), METH_VARARGS,
     "read($self, n=-1, /)\n--\n\n"
     "read(n=-1): n bytes (fewer only at EOF); all until EOF if n < 0."},
    {"read1", py::method(BufferedIo_read1), METH_VARARGS,
     "read1($self, n=-1, /)\n--\n\n"
     "read1(n=-1): what is buffered, or one read(2), at most n bytes."},
    {"readline", py::method(BufferedIo_readline), METH_FASTCALL | METH_KEYWORDS,
     "readline($self, limit=-1, delim=b'\\n')\n--\n\n"
     "readline(limit=-1, delim=b'\\n'): up to and including delim."},
    {"read_upto", py::method(BufferedIo_read_upto),
     METH_VARARGS | METH_KEYWORDS,
     "read_upto($self, delim, limit=-1)\n--\n\n"
     "read_upto(delim, limit=-1): up to and including delim (any length)."},
    {"find", py::method(BufferedIo_find), METH_VARARGS | METH_KEYWORDS,
     "find($self, delim, limit=-1)\n--\n\n"
     "find(delim, limit=-1): index of delim in the buffered data, reading "
     "as needed; -1 if EOF or limit comes first."},
    {"peek", py::method(BufferedIo_peek), METH_VARARGS,
     "peek($self, n=0, /)\n--\n\n"
     "peek(n=0): buffered bytes without consuming them (reads if empty)."},
    {"discard", py::method(BufferedIo_discard), METH_VARARGS,
     "discard($self, n, /)\n--\n\n"
     "discard(n): drop n bytes of input; returns how many were dropped."},
    {"unread", py::method(BufferedIo_unread), METH_O,
     "unread($self, data, /)\n--\n\n"
     "unread(data): push data back in front of the input."},
    {"readlines", py::method(BufferedIo_readlines), METH_VARARGS,
     "readlines($self, hint=-1, /)\n--\n\n"
     "readlines(hint=-1)"},
    {"write", py::method(BufferedIo_write), METH_O,
     "write($self, data, /)\n--\n\n"
     "write(data): buffer data (sent by flush or when 64 KiB are waiting)."},
    {"flush", py::method(BufferedIo_flush), METH_NOARGS,
     "flush($self, /)\n--\n\n"
     "Send the write buffer."},
    {"sendall", py::method(BufferedIo_sendall), METH_O,
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
      {Py_tp_doc,
       const_cast<char*>("BufferedIo(in_handle, out_handle=None)\n--\n\n"
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

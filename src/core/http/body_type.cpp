// The Python face of the request body (body.h): wsgi.input, the object
// the app reads the body with, and its type.
#include <Python.h>

#include "http/body.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::http {

namespace {

PyTypeObject* InputType = nullptr;

struct Input {
  PyObject_HEAD Connection* conn;  // null once the request is over
  Request* req;
};

Connection* input_conn(Input* in) {
  if (!in->conn) {
    PyErr_SetString(PyExc_ValueError,
                    "wsgi.input used after its request ended");
    return nullptr;
  }
  return in->conn;
}

int parse_size(PyObject* const* args, Py_ssize_t nargs, Py_ssize_t* size) {
  *size = -1;
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "expected at most one argument");
    return -1;
  }
  if (nargs == 1 && args[0] != Py_None) {
    if (!PyIndex_Check(args[0])) {
      PyErr_Format(PyExc_TypeError,
                   "argument should be integer or None, not '%.200s'",
                   Py_TYPE(args[0])->tp_name);
      return -1;
    }
    *size = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    if (*size == -1 && PyErr_Occurred()) return -1;
  }
  return 0;
}

PyObject* input_read(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  Input* in = reinterpret_cast<Input*>(self);
  Py_ssize_t size;
  if (parse_size(args, nargs, &size) < 0) return nullptr;
  Connection* c = input_conn(in);
  if (!c) return nullptr;
  return read_body(c, in->req, size);
}

PyObject* input_readline(PyObject* self, PyObject* const* args,
                         Py_ssize_t nargs) {
  Input* in = reinterpret_cast<Input*>(self);
  Py_ssize_t size;
  if (parse_size(args, nargs, &size) < 0) return nullptr;
  Connection* c = input_conn(in);
  if (!c) return nullptr;
  return readline_body(c, in->req, size);
}

PyObject* input_readlines(PyObject* self, PyObject* const* args,
                          Py_ssize_t nargs) {
  Py_ssize_t hint;
  if (parse_size(args, nargs, &hint) < 0) return nullptr;
  py::Ref lines = py::Ref::steal(PyList_New(0));
  if (!lines) return nullptr;
  Py_ssize_t total = 0;
  for (;;) {
    py::Ref line = py::Ref::steal(input_readline(self, nullptr, 0));
    if (!line) return nullptr;
    if (PyBytes_GET_SIZE(line.get()) == 0) break;
    total += PyBytes_GET_SIZE(line.get());
    if (PyList_Append(lines.get(), line.get()) < 0) return nullptr;
    if (hint > 0 && total >= hint) break;
  }
  return lines.release();
}

PyObject* input_iternext(PyObject* self) {
  PyObject* line = input_readline(self, nullptr, 0);
  if (!line) return nullptr;
  if (PyBytes_GET_SIZE(line) == 0) {
    Py_DECREF(line);
    return nullptr;  // StopIteration
  }
  return line;
}

PyMethodDef input_methods[] = {
    {"read", py::method(input_read), METH_FASTCALL,
     "read($self, size=-1, /)\n--\n\n"
     "read(size=-1) -> bytes of the request body"},
    {"readline", py::method(input_readline), METH_FASTCALL,
     "readline($self, size=-1, /)\n--\n\n"
     "readline(size=-1) -> one line of the request body"},
    {"readlines", py::method(input_readlines), METH_FASTCALL,
     "readlines($self, hint=-1, /)\n--\n\n"
     "readlines(hint=-1) -> list of lines"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

PyObject* new_input(Connection* c, Request* req) {
  Input* in = PyObject_New(Input, InputType);
  if (!in) return nullptr;
  in->conn = c;
  in->req = req;
  return reinterpret_cast<PyObject*>(in);
}

void detach_input(PyObject* input) {
  Input* in = reinterpret_cast<Input*>(input);
  in->conn = nullptr;
  in->req = nullptr;
}

PyTypeObject* make_input_type() {
  static PyType_Slot input_slots[] = {
      {Py_tp_methods, input_methods},
      {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
      {Py_tp_iternext, reinterpret_cast<void*>(input_iternext)},
      {Py_tp_doc,
       const_cast<char*>("wsgi.input: the request body, read cooperatively")},
      {0, nullptr}};
  static PyType_Spec input_spec = {"ptsevent._core.Input", sizeof(Input), 0,
                                   Py_TPFLAGS_DEFAULT, input_slots};
  InputType = py::make_heap_type<PyObject>(&input_spec);
  return InputType;
}

}  // namespace ptsevent::http

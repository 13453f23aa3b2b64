// The Python face of the response (response.h): the start_response
// callable and its write() (whose work is start_response() and send_body()
// in response.cpp), and wsgi.file_wrapper (sent by response.cpp's
// send_file).
#include <Python.h>
#include <structmember.h>

#include "http/environ.h"
#include "http/response.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::http {

PyTypeObject* FileWrapperType = nullptr;

namespace {

PyTypeObject* StartResponseType = nullptr;

struct StartResponse {
  PyObject_HEAD Connection* conn;
  Request* req;
  PyObject* write;  // the write() callable, made on first use
};

// ----------------------------------------------------------- start_response

PyObject* start_response_write(PyObject* self, PyObject* data);
PyMethodDef start_response_write_def = {
    "write", py::method(start_response_write), METH_O,
    "write(data): the WSGI write() callable"};

PyObject* start_response_call(PyObject* self, PyObject* args,
                              PyObject* kwargs) {
  StartResponse* sr = reinterpret_cast<StartResponse*>(self);
  PyObject *status, *headers, *exc_info = Py_None;
  if (!kwargs && PyTuple_GET_SIZE(args) >= 2 && PyTuple_GET_SIZE(args) <= 3) {
    status = PyTuple_GET_ITEM(args, 0);
    headers = PyTuple_GET_ITEM(args, 1);
    if (PyTuple_GET_SIZE(args) == 3) exc_info = PyTuple_GET_ITEM(args, 2);
  } else {
    static const char* kwlist[] = {"status", "headers", "exc_info", nullptr};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:start_response",
                                     const_cast<char**>(kwlist), &status,
                                     &headers, &exc_info))
      return nullptr;
  }
  if (start_response(sr->req, status, headers, exc_info) < 0) return nullptr;
  if (!sr->write) sr->write = PyCFunction_New(&start_response_write_def, self);
  return Py_XNewRef(sr->write);
}

PyObject* start_response_write(PyObject* self, PyObject* data) {
  StartResponse* sr = reinterpret_cast<StartResponse*>(self);
  Request* req = sr->req;
  if (!req) {
    PyErr_SetString(PyExc_RuntimeError,
                    "write() called after its request ended");
    return nullptr;
  }
  if (!req->started) {
    PyErr_SetString(PyExc_AssertionError,
                    "write() called before start_response()");
    return nullptr;
  }
  if (!PyBytes_Check(data)) {
    PyErr_Format(PyExc_TypeError, "write() argument must be bytes, not %.200s",
                 Py_TYPE(data)->tp_name);
    return nullptr;
  }
  if (send_body(sr->conn, req, PyBytes_AS_STRING(data),
                static_cast<size_t>(PyBytes_GET_SIZE(data))) < 0)
    return nullptr;
  Py_RETURN_NONE;
}

// py::make_heap_type's dealloc calls it.
void start_response_destroy(PyObject* self) {
  // detach() already dropped write (which holds self) at the request's end.
  Py_CLEAR(reinterpret_cast<StartResponse*>(self)->write);
}

PyMethodDef start_response_methods[] = {
    {"write", py::method(start_response_write), METH_O,
     "write($self, data, /)\n--\n\n"
     "write(data): the WSGI write() callable"},
    {nullptr, nullptr, 0, nullptr}};

// ------------------------------------------------------------ file_wrapper

int file_wrapper_init(PyObject* self, PyObject* args, PyObject* kwargs) {
  FileWrapper* fw = reinterpret_cast<FileWrapper*>(self);
  PyObject* filelike;
  Py_ssize_t blksize = 8192;
  static const char* kwlist[] = {"filelike", "blksize", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|n:FileWrapper",
                                   const_cast<char**>(kwlist), &filelike,
                                   &blksize))
    return -1;
  if (blksize <= 0) {
    PyErr_SetString(PyExc_ValueError, "blksize must be positive");
    return -1;
  }
  Py_XSETREF(fw->filelike, Py_NewRef(filelike));
  fw->blksize = blksize;
  return 0;
}

PyObject* file_wrapper_next(PyObject* self) {
  FileWrapper* fw = reinterpret_cast<FileWrapper*>(self);
  if (!fw->filelike) return nullptr;
  PyObject* data = PyObject_CallMethod(fw->filelike, "read", "n", fw->blksize);
  if (!data) return nullptr;
  if (PyObject_Length(data) == 0) {
    Py_DECREF(data);
    return nullptr;
  }
  return data;
}

PyObject* file_wrapper_close(PyObject* self, PyObject*) {
  FileWrapper* fw = reinterpret_cast<FileWrapper*>(self);
  if (fw->filelike && PyObject_HasAttr(fw->filelike, K.close))
    return PyObject_CallMethodNoArgs(fw->filelike, K.close);
  Py_RETURN_NONE;
}

int file_wrapper_traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(reinterpret_cast<FileWrapper*>(self)->filelike);
  return 0;
}

int file_wrapper_clear(PyObject* self) {
  Py_CLEAR(reinterpret_cast<FileWrapper*>(self)->filelike);
  return 0;
}

PyMethodDef file_wrapper_methods[] = {
    {"close", py::method(file_wrapper_close), METH_NOARGS,
     "close($self, /)\n--\n\n"
     "close the wrapped file"},
    {nullptr, nullptr, 0, nullptr}};

PyMemberDef file_wrapper_members[] = {
    {"filelike", T_OBJECT, offsetof(FileWrapper, filelike), READONLY, nullptr},
    {"blksize", T_PYSSIZET, offsetof(FileWrapper, blksize), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr}};

}  // namespace

PyObject* new_start_response(Connection* c, Request* req) {
  StartResponse* sr = PyObject_New(StartResponse, StartResponseType);
  if (!sr) return nullptr;
  sr->conn = c;
  sr->req = req;
  sr->write = nullptr;
  return reinterpret_cast<PyObject*>(sr);
}

void detach_start_response(PyObject* start_response) {
  StartResponse* sr = reinterpret_cast<StartResponse*>(start_response);
  sr->conn = nullptr;
  sr->req = nullptr;
  Py_CLEAR(sr->write);  // write holds sr: break the cycle
}

PyTypeObject* make_start_response_type() {
  static PyType_Slot sr_slots[] = {
      {Py_tp_call, reinterpret_cast<void*>(start_response_call)},
      {Py_tp_methods, start_response_methods},
      {Py_tp_doc,
       const_cast<char*>("start_response(status, headers, exc_info=None)")},
      {0, nullptr}};
  static PyType_Spec sr_spec = {"ptsevent._core.StartResponse",
                                sizeof(StartResponse), 0, Py_TPFLAGS_DEFAULT,
                                sr_slots};
  StartResponseType =
      py::make_heap_type<PyObject, nullptr, start_response_destroy>(&sr_spec);
  return StartResponseType;
}

PyTypeObject* make_file_wrapper_type() {
  static PyType_Slot fw_slots[] = {
      {Py_tp_init, reinterpret_cast<void*>(file_wrapper_init)},
      {Py_tp_new, reinterpret_cast<void*>(PyType_GenericNew)},
      {Py_tp_traverse, reinterpret_cast<void*>(file_wrapper_traverse)},
      {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
      {Py_tp_iternext, reinterpret_cast<void*>(file_wrapper_next)},
      {Py_tp_methods, file_wrapper_methods},
      {Py_tp_members, file_wrapper_members},
      {Py_tp_doc,
       const_cast<char*>(
           "FileWrapper(filelike, blksize=8192)\n--\n\n"
           "FileWrapper(filelike, blksize=8192): wsgi.file_wrapper; a "
           "regular file is sent with sendfile(2)")},
      {0, nullptr}};
  static PyType_Spec fw_spec = {
      "ptsevent.wsgi.FileWrapper", sizeof(FileWrapper), 0,
      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, fw_slots};
  FileWrapperType = py::make_heap_type<PyObject, file_wrapper_clear>(&fw_spec);
  return FileWrapperType;
}

}  // namespace ptsevent::http

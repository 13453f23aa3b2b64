// Small helpers for exceptions passed around as objects (kill(), Timeout,
// Waiter.throw()): an "exception argument" is a BaseException subclass or
// instance, as `raise` accepts.
#pragma once

#include <Python.h>

#include "py/ref.h"

namespace ptsevent::py {

// 0 if `exc` can be raised; -1 with TypeError otherwise.
inline int check_exception_arg(PyObject* exc) {
  if (PyExceptionClass_Check(exc) || PyExceptionInstance_Check(exc)) return 0;
  PyErr_SetString(PyExc_TypeError,
                  "exceptions must be classes or instances deriving from "
                  "BaseException");
  return -1;
}

// Sets `exc` (class or instance) as the current error, as `raise exc`.
inline void raise(PyObject* exc) {
  if (PyExceptionClass_Check(exc))
    PyErr_SetNone(exc);
  else
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
}

// Takes the current error as a normalized exception instance, its
// traceback attached (the error indicator is cleared).
inline Ref fetch_error() {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (tb && value) PyException_SetTraceback(value, tb);
  Py_XDECREF(type);
  Py_XDECREF(tb);
  return Ref::steal(value);
}

}  // namespace ptsevent::py

// py::method(f): a C function written with its real signature, as the
// PyCFunction that PyMethodDef::ml_meth is declared as.
//
// CPython calls ml_meth with the signature its METH_* flags name; C++ only
// has one pointer type for the field, so every method table casts. The
// cast goes through void (*)() (the one function pointer type GCC's
// -Wcast-function-type lets any other become), and only from the shapes
// CPython can call: a function with any other signature does not compile.
// `Self` is the type's own struct (or PyObject, or unused module self).
// The flags beside it in the table must still name the same shape.
#pragma once

#include <Python.h>

namespace ptsevent::py {

namespace detail {
template <typename F>
PyCFunction as_cfunction(F* f) {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f));
}
}  // namespace detail

// METH_NOARGS, METH_O, METH_VARARGS
template <typename Self>
PyCFunction method(PyObject* (*f)(Self*, PyObject*)) {
  return detail::as_cfunction(f);
}

// METH_VARARGS | METH_KEYWORDS
template <typename Self>
PyCFunction method(PyObject* (*f)(Self*, PyObject*, PyObject*)) {
  return detail::as_cfunction(f);
}

// METH_FASTCALL
template <typename Self>
PyCFunction method(PyObject* (*f)(Self*, PyObject* const*, Py_ssize_t)) {
  return detail::as_cfunction(f);
}

// METH_FASTCALL | METH_KEYWORDS
template <typename Self>
PyCFunction method(PyObject* (*f)(Self*, PyObject* const*, Py_ssize_t,
                                  PyObject*)) {
  return detail::as_cfunction(f);
}

}  // namespace ptsevent::py

// Argument parsing for METH_FASTCALL | METH_KEYWORDS functions.
#pragma once

#include <Python.h>

namespace ptsevent::py {

// Reads the positional and keyword arguments of a FASTCALL|KEYWORDS call
// into `out` (by position in `names`; entries not given keep what the
// caller put there). Returns -1 with TypeError for too many arguments, an
// unknown keyword or one given twice.
inline int parse_args(const char* fname, PyObject* const* args,
                      Py_ssize_t nargs, PyObject* kwnames,
                      const char* const* names, Py_ssize_t n, PyObject** out) {
  if (nargs > n) {
    PyErr_Format(PyExc_TypeError,
                 "%s() takes at most %zd arguments (%zd given)", fname, n,
                 nargs);
    return -1;
  }
  for (Py_ssize_t i = 0; i < nargs; ++i) out[i] = args[i];
  if (!kwnames) return 0;
  for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); ++k) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, k);
    Py_ssize_t i = 0;
    for (; i < n; ++i)
      if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) break;
    if (i == n) {
      PyErr_Format(PyExc_TypeError,
                   "%s() got an unexpected keyword argument '%U'", fname, key);
      return -1;
    }
    if (i < nargs) {
      PyErr_Format(PyExc_TypeError,
                   "%s() got multiple values for argument '%s'", fname,
                   names[i]);
      return -1;
    }
    out[i] = args[nargs + k];
  }
  return 0;
}

}  // namespace ptsevent::py

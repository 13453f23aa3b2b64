#include "py/greenlet_api.h"

#include <greenlet/greenlet.h>

namespace ptsevent::py::greenlet {

bool import_api() {
  PyGreenlet_Import();
  return _PyGreenlet_API != nullptr && !PyErr_Occurred();
}

PyTypeObject* type() { return &PyGreenlet_Type; }
PyObject* exit_exception() { return PyExc_GreenletExit; }

PyObject* current() {
  return reinterpret_cast<PyObject*>(PyGreenlet_GetCurrent());
}

PyObject* create(PyObject* run, PyObject* parent) {
  return reinterpret_cast<PyObject*>(
      PyGreenlet_New(run, reinterpret_cast<PyGreenlet*>(parent)));
}

PyObject* switch_to(PyObject* g) {
  // An empty tuple of arguments: the receiving side ignores the value.
  static PyObject* const no_args = PyTuple_New(0);
  return PyGreenlet_Switch(reinterpret_cast<PyGreenlet*>(g), no_args, nullptr);
}

bool started(PyObject* g) {
  return PyGreenlet_STARTED(reinterpret_cast<PyGreenlet*>(g));
}

bool active(PyObject* g) {
  return PyGreenlet_ACTIVE(reinterpret_cast<PyGreenlet*>(g));
}

PyObject* parent(PyObject* g) {
  return reinterpret_cast<PyObject*>(
      PyGreenlet_GetParent(reinterpret_cast<PyGreenlet*>(g)));
}

}  // namespace ptsevent::py::greenlet

// A tiny wrapper over greenlet's C API. greenlet.h keeps its function table
// in a static per translation unit, so it is included in greenlet_api.cpp
// only; the rest of the core calls these functions.
#pragma once

#include <Python.h>

namespace ptsevent::py::greenlet {

// Imports greenlet's C API capsule. Returns false with a Python error set.
bool import_api();

PyTypeObject* type();        // greenlet.greenlet
PyObject* exit_exception();  // greenlet.GreenletExit (borrowed)

PyObject* current();  // new reference to the running greenlet
// A new greenlet that will call run() with the arguments of its first
// switch, and whose parent is `parent` (null: the current greenlet).
PyObject* create(PyObject* run, PyObject* parent);
// Switches to g with no arguments. Returns what g's side passed back (a new
// reference) or null with the exception that was thrown into us.
PyObject* switch_to(PyObject* g);
bool started(PyObject* g);
bool active(PyObject* g);
inline bool dead(PyObject* g) { return started(g) && !active(g); }
// Null for the thread's root greenlet.
PyObject* parent(PyObject* g);  // new reference or null

}  // namespace ptsevent::py::greenlet

// Lock: threading.Lock for tasklets, fair, in C++ (see lock.cpp).
#pragma once

#include <Python.h>

namespace ptsevent::hub {

extern PyTypeObject* LockType;
PyTypeObject* make_lock_type();
// Module functions: _lock_timeout (for the Python RLock).
extern PyMethodDef lock_functions[];

// For C++ callers, on an object of LockType: acquire(False) (true when
// taken) and release() (nullptr with RuntimeError when not locked), without
// a method call.
bool lock_try_acquire(PyObject* lock) noexcept;
PyObject* lock_release(PyObject* lock);

}  // namespace ptsevent::hub

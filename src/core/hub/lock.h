// Lock: threading.Lock for tasklets, fair, in C++ (see lock.cpp).
#pragma once

#include <Python.h>

namespace ptsevent::hub {

extern PyTypeObject* LockType;
PyTypeObject* make_lock_type();
// acquire(blocking, timeout)'s arguments (either may be null: not given)
// checked as threading.Lock.acquire checks them: *seconds is -1 for no
// limit, else >= 0 (0 for blocking false). Shared with RLock.
int lock_timeout(PyObject* blocking, PyObject* timeout, double* seconds);

// For C++ callers, on an object of LockType: acquire(False) (true when
// taken) and release() (nullptr with RuntimeError when not locked), without
// a method call.
bool lock_try_acquire(PyObject* lock) noexcept;
PyObject* lock_release(PyObject* lock);

}  // namespace ptsevent::hub

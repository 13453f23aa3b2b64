// Lock: threading.Lock for tasklets, fair, in C++ (see lock.cpp).
#pragma once

#include <Python.h>

namespace ptsevent::hub {

extern PyTypeObject* LockType;
PyTypeObject* make_lock_type();
// Module functions: _lock_timeout (for the Python RLock).
extern PyMethodDef lock_functions[];

}  // namespace ptsevent::hub

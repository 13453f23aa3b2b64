// Semaphore and BoundedSemaphore (`ptsevent.locks`): threading.Semaphore
// for tasklets, fair, in C++ over Waiters (waiters.h).
//
// State: the count of free permits plus the FIFO of waiting acquirers. A
// release with waiters hands each permit straight to the oldest one (the
// count does not move), so a tasklet that releases and acquires again
// queues behind them. A waiter interrupted after it was handed a permit
// releases it again: to the next waiter, or back to the count. A
// BoundedSemaphore counts the permits handed and not yet taken as released.
//
// Threads: as Lock. Another OS thread may acquire a free permit and may
// release; the owner hub hands released permits to its waiters
// (`_dispatch`).
//
// The engine (this header, semaphore.cpp) works on the object; its Python
// face (argument parsing, method tables, the types) is semaphore_type.cpp.
#pragma once

#include <Python.h>

#include "hub/waiters.h"

namespace ptsevent::hub {

struct Semaphore {
  PyObject_HEAD PyObject* weakrefs_;
  Waiters w_;
  Py_ssize_t value_;  // free permits
  Py_ssize_t bound_;  // the initial value of a BoundedSemaphore, else -1

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
};

extern PyTypeObject* SemaphoreType;
extern PyTypeObject* BoundedSemaphoreType;
// Both types (the second a subclass of the first). Null with an error.
PyTypeObject* make_semaphore_types();

// Takes a permit, waiting up to `seconds` (< 0: no limit, 0: not at all)
// when none is free. 1 taken, 0 not, -1 with an error.
int semaphore_acquire(Semaphore* s, double seconds);
// Returns n permits (n >= 1), each to the oldest waiter if any. -1 with
// ValueError when a BoundedSemaphore would go over its initial value.
int semaphore_release(Semaphore* s, Py_ssize_t n);
// In the owner hub: hands the permits released from another thread.
void semaphore_dispatch(Semaphore* s) noexcept;

}  // namespace ptsevent::hub

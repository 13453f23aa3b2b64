// RLock (`ptsevent.locks.RLock`): threading.RLock for tasklets, fair, in
// C++ over Waiters (waiters.h). The owner is the tasklet that acquired it
// (ptsevent.getcurrent()).
//
// The last release with waiters hands the lock to the oldest one: while
// the hand-off is in flight nobody owns it but it is not free either
// (w_.handed), and the waiter becomes the owner with one level when it
// runs. A waiter interrupted after it was handed the lock passes it on to
// the next waiter, or frees it.
//
// Threads: as Lock (see waiters.h). A release from another OS thread (its
// own tasklet owning the lock) frees it at once and the owner hub hands it
// to the oldest waiter (`_dispatch`).
//
// The engine (this header, rlock.cpp) works on the object; its Python face
// is rlock_type.cpp.
#pragma once

#include <Python.h>

#include "hub/waiters.h"

namespace ptsevent::hub {

struct RLock {
  PyObject_HEAD PyObject* weakrefs_;
  Waiters w_;
  PyObject* owner_;   // the owning Tasklet (a reference), or null
  Py_ssize_t count_;  // recursion levels of the owner

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
  // Neither owned nor on its way to a waiter.
  bool free() const noexcept { return !owner_ && w_.handed == 0; }
};

extern PyTypeObject* RLockType;
PyTypeObject* make_rlock_type();

// Acquires for `me`, the running tasklet of `hub` (this thread's), waiting
// up to `seconds` (< 0: no limit, 0: not at all). 1 acquired, 0 not, -1
// with an error.
int rlock_acquire(RLock* l, Hub* hub, Tasklet* me, double seconds);
// Drops every level and gives the lock to the oldest waiter, if any.
void rlock_free(RLock* l);
// In the owner hub: hands a lock freed by another thread.
void rlock_dispatch(RLock* l) noexcept;

}  // namespace ptsevent::hub

// Lock (`_core.Lock`, exported as `ptsevent.Lock` and
// `ptsevent.locks.Lock`): threading.Lock for tasklets, fair, in C++.
//
// State: locked_ plus a FIFO of waiting tasklets (allocated on the first
// contended acquire). release() with a waiter hands the lock straight to the
// oldest one: the lock stays locked and the waiter is appended to the
// current hub pass, so a tasklet that releases and re-acquires at once
// queues behind it. A waiter interrupted (kill, Timeout) after it was handed
// the lock passes it on to the next waiter, or unlocks it: it is never lost.
//
// Threads. The waiters all belong to one hub (the one of the thread that
// queued the first of them); the lock moves to another thread's hub when no
// tasklet waits on it and no hand-off is in flight. Another OS thread may
// acquire a free lock and may release it (as with threading.Lock): the
// state changes at once and, if tasklets wait, the owner hub hands the lock
// to the oldest one through Hub::post_call.
//
// The engine (this header, lock.cpp) works on the object; its Python face
// (argument checks, the method table, the type) is lock_type.cpp.
#pragma once

#include <Python.h>

#include "hub/waiters.h"

namespace ptsevent::hub {

struct Lock {
  PyObject_HEAD PyObject* weakrefs_;
  Waiters w_;
  bool locked_;

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
};

extern PyTypeObject* LockType;
PyTypeObject* make_lock_type();
// acquire(blocking, timeout)'s arguments (either may be null: not given)
// checked as threading.Lock.acquire checks them: *seconds is -1 for no
// limit, else >= 0 (0 for blocking false). Shared with RLock.
int lock_timeout(PyObject* blocking, PyObject* timeout, double* seconds);

// The contended acquire: wait up to `timeout` seconds (< 0: no limit).
// True, False, or null with an error.
PyObject* lock_acquire_slow(Lock* l, double timeout);
// In the owner hub, after a release from another thread.
void lock_dispatch(Lock* l) noexcept;

// For C++ callers, on an object of LockType: acquire(False) (true when
// taken) and release() (nullptr with RuntimeError when not locked), without
// a method call.
bool lock_try_acquire(PyObject* lock) noexcept;
PyObject* lock_release(PyObject* lock);

}  // namespace ptsevent::hub

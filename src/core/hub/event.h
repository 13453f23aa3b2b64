// Event (`ptsevent.Event`): threading.Event for tasklets, in C++ over
// Waiters (waiters.h). AsyncResult (event.py) waits on one.
//
// set() wakes every waiter (oldest first) and bumps a generation count: a
// waiter returns True when the flag is set or a set() happened since its
// wait began, so set() then clear() before the waiters run still wakes them
// with True. Nothing is passed on by an interrupted waiter (everybody was
// woken), and a wake-up without a set() since the wait began (a dispatch
// for an earlier set from another thread) waits again for what is left of
// the timeout.
//
// Threads: as the other primitives. set() from another OS thread sets the
// flag at once and the owner hub wakes its waiters (`_dispatch`).
//
// The engine (this header, event.cpp) works on the object; its Python face
// is event_type.cpp.
#pragma once

#include <Python.h>

#include "hub/waiters.h"

namespace ptsevent::hub {

struct Event {
  PyObject_HEAD PyObject* weakrefs_;
  Waiters w_;
  uint64_t gen_;  // set() calls so far
  bool flag_;

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
};

extern PyTypeObject* EventType;
PyTypeObject* make_event_type();

void event_set(Event* e);
// Waits until the flag is set, up to `seconds` (< 0: no limit; 0: does not
// wait). 1 set, 0 timed out, -1 with an error.
int event_wait(Event* e, double seconds);
// In the owner hub: wakes the waiters of a set() from another thread.
void event_dispatch(Event* e) noexcept;

}  // namespace ptsevent::hub

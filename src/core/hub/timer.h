// Timer and Waiter: the two small objects the Python layer builds on.
//
// Timer (`_core.Timer`) arms a libevent timer that, when it expires, makes
// the tasklet that started it raise an exception at its wait point; the
// Python `ptsevent.Timeout` is built on it. While armed (or fired and not yet
// delivered) the Timer holds a reference to itself, so the callback's
// argument stays valid; cancel() or delivery drops it.
//
// Waiter (`_core.Waiter`) is a one-shot result slot: one tasklet waits in
// get(), anyone — including another OS thread — sets the result with
// switch()/throw(). From another thread the result travels through the
// hub's post queue and eventfd. A "remote" waiter counts as something that
// can wake a waiting tasklet (a pending run_in_thread job) until its result
// has been delivered.
//
// The engines (this header, timer.cpp) arm, fire and cancel a Timer and
// move a Waiter's result; their Python face (construction, argument checks,
// GC support, method tables, the types) is timer_type.cpp.
#pragma once

#include <Python.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include <vector>

#include "hub/hub.h"
#include "py/ref.h"

namespace ptsevent::hub {

struct Timer {
  PyObject_HEAD PyObject* weakrefs_;
  Hub* hub_;
  uint64_t hub_serial_;
  uint64_t starts_;  // start() calls so far: names the run a cancel is for
  py::Ref target_;   // the Tasklet to interrupt
  py::Ref exc_;      // what it raises
  struct event ev_;
  // A libevent callback argument (hub/event_owner.h): a Python object on
  // the heap that holds a reference to itself while armed.
  static constexpr bool kEventOwner = true;
  bool armed_;
  bool fired_;      // parked in the hub's fired list
  bool cancelled_;  // cancelled after firing, before delivery

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
  // Called by the hub with the GIL after the timer fired.
  void deliver();
  // Removes the libevent registration (hub shutdown). No Python calls.
  void disarm() noexcept;
  static void on_fire(evutil_socket_t, short, void* arg);
};

struct Waiter {
  PyObject_HEAD PyObject* weakrefs_;
  Hub* hub_;
  py::Ref waiter_;  // the Tasklet inside get()
  py::Ref value_;
  py::Ref exc_;
  bool has_result_;
  bool done_;     // the hub has seen the result
  bool counted_;  // counted in the hub's thread_jobs

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
  void deliver();
};

extern PyTypeObject* TimerType;
extern PyTypeObject* WaiterType;
PyTypeObject* make_timer_type();
PyTypeObject* make_waiter_type();

// Arms t for the running tasklet: after `seconds` (>= 0) it raises exc
// there. None, or null with an error.
PyObject* timer_start(Timer* t, double seconds, PyObject* exc);
// Disarms t; from another thread, hands the cancel to t's hub. None, or
// null with an error.
PyObject* timer_cancel(Timer* t);
// cancel(), posted from another thread, if t is still in its n-th run.
PyObject* timer_cancel_run(Timer* t, unsigned long long n);

// Sets w's result: a value, or (exc not null) an exception to raise. From
// another thread through w's hub. 0, or -1 with an error.
int waiter_set(Waiter* w, PyObject* value, PyObject* exc);
// Waits up to `timeout` seconds (< 0: no limit) for w's result, in the
// thread that made w. New reference, or null with an error (the result's
// exception, TimeoutError).
PyObject* waiter_get(Waiter* w, double timeout);

}  // namespace ptsevent::hub

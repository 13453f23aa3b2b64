// Tasklet: the Python object `ptsevent.Tasklet`, one unit of concurrent work.
//
// A tasklet is not a greenlet: it borrows a worker greenlet from its hub's
// pool when it starts and gives it back when it finishes, so spawning does
// not create a greenlet (and its C stack) each time. getcurrent() identity
// is therefore per tasklet. The main greenlet of a thread (and any greenlet
// ptsevent did not create) is "adopted": it gets a Tasklet that owns it.
//
// Lifetime: the hub keeps a reference to every live tasklet (scheduled or
// started, not dead), so the libevent events embedded here can be armed
// with `this` as their argument; they are always disarmed before the
// tasklet dies or is freed.
#pragma once

#include <Python.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include <array>

#include "hub/hub.h"
#include "py/ref.h"

namespace ptsevent::hub {

enum class State : uint8_t {
  kIdle,     // created, not started (Tasklet(fn) before start())
  kPending,  // scheduled to start (run queue or spawn_later timer)
  kRunning,  // started: has a greenlet (running or suspended)
  kDead,
};

enum class Wake : uint8_t { kNone, kReady, kIo, kTimeout };

struct Tasklet {
  PyObject_HEAD PyObject* dict_;
  PyObject* weakrefs_;
  Hub* hub_;  // only dereferenced when hub_serial_ matches
  uint64_t hub_serial_;

  py::Ref greenlet_;
  py::Ref run_, args_, kwargs_, context_;
  py::Ref value_, exception_;
  py::Ref links_;        // list of callables, or null
  py::Ref joiners_;      // list of tasklets waiting in join(), or null
  py::Ref pending_exc_;  // raised at the next wake-up (kill, Timeout ...)
  py::Ref tempval_;      // a channel transfer (Stackless's tempval)

  // One libevent event for every wait of this tasklet: a descriptor wait
  // (wait_fd, io_armed_), a timer (wait_with_timer, or start() with a
  // delay: timer_armed_). At most one of them is armed at a time.
  struct event ev_;
  // A libevent callback argument (hub/event_owner.h): a Python object on
  // the heap, held by the hub's live list while any event of it is armed.
  static constexpr bool kEventOwner = true;

  void* job_arg_;  // for native jobs (the HTTP server's connection)

  Tasklet* live_prev_;
  Tasklet* live_next_;

  // Links in an IoHandle's circular list of waiters (null when on none).
  Tasklet* io_wait_prev_;
  Tasklet* io_wait_next_;

  State state_;
  Wake wake_;
  bool live_;     // on the hub's live list (holds a reference)
  bool queued_;   // on the run queue
  bool zombie_;   // died while queued: the queue owns the hub's ref
  bool waiting_;  // inside Hub::suspend
  bool io_armed_;
  bool timer_armed_;
  bool adopted_;       // wraps a greenlet ptsevent did not create
  bool main_;          // the thread's root greenlet
  uint8_t temp_kind_;  // what tempval_ is: 0 value, 1 exception, 2 closed

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
  // Every owned reference, for construction, tp_traverse and destruction.
  std::array<py::Ref*, 11> refs() noexcept {
    return {&greenlet_,  &run_,   &args_,    &kwargs_,      &context_, &value_,
            &exception_, &links_, &joiners_, &pending_exc_, &tempval_};
  }

  // Waits (Hub::suspend) with the timer armed for `seconds` (< 0: none).
  // Returns 1 on wake-up by timeout, 0 on other wake-up, -1 on error.
  int wait_with_timer(double seconds);
  // Arms ev_ for fd/what with an optional timeout and waits.
  // Returns 1 on timeout, 0 when ready, -1 on error.
  int wait_fd(int fd, short what, double seconds);
  void disarm() noexcept;
  // Schedules this (idle) tasklet to start now or after `delay` seconds.
  // in_pass: at the end of the current pass (Hub::schedule_in_pass).
  int start(double delay, bool in_pass = false);
  // Runs the job in the current (worker) greenlet and records the outcome.
  void run_job();
  // Marks the tasklet dead with a result (value) or an exception; wakes
  // joiners, schedules links.
  void finish(PyObject* value, PyObject* exc);
  // kill(): see Tasklet.kill in tasklet.cpp.
  int kill(PyObject* exc, bool block, double timeout);
  int join(double timeout);

  static void on_io(evutil_socket_t fd, short what, void* arg);
  static void on_timer(evutil_socket_t fd, short what, void* arg);
};

extern PyTypeObject* TaskletType;
inline bool is_tasklet(PyObject* o) {
  return PyObject_TypeCheck(o, TaskletType);
}

// Creates the Tasklet type. Returns null with an error set.
PyTypeObject* make_tasklet_type();
// A new, idle tasklet of `type` (TaskletType or a subclass) on `hub`.
Tasklet* alloc_tasklet(PyTypeObject* type, Hub* hub);
// Binds fn(*args, **kw) (args a tuple or null) and a copy of the current
// context to an idle tasklet. -1 with TypeError if fn is not callable.
int bind_job(Tasklet* t, PyObject* fn, PyObject* args, PyObject* kw);
// A new tasklet for fn(*args, **kwargs) in a copy of the current context.
Tasklet* new_tasklet(Hub* hub, PyObject* fn, PyObject* args, PyObject* kw);
// An adopted tasklet for a greenlet ptsevent did not create.
Tasklet* adopt_greenlet(Hub* hub, PyObject* greenlet, bool is_main);

// Module-level functions (METH_FASTCALL), exposed through the binding.
extern PyMethodDef tasklet_functions[];

}  // namespace ptsevent::hub

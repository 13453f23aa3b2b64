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
#include "hub/wait_record.h"
#include "py/ref.h"

namespace ptsevent::hub {

enum class State : uint8_t {
  kIdle,     // created, not started (Tasklet(fn) before start())
  kPending,  // scheduled to start (run queue or spawn_later timer)
  kRunning,  // started: has a greenlet (running or suspended)
  kDead,
};

enum class Wake : uint8_t { kNone, kReady, kIo, kTimeout };

// A native job: fn(arg) run in the tasklet's greenlet instead of a Python
// call. New reference or null with an error set, as a Python call.
using NativeJob = PyObject* (*)(void* arg);

// The Python object header and the slots CPython finds by offset
// (__dict__, __weakref__): a standard-layout base, so that offsetof applies.
struct TaskletHead {
  PyObject_HEAD PyObject* dict;
  PyObject* weakrefs;
};

// What the Tasklet carries is what the hub needs to run, wait and end it:
// its state, its greenlet, its job, its result, a pending interrupt, its one
// embedded event, the links of the hub's live list, and a pointer to what
// it waits on (hub/wait_record.h), which that structure owns. Fields are
// private: the hub (a friend) and the functions below work on them.
struct Tasklet : TaskletHead {
 public:
  PyObject* self() noexcept { return &ob_base; }
  static Tasklet* from(PyObject* o) noexcept {
    return static_cast<Tasklet*>(reinterpret_cast<TaskletHead*>(o));
  }

  Hub* hub() const noexcept { return hub_; }
  State state() const noexcept { return state_; }
  bool dead() const noexcept { return state_ == State::kDead; }
  // Suspended inside Hub::suspend: something must schedule it.
  bool waiting() const noexcept { return waiting_; }
  // On the run queue, or scheduled to start.
  bool queued() const noexcept { return queued_ || state_ == State::kPending; }
  bool is_main() const noexcept { return main_; }
  // Wraps a greenlet ptsevent did not create.
  bool adopted() const noexcept { return adopted_; }
  PyObject* greenlet() const noexcept { return greenlet_.get(); }
  // The Python job (null for a native job or once dead).
  PyObject* run() const noexcept { return run_.get(); }
  // The outcome once dead (borrowed, null for none).
  PyObject* value() const noexcept { return value_.get(); }
  PyObject* exception() const noexcept { return exception_.get(); }
  // An interrupt (kill, Timeout ...) is on its way to this tasklet.
  bool interrupt_pending() const noexcept {
    return static_cast<bool>(pending_exc_);
  }
  // What it waits on while listed by a waiting structure, else null.
  WaitRecord* wait_record() const noexcept { return wait_; }

  // Waits (Hub::suspend) with the timer armed for `seconds` (< 0: none).
  // Returns 1 on wake-up by timeout, 0 on other wake-up, -1 on error.
  int wait_with_timer(double seconds);
  // Arms ev_ for fd/what with an optional timeout and waits.
  // Returns 1 on timeout, 0 when ready, -1 on error.
  int wait_fd(int fd, short what, double seconds);
  // Waits listed on `list` (owned by what this tasklet waits on) through
  // `r`, until the owner takes r off the list and schedules this tasklet,
  // the timer runs out (`seconds`, < 0: none) or an interrupt comes. r is
  // off the list on return; *woken says whether the owner took it off.
  // Returns as wait_with_timer.
  int wait_listed(WaitList* list, WaitRecord* r, double seconds, bool* woken);
  void disarm() noexcept;
  // Schedules this (idle) tasklet to start now or after `delay` seconds.
  // in_pass: at the end of the current pass (Hub::schedule_in_pass).
  int start(double delay, bool in_pass = false);
  // Marks the tasklet dead with a result (value) or an exception; wakes
  // joiners, schedules links.
  void finish(PyObject* value, PyObject* exc);
  // kill(): see Tasklet.kill in tasklet.cpp.
  int kill(PyObject* exc, bool block, double timeout);
  int join(double timeout);
  // link(cb): cb(self) in a new tasklet once dead; unlink(cb) undoes it.
  int link(PyObject* cb);
  int unlink(PyObject* cb);

  // The Python type's GC and teardown (tasklet_type.cpp).
  int traverse(visitproc visit, void* arg);
  void clear() noexcept;
  void destroy() noexcept;

  // A libevent callback argument (hub/event_owner.h): a Python object on
  // the heap, held by the hub's live list while any event of it is armed.
  static constexpr bool kEventOwner = true;

 private:
  friend class Hub;
  friend Tasklet* alloc_tasklet(PyTypeObject* type, Hub* hub);
  friend int bind_job(Tasklet* t, PyObject* fn, PyObject* args, PyObject* kw);
  friend Tasklet* adopt_greenlet(Hub* hub, PyObject* greenlet, bool is_main);
  friend Tasklet* start_native_job(Hub* hub, NativeJob fn, void* arg,
                                   PyObject* context);

  // This tasklet's hub if it is the running thread's, else null with
  // RuntimeError.
  Hub* hub_or_error();
  // Runs the job in the current (worker) greenlet; the outcome goes to
  // *value or *exc (normalized instance). Reports unexpected errors.
  void run_job(py::Ref* value, py::Ref* exc);
  static void on_io(evutil_socket_t fd, short what, void* arg);
  static void on_timer(evutil_socket_t fd, short what, void* arg);

  // Every owned reference, for construction, tp_traverse and destruction.
  std::array<py::Ref*, 9> refs() noexcept {
    return {&greenlet_, &run_,       &args_,  &kwargs_,     &context_,
            &value_,    &exception_, &links_, &pending_exc_};
  }

  Hub* hub_;  // only dereferenced when hub_serial_ matches
  uint64_t hub_serial_;

  py::Ref greenlet_;
  // The job: run_(*args_, **kwargs_), or native_(native_arg_), in context_.
  py::Ref run_, args_, kwargs_, context_;
  NativeJob native_;
  void* native_arg_;
  py::Ref value_, exception_;
  py::Ref links_;        // list of callables, or null
  py::Ref pending_exc_;  // raised at the next wake-up (kill, Timeout ...)
  // The tasklets waiting in join(): this tasklet's own waiting structure.
  WaitList joiners_;
  WaitRecord* wait_;  // what it waits on (owned by that structure), or null

  // One libevent event for every wait of this tasklet: a descriptor wait
  // (wait_fd, io_armed_), a timer (wait_with_timer, or start() with a
  // delay: timer_armed_). At most one of them is armed at a time.
  struct event ev_;

  Tasklet* live_prev_;
  Tasklet* live_next_;

  State state_;
  Wake wake_;
  bool live_;     // on the hub's live list (holds a reference)
  bool queued_;   // on the run queue
  bool zombie_;   // died while queued: the queue owns the hub's ref
  bool waiting_;  // inside Hub::suspend
  bool io_armed_;
  bool timer_armed_;
  bool adopted_;  // wraps a greenlet ptsevent did not create
  bool main_;     // the thread's root greenlet
};

extern PyTypeObject* TaskletType;

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
// Starts a tasklet that runs fn(arg) in a copy of `context` (a
// contextvars.Context): how native code (the HTTP server) runs work of its
// own in a tasklet. A new reference to the started tasklet, or null with
// an error set.
Tasklet* start_native_job(Hub* hub, NativeJob fn, void* arg, PyObject* context);

// Module-level functions that make a tasklet (spawn, spawn_later),
// exposed through the binding.
extern PyMethodDef tasklet_functions[];

}  // namespace ptsevent::hub

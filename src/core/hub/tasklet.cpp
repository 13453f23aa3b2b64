#include "hub/tasklet.h"

#include <errno.h>
#include <fcntl.h>
#include <structmember.h>

#include <memory>
#include <new>

#include "hub/clock.h"
#include "py/datastack.h"
#include "py/errors.h"
#include "py/greenlet_api.h"

namespace ptsevent::hub {

PyTypeObject* TaskletType = nullptr;

int bind_job(Tasklet* t, PyObject* fn, PyObject* args, PyObject* kw) {
  if (!PyCallable_Check(fn)) {
    PyErr_Format(PyExc_TypeError, "'%.200s' object is not callable",
                 Py_TYPE(fn)->tp_name);
    return -1;
  }
  t->run_ = py::Ref::borrow(fn);
  t->native_ = nullptr;
  t->native_arg_ = nullptr;
  t->args_ = args ? py::Ref::borrow(args) : py::Ref::steal(PyTuple_New(0));
  t->kwargs_ = py::Ref::borrow(kw);
  // Each tasklet runs in a copy of its spawner's context, as asyncio tasks.
  t->context_ = py::Ref::steal(PyContext_CopyCurrent());
  return t->args_ && t->context_ ? 0 : -1;
}

Hub* Tasklet::hub_or_error() {
  Hub* hub = Hub::here(hub_, hub_serial_);
  if (!hub) {
    PyErr_SetString(PyExc_RuntimeError,
                    "this tasklet belongs to another thread's hub, or to a "
                    "hub that was shut down");
    return nullptr;
  }
  return hub;
}

// ----------------------------------------------------------- construction

Tasklet* alloc_tasklet(PyTypeObject* type, Hub* hub) {
  PyObject* o = type->tp_alloc(type, 0);
  if (!o) return nullptr;
  Tasklet* t = Tasklet::from(o);
  for (py::Ref* r : t->refs()) new (r) py::Ref();
  new (&t->joiners_) WaitList();
  t->hub_ = hub;
  t->hub_serial_ = hub->serial();
  t->state_ = State::kIdle;
  return t;
}

Tasklet* new_tasklet(Hub* hub, PyObject* fn, PyObject* args, PyObject* kw) {
  Tasklet* t = alloc_tasklet(TaskletType, hub);
  if (!t) return nullptr;
  if (bind_job(t, fn, args, kw) < 0) {
    Py_DECREF(t->self());
    return nullptr;
  }
  return t;
}

Tasklet* start_native_job(Hub* hub, NativeJob fn, void* arg,
                          PyObject* context) {
  Tasklet* t = alloc_tasklet(TaskletType, hub);
  if (!t) return nullptr;
  t->native_ = fn;
  t->native_arg_ = arg;
  t->context_ = py::Ref::steal(PyContext_Copy(context));
  if (!t->context_ || t->start(0) < 0) {
    Py_DECREF(t->self());
    return nullptr;
  }
  return t;
}

Tasklet* adopt_greenlet(Hub* hub, PyObject* greenlet, bool is_main) {
  Tasklet* t = alloc_tasklet(TaskletType, hub);
  if (!t) return nullptr;
  t->greenlet_ = py::Ref::borrow(greenlet);
  t->state_ = State::kRunning;
  t->adopted_ = true;
  t->main_ = is_main;
  return t;
}

void Hub::add_live(Tasklet* t) {
  Py_INCREF(t->self());
  t->live_ = true;
  t->live_prev_ = nullptr;
  t->live_next_ = live_head_;
  if (live_head_) live_head_->live_prev_ = t;
  live_head_ = t;
  ++live_count_;
}

void Hub::remove_live(Tasklet* t) {
  if (t->live_prev_)
    t->live_prev_->live_next_ = t->live_next_;
  else
    live_head_ = t->live_next_;
  if (t->live_next_) t->live_next_->live_prev_ = t->live_prev_;
  t->live_prev_ = t->live_next_ = nullptr;
  t->live_ = false;
  --live_count_;
}

PyObject* Hub::live_tasklets() const {
  PyObject* list = PyList_New(0);
  if (!list) return nullptr;
  for (Tasklet* t = live_head_; t; t = t->live_next_)
    if (PyList_Append(list, t->self()) < 0) {
      Py_DECREF(list);
      return nullptr;
    }
  return list;
}

// ------------------------------------------------------------------ waits

void Tasklet::on_io(evutil_socket_t, short what, void* arg) {
  // Inside event_base_loop, maybe without the GIL: C++ state only.
  Tasklet* t = static_cast<Tasklet*>(arg);
  t->io_armed_ = false;
  t->hub_->on_event_disarmed();
  t->wake_ = (what & EV_TIMEOUT) ? Wake::kTimeout : Wake::kIo;
  t->hub_->schedule(t);
}

void Tasklet::on_timer(evutil_socket_t, short, void* arg) {
  Tasklet* t = static_cast<Tasklet*>(arg);
  t->timer_armed_ = false;
  t->hub_->on_event_disarmed();
  t->wake_ = Wake::kTimeout;
  t->hub_->schedule(t);
}

void Tasklet::disarm() noexcept {
  if (io_armed_ || timer_armed_) {
    event_del(&ev_);
    if (hub_) {
      if (io_armed_) hub_->on_event_disarmed();
      if (timer_armed_) hub_->on_event_disarmed();
    }
    io_armed_ = timer_armed_ = false;
  }
}

int Tasklet::wait_with_timer(double seconds) {
  // One event for every wait: never armed here.
  PTSEVENT_ASSERT(!io_armed_ && !timer_armed_,
                  "a tasklet waits with an event already armed");
  if (seconds >= 0) {
    assign_timer(&ev_, hub_->base(), on_timer, this);
    if (event_add(&ev_, hub_->timeout_tv(seconds)) < 0) {
      PyErr_SetString(PyExc_OSError, "libevent: cannot add a timer");
      return -1;
    }
    timer_armed_ = true;
    hub_->on_event_armed();
  }
  int rc = hub_->suspend(this);
  Wake why = wake_;
  disarm();
  if (rc < 0) return -1;
  return why == Wake::kTimeout ? 1 : 0;
}

int Tasklet::wait_fd(int fd, short what, double seconds) {
  if (fcntl(fd, F_GETFD) < 0) {
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
  }
  PTSEVENT_ASSERT(!io_armed_ && !timer_armed_,
                  "a tasklet waits with an event already armed");
  assign_event(&ev_, hub_->base(), fd, what, on_io, this);
  errno = 0;
  if (event_add(&ev_, seconds >= 0 ? hub_->timeout_tv(seconds) : nullptr) < 0) {
    if (errno == EPERM)
      PyErr_Format(PyExc_OSError,
                   "[Errno %d] descriptor %d cannot be waited on (a regular "
                   "file?)",
                   EPERM, fd);
    else if (errno)
      PyErr_SetFromErrno(PyExc_OSError);
    else
      PyErr_SetString(PyExc_OSError, "libevent: cannot watch the descriptor");
    return -1;
  }
  io_armed_ = true;
  hub_->on_event_armed();
  int rc = hub_->suspend(this);
  Wake why = wake_;
  disarm();
  if (rc < 0) return -1;
  return why == Wake::kTimeout ? 1 : 0;
}

int Tasklet::wait_listed(WaitList* list, WaitRecord* r, double seconds,
                         bool* woken) {
  r->tasklet = this;
  list->push_back(r);
  wait_ = r;
  int rc = wait_with_timer(seconds);
  wait_ = nullptr;
  *woken = !r->linked;  // the owner took it off to wake us
  if (!*woken) list->remove(r);
  return rc;
}

// -------------------------------------------------------------- lifecycle

int Tasklet::start(double delay, bool in_pass) {
  if (state_ != State::kIdle) {
    PyErr_SetString(PyExc_RuntimeError, "the tasklet is already started");
    return -1;
  }
  Hub* hub = hub_or_error();
  if (!hub) return -1;
  if (delay > 0) {
    assign_timer(&ev_, hub->base(), on_timer, this);
    struct timeval tv = to_timeval(delay);
    if (event_add(&ev_, &tv) < 0) {
      PyErr_SetString(PyExc_OSError, "libevent: cannot add a timer");
      return -1;
    }
    timer_armed_ = true;
    hub->on_event_armed();
  } else if (in_pass) {
    hub->schedule_in_pass(this);
  } else {
    hub->schedule(this);
  }
  state_ = State::kPending;
  hub->add_live(this);
  return 0;
}

void Tasklet::finish(PyObject* value, PyObject* exc) {
  // Called with the GIL; may free `this` (last line).
  disarm();
  state_ = State::kDead;
  value_ = py::Ref::borrow(value);
  exception_ = py::Ref::borrow(exc);
  run_.reset();
  args_.reset();
  kwargs_.reset();
  context_.reset();
  native_ = nullptr;
  native_arg_ = nullptr;
  pending_exc_.reset();
  Hub* hub = hub_;
  joiners_.take_all([hub](WaitRecord* r) {
    Tasklet* w = r->tasklet;
    if (w->waiting_ && hub) hub->schedule(w);
  });
  if (py::Ref links = std::move(links_)) {
    py::Ref args = py::Ref::steal(PyTuple_Pack(1, self()));
    Py_ssize_t n = args ? PyList_GET_SIZE(links.get()) : 0;
    for (Py_ssize_t i = 0; i < n && hub; ++i) {
      Tasklet* l = new_tasklet(hub, PyList_GET_ITEM(links.get(), i), args.get(),
                               nullptr);
      if (!l || l->start(0) < 0) PyErr_WriteUnraisable(self());
      if (l) Py_DECREF(l->self());
    }
    if (!args) PyErr_WriteUnraisable(self());
  }
  if (!hub || !live_) return;
  hub->remove_live(this);
  if (queued_)
    zombie_ = true;  // the run queue now owns that reference and drops it
  else
    Py_DECREF(self());
}

void Tasklet::run_job(py::Ref* value, py::Ref* exc) {
  Tasklet* t = this;
  Hub* hub = hub_;
  PyObject* ctx = context_.get();
  if (PyContext_Enter(ctx) < 0) {
    *exc = py::fetch_error();
    return;
  }
  PyObject* r = native_ ? native_(native_arg_)
                        : PyObject_Call(run_.get(), args_.get(), kwargs_.get());
  if (!r) *exc = py::fetch_error();
  if (PyContext_Exit(ctx) < 0) PyErr_WriteUnraisable(t->self());
  if (r) {
    *value = py::Ref::steal(r);
    return;
  }
  PyObject* e = exc->get();
  if (!e) return;
  if (PyErr_GivenExceptionMatches(e, py::greenlet::exit_exception())) {
    // TaskletExit is a normal way to end: the exception is the value.
    *value = std::move(*exc);
    return;
  }
  if (PyErr_GivenExceptionMatches(e, PyExc_KeyboardInterrupt) ||
      PyErr_GivenExceptionMatches(e, PyExc_SystemExit)) {
    if (hub->raise_in_main(e)) return;
  }
  Hub::report_error(t, e);
}

// The body of every worker greenlet: runs jobs until the pool is full.
PyObject* Hub::worker_main(PyObject*, PyObject*) {
  // Before this greenlet's first Python call: its frames go to a small
  // root chunk, not a 16 KiB one (see datastack.h).
  py::datastack::adopt_small_root();
  for (;;) {
    Hub* hub = Hub::peek();
    if (!hub) Py_RETURN_NONE;
    Tasklet* t = hub->current_;
    py::Ref value, exc;
    t->run_job(&value, &exc);
    PyObject* g = t->greenlet_.release();
    t->finish(value.get(), exc.get());  // may free t
    value.reset();
    exc.reset();
    if (hub->closed_ || hub->stopping_ || hub->pool_.size() >= kMaxPool) {
      // This greenlet ends; its parent resumes. (g is null when the hub's
      // shutdown took the reference to kill this greenlet.)
      Py_XDECREF(g);
      Py_RETURN_NONE;
    }
    Tasklet* next = hub->pop_batch();
    if (next && next->state_ == State::kPending) {
      // Run the next new job right here: no switch at all.
      next->greenlet_ = py::Ref::steal(g);
      next->state_ = State::kRunning;
      hub->current_ = next;
      continue;
    }
    hub->pool_.push_back(g);
    PyObject* target;
    if (next) {
      target = next->greenlet_.get();
      hub->current_ = next;
    } else {
      if (hub->ensure_hub_greenlet() < 0) return nullptr;
      target = hub->hub_greenlet_.get();
      hub->current_ = nullptr;
    }
    PyObject* r = py::greenlet::switch_to(target);
    if (!r) return nullptr;  // killed while idle in the pool (teardown)
    Py_DECREF(r);
    // Resumed by a switcher that gave us a new job (hub->current_).
  }
}

int Tasklet::join(double timeout) {
  if (state_ == State::kDead) return 0;
  Hub* hub = hub_or_error();
  if (!hub) return -1;
  Tasklet* me = hub->current();
  if (!me) return -1;
  if (me == this) {
    PyErr_SetString(PyExc_RuntimeError, "cannot join the current tasklet");
    return -1;
  }
  // On the heap (never on a suspended stack); join is not a hot path.
  std::unique_ptr<WaitRecord> r(new (std::nothrow) WaitRecord(WaitKind::kJoin));
  if (!r) {
    PyErr_NoMemory();
    return -1;
  }
  bool woken;
  // The caller holds a reference to this tasklet: the list outlives the wait.
  int rc = me->wait_listed(&joiners_, r.get(), timeout, &woken);
  return rc < 0 ? -1 : 0;
}

int Tasklet::kill(PyObject* exc, bool block, double timeout) {
  if (py::check_exception_arg(exc) < 0) return -1;
  if (state_ == State::kDead) return 0;
  Hub* hub = hub_or_error();
  if (!hub) return -1;
  if (state_ == State::kIdle || state_ == State::kPending) {
    // Never started: it never will. The exception is its outcome.
    py::Ref inst = PyExceptionClass_Check(exc)
                       ? py::Ref::steal(PyObject_CallNoArgs(exc))
                       : py::Ref::borrow(exc);
    if (!inst) return -1;
    if (PyErr_GivenExceptionMatches(inst.get(), py::greenlet::exit_exception()))
      finish(inst.get(), nullptr);
    else
      finish(nullptr, inst.get());
    return 0;
  }
  Tasklet* me = hub->current();
  if (!me) return -1;
  if (me == this) {
    py::raise(exc);
    return -1;
  }
  if (!waiting_) {
    PyErr_SetString(PyExc_RuntimeError,
                    "the tasklet is not waiting in ptsevent and cannot be "
                    "killed from here");
    return -1;
  }
  hub->interrupt(this, exc, true);
  if (!block) return 0;
  return join(timeout);
}

}  // namespace ptsevent::hub

#include "hub/timer.h"

#include <structmember.h>

#include <algorithm>

#include "hub/clock.h"
#include "hub/tasklet.h"
#include "hub/timeout.h"
#include "py/errors.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

PyTypeObject* TimerType = nullptr;
PyTypeObject* WaiterType = nullptr;

namespace {

void erase_armed(Hub* hub, Timer* t) {
  auto& v = hub->armed_timers_;
  auto it = std::find(v.begin(), v.end(), t);
  if (it != v.end()) v.erase(it);
}

}  // namespace

// ------------------------------------------------------------------ Timer

void Timer::on_fire(evutil_socket_t, short, void* arg) {
  // Runs inside event_base_loop, possibly without the GIL: only C++ state.
  Timer* t = static_cast<Timer*>(arg);
  t->armed_ = false;
  t->fired_ = true;
  t->hub_->on_event_disarmed();
  erase_armed(t->hub_, t);
  t->hub_->park_timer(t);
}

void Timer::disarm() noexcept {
  if (!armed_) return;
  event_del(&ev_);
  armed_ = false;
  hub_->on_event_disarmed();
}

void Timer::deliver() {
  fired_ = false;
  if (!cancelled_ && target_) {
    Tasklet* t = Tasklet::from(target_.get());
    if (t->waiting()) {
      if (t->interrupt_pending()) {
        // Another interrupt is on its way (an inner Timeout, a kill): fire
        // again on the next pass, after that one has been raised.
        struct timeval zero = {0, 0};
        if (event_add(&ev_, &zero) == 0) {
          armed_ = true;
          hub_->on_event_armed();
          hub_->armed_timers_.push_back(this);
          return;  // keeps the self reference
        }
      } else {
        hub_->interrupt(t, exc_.get(), false);
      }
    }
  }
  cancelled_ = false;
  target_.reset();
  Py_DECREF(self());  // the reference held while armed
}

static PyObject* Timer_new(PyTypeObject* type, PyObject*, PyObject*) {
  Timer* self = reinterpret_cast<Timer*>(type->tp_alloc(type, 0));
  if (!self) return nullptr;
  new (&self->target_) py::Ref();
  new (&self->exc_) py::Ref();
  return self->self();
}

static int Timer_traverse(Timer* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  if (int r = self->target_.visit(visit, arg)) return r;
  return self->exc_.visit(visit, arg);
}

static int Timer_clear(Timer* self) {
  self->target_.reset();
  self->exc_.reset();
  return 0;
}

// After Timer_clear (py::make_heap_type's dealloc).
static void Timer_destroy(Timer* self) {
  // Never armed here: an armed timer holds a reference to itself.
  PTSEVENT_ASSERT(!self->armed_ && !self->fired_,
                  "a timer is freed while armed or fired");
  self->target_.~Ref();
  self->exc_.~Ref();
}

// start(seconds, exception): arm for the running tasklet.
static PyObject* Timer_start(Timer* self, PyObject* const* args,
                             Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError,
                    "start() takes exactly 2 arguments (seconds, exception)");
    return nullptr;
  }
  if (self->armed_ || self->fired_) {
    PyErr_SetString(PyExc_RuntimeError, "the timer is already started");
    return nullptr;
  }
  double seconds;
  if (parse_timeout(args[0], TimeoutMode::kStrict, &seconds) < 0)
    return nullptr;
  if (seconds < 0) {
    PyErr_SetString(PyExc_ValueError, "a timer needs a number of seconds");
    return nullptr;
  }
  PyObject* exc = args[1];
  if (py::check_exception_arg(exc) < 0) return nullptr;
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Tasklet* t = hub->current();
  if (!t) return nullptr;
  self->hub_ = hub;
  self->hub_serial_ = hub->serial();
  ++self->starts_;
  assign_timer(&self->ev_, hub->base(), Timer::on_fire, self);
  struct timeval tv = to_timeval(seconds);
  if (event_add(&self->ev_, &tv) < 0) {
    PyErr_SetString(PyExc_OSError, "libevent: cannot add a timer");
    return nullptr;
  }
  self->armed_ = true;
  self->cancelled_ = false;
  hub->on_event_armed();
  hub->armed_timers_.push_back(self);
  self->target_ = py::Ref::borrow(t->self());
  self->exc_ = py::Ref::borrow(exc);
  Py_INCREF(self);  // held while armed or fired
  Py_RETURN_NONE;
}

static void cancel_here(Timer* self) {
  if (self->armed_) {
    self->disarm();
    erase_armed(self->hub_, self);
    self->target_.reset();
    Py_DECREF(self->self());
  } else if (self->fired_) {
    self->cancelled_ = true;  // delivery will drop it
  }
}

static PyObject* Timer_cancel(Timer* self, PyObject*) {
  if (!self->armed_ && !self->fired_) Py_RETURN_NONE;
  if (Hub::here(self->hub_, self->hub_serial_)) {
    cancel_here(self);
    Py_RETURN_NONE;
  }
  // Another thread's hub owns the timer and may be polling without the GIL
  // right now: it cancels this run of the timer itself (until then the
  // timer may still fire). A hub that is gone has disarmed it already.
  if (!Hub::alive(self->hub_, self->hub_serial_)) Py_RETURN_NONE;
  py::Ref args = py::Ref::steal(
      Py_BuildValue("(K)", static_cast<unsigned long long>(self->starts_)));
  if (!args) return nullptr;
  if (Hub::post_method(self->hub_->thread_ident(), self->self(), "_cancel_run",
                       args.get()) < 0)
    PyErr_Clear();  // that hub is closing: nothing is left to fire
  Py_RETURN_NONE;
}

// _cancel_run(n): cancel(), posted from another thread, if the timer is
// still in its n-th run (not restarted since).
static PyObject* Timer_cancel_run(Timer* self, PyObject* arg) {
  unsigned long long n = PyLong_AsUnsignedLongLong(arg);
  if (n == static_cast<unsigned long long>(-1) && PyErr_Occurred())
    return nullptr;
  if (n == self->starts_ && Hub::here(self->hub_, self->hub_serial_))
    cancel_here(self);
  Py_RETURN_NONE;
}

static PyObject* Timer_pending(Timer* self, void*) {
  return PyBool_FromLong(self->armed_);
}

static PyMethodDef Timer_methods[] = {
    {"start", py::method(Timer_start), METH_FASTCALL,
     "start($self, seconds, exception, /)\n--\n\n"
     "start(seconds, exception): arm for the running tasklet"},
    {"cancel", py::method(Timer_cancel), METH_NOARGS,
     "cancel($self, /)\n--\n\n"
     "disarm; does nothing if not armed (from another thread: handed to the "
     "timer's hub, and it may still fire until that hub has run it)"},
    {"_cancel_run", py::method(Timer_cancel_run), METH_O,
     "_cancel_run($self, run, /)\n--\n\n"},
    {nullptr, nullptr, 0, nullptr}};

static PyGetSetDef Timer_getset[] = {
    {"pending", reinterpret_cast<getter>(Timer_pending), nullptr,
     "True while the timer is armed", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

static PyMemberDef Timer_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(Timer, weakrefs_), READONLY,
     nullptr},
    {nullptr, 0, 0, 0, nullptr}};

PyTypeObject* make_timer_type() {
  PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(Timer_new)},
      {Py_tp_traverse, reinterpret_cast<void*>(Timer_traverse)},
      {Py_tp_methods, Timer_methods},
      {Py_tp_getset, Timer_getset},
      {Py_tp_members, Timer_members},
      {Py_tp_doc,
       const_cast<char*>("Timer()\n--\n\n"
                         "A one-shot timer that interrupts the tasklet that "
                         "started it.")},
      {0, nullptr}};
  PyType_Spec spec = {"ptsevent._core.Timer", sizeof(Timer), 0,
                      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, slots};
  TimerType = py::make_heap_type<Timer, Timer_clear, Timer_destroy>(&spec);
  return TimerType;
}

// ----------------------------------------------------------------- Waiter

void Waiter::deliver() {
  done_ = true;
  if (counted_) {
    counted_ = false;
    hub_->count(Source::kThreadJob, -1);
  }
  if (waiter_) {
    Tasklet* t = Tasklet::from(waiter_.get());
    if (t->waiting()) hub_->schedule(t);
  }
}

static PyObject* Waiter_new(PyTypeObject* type, PyObject* args,
                            PyObject* kwds) {
  static const char* kwlist[] = {"remote", nullptr};
  int remote = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:Waiter",
                                   const_cast<char**>(kwlist), &remote))
    return nullptr;
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Waiter* self = reinterpret_cast<Waiter*>(type->tp_alloc(type, 0));
  if (!self) return nullptr;
  new (&self->waiter_) py::Ref();
  new (&self->value_) py::Ref();
  new (&self->exc_) py::Ref();
  self->hub_ = hub;
  if (remote) {
    self->counted_ = true;
    hub->count(Source::kThreadJob, 1);
  }
  return self->self();
}

static int Waiter_traverse(Waiter* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  if (int r = self->waiter_.visit(visit, arg)) return r;
  if (int r = self->value_.visit(visit, arg)) return r;
  return self->exc_.visit(visit, arg);
}

static int Waiter_clear(Waiter* self) {
  self->waiter_.reset();
  self->value_.reset();
  self->exc_.reset();
  return 0;
}

// After Waiter_clear (py::make_heap_type's dealloc).
static void Waiter_destroy(Waiter* self) {
  // The count is atomic: a Waiter dropped in another thread (its result
  // never delivered) still releases it, or LoopExit could never fire.
  if (self->counted_ && Hub::alive(self->hub_))
    self->hub_->count(Source::kThreadJob, -1);
  self->waiter_.~Ref();
  self->value_.~Ref();
  self->exc_.~Ref();
}

static int waiter_set(Waiter* self, PyObject* value, PyObject* exc) {
  if (self->has_result_) {
    PyErr_SetString(PyExc_RuntimeError, "this Waiter already has a result");
    return -1;
  }
  self->has_result_ = true;
  self->value_ = py::Ref::borrow(value);
  self->exc_ = py::Ref::borrow(exc);
  if (Hub::peek() == self->hub_) {
    self->deliver();
    return 0;
  }
  if (!Hub::alive(self->hub_)) {
    PyErr_SetString(PyExc_RuntimeError,
                    "the hub of the waiting thread is shut down");
    return -1;
  }
  return self->hub_->post(self);
}

static PyObject* Waiter_switch(Waiter* self, PyObject* const* args,
                               Py_ssize_t nargs) {
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "switch() takes at most 1 argument");
    return nullptr;
  }
  if (waiter_set(self, nargs ? args[0] : Py_None, nullptr) < 0) return nullptr;
  Py_RETURN_NONE;
}

static PyObject* Waiter_throw(Waiter* self, PyObject* exc) {
  if (py::check_exception_arg(exc) < 0) return nullptr;
  if (waiter_set(self, nullptr, exc) < 0) return nullptr;
  Py_RETURN_NONE;
}

static PyObject* Waiter_get(Waiter* self, PyObject* const* args,
                            Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* timeout_obj = nargs > 0 ? args[0] : Py_None;
  if (nargs > 1 || (kwnames && PyTuple_GET_SIZE(kwnames) > 1)) {
    PyErr_SetString(PyExc_TypeError, "get() takes at most 1 argument");
    return nullptr;
  }
  if (kwnames && PyTuple_GET_SIZE(kwnames) == 1) {
    if (nargs || !PyUnicode_Check(PyTuple_GET_ITEM(kwnames, 0)) ||
        PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0),
                                         "timeout") != 0) {
      PyErr_SetString(PyExc_TypeError, "get() got an unexpected argument");
      return nullptr;
    }
    timeout_obj = args[0];
  }
  double timeout;
  if (parse_timeout(timeout_obj, TimeoutMode::kWait, &timeout) < 0)
    return nullptr;
  Hub* hub = Hub::peek();
  if (hub != self->hub_) {
    PyErr_SetString(PyExc_RuntimeError,
                    "Waiter.get() must be called in the thread that made it");
    return nullptr;
  }
  if (!self->done_) {
    Tasklet* t = hub->current();
    if (!t) return nullptr;
    if (self->waiter_) {
      PyErr_SetString(PyExc_RuntimeError, "another tasklet waits on this");
      return nullptr;
    }
    self->waiter_ = py::Ref::borrow(t->self());
    int rc = t->wait_with_timer(timeout);
    self->waiter_.reset();
    if (rc < 0) return nullptr;
    if (!self->done_) {
      PyErr_SetString(PyExc_TimeoutError, "timed out");
      return nullptr;
    }
  }
  if (self->exc_) {
    py::raise(self->exc_.get());
    return nullptr;
  }
  return self->value_.new_ref();
}

static PyObject* Waiter_ready(Waiter* self, PyObject*) {
  return PyBool_FromLong(self->done_);
}

static PyMethodDef Waiter_methods[] = {
    {"switch", py::method(Waiter_switch), METH_FASTCALL,
     "switch($self, value=None, /)\n--\n\n"
     "switch(value=None): set the result (any thread)"},
    {"throw", py::method(Waiter_throw), METH_O,
     "throw($self, exc, /)\n--\n\n"
     "throw(exc): set an exception as the result (any thread)"},
    {"get", py::method(Waiter_get), METH_FASTCALL | METH_KEYWORDS,
     "get($self, timeout=None)\n--\n\n"
     "get(timeout=None): wait for the result; TimeoutError if late"},
    {"ready", py::method(Waiter_ready), METH_NOARGS,
     "ready($self, /)\n--\n\n"
     "True once the result arrived in this thread"},
    {nullptr, nullptr, 0, nullptr}};

static PyMemberDef Waiter_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(Waiter, weakrefs_), READONLY,
     nullptr},
    {nullptr, 0, 0, 0, nullptr}};

PyTypeObject* make_waiter_type() {
  PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(Waiter_new)},
      {Py_tp_traverse, reinterpret_cast<void*>(Waiter_traverse)},
      {Py_tp_methods, Waiter_methods},
      {Py_tp_members, Waiter_members},
      {Py_tp_doc,
       const_cast<char*>("Waiter(remote=False)\n--\n\n"
                         "A one-shot result slot that a tasklet waits on and "
                         "any thread may fill.")},
      {0, nullptr}};
  PyType_Spec spec = {"ptsevent._core.Waiter", sizeof(Waiter), 0,
                      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, slots};
  WaiterType = py::make_heap_type<Waiter, Waiter_clear, Waiter_destroy>(&spec);
  return WaiterType;
}

}  // namespace ptsevent::hub

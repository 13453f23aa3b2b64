// The Python face of Timer (`_core.Timer`) and Waiter (`_core.Waiter`):
// construction, argument checks, GC support, method tables, the two types.
// The engines are timer.cpp.
#include <Python.h>
#include <structmember.h>

#include "hub/timeout.h"
#include "hub/timer.h"
#include "py/errors.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

PyTypeObject* TimerType = nullptr;
PyTypeObject* WaiterType = nullptr;

// ------------------------------------------------------------------ Timer

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
  return timer_start(self, seconds, exc);
}

static PyObject* Timer_cancel(Timer* self, PyObject*) {
  return timer_cancel(self);
}

// _cancel_run(n): cancel(), posted from another thread, if the timer is
// still in its n-th run (not restarted since).
static PyObject* Timer_cancel_run(Timer* self, PyObject* arg) {
  unsigned long long n = PyLong_AsUnsignedLongLong(arg);
  if (n == static_cast<unsigned long long>(-1) && PyErr_Occurred())
    return nullptr;
  return timer_cancel_run(self, n);
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
  return waiter_get(self, timeout);
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

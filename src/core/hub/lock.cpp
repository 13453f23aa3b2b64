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
#include <Python.h>

#include <cmath>
#include <deque>

#include "hub/lock.h"
#include "hub/tasklet.h"
#include "py/errors.h"

#include <structmember.h>

namespace ptsevent::hub {

PyTypeObject* LockType = nullptr;

namespace {

double g_timeout_max = 0;  // _thread.TIMEOUT_MAX

struct Lock {
  PyObject_HEAD
  PyObject* weakrefs_;
  Hub* hub_;  // owner of the waiters; only dereferenced when serial matches
  uint64_t hub_serial_;
  unsigned long thread_;
  std::deque<Tasklet*>* waiters_;
  Py_ssize_t handed_;  // handed the lock, not yet returned from acquire()
  bool locked_;
  bool posted_;  // a dispatch is queued in the owner hub

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
  bool idle() const noexcept {
    return (!waiters_ || waiters_->empty()) && handed_ == 0;
  }
  // The owner hub if it is the running thread's.
  Hub* owner_here() const noexcept {
    Hub* hub = Hub::peek();
    return hub && hub == hub_ && hub->serial() == hub_serial_ ? hub : nullptr;
  }
  // Hands the (still locked) lock to the oldest waiter. False if none.
  bool hand_over() noexcept {
    if (!waiters_ || waiters_->empty()) return false;
    Tasklet* t = waiters_->front();
    waiters_->pop_front();
    t->notified_ = true;
    ++handed_;
    hub_->schedule_in_pass(t);
    return true;
  }
};

PyObject* Lock_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
    PyErr_SetString(PyExc_TypeError, "Lock() takes no arguments");
    return nullptr;
  }
  Lock* l = reinterpret_cast<Lock*>(type->tp_alloc(type, 0));
  return l ? l->self() : nullptr;
}

void Lock_dealloc(Lock* l) {
  PyTypeObject* type = Py_TYPE(l);
  if (l->weakrefs_) PyObject_ClearWeakRefs(l->self());
  // A waiting tasklet holds a reference to the lock: nobody waits here.
  delete l->waiters_;
  type->tp_free(l->self());
  if (type->tp_flags & Py_TPFLAGS_HEAPTYPE) Py_DECREF(type);
}

// acquire()'s timeout as _thread.lock.acquire checks it: -1 no limit (also
// returned for blocking with timeout -1), else seconds >= 0.
int lock_timeout(PyObject* blocking_obj, PyObject* timeout_obj, double* out) {
  int blocking = 1;
  if (blocking_obj) {
    blocking = PyObject_IsTrue(blocking_obj);
    if (blocking < 0) return -1;
  }
  double timeout = -1;
  if (timeout_obj) {
    if (PyFloat_Check(timeout_obj)) {
      timeout = PyFloat_AS_DOUBLE(timeout_obj);
    } else {
      py::Ref i = py::Ref::steal(PyNumber_Index(timeout_obj));  // TypeError
      if (!i) return -1;
      timeout = PyLong_AsDouble(i.get());
      if (timeout == -1 && PyErr_Occurred()) return -1;
    }
  }
  if (std::isnan(timeout)) {
    PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
    return -1;
  }
  if (!blocking) {
    if (timeout != -1) {
      PyErr_SetString(PyExc_ValueError,
                      "can't specify a timeout for a non-blocking call");
      return -1;
    }
    *out = 0;
    return 0;
  }
  if (timeout == -1) {
    *out = -1;
    return 0;
  }
  if (timeout < 0) {
    PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
    return -1;
  }
  if (timeout > g_timeout_max) {
    PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
    return -1;
  }
  *out = timeout;
  return 0;
}

// The contended acquire: wait up to `timeout` seconds (< 0: no limit).
PyObject* acquire_slow(Lock* l, double timeout) {
  if (timeout == 0) Py_RETURN_FALSE;
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  if (hub != l->hub_ || hub->serial() != l->hub_serial_) {
    if (!l->idle()) {
      PyErr_SetString(PyExc_RuntimeError,
                      "Lock: tasklets of another thread wait on this object; "
                      "only the tasklets of one thread can wait on it at a time");
      return nullptr;
    }
    l->hub_ = hub;
    l->hub_serial_ = hub->serial();
    l->thread_ = PyThread_get_thread_ident();
  }
  Tasklet* me = hub->current();
  if (!me) return nullptr;
  if (!l->locked_) {  // released while the hub was made
    l->locked_ = true;
    Py_RETURN_TRUE;
  }
  if (!l->waiters_) l->waiters_ = new std::deque<Tasklet*>();
  me->notified_ = false;
  l->waiters_->push_back(me);
  Py_INCREF(l->self());  // the queue entry points into this lock
  int rc = me->wait_with_timer(timeout);
  bool handed = me->notified_;
  me->notified_ = false;
  if (handed) {
    --l->handed_;
  } else {
    for (auto it = l->waiters_->begin(); it != l->waiters_->end(); ++it)
      if (*it == me) {
        l->waiters_->erase(it);
        break;
      }
  }
  if (rc < 0) {
    if (handed && !l->hand_over()) l->locked_ = false;  // pass it on
    Py_DECREF(l->self());
    return nullptr;
  }
  Py_DECREF(l->self());
  return PyBool_FromLong(handed);  // a timeout in the same pass loses
}

PyObject* Lock_acquire(Lock* l, PyObject* const* args, Py_ssize_t nargs,
                       PyObject* kwnames) {
  PyObject* blocking = nargs > 0 ? args[0] : nullptr;
  PyObject* timeout = nargs > 1 ? args[1] : nullptr;
  if (nargs > 2) {
    PyErr_Format(PyExc_TypeError, "acquire() takes at most 2 arguments (%zd given)",
                 nargs);
    return nullptr;
  }
  if (kwnames) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
      PyObject* name = PyTuple_GET_ITEM(kwnames, i);
      PyObject** slot;
      if (PyUnicode_CompareWithASCIIString(name, "blocking") == 0) {
        slot = &blocking;
      } else if (PyUnicode_CompareWithASCIIString(name, "timeout") == 0) {
        slot = &timeout;
      } else {
        PyErr_Format(PyExc_TypeError,
                     "acquire() got an unexpected keyword argument '%U'", name);
        return nullptr;
      }
      if (*slot) {
        PyErr_Format(PyExc_TypeError,
                     "acquire() got multiple values for argument '%U'", name);
        return nullptr;
      }
      *slot = args[nargs + i];
    }
  }
  double seconds = -1;
  if ((blocking || timeout) && lock_timeout(blocking, timeout, &seconds) < 0)
    return nullptr;
  if (!l->locked_) {
    l->locked_ = true;
    Py_RETURN_TRUE;
  }
  return acquire_slow(l, seconds);
}

PyObject* Lock_enter(Lock* l, PyObject*) {
  if (!l->locked_) {
    l->locked_ = true;
    Py_RETURN_TRUE;
  }
  return acquire_slow(l, -1);
}

void dispatch_later(Lock* l) {
  if (l->posted_) return;
  py::Ref fn = py::Ref::steal(PyObject_GetAttrString(l->self(), "_dispatch"));
  py::Ref args = py::Ref::steal(PyTuple_New(0));
  if (!fn || !args) {
    PyErr_WriteUnraisable(l->self());
    return;
  }
  if (Hub::post_call(l->thread_, fn.get(), args.get()) < 0) {
    // The owner thread's hub is gone, and its waiters with it.
    PyErr_Clear();
    return;
  }
  l->posted_ = true;
}

PyObject* Lock_release(Lock* l, PyObject*) {
  if (!l->locked_) {
    PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
    return nullptr;
  }
  if (l->waiters_ && !l->waiters_->empty()) {
    if (l->owner_here()) {
      l->hand_over();  // stays locked
      Py_RETURN_NONE;
    }
    l->locked_ = false;
    dispatch_later(l);
    Py_RETURN_NONE;
  }
  l->locked_ = false;
  Py_RETURN_NONE;
}

PyObject* Lock_exit(Lock* l, PyObject* const*, Py_ssize_t) {
  return Lock_release(l, nullptr);
}

// In the owner hub, after a release from another thread.
PyObject* Lock_dispatch(Lock* l, PyObject*) {
  l->posted_ = false;
  if (!l->locked_ && l->owner_here() && l->waiters_ && !l->waiters_->empty()) {
    l->locked_ = true;
    l->hand_over();
  }
  Py_RETURN_NONE;
}

PyObject* Lock_locked(Lock* l, PyObject*) { return PyBool_FromLong(l->locked_); }

PyObject* Lock_at_fork_reinit(Lock* l, PyObject*) {
  // The waiting tasklets stayed in the parent.
  l->locked_ = false;
  l->posted_ = false;
  l->handed_ = 0;
  delete l->waiters_;
  l->waiters_ = nullptr;
  l->hub_ = nullptr;
  l->hub_serial_ = 0;
  Py_RETURN_NONE;
}

PyObject* Lock_repr(Lock* l) {
  PyTypeObject* type = Py_TYPE(l);
  py::Ref module = py::Ref::steal(
      PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__module__"));
  py::Ref qualname = py::Ref::steal(
      PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__qualname__"));
  if (!module || !qualname) return nullptr;
  return PyUnicode_FromFormat("<%s %S.%S object at %p>",
                              l->locked_ ? "locked" : "unlocked", module.get(),
                              qualname.get(), l->self());
}

PyObject* get_waiting(Lock* l, void*) {
  return PyLong_FromSsize_t(l->waiters_ ? static_cast<Py_ssize_t>(l->waiters_->size())
                                        : 0);
}

PyObject* get_handed(Lock* l, void*) { return PyLong_FromSsize_t(l->handed_); }

PyObject* get_has_queue(Lock* l, void*) { return PyBool_FromLong(l->waiters_ != nullptr); }

#define FASTCALL(f) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f))

PyMethodDef Lock_methods[] = {
    {"acquire", FASTCALL(Lock_acquire), METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool: take the lock; False when "
     "it was not taken (blocking false and busy, or the timeout passed)"},
    {"__enter__", FASTCALL(Lock_enter), METH_NOARGS, "acquire()"},
    {"release", FASTCALL(Lock_release), METH_NOARGS,
     "release(): unlock; the oldest waiter, if any, owns the lock next"},
    {"__exit__", FASTCALL(Lock_exit), METH_FASTCALL, "release()"},
    {"locked", FASTCALL(Lock_locked), METH_NOARGS, "locked() -> bool"},
    {"_at_fork_reinit", FASTCALL(Lock_at_fork_reinit), METH_NOARGS,
     "unlocked, nobody waiting (in a child after fork)"},
    {"_dispatch", FASTCALL(Lock_dispatch), METH_NOARGS,
     "in the owner hub: hand a lock released by another thread to the oldest "
     "waiter"},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef Lock_getset[] = {
    {"_waiting", reinterpret_cast<getter>(get_waiting), nullptr,
     "number of tasklets waiting", nullptr},
    {"_handed", reinterpret_cast<getter>(get_handed), nullptr,
     "waiters handed the lock that have not returned from acquire() yet", nullptr},
    {"_has_queue", reinterpret_cast<getter>(get_has_queue), nullptr,
     "a waiter queue was ever needed", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

}  // namespace

PyTypeObject* make_lock_type() {
  {
    py::Ref thread = py::Ref::steal(PyImport_ImportModule("_thread"));
    if (!thread) return nullptr;
    py::Ref max = py::Ref::steal(PyObject_GetAttrString(thread.get(), "TIMEOUT_MAX"));
    if (!max) return nullptr;
    g_timeout_max = PyFloat_AsDouble(max.get());
    if (g_timeout_max == -1 && PyErr_Occurred()) return nullptr;
  }
  static PyMemberDef members[] = {
      {"__weaklistoffset__", T_PYSSIZET, offsetof(Lock, weakrefs_), READONLY, nullptr},
      {nullptr, 0, 0, 0, nullptr}};
  static PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(Lock_new)},
      {Py_tp_dealloc, reinterpret_cast<void*>(Lock_dealloc)},
      {Py_tp_repr, reinterpret_cast<void*>(Lock_repr)},
      {Py_tp_methods, Lock_methods},
      {Py_tp_getset, Lock_getset},
      {Py_tp_members, members},
      {Py_tp_doc, const_cast<char*>(
                      "Lock(): a primitive lock, as threading.Lock, fair between "
                      "tasklets.\n\nAny tasklet (or thread) may release it, not only "
                      "the one that acquired it. Waiters get it in the order they "
                      "asked for it.")},
      {0, nullptr}};
  static PyType_Spec spec = {"ptsevent.locks.Lock", sizeof(Lock), 0,
                             Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots};
  LockType = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&spec));
  return LockType;
}

}  // namespace ptsevent::hub

// The Python face of Lock (`_core.Lock`): argument checks as threading's,
// the method table, the type. The engine is lock.cpp.
#include <Python.h>
#include <structmember.h>

#include "hub/lock.h"
#include "hub/timeout.h"
#include "py/args.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

PyTypeObject* LockType = nullptr;

namespace {

double g_timeout_max = 0;  // _thread.TIMEOUT_MAX

PyObject* Lock_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
    PyErr_SetString(PyExc_TypeError, "Lock() takes no arguments");
    return nullptr;
  }
  Lock* l = reinterpret_cast<Lock*>(type->tp_alloc(type, 0));
  return l ? l->self() : nullptr;
}

// py::make_heap_type's dealloc calls it.
void Lock_destroy(Lock* l) {
  // A waiting tasklet holds a reference to the lock: nobody waits here.
  l->w_.destroy();
}

}  // namespace

// acquire()'s timeout as _thread.lock.acquire checks it: -1 no limit (also
// returned for blocking with timeout -1), else seconds >= 0.
int lock_timeout(PyObject* blocking_obj, PyObject* timeout_obj, double* out) {
  int blocking = 1;
  if (blocking_obj) {
    blocking = PyObject_IsTrue(blocking_obj);
    if (blocking < 0) return -1;
  }
  double timeout = -1;
  if (timeout_obj &&
      parse_timeout(timeout_obj, TimeoutMode::kLock, &timeout) < 0)
    return -1;
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
    PyErr_SetString(PyExc_ValueError,
                    "timeout value must be a non-negative number");
    return -1;
  }
  if (timeout > g_timeout_max) {
    PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
    return -1;
  }
  *out = timeout;
  return 0;
}

namespace {

PyObject* Lock_acquire(Lock* l, PyObject* const* args, Py_ssize_t nargs,
                       PyObject* kwnames) {
  static const char* const names[] = {"blocking", "timeout"};
  PyObject* a[2] = {nullptr, nullptr};
  if (py::parse_args("acquire", args, nargs, kwnames, names, 2, a) < 0)
    return nullptr;
  PyObject *blocking = a[0], *timeout = a[1];
  double seconds = -1;
  if ((blocking || timeout) && lock_timeout(blocking, timeout, &seconds) < 0)
    return nullptr;
  if (!l->locked_) {
    l->locked_ = true;
    Py_RETURN_TRUE;
  }
  return lock_acquire_slow(l, seconds);
}

PyObject* Lock_enter(Lock* l, PyObject*) {
  if (!l->locked_) {
    l->locked_ = true;
    Py_RETURN_TRUE;
  }
  return lock_acquire_slow(l, -1);
}

PyObject* Lock_release(Lock* l, PyObject*) { return lock_release(l->self()); }

PyObject* Lock_exit(Lock* l, PyObject* const*, Py_ssize_t) {
  return Lock_release(l, nullptr);
}

PyObject* Lock_dispatch(Lock* l, PyObject*) {
  lock_dispatch(l);
  Py_RETURN_NONE;
}

PyObject* Lock_locked(Lock* l, PyObject*) {
  return PyBool_FromLong(l->locked_);
}

PyObject* Lock_at_fork_reinit(Lock* l, PyObject*) {
  // The waiting tasklets stayed in the parent.
  l->locked_ = false;
  l->w_.reset();
  Py_RETURN_NONE;
}

PyObject* Lock_repr(Lock* l) {
  PyTypeObject* type = Py_TYPE(l);
  py::Ref module = py::Ref::steal(
      PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__module__"));
  py::Ref qualname = py::Ref::steal(PyObject_GetAttrString(
      reinterpret_cast<PyObject*>(type), "__qualname__"));
  if (!module || !qualname) return nullptr;
  return PyUnicode_FromFormat("<%s %S.%S object at %p>",
                              l->locked_ ? "locked" : "unlocked", module.get(),
                              qualname.get(), l->self());
}

PyObject* get_waiting(Lock* l, void*) {
  return PyLong_FromSsize_t(static_cast<Py_ssize_t>(l->w_.size()));
}

PyObject* get_handed(Lock* l, void*) {
  return PyLong_FromSsize_t(l->w_.handed);
}

PyObject* get_has_queue(Lock* l, void*) { return PyBool_FromLong(l->w_.used); }

PyMethodDef Lock_methods[] = {
    {"acquire", py::method(Lock_acquire), METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, blocking=True, timeout=-1)\n--\n\n"
     "acquire(blocking=True, timeout=-1) -> bool: take the lock; False when "
     "it was not taken (blocking false and busy, or the timeout passed)"},
    {"__enter__", py::method(Lock_enter), METH_NOARGS,
     "__enter__($self, /)\n--\n\n"
     "acquire()"},
    {"release", py::method(Lock_release), METH_NOARGS,
     "release($self, /)\n--\n\n"
     "release(): unlock; the oldest waiter, if any, owns the lock next"},
    {"__exit__", py::method(Lock_exit), METH_FASTCALL,
     "__exit__($self, /, *exc_info)\n--\n\n"
     "release()"},
    {"locked", py::method(Lock_locked), METH_NOARGS,
     "locked($self, /)\n--\n\n"
     "locked() -> bool"},
    {"_at_fork_reinit", py::method(Lock_at_fork_reinit), METH_NOARGS,
     "_at_fork_reinit($self, /)\n--\n\n"
     "unlocked, nobody waiting (in a child after fork)"},
    {"_dispatch", py::method(Lock_dispatch), METH_NOARGS,
     "_dispatch($self, /)\n--\n\n"
     "in the owner hub: hand a lock released by another thread to the oldest "
     "waiter"},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef Lock_getset[] = {
    {"_waiting", reinterpret_cast<getter>(get_waiting), nullptr,
     "number of tasklets waiting", nullptr},
    {"_handed", reinterpret_cast<getter>(get_handed), nullptr,
     "waiters handed the lock that have not returned from acquire() yet",
     nullptr},
    {"_has_queue", reinterpret_cast<getter>(get_has_queue), nullptr,
     "a waiter queue was ever needed", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

}  // namespace

PyTypeObject* make_lock_type() {
  {
    py::Ref thread = py::Ref::steal(PyImport_ImportModule("_thread"));
    if (!thread) return nullptr;
    py::Ref max =
        py::Ref::steal(PyObject_GetAttrString(thread.get(), "TIMEOUT_MAX"));
    if (!max) return nullptr;
    g_timeout_max = PyFloat_AsDouble(max.get());
    if (g_timeout_max == -1 && PyErr_Occurred()) return nullptr;
  }
  static PyMemberDef members[] = {
      {"__weaklistoffset__", T_PYSSIZET, offsetof(Lock, weakrefs_), READONLY,
       nullptr},
      {nullptr, 0, 0, 0, nullptr}};
  static PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(Lock_new)},
      {Py_tp_repr, reinterpret_cast<void*>(Lock_repr)},
      {Py_tp_methods, Lock_methods},
      {Py_tp_getset, Lock_getset},
      {Py_tp_members, members},
      {Py_tp_doc,
       const_cast<char*>(
           "Lock()\n--\n\n"
           "Lock(): a primitive lock, as threading.Lock, fair between "
           "tasklets.\n\nAny tasklet (or thread) may release it, not only "
           "the one that acquired it. Waiters get it in the order they "
           "asked for it.")},
      {0, nullptr}};
  static PyType_Spec spec = {"ptsevent.locks.Lock", sizeof(Lock), 0,
                             Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots};
  LockType = py::make_heap_type<Lock, nullptr, Lock_destroy>(&spec);
  return LockType;
}

}  // namespace ptsevent::hub

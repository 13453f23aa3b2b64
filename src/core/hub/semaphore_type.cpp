// The Python face of Semaphore and BoundedSemaphore (`ptsevent.locks`):
// argument checks as threading's, method tables, the two types. The
// engine is semaphore.cpp.
#include <Python.h>
#include <structmember.h>

#include "hub/semaphore.h"
#include "py/args.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

PyTypeObject* SemaphoreType = nullptr;
PyTypeObject* BoundedSemaphoreType = nullptr;

namespace {

// __init__(value=1) of both types; `bounded` keeps value as the bound.
int init(Semaphore* s, PyObject* args, PyObject* kwds, bool bounded) {
  static const char* kwlist[] = {"value", nullptr};
  PyObject* value = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", const_cast<char**>(kwlist),
                                   &value))
    return -1;
  Py_ssize_t v = 1;
  if (value) {
    py::Ref zero = py::Ref::steal(PyLong_FromLong(0));
    if (!zero) return -1;
    int negative = PyObject_RichCompareBool(value, zero.get(), Py_LT);
    if (negative < 0) return -1;
    if (negative) {
      PyErr_SetString(PyExc_ValueError, "semaphore initial value must be >= 0");
      return -1;
    }
    v = PyNumber_AsSsize_t(value, PyExc_OverflowError);
    if (v == -1 && PyErr_Occurred()) return -1;
  }
  s->value_ = v;
  s->bound_ = bounded ? v : -1;
  return 0;
}

int Semaphore_init(Semaphore* s, PyObject* args, PyObject* kwds) {
  return init(s, args, kwds, false);
}

int Bounded_init(Semaphore* s, PyObject* args, PyObject* kwds) {
  return init(s, args, kwds, true);
}

// py::make_heap_type's dealloc calls it.
void Semaphore_destroy(Semaphore* s) { s->w_.destroy(); }

PyObject* Semaphore_acquire(Semaphore* s, PyObject* const* args,
                            Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"blocking", "timeout"};
  PyObject* a[2] = {nullptr, nullptr};
  if (py::parse_args("acquire", args, nargs, kwnames, names, 2, a) < 0)
    return nullptr;
  int blocking = a[0] ? PyObject_IsTrue(a[0]) : 1;
  if (blocking < 0) return nullptr;
  PyObject* timeout = a[1] == Py_None ? nullptr : a[1];
  if (!blocking && timeout) {
    PyErr_SetString(PyExc_ValueError,
                    "can't specify timeout for non-blocking acquire");
    return nullptr;
  }
  double seconds = blocking ? -1 : 0;
  // The timeout is only read when the call must wait, as threading.
  if (s->value_ <= 0 && timeout &&
      threading_wait_timeout(timeout, &seconds) < 0)
    return nullptr;
  int rc = semaphore_acquire(s, seconds);
  return rc < 0 ? nullptr : PyBool_FromLong(rc);
}

PyObject* Semaphore_enter(Semaphore* s, PyObject*) {
  int rc = semaphore_acquire(s, -1);
  return rc < 0 ? nullptr : PyBool_FromLong(rc);
}

PyObject* Semaphore_release(Semaphore* s, PyObject* const* args,
                            Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"n"};
  PyObject* a[1] = {nullptr};
  if (py::parse_args("release", args, nargs, kwnames, names, 1, a) < 0)
    return nullptr;
  Py_ssize_t n = 1;
  if (a[0]) {
    n = PyNumber_AsSsize_t(a[0], PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred()) return nullptr;
  }
  if (n < 1) {
    PyErr_SetString(PyExc_ValueError, "n must be one or more");
    return nullptr;
  }
  if (semaphore_release(s, n) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* Semaphore_exit(Semaphore* s, PyObject* const*, Py_ssize_t) {
  // Through the method, so that a subclass's release() runs, as with a
  // Python `__exit__` calling self.release().
  if (Py_TYPE(s) == SemaphoreType || Py_TYPE(s) == BoundedSemaphoreType) {
    if (semaphore_release(s, 1) < 0) return nullptr;
    Py_RETURN_NONE;
  }
  return PyObject_CallMethod(s->self(), "release", nullptr);
}

PyObject* Semaphore_dispatch(Semaphore* s, PyObject*) {
  semaphore_dispatch(s);
  Py_RETURN_NONE;
}

PyObject* Semaphore_repr(Semaphore* s) {
  py::Ref module, qualname;
  if (type_names(s->self(), &module, &qualname) < 0) return nullptr;
  if (s->bound_ >= 0)
    return PyUnicode_FromFormat("<%S.%S at %p: value=%zd/%zd>", module.get(),
                                qualname.get(), s->self(), s->value_,
                                s->bound_);
  return PyUnicode_FromFormat("<%S.%S at %p: value=%zd>", module.get(),
                              qualname.get(), s->self(), s->value_);
}

PyObject* get_value(Semaphore* s, void*) {
  return PyLong_FromSsize_t(s->value_);
}

PyObject* get_initial_value(Semaphore* s, void*) {
  if (s->bound_ < 0) {
    PyErr_SetString(PyExc_AttributeError, "_initial_value");
    return nullptr;
  }
  return PyLong_FromSsize_t(s->bound_);
}

PyObject* get_waiters(Semaphore* s, void*) { return waiters_snapshot(s->w_); }

PyMethodDef Semaphore_methods[] = {
    {"acquire", py::method(Semaphore_acquire), METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, blocking=True, timeout=None)\n--\n\n"
     "Take one permit; True, or False if none came (blocking false, or the "
     "timeout passed)."},
    {"__enter__", py::method(Semaphore_enter), METH_NOARGS,
     "__enter__($self, /)\n--\n\nacquire()"},
    {"release", py::method(Semaphore_release), METH_FASTCALL | METH_KEYWORDS,
     "release($self, n=1)\n--\n\n"
     "Return n permits; each goes to the oldest waiter, if any."},
    {"__exit__", py::method(Semaphore_exit), METH_FASTCALL,
     "__exit__($self, /, *exc_info)\n--\n\nrelease()"},
    {"_dispatch", py::method(Semaphore_dispatch), METH_NOARGS,
     "_dispatch($self, /)\n--\n\n"
     "in the owner hub: hand permits released by another thread to the "
     "oldest waiters"},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef Semaphore_getset[] = {
    {"_value", reinterpret_cast<getter>(get_value), nullptr,
     "free permits (not counting those handed to waiters)", nullptr},
    {"_waiters", reinterpret_cast<getter>(get_waiters), nullptr,
     "None before any wait, else (wq: waiting tasklets, woken: handed a "
     "permit, not yet returned)",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyGetSetDef Bounded_getset[] = {
    {"_initial_value", reinterpret_cast<getter>(get_initial_value), nullptr,
     "the bound", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

}  // namespace

PyTypeObject* make_semaphore_types() {
  static PyMemberDef members[] = {
      {"__weaklistoffset__", T_PYSSIZET, offsetof(Semaphore, weakrefs_),
       READONLY, nullptr},
      {nullptr, 0, 0, 0, nullptr}};
  static PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(PyType_GenericNew)},
      {Py_tp_init, reinterpret_cast<void*>(Semaphore_init)},
      {Py_tp_repr, reinterpret_cast<void*>(Semaphore_repr)},
      {Py_tp_methods, Semaphore_methods},
      {Py_tp_getset, Semaphore_getset},
      {Py_tp_members, members},
      {Py_tp_doc, const_cast<char*>(
                      "Semaphore(value=1)\n--\n\n"
                      "A counting semaphore, as threading.Semaphore; waiters "
                      "are served in FIFO order and a release hands the "
                      "permit to the oldest one.")},
      {0, nullptr}};
  static PyType_Spec spec = {"ptsevent.locks.Semaphore", sizeof(Semaphore), 0,
                             Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots};
  SemaphoreType =
      py::make_heap_type<Semaphore, nullptr, Semaphore_destroy>(&spec);
  if (!SemaphoreType) return nullptr;
  static PyType_Slot bounded_slots[] = {
      {Py_tp_init, reinterpret_cast<void*>(Bounded_init)},
      {Py_tp_getset, Bounded_getset},
      {Py_tp_doc, const_cast<char*>(
                      "BoundedSemaphore(value=1)\n--\n\n"
                      "A semaphore whose release() raises ValueError past the "
                      "initial value, as threading.BoundedSemaphore.")},
      {0, nullptr}};
  static PyType_Spec bounded_spec = {
      "ptsevent.locks.BoundedSemaphore", sizeof(Semaphore), 0,
      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, bounded_slots};
  BoundedSemaphoreType =
      py::make_heap_type<Semaphore, nullptr, Semaphore_destroy>(
          &bounded_spec, reinterpret_cast<PyObject*>(SemaphoreType));
  return BoundedSemaphoreType;
}

}  // namespace ptsevent::hub

// The Python face of RLock (`ptsevent.locks.RLock`): argument checks as
// threading's, the Condition support methods, the type. The engine is
// rlock.cpp.
#include <Python.h>
#include <structmember.h>

#include "hub/lock.h"
#include "hub/rlock.h"
#include "py/args.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

PyTypeObject* RLockType = nullptr;

namespace {

PyObject* RLock_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  // A subclass's __init__ may take arguments.
  if (type == RLockType &&
      (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds)))) {
    PyErr_SetString(PyExc_TypeError, "RLock() takes no arguments");
    return nullptr;
  }
  PyObject* l = type->tp_alloc(type, 0);
  return l;
}

int RLock_traverse(RLock* l, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(l));
  Py_VISIT(l->owner_);
  return 0;
}

int RLock_clear(RLock* l) {
  Py_CLEAR(l->owner_);
  return 0;
}

// After RLock_clear (py::make_heap_type's dealloc).
void RLock_destroy(RLock* l) { l->w_.destroy(); }

// The running tasklet and its hub. False with an error (in the hub itself).
bool running(Hub** hub, Tasklet** me) {
  *hub = Hub::get();
  *me = *hub ? (*hub)->current() : nullptr;
  return *me != nullptr;
}

PyObject* acquire(RLock* l, double seconds) {
  Hub* hub;
  Tasklet* me;
  if (!running(&hub, &me)) return nullptr;
  int rc = rlock_acquire(l, hub, me, seconds);
  return rc < 0 ? nullptr : PyBool_FromLong(rc);
}

PyObject* RLock_acquire(RLock* l, PyObject* const* args, Py_ssize_t nargs,
                        PyObject* kwnames) {
  static const char* const names[] = {"blocking", "timeout"};
  PyObject* a[2] = {nullptr, nullptr};
  if (py::parse_args("acquire", args, nargs, kwnames, names, 2, a) < 0)
    return nullptr;
  double seconds = -1;
  if ((a[0] || a[1]) && lock_timeout(a[0], a[1], &seconds) < 0) return nullptr;
  return acquire(l, seconds);
}

PyObject* RLock_enter(RLock* l, PyObject*) { return acquire(l, -1); }

// Whether the running tasklet owns the lock: 1, 0, or -1 with an error.
int owned(RLock* l) {
  Hub* hub;
  Tasklet* me;
  if (!running(&hub, &me)) return -1;
  return l->owner_ == me->self();
}

PyObject* RLock_release(RLock* l, PyObject*) {
  int mine = owned(l);
  if (mine < 0) return nullptr;
  if (!mine) {
    PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
    return nullptr;
  }
  if (--l->count_ == 0) rlock_free(l);
  Py_RETURN_NONE;
}

PyObject* RLock_exit(RLock* l, PyObject* const*, Py_ssize_t) {
  return RLock_release(l, nullptr);
}

PyObject* RLock_is_owned(RLock* l, PyObject*) {
  int mine = owned(l);
  return mine < 0 ? nullptr : PyBool_FromLong(mine);
}

PyObject* RLock_release_save(RLock* l, PyObject*) {
  if (l->count_ == 0) {
    PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
    return nullptr;
  }
  PyObject* state =
      Py_BuildValue("(nO)", l->count_, l->owner_ ? l->owner_ : Py_None);
  if (!state) return nullptr;
  rlock_free(l);
  return state;
}

PyObject* RLock_acquire_restore(RLock* l, PyObject* state) {
  Py_ssize_t count;
  PyObject* owner;
  if (!PyArg_Parse(state, "(nO)", &count, &owner)) return nullptr;
  Py_INCREF(owner);  // acquire() may switch: keep what the state names
  py::Ref keep = py::Ref::steal(owner);
  py::Ref r = py::Ref::steal(acquire(l, -1));
  if (!r) return nullptr;
  l->count_ = count;
  Py_XSETREF(l->owner_, owner == Py_None ? nullptr : Py_NewRef(owner));
  Py_RETURN_NONE;
}

PyObject* RLock_recursion_count(RLock* l, PyObject*) {
  int mine = owned(l);
  if (mine < 0) return nullptr;
  return PyLong_FromSsize_t(mine ? l->count_ : 0);
}

PyObject* RLock_at_fork_reinit(RLock* l, PyObject*) {
  // The waiting tasklets stayed in the parent.
  l->count_ = 0;
  l->w_.reset();
  Py_CLEAR(l->owner_);
  Py_RETURN_NONE;
}

PyObject* RLock_dispatch(RLock* l, PyObject*) {
  rlock_dispatch(l);
  Py_RETURN_NONE;
}

PyObject* RLock_repr(RLock* l) {
  py::Ref module, qualname;
  if (type_names(l->self(), &module, &qualname) < 0) return nullptr;
  return PyUnicode_FromFormat(
      "<%s %S.%S object owner=%R count=%zd at %p>",
      l->count_ || l->owner_ ? "locked" : "unlocked", module.get(),
      qualname.get(), l->owner_ ? l->owner_ : Py_None, l->count_, l->self());
}

PyObject* get_owner(RLock* l, void*) {
  return Py_NewRef(l->owner_ ? l->owner_ : Py_None);
}

int set_owner(RLock* l, PyObject* v, void*) {
  Py_XSETREF(l->owner_, v && v != Py_None ? Py_NewRef(v) : nullptr);
  return 0;
}

PyObject* get_count(RLock* l, void*) { return PyLong_FromSsize_t(l->count_); }

PyObject* get_waiters(RLock* l, void*) { return waiters_snapshot(l->w_); }

PyMethodDef RLock_methods[] = {
    {"acquire", py::method(RLock_acquire), METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, blocking=True, timeout=-1)\n--\n\n"
     "Acquire the lock, or add one level if this tasklet owns it."},
    {"__enter__", py::method(RLock_enter), METH_NOARGS,
     "__enter__($self, /)\n--\n\nacquire()"},
    {"release", py::method(RLock_release), METH_NOARGS,
     "release($self, /)\n--\n\n"
     "Drop one level; at the last one the oldest waiter owns it next."},
    {"__exit__", py::method(RLock_exit), METH_FASTCALL,
     "__exit__($self, /, *exc_info)\n--\n\nrelease()"},
    {"_is_owned", py::method(RLock_is_owned), METH_NOARGS,
     "_is_owned($self, /)\n--\n\n"
     "whether the running tasklet owns it (for Condition)"},
    {"_release_save", py::method(RLock_release_save), METH_NOARGS,
     "_release_save($self, /)\n--\n\n"
     "release every level; the state for _acquire_restore (for Condition)"},
    {"_acquire_restore", py::method(RLock_acquire_restore), METH_O,
     "_acquire_restore($self, state, /)\n--\n\n"
     "acquire, then restore the levels _release_save saved (for Condition)"},
    {"_recursion_count", py::method(RLock_recursion_count), METH_NOARGS,
     "_recursion_count($self, /)\n--\n\n"
     "the levels the running tasklet holds"},
    {"_at_fork_reinit", py::method(RLock_at_fork_reinit), METH_NOARGS,
     "_at_fork_reinit($self, /)\n--\n\n"
     "unlocked, nobody waiting (in a child after fork)"},
    {"_dispatch", py::method(RLock_dispatch), METH_NOARGS,
     "_dispatch($self, /)\n--\n\n"
     "in the owner hub: hand a lock freed by another thread to the oldest "
     "waiter"},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef RLock_getset[] = {
    {"_owner", reinterpret_cast<getter>(get_owner),
     reinterpret_cast<setter>(set_owner),
     "the owning tasklet, or None (also while a hand-off is in flight)",
     nullptr},
    {"_count", reinterpret_cast<getter>(get_count), nullptr,
     "the owner's recursion levels", nullptr},
    {"_waiters", reinterpret_cast<getter>(get_waiters), nullptr,
     "None before any wait, else (wq: waiting tasklets, woken: handed the "
     "lock, not yet returned)",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

}  // namespace

PyTypeObject* make_rlock_type() {
  static PyMemberDef members[] = {
      {"__weaklistoffset__", T_PYSSIZET, offsetof(RLock, weakrefs_), READONLY,
       nullptr},
      {nullptr, 0, 0, 0, nullptr}};
  static PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(RLock_new)},
      {Py_tp_traverse, reinterpret_cast<void*>(RLock_traverse)},
      {Py_tp_repr, reinterpret_cast<void*>(RLock_repr)},
      {Py_tp_methods, RLock_methods},
      {Py_tp_getset, RLock_getset},
      {Py_tp_members, members},
      {Py_tp_doc, const_cast<char*>(
                      "RLock()\n--\n\n"
                      "A reentrant lock, as threading.RLock; the owner is the "
                      "tasklet (ptsevent.getcurrent()) that acquired it. Fair "
                      "as Lock.")},
      {0, nullptr}};
  static PyType_Spec spec = {
      "ptsevent.locks.RLock", sizeof(RLock), 0,
      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, slots};
  RLockType = py::make_heap_type<RLock, RLock_clear, RLock_destroy>(&spec);
  return RLockType;
}

}  // namespace ptsevent::hub

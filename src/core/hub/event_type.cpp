// The Python face of Event (`ptsevent.Event`): the threading.Event
// interface, the type. The engine is event.cpp.
#include <Python.h>
#include <structmember.h>

#include "hub/event.h"
#include "py/args.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

PyTypeObject* EventType = nullptr;

namespace {

PyObject* Event_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  // A subclass's __init__ may take arguments.
  if (type == EventType &&
      (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds)))) {
    PyErr_SetString(PyExc_TypeError, "Event() takes no arguments");
    return nullptr;
  }
  return type->tp_alloc(type, 0);
}

// py::make_heap_type's dealloc calls it.
void Event_destroy(Event* e) { e->w_.destroy(); }

PyObject* Event_is_set(Event* e, PyObject*) {
  return PyBool_FromLong(e->flag_);
}

PyObject* Event_isSet(Event* e, PyObject*) {
  if (PyErr_WarnEx(PyExc_DeprecationWarning,
                   "isSet() is deprecated, use is_set() instead", 1) < 0)
    return nullptr;
  return PyBool_FromLong(e->flag_);
}

PyObject* Event_set(Event* e, PyObject*) {
  event_set(e);
  Py_RETURN_NONE;
}

PyObject* Event_clear(Event* e, PyObject*) {
  e->flag_ = false;
  Py_RETURN_NONE;
}

PyObject* Event_wait(Event* e, PyObject* const* args, Py_ssize_t nargs,
                     PyObject* kwnames) {
  if (e->flag_ && !kwnames && nargs <= 1) Py_RETURN_TRUE;
  static const char* const names[] = {"timeout"};
  PyObject* a[1] = {nullptr};
  if (py::parse_args("wait", args, nargs, kwnames, names, 1, a) < 0)
    return nullptr;
  if (e->flag_) Py_RETURN_TRUE;
  double seconds;
  if (threading_wait_timeout(a[0], &seconds) < 0) return nullptr;
  int rc = event_wait(e, seconds);
  return rc < 0 ? nullptr : PyBool_FromLong(rc);
}

PyObject* Event_at_fork_reinit(Event* e, PyObject*) {
  // The waiting tasklets stayed in the parent.
  e->flag_ = false;
  e->w_.reset();
  Py_RETURN_NONE;
}

PyObject* Event_dispatch(Event* e, PyObject*) {
  event_dispatch(e);
  Py_RETURN_NONE;
}

PyObject* Event_repr(Event* e) {
  py::Ref module, qualname;
  if (type_names(e->self(), &module, &qualname) < 0) return nullptr;
  return PyUnicode_FromFormat("<%S.%S at %p: %s>", module.get(), qualname.get(),
                              e->self(), e->flag_ ? "set" : "unset");
}

PyObject* get_waiters(Event* e, void*) { return waiters_snapshot(e->w_); }

PyMethodDef Event_methods[] = {
    {"is_set", py::method(Event_is_set), METH_NOARGS,
     "is_set($self, /)\n--\n\nTrue if the flag is set."},
    {"isSet", py::method(Event_isSet), METH_NOARGS,
     "isSet($self, /)\n--\n\nDeprecated alias of is_set()."},
    {"set", py::method(Event_set), METH_NOARGS,
     "set($self, /)\n--\n\n"
     "Set the flag and wake every waiting tasklet (any thread)."},
    {"clear", py::method(Event_clear), METH_NOARGS,
     "clear($self, /)\n--\n\nReset the flag."},
    {"wait", py::method(Event_wait), METH_FASTCALL | METH_KEYWORDS,
     "wait($self, timeout=None)\n--\n\n"
     "Block until the flag is set or the timeout passes; return True if it "
     "was set (before or during the wait), False on timeout."},
    {"_at_fork_reinit", py::method(Event_at_fork_reinit), METH_NOARGS,
     "_at_fork_reinit($self, /)\n--\n\n"
     "unset, nobody waiting (in a child after fork)"},
    {"_dispatch", py::method(Event_dispatch), METH_NOARGS,
     "_dispatch($self, /)\n--\n\n"
     "in the owner hub: wake the waiters of a set() from another thread"},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef Event_getset[] = {
    {"_waiters", reinterpret_cast<getter>(get_waiters), nullptr,
     "None before any wait, else (wq: waiting tasklets, woken: woken, not "
     "yet returned)",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

}  // namespace

PyTypeObject* make_event_type() {
  static PyMemberDef members[] = {
      {"__weaklistoffset__", T_PYSSIZET, offsetof(Event, weakrefs_), READONLY,
       nullptr},
      {nullptr, 0, 0, 0, nullptr}};
  static PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(Event_new)},
      {Py_tp_repr, reinterpret_cast<void*>(Event_repr)},
      {Py_tp_methods, Event_methods},
      {Py_tp_getset, Event_getset},
      {Py_tp_members, members},
      {Py_tp_doc,
       const_cast<char*>("Event()\n--\n\n"
                         "A flag tasklets wait for, as threading.Event.")},
      {0, nullptr}};
  static PyType_Spec spec = {"ptsevent.event.Event", sizeof(Event), 0,
                             Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots};
  EventType = py::make_heap_type<Event, nullptr, Event_destroy>(&spec);
  return EventType;
}

}  // namespace ptsevent::hub

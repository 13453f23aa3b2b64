// The Python face of WaitQueue (`_core.WaitQueue`): argument checks, the
// method table, the type. The engine is wait_queue.cpp.
#include <Python.h>
#include <structmember.h>

#include "hub/timeout.h"
#include "hub/wait_queue.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

PyTypeObject* WaitQueueType = nullptr;

namespace {

PyObject* WaitQueue_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
    PyErr_SetString(PyExc_TypeError, "WaitQueue() takes no arguments");
    return nullptr;
  }
  WaitQueue* q = reinterpret_cast<WaitQueue*>(type->tp_alloc(type, 0));
  return q ? q->self() : nullptr;
}

// py::make_heap_type's dealloc calls it.
void WaitQueue_destroy(WaitQueue* q) {
  // A waiting tasklet holds a reference to the queue (through its frame):
  // the list is empty here.
  q->w_.destroy();
}

// wait(timeout=None) -> True when notified, False on timeout.
PyObject* WaitQueue_wait(WaitQueue* q, PyObject* const* args,
                         Py_ssize_t nargs) {
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "wait() takes at most 1 argument");
    return nullptr;
  }
  double timeout;
  if (parse_timeout(nargs ? args[0] : Py_None, TimeoutMode::kWait, &timeout) <
      0)
    return nullptr;
  return wait_queue_wait(q, timeout);
}

PyObject* WaitQueue_notify(WaitQueue* q, PyObject* const* args,
                           Py_ssize_t nargs) {
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "notify() takes at most 1 argument");
    return nullptr;
  }
  Py_ssize_t n = 1;
  if (nargs) {
    n = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred()) return nullptr;
    if (n < 0) {
      PyErr_SetString(PyExc_ValueError, "n must be non-negative");
      return nullptr;
    }
  }
  return wait_queue_notify(q, n);
}

PyObject* WaitQueue_notify_all(WaitQueue* q, PyObject*) {
  return wait_queue_notify(q, PY_SSIZE_T_MAX);
}

Py_ssize_t WaitQueue_len(WaitQueue* q) {
  return static_cast<Py_ssize_t>(q->w_.size());
}

PyMethodDef WaitQueue_methods[] = {
    {"wait", py::method(WaitQueue_wait), METH_FASTCALL,
     "wait($self, timeout=None, /)\n--\n\n"
     "wait(timeout=None) -> bool: suspend until notified (True) or the timeout "
     "(False)"},
    {"notify", py::method(WaitQueue_notify), METH_FASTCALL,
     "notify($self, n=1, /)\n--\n\n"
     "notify(n=1) -> int: wake up to n waiters, oldest first"},
    {"notify_all", py::method(WaitQueue_notify_all), METH_NOARGS,
     "notify_all($self, /)\n--\n\n"
     "notify_all() -> int: wake every waiter"},
    {nullptr, nullptr, 0, nullptr}};

PyObject* get_waiters(WaitQueue* q, void*) { return waiters_snapshot(q->w_); }

PyGetSetDef WaitQueue_getset[] = {
    {"_waiters", reinterpret_cast<getter>(get_waiters), nullptr,
     "None before any wait, else (wq: the waiting tasklets, woken: notified "
     "ones not yet returned)",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

}  // namespace

PyTypeObject* make_wait_queue_type() {
  static PyMemberDef members[] = {
      {"__weaklistoffset__", T_PYSSIZET, offsetof(WaitQueue, weakrefs_),
       READONLY, nullptr},
      {nullptr, 0, 0, 0, nullptr}};
  static PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(WaitQueue_new)},
      {Py_tp_members, members},
      {Py_tp_methods, WaitQueue_methods},
      {Py_tp_getset, WaitQueue_getset},
      {Py_sq_length, reinterpret_cast<void*>(WaitQueue_len)},
      {Py_tp_doc,
       const_cast<char*>("WaitQueue()\n--\n\n"
                         "WaitQueue(): a FIFO of suspended tasklets, woken by "
                         "notify() oldest first; the waits of Condition")},
      {0, nullptr}};
  static PyType_Spec spec = {"ptsevent._core.WaitQueue", sizeof(WaitQueue), 0,
                             Py_TPFLAGS_DEFAULT, slots};
  WaitQueueType =
      py::make_heap_type<WaitQueue, nullptr, WaitQueue_destroy>(&spec);
  return WaitQueueType;
}

}  // namespace ptsevent::hub

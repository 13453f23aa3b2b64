// The Python face of Queue (`_core.Queue`): construction, argument
// parsing, the storage hooks of the base class, attributes, GC support, the
// method tables and the type. The engine is queue.cpp.
#include <Python.h>
#include <structmember.h>

#include "hub/lock.h"
#include "hub/queue.h"
#include "py/args.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

PyTypeObject* QueueType = nullptr;

PyObject* deque_type = nullptr;
PyObject* exc_full = nullptr;
PyObject* exc_empty = nullptr;
PyObject *str_append, *str_popleft, *str_init, *str_qsize, *str_put, *str_get;

namespace {

// block's truth value (true when not given). 1, 0, or -1 with an error.
int block_arg(PyObject* block) { return block ? PyObject_IsTrue(block) : 1; }

// ------------------------------------------------------ type methods

PyObject* Queue_new(PyTypeObject* type, PyObject*, PyObject*) {
  Queue* q = reinterpret_cast<Queue*>(type->tp_alloc(type, 0));
  if (!q) return nullptr;
  q->maxsize_obj_ = PyLong_FromLong(0);
  if (!q->maxsize_obj_) {
    Py_DECREF(q);
    return nullptr;
  }
  return q->self();
}

int set_maxsize(Queue* q, PyObject* value) {
  if (!value) {
    PyErr_SetString(PyExc_AttributeError, "cannot delete maxsize");
    return -1;
  }
  Py_ssize_t n = PyNumber_AsSsize_t(value, PyExc_OverflowError);
  if (n == -1 && PyErr_Occurred()) return -1;
  Py_SETREF(q->maxsize_obj_, Py_NewRef(value));
  q->maxsize_ = n;
  return 0;
}

int Queue_init(Queue* q, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"maxsize", nullptr};
  PyObject* maxsize = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:Queue",
                                   const_cast<char**>(kwlist), &maxsize))
    return -1;
  if (maxsize && set_maxsize(q, maxsize) < 0) return -1;
  q->unfinished_ = 0;
  py::Ref r = py::Ref::steal(
      PyObject_CallMethodOneArg(q->self(), str_init, q->maxsize_obj_));
  return r ? 0 : -1;
}

int Queue_traverse(Queue* q, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(q));
  Py_VISIT(q->dict_);
  Py_VISIT(q->queue_);
  Py_VISIT(q->maxsize_obj_);
  Py_VISIT(q->mutex_);
  return 0;
}

int Queue_clear(Queue* q) {
  Py_CLEAR(q->dict_);
  Py_CLEAR(q->queue_);
  Py_CLEAR(q->maxsize_obj_);
  Py_CLEAR(q->mutex_);
  return 0;
}

// After Queue_clear (py::make_heap_type's dealloc).
void Queue_destroy(Queue* q) {
  // A waiting tasklet holds a reference to the queue: nobody waits here.
  q->getters_.destroy();
  q->putters_.destroy();
  q->joiners_.destroy();
}

// ------------------------------------------------------------ put/get

PyObject* Queue_put(Queue* q, PyObject* const* args, Py_ssize_t nargs,
                    PyObject* kwnames) {
  static const char* const names[] = {"item", "block", "timeout"};
  PyObject* a[3] = {nullptr, nullptr, nullptr};
  if (py::parse_args("put", args, nargs, kwnames, names, 3, a) < 0)
    return nullptr;
  if (!a[0]) {
    PyErr_SetString(PyExc_TypeError, "put() missing required argument 'item'");
    return nullptr;
  }
  int block = block_arg(a[1]);
  if (block < 0) return nullptr;
  return queue_put(q, a[0], block, a[2]);
}

PyObject* Queue_put_nowait(Queue* q, PyObject* item) {
  return queue_put(q, item, 0, nullptr);
}

PyObject* Queue_get(Queue* q, PyObject* const* args, Py_ssize_t nargs,
                    PyObject* kwnames) {
  static const char* const names[] = {"block", "timeout"};
  PyObject* a[2] = {nullptr, nullptr};
  if (py::parse_args("get", args, nargs, kwnames, names, 2, a) < 0)
    return nullptr;
  int block = block_arg(a[0]);
  if (block < 0) return nullptr;
  return queue_get(q, block, a[1]);
}

PyObject* Queue_get_nowait(Queue* q, PyObject*) {
  return queue_get(q, 0, nullptr);
}

// ------------------------------------------------------ task_done/join

PyObject* Queue_task_done(Queue* q, PyObject*) { return queue_task_done(q); }

PyObject* Queue_join(Queue* q, PyObject*) { return queue_join(q); }

// ------------------------------------------------- cross-thread dispatch

PyObject* Queue_dispatch_getters(Queue* q, PyObject*) {
  return queue_dispatch_getters(q);
}

PyObject* Queue_dispatch_putters(Queue* q, PyObject*) {
  return queue_dispatch_putters(q);
}

PyObject* Queue_dispatch_joiners(Queue* q, PyObject*) {
  return queue_dispatch_joiners(q);
}

// ------------------------------------------------------------- state

PyObject* Queue_qsize(Queue* q, PyObject*) {
  Py_ssize_t n = queue_qsize(q);
  return n < 0 ? nullptr : PyLong_FromSsize_t(n);
}

PyObject* Queue_empty(Queue* q, PyObject*) {
  Py_ssize_t n = queue_qsize(q);
  return n < 0 ? nullptr : PyBool_FromLong(n == 0);
}

PyObject* Queue_full(Queue* q, PyObject*) {
  Py_ssize_t n = queue_qsize(q);
  return n < 0 ? nullptr : PyBool_FromLong(0 < q->maxsize_ && q->maxsize_ <= n);
}

// The storage hooks of the base class, as queue.Queue's.
PyObject* Queue__init(Queue* q, PyObject*) {
  PyObject* d = PyObject_CallNoArgs(deque_type);
  if (!d) return nullptr;
  Py_XSETREF(q->queue_, d);
  Py_RETURN_NONE;
}

PyObject* storage(Queue* q) {
  if (!q->queue_) {
    PyErr_SetString(PyExc_AttributeError,
                    "'queue': _init() did not set the storage");
    return nullptr;
  }
  return q->queue_;
}

PyObject* Queue__qsize(Queue* q, PyObject*) {
  PyObject* s = storage(q);
  if (!s) return nullptr;
  Py_ssize_t n = PyObject_Size(s);
  return n < 0 ? nullptr : PyLong_FromSsize_t(n);
}

PyObject* Queue__put(Queue* q, PyObject* item) {
  PyObject* s = storage(q);
  return s ? PyObject_CallMethodOneArg(s, str_append, item) : nullptr;
}

PyObject* Queue__get(Queue* q, PyObject*) {
  PyObject* s = storage(q);
  return s ? PyObject_CallMethodNoArgs(s, str_popleft) : nullptr;
}

PyObject* Queue_repr(Queue* q) {
  PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(q));
  py::Ref module = py::Ref::steal(PyObject_GetAttrString(type, "__module__"));
  py::Ref qualname =
      py::Ref::steal(PyObject_GetAttrString(type, "__qualname__"));
  if (!module || !qualname) return nullptr;
  Py_ssize_t n = queue_qsize(q);
  if (n < 0) return nullptr;
  return PyUnicode_FromFormat("<%S.%S at %p maxsize=%R qsize=%zd>",
                              module.get(), qualname.get(), q->self(),
                              q->maxsize_obj_, n);
}

// ----------------------------------------------------------- getters

PyObject* get_maxsize(Queue* q, void*) { return Py_NewRef(q->maxsize_obj_); }
int set_maxsize_attr(Queue* q, PyObject* v, void*) { return set_maxsize(q, v); }

PyObject* get_unfinished(Queue* q, void*) {
  return PyLong_FromSsize_t(q->unfinished_);
}
int set_unfinished(Queue* q, PyObject* v, void*) {
  if (!v) {
    PyErr_SetString(PyExc_AttributeError, "cannot delete unfinished_tasks");
    return -1;
  }
  Py_ssize_t n = PyNumber_AsSsize_t(v, PyExc_OverflowError);
  if (n == -1 && PyErr_Occurred()) return -1;
  q->unfinished_ = n;
  return 0;
}

PyObject* get_mutex(Queue* q, void*) {
  if (!q->mutex_) {
    q->mutex_ = PyObject_CallNoArgs(reinterpret_cast<PyObject*>(LockType));
    if (!q->mutex_) return nullptr;
  }
  return Py_NewRef(q->mutex_);
}

PyObject* get_waiting(Queue* q, void* which) {
  Waiters* w = which == nullptr                      ? &q->getters_
               : which == reinterpret_cast<void*>(1) ? &q->putters_
                                                     : &q->joiners_;
  return Py_BuildValue("(nn)", static_cast<Py_ssize_t>(w->size()), w->handed);
}

PyObject* get_has_waiters(Queue* q, void*) {
  return PyBool_FromLong(q->getters_.used || q->putters_.used ||
                         q->joiners_.used);
}

PyMethodDef Queue_methods[] = {
    {"put", py::method(Queue_put), METH_FASTCALL | METH_KEYWORDS,
     "put($self, item, block=True, timeout=None)\n--\n\n"
     "put(item, block=True, timeout=None): put item in the queue; when it is "
     "full wait (block true) up to timeout seconds for a free slot, else raise "
     "queue.Full"},
    {"put_nowait", py::method(Queue_put_nowait), METH_O,
     "put_nowait($self, item, /)\n--\n\n"
     "put(item, block=False)"},
    {"get", py::method(Queue_get), METH_FASTCALL | METH_KEYWORDS,
     "get($self, block=True, timeout=None)\n--\n\n"
     "get(block=True, timeout=None) -> item: when the queue is empty wait "
     "(block true) up to timeout seconds for an item, else raise queue.Empty"},
    {"get_nowait", py::method(Queue_get_nowait), METH_NOARGS,
     "get_nowait($self, /)\n--\n\n"
     "get(block=False)"},
    {"task_done", py::method(Queue_task_done), METH_NOARGS,
     "task_done($self, /)\n--\n\n"
     "mark one task taken with get() as done; ValueError if called more times "
     "than there were items put"},
    {"join", py::method(Queue_join), METH_NOARGS,
     "join($self, /)\n--\n\n"
     "block until every item put has been marked done (task_done)"},
    {"qsize", py::method(Queue_qsize), METH_NOARGS,
     "qsize($self, /)\n--\n\n"
     "the number of items in the queue"},
    {"empty", py::method(Queue_empty), METH_NOARGS,
     "empty($self, /)\n--\n\n"
     "True if the queue holds no item"},
    {"full", py::method(Queue_full), METH_NOARGS,
     "full($self, /)\n--\n\n"
     "True if the queue holds maxsize items (never when unbounded)"},
    {"_init", py::method(Queue__init), METH_O,
     "_init($self, maxsize, /)\n--\n\n"
     "storage hook: self.queue = deque()"},
    {"_qsize", py::method(Queue__qsize), METH_NOARGS,
     "_qsize($self, /)\n--\n\n"
     "storage hook: len(self.queue)"},
    {"_put", py::method(Queue__put), METH_O,
     "_put($self, item, /)\n--\n\n"
     "storage hook: self.queue.append(item)"},
    {"_get", py::method(Queue__get), METH_NOARGS,
     "_get($self, /)\n--\n\n"
     "storage hook: self.queue.popleft()"},
    {"_dispatch_getters", py::method(Queue_dispatch_getters), METH_NOARGS,
     "_dispatch_getters($self, /)\n--\n\n"
     "in the owner hub: hand items put by another thread to waiting getters"},
    {"_dispatch_putters", py::method(Queue_dispatch_putters), METH_NOARGS,
     "_dispatch_putters($self, /)\n--\n\n"
     "in the owner hub: hand slots freed by another thread to waiting putters"},
    {"_dispatch_joiners", py::method(Queue_dispatch_joiners), METH_NOARGS,
     "_dispatch_joiners($self, /)\n--\n\n"
     "in the owner hub: wake join() after task_done() in another thread"},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS,
     "__class_getitem__($type, item, /)\n--\n\n"
     "See PEP 585"},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef Queue_getset[] = {
    {"maxsize", reinterpret_cast<getter>(get_maxsize),
     reinterpret_cast<setter>(set_maxsize_attr), "<= 0: unbounded", nullptr},
    {"unfinished_tasks", reinterpret_cast<getter>(get_unfinished),
     reinterpret_cast<setter>(set_unfinished),
     "items put and not yet task_done()", nullptr},
    {"mutex", reinterpret_cast<getter>(get_mutex), nullptr,
     "a Lock, for code written against queue.Queue that holds q.mutex while it "
     "touches q.queue directly; the queue's own methods do not take it (no "
     "tasklet switch happens inside them)",
     nullptr},
    {"_getters", reinterpret_cast<getter>(get_waiting), nullptr,
     "(blocked getters, getters handed an item not yet returned)", nullptr},
    {"_putters", reinterpret_cast<getter>(get_waiting), nullptr,
     "(blocked putters, putters handed a slot not yet returned)",
     reinterpret_cast<void*>(1)},
    {"_joiners", reinterpret_cast<getter>(get_waiting), nullptr,
     "(tasklets in join(), woken not yet returned)",
     reinterpret_cast<void*>(2)},
    {"_has_waiters", reinterpret_cast<getter>(get_has_waiters), nullptr,
     "a tasklet ever waited on this queue", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

}  // namespace

PyTypeObject* make_queue_type() {
  {
    py::Ref collections = py::Ref::steal(PyImport_ImportModule("collections"));
    py::Ref queue = py::Ref::steal(PyImport_ImportModule("queue"));
    if (!collections || !queue) return nullptr;
    deque_type = PyObject_GetAttrString(collections.get(), "deque");
    exc_full = PyObject_GetAttrString(queue.get(), "Full");
    exc_empty = PyObject_GetAttrString(queue.get(), "Empty");
    if (!deque_type || !exc_full || !exc_empty) return nullptr;
  }
  struct {
    PyObject** slot;
    const char* text;
  } strings[] = {{&str_append, "append"}, {&str_popleft, "popleft"},
                 {&str_init, "_init"},    {&str_qsize, "_qsize"},
                 {&str_put, "_put"},      {&str_get, "_get"}};
  for (auto& s : strings) {
    *s.slot = PyUnicode_InternFromString(s.text);
    if (!*s.slot) return nullptr;
  }
  static PyMemberDef members[] = {
      {"queue", T_OBJECT, offsetof(Queue, queue_), 0,
       "the storage (a deque for Queue), as queue.Queue's"},
      {"__dictoffset__", T_PYSSIZET, offsetof(Queue, dict_), READONLY, nullptr},
      {"__weaklistoffset__", T_PYSSIZET, offsetof(Queue, weakrefs_), READONLY,
       nullptr},
      {nullptr, 0, 0, 0, nullptr}};
  static PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(Queue_new)},
      {Py_tp_init, reinterpret_cast<void*>(Queue_init)},
      {Py_tp_traverse, reinterpret_cast<void*>(Queue_traverse)},
      {Py_tp_repr, reinterpret_cast<void*>(Queue_repr)},
      {Py_tp_methods, Queue_methods},
      {Py_tp_getset, Queue_getset},
      {Py_tp_members, members},
      {Py_tp_doc,
       const_cast<char*>(
           "Queue(maxsize=0)\n--\n\n"
           "Queue(maxsize=0): a FIFO queue, as queue.Queue; maxsize <= 0 "
           "means unbounded. Blocked getters and putters are served "
           "oldest first.")},
      {0, nullptr}};
  static PyType_Spec spec = {
      "ptsevent.queue.Queue", sizeof(Queue), 0,
      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, slots};
  QueueType = py::make_heap_type<Queue, Queue_clear, Queue_destroy>(&spec);
  return QueueType;
}

}  // namespace ptsevent::hub

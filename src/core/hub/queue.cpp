// Queue (`_core.Queue`, exported as `ptsevent.queue.Queue`): queue.Queue for
// tasklets, in C++. LifoQueue and PriorityQueue are Python subclasses that
// override the storage hooks.
//
// Storage is the standard library's: the `queue` attribute (a deque) behind
// the _init/_qsize/_put/_get hooks, which subclasses override as with
// queue.Queue. For the base class over a deque the hooks are bypassed
// (deque methods called directly); a subclass gets its hooks called.
//
// Fairness by reservation: a put hands its item to the oldest blocked
// getter (Waiters::hand), and `getters.handed` items stay reserved until
// those getters run, so a get that did not wait cannot take them; likewise
// a get frees a slot for the oldest blocked putter. A getter or putter
// interrupted after a hand-off passes it on to the next one.
//
// Threads: as the other primitives (see waiters.h). put_nowait() (and put()
// on a queue that is not full) from another OS thread stores the item at
// once and the owner hub hands it to its oldest waiting getter.
#include "hub/queue.h"

#include <Python.h>
#include <structmember.h>

#include <cmath>

#include "hub/clock.h"
#include "hub/lock.h"
#include "hub/tasklet.h"
#include "hub/timeout.h"
#include "hub/waiters.h"
#include "py/args.h"
#include "py/errors.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

PyTypeObject* QueueType = nullptr;

namespace {

PyObject* deque_type = nullptr;
PyObject* exc_full = nullptr;
PyObject* exc_empty = nullptr;
PyObject *str_append, *str_popleft, *str_init, *str_qsize, *str_put, *str_get;

struct Queue {
  PyObject_HEAD PyObject* dict_;
  PyObject* weakrefs_;
  PyObject* queue_;  // the storage (`queue` attribute)
  PyObject* maxsize_obj_;
  PyObject* mutex_;     // a Lock, made when first asked for
  Py_ssize_t maxsize_;  // <= 0: unbounded
  Py_ssize_t unfinished_;
  Waiters getters_, putters_, joiners_;

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
  // The base class over a deque: storage without the hooks.
  bool fast() const noexcept {
    return Py_IS_TYPE(this, QueueType) && queue_ &&
           Py_IS_TYPE(queue_, reinterpret_cast<PyTypeObject*>(deque_type));
  }
};

// ---------------------------------------------------------- storage

Py_ssize_t qsize(Queue* q) {
  if (q->fast()) return PyObject_Size(q->queue_);
  py::Ref n = py::Ref::steal(PyObject_CallMethodNoArgs(q->self(), str_qsize));
  if (!n) return -1;
  return PyNumber_AsSsize_t(n.get(), PyExc_OverflowError);
}

int store(Queue* q, PyObject* item) {
  py::Ref r = py::Ref::steal(
      q->fast() ? PyObject_CallMethodOneArg(q->queue_, str_append, item)
                : PyObject_CallMethodOneArg(q->self(), str_put, item));
  return r ? 0 : -1;
}

PyObject* take(Queue* q) {
  if (q->fast()) return PyObject_CallMethodNoArgs(q->queue_, str_popleft);
  return PyObject_CallMethodNoArgs(q->self(), str_get);
}

// ----------------------------------------------------------- helpers

// get()/put()'s timeout: -1 none, else seconds >= 0. Only checked where the
// standard library checks it (a call that may block).
int parse_timeout_arg(PyObject* obj, double* out) {
  if (!obj || obj == Py_None) {
    *out = -1;
    return 0;
  }
  double t = PyFloat_AsDouble(obj);  // TypeError for non-numbers
  if (t == -1 && PyErr_Occurred()) return -1;
  if (std::isnan(t)) {
    PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
    return -1;
  }
  if (t < 0) {
    PyErr_SetString(PyExc_ValueError,
                    "'timeout' must be a non-negative number");
    return -1;
  }
  *out = t;
  return 0;
}

// block's truth value (true when not given). 1, 0, or -1 with an error.
int block_arg(PyObject* block) { return block ? PyObject_IsTrue(block) : 1; }

// Waits until a hand-off of `w` arrives and `ready()` holds, up to `timeout`
// seconds (< 0: no limit). 0 ready; -1 with `on_timeout` raised, or another
// error. A hand-off received by a waiter that is then interrupted goes to
// the next waiter.
template <typename Ready>
int wait_for(Queue* q, Waiters& w, double timeout, PyObject* on_timeout,
             Ready ready) {
  Hub* hub = Hub::get();
  if (!hub) return -1;
  int adopted = w.adopt(hub, "Queue");
  if (adopted < 0) return -1;
  Tasklet* me = hub->current();
  if (!me) return -1;
  if (adopted) {
    // Another thread may have changed the queue meanwhile.
    int r = ready();
    if (r != 0) return r < 0 ? -1 : 0;
  }
  Deadline d(timeout);
  for (;;) {
    double left = d.wait_seconds();
    if (left == 0) {  // timeout 0, or the time is up
      PyErr_SetNone(on_timeout);
      return -1;
    }
    bool handed;
    int rc = w.wait(q->self(), me, left, &handed);
    if (rc < 0) {
      if (handed) w.hand(1);  // pass it on, if anybody else waits
      return -1;
    }
    if (rc == 0) {
      PyErr_SetNone(on_timeout);
      return -1;
    }
    // Handed an item (a slot): still there unless code outside the queue's
    // methods took it meanwhile.
    int r = ready();
    if (r != 0) return r < 0 ? -1 : 0;
  }
}

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

PyObject* do_put(Queue* q, PyObject* item, int block, PyObject* timeout_obj) {
  Py_ssize_t maxsize = q->maxsize_;
  if (maxsize > 0) {
    Py_ssize_t n = qsize(q);
    if (n < 0) return nullptr;
    if (!block) {
      if (n + q->putters_.handed >= maxsize) {
        PyErr_SetNone(exc_full);
        return nullptr;
      }
    } else {
      double timeout;
      if (parse_timeout_arg(timeout_obj, &timeout) < 0) return nullptr;
      if (n + q->putters_.handed >= maxsize &&
          wait_for(q, q->putters_, timeout, exc_full, [q]() -> int {
            Py_ssize_t k = qsize(q);
            if (k < 0) return -1;
            return !(0 < q->maxsize_ && q->maxsize_ <= k);
          }) < 0)
        return nullptr;
    }
  }
  if (store(q, item) < 0) return nullptr;
  ++q->unfinished_;
  q->getters_.notify(q->self(), 1,
                     "_dispatch_getters");  // reserved for the oldest
  Py_RETURN_NONE;
}

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
  return do_put(q, a[0], block, a[2]);
}

PyObject* Queue_put_nowait(Queue* q, PyObject* item) {
  return do_put(q, item, 0, nullptr);
}

PyObject* do_get(Queue* q, int block, PyObject* timeout_obj) {
  double timeout = -1;
  if (block && parse_timeout_arg(timeout_obj, &timeout) < 0) return nullptr;
  Py_ssize_t n = qsize(q);
  if (n < 0) return nullptr;
  // Items reserved for handed getters are not available.
  if (n <= q->getters_.handed) {
    if (!block) {
      PyErr_SetNone(exc_empty);
      return nullptr;
    }
    if (wait_for(q, q->getters_, timeout, exc_empty, [q]() -> int {
          Py_ssize_t k = qsize(q);
          return k < 0 ? -1 : k > 0;
        }) < 0)
      return nullptr;
  }
  PyObject* item = take(q);
  if (!item) return nullptr;
  q->putters_.notify(q->self(), 1, "_dispatch_putters");  // the freed slot
  return item;
}

PyObject* Queue_get(Queue* q, PyObject* const* args, Py_ssize_t nargs,
                    PyObject* kwnames) {
  static const char* const names[] = {"block", "timeout"};
  PyObject* a[2] = {nullptr, nullptr};
  if (py::parse_args("get", args, nargs, kwnames, names, 2, a) < 0)
    return nullptr;
  int block = block_arg(a[0]);
  if (block < 0) return nullptr;
  return do_get(q, block, a[1]);
}

PyObject* Queue_get_nowait(Queue* q, PyObject*) {
  return do_get(q, 0, nullptr);
}

// ------------------------------------------------------ task_done/join

PyObject* Queue_task_done(Queue* q, PyObject*) {
  if (q->unfinished_ - 1 < 0) {
    PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
    return nullptr;
  }
  if (--q->unfinished_ == 0)
    q->joiners_.notify(q->self(), PY_SSIZE_T_MAX, "_dispatch_joiners");
  Py_RETURN_NONE;
}

PyObject* Queue_join(Queue* q, PyObject*) {
  if (!q->unfinished_) Py_RETURN_NONE;
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  if (q->joiners_.adopt(hub, "Queue") < 0) return nullptr;
  Tasklet* me = hub->current();
  if (!me) return nullptr;
  while (q->unfinished_) {
    bool handed;
    if (q->joiners_.wait(q->self(), me, -1, &handed) < 0) return nullptr;
  }
  Py_RETURN_NONE;
}

// ------------------------------------------------- cross-thread dispatch

PyObject* Queue_dispatch_getters(Queue* q, PyObject*) {
  Waiters& g = q->getters_;
  g.posted = false;
  if (!g.owner_here()) Py_RETURN_NONE;
  Py_ssize_t n = qsize(q);
  if (n < 0) return nullptr;
  Py_ssize_t k = n - g.handed;
  if (k > static_cast<Py_ssize_t>(g.size()))
    k = static_cast<Py_ssize_t>(g.size());
  if (k > 0) g.hand(k);
  Py_RETURN_NONE;
}

PyObject* Queue_dispatch_putters(Queue* q, PyObject*) {
  Waiters& p = q->putters_;
  p.posted = false;
  if (!p.owner_here()) Py_RETURN_NONE;
  Py_ssize_t k = static_cast<Py_ssize_t>(p.size());
  if (q->maxsize_ > 0) {
    Py_ssize_t n = qsize(q);
    if (n < 0) return nullptr;
    if (q->maxsize_ - n - p.handed < k) k = q->maxsize_ - n - p.handed;
  }
  if (k > 0) p.hand(k);
  Py_RETURN_NONE;
}

PyObject* Queue_dispatch_joiners(Queue* q, PyObject*) {
  q->joiners_.posted = false;
  if (q->joiners_.owner_here() && !q->unfinished_)
    q->joiners_.hand(PY_SSIZE_T_MAX);
  Py_RETURN_NONE;
}

// ------------------------------------------------------------- state

PyObject* Queue_qsize(Queue* q, PyObject*) {
  Py_ssize_t n = qsize(q);
  return n < 0 ? nullptr : PyLong_FromSsize_t(n);
}

PyObject* Queue_empty(Queue* q, PyObject*) {
  Py_ssize_t n = qsize(q);
  return n < 0 ? nullptr : PyBool_FromLong(n == 0);
}

PyObject* Queue_full(Queue* q, PyObject*) {
  Py_ssize_t n = qsize(q);
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
  Py_ssize_t n = qsize(q);
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

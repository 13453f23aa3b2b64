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
//
// The engine (this header, queue.cpp) works on the object; its Python face
// (construction, argument parsing, the storage hooks, attributes, the type)
// is queue_type.cpp.
#pragma once

#include <Python.h>

#include "hub/waiters.h"

namespace ptsevent::hub {

extern PyTypeObject* QueueType;
PyTypeObject* make_queue_type();

// Set by make_queue_type(): collections.deque, queue.Full and queue.Empty,
// and the interned names of the storage methods.
extern PyObject* deque_type;
extern PyObject* exc_full;
extern PyObject* exc_empty;
extern PyObject *str_append, *str_popleft, *str_init, *str_qsize, *str_put,
    *str_get;

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

// The number of items stored (through _qsize() unless fast()), -1 with an
// error.
Py_ssize_t queue_qsize(Queue* q);
// put(item, block, timeout) and get(block, timeout) once their arguments are
// parsed (timeout_obj may be null: not given; it is checked only where the
// standard library checks it). New reference, or null with an error.
PyObject* queue_put(Queue* q, PyObject* item, int block, PyObject* timeout_obj);
PyObject* queue_get(Queue* q, int block, PyObject* timeout_obj);
// task_done() and join(): None, or null with an error.
PyObject* queue_task_done(Queue* q);
PyObject* queue_join(Queue* q);
// In the owner hub, after a put, a get or a task_done() in another thread:
// hand items, slots or the end of join() to the waiters. None, or null with
// an error.
PyObject* queue_dispatch_getters(Queue* q);
PyObject* queue_dispatch_putters(Queue* q);
PyObject* queue_dispatch_joiners(Queue* q);

}  // namespace ptsevent::hub

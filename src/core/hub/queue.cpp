// The Queue engine (see queue.h): the storage calls, put and get with
// their waits, task_done and join, the cross-thread dispatch.
#include "hub/queue.h"

#include <cmath>

#include "hub/clock.h"
#include "hub/tasklet.h"

namespace ptsevent::hub {

// ---------------------------------------------------------- storage

Py_ssize_t queue_qsize(Queue* q) {
  if (q->fast()) return PyObject_Size(q->queue_);
  py::Ref n = py::Ref::steal(PyObject_CallMethodNoArgs(q->self(), str_qsize));
  if (!n) return -1;
  return PyNumber_AsSsize_t(n.get(), PyExc_OverflowError);
}

namespace {

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

}  // namespace

// ------------------------------------------------------------ put/get

PyObject* queue_put(Queue* q, PyObject* item, int block,
                    PyObject* timeout_obj) {
  Py_ssize_t maxsize = q->maxsize_;
  if (maxsize > 0) {
    Py_ssize_t n = queue_qsize(q);
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
            Py_ssize_t k = queue_qsize(q);
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

PyObject* queue_get(Queue* q, int block, PyObject* timeout_obj) {
  double timeout = -1;
  if (block && parse_timeout_arg(timeout_obj, &timeout) < 0) return nullptr;
  Py_ssize_t n = queue_qsize(q);
  if (n < 0) return nullptr;
  // Items reserved for handed getters are not available.
  if (n <= q->getters_.handed) {
    if (!block) {
      PyErr_SetNone(exc_empty);
      return nullptr;
    }
    if (wait_for(q, q->getters_, timeout, exc_empty, [q]() -> int {
          Py_ssize_t k = queue_qsize(q);
          return k < 0 ? -1 : k > 0;
        }) < 0)
      return nullptr;
  }
  PyObject* item = take(q);
  if (!item) return nullptr;
  q->putters_.notify(q->self(), 1, "_dispatch_putters");  // the freed slot
  return item;
}

// ------------------------------------------------------ task_done/join

PyObject* queue_task_done(Queue* q) {
  if (q->unfinished_ - 1 < 0) {
    PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
    return nullptr;
  }
  if (--q->unfinished_ == 0)
    q->joiners_.notify(q->self(), PY_SSIZE_T_MAX, "_dispatch_joiners");
  Py_RETURN_NONE;
}

PyObject* queue_join(Queue* q) {
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

PyObject* queue_dispatch_getters(Queue* q) {
  Waiters& g = q->getters_;
  g.posted = false;
  if (!g.owner_here()) Py_RETURN_NONE;
  Py_ssize_t n = queue_qsize(q);
  if (n < 0) return nullptr;
  Py_ssize_t k = n - g.handed;
  if (k > static_cast<Py_ssize_t>(g.size()))
    k = static_cast<Py_ssize_t>(g.size());
  if (k > 0) g.hand(k);
  Py_RETURN_NONE;
}

PyObject* queue_dispatch_putters(Queue* q) {
  Waiters& p = q->putters_;
  p.posted = false;
  if (!p.owner_here()) Py_RETURN_NONE;
  Py_ssize_t k = static_cast<Py_ssize_t>(p.size());
  if (q->maxsize_ > 0) {
    Py_ssize_t n = queue_qsize(q);
    if (n < 0) return nullptr;
    if (q->maxsize_ - n - p.handed < k) k = q->maxsize_ - n - p.handed;
  }
  if (k > 0) p.hand(k);
  Py_RETURN_NONE;
}

PyObject* queue_dispatch_joiners(Queue* q) {
  q->joiners_.posted = false;
  if (q->joiners_.owner_here() && !q->unfinished_)
    q->joiners_.hand(PY_SSIZE_T_MAX);
  Py_RETURN_NONE;
}

}  // namespace ptsevent::hub

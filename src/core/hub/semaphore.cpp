// The Semaphore engine (see semaphore.h).
#include "hub/semaphore.h"

namespace ptsevent::hub {

namespace {

// A permit handed to a waiter that was interrupted before it took it goes
// back through release(), so that a subclass that overrides release() (a
// Pool's slots) sees every permit that comes back. The interrupt stays the
// pending exception.
void give_back(Semaphore* s) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyTypeObject* tp = Py_TYPE(s);
  if (tp == SemaphoreType || tp == BoundedSemaphoreType) {
    if (semaphore_release(s, 1) < 0) PyErr_WriteUnraisable(s->self());
  } else {
    PyObject* r = PyObject_CallMethod(s->self(), "release", nullptr);
    if (r)
      Py_DECREF(r);
    else
      PyErr_WriteUnraisable(s->self());
  }
  PyErr_Restore(type, value, tb);
}

}  // namespace

int semaphore_acquire(Semaphore* s, double seconds) {
  if (s->value_ > 0) {
    --s->value_;
    return 1;
  }
  if (seconds == 0) return 0;
  Hub* hub = Hub::get();
  if (!hub) return -1;
  int adopted = s->w_.adopt(hub, "Semaphore");
  if (adopted < 0) return -1;
  Tasklet* me = hub->current();
  if (!me) return -1;
  if (adopted && s->value_ > 0) {  // released by another thread meanwhile
    --s->value_;
    return 1;
  }
  bool handed;
  int rc = s->w_.wait(s->self(), me, seconds, &handed);
  if (rc < 0 && handed) give_back(s);
  return rc;
}

int semaphore_release(Semaphore* s, Py_ssize_t n) {
  Waiters& w = s->w_;
  if (s->bound_ >= 0 && s->value_ + w.handed + n > s->bound_) {
    // Permits handed to waiters that have not run yet count as released.
    PyErr_SetString(PyExc_ValueError, "Semaphore released too many times");
    return -1;
  }
  if (w.owner_here()) {
    s->value_ += n - w.hand(n);
    return 0;
  }
  s->value_ += n;
  if (!w.empty()) w.post(s->self(), "_dispatch");
  return 0;
}

void semaphore_dispatch(Semaphore* s) noexcept {
  Waiters& w = s->w_;
  w.posted = false;
  if (!w.owner_here()) return;
  Py_ssize_t k = s->value_ < w.count ? s->value_ : w.count;
  if (k > 0) s->value_ -= w.hand(k);
}

}  // namespace ptsevent::hub

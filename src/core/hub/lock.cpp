// The Lock engine (see lock.h).
#include "hub/lock.h"

#include "hub/tasklet.h"

namespace ptsevent::hub {

PyObject* lock_acquire_slow(Lock* l, double timeout) {
  if (timeout == 0) Py_RETURN_FALSE;
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  int adopted = l->w_.adopt(hub, "Lock");
  if (adopted < 0) return nullptr;
  Tasklet* me = hub->current();
  if (!me) return nullptr;
  if (adopted && !l->locked_) {  // released by another thread meanwhile
    l->locked_ = true;
    Py_RETURN_TRUE;
  }
  bool handed;
  int rc = l->w_.wait(l->self(), me, timeout, &handed);
  if (rc < 0) {
    if (handed && !l->w_.hand(1)) l->locked_ = false;  // pass it on
    return nullptr;
  }
  return PyBool_FromLong(rc);
}

bool lock_try_acquire(PyObject* lock) noexcept {
  Lock* l = reinterpret_cast<Lock*>(lock);
  if (l->locked_) return false;
  l->locked_ = true;
  return true;
}

PyObject* lock_release(PyObject* lock) {
  Lock* l = reinterpret_cast<Lock*>(lock);
  if (!l->locked_) {
    PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
    return nullptr;
  }
  if (!l->w_.empty()) {
    if (l->w_.owner_here()) {
      l->w_.hand(1);  // stays locked
      Py_RETURN_NONE;
    }
    l->locked_ = false;
    l->w_.post(l->self(), "_dispatch");
    Py_RETURN_NONE;
  }
  l->locked_ = false;
  Py_RETURN_NONE;
}

void lock_dispatch(Lock* l) noexcept {
  l->w_.posted = false;
  if (!l->locked_ && l->w_.owner_here() && l->w_.hand(1)) l->locked_ = true;
}

}  // namespace ptsevent::hub

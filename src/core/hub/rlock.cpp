// The RLock engine (see rlock.h).
#include "hub/rlock.h"

namespace ptsevent::hub {

namespace {

void own(RLock* l, Tasklet* me) {
  Py_XSETREF(l->owner_, Py_NewRef(me->self()));
  l->count_ = 1;
}

}  // namespace

int rlock_acquire(RLock* l, Hub* hub, Tasklet* me, double seconds) {
  if (l->free()) {
    own(l, me);
    return 1;
  }
  if (l->owner_ == me->self()) {
    ++l->count_;
    return 1;
  }
  if (seconds == 0) return 0;
  int adopted = l->w_.adopt(hub, "RLock");
  if (adopted < 0) return -1;
  if (adopted && l->free()) {  // released by another thread meanwhile
    own(l, me);
    return 1;
  }
  bool handed;
  int rc = l->w_.wait(l->self(), me, seconds, &handed);
  if (rc < 0) {
    if (handed) l->w_.hand(1);  // pass it on; free when nobody waits
    return -1;
  }
  if (rc) own(l, me);
  return rc;
}

void rlock_free(RLock* l) {
  l->count_ = 0;
  PyObject* owner = l->owner_;
  l->owner_ = nullptr;
  Waiters& w = l->w_;
  if (w.owner_here())
    w.hand(1);
  else if (!w.empty())
    w.post(l->self(), "_dispatch");
  Py_XDECREF(owner);  // last: it may run arbitrary code
}

void rlock_dispatch(RLock* l) noexcept {
  l->w_.posted = false;
  if (l->free() && l->w_.owner_here()) l->w_.hand(1);
}

}  // namespace ptsevent::hub

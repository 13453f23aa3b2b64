// Waiters: the FIFO of tasklets blocked on one side of a C++ coordination
// primitive (a Lock's acquirers, a Queue's getters, putters or joiners),
// with the bookkeeping of direct hand-off.
//
// A hand-off gives the oldest waiter the resource (the lock, an item, a
// slot) and appends it to the current hub pass; `handed` counts waiters
// given something that have not returned from wait() yet, so the primitive
// can keep what they were given reserved for them. A waiter interrupted
// (kill, Timeout) after a hand-off returns -1 with *handed true: the
// primitive passes the resource on, so it is never lost.
//
// The waiters all belong to one hub, the one of the thread that queued the
// first of them; the primitive moves to another thread's hub when it is
// idle (nobody queued, no hand-off in flight). Other threads never hand off
// themselves: they change the primitive's state and post a dispatch to the
// owner hub (Hub::post_call), which serves its waiters.
#pragma once

#include <Python.h>

#include <deque>

#include "hub/hub.h"
#include "hub/tasklet.h"
#include "py/ref.h"

namespace ptsevent::hub {

struct Waiters {
  Hub* hub;  // only dereferenced when serial matches a live hub
  uint64_t serial;
  unsigned long thread;
  std::deque<Tasklet*>* list;  // made on the first wait
  Py_ssize_t handed;
  bool posted;  // a dispatch is queued in the owner hub

  bool idle() const noexcept { return (!list || list->empty()) && handed == 0; }
  size_t size() const noexcept { return list ? list->size() : 0; }
  bool empty() const noexcept { return !list || list->empty(); }

  // The owner hub if it is the running thread's.
  Hub* owner_here() const noexcept { return Hub::here(hub, serial); }

  // Makes `h` (the running thread's hub) the owner. -1 with RuntimeError if
  // tasklets of another hub are still involved. 1 when the owner changed
  // (the caller re-checks its state: another thread may have changed it).
  int adopt(Hub* h, const char* what) {
    if (h == hub && h->serial() == serial) return 0;
    if (!idle()) {
      PyErr_Format(PyExc_RuntimeError,
                   "%s: tasklets of another thread wait on this object; only "
                   "the tasklets of one thread can wait on it at a time",
                   what);
      return -1;
    }
    hub = h;
    serial = h->serial();
    thread = PyThread_get_thread_ident();
    return 1;
  }

  // Hands the resource to up to n oldest waiters; returns how many. Only in
  // the owner hub's thread.
  Py_ssize_t hand(Py_ssize_t n) noexcept {
    Py_ssize_t done = 0;
    while (done < n && list && !list->empty()) {
      Tasklet* t = list->front();
      list->pop_front();
      t->notified_ = true;
      ++handed;
      hub->schedule_in_pass(t);
      ++done;
    }
    return done;
  }

  // Suspends `me` (a tasklet of the owner hub) at the back of the queue for
  // up to `seconds` (< 0: no limit); `owner` is the primitive, kept alive
  // meanwhile. 1: handed something, 0: timed out, -1: interrupted (an
  // exception is set; *was_handed says whether a hand-off came first).
  int wait(PyObject* owner, Tasklet* me, double seconds, bool* was_handed) {
    if (!list) list = new std::deque<Tasklet*>();
    me->notified_ = false;
    list->push_back(me);
    Py_INCREF(owner);
    int rc = me->wait_with_timer(seconds);
    bool got = me->notified_;
    me->notified_ = false;
    if (got) {
      --handed;
    } else {
      for (auto it = list->begin(); it != list->end(); ++it)
        if (*it == me) {
          list->erase(it);
          break;
        }
    }
    *was_handed = got;
    Py_DECREF(owner);  // the caller holds another reference
    if (rc < 0) return -1;
    return got ? 1 : 0;  // a timeout in the same pass as a hand-off loses
  }

  // From another thread: run owner.<method>() in the owner hub, once until
  // it runs. A hub that is gone had the waiters with it: nothing to do.
  void post(PyObject* owner, const char* method) {
    if (posted) return;
    if (Hub::post_method(thread, owner, method) < 0) {
      PyErr_Clear();
      return;
    }
    posted = true;
  }

  // Something for up to n waiters: hands it to the oldest ones here, or,
  // from another thread, posts owner.<dispatch>() to the owner hub (which
  // re-checks what there is to hand).
  void notify(PyObject* owner, Py_ssize_t n, const char* dispatch) {
    if (empty()) return;
    if (owner_here())
      hand(n);
    else
      post(owner, dispatch);
  }

  // After fork: the waiting tasklets stayed in the parent.
  void reset() noexcept {
    delete list;
    list = nullptr;
    handed = 0;
    posted = false;
    hub = nullptr;
    serial = 0;
  }
  // When the primitive is freed: a waiting tasklet holds a reference to
  // it, so nobody waits here.
  void destroy() noexcept {
    PTSEVENT_ASSERT(empty(), "a primitive is freed while tasklets wait on it");
    delete list;
    list = nullptr;
  }
};

}  // namespace ptsevent::hub

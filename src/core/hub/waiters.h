// Waiters: the FIFO of tasklets blocked on one side of a coordination
// primitive (a Lock's or RLock's acquirers, a Semaphore's, an Event's
// waiters, a Queue's getters, putters or joiners, a WaitQueue's sleepers),
// with the bookkeeping of direct hand-off. The one waiter protocol of the
// core: every primitive that suspends tasklets until another one gives them
// something is built on it.
//
// A hand-off gives the oldest waiter the resource (the lock, an item, a
// permit, a wake-up) and appends it to the current hub pass; `handed`
// counts waiters given something that have not returned from wait() yet,
// so the primitive can keep what they were given reserved for them. A
// waiter interrupted (kill, Timeout) after a hand-off returns -1 with
// *handed true: the primitive passes the resource on, so it is never lost.
//
// The waiters all belong to one hub, the one of the thread that queued the
// first of them; the primitive moves to another thread's hub when it is
// idle (nobody queued, no hand-off in flight). Other threads never hand off
// themselves: they change the primitive's state and post a dispatch to the
// owner hub (Hub::post_call), which serves its waiters. With the GIL
// ordering the steps, either a tasklet about to wait sees the new state
// (it reads it after adopt()) or the other thread sees the waiter and the
// dispatch (which runs after the waiter is queued) serves it.
//
// Each wait is a HandoffWait (a WaitRecord, hub/wait_record.h) on the
// Waiters' WaitList: what the tasklet waits on and whether it was handed
// something. Records come from one pool of spare ones shared by every
// primitive (no allocation per wait once warm) and never live on the
// waiting tasklet's stack: greenlet moves a suspended stack away, and
// hand() writes the record while another tasklet runs.
//
// Waiters is a plain member of its primitive's Python object, whose memory
// comes zeroed from tp_alloc: all zeros is the empty, unowned state.
#pragma once

#include <Python.h>

#include "hub/hub.h"
#include "hub/tasklet.h"
#include "hub/wait_record.h"
#include "py/ref.h"

namespace ptsevent::hub {

struct Waiters;

// One tasklet's wait on a primitive: its queue, and whether hand() chose
// this waiter.
struct HandoffWait : WaitRecord {
  HandoffWait() noexcept : WaitRecord(WaitKind::kHandoff) {}
  Waiters* waiters = nullptr;  // null once a fork reset the queue
  bool handed = false;         // hand() chose this waiter
};

// The pool of spare records, shared by every primitive (waiters.cpp). GIL
// held. Null with MemoryError.
HandoffWait* take_handoff_wait();
void give_handoff_wait(HandoffWait* r) noexcept;

struct Waiters {
  Hub* hub;  // only dereferenced when serial matches a live hub
  uint64_t serial;
  unsigned long thread;
  WaitList list;      // the HandoffWaits, oldest first
  Py_ssize_t count;   // records queued
  Py_ssize_t handed;  // handed something, not yet returned from wait()
  bool posted;        // a dispatch is queued in the owner hub
  bool used;          // a tasklet waited here (since the last reset)

  bool idle() const noexcept { return count == 0 && handed == 0; }
  size_t size() const noexcept { return static_cast<size_t>(count); }
  bool empty() const noexcept { return count == 0; }

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
    while (done < n && !list.empty()) {
      auto* r = static_cast<HandoffWait*>(list.pop_front());
      --count;
      r->handed = true;
      ++handed;
      hub->schedule_in_pass(r->tasklet);
      ++done;
    }
    return done;
  }

  // Suspends `me` (a tasklet of the owner hub) at the back of the queue for
  // up to `seconds` (< 0: no limit); `owner` is the primitive, kept alive
  // meanwhile. 1: handed something, 0: timed out, -1: interrupted (an
  // exception is set; *was_handed says whether a hand-off came first).
  int wait(PyObject* owner, Tasklet* me, double seconds, bool* was_handed) {
    *was_handed = false;
    HandoffWait* r = take_handoff_wait();
    if (!r) return -1;
    r->waiters = this;
    r->handed = false;
    ++count;
    used = true;
    Py_INCREF(owner);
    bool woken;
    int rc = me->wait_listed(&list, r, seconds, &woken);
    bool got = r->handed;
    if (r->waiters) {  // else a fork reset the queue meanwhile
      if (got)
        --handed;
      else
        --count;  // wait_listed took it off the list
    }
    give_handoff_wait(r);
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

  // The waiting tasklets, oldest first (a new tuple), for introspection.
  PyObject* tasklets() const;

  // After fork: the waiting tasklets stayed in the parent. Their records
  // are theirs (given back if one ever returns), detached from this queue.
  void reset() noexcept {
    list.take_all(
        [](WaitRecord* r) { static_cast<HandoffWait*>(r)->waiters = nullptr; });
    count = 0;
    handed = 0;
    posted = false;
    used = false;
    hub = nullptr;
    serial = 0;
  }
  // When the primitive is freed: a waiting tasklet holds a reference to
  // it, so nobody waits here.
  void destroy() noexcept {
    PTSEVENT_ASSERT(empty(), "a primitive is freed while tasklets wait on it");
  }
};

// The `_waiters` attribute of a primitive, for tests and debugging: None
// before any tasklet waited on it, else a snapshot with `wq` (the tuple of
// waiting tasklets, oldest first) and `woken` (the waiters handed
// something that have not returned yet).
PyObject* waiters_snapshot(const Waiters& w);

// The timeout of a threading-style wait (Event.wait, Semaphore.acquire,
// Condition.wait): None -> -1 (no limit); a value that is not > 0 -> 0 (do
// not wait, as threading); else seconds. -1 with TypeError/OverflowError.
int threading_wait_timeout(PyObject* obj, double* seconds);

// The __module__ and __qualname__ of self's type, for a repr. -1 with an
// error.
int type_names(PyObject* self, py::Ref* module, py::Ref* qualname);

}  // namespace ptsevent::hub

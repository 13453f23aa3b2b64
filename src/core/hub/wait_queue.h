// WaitQueue (`_core.WaitQueue`): Waiters (waiters.h) with wait/notify for
// Python code: the waits of Condition, Stackless's schedule_remove(),
// signal.pause().
//
// wait(timeout) suspends the running tasklet at the back of the queue;
// notify(n) takes up to n tasklets from the front and makes them ready, in
// order. A notified tasklet returns True from wait() even if its timeout
// fired in the same pass; one interrupted (killed, Timeout) after it was
// notified hands the notification on to the next waiter, so no wake-up is
// ever lost. A waiter that times out or is interrupted leaves the queue.
//
// A queue belongs to the hub of the thread whose tasklets wait on it, and
// moves to another thread's hub when nobody waits. notify() from another
// OS thread is forwarded to that hub (Hub::post_call) and returns 0.
//
// The engine (this header, wait_queue.cpp) works on the object; its Python
// face is wait_queue_type.cpp.
#pragma once

#include <Python.h>

#include "hub/hub.h"
#include "hub/waiters.h"

namespace ptsevent::hub {

struct WaitQueue {
  PyObject_HEAD PyObject* weakrefs_;
  Waiters w_;

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
};

extern PyTypeObject* WaitQueueType;
PyTypeObject* make_wait_queue_type();

// Suspends the running tasklet until notified (True) or `timeout` seconds
// pass (False; < 0: no limit). Null with an error.
PyObject* wait_queue_wait(WaitQueue* q, double timeout);
// Wakes up to n waiters, oldest first: their count (0 when forwarded to
// the owner hub from another thread). Null with an error.
PyObject* wait_queue_notify(WaitQueue* q, Py_ssize_t n);

}  // namespace ptsevent::hub

// WaitQueue (`_core.WaitQueue`): the FIFO of suspended tasklets under every
// coordination primitive (Event, Lock, Semaphore, Condition, Queue ...).
//
// wait(timeout) suspends the running tasklet at the back of the queue;
// notify(n) takes up to n tasklets from the front and makes them ready, in
// order. A notified tasklet returns True from wait() even if its timeout
// fired in the same pass; one interrupted (killed, Timeout) after it was
// notified hands the notification on to the next waiter, so no wake-up is
// ever lost. A waiter that times out or is interrupted leaves the queue.
//
// A queue belongs to the hub of the thread that made it. notify() from
// another OS thread is forwarded to that hub (Hub::post_call) and returns 0.
#pragma once

#include <Python.h>

#include "hub/hub.h"
#include "hub/waiters.h"

namespace ptsevent::hub {

struct WaitQueue {
  PyObject_HEAD PyObject* weakrefs_;
  Waiters w_;  // owned by the hub of the thread that made the queue

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
};

extern PyTypeObject* WaitQueueType;
PyTypeObject* make_wait_queue_type();

// Module functions: call_threadsafe.
extern PyMethodDef wait_queue_functions[];

}  // namespace ptsevent::hub

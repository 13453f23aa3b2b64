// The WaitQueue engine (see wait_queue.h).
#include "hub/wait_queue.h"

#include "hub/tasklet.h"

namespace ptsevent::hub {

PyObject* wait_queue_wait(WaitQueue* q, double timeout) {
  Hub* hub = Hub::get();
  if (!hub || q->w_.adopt(hub, "WaitQueue") < 0) return nullptr;
  Tasklet* t = hub->current();
  if (!t) return nullptr;
  if (timeout == 0) Py_RETURN_FALSE;
  bool notified;
  int rc = q->w_.wait(q->self(), t, timeout, &notified);
  if (rc < 0) {
    // Interrupted: a notification this tasklet received goes to the next.
    if (notified) {
      PyObject *type, *value, *tb;
      PyErr_Fetch(&type, &value, &tb);
      q->w_.hand(1);
      PyErr_Restore(type, value, tb);
    }
    return nullptr;
  }
  return PyBool_FromLong(rc);
}

PyObject* wait_queue_notify(WaitQueue* q, Py_ssize_t n) {
  if (q->w_.empty()) return PyLong_FromLong(0);
  if (!q->w_.owner_here()) {
    // Another OS thread: the owner's hub does it.
    py::Ref args = py::Ref::steal(Py_BuildValue("(n)", n));
    if (!args ||
        Hub::post_method(q->w_.thread, q->self(), "notify", args.get()) < 0)
      return nullptr;
    return PyLong_FromLong(0);
  }
  return PyLong_FromSsize_t(q->w_.hand(n));
}

}  // namespace ptsevent::hub

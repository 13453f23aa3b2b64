#include "io/poll.h"

#include <errno.h>
#include <poll.h>

#include <chrono>
#include <vector>

#include "hub/hub.h"
#include "hub/tasklet.h"

namespace ptsevent::io {

using hub::Hub;
using hub::Tasklet;

namespace {

void on_ready(evutil_socket_t, short, void* arg) {
  // Inside event_base_loop, maybe without the GIL: C++ state only. The
  // argument is the waiting Tasklet itself, a heap object the hub holds
  // while it waits; never a structure on the waiter's stack, which greenlet
  // moves away while the tasklet is suspended.
  Tasklet* t = static_cast<Tasklet*>(arg);
  t->hub()->schedule(t);
}

// Non-blocking poll(2), retried on EINTR. -1 with an error set.
int poll_now(std::vector<pollfd>& fds) {
  for (;;) {
    int n = poll(fds.data(), fds.size(), 0);
    if (n >= 0) return n;
    if (errno != EINTR) {
      PyErr_SetFromErrno(PyExc_OSError);
      return -1;
    }
    if (hub::Hub::check_signals() < 0) return -1;
  }
}

PyObject* result_list(const std::vector<pollfd>& fds) {
  PyObject* out = PyList_New(0);
  if (!out) return nullptr;
  for (const pollfd& p : fds) {
    if (!p.revents) continue;
    PyObject* item = Py_BuildValue("(ih)", p.fd, p.revents);
    if (!item || PyList_Append(out, item) < 0) {
      Py_XDECREF(item);
      Py_DECREF(out);
      return nullptr;
    }
    Py_DECREF(item);
  }
  return out;
}

// Waits until one of the descriptors has an event, or `seconds` pass
// (< 0: forever). 0 on wake-up or timeout, -1 on error.
int wait_any(Hub* hub, Tasklet* t, std::vector<pollfd>& fds, double seconds) {
  std::vector<event*> events;
  events.reserve(fds.size());
  int rc = 0;
  for (const pollfd& p : fds) {
    short what = 0;
    if (p.events & (POLLIN | POLLPRI | POLLRDHUP)) what |= EV_READ;
    if (p.events & POLLOUT) what |= EV_WRITE;
    if (!what) what = EV_READ;  // errors and hang-ups show as readable
    event* ev = hub::new_event(hub->base(), p.fd, what, on_ready, t);
    if (!ev) {
      PyErr_NoMemory();
      rc = -1;
      break;
    }
    if (event_add(ev, nullptr) < 0) {
      event_free(ev);
      // poll(2) said it is open: epoll refuses regular files (EPERM), which
      // are always ready anyway.
      PyErr_Format(PyExc_OSError, "descriptor %d cannot be waited on", p.fd);
      rc = -1;
      break;
    }
    hub->on_event_armed();
    events.push_back(ev);
  }
  if (rc == 0) rc = t->wait_with_timer(seconds) < 0 ? -1 : 0;
  for (event* ev : events) {
    event_free(ev);  // deletes it if still pending
    hub->on_event_disarmed();
  }
  return rc;
}

// poll_fds([(fd, events), ...], timeout=None) -> [(fd, revents), ...]
PyObject* fn_poll_fds(PyObject*, PyObject* args) {
  PyObject* seq;
  PyObject* timeout_obj = Py_None;
  if (!PyArg_ParseTuple(args, "O|O:poll_fds", &seq, &timeout_obj))
    return nullptr;
  double timeout;
  if (hub::parse_timeout(timeout_obj, hub::TimeoutMode::kWait, &timeout) < 0)
    return nullptr;
  PyObject* fast = PySequence_Fast(seq, "poll_fds() needs a sequence");
  if (!fast) return nullptr;
  std::vector<pollfd> fds;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
  fds.reserve(n);
  for (Py_ssize_t i = 0; i < n; ++i) {
    int fd;
    short events;
    if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "ih", &fd,
                          &events)) {
      Py_DECREF(fast);
      return nullptr;
    }
    if (fd < 0) {
      Py_DECREF(fast);
      PyErr_Format(PyExc_ValueError,
                   "file descriptor cannot be a negative integer (%d)", fd);
      return nullptr;
    }
    fds.push_back(pollfd{fd, events, 0});
  }
  Py_DECREF(fast);

  using Clock = std::chrono::steady_clock;
  Clock::time_point deadline{};
  if (timeout > 0)
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(timeout));
  for (;;) {
    int ready = poll_now(fds);
    if (ready < 0) return nullptr;
    if (ready > 0 || timeout == 0) return result_list(fds);
    double left = -1.0;
    if (timeout > 0) {
      left = std::chrono::duration<double>(deadline - Clock::now()).count();
      if (left <= 0) return result_list(fds);
    }
    Hub* hub = Hub::get();
    if (!hub) return nullptr;
    Tasklet* t = hub->current();
    if (!t) return nullptr;
    if (fds.empty()) {
      if (timeout < 0) {
        // select([], [], []) with no timeout: wait for nothing, forever.
        if (t->wait_with_timer(-1) < 0) return nullptr;
      } else if (t->wait_with_timer(left) < 0) {
        return nullptr;
      }
      return PyList_New(0);
    }
    if (wait_any(hub, t, fds, left) < 0) return nullptr;
  }
}

}  // namespace

PyMethodDef poll_functions[] = {
    {"poll_fds", fn_poll_fds, METH_VARARGS,
     "poll_fds(fds, timeout=None, /)\n--\n\n"
     "poll_fds([(fd, events), ...], timeout=None) -> [(fd, revents), ...]: "
     "poll(2) semantics, blocking only the current tasklet."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace ptsevent::io

#include "io/poll.h"

#include <errno.h>
#include <poll.h>

#include <vector>

#include "hub/clock.h"
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

}  // namespace

int poll_fds(std::vector<pollfd>& fds, double timeout) {
  hub::Deadline deadline(timeout);
  for (;;) {
    int ready = poll_now(fds);
    if (ready < 0) return -1;
    if (ready > 0 || deadline.never_wait()) return 0;
    double left = deadline.wait_seconds();
    if (deadline.expired()) return 0;
    Hub* hub = Hub::get();
    if (!hub) return -1;
    Tasklet* t = hub->current();
    if (!t) return -1;
    if (fds.empty()) {
      if (timeout < 0) {
        // select([], [], []) with no timeout: wait for nothing, forever.
        if (t->wait_with_timer(-1) < 0) return -1;
      } else if (t->wait_with_timer(left) < 0) {
        return -1;
      }
      return 0;
    }
    if (wait_any(hub, t, fds, left) < 0) return -1;
  }
}

}  // namespace ptsevent::io

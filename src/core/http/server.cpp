#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <climits>

#include "http/environ.h"
#include "http/request.h"
#include "http/response.h"
#include "hub/clock.h"
#include "hub/tasklet.h"
#include "hub/timeout.h"
#include "py/errors.h"
#include "py/greenlet_api.h"

namespace ptsevent::http {

PyObject* RequestEntityTooLarge = nullptr;

using hub::Hub;
using hub::Tasklet;

int as_int(PyObject* o) {
  long v = PyLong_AsLong(o);
  if (v == -1 && PyErr_Occurred()) return -1;
  if (v < INT_MIN || v > INT_MAX) {
    PyErr_SetString(PyExc_OverflowError, "descriptor out of range");
    return -1;
  }
  return static_cast<int>(v);
}

// A connection's request tasklet is done with the app: the last one to end
// wakes the tasklets waiting in wait_drained() (stop()).
void app_done(Server* s) {
  // At 1, a waiter that is itself a request tasklet is the last one left.
  if (--s->active_ > 1 || s->drain_waiters_.empty() || !s->hub_) return;
  Hub* hub = s->hub_;
  s->drain_waiters_.take_all(
      [hub](hub::WaitRecord* r) { hub->schedule(r->tasklet); });
}

namespace {

constexpr int kAcceptBatch = 64;

// ------------------------------------------------------------------ accept

void accept_ready(void* arg);

void on_accept_event(evutil_socket_t, short, void* arg) {
  Server* s = static_cast<Server*>(arg);
  if (s->accept_deferred_) return;
  s->accept_deferred_ = true;
  s->hub_->defer(accept_ready, s);
}

void on_backoff(evutil_socket_t, short, void* arg) {
  Server* s = static_cast<Server*>(arg);
  s->backoff_armed_ = false;
  s->hub_->on_event_disarmed();
  if (s->accepting_) event_add(&s->accept_ev_, nullptr);
}

void new_connection(Server* s, int fd, const struct sockaddr_storage& addr) {
  Connection* c = new Connection(s, s->hub_, fd, &s->options_.limits);
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    c->peer4 = a->sin_addr.s_addr;
    c->peer_port = ntohs(a->sin_port);
  } else {
    c->peer = new sockaddr_storage(addr);
    if (addr.ss_family == AF_INET6)
      c->peer_port =
          ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  if (addr.ss_family == AF_INET || addr.ss_family == AF_INET6) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  Py_INCREF(s->self());
  c->next = s->head_;
  if (s->head_) s->head_->prev = c;
  s->head_ = c;
  ++s->connections_;
  open_conn(c);
}

void accept_ready(void* arg) {
  Server* s = static_cast<Server*>(arg);
  s->accept_deferred_ = false;
  for (int i = 0; i < kAcceptBatch && s->accepting_; ++i) {
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int fd = ::accept4(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      ++s->accept_errors_;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        // Out of descriptors: stop accepting for a moment instead of
        // spinning on a listener that stays readable; connections already
        // accepted go on being served.
        event_del(&s->accept_ev_);
        if (!s->backoff_armed_) {
          s->backoff_armed_ = true;
          s->hub_->on_event_armed();
          event_add(&s->backoff_ev_,
                    s->hub_->timeout_tv(s->options_.accept_backoff));
        }
      }
      return;
    }
    new_connection(s, fd, addr);
  }
}

}  // namespace

// ------------------------------------------------------------------ server

void stop_accepting(Server* s) {
  if (!s->accepting_) return;
  s->accepting_ = false;
  if (s->hub_ && Hub::alive(s->hub_)) {
    event_del(&s->accept_ev_);
    s->hub_->count(hub::Source::kActiveEvent, -1);
    if (s->backoff_armed_) {
      event_del(&s->backoff_ev_);
      s->backoff_armed_ = false;
      s->hub_->on_event_disarmed();
    }
    if (s->accept_deferred_) {
      s->hub_->cancel_deferred(s);
      s->accept_deferred_ = false;
    }
  }
  Py_DECREF(s->self());  // the reference held while accepting
}

namespace {

void close_idle(Server* s) {
  Py_INCREF(s->self());
  for (Connection* c = s->head_; c;) {
    Connection* next = c->next;
    if (c->state != Connection::State::kApp) destroy_conn(c);
    c = next;
  }
  Py_DECREF(s->self());
}

void abort_active(Server* s) {
  Py_INCREF(s->self());
  for (Connection *c = s->head_, *next; c; c = next) {
    next = c->next;
    if (c->state != Connection::State::kApp || c->aborted) continue;
    if (c->tasklet && c->tasklet->dead()) {
      // Its tasklet was killed before it ran: nothing will end it.
      app_done(s);
      destroy_conn(c);
      continue;
    }
    c->aborted = true;
    if (!s->inherited_) ::shutdown(c->fd, SHUT_RDWR);
    if (c->waiting_read || c->waiting_write) {
      c->hub->schedule(c->waiter);
    } else if (c->tasklet && c->tasklet->state() == hub::State::kRunning &&
               c->tasklet != c->hub->current_or_null()) {
      // The app waits on something else (a sleep, another socket): end it.
      if (c->tasklet->kill(py::greenlet::exit_exception(), false, 0) < 0)
        PyErr_WriteUnraisable(c->server->self());
    }
  }
  Py_DECREF(s->self());
}

}  // namespace

int check_thread(Server* s) {
  if (!s->started_) return 0;
  if (!Hub::here(s->hub_, s->hub_serial_)) {
    PyErr_SetString(PyExc_RuntimeError,
                    "the server belongs to another thread's hub");
    return -1;
  }
  return 0;
}

int start(Server* s) {
  if (!s->app_) {
    PyErr_SetString(PyExc_RuntimeError, "the server is not initialised");
    return -1;
  }
  if (s->closed_) {
    PyErr_SetString(PyExc_RuntimeError, "the server is closed");
    return -1;
  }
  if (s->started_) {
    PyErr_SetString(PyExc_RuntimeError, "the server is already started");
    return -1;
  }
  Hub* hub = Hub::get();
  if (!hub) return -1;
  s->context_ = py::Ref::steal(PyContext_CopyCurrent());
  if (!s->context_) return -1;
  s->environ_template_ = py::Ref::steal(make_environ_template(s));
  if (!s->environ_template_) return -1;
  s->hub_ = hub;
  s->hub_serial_ = hub->serial();
  hub::assign_event(&s->accept_ev_, hub->base(), s->listen_fd_,
                    EV_READ | EV_PERSIST, on_accept_event, s);
  hub::assign_timer(&s->backoff_ev_, hub->base(), on_backoff, s);
  if (event_add(&s->accept_ev_, nullptr) < 0) {
    PyErr_SetString(PyExc_OSError,
                    "libevent: cannot watch the listening socket");
    return -1;
  }
  hub->count(hub::Source::kActiveEvent, 1);
  hub->add_owner(&s->owner_);
  s->started_ = true;
  s->accepting_ = true;
  Py_INCREF(s->self());  // held while accepting
  return 0;
}

void stop_idle(Server* s) {
  s->stopping_ = true;
  close_idle(s);
}

void abort_all(Server* s) {
  s->stopping_ = true;
  abort_active(s);
  close_idle(s);
}

void close_server(Server* s) {
  s->closed_ = true;
  s->stopping_ = true;
  stop_accepting(s);
  abort_active(s);
  close_idle(s);
}

// Suspends the calling tasklet until no request runs (1) or `seconds`
// pass on the monotonic clock (0); -1 with an error set. The last request to
// end wakes it (app_done): no polling. Called from one of the server's own
// requests (an app that stops its server), it waits for the others.
int wait_drained(Server* s, double seconds) {
  if (check_thread(s) < 0) return -1;
  if (s->active_ == 0 || !s->started_) return 1;
  if (seconds == 0) return 0;
  Hub* hub = s->hub_;
  if (!hub || !Hub::alive(hub)) return 1;  // its connections are gone
  Tasklet* me = hub->current();
  if (!me) return -1;
  long own = 0;
  for (Connection* c = s->head_; c; c = c->next)
    if (c->state == Connection::State::kApp && c->tasklet == me) own = 1;
  if (s->active_ <= own) return 1;
  hub::Deadline deadline(seconds);
  py::Ref hold = py::Ref::borrow(s->self());
  int rc = 0;
  while (s->active_ > own) {
    double left = deadline.wait_seconds();
    if (!deadline.forever() && left <= 0) break;
    DrainWait* r = s->drain_spare_.take();
    if (!r) {
      PyErr_NoMemory();
      return -1;
    }
    bool woken;
    rc = me->wait_listed(&s->drain_waiters_, r, left, &woken);
    s->drain_spare_.give(r);
    if (rc < 0) return -1;
  }
  return s->active_ <= own;
}

void ServerOwner::hub_closing() noexcept {
  // The hub is going away: drop every registration without Python calls.
  Server* s = server;
  if (s->accepting_) {
    event_del(&s->accept_ev_);
    s->accepting_ = false;
    if (s->backoff_armed_) event_del(&s->backoff_ev_);
    s->backoff_armed_ = false;
    s->accept_deferred_ = false;
  }
  for (Connection* c = s->head_; c; c = c->next) {
    if (c->registered) event_del(&c->ev);
    if (c->timer_armed) event_del(&c->timer);
    c->registered = c->timer_armed = false;
    c->deferred = false;
    c->aborted = true;
    if (c->fd >= 0) ::close(c->fd);
    c->fd = -1;
  }
  s->hub_ = nullptr;
}

void ServerOwner::after_fork_in_child() {
  // The parent goes on serving: here the server stops accepting and drops
  // its connections, closing this process's descriptors only (close(2),
  // never shutdown(2), which would end the connection for the parent too).
  // The request tasklets that were running here end as on close(); the one
  // that forked, if any, finds its connection aborted.
  Server* s = server;
  if (!s->hub_) return;
  py::Ref hold = py::Ref::borrow(s->self());
  s->inherited_ = true;
  s->stopping_ = true;
  stop_accepting(s);
  for (Connection* c = s->head_; c; c = c->next) {
    if (c->registered) {
      event_del(&c->ev);
      c->registered = false;
      c->hub->count(hub::Source::kActiveEvent, -1);
    }
    disarm_timer(c);
    if (c->fd >= 0) ::close(c->fd);
    c->fd = -1;
  }
  abort_active(s);
  close_idle(s);
  if (PyErr_Occurred()) PyErr_WriteUnraisable(s->self());
}

}  // namespace ptsevent::http

#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <array>
#include <climits>

#include "http/body.h"
#include "http/environ.h"
#include "http/request.h"
#include "http/response.h"
#include "hub/tasklet.h"
#include "py/errors.h"
#include "py/greenlet_api.h"
#include "py/heap_type.h"

namespace ptsevent::http {

PyTypeObject* ServerType = nullptr;
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
  for (Tasklet* t : s->drain_waiters_) s->hub_->schedule(t);
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
      c->peer_port = ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
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
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: stop accepting for a moment instead of
        // spinning on a listener that stays readable; connections already
        // accepted go on being served.
        event_del(&s->accept_ev_);
        if (!s->backoff_armed_) {
          s->backoff_armed_ = true;
          s->hub_->on_event_armed();
          event_add(&s->backoff_ev_, s->hub_->timeout_tv(s->options_.accept_backoff));
        }
      }
      return;
    }
    new_connection(s, fd, addr);
  }
}

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
  for (Connection* c = s->head_, *next; c; c = next) {
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

int check_thread(Server* s) {
  if (!s->started_) return 0;
  if (!Hub::here(s->hub_, s->hub_serial_)) {
    PyErr_SetString(PyExc_RuntimeError, "the server belongs to another thread's hub");
    return -1;
  }
  return 0;
}

PyObject* server_new(PyTypeObject* type, PyObject*, PyObject*) {
  Server* s = reinterpret_cast<Server*>(type->tp_alloc(type, 0));
  if (!s) return nullptr;
  new (&s->options_) Options();
  new (&s->owner_) ServerOwner();
  new (&s->date_) std::string();
  new (&s->drain_waiters_) std::vector<Tasklet*>();
  s->owner_.server = s;
  s->listen_fd_ = -1;
  return s->self();
}

int server_init(PyObject* self, PyObject* args, PyObject* kw) {
  Server* s = reinterpret_cast<Server*>(self);
  if (s->started_) {
    PyErr_SetString(PyExc_RuntimeError, "the server is already started");
    return -1;
  }
  PyObject *listener, *app;
  if (!PyArg_ParseTuple(args, "OO:HttpServer", &listener, &app)) return -1;
  if (!PyCallable_Check(app)) {
    PyErr_SetString(PyExc_TypeError, "the application must be callable");
    return -1;
  }
  Options o;
  ServerObjects x;
  if (parse_options(kw, &o, &x) < 0) return -1;
  py::Ref fdobj = py::Ref::steal(PyObject_CallMethod(listener, "fileno", nullptr));
  if (!fdobj) return -1;
  int fd = as_int(fdobj.get());
  if (fd == -1 && PyErr_Occurred()) return -1;
  if (fd < 0) {
    PyErr_SetString(PyExc_ValueError, "the listening socket is closed");
    return -1;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
  }
  if (!x.server_name || !PyUnicode_Check(x.server_name) || !x.server_port ||
      !PyUnicode_Check(x.server_port)) {
    PyErr_SetString(PyExc_TypeError, "server_name and server_port must be given as str");
    return -1;
  }
  py::Ref scheme = x.url_scheme ? py::Ref::borrow(x.url_scheme)
                                : py::Ref::steal(PyUnicode_InternFromString("http"));
  if (!scheme || !PyUnicode_Check(scheme.get())) {
    PyErr_SetString(PyExc_TypeError, "url_scheme must be a str");
    return -1;
  }
  PyObject* errors = x.errors ? x.errors : PySys_GetObject("stderr");
  s->options_ = o;
  s->listen_fd_ = fd;
  s->listener_ = py::Ref::borrow(listener);
  s->app_ = py::Ref::borrow(app);
  s->server_name_ = py::Ref::borrow(x.server_name);
  s->server_port_ = py::Ref::borrow(x.server_port);
  s->url_scheme_ = std::move(scheme);
  s->errors_ = py::Ref::borrow(errors ? errors : Py_None);
  s->log_error_ = py::Ref::borrow(x.log_error ? x.log_error : Py_None);
  s->access_log_ = py::Ref::borrow(x.access_log ? x.access_log : Py_None);
  return 0;
}

PyObject* server_start(PyObject* self, PyObject*) {
  Server* s = reinterpret_cast<Server*>(self);
  if (!s->app_) {
    PyErr_SetString(PyExc_RuntimeError, "the server is not initialised");
    return nullptr;
  }
  if (s->closed_) {
    PyErr_SetString(PyExc_RuntimeError, "the server is closed");
    return nullptr;
  }
  if (s->started_) {
    PyErr_SetString(PyExc_RuntimeError, "the server is already started");
    return nullptr;
  }
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  s->context_ = py::Ref::steal(PyContext_CopyCurrent());
  if (!s->context_) return nullptr;
  s->environ_template_ = py::Ref::steal(make_environ_template(s));
  if (!s->environ_template_) return nullptr;
  s->hub_ = hub;
  s->hub_serial_ = hub->serial();
  hub::assign_event(&s->accept_ev_, hub->base(), s->listen_fd_, EV_READ | EV_PERSIST,
               on_accept_event, s);
  hub::assign_timer(&s->backoff_ev_, hub->base(), on_backoff, s);
  if (event_add(&s->accept_ev_, nullptr) < 0) {
    PyErr_SetString(PyExc_OSError, "libevent: cannot watch the listening socket");
    return nullptr;
  }
  hub->count(hub::Source::kActiveEvent, 1);
  hub->add_owner(&s->owner_);
  s->started_ = true;
  s->accepting_ = true;
  Py_INCREF(self);  // held while accepting
  Py_RETURN_NONE;
}

PyObject* server_stop_accepting(PyObject* self, PyObject*) {
  Server* s = reinterpret_cast<Server*>(self);
  if (check_thread(s) < 0) return nullptr;
  stop_accepting(s);
  Py_RETURN_NONE;
}

PyObject* server_close_idle(PyObject* self, PyObject*) {
  Server* s = reinterpret_cast<Server*>(self);
  if (check_thread(s) < 0) return nullptr;
  s->stopping_ = true;
  close_idle(s);
  Py_RETURN_NONE;
}

PyObject* server_abort(PyObject* self, PyObject*) {
  Server* s = reinterpret_cast<Server*>(self);
  if (check_thread(s) < 0) return nullptr;
  s->stopping_ = true;
  abort_active(s);
  close_idle(s);
  Py_RETURN_NONE;
}

PyObject* server_close(PyObject* self, PyObject*) {
  Server* s = reinterpret_cast<Server*>(self);
  if (check_thread(s) < 0) return nullptr;
  s->closed_ = true;
  s->stopping_ = true;
  stop_accepting(s);
  abort_active(s);
  close_idle(s);
  Py_RETURN_NONE;
}

// Suspends the calling tasklet until no request runs (True) or `timeout`
// seconds pass on the monotonic clock (False). The last request to end
// wakes it (app_done): no polling. Called from one of the server's own
// requests (an app that stops its server), it waits for the others.
PyObject* server_wait_drained(PyObject* self, PyObject* args) {
  Server* s = reinterpret_cast<Server*>(self);
  PyObject* timeout_obj = Py_None;
  if (!PyArg_ParseTuple(args, "|O:wait_drained", &timeout_obj)) return nullptr;
  double seconds;
  if (hub::parse_timeout(timeout_obj, hub::TimeoutMode::kWait, &seconds) < 0)
    return nullptr;
  if (check_thread(s) < 0) return nullptr;
  if (s->active_ == 0 || !s->started_) Py_RETURN_TRUE;
  if (seconds == 0) Py_RETURN_FALSE;
  Hub* hub = s->hub_;
  if (!hub || !Hub::alive(hub)) Py_RETURN_TRUE;  // its connections are gone
  Tasklet* me = hub->current();
  if (!me) return nullptr;
  long own = 0;
  for (Connection* c = s->head_; c; c = c->next)
    if (c->state == Connection::State::kApp && c->tasklet == me) own = 1;
  if (s->active_ <= own) Py_RETURN_TRUE;
  hub::Deadline deadline(seconds);
  py::Ref hold = py::Ref::borrow(self);
  int rc = 0;
  while (s->active_ > own) {
    double left = deadline.wait_seconds();
    if (!deadline.forever() && left <= 0) break;
    s->drain_waiters_.push_back(me);
    rc = me->wait_with_timer(left);
    auto& w = s->drain_waiters_;
    for (auto it = w.begin(); it != w.end(); ++it)
      if (*it == me) {
        w.erase(it);
        break;
      }
    if (rc < 0) return nullptr;
  }
  return PyBool_FromLong(s->active_ <= own);
}

PyObject* server_stats(PyObject* self, PyObject*) {
  Server* s = reinterpret_cast<Server*>(self);
  long idle = 0;
  for (Connection* c = s->head_; c; c = c->next)
    if (c->state == Connection::State::kIdle) ++idle;
  return Py_BuildValue("{s:l,s:l,s:l,s:K,s:K,s:O}", "connections", s->connections_,
                       "active", s->active_, "idle", idle, "requests", s->requests_,
                       "accept_errors", s->accept_errors_, "accepting",
                       s->accepting_ ? Py_True : Py_False);
}

// The Python references of the server, for the garbage collector: an app
// may hold its server (a closure, an attribute). While accepting, and while
// a connection is open, the server holds a reference to itself that no
// traverse reports, so the collector never clears a running server.
std::array<py::Ref*, 11> server_refs(Server* s) {
  return {&s->listener_,   &s->app_,       &s->context_,
          &s->server_name_, &s->server_port_, &s->url_scheme_,
          &s->errors_,     &s->log_error_, &s->access_log_,
          &s->environ_template_, &s->last_addr_};
}

int server_traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  for (py::Ref* r : server_refs(reinterpret_cast<Server*>(self)))
    if (int rc = r->visit(visit, arg)) return rc;
  return 0;
}

int server_clear(PyObject* self) {
  for (py::Ref* r : server_refs(reinterpret_cast<Server*>(self))) r->reset();
  return 0;
}

// After server_clear (py::make_heap_type's dealloc).
void server_destroy(PyObject* self) {
  Server* s = reinterpret_cast<Server*>(self);
  if (s->started_ && s->hub_ && Hub::alive(s->hub_)) s->hub_->remove_owner(&s->owner_);
  s->options_.~Options();
  s->owner_.~ServerOwner();
  s->date_.~basic_string();
  s->drain_waiters_.~vector();
}

PyMethodDef server_methods[] = {
    {"start", server_start, METH_NOARGS, "start($self, /)\n--\n\n"
     "start accepting connections on this thread's hub"},
    {"stop_accepting", server_stop_accepting, METH_NOARGS, "stop_accepting($self, /)\n--\n\n"
     "stop accepting new connections"},
    {"close_idle", server_close_idle, METH_NOARGS,
     "close_idle($self, /)\n--\n\n"
     "close idle keep-alive connections now; busy ones close after their response"},
    {"abort", server_abort, METH_NOARGS, "abort($self, /)\n--\n\n"
     "close every connection now, busy ones too"},
    {"close", server_close, METH_NOARGS, "close($self, /)\n--\n\n"
     "stop accepting and close every connection"},
    {"wait_drained", server_wait_drained, METH_VARARGS,
     "wait_drained($self, timeout=None, /)\n--\n\n"
     "wait until no request runs (True) or the timeout passes (False)"},
    {"stats", server_stats, METH_NOARGS, "stats($self, /)\n--\n\n"
     "counters: connections, active, idle, requests"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

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

PyTypeObject* make_server_type() {
  if (init_keys() < 0) return nullptr;
  bool types_made = make_input_type() && make_start_response_type() &&
                    make_file_wrapper_type();
  static PyType_Slot server_slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(server_new)},
      {Py_tp_init, reinterpret_cast<void*>(server_init)},
      {Py_tp_traverse, reinterpret_cast<void*>(server_traverse)},
      {Py_tp_methods, server_methods},
      {Py_tp_doc, const_cast<char*>(
                      "HttpServer(listener, app, /, **options)\n--\n\n"
                      "HttpServer(listener, app, *, server_name, server_port, ...): the "
                      "C++ HTTP/1.1 WSGI server (use ptsevent.wsgi.WSGIServer)")},
      {0, nullptr}};
  static PyType_Spec server_spec = {"ptsevent._core.HttpServer", sizeof(Server), 0,
                                    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
                                    server_slots};
  if (!types_made) return nullptr;
  ServerType = py::make_heap_type<PyObject, server_clear, server_destroy>(
      &server_spec);
  return ServerType;
}

PyTypeObject* file_wrapper_type() { return FileWrapperType; }

}  // namespace ptsevent::http

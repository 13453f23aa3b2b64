#include "http/connection.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "http/request.h"
#include "http/server.h"
#include "http/transport.h"
#include "hub/event_owner.h"
#include "hub/tasklet.h"

namespace ptsevent::http {

using hub::Hub;
using hub::Tasklet;

namespace {

constexpr double kLingerSeconds = 2.0;
constexpr size_t kLingerMaxBytes = 1 << 20;

void on_conn_event(evutil_socket_t, short what, void* arg);
void on_conn_timer(evutil_socket_t, short, void* arg);
void process_conn(void* arg);

void unlink_conn(Connection* c) {
  Server* s = c->server;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->head_ = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  --s->connections_;
}

}  // namespace

void arm_timer(Connection* c, double seconds) {
  if (c->timer_armed) {
    event_del(&c->timer);
  } else {
    c->hub->on_event_armed();
    c->timer_armed = true;
  }
  c->timed_out = false;
  event_add(&c->timer, c->hub->timeout_tv(seconds));
}

void disarm_timer(Connection* c) {
  if (!c->timer_armed) return;
  event_del(&c->timer);
  c->timer_armed = false;
  c->hub->on_event_disarmed();
}

void destroy_conn(Connection* c) {
  if (c->hub && Hub::alive(c->hub)) {
    c->hub->cancel_deferred(c);
    disarm_timer(c);
    if (c->registered) {
      event_del(&c->ev);
      c->registered = false;
      c->hub->count(hub::Source::kActiveEvent, -1);
    }
  }
  if (c->fd >= 0) ::close(c->fd);
  c->fd = -1;
  if (Tasklet* t = c->tasklet) {
    c->tasklet = nullptr;
    Py_DECREF(t->self());
  }
  unlink_conn(c);
  delete c->peer;
  Server* s = c->server;
  delete c;
  Py_DECREF(s->self());  // each connection holds its server
}

namespace {

void queue_process(Connection* c) {
  if (c->deferred) return;
  c->deferred = true;
  c->hub->defer(process_conn, c);
}

void on_conn_event(evutil_socket_t, short what, void* arg) {
  // No GIL here: flags, wake-ups and the deferred queue only.
  Connection* c = static_cast<Connection*>(arg);
  if (what & EV_READ) c->readable = true;
  if (what & EV_WRITE) c->writable = true;
  if (what & EV_CLOSED) {
    c->peer_closed = true;
    c->readable = true;
  }
  if (c->state == Connection::State::kApp) {
    if ((c->waiting_read && c->readable) || (c->waiting_write && c->writable))
      c->hub->schedule(c->waiter);
    return;
  }
  if (c->readable) queue_process(c);
}

void on_conn_timer(evutil_socket_t, short, void* arg) {
  Connection* c = static_cast<Connection*>(arg);
  c->timer_armed = false;
  c->hub->on_event_disarmed();
  c->timed_out = true;
  if (c->state == Connection::State::kApp) {
    if (c->waiting_read || c->waiting_write) c->hub->schedule(c->waiter);
    return;
  }
  queue_process(c);
}

// Best effort: writes what the socket takes now (an error response is
// small; the kernel buffer of a fresh connection holds it).
void write_now(Connection* c, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    struct iovec iov = {const_cast<char*>(data.data()) + off,
                        data.size() - off};
    ssize_t n = transport_sendv(c, &iov, 1);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
}

// Half-closes and drains what the client still sends, so that unread input
// does not turn our close into a reset that destroys the response in
// flight. Bounded in time and bytes. The connection must not be kApp.
void linger(Connection* c) {
  ::shutdown(c->fd, SHUT_WR);
  c->state = Connection::State::kLinger;
  c->in.clear();
  c->in.shrink_to_fit();
  c->parser.release();
  c->body.clear();
  c->body.shrink_to_fit();
  arm_timer(c, kLingerSeconds);
  queue_process(c);  // drain what is already there
}

}  // namespace

const std::string& date_line(Server* s) {
  time_t now = time(nullptr);
  if (now != s->date_at_) {
    struct tm tm;
    gmtime_r(&now, &tm);
    char buf[64];
    size_t n =
        strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    s->date_.assign(buf, n);
    s->date_at_ = now;
  }
  return s->date_;
}

namespace {

void send_error(Connection* c, int status, const char* reason) {
  std::string body = std::to_string(status) + " " + reason_phrase(status) +
                     ": " + reason + "\n";
  std::string out =
      "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
      "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\nConnection: close\r\n" +
      date_line(c->server) + "Server: ptsevent\r\n\r\n" + body;
  write_now(c, out);
}

void drain_linger(Connection* c) {
  size_t total = 0;
  for (;;) {
    ssize_t n = transport_recv(c, scratch(), kScratch);
    if (n > 0) {
      total += static_cast<size_t>(n);
      if (total > kLingerMaxBytes) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->readable = false;
      return;  // wait for more (or the timer)
    }
    break;  // EOF or error
  }
  destroy_conn(c);
}

void start_app(Connection* c);

enum class Pump { kWait, kHead, kGone };

// Reads and parses until a head is complete, the socket is drained, or the
// connection ends (answered with an error or closed). GIL held.
Pump pump_head(Connection* c) {
  for (;;) {
    const char* data;
    size_t len;
    bool from_in = !c->in.empty();
    if (from_in) {
      data = c->in.data();
      len = c->in.size();
    } else {
      if (!c->readable && !c->unconfirmed) return Pump::kWait;
      c->unconfirmed = false;
      ssize_t n = transport_recv(c, scratch(), kScratch);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          c->readable = false;
          return Pump::kWait;
        }
        destroy_conn(c);
        return Pump::kGone;
      }
      if (n == 0) {
        // EOF: between requests (or a lone CRLF) it closes silently; in the
        // middle of a head there is nobody left to answer.
        destroy_conn(c);
        return Pump::kGone;
      }
      if (static_cast<size_t>(n) < kScratch && !c->peer_closed) {
        c->readable = false;
        c->unconfirmed = true;
      }
      data = scratch();
      len = static_cast<size_t>(n);
    }
    size_t used = 0;
    RequestParser::Status st = c->parser.feed(data, len, &used, nullptr);
    if (st == RequestParser::Status::kError) {
      send_error(c, c->parser.error_status(), c->parser.error_reason());
      linger(c);
      return Pump::kGone;
    }
    if (from_in) {
      c->in.erase(0, used);
    } else if (used < len) {
      c->in.assign(data + used, len - used);
    }
    if (st == RequestParser::Status::kHead) return Pump::kHead;
    // kNeedMore consumed everything.
  }
}

void go_idle(Connection* c) {
  Server* s = c->server;
  if (s->stopping_ && !c->parser.request_line_started()) {
    // stop(): idle connections close at once, and so do those that sent
    // only the empty lines a request may start with.
    destroy_conn(c);
    return;
  }
  if (c->parser.started()) {
    if (c->state != Connection::State::kHead) {
      c->state = Connection::State::kHead;
      arm_timer(c, s->options_.header_timeout);
    }
  } else {
    c->state = Connection::State::kIdle;
    c->parser.release();
    if (c->in.empty()) c->in.shrink_to_fit();
    arm_timer(c, s->options_.keepalive_timeout);
  }
}

void process_conn(void* arg) {
  Connection* c = static_cast<Connection*>(arg);
  c->deferred = false;
  if (c->state == Connection::State::kLinger) {
    if (c->timed_out) {
      destroy_conn(c);
      return;
    }
    drain_linger(c);
    return;
  }
  if (c->state == Connection::State::kApp) return;
  if (c->timed_out) {
    // Empty lines alone started no request: nothing to answer.
    if (c->state == Connection::State::kHead &&
        c->parser.request_line_started()) {
      send_error(c, 408, "the request head did not arrive in time");
      linger(c);
    } else {
      destroy_conn(c);
    }
    return;
  }
  switch (pump_head(c)) {
    case Pump::kGone:
      return;
    case Pump::kWait:
      go_idle(c);
      return;
    case Pump::kHead:
      start_app(c);
      return;
  }
}

// The first hand-off: binds a tasklet to run the app for the head just
// parsed (request.cpp's entry point). When no tasklet can start, the client
// gets a 503 and the connection closes.
void start_app(Connection* c) {
  Server* s = c->server;
  disarm_timer(c);
  c->state = Connection::State::kApp;
  // The app runs in a copy of the context the server was started in.
  Tasklet* t =
      hub::start_native_job(c->hub, serve_connection, c, s->context_.get());
  if (!t) goto fail;
  c->tasklet = t;
  ++s->active_;
  // The connection keeps its reference: a tasklet killed before it ever
  // ran (so serve() never starts) must not leave a dangling pointer.
  return;
fail:
  PyErr_WriteUnraisable(s->self());
  send_error(c, 503, "cannot start a tasklet");
  c->state = Connection::State::kIdle;
  linger(c);
}

// The tasklet lets go of the connection (the connection's reference).
void release_tasklet(Connection* c) {
  if (Tasklet* t = c->tasklet) {
    c->tasklet = nullptr;
    Py_DECREF(t->self());  // never the last: the hub holds a running tasklet
  }
}

// Closes a connection whose app finished: gracefully (or at once when
// aborted).
void end_app(Connection* c) {
  release_tasklet(c);
  app_done(c->server);
  c->state = Connection::State::kIdle;
  if (c->aborted) {
    destroy_conn(c);
    return;
  }
  linger(c);
}

}  // namespace

void open_conn(Connection* c) {
  event_base* base = c->hub->base();
  hub::assign_event(&c->ev, base, c->fd,
                    EV_READ | EV_WRITE | EV_ET | EV_PERSIST | EV_CLOSED,
                    on_conn_event, c);
  hub::assign_timer(&c->timer, base, on_conn_timer, c);
  if (event_add(&c->ev, nullptr) < 0) {
    destroy_conn(c);
    return;
  }
  c->registered = true;
  c->hub->count(hub::Source::kActiveEvent, 1);
  c->readable = true;
  process_conn(c);
}

// The second hand-off (connection.h).
NextRequest after_app(Connection* c, AppOutcome outcome) {
  if (outcome == AppOutcome::kClose || c->aborted) {
    end_app(c);
    return NextRequest::kGone;
  }
  Server* s = c->server;
  c->parser.next_message();
  switch (pump_head(c)) {
    case Pump::kGone:  // closed, or answered with an error
      app_done(s);
      return NextRequest::kGone;
    case Pump::kHead:  // pipelined, or already here
      return NextRequest::kAgain;
    case Pump::kWait:
      break;
  }
  release_tasklet(c);
  app_done(s);
  c->state = Connection::State::kIdle;
  go_idle(c);
  return NextRequest::kIdle;
}

// ----------------------------------------------------- tasklet-side I/O

Wait wait_io(Connection* c, bool write, double timeout) {
  if (c->aborted) {
    PyErr_SetString(PyExc_ConnectionAbortedError,
                    "the server closed the connection");
    return Wait::kError;
  }
  // The app may hand wsgi.input or write() to another tasklet: whoever
  // calls waits, one at a time.
  if (c->waiter) {
    PyErr_SetString(PyExc_RuntimeError,
                    "another tasklet is already waiting on this connection");
    return Wait::kError;
  }
  Tasklet* t = c->hub->current();
  if (!t) return Wait::kError;
  if (timeout > 0) arm_timer(c, timeout);
  (write ? c->waiting_write : c->waiting_read) = true;
  c->waiter = t;
  int rc = c->hub->suspend(t);
  c->waiter = nullptr;
  c->waiting_write = c->waiting_read = false;
  bool timed_out = c->timed_out;
  c->timed_out = false;
  disarm_timer(c);
  if (rc < 0) return Wait::kError;
  if (c->aborted) {
    PyErr_SetString(PyExc_ConnectionAbortedError,
                    "the server closed the connection");
    return Wait::kError;
  }
  if (timed_out && !(write ? c->writable : c->readable)) return Wait::kTimedOut;
  return Wait::kReady;
}

// Writes every byte of iov (modified). -1 with an exception set.
int send_iov(Connection* c, struct iovec* iov, int cnt) {
  while (cnt > 0) {
    if (c->aborted) {
      PyErr_SetString(PyExc_ConnectionAbortedError,
                      "the server closed the connection");
      return -1;
    }
    ssize_t n = transport_sendv(c, iov, cnt);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->writable = false;
        Wait w = wait_io(c, true, c->server->options_.write_timeout);
        if (w == Wait::kError) return -1;
        if (w == Wait::kTimedOut) {
          c->send_failed = true;
          PyErr_SetString(PyExc_TimeoutError, "timed out writing the response");
          return -1;
        }
        continue;
      }
      c->send_failed = true;
      PyErr_SetFromErrno(PyExc_OSError);
      return -1;
    }
    c->unconfirmed = false;  // no reset was pending
    size_t left = static_cast<size_t>(n);
    while (cnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --cnt;
    }
    if (cnt > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

}  // namespace ptsevent::http

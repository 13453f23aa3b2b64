#include "http/server.h"
#include "http/cgi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <climits>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "hub/tasklet.h"
#include "py/errors.h"
#include "py/greenlet_api.h"
#include "py/heap_type.h"

#include <structmember.h>

namespace ptsevent::http {

PyTypeObject* ServerType = nullptr;
PyObject* RequestEntityTooLarge = nullptr;

namespace {

using hub::Hub;
using hub::Tasklet;

constexpr size_t kScratch = 65536;
thread_local char scratch[kScratch];
constexpr double kLingerSeconds = 2.0;
constexpr size_t kLingerMaxBytes = 1 << 20;
constexpr int kAcceptBatch = 64;

PyTypeObject* InputType = nullptr;
PyTypeObject* StartResponseType = nullptr;
PyTypeObject* FileWrapperType = nullptr;
PyObject* serve_fn = nullptr;  // the tasklet entry point (module-level)

// ------------------------------------------------------------ interned keys

struct Keys {
  PyObject *REQUEST_METHOD, *SCRIPT_NAME, *PATH_INFO, *QUERY_STRING,
      *CONTENT_TYPE, *CONTENT_LENGTH, *SERVER_NAME, *SERVER_PORT,
      *SERVER_PROTOCOL, *REMOTE_ADDR, *REMOTE_PORT, *RAW_URI, *wsgi_version,
      *wsgi_url_scheme, *wsgi_input, *wsgi_errors, *wsgi_multithread,
      *wsgi_multiprocess, *wsgi_run_once, *wsgi_input_terminated,
      *wsgi_file_wrapper;
  PyObject *empty, *http10, *http11, *version_tuple;
  PyObject *close, *read, *fileno;
} K;

struct Method {
  const char* name;
  PyObject* obj;
} methods[] = {{"GET", nullptr},    {"POST", nullptr},  {"HEAD", nullptr},
               {"PUT", nullptr},    {"DELETE", nullptr}, {"OPTIONS", nullptr},
               {"PATCH", nullptr}};

struct CommonHeader {
  const char* name;  // lower case
  PyObject* key;
} common_headers[] = {
    {"host", nullptr},           {"user-agent", nullptr},
    {"accept", nullptr},         {"accept-encoding", nullptr},
    {"accept-language", nullptr}, {"connection", nullptr},
    {"cookie", nullptr},         {"referer", nullptr},
    {"cache-control", nullptr},  {"upgrade-insecure-requests", nullptr},
    {"origin", nullptr},         {"authorization", nullptr},
    {"x-forwarded-for", nullptr}, {"expect", nullptr},
    {"transfer-encoding", nullptr}, {"if-none-match", nullptr},
    {"if-modified-since", nullptr}, {"pragma", nullptr},
};

int init_keys() {
#define KEY(field, text)                                  \
  if (!(K.field = PyUnicode_InternFromString(text))) return -1;
  KEY(REQUEST_METHOD, "REQUEST_METHOD");
  KEY(SCRIPT_NAME, "SCRIPT_NAME");
  KEY(PATH_INFO, "PATH_INFO");
  KEY(QUERY_STRING, "QUERY_STRING");
  KEY(CONTENT_TYPE, "CONTENT_TYPE");
  KEY(CONTENT_LENGTH, "CONTENT_LENGTH");
  KEY(SERVER_NAME, "SERVER_NAME");
  KEY(SERVER_PORT, "SERVER_PORT");
  KEY(SERVER_PROTOCOL, "SERVER_PROTOCOL");
  KEY(REMOTE_ADDR, "REMOTE_ADDR");
  KEY(REMOTE_PORT, "REMOTE_PORT");
  KEY(RAW_URI, "RAW_URI");
  KEY(wsgi_version, "wsgi.version");
  KEY(wsgi_url_scheme, "wsgi.url_scheme");
  KEY(wsgi_input, "wsgi.input");
  KEY(wsgi_errors, "wsgi.errors");
  KEY(wsgi_multithread, "wsgi.multithread");
  KEY(wsgi_multiprocess, "wsgi.multiprocess");
  KEY(wsgi_run_once, "wsgi.run_once");
  KEY(wsgi_input_terminated, "wsgi.input_terminated");
  KEY(wsgi_file_wrapper, "wsgi.file_wrapper");
  KEY(empty, "");
  KEY(http10, "HTTP/1.0");
  KEY(http11, "HTTP/1.1");
  KEY(close, "close");
  KEY(read, "read");
  KEY(fileno, "fileno");
#undef KEY
  if (!(K.version_tuple = Py_BuildValue("(ii)", 1, 0))) return -1;
  for (Method& m : methods)
    if (!(m.obj = PyUnicode_InternFromString(m.name))) return -1;
  for (CommonHeader& h : common_headers) {
    std::string key;
    cgi_header_key(h.name, &key);
    if (!(h.key = PyUnicode_InternFromString(key.c_str()))) return -1;
  }
  return 0;
}

int as_int(PyObject* o) {
  long v = PyLong_AsLong(o);
  if (v == -1 && PyErr_Occurred()) return -1;
  if (v < INT_MIN || v > INT_MAX) {
    PyErr_SetString(PyExc_OverflowError, "descriptor out of range");
    return -1;
  }
  return static_cast<int>(v);
}

bool iequals(std::string_view a, const char* lower) {
  size_t n = std::strlen(lower);
  if (a.size() != n) return false;
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = a[i];
    if (c >= 'A' && c <= 'Z') c += 32;
    if (c != static_cast<unsigned char>(lower[i])) return false;
  }
  return true;
}

PyObject* latin1(std::string_view v) {
  if (v.empty()) return Py_NewRef(K.empty);
  return PyUnicode_DecodeLatin1(v.data(), static_cast<Py_ssize_t>(v.size()), nullptr);
}

// ---------------------------------------------------------------- requests

// The state of one request while its app runs: on the tasklet's stack.
struct Request {
  Connection* conn;
  py::Ref input;           // the wsgi.input object
  py::Ref start_response;  // the start_response object
  std::string head;        // status line + the app's headers (no framing)
  std::string method;      // for the access log
  std::string target;
  int status = 0;
  int minor = 1;
  int64_t content_length = -1;  // the app's Content-Length
  uint64_t sent_body = 0;
  uint64_t app_body = 0;  // body bytes the app produced (sent or not)
  int body_error = 0;  // a status the request body earned (400, 413)
  bool started = false;
  bool headers_sent = false;
  bool chunked = false;
  bool no_body = false;  // 204/304: no body, no framing
  bool is_head = false;
  bool keep_alive = true;
  bool continue_sent = false;
  bool has_date = false;
  bool has_server = false;
  bool length_mismatch = false;
  bool client_gone = false;
  // KeyboardInterrupt or SystemExit raised in the app: it ends the request
  // and goes on out of the tasklet (to the main tasklet).
  py::Ref escape;
};

struct Input {
  PyObject_HEAD
  Connection* conn;  // null once the request is over
  Request* req;
};

struct StartResponse {
  PyObject_HEAD
  Connection* conn;
  Request* req;
  PyObject* write;  // the write() callable, made on first use
};

struct FileWrapper {
  PyObject_HEAD
  PyObject* filelike;
  Py_ssize_t blksize;
};

// ------------------------------------------------------------- connection

void on_conn_event(evutil_socket_t, short what, void* arg);
void on_conn_timer(evutil_socket_t, short, void* arg);
void process_conn(void* arg);

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

void unlink_conn(Connection* c) {
  Server* s = c->server;
  if (c->prev) c->prev->next = c->next;
  else s->head_ = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  --s->connections_;
}

// Frees an idle (not kApp) connection and closes its socket.
void destroy_conn(Connection* c) {
  if (c->hub && Hub::alive(c->hub)) {
    c->hub->cancel_deferred(c);
    disarm_timer(c);
    if (c->registered) {
      event_del(&c->ev);
      c->registered = false;
      c->hub->add_native_events(-1);
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
    ssize_t n = ::send(c->fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
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

const std::string& date_line(Server* s) {
  time_t now = time(nullptr);
  if (now != s->date_at_) {
    struct tm tm;
    gmtime_r(&now, &tm);
    char buf[64];
    size_t n = strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    s->date_.assign(buf, n);
    s->date_at_ = now;
  }
  return s->date_;
}

void send_error(Connection* c, int status, const char* reason) {
  std::string body = std::to_string(status) + " " + reason_phrase(status) + ": " +
                     reason + "\n";
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " +
                    reason_phrase(status) +
                    "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\nConnection: close\r\n" +
                    date_line(c->server) + "Server: ptsevent\r\n\r\n" + body;
  write_now(c, out);
}

void drain_linger(Connection* c) {
  size_t total = 0;
  for (;;) {
    ssize_t n = ::recv(c->fd, scratch, kScratch, 0);
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

int dispatch(Connection* c);

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
      ssize_t n = ::recv(c->fd, scratch, kScratch, 0);
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
      data = scratch;
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
      dispatch(c);
      return;
  }
}

// Binds a tasklet to run the app for the head just parsed.
int dispatch(Connection* c) {
  Server* s = c->server;
  disarm_timer(c);
  c->state = Connection::State::kApp;
  Tasklet* t = hub::alloc_tasklet(hub::TaskletType, c->hub);
  if (!t) goto fail;
  t->run_ = py::Ref::borrow(serve_fn);
  t->args_ = py::Ref::steal(PyTuple_New(0));
  t->context_ = py::Ref::steal(PyContext_Copy(s->context_.get()));
  t->job_arg_ = c;
  if (!t->args_ || !t->context_ || t->start(0) < 0) {
    Py_DECREF(t->self());
    goto fail;
  }
  c->tasklet = t;
  ++s->active_;
  // The connection keeps its reference: a tasklet killed before it ever
  // ran (so serve() never starts) must not leave a dangling pointer.
  return 0;
fail:
  PyErr_WriteUnraisable(s->self());
  send_error(c, 503, "cannot start a tasklet");
  c->state = Connection::State::kIdle;
  linger(c);
  return -1;
}

// ----------------------------------------------------- tasklet-side I/O

// Waits for the connection to become readable or writable. 0 ready, 1 timed
// out, -1 error (exception set: interrupted, or the server aborted it).
int wait_io(Connection* c, bool write, double timeout) {
  if (c->aborted) {
    PyErr_SetString(PyExc_ConnectionAbortedError, "the server closed the connection");
    return -1;
  }
  // The app may hand wsgi.input or write() to another tasklet: whoever
  // calls waits, one at a time.
  if (c->waiter) {
    PyErr_SetString(PyExc_RuntimeError,
                    "another tasklet is already waiting on this connection");
    return -1;
  }
  Tasklet* t = c->hub->current();
  if (!t) return -1;
  if (timeout > 0) arm_timer(c, timeout);
  (write ? c->waiting_write : c->waiting_read) = true;
  c->waiter = t;
  int rc = c->hub->suspend(t);
  c->waiter = nullptr;
  c->waiting_write = c->waiting_read = false;
  bool timed_out = c->timed_out;
  c->timed_out = false;
  disarm_timer(c);
  if (rc < 0) return -1;
  if (c->aborted) {
    PyErr_SetString(PyExc_ConnectionAbortedError, "the server closed the connection");
    return -1;
  }
  if (timed_out && !(write ? c->writable : c->readable)) return 1;
  return 0;
}

// Writes every byte of iov (modified). -1 with an exception set.
int send_iov(Connection* c, struct iovec* iov, int cnt) {
  while (cnt > 0) {
    if (c->aborted) {
      PyErr_SetString(PyExc_ConnectionAbortedError, "the server closed the connection");
      return -1;
    }
    struct msghdr msg {};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(cnt > 1024 ? 1024 : cnt);
    ssize_t n = ::sendmsg(c->fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->writable = false;
        int w = wait_io(c, true, c->server->options_.write_timeout);
        if (w < 0) return -1;
        if (w == 1) {
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

int send_bytes(Connection* c, const char* data, size_t len) {
  struct iovec iov = {const_cast<char*>(data), len};
  return send_iov(c, &iov, 1);
}

// Sends "100 Continue" if the client asked for it and it is still due.
int continue_if_expected(Connection* c, Request* req) {
  if (c->parser.expect_continue() && !req->continue_sent && !req->headers_sent) {
    static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    req->continue_sent = true;
    if (send_bytes(c, kContinue, sizeof kContinue - 1) < 0) {
      req->client_gone = true;
      return -1;
    }
  }
  return 0;
}

// Receives up to `cap` bytes of the request body from the socket into
// `buf`, waiting (body_timeout) when nothing is there. n > 0, or -1 with an
// exception set (req->client_gone).
ssize_t recv_body(Connection* c, Request* req, char* buf, size_t cap) {
  for (;;) {
    if (!c->readable && !c->peer_closed && !c->unconfirmed) {
      int w = wait_io(c, false, c->server->options_.body_timeout);
      if (w < 0) return -1;
      if (w == 1) {
        req->client_gone = true;  // nothing sensible left to answer
        PyErr_SetString(PyExc_TimeoutError, "timed out reading the request body");
        return -1;
      }
    }
    c->unconfirmed = false;
    ssize_t n = ::recv(c->fd, buf, cap, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->readable = false;
        c->peer_closed = false;
        continue;
      }
      req->client_gone = true;
      PyErr_SetFromErrno(PyExc_OSError);
      return -1;
    }
    if (n == 0) {
      req->client_gone = true;
      PyErr_SetString(PyExc_ConnectionResetError,
                      "the client closed the connection before the end of the body");
      return -1;
    }
    if (static_cast<size_t>(n) < cap && !c->peer_closed) {
      c->readable = false;
      c->unconfirmed = true;
    }
    return n;
  }
}

// Runs `len` received bytes through the parser; body bytes go to `sink`
// (null: they are already where the caller wants them). Returns the
// parser's status, or kError with an exception set.
RequestParser::Status feed_body(Connection* c, Request* req, const char* data,
                                size_t len, size_t* used, std::string* sink) {
  RequestParser::Status st = c->parser.feed(data, len, used, sink);
  if (st == RequestParser::Status::kError) {
    req->body_error = c->parser.error_status();
    req->keep_alive = false;
    if (req->body_error == 413)
      PyErr_Format(
          RequestEntityTooLarge,
          "413 Content Too Large: %s (max_body is %llu bytes)",
          c->parser.error_reason(),
          static_cast<unsigned long long>(c->server->options_.limits.max_body));
    else
      PyErr_Format(PyExc_ValueError, "malformed request body: %s",
                   c->parser.error_reason());
  }
  return st;
}

// Reads more of the request body into c->body. 1: progress, 0: the body
// has ended, -1: error (exception set; req->body_error or client_gone).
int fill_body(Connection* c, Request* req) {
  if (c->parser.body_done()) return 0;
  if (continue_if_expected(c, req) < 0) return -1;
  size_t before = c->body.size();
  for (;;) {
    const char* data;
    size_t len;
    bool from_in = !c->in.empty();
    if (from_in) {
      data = c->in.data();
      len = c->in.size();
    } else {
      ssize_t n = recv_body(c, req, scratch, kScratch);
      if (n < 0) return -1;
      data = scratch;
      len = static_cast<size_t>(n);
    }
    size_t used = 0;
    RequestParser::Status st = feed_body(c, req, data, len, &used, &c->body);
    if (st == RequestParser::Status::kError) return -1;
    if (from_in) c->in.erase(0, used);
    else if (used < len) c->in.assign(data + used, len - used);
    if (st == RequestParser::Status::kMessageEnd) return 1;
    if (c->body.size() > before) return 1;
  }
}

// read(size) of at least kDirectRead bytes of a Content-Length body with
// nothing unparsed pending: the bytes go from the socket straight into the
// bytes object returned (the parser checks them in place), instead of
// through the scratch buffer and c->body. Reads never go past this
// request's body. Null with an exception on error; *handled false when the
// fast path does not apply.
constexpr size_t kDirectRead = 65536;

PyObject* read_direct(Connection* c, Request* req, Py_ssize_t size, bool* handled) {
  *handled = false;
  RequestParser& p = c->parser;
  if (p.chunked() || p.content_length() <= 0 || p.body_done()) return nullptr;
  // Bytes received with the head (or earlier) go through c->body first.
  while (!c->in.empty() && !p.body_done()) {
    if (fill_body(c, req) < 0) {
      *handled = true;
      return nullptr;
    }
  }
  if (p.body_done()) return nullptr;
  uint64_t left = static_cast<uint64_t>(p.content_length()) - p.body_bytes();
  size_t avail = c->body.size() - c->body_off;
  uint64_t want = avail + left;
  if (size >= 0 && static_cast<uint64_t>(size) < want) want = static_cast<uint64_t>(size);
  if (want < avail + kDirectRead || want > static_cast<uint64_t>(PY_SSIZE_T_MAX)) return nullptr;
  *handled = true;
  if (continue_if_expected(c, req) < 0) return nullptr;
  // The declared length is the client's word, not bytes that arrived: the
  // buffer grows with what is received (doubling, from kDirectRead), so a
  // head declaring a gigabyte reserves no more than its first bytes need.
  auto step = [want](uint64_t received) {
    return std::min<uint64_t>(want,
                              std::max<uint64_t>(kDirectRead, 2 * received));
  };
  uint64_t cap = step(avail);
  PyObject* out =
      PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(cap));
  if (!out) return nullptr;
  char* dest = PyBytes_AS_STRING(out);
  memcpy(dest, c->body.data() + c->body_off, avail);
  c->body.clear();
  c->body_off = 0;
  size_t filled = avail;
  while (filled < want) {
    if (filled == cap) {
      cap = step(filled);
      if (_PyBytes_Resize(&out, static_cast<Py_ssize_t>(cap)) < 0)
        return nullptr;
      dest = PyBytes_AS_STRING(out);
    }
    ssize_t n =
        recv_body(c, req, dest + filled, static_cast<size_t>(cap - filled));
    if (n < 0) {
      Py_DECREF(out);
      return nullptr;
    }
    size_t used = 0;
    RequestParser::Status st =
        feed_body(c, req, dest + filled, static_cast<size_t>(n), &used, nullptr);
    if (st == RequestParser::Status::kError) {
      Py_DECREF(out);
      return nullptr;
    }
    filled += used;
    if (used < static_cast<size_t>(n)) {
      // Not body after all (cannot happen with a Content-Length body read
      // no further than its end): keep it unparsed, as fill_body does.
      c->in.assign(dest + filled, static_cast<size_t>(n) - used);
      break;
    }
    if (st == RequestParser::Status::kMessageEnd) break;
  }
  if (filled < cap &&
      _PyBytes_Resize(&out, static_cast<Py_ssize_t>(filled)) < 0)
    return nullptr;
  return out;
}

// --------------------------------------------------------------- wsgi.input

Connection* input_conn(Input* in) {
  if (!in->conn) {
    PyErr_SetString(PyExc_ValueError, "wsgi.input used after its request ended");
    return nullptr;
  }
  return in->conn;
}

int parse_size(PyObject* const* args, Py_ssize_t nargs, Py_ssize_t* size) {
  *size = -1;
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "expected at most one argument");
    return -1;
  }
  if (nargs == 1 && args[0] != Py_None) {
    if (!PyIndex_Check(args[0])) {
      PyErr_Format(PyExc_TypeError, "argument should be integer or None, not '%.200s'",
                   Py_TYPE(args[0])->tp_name);
      return -1;
    }
    *size = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    if (*size == -1 && PyErr_Occurred()) return -1;
  }
  return 0;
}

PyObject* take_body(Connection* c, size_t n) {
  size_t avail = c->body.size() - c->body_off;
  if (n > avail) n = avail;
  PyObject* r = PyBytes_FromStringAndSize(c->body.data() + c->body_off,
                                          static_cast<Py_ssize_t>(n));
  c->body_off += n;
  if (c->body_off == c->body.size()) {
    c->body.clear();
    c->body_off = 0;
  }
  return r;
}

PyObject* input_read(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  Input* in = reinterpret_cast<Input*>(self);
  Py_ssize_t size;
  if (parse_size(args, nargs, &size) < 0) return nullptr;
  Connection* c = input_conn(in);
  if (!c) return nullptr;
  bool handled;
  PyObject* direct = read_direct(c, in->req, size, &handled);
  if (handled) return direct;
  for (;;) {
    size_t avail = c->body.size() - c->body_off;
    if (size >= 0 && avail >= static_cast<size_t>(size)) break;
    int r = fill_body(c, in->req);
    if (r < 0) return nullptr;
    if (r == 0) break;
  }
  size_t avail = c->body.size() - c->body_off;
  return take_body(c, size < 0 ? avail : static_cast<size_t>(size));
}

PyObject* input_readline(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  Input* in = reinterpret_cast<Input*>(self);
  Py_ssize_t size;
  if (parse_size(args, nargs, &size) < 0) return nullptr;
  Connection* c = input_conn(in);
  if (!c) return nullptr;
  size_t scanned = 0;
  for (;;) {
    size_t avail = c->body.size() - c->body_off;
    size_t limit = size >= 0 ? std::min(avail, static_cast<size_t>(size)) : avail;
    const char* base = c->body.data() + c->body_off;
    const void* nl = limit > scanned ? std::memchr(base + scanned, '\n', limit - scanned)
                                     : nullptr;
    if (nl) return take_body(c, static_cast<size_t>(static_cast<const char*>(nl) - base) + 1);
    if (size >= 0 && avail >= static_cast<size_t>(size)) return take_body(c, static_cast<size_t>(size));
    scanned = limit;
    int r = fill_body(c, in->req);
    if (r < 0) return nullptr;
    if (r == 0) return take_body(c, c->body.size() - c->body_off);
  }
}

PyObject* input_readlines(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  Py_ssize_t hint;
  if (parse_size(args, nargs, &hint) < 0) return nullptr;
  py::Ref lines = py::Ref::steal(PyList_New(0));
  if (!lines) return nullptr;
  Py_ssize_t total = 0;
  for (;;) {
    py::Ref line = py::Ref::steal(input_readline(self, nullptr, 0));
    if (!line) return nullptr;
    if (PyBytes_GET_SIZE(line.get()) == 0) break;
    total += PyBytes_GET_SIZE(line.get());
    if (PyList_Append(lines.get(), line.get()) < 0) return nullptr;
    if (hint > 0 && total >= hint) break;
  }
  return lines.release();
}

PyObject* input_iternext(PyObject* self) {
  PyObject* line = input_readline(self, nullptr, 0);
  if (!line) return nullptr;
  if (PyBytes_GET_SIZE(line) == 0) {
    Py_DECREF(line);
    return nullptr;  // StopIteration
  }
  return line;
}


PyMethodDef input_methods[] = {
    {"read", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(input_read)),
     METH_FASTCALL, "read($self, size=-1, /)\n--\n\n"
     "read(size=-1) -> bytes of the request body"},
    {"readline",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(input_readline)),
     METH_FASTCALL, "readline($self, size=-1, /)\n--\n\n"
     "readline(size=-1) -> one line of the request body"},
    {"readlines",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(input_readlines)),
     METH_FASTCALL, "readlines($self, hint=-1, /)\n--\n\n"
     "readlines(hint=-1) -> list of lines"},
    {nullptr, nullptr, 0, nullptr}};

// ----------------------------------------------------------- start_response

bool valid_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || std::strchr("!#$%&'*+-.^_`|~", c);
    if (!ok || c == 0) return false;
  }
  return true;
}

bool valid_text(std::string_view s) {
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

// The latin-1 bytes of a str, or an error (TypeError / ValueError).
int latin1_of(PyObject* o, const char* what, std::string_view* out, py::Ref* keep) {
  if (!PyUnicode_Check(o)) {
    PyErr_Format(PyExc_TypeError, "%s must be str, not %.200s", what, Py_TYPE(o)->tp_name);
    return -1;
  }
  if (PyUnicode_KIND(o) == PyUnicode_1BYTE_KIND) {
    *out = std::string_view(static_cast<const char*>(PyUnicode_DATA(o)),
                            static_cast<size_t>(PyUnicode_GET_LENGTH(o)));
    return 0;
  }
  PyErr_Format(PyExc_ValueError, "%s is not latin-1 text: %R", what, o);
  (void)keep;
  return -1;
}

PyObject* start_response_write(PyObject* self, PyObject* data);
PyMethodDef start_response_write_def = {"write", start_response_write, METH_O,
                                        "write(data): the WSGI write() callable"};

PyObject* start_response_call(PyObject* self, PyObject* args, PyObject* kwargs) {
  StartResponse* sr = reinterpret_cast<StartResponse*>(self);
  PyObject *status, *headers, *exc_info = Py_None;
  if (!kwargs && PyTuple_GET_SIZE(args) >= 2 && PyTuple_GET_SIZE(args) <= 3) {
    status = PyTuple_GET_ITEM(args, 0);
    headers = PyTuple_GET_ITEM(args, 1);
    if (PyTuple_GET_SIZE(args) == 3) exc_info = PyTuple_GET_ITEM(args, 2);
  } else {
    static const char* kwlist[] = {"status", "headers", "exc_info", nullptr};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:start_response",
                                     const_cast<char**>(kwlist), &status, &headers,
                                     &exc_info))
      return nullptr;
  }
  Request* req = sr->req;
  if (!req) {
    PyErr_SetString(PyExc_RuntimeError, "start_response called after its request ended");
    return nullptr;
  }
  if (exc_info != Py_None) {
    if (req->headers_sent) {
      // PEP 3333: re-raise the app's exception; the response is lost.
      if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
        PyErr_SetString(PyExc_TypeError, "exc_info must be a (type, value, traceback) tuple");
        return nullptr;
      }
      PyObject* value = PyTuple_GET_ITEM(exc_info, 1);
      py::raise(value);
      return nullptr;
    }
  } else if (req->started) {
    PyErr_SetString(PyExc_AssertionError,
                    "start_response called a second time without exc_info");
    return nullptr;
  }
  std::string_view st;
  py::Ref keep;
  if (latin1_of(status, "status", &st, &keep) < 0) return nullptr;
  if (st.size() < 4 || st[3] != ' ' || !(st[0] >= '1' && st[0] <= '5') ||
      !(st[1] >= '0' && st[1] <= '9') || !(st[2] >= '0' && st[2] <= '9') ||
      !valid_text(st)) {
    PyErr_Format(PyExc_ValueError, "invalid status line: %R", status);
    return nullptr;
  }
  if (!PyList_Check(headers)) {
    PyErr_Format(PyExc_TypeError, "headers must be a list, not %.200s",
                 Py_TYPE(headers)->tp_name);
    return nullptr;
  }
  std::string head;
  head.reserve(256);
  head.append("HTTP/1.1 ").append(st).append("\r\n");
  int code = (st[0] - '0') * 100 + (st[1] - '0') * 10 + (st[2] - '0');
  if (code < 200) {
    // An interim status is never the answer to a request: sent as the
    // final one, every later response on the connection would be taken
    // as the answer to the request before it.
    PyErr_Format(PyExc_ValueError,
                 "status %R is informational (1xx): not a final response",
                 status);
    return nullptr;
  }
  // 204 and 304 have no body, hence no framing: the app's Content-Length
  // is not sent (a 304's would describe another response).
  bool no_body = code == 204 || code == 304;
  int64_t content_length = -1;
  bool has_date = false, has_server = false, keep_alive = req->keep_alive;
  Py_ssize_t n = PyList_GET_SIZE(headers);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyList_GET_ITEM(headers, i);
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
      PyErr_Format(PyExc_TypeError, "header %zd must be a (name, value) tuple", i);
      return nullptr;
    }
    std::string_view name, value;
    if (latin1_of(PyTuple_GET_ITEM(item, 0), "header name", &name, &keep) < 0 ||
        latin1_of(PyTuple_GET_ITEM(item, 1), "header value", &value, &keep) < 0)
      return nullptr;
    if (!valid_token(name)) {
      PyErr_Format(PyExc_ValueError, "invalid header name: %R", PyTuple_GET_ITEM(item, 0));
      return nullptr;
    }
    if (!valid_text(value)) {
      PyErr_Format(PyExc_ValueError, "invalid header value for %R: %R",
                   PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
      return nullptr;
    }
    if (iequals(name, "content-length")) {
      int64_t v = 0;
      if (value.empty() || value.size() > 18) goto bad_length;
      for (unsigned char ch : value) {
        if (ch < '0' || ch > '9') goto bad_length;
        v = v * 10 + (ch - '0');
      }
      if (content_length >= 0 && v != content_length) {
        PyErr_Format(
            PyExc_ValueError, "conflicting Content-Length values: %lld and %R",
            static_cast<long long>(content_length), PyTuple_GET_ITEM(item, 1));
        return nullptr;
      }
      bool repeated = content_length >= 0;
      content_length = v;
      if (repeated || no_body) continue;  // one field, or none without a body
    } else if (iequals(name, "transfer-encoding")) {
      continue;  // the server frames the body itself
    } else if (iequals(name, "connection")) {
      if (iequals(value, "close")) keep_alive = false;
      continue;  // hop-by-hop: the server writes its own
    } else if (iequals(name, "date")) {
      has_date = true;
    } else if (iequals(name, "server")) {
      has_server = true;
    }
    head.append(name).append(": ").append(value).append("\r\n");
    continue;
  bad_length:
    PyErr_Format(PyExc_ValueError, "invalid Content-Length: %R", PyTuple_GET_ITEM(item, 1));
    return nullptr;
  }
  req->head.swap(head);
  req->status = code;
  req->content_length = no_body ? -1 : content_length;
  req->has_date = has_date;
  req->has_server = has_server;
  req->keep_alive = keep_alive;
  req->no_body = no_body;
  req->started = true;
  if (!sr->write) sr->write = PyCFunction_New(&start_response_write_def, self);
  return Py_XNewRef(sr->write);
}

int send_headers(Connection* c, Request* req, const char* first, size_t first_len,
                 int64_t known_total);
int send_body(Connection* c, Request* req, const char* data, size_t len);

PyObject* start_response_write(PyObject* self, PyObject* data) {
  StartResponse* sr = reinterpret_cast<StartResponse*>(self);
  Request* req = sr->req;
  if (!req) {
    PyErr_SetString(PyExc_RuntimeError, "write() called after its request ended");
    return nullptr;
  }
  if (!req->started) {
    PyErr_SetString(PyExc_AssertionError, "write() called before start_response()");
    return nullptr;
  }
  if (!PyBytes_Check(data)) {
    PyErr_Format(PyExc_TypeError, "write() argument must be bytes, not %.200s",
                 Py_TYPE(data)->tp_name);
    return nullptr;
  }
  if (send_body(sr->conn, req, PyBytes_AS_STRING(data),
                static_cast<size_t>(PyBytes_GET_SIZE(data))) < 0)
    return nullptr;
  Py_RETURN_NONE;
}

// py::make_heap_type's dealloc calls it.
void start_response_destroy(PyObject* self) {
  // detach() already dropped write (which holds self) at the request's end.
  Py_CLEAR(reinterpret_cast<StartResponse*>(self)->write);
}

PyMethodDef start_response_methods[] = {
    {"write", start_response_write, METH_O, "write($self, data, /)\n--\n\n"
     "write(data): the WSGI write() callable"},
    {nullptr, nullptr, 0, nullptr}};

// ------------------------------------------------------------ file_wrapper

int file_wrapper_init(PyObject* self, PyObject* args, PyObject* kwargs) {
  FileWrapper* fw = reinterpret_cast<FileWrapper*>(self);
  PyObject* filelike;
  Py_ssize_t blksize = 8192;
  static const char* kwlist[] = {"filelike", "blksize", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|n:FileWrapper",
                                   const_cast<char**>(kwlist), &filelike, &blksize))
    return -1;
  if (blksize <= 0) {
    PyErr_SetString(PyExc_ValueError, "blksize must be positive");
    return -1;
  }
  Py_XSETREF(fw->filelike, Py_NewRef(filelike));
  fw->blksize = blksize;
  return 0;
}

PyObject* file_wrapper_next(PyObject* self) {
  FileWrapper* fw = reinterpret_cast<FileWrapper*>(self);
  if (!fw->filelike) return nullptr;
  PyObject* data = PyObject_CallMethod(fw->filelike, "read", "n", fw->blksize);
  if (!data) return nullptr;
  if (PyObject_Length(data) == 0) {
    Py_DECREF(data);
    return nullptr;
  }
  return data;
}

PyObject* file_wrapper_close(PyObject* self, PyObject*) {
  FileWrapper* fw = reinterpret_cast<FileWrapper*>(self);
  if (fw->filelike && PyObject_HasAttr(fw->filelike, K.close))
    return PyObject_CallMethodNoArgs(fw->filelike, K.close);
  Py_RETURN_NONE;
}

int file_wrapper_traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(reinterpret_cast<FileWrapper*>(self)->filelike);
  return 0;
}

int file_wrapper_clear(PyObject* self) {
  Py_CLEAR(reinterpret_cast<FileWrapper*>(self)->filelike);
  return 0;
}

PyMethodDef file_wrapper_methods[] = {
    {"close", file_wrapper_close, METH_NOARGS, "close($self, /)\n--\n\n"
     "close the wrapped file"},
    {nullptr, nullptr, 0, nullptr}};

PyMemberDef file_wrapper_members[] = {
    {"filelike", T_OBJECT, offsetof(FileWrapper, filelike), READONLY, nullptr},
    {"blksize", T_PYSSIZET, offsetof(FileWrapper, blksize), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr}};

// --------------------------------------------------------------- responses

std::string hex_size(size_t n) {
  char buf[32];
  int k = snprintf(buf, sizeof buf, "%zx\r\n", n);
  return std::string(buf, static_cast<size_t>(k));
}

// Completes the header block (framing, Date, Server, Connection) and sends
// it with the first body bytes in one writev.
int send_headers(Connection* c, Request* req, const char* first, size_t first_len,
                 int64_t known_total) {
  std::string& h = req->head;
  if (req->no_body) {
    // 1xx, 204, 304: no body and no framing of ours.
  } else if (req->content_length >= 0) {
    // The app's own Content-Length is in the head already.
  } else if (known_total >= 0) {
    req->content_length = known_total;
    h.append("Content-Length: ").append(std::to_string(known_total)).append("\r\n");
  } else if (req->is_head) {
    // A HEAD answer without a length: nothing to frame.
  } else if (req->minor == 1) {
    req->chunked = true;
    h.append("Transfer-Encoding: chunked\r\n");
  } else {
    req->keep_alive = false;  // HTTP/1.0: the end of the body is the close
  }
  if (c->server->stopping_) req->keep_alive = false;
  if (c->parser.expect_continue() && !req->continue_sent && !c->parser.body_done())
    req->keep_alive = false;  // the body never came: the connection cannot go on
  if (!req->has_date) h.append(date_line(c->server));
  if (!req->has_server) h.append("Server: ptsevent\r\n");
  if (!req->keep_alive) h.append("Connection: close\r\n");
  else if (req->minor == 0) h.append("Connection: keep-alive\r\n");
  h.append("\r\n");
  req->headers_sent = true;
  req->app_body += first_len;
  if (req->no_body || req->is_head) first_len = 0;
  if (req->content_length >= 0 && !req->no_body && !req->is_head &&
      static_cast<uint64_t>(req->content_length) < first_len) {
    first_len = static_cast<size_t>(req->content_length);
    req->length_mismatch = true;
  }
  std::string prefix;
  struct iovec iov[4];
  int cnt = 0;
  iov[cnt++] = {h.data(), h.size()};
  if (first_len) {
    if (req->chunked) {
      prefix = hex_size(first_len);
      iov[cnt++] = {prefix.data(), prefix.size()};
    }
    iov[cnt++] = {const_cast<char*>(first), first_len};
    if (req->chunked) iov[cnt++] = {const_cast<char*>("\r\n"), 2};
    req->sent_body += first_len;
  }
  return send_iov(c, iov, cnt);
}

int send_body(Connection* c, Request* req, const char* data, size_t len) {
  if (!req->headers_sent) {
    if (len == 0) return 0;
    return send_headers(c, req, data, len, -1);
  }
  req->app_body += len;
  if (len == 0 || req->no_body || req->is_head) return 0;
  if (req->content_length >= 0) {
    uint64_t room = static_cast<uint64_t>(req->content_length) - req->sent_body;
    if (len > room) {
      len = static_cast<size_t>(room);
      req->length_mismatch = true;
    }
    if (len == 0) return 0;
  }
  req->sent_body += len;
  if (!req->chunked) return send_bytes(c, data, len);
  std::string prefix = hex_size(len);
  struct iovec iov[3] = {{prefix.data(), prefix.size()},
                         {const_cast<char*>(data), len},
                         {const_cast<char*>("\r\n"), 2}};
  return send_iov(c, iov, 3);
}

// A list or tuple of bytes: its total length, or -1.
int64_t sequence_total(PyObject* result) {
  if (!PyList_CheckExact(result) && !PyTuple_CheckExact(result)) return -1;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(result);
  PyObject** items = PySequence_Fast_ITEMS(result);
  int64_t total = 0;
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!PyBytes_CheckExact(items[i])) return -1;
    total += PyBytes_GET_SIZE(items[i]);
  }
  return total;
}

// Sends a list/tuple of bytes. Before the headers the total is the
// body's length: it frames the response (one gather write when the
// framing is ours). After write() the framing is already decided: the
// items go through send_body like any other body bytes.
int send_sequence(Connection* c, Request* req, PyObject* result, int64_t total) {
  Py_ssize_t n = PySequence_Fast_GET_SIZE(result);
  PyObject** items = PySequence_Fast_ITEMS(result);
  if (req->headers_sent || n == 1 || req->content_length >= 0 || req->no_body ||
      req->is_head) {
    for (Py_ssize_t i = 0; i < n; ++i) {
      const char* d = PyBytes_AS_STRING(items[i]);
      size_t len = static_cast<size_t>(PyBytes_GET_SIZE(items[i]));
      int rc = req->headers_sent ? send_body(c, req, d, len)
                                 : (len ? send_headers(c, req, d, len, total) : 0);
      if (rc < 0) return -1;
    }
    if (!req->headers_sent) return send_headers(c, req, nullptr, 0, total);
    return 0;
  }
  // Headers, then every item, in one gather write.
  if (send_headers(c, req, nullptr, 0, total) < 0) return -1;
  if (total == 0) return 0;
  std::vector<struct iovec> iov;
  iov.reserve(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    size_t len = static_cast<size_t>(PyBytes_GET_SIZE(items[i]));
    if (len) iov.push_back({PyBytes_AS_STRING(items[i]), len});
  }
  req->sent_body += static_cast<uint64_t>(total);
  req->app_body += static_cast<uint64_t>(total);
  return send_iov(c, iov.data(), static_cast<int>(iov.size()));
}

// Ends the response body whatever the app used to produce it (write(),
// a returned iterable, list, tuple or file_wrapper): the headers if none
// were sent, and the last chunk of a chunked body. The one place a
// response ends, so that every path frames it the same way.
int finish_body(Connection* c, Request* req) {
  if (!req->headers_sent) return send_headers(c, req, nullptr, 0, 0);
  if (!req->chunked) return 0;
  return send_bytes(c, "0\r\n\r\n", 5);
}

// wsgi.file_wrapper over a regular file: sendfile(2). 1 if handled, 0 if
// the object is not a regular file (iterate instead), -1 error.
int send_file(Connection* c, Request* req, FileWrapper* fw) {
  py::Ref fdobj = py::Ref::steal(PyObject_CallMethodNoArgs(fw->filelike, K.fileno));
  if (!fdobj) {
    PyErr_Clear();
    return 0;
  }
  int ffd = as_int(fdobj.get());
  if (ffd < 0) {
    PyErr_Clear();
    return 0;
  }
  struct stat st;
  if (fstat(ffd, &st) < 0 || !S_ISREG(st.st_mode)) return 0;
  // A buffered file object may hold read-ahead: use its logical position.
  off_t offset;
  py::Ref pos = py::Ref::steal(PyObject_CallMethod(fw->filelike, "tell", nullptr));
  if (pos) {
    offset = static_cast<off_t>(PyLong_AsLongLong(pos.get()));
    if (PyErr_Occurred()) return -1;
  } else {
    PyErr_Clear();
    offset = lseek(ffd, 0, SEEK_CUR);
    if (offset < 0) return 0;
  }
  uint64_t count = st.st_size > offset ? static_cast<uint64_t>(st.st_size - offset) : 0;
  // What the file holds now; sent below up to the length.
  req->app_body += count;
  if (req->content_length >= 0 && static_cast<uint64_t>(req->content_length) < count)
    count = static_cast<uint64_t>(req->content_length);
  if (send_headers(c, req, nullptr, 0, static_cast<int64_t>(count)) < 0) return -1;
  if (req->is_head || req->no_body) return 1;
  if (req->chunked) return 0;  // not reached: the length is known
  while (count > 0) {
    if (c->aborted) {
      PyErr_SetString(PyExc_ConnectionAbortedError, "the server closed the connection");
      return -1;
    }
    size_t chunk = count > (1u << 30) ? (1u << 30) : static_cast<size_t>(count);
    ssize_t n = ::sendfile(c->fd, ffd, &offset, chunk);
    if (n > 0) {
      c->unconfirmed = false;
      count -= static_cast<uint64_t>(n);
      req->sent_body += static_cast<uint64_t>(n);
      continue;
    }
    if (n == 0) {  // the file shrank
      req->length_mismatch = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      c->writable = false;
      int w = wait_io(c, true, c->server->options_.write_timeout);
      if (w < 0) return -1;
      if (w == 1) {
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
  return 1;
}

// ------------------------------------------------------------------ environ

PyObject* remote_addr(Connection* c) {
  char buf[INET6_ADDRSTRLEN];
  if (!c->peer) {
    struct in_addr a;
    a.s_addr = c->peer4;
    inet_ntop(AF_INET, &a, buf, sizeof buf);
  } else if (c->peer->ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(c->peer)->sin6_addr, buf, sizeof buf);
  } else {
    return Py_NewRef(K.empty);
  }
  return PyUnicode_FromString(buf);
}

// Clients often share an address (a proxy, loopback): the last string is
// reused.
PyObject* cached_remote_addr(Connection* c) {
  Server* s = c->server;
  if (!c->peer && s->last_addr_ && s->last_peer4_ == c->peer4)
    return Py_NewRef(s->last_addr_.get());
  PyObject* a = remote_addr(c);
  if (a && !c->peer) {
    s->last_addr_ = py::Ref::borrow(a);
    s->last_peer4_ = c->peer4;
  }
  return a;
}

PyObject* port_string(unsigned port) {
  char buf[8];
  char* end = buf + sizeof buf;
  char* p = end;
  do {
    *--p = static_cast<char>('0' + port % 10);
    port /= 10;
  } while (port);
  return PyUnicode_FromStringAndSize(p, end - p);
}

int set_item(PyObject* d, PyObject* key, PyObject* value) {
  if (!value) return -1;
  int rc = PyDict_SetItem(d, key, value);
  Py_DECREF(value);
  return rc;
}

PyObject* header_key(std::string_view name, std::string* scratch_key) {
  for (CommonHeader& h : common_headers)
    if (iequals(name, h.name)) return Py_NewRef(h.key);
  if (!cgi_header_key(name, scratch_key)) return nullptr;
  PyObject* k = PyUnicode_FromStringAndSize(scratch_key->data(),
                                            static_cast<Py_ssize_t>(scratch_key->size()));
  if (k) PyUnicode_InternInPlace(&k);
  return k;
}

PyObject* build_environ(Connection* c, Request* req) {
  Server* s = c->server;
  RequestParser& p = c->parser;
  // A copy of the server's template: every key already has its slot, so
  // the per-request values replace and nothing resizes.
  py::Ref env = py::Ref::steal(PyDict_Copy(s->environ_template_.get()));
  if (!env) return nullptr;
  PyObject* d = env.get();
  std::string_view method = p.method();
  PyObject* m = nullptr;
  for (Method& mm : methods)
    if (method == mm.name) {
      m = Py_NewRef(mm.obj);
      break;
    }
  if (!m) m = latin1(method);
  if (set_item(d, K.REQUEST_METHOD, m) < 0) return nullptr;
  std::string path;
  std::string_view query;
  if (!split_target(p.target(), &path, &query)) {
    req->body_error = 400;
    PyErr_SetString(PyExc_ValueError, "malformed percent-escape in the request target");
    return nullptr;
  }
  if (path == "*") path.clear();
  if (set_item(d, K.PATH_INFO, latin1(path)) < 0 ||
      set_item(d, K.QUERY_STRING, latin1(query)) < 0 ||
      set_item(d, K.RAW_URI, latin1(p.target())) < 0 ||
      PyDict_SetItem(d, K.SERVER_PROTOCOL, p.version_minor() ? K.http11 : K.http10) < 0 ||
      set_item(d, K.REMOTE_ADDR, cached_remote_addr(c)) < 0 ||
      set_item(d, K.REMOTE_PORT, port_string(c->peer_port)) < 0 ||
      PyDict_SetItem(d, K.wsgi_input, req->input.get()) < 0)
    return nullptr;
  std::string key;
  std::unordered_map<PyObject*, std::string> repeated;
  for (const HeaderField& f : p.headers()) {
    std::string_view name = p.field_name(f);
    std::string_view value = p.field_value(f);
    if (iequals(name, "content-type")) {
      if (set_item(d, K.CONTENT_TYPE, latin1(value)) < 0) return nullptr;
      continue;
    }
    if (iequals(name, "content-length")) {
      if (set_item(d, K.CONTENT_LENGTH, latin1(value)) < 0) return nullptr;
      continue;
    }
    py::Ref k = py::Ref::steal(header_key(name, &key));
    if (!k) {
      if (PyErr_Occurred()) return nullptr;
      continue;  // names with '_' are dropped
    }
    PyObject* old = PyDict_GetItemWithError(d, k.get());
    if (old) {
      // A repeated field: its values are joined with ',' once at the end
      // (joining at each repeat would make many repeats quadratic). Keys
      // are interned, so the pointer identifies the name.
      auto it = repeated.find(k.get());
      if (it == repeated.end()) {
        std::string first(static_cast<const char*>(PyUnicode_DATA(old)),
                          static_cast<size_t>(PyUnicode_GET_LENGTH(old)));
        it = repeated.emplace(k.get(), std::move(first)).first;
      }
      it->second.push_back(',');
      it->second.append(value);
    } else {
      if (PyErr_Occurred()) return nullptr;
      if (set_item(d, k.get(), latin1(value)) < 0) return nullptr;
    }
  }
  for (auto& [k, joined] : repeated)
    if (set_item(d, k, latin1(joined)) < 0) return nullptr;
  std::string_view target = p.target();
  if (!target.empty() && target[0] != '/' && target != "*") {
    // An absolute-form target names the host: it replaces Host (RFC 9112
    // section 3.2.2). SERVER_NAME and SERVER_PORT stay the server's.
    py::Ref host_key = py::Ref::steal(header_key("host", &key));
    if (!host_key ||
        set_item(d, host_key.get(), latin1(target_authority(target))) < 0)
      return nullptr;
  }
  return env.release();
}

// The environ every request starts from: the constant entries, and a slot
// for each per-request one. Presized for a typical number of headers.
PyObject* make_environ_template(Server* s) {
  py::Ref env = py::Ref::steal(_PyDict_NewPresized(40));
  if (!env) return nullptr;
  PyObject* d = env.get();
  PyObject* per_request[] = {K.REQUEST_METHOD, K.PATH_INFO,   K.QUERY_STRING,
                             K.RAW_URI,        K.SERVER_PROTOCOL, K.REMOTE_ADDR,
                             K.REMOTE_PORT,    K.wsgi_input};
  for (PyObject* k : per_request)
    if (PyDict_SetItem(d, k, Py_None) < 0) return nullptr;
  if (PyDict_SetItem(d, K.SCRIPT_NAME, K.empty) < 0 ||
      PyDict_SetItem(d, K.SERVER_NAME, s->server_name_.get()) < 0 ||
      PyDict_SetItem(d, K.SERVER_PORT, s->server_port_.get()) < 0 ||
      PyDict_SetItem(d, K.wsgi_version, K.version_tuple) < 0 ||
      PyDict_SetItem(d, K.wsgi_url_scheme, s->url_scheme_.get()) < 0 ||
      PyDict_SetItem(d, K.wsgi_errors, s->errors_.get()) < 0 ||
      PyDict_SetItem(d, K.wsgi_multithread, Py_False) < 0 ||
      PyDict_SetItem(d, K.wsgi_multiprocess, s->options_.multiprocess ? Py_True : Py_False) < 0 ||
      PyDict_SetItem(d, K.wsgi_run_once, Py_False) < 0 ||
      PyDict_SetItem(d, K.wsgi_input_terminated, Py_True) < 0 ||
      PyDict_SetItem(d, K.wsgi_file_wrapper, reinterpret_cast<PyObject*>(FileWrapperType)) < 0)
    return nullptr;
  return env.release();
}

// ------------------------------------------------------------ the tasklet

// A logging callback of the server's failed. Ctrl-C that landed in it (the
// interpreter runs signal handlers in whatever Python code runs) or a
// sys.exit() goes to the main tasklet, as from the app; anything else is
// reported.
void callback_failed(PyObject* callback) {
  if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
      PyErr_ExceptionMatches(PyExc_SystemExit)) {
    py::Ref exc = py::fetch_error();
    Hub* hub = Hub::peek();
    if (hub && hub->raise_in_main(exc.get())) return;
    py::raise(exc.get());
  }
  PyErr_WriteUnraisable(callback);
}

void log_error(Server* s, const char* message, PyObject* exc) {
  if (!s->log_error_ || s->log_error_.get() == Py_None) return;
  py::Ref r = py::Ref::steal(PyObject_CallFunction(s->log_error_.get(), "sO", message,
                                                   exc ? exc : Py_None));
  if (!r) callback_failed(s->log_error_.get());
}

void escape_into(std::string* out, std::string_view v) {
  static const char hex[] = "0123456789abcdef";
  for (unsigned char ch : v) {
    if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
      out->append("\\x");
      out->push_back(hex[ch >> 4]);
      out->push_back(hex[ch & 15]);
    } else {
      out->push_back(static_cast<char>(ch));
    }
  }
}

void access_log(Connection* c, Request* req, double started) {
  Server* s = c->server;
  if (!s->access_log_ || s->access_log_.get() == Py_None) return;
  py::Ref addr = py::Ref::steal(remote_addr(c));
  std::string line;
  if (addr) {
    Py_ssize_t n;
    const char* a = PyUnicode_AsUTF8AndSize(addr.get(), &n);
    if (a) line.append(a, static_cast<size_t>(n));
  }
  PyErr_Clear();
  double elapsed = hub::monotonic_seconds() - started;
  line.append(" \"");
  escape_into(&line, req->method);
  line.push_back(' ');
  escape_into(&line, req->target);
  line.append(req->minor ? " HTTP/1.1\" " : " HTTP/1.0\" ");
  line.append(std::to_string(req->status)).push_back(' ');
  line.append(std::to_string(req->sent_body));
  char buf[32];
  snprintf(buf, sizeof buf, " %.6f", elapsed);
  line.append(buf);
  py::Ref text = py::Ref::steal(PyUnicode_DecodeLatin1(
      line.data(), static_cast<Py_ssize_t>(line.size()), nullptr));
  py::Ref r = text ? py::Ref::steal(PyObject_CallOneArg(s->access_log_.get(), text.get()))
                   : py::Ref();
  if (!r) callback_failed(s->access_log_.get());
}

PyObject* new_input(Connection* c, Request* req) {
  Input* in = PyObject_New(Input, InputType);
  if (!in) return nullptr;
  in->conn = c;
  in->req = req;
  return reinterpret_cast<PyObject*>(in);
}

PyObject* new_start_response(Connection* c, Request* req) {
  StartResponse* sr = PyObject_New(StartResponse, StartResponseType);
  if (!sr) return nullptr;
  sr->conn = c;
  sr->req = req;
  sr->write = nullptr;
  return reinterpret_cast<PyObject*>(sr);
}

void detach(Request* req) {
  if (req->input) {
    Input* in = reinterpret_cast<Input*>(req->input.get());
    in->conn = nullptr;
    in->req = nullptr;
  }
  if (req->start_response) {
    StartResponse* sr = reinterpret_cast<StartResponse*>(req->start_response.get());
    sr->conn = nullptr;
    sr->req = nullptr;
    Py_CLEAR(sr->write);  // write holds sr: break the cycle
  }
  req->input.reset();
  req->start_response.reset();
}

// An error before any header was sent: a plain response of our own. The
// connection goes on only if `keep_alive` (an app error, whose request was
// read as framed: the next one starts where it ended).
int send_simple(Connection* c, Request* req, int status, const char* text,
                bool keep_alive) {
  req->keep_alive = keep_alive;
  std::string body = std::to_string(status) + " " + reason_phrase(status) + "\n";
  (void)text;
  req->head = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
              "\r\nContent-Type: text/plain; charset=utf-8\r\n";
  req->status = status;
  req->content_length = -1;
  req->chunked = false;
  req->no_body = false;
  req->has_date = req->has_server = false;
  req->started = true;
  req->sent_body = 0;
  return send_headers(c, req, body.data(), body.size(),
                      static_cast<int64_t>(body.size()));
}

void log_length_mismatch(Connection* c, Request* req) {
  std::string m = "response body does not match its Content-Length: ";
  escape_into(&m, c->parser.method());
  m.push_back(' ');
  escape_into(&m, c->parser.target());
  m.append(" declared Content-Length ")
      .append(std::to_string(req->content_length));
  m.append(", the application gave ").append(std::to_string(req->app_body));
  m.append(" bytes");
  if (req->app_body > req->sent_body)
    m.append(" (")
        .append(std::to_string(req->sent_body))
        .append(" sent, the rest dropped)");
  m.append("; connection closed");
  log_error(c->server, m.c_str(), nullptr);
}

// Calls the app for the parsed head and writes its response. Returns true
// when the connection may carry another request.
bool handle_request(Connection* c, Request* req) {
  Server* s = c->server;
  double started = hub::monotonic_seconds();
  RequestParser& p = c->parser;
  req->minor = p.version_minor();
  req->keep_alive = p.keep_alive() && !s->stopping_;
  req->is_head = p.method() == "HEAD";
  if (s->access_log_ && s->access_log_.get() != Py_None) {
    req->method.assign(p.method());
    req->target.assign(p.target());
  }
  ++s->requests_;
  req->input = py::Ref::steal(new_input(c, req));
  req->start_response = py::Ref::steal(new_start_response(c, req));
  bool ok = false;
  py::Ref exc;
  if (req->input && req->start_response) {
    py::Ref env = py::Ref::steal(build_environ(c, req));
    if (env) {
      py::Ref result = py::Ref::steal(PyObject_CallFunctionObjArgs(
          s->app_.get(), env.get(), req->start_response.get(), nullptr));
      if (result && req->body_error && !req->headers_sent &&
          !(req->started && req->status >= 400 && req->status < 500)) {
        // wsgi.input refused the body (413, 400) and the app answered
        // anyway, often with a framework's 500 for the exception: the
        // client gets the status its request earned. An app that chose a
        // client error itself keeps its answer.
        if (PyObject_HasAttr(result.get(), K.close)) {
          py::Ref r =
              py::Ref::steal(PyObject_CallMethodNoArgs(result.get(), K.close));
          if (!r) PyErr_WriteUnraisable(result.get());
        }
        result.reset();
        if (send_simple(c, req, req->body_error, "", false) < 0) PyErr_Clear();
        ok = true;
      }
      if (result) {
        int rc = 0;
        int64_t total = sequence_total(result.get());
        if (total >= 0 && req->started) {
          rc = send_sequence(c, req, result.get(), total);
        } else if (Py_TYPE(result.get()) == FileWrapperType && req->started &&
                   !req->headers_sent) {
          rc = send_file(c, req, reinterpret_cast<FileWrapper*>(result.get()));
          if (rc > 0) rc = 0;
          else if (rc == 0) rc = 1;  // iterate below
          if (rc == 1) rc = 2;
        } else {
          rc = 2;
        }
        if (rc == 2) {
          rc = 0;
          py::Ref it = py::Ref::steal(PyObject_GetIter(result.get()));
          if (!it) rc = -1;
          while (rc == 0) {
            py::Ref item = py::Ref::steal(PyIter_Next(it.get()));
            if (!item) {
              if (PyErr_Occurred()) rc = -1;
              break;
            }
            if (!PyBytes_Check(item.get())) {
              PyErr_Format(PyExc_TypeError,
                           "the application yielded %.200s, not bytes",
                           Py_TYPE(item.get())->tp_name);
              rc = -1;
              break;
            }
            if (!req->started) {
              PyErr_SetString(PyExc_AssertionError,
                              "the application yielded data before start_response()");
              rc = -1;
              break;
            }
            rc = send_body(c, req, PyBytes_AS_STRING(item.get()),
                           static_cast<size_t>(PyBytes_GET_SIZE(item.get())));
          }
          if (rc == 0 && !req->started) {
            PyErr_SetString(PyExc_AssertionError,
                            "the application returned without calling start_response()");
            rc = -1;
          }
        }
        if (rc == 0) rc = finish_body(c, req);
        if (rc < 0) exc = py::fetch_error();
        // The iterable's close() is always called.
        if (PyObject_HasAttr(result.get(), K.close)) {
          py::Ref r = py::Ref::steal(PyObject_CallMethodNoArgs(result.get(), K.close));
          if (!r && !exc) exc = py::fetch_error();
          else if (!r) PyErr_WriteUnraisable(result.get());
        }
        ok = !exc;
      }
    }
  }
  if (!ok && !exc) exc = py::fetch_error();
  if (exc) {
    bool killed = PyErr_GivenExceptionMatches(exc.get(), py::greenlet::exit_exception());
    if (PyErr_GivenExceptionMatches(exc.get(), PyExc_KeyboardInterrupt) ||
        PyErr_GivenExceptionMatches(exc.get(), PyExc_SystemExit)) {
      // Ctrl-C (the interpreter runs signal handlers in whichever tasklet
      // runs Python code) or sys.exit(): the process is asked to stop, the
      // app did nothing wrong. No 500: the connection closes unanswered.
      req->keep_alive = false;
      req->headers_sent = true;
      c->aborted = true;
      req->escape = std::move(exc);
    } else if (req->client_gone || c->send_failed || c->aborted || killed) {
      req->keep_alive = false;
      req->headers_sent = true;  // nothing more to send
    } else if (!req->headers_sent) {
      int status = req->body_error ? req->body_error : 500;
      if (status == 500) log_error(s, "error in the WSGI application", exc.get());
      bool keep = status == 500 && p.keep_alive() && !s->stopping_;
      if (send_simple(c, req, status, "", keep) < 0) PyErr_Clear();
    } else {
      log_error(s, "error in the WSGI application after the response started",
                exc.get());
      req->keep_alive = false;
      c->aborted = true;  // abort: the response is incomplete
    }
  }
  if (req->content_length >= 0 && !req->no_body && !req->is_head &&
      req->sent_body != static_cast<uint64_t>(req->content_length))
    req->length_mismatch = true;
  if (req->length_mismatch) {
    req->keep_alive = false;
    // The connection closes (the client cannot tell where the body ends,
    // or the bytes over the length were dropped): say why, unless an
    // error already ended the response.
    if (!exc && !req->client_gone && !c->send_failed && !c->aborted)
      log_length_mismatch(c, req);
  }
  access_log(c, req, started);
  detach(req);
  if (!req->keep_alive) return false;
  // An unread body is drained (bounded) so it is never parsed as a request.
  if (!p.body_done()) {
    if (p.expect_continue() && !req->continue_sent) return false;
    if (p.chunked() || p.content_length() - static_cast<int64_t>(p.body_bytes()) >
                           static_cast<int64_t>(s->options_.max_drain))
      return false;
    while (!p.body_done()) {
      c->body.clear();
      c->body_off = 0;
      if (fill_body(c, req) < 0) {
        PyErr_Clear();
        return false;
      }
    }
  }
  c->body.clear();
  c->body.shrink_to_fit();
  c->body_off = 0;
  return true;
}

// A connection's request tasklet is done with the app: the last one to end
// wakes the tasklets waiting in wait_drained() (stop()).
void app_done(Server* s) {
  // At 1, a waiter that is itself a request tasklet is the last one left.
  if (--s->active_ > 1 || s->drain_waiters_.empty() || !s->hub_) return;
  for (Tasklet* t : s->drain_waiters_) s->hub_->schedule(t);
}

// Hands a connection whose app finished back to the server: closed
// gracefully (or at once when aborted).
void release_tasklet(Connection* c) {
  if (Tasklet* t = c->tasklet) {
    c->tasklet = nullptr;
    Py_DECREF(t->self());  // never the last: the hub holds a running tasklet
  }
}

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

// The tasklet entry point: serves the connection's requests until it has
// no complete request left, then hands it back to the hub as idle.
PyObject* serve(PyObject*, PyObject*) {
  Hub* hub = Hub::peek();
  Tasklet* t = hub ? hub->current_or_null() : nullptr;
  Connection* c = t ? static_cast<Connection*>(t->job_arg_) : nullptr;
  if (!c) {
    PyErr_SetString(PyExc_RuntimeError, "_serve_connection is the HTTP server's own");
    return nullptr;
  }
  t->job_arg_ = nullptr;
  Server* s = c->server;
  py::Ref hold = py::Ref::borrow(s->self());  // a closing connection drops its own
  for (;;) {
    if (c->aborted) {  // closed by the server before the app started
      end_app(c);
      break;
    }
    bool again;
    py::Ref escape;
    {
      // On the heap: wsgi.input and start_response point to it, and a
      // suspended tasklet's stack does not stay where it was.
      std::unique_ptr<Request> req(new Request());
      req->conn = c;
      again = handle_request(c, req.get());
      if (s->stopping_) again = false;
      escape = std::move(req->escape);
    }
    if (!again || c->aborted) {
      end_app(c);
      if (escape) {
        // Out of the tasklet: the hub raises it in the main tasklet.
        py::raise(escape.get());
        return nullptr;
      }
      break;
    }
    c->parser.next_message();
    Pump r = pump_head(c);
    if (r == Pump::kGone) {  // closed, or answered with an error
      app_done(s);
      break;
    }
    if (r == Pump::kHead) continue;  // pipelined, or already here
    release_tasklet(c);
    app_done(s);
    c->state = Connection::State::kIdle;
    go_idle(c);
    break;
  }
  Py_RETURN_NONE;
}

PyMethodDef serve_def = {"_serve_connection", serve, METH_NOARGS, nullptr};

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
  event_base* base = s->hub_->base();
  hub::assign_event(&c->ev, base, fd, EV_READ | EV_WRITE | EV_ET | EV_PERSIST | EV_CLOSED,
               on_conn_event, c);
  hub::assign_timer(&c->timer, base, on_conn_timer, c);
  if (event_add(&c->ev, nullptr) < 0) {
    destroy_conn(c);
    return;
  }
  c->registered = true;
  s->hub_->add_native_events(1);
  c->readable = true;
  process_conn(c);
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
    s->hub_->add_native_events(-1);
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
    if (c->tasklet && c->tasklet->state_ == hub::State::kDead) {
      // Its tasklet was killed before it ran: nothing will end it.
      app_done(s);
      destroy_conn(c);
      continue;
    }
    c->aborted = true;
    if (!s->inherited_) ::shutdown(c->fd, SHUT_RDWR);
    if (c->waiting_read || c->waiting_write) {
      c->hub->schedule(c->waiter);
    } else if (c->tasklet && c->tasklet->state_ == hub::State::kRunning &&
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

bool read_double(PyObject* kw, const char* name, double* out, bool allow_none) {
  PyObject* v = kw ? PyDict_GetItemString(kw, name) : nullptr;
  if (!v) return true;
  if (v == Py_None && allow_none) {
    *out = -1;
    return true;
  }
  double d = PyFloat_AsDouble(v);
  if (d == -1.0 && PyErr_Occurred()) return false;
  if (!(d > 0)) {
    PyErr_Format(PyExc_ValueError, "%s must be a positive number of seconds", name);
    return false;
  }
  *out = d;
  return true;
}

bool read_size(PyObject* kw, const char* name, uint64_t* out) {
  PyObject* v = kw ? PyDict_GetItemString(kw, name) : nullptr;
  if (!v) return true;
  if (!PyLong_Check(v)) {
    PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", name, Py_TYPE(v)->tp_name);
    return false;
  }
  long long n = PyLong_AsLongLong(v);
  if (n == -1 && PyErr_Occurred()) return false;
  if (n <= 0) {
    PyErr_Format(PyExc_ValueError, "%s must be positive", name);
    return false;
  }
  *out = static_cast<uint64_t>(n);
  return true;
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
  static const char* known[] = {
      "server_name", "server_port", "url_scheme", "errors", "log_error", "access_log",
      "max_request_line", "max_header_line", "max_header_block", "max_headers",
      "max_body", "max_trailer_block", "max_drain", "header_timeout", "body_timeout",
      "keepalive_timeout", "write_timeout", "accept_backoff", "multiprocess", nullptr};
  if (kw) {
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(kw, &pos, &key, &value)) {
      bool found = false;
      for (const char** k = known; *k; ++k)
        if (PyUnicode_Check(key) && PyUnicode_CompareWithASCIIString(key, *k) == 0) found = true;
      if (!found) {
        PyErr_Format(PyExc_TypeError, "HttpServer() got an unexpected keyword argument %R", key);
        return -1;
      }
    }
  }
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
  Options o;
  uint64_t v;
  v = o.limits.max_request_line;
  if (!read_size(kw, "max_request_line", &v)) return -1;
  o.limits.max_request_line = v;
  v = o.limits.max_header_line;
  if (!read_size(kw, "max_header_line", &v)) return -1;
  o.limits.max_header_line = v;
  v = o.limits.max_header_block;
  if (!read_size(kw, "max_header_block", &v)) return -1;
  o.limits.max_header_block = v;
  v = o.limits.max_headers;
  if (!read_size(kw, "max_headers", &v)) return -1;
  o.limits.max_headers = v;
  if (!read_size(kw, "max_body", &o.limits.max_body)) return -1;
  v = o.limits.max_trailer_block;
  if (!read_size(kw, "max_trailer_block", &v)) return -1;
  o.limits.max_trailer_block = v;
  v = o.max_drain;
  if (!read_size(kw, "max_drain", &v)) return -1;
  o.max_drain = v;
  if (!read_double(kw, "header_timeout", &o.header_timeout, false) ||
      !read_double(kw, "body_timeout", &o.body_timeout, false) ||
      !read_double(kw, "keepalive_timeout", &o.keepalive_timeout, false) ||
      !read_double(kw, "write_timeout", &o.write_timeout, false) ||
      !read_double(kw, "accept_backoff", &o.accept_backoff, false))
    return -1;
  PyObject* mp = kw ? PyDict_GetItemString(kw, "multiprocess") : nullptr;
  if (mp) {
    int b = PyObject_IsTrue(mp);
    if (b < 0) return -1;
    o.multiprocess = b;
  }
  auto get = [&](const char* name, PyObject* dflt) -> py::Ref {
    PyObject* x = kw ? PyDict_GetItemString(kw, name) : nullptr;
    return py::Ref::borrow(x ? x : dflt);
  };
  py::Ref name = get("server_name", nullptr);
  py::Ref port = get("server_port", nullptr);
  py::Ref scheme = get("url_scheme", nullptr);
  if (!name || !PyUnicode_Check(name.get()) || !port || !PyUnicode_Check(port.get())) {
    PyErr_SetString(PyExc_TypeError, "server_name and server_port must be given as str");
    return -1;
  }
  if (!scheme) scheme = py::Ref::steal(PyUnicode_InternFromString("http"));
  if (!scheme || !PyUnicode_Check(scheme.get())) {
    PyErr_SetString(PyExc_TypeError, "url_scheme must be a str");
    return -1;
  }
  py::Ref errors = get("errors", nullptr);
  if (!errors) errors = py::Ref::borrow(PySys_GetObject("stderr"));
  if (!errors) errors = py::Ref::borrow(Py_None);
  s->options_ = o;
  s->listen_fd_ = fd;
  s->listener_ = py::Ref::borrow(listener);
  s->app_ = py::Ref::borrow(app);
  s->server_name_ = std::move(name);
  s->server_port_ = std::move(port);
  s->url_scheme_ = std::move(scheme);
  s->errors_ = std::move(errors);
  s->log_error_ = get("log_error", Py_None);
  s->access_log_ = get("access_log", Py_None);
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
  hub->add_native_events(1);
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
      c->hub->add_native_events(-1);
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
  serve_fn = PyCFunction_New(&serve_def, nullptr);
  if (!serve_fn) return nullptr;

  static PyType_Slot input_slots[] = {
      {Py_tp_methods, input_methods},
      {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
      {Py_tp_iternext, reinterpret_cast<void*>(input_iternext)},
      {Py_tp_doc, const_cast<char*>("wsgi.input: the request body, read cooperatively")},
      {0, nullptr}};
  static PyType_Spec input_spec = {"ptsevent._core.Input", sizeof(Input), 0,
                                   Py_TPFLAGS_DEFAULT, input_slots};
  InputType = py::make_heap_type<PyObject>(&input_spec);

  static PyType_Slot sr_slots[] = {
      {Py_tp_call, reinterpret_cast<void*>(start_response_call)},
      {Py_tp_methods, start_response_methods},
      {Py_tp_doc, const_cast<char*>("start_response(status, headers, exc_info=None)")},
      {0, nullptr}};
  static PyType_Spec sr_spec = {"ptsevent._core.StartResponse", sizeof(StartResponse), 0,
                                Py_TPFLAGS_DEFAULT, sr_slots};
  StartResponseType =
      py::make_heap_type<PyObject, nullptr, start_response_destroy>(&sr_spec);

  static PyType_Slot fw_slots[] = {
      {Py_tp_init, reinterpret_cast<void*>(file_wrapper_init)},
      {Py_tp_new, reinterpret_cast<void*>(PyType_GenericNew)},
      {Py_tp_traverse, reinterpret_cast<void*>(file_wrapper_traverse)},
      {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
      {Py_tp_iternext, reinterpret_cast<void*>(file_wrapper_next)},
      {Py_tp_methods, file_wrapper_methods},
      {Py_tp_members, file_wrapper_members},
      {Py_tp_doc, const_cast<char*>(
                      "FileWrapper(filelike, blksize=8192)\n--\n\n"
                      "FileWrapper(filelike, blksize=8192): wsgi.file_wrapper; a "
                      "regular file is sent with sendfile(2)")},
      {0, nullptr}};
  static PyType_Spec fw_spec = {"ptsevent.wsgi.FileWrapper", sizeof(FileWrapper), 0,
                                Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, fw_slots};
  FileWrapperType = py::make_heap_type<PyObject, file_wrapper_clear>(&fw_spec);

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
  if (!InputType || !StartResponseType || !FileWrapperType) return nullptr;
  ServerType = py::make_heap_type<PyObject, server_clear, server_destroy>(
      &server_spec);
  return ServerType;
}

PyTypeObject* file_wrapper_type() { return FileWrapperType; }

}  // namespace ptsevent::http

// The HTTP/1.1 WSGI server (`_core.HttpServer`): the listening socket and
// the connections it accepted (server.cpp); the type (server_type.cpp).
//
// A request goes through one file per phase: accept (server.cpp), the
// connection's state machine and socket I/O (connection.cpp, through the
// seam of transport.h), the request tasklet that calls the app
// (request.cpp), the environ (environ.cpp, cgi.cpp), the request body and
// wsgi.input (body.cpp), start_response and the response framing
// (response.cpp). Options: options.cpp.
//
// Ownership: the server owns its connections, and each connection holds a
// reference to the server. While accepting, the server holds one to itself.
#pragma once

#include <Python.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <sys/socket.h>

#include <string>

#include "http/connection.h"
#include "http/options.h"
#include "http/parser.h"
#include "hub/hub.h"
#include "hub/wait_record.h"
#include "py/ref.h"

namespace ptsevent::http {

struct ServerOwner : hub::Hub::NativeOwner {
  Server* server = nullptr;
  void hub_closing() noexcept override;
  void after_fork_in_child() override;
};

// A tasklet's wait in wait_drained() (HttpServer.wait_drained, stop()).
struct DrainWait : hub::WaitRecord {
  DrainWait() noexcept : WaitRecord(hub::WaitKind::kDrain) {}
};

struct Server {
  PyObject_HEAD hub::Hub* hub_;
  uint64_t hub_serial_;
  int listen_fd_;
  py::Ref listener_;  // the Python socket (keeps the descriptor open)
  py::Ref app_;
  py::Ref context_;  // contextvars of start(): each request runs in a copy
  py::Ref server_name_, server_port_, url_scheme_, errors_;
  py::Ref log_error_;   // callable(message, exc) or None
  py::Ref access_log_;  // callable(line) or None
  py::Ref environ_template_;
  py::Ref last_addr_;  // REMOTE_ADDR of the last IPv4 peer
  uint32_t last_peer4_ = 0;
  Options options_;
  struct event accept_ev_;
  struct event backoff_ev_;
  // A libevent callback argument (hub/event_owner.h): a Python object on
  // the heap, its events deleted by close() and hub_closing() first.
  static constexpr bool kEventOwner = true;
  Connection* head_ = nullptr;
  long connections_ = 0;
  long active_ = 0;  // connections running the app
  // Tasklets in wait_drained(), woken when active_ drops to 0 (or to 1,
  // when a waiter is itself a request tasklet); each re-checks and waits
  // again if apps still run.
  hub::WaitList drain_waiters_;
  hub::WaitRecordPool<DrainWait> drain_spare_;
  unsigned long long requests_ = 0;
  unsigned long long accept_errors_ = 0;
  bool accepting_ = false;
  bool accept_deferred_ = false;
  bool stopping_ = false;
  bool backoff_armed_ = false;
  bool started_ = false;
  bool closed_ = false;
  bool inherited_ = false;  // started by the parent of this forked process

  ServerOwner owner_;
  std::string date_;  // the cached Date header line
  time_t date_at_ = 0;

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
};

// ptsevent.wsgi.RequestEntityTooLarge (a ValueError): what wsgi.input
// raises when the request body goes over max_body. Made by the module.
extern PyObject* RequestEntityTooLarge;

// The server's operations (server.cpp), for its Python methods
// (server_type.cpp); those returning int return -1 with an error set.
int start(Server* s);  // accept on this thread's hub
// Raises RuntimeError once the server runs on another thread's hub.
int check_thread(Server* s);
void stop_accepting(Server* s);
void stop_idle(Server* s);     // and close idle connections now
void abort_all(Server* s);     // and close every connection now
void close_server(Server* s);  // all of the above, and for good
// Suspends the calling tasklet until no request runs (1) or `seconds` pass
// (0); -1 with an error set.
int wait_drained(Server* s, double seconds);

// The Python types (server_type.cpp): HttpServer, and the server's
// others (wsgi.input, start_response, wsgi.file_wrapper) made with it.
PyTypeObject* make_server_type();
PyTypeObject* file_wrapper_type();
extern PyTypeObject* ServerType;

// A connection's request tasklet is done with the app (server.cpp): the
// last one to end wakes the tasklets waiting in wait_drained().
void app_done(Server* s);

// A Python int as a descriptor (int range), or -1 with an exception.
int as_int(PyObject* o);

}  // namespace ptsevent::http

// The HTTP/1.1 WSGI server (`_core.HttpServer`).
//
// Connections are C++ objects, not tasklets. An idle keep-alive connection
// is a Connection with one persistent edge-triggered libevent event and a
// timer: its reads land in a per-thread scratch buffer, and only bytes that
// belong to a request not yet complete are kept. When a request head is
// complete the server binds a tasklet (a pooled greenlet) to the connection
// for as long as the application runs; the tasklet answers pipelined
// requests already received, then the connection goes back to idle and the
// tasklet ends.
//
// libevent callbacks run without the GIL: they only set flags, wake the
// connection's tasklet, or queue the connection on the hub's deferred list
// (Hub::defer), whose entries the hub runs with the GIL after the poll.
//
// Ownership: the server owns its connections. A connection whose app is
// running is also referenced by its tasklet; closing it then only shuts the
// socket down and marks it, and the tasklet frees it when it ends.
#pragma once

#include <Python.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "http/parser.h"
#include "hub/hub.h"
#include "py/ref.h"

namespace ptsevent::http {

struct Server;

struct Options {
  Limits limits;
  double header_timeout = 10.0;     // first byte of a head -> complete head
  double body_timeout = 30.0;       // each wait for request body bytes
  double keepalive_timeout = 30.0;  // idle between requests
  double write_timeout = 30.0;      // each wait to write the response
  size_t max_drain = 65536;         // unread body bytes drained for keep-alive
  double accept_backoff = 0.1;      // pause after EMFILE/ENFILE
  bool multiprocess = false;
};

struct Connection {
  enum class State : uint8_t {
    kIdle,    // between requests: no tasklet
    kHead,    // part of a head received: no tasklet
    kApp,     // a tasklet owns the connection
    kLinger,  // an error response sent: draining input until EOF, then close
  };

  Server* server;
  hub::Hub* hub;
  int fd;
  struct event ev;
  struct event timer;
  // A libevent callback argument (hub/event_owner.h): allocated with new,
  // its events deleted before it is.
  static constexpr bool kEventOwner = true;
  RequestParser parser;
  std::string in;    // received bytes not yet given to the parser
  std::string body;  // decoded body bytes not yet read by the app
  size_t body_off = 0;
  hub::Tasklet* tasklet = nullptr;  // while kApp (the hub holds it)
  hub::Tasklet* waiter = nullptr;   // the tasklet inside wait_io, if any
  Connection* prev = nullptr;
  Connection* next = nullptr;
  struct sockaddr_storage* peer = nullptr;  // allocated only for non-IPv4
  uint32_t peer4 = 0;                        // IPv4 address (network order)
  uint16_t peer_port = 0;                    // host order
  State state = State::kIdle;
  bool readable = true;  // not known to be drained (edge-triggered)
  bool writable = true;
  bool peer_closed = false;
  // A short read cleared `readable`, but the same edge may also have carried
  // a reset (libevent reports EPOLLHUP/EPOLLERR as READ|WRITE, without
  // EV_CLOSED): read once more before waiting, unless a send succeeded
  // since (a send fails on a reset connection).
  bool unconfirmed = false;
  bool timed_out = false;
  bool deferred = false;
  bool waiting_read = false;
  bool waiting_write = false;
  bool timer_armed = false;
  bool registered = false;
  bool aborted = false;  // closed by the server (stop) while the app ran
  bool send_failed = false;  // the client reset, or stopped reading

  Connection(Server* s, hub::Hub* h, int fd, const Limits* limits)
      : server(s), hub(h), fd(fd), parser(limits) {}
};

struct ServerOwner : hub::Hub::NativeOwner {
  Server* server = nullptr;
  void hub_closing() noexcept override;
  void after_fork_in_child() override;
};

struct Server {
  PyObject_HEAD
  hub::Hub* hub_;
  uint64_t hub_serial_;
  int listen_fd_;
  py::Ref listener_;  // the Python socket (keeps the descriptor open)
  py::Ref app_;
  py::Ref context_;   // contextvars of start(): each request runs in a copy
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
  // Tasklets in wait_drained(), woken when active_ drops to 0. They are
  // suspended (live, held by the hub) and remove themselves when they wake.
  std::vector<hub::Tasklet*> drain_waiters_;
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

PyTypeObject* make_server_type();
PyTypeObject* file_wrapper_type();
extern PyTypeObject* ServerType;

}  // namespace ptsevent::http

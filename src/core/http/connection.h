// Connection: one client's socket, between accept() and close().
//
// Connections are C++ objects, not tasklets. An idle keep-alive connection
// is a Connection with one persistent edge-triggered libevent event and a
// timer: its reads land in a per-thread scratch buffer, and only bytes that
// belong to a request not yet complete are kept. When a request head is
// complete the connection starts a request tasklet (request.cpp) for as long
// as the application runs; the tasklet answers pipelined requests already
// received, then gives the connection back, and ends.
//
// The connection and its request tasklet meet at two hand-offs only:
//   start_app()  the connection, a complete head parsed, binds a tasklet
//                (a pooled greenlet) that calls the app;
//   after_app()  the tasklet, the response written, says whether the
//                connection may go on (AppOutcome); the connection answers
//                what happens next (NextRequest): another request already
//                here, back to idle, or gone.
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
#include <sys/uio.h>

#include <string>

#include "http/parser.h"
#include "hub/hub.h"

namespace ptsevent::http {

struct Server;

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
  uint32_t peer4 = 0;                       // IPv4 address (network order)
  uint16_t peer_port = 0;                   // host order
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
  bool aborted = false;      // closed by the server (stop) while the app ran
  bool send_failed = false;  // the client reset, or stopped reading

  Connection(Server* s, hub::Hub* h, int fd, const Limits* limits)
      : server(s), hub(h), fd(fd), parser(limits) {}
};

// Reads land here first (per thread): an idle connection keeps no buffer.
constexpr size_t kScratch = 65536;
inline char* scratch() noexcept {
  static thread_local char buffer[kScratch];
  return buffer;
}

// ------------------------------------------------ the state machine (GIL)

// Starts a connection just accepted (linked into its server's list):
// registers its events and reads what is already there.
void open_conn(Connection* c);
// Frees a connection that is not kApp and closes its socket.
void destroy_conn(Connection* c);
void arm_timer(Connection* c, double seconds);
void disarm_timer(Connection* c);

// ------------------------------------------------------------- hand-offs

// What the request tasklet says when it is done with a request.
enum class AppOutcome : uint8_t {
  kKeepAlive,  // the request was read and answered as framed: go on
  kClose,      // close: gracefully (linger), or at once when aborted
};

// What the connection does next, the tasklet's answer from after_app().
enum class NextRequest : uint8_t {
  kAgain,  // another complete head is here (pipelined): serve it
  kIdle,   // nothing complete yet: the connection waits without a tasklet
  kGone,   // closed (or lingering after an error response)
};

// The tasklet hands the connection back after a request. Only kAgain leaves
// the connection to the calling tasklet; after kIdle and kGone the tasklet
// no longer owns it (it may already be freed).
NextRequest after_app(Connection* c, AppOutcome outcome);

// ------------------------------------------- tasklet-side I/O (the tasklet
// that runs the app; they suspend it while the socket is not ready)

enum class Wait : uint8_t {
  kReady,     // readable (or writable): try the call again
  kTimedOut,  // the timeout passed and it is still not ready
  kError,     // exception set: interrupted, or the server aborted it
};
// Waits for the connection to become readable or writable.
Wait wait_io(Connection* c, bool write, double timeout);
// Writes every byte of iov (modified), waiting up to write_timeout at a
// time. -1 with an exception set.
int send_iov(Connection* c, struct iovec* iov, int cnt);
inline int send_bytes(Connection* c, const char* data, size_t len) {
  struct iovec iov = {const_cast<char*>(data), len};
  return send_iov(c, &iov, 1);
}

// The cached "Date: ..." header line (one strftime per second).
const std::string& date_line(Server* s);

}  // namespace ptsevent::http

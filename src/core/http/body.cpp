#include "http/body.h"

#include <errno.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "http/server.h"
#include "http/transport.h"

namespace ptsevent::http {

namespace {

// Sends "100 Continue" if the client asked for it and it is still due.
int continue_if_expected(Connection* c, Request* req) {
  if (c->parser.expect_continue() && !req->continue_sent &&
      !req->headers_sent) {
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
      Wait w = wait_io(c, false, c->server->options_.body_timeout);
      if (w == Wait::kError) return -1;
      if (w == Wait::kTimedOut) {
        req->client_gone = true;  // nothing sensible left to answer
        PyErr_SetString(PyExc_TimeoutError,
                        "timed out reading the request body");
        return -1;
      }
    }
    c->unconfirmed = false;
    ssize_t n = transport_recv(c, buf, cap);
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
      PyErr_SetString(
          PyExc_ConnectionResetError,
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
      ssize_t n = recv_body(c, req, scratch(), kScratch);
      if (n < 0) return -1;
      data = scratch();
      len = static_cast<size_t>(n);
    }
    size_t used = 0;
    RequestParser::Status st = feed_body(c, req, data, len, &used, &c->body);
    if (st == RequestParser::Status::kError) return -1;
    if (from_in)
      c->in.erase(0, used);
    else if (used < len)
      c->in.assign(data + used, len - used);
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

PyObject* read_direct(Connection* c, Request* req, Py_ssize_t size,
                      bool* handled) {
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
  if (size >= 0 && static_cast<uint64_t>(size) < want)
    want = static_cast<uint64_t>(size);
  if (want < avail + kDirectRead ||
      want > static_cast<uint64_t>(PY_SSIZE_T_MAX))
    return nullptr;
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
    RequestParser::Status st = feed_body(
        c, req, dest + filled, static_cast<size_t>(n), &used, nullptr);
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

}  // namespace

PyObject* read_body(Connection* c, Request* req, Py_ssize_t size) {
  bool handled;
  PyObject* direct = read_direct(c, req, size, &handled);
  if (handled) return direct;
  for (;;) {
    size_t avail = c->body.size() - c->body_off;
    if (size >= 0 && avail >= static_cast<size_t>(size)) break;
    int r = fill_body(c, req);
    if (r < 0) return nullptr;
    if (r == 0) break;
  }
  size_t avail = c->body.size() - c->body_off;
  return take_body(c, size < 0 ? avail : static_cast<size_t>(size));
}

PyObject* readline_body(Connection* c, Request* req, Py_ssize_t size) {
  size_t scanned = 0;
  for (;;) {
    size_t avail = c->body.size() - c->body_off;
    size_t limit =
        size >= 0 ? std::min(avail, static_cast<size_t>(size)) : avail;
    const char* base = c->body.data() + c->body_off;
    const void* nl = limit > scanned
                         ? std::memchr(base + scanned, '\n', limit - scanned)
                         : nullptr;
    if (nl)
      return take_body(
          c, static_cast<size_t>(static_cast<const char*>(nl) - base) + 1);
    if (size >= 0 && avail >= static_cast<size_t>(size))
      return take_body(c, static_cast<size_t>(size));
    scanned = limit;
    int r = fill_body(c, req);
    if (r < 0) return nullptr;
    if (r == 0) return take_body(c, c->body.size() - c->body_off);
  }
}

bool drain_unread_body(Connection* c, Request* req) {
  RequestParser& p = c->parser;
  if (!p.body_done()) {
    if (p.expect_continue() && !req->continue_sent) return false;
    if (p.chunked() ||
        p.content_length() - static_cast<int64_t>(p.body_bytes()) >
            static_cast<int64_t>(c->server->options_.max_drain))
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

}  // namespace ptsevent::http

#include "http/response.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "http/environ.h"
#include "http/server.h"
#include "http/transport.h"
#include "py/errors.h"

namespace ptsevent::http {

namespace {

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
// The view borrows o's buffer: o must outlive it.
int latin1_of(PyObject* o, const char* what, std::string_view* out) {
  if (!PyUnicode_Check(o)) {
    PyErr_Format(PyExc_TypeError, "%s must be str, not %.200s", what,
                 Py_TYPE(o)->tp_name);
    return -1;
  }
  if (PyUnicode_KIND(o) == PyUnicode_1BYTE_KIND) {
    *out = std::string_view(static_cast<const char*>(PyUnicode_DATA(o)),
                            static_cast<size_t>(PyUnicode_GET_LENGTH(o)));
    return 0;
  }
  PyErr_Format(PyExc_ValueError, "%s is not latin-1 text: %R", what, o);
  return -1;
}

// What start_response learnt from the app's headers.
struct HeaderFacts {
  int64_t content_length = -1;
  bool has_date = false;
  bool has_server = false;
  bool keep_alive = true;
};

// Checks the app's headers and appends those the server passes on to
// *head (the framing and hop-by-hop ones are the server's own). -1 with
// TypeError / ValueError.
int collect_headers(PyObject* headers, bool no_body, std::string* head,
                    HeaderFacts* facts) {
  Py_ssize_t n = PyList_GET_SIZE(headers);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyList_GET_ITEM(headers, i);
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
      PyErr_Format(PyExc_TypeError, "header %zd must be a (name, value) tuple",
                   i);
      return -1;
    }
    std::string_view name, value;
    if (latin1_of(PyTuple_GET_ITEM(item, 0), "header name", &name) < 0 ||
        latin1_of(PyTuple_GET_ITEM(item, 1), "header value", &value) < 0)
      return -1;
    if (!valid_token(name)) {
      PyErr_Format(PyExc_ValueError, "invalid header name: %R",
                   PyTuple_GET_ITEM(item, 0));
      return -1;
    }
    if (!valid_text(value)) {
      PyErr_Format(PyExc_ValueError, "invalid header value for %R: %R",
                   PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
      return -1;
    }
    if (iequals(name, "content-length")) {
      int64_t v = 0;
      if (value.empty() || value.size() > 18) goto bad_length;
      for (unsigned char ch : value) {
        if (ch < '0' || ch > '9') goto bad_length;
        v = v * 10 + (ch - '0');
      }
      if (facts->content_length >= 0 && v != facts->content_length) {
        PyErr_Format(PyExc_ValueError,
                     "conflicting Content-Length values: %lld and %R",
                     static_cast<long long>(facts->content_length),
                     PyTuple_GET_ITEM(item, 1));
        return -1;
      }
      bool repeated = facts->content_length >= 0;
      facts->content_length = v;
      if (repeated || no_body) continue;  // one field, or none without a body
    } else if (iequals(name, "transfer-encoding")) {
      continue;  // the server frames the body itself
    } else if (iequals(name, "connection")) {
      if (iequals(value, "close")) facts->keep_alive = false;
      continue;  // hop-by-hop: the server writes its own
    } else if (iequals(name, "date")) {
      facts->has_date = true;
    } else if (iequals(name, "server")) {
      facts->has_server = true;
    }
    head->append(name).append(": ").append(value).append("\r\n");
    continue;
  bad_length:
    PyErr_Format(PyExc_ValueError, "invalid Content-Length: %R",
                 PyTuple_GET_ITEM(item, 1));
    return -1;
  }
  return 0;
}

// The status line's code (100-599), or -1 with TypeError / ValueError.
int parse_status(PyObject* status, std::string_view* st) {
  if (latin1_of(status, "status", st) < 0) return -1;
  std::string_view v = *st;
  if (v.size() < 4 || v[3] != ' ' || !(v[0] >= '1' && v[0] <= '5') ||
      !(v[1] >= '0' && v[1] <= '9') || !(v[2] >= '0' && v[2] <= '9') ||
      !valid_text(v)) {
    PyErr_Format(PyExc_ValueError, "invalid status line: %R", status);
    return -1;
  }
  return (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
}

// Whether start_response may be called now (PEP 3333's exc_info rules).
// 0 yes, -1 with the exception to raise.
int may_start(Request* req, PyObject* exc_info) {
  if (!req) {
    PyErr_SetString(PyExc_RuntimeError,
                    "start_response called after its request ended");
    return -1;
  }
  if (exc_info != Py_None) {
    if (req->headers_sent) {
      // PEP 3333: re-raise the app's exception; the response is lost.
      if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "exc_info must be a (type, value, traceback) tuple");
        return -1;
      }
      PyObject* value = PyTuple_GET_ITEM(exc_info, 1);
      py::raise(value);
      return -1;
    }
  } else if (req->started) {
    PyErr_SetString(PyExc_AssertionError,
                    "start_response called a second time without exc_info");
    return -1;
  }
  return 0;
}

}  // namespace

int start_response(Request* req, PyObject* status, PyObject* headers,
                   PyObject* exc_info) {
  if (may_start(req, exc_info) < 0) return -1;
  std::string_view st;
  int code = parse_status(status, &st);
  if (code < 0) return -1;
  if (!PyList_Check(headers)) {
    PyErr_Format(PyExc_TypeError, "headers must be a list, not %.200s",
                 Py_TYPE(headers)->tp_name);
    return -1;
  }
  std::string head;
  head.reserve(256);
  head.append("HTTP/1.1 ").append(st).append("\r\n");
  if (code < 200) {
    // An interim status is never the answer to a request: sent as the
    // final one, every later response on the connection would be taken
    // as the answer to the request before it.
    PyErr_Format(PyExc_ValueError,
                 "status %R is informational (1xx): not a final response",
                 status);
    return -1;
  }
  // 204 and 304 have no body, hence no framing: the app's Content-Length
  // is not sent (a 304's would describe another response).
  bool no_body = code == 204 || code == 304;
  HeaderFacts facts;
  facts.keep_alive = req->keep_alive;
  if (collect_headers(headers, no_body, &head, &facts) < 0) return -1;
  req->head.swap(head);
  req->status = code;
  req->content_length = no_body ? -1 : facts.content_length;
  req->has_date = facts.has_date;
  req->has_server = facts.has_server;
  req->keep_alive = facts.keep_alive;
  req->no_body = no_body;
  req->started = true;
  return 0;
}

namespace {

int send_headers(Connection* c, Request* req, const char* first,
                 size_t first_len, int64_t known_total);

// --------------------------------------------------------------- responses

std::string hex_size(size_t n) {
  char buf[32];
  int k = snprintf(buf, sizeof buf, "%zx\r\n", n);
  return std::string(buf, static_cast<size_t>(k));
}

// Completes the header block (framing, Date, Server, Connection) and sends
// it with the first body bytes in one writev.
int send_headers(Connection* c, Request* req, const char* first,
                 size_t first_len, int64_t known_total) {
  std::string& h = req->head;
  if (req->no_body) {
    // 1xx, 204, 304: no body and no framing of ours.
  } else if (req->content_length >= 0) {
    // The app's own Content-Length is in the head already.
  } else if (known_total >= 0) {
    req->content_length = known_total;
    h.append("Content-Length: ")
        .append(std::to_string(known_total))
        .append("\r\n");
  } else if (req->is_head) {
    // A HEAD answer without a length: nothing to frame.
  } else if (req->minor == 1) {
    req->chunked = true;
    h.append("Transfer-Encoding: chunked\r\n");
  } else {
    req->keep_alive = false;  // HTTP/1.0: the end of the body is the close
  }
  if (c->server->stopping_) req->keep_alive = false;
  if (c->parser.expect_continue() && !req->continue_sent &&
      !c->parser.body_done())
    req->keep_alive =
        false;  // the body never came: the connection cannot go on
  if (!req->has_date) h.append(date_line(c->server));
  if (!req->has_server) h.append("Server: ptsevent\r\n");
  if (!req->keep_alive)
    h.append("Connection: close\r\n");
  else if (req->minor == 0)
    h.append("Connection: keep-alive\r\n");
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

}  // namespace

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

namespace {

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
int send_sequence(Connection* c, Request* req, PyObject* result,
                  int64_t total) {
  Py_ssize_t n = PySequence_Fast_GET_SIZE(result);
  PyObject** items = PySequence_Fast_ITEMS(result);
  if (req->headers_sent || n == 1 || req->content_length >= 0 || req->no_body ||
      req->is_head) {
    for (Py_ssize_t i = 0; i < n; ++i) {
      const char* d = PyBytes_AS_STRING(items[i]);
      size_t len = static_cast<size_t>(PyBytes_GET_SIZE(items[i]));
      int rc = req->headers_sent
                   ? send_body(c, req, d, len)
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

enum class FileSent : uint8_t {
  kSent,      // the file went out with sendfile(2)
  kNotAFile,  // not a regular file: iterate the wrapper instead
  kError,     // exception set
};

// wsgi.file_wrapper over a regular file: sendfile(2).
FileSent send_file(Connection* c, Request* req, FileWrapper* fw) {
  py::Ref fdobj =
      py::Ref::steal(PyObject_CallMethodNoArgs(fw->filelike, K.fileno));
  if (!fdobj) {
    PyErr_Clear();
    return FileSent::kNotAFile;
  }
  int ffd = as_int(fdobj.get());
  if (ffd < 0) {
    PyErr_Clear();
    return FileSent::kNotAFile;
  }
  struct stat st;
  if (fstat(ffd, &st) < 0 || !S_ISREG(st.st_mode)) return FileSent::kNotAFile;
  // A buffered file object may hold read-ahead: use its logical position.
  off_t offset;
  py::Ref pos =
      py::Ref::steal(PyObject_CallMethod(fw->filelike, "tell", nullptr));
  if (pos) {
    offset = static_cast<off_t>(PyLong_AsLongLong(pos.get()));
    if (PyErr_Occurred()) return FileSent::kError;
  } else {
    PyErr_Clear();
    offset = lseek(ffd, 0, SEEK_CUR);
    if (offset < 0) return FileSent::kNotAFile;
  }
  uint64_t count =
      st.st_size > offset ? static_cast<uint64_t>(st.st_size - offset) : 0;
  // What the file holds now; sent below up to the length.
  req->app_body += count;
  if (req->content_length >= 0 &&
      static_cast<uint64_t>(req->content_length) < count)
    count = static_cast<uint64_t>(req->content_length);
  if (send_headers(c, req, nullptr, 0, static_cast<int64_t>(count)) < 0)
    return FileSent::kError;
  if (req->is_head || req->no_body) return FileSent::kSent;
  if (req->chunked)
    return FileSent::kNotAFile;  // not reached: the length is known
  while (count > 0) {
    if (c->aborted) {
      PyErr_SetString(PyExc_ConnectionAbortedError,
                      "the server closed the connection");
      return FileSent::kError;
    }
    size_t chunk = count > (1u << 30) ? (1u << 30) : static_cast<size_t>(count);
    ssize_t n = transport_sendfile(c, ffd, &offset, chunk);
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
      Wait w = wait_io(c, true, c->server->options_.write_timeout);
      if (w == Wait::kError) return FileSent::kError;
      if (w == Wait::kTimedOut) {
        c->send_failed = true;
        PyErr_SetString(PyExc_TimeoutError, "timed out writing the response");
        return FileSent::kError;
      }
      continue;
    }
    c->send_failed = true;
    PyErr_SetFromErrno(PyExc_OSError);
    return FileSent::kError;
  }
  return FileSent::kSent;
}

// The items of an iterable (a generator, a file wrapper over a non-regular
// file, any iterable object) sent as they come.
int send_iterable(Connection* c, Request* req, PyObject* result) {
  py::Ref it = py::Ref::steal(PyObject_GetIter(result));
  if (!it) return -1;
  for (;;) {
    py::Ref item = py::Ref::steal(PyIter_Next(it.get()));
    if (!item) return PyErr_Occurred() ? -1 : 0;
    if (!PyBytes_Check(item.get())) {
      PyErr_Format(PyExc_TypeError, "the application yielded %.200s, not bytes",
                   Py_TYPE(item.get())->tp_name);
      return -1;
    }
    if (!req->started) {
      PyErr_SetString(PyExc_AssertionError,
                      "the application yielded data before start_response()");
      return -1;
    }
    if (send_body(c, req, PyBytes_AS_STRING(item.get()),
                  static_cast<size_t>(PyBytes_GET_SIZE(item.get()))) < 0)
      return -1;
  }
}

// The result's body, before the end of the response (finish_body).
int send_result_body(Connection* c, Request* req, PyObject* result) {
  int64_t total = sequence_total(result);
  if (total >= 0 && req->started) return send_sequence(c, req, result, total);
  if (Py_TYPE(result) == FileWrapperType && req->started &&
      !req->headers_sent) {
    switch (send_file(c, req, reinterpret_cast<FileWrapper*>(result))) {
      case FileSent::kSent:
        return 0;
      case FileSent::kError:
        return -1;
      case FileSent::kNotAFile:
        break;  // iterated below
    }
  }
  if (send_iterable(c, req, result) < 0) return -1;
  if (!req->started) {
    PyErr_SetString(
        PyExc_AssertionError,
        "the application returned without calling start_response()");
    return -1;
  }
  return 0;
}

}  // namespace

int send_result(Connection* c, Request* req, PyObject* result) {
  if (send_result_body(c, req, result) < 0) return -1;
  return finish_body(c, req);
}

int send_simple(Connection* c, Request* req, int status, bool keep_alive) {
  req->keep_alive = keep_alive;
  std::string body =
      std::to_string(status) + " " + reason_phrase(status) + "\n";
  req->head = "HTTP/1.1 " + std::to_string(status) + " " +
              reason_phrase(status) +
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

}  // namespace ptsevent::http

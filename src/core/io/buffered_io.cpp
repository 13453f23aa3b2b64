#include "io/buffered_io.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "hub/timeout.h"
#include "io/byte_buffer.h"
#include "io/io_handle.h"
#include "py/heap_type.h"
#include "py/ref.h"

namespace ptsevent::io {

namespace {

constexpr size_t kReadChunk = 65536;
constexpr size_t kWriteFlushAt = 65536;

// Reads once into the buffer, waiting as needed. Returns the number of
// bytes added (0 at EOF) or -1 with an error.
Py_ssize_t fill(BufferedIo* b, const Deadline& d) {
  IoHandle* h = b->in();
  for (;;) {
    if (h->closed_) {
      errno = EBADF;
      PyErr_SetFromErrno(PyExc_OSError);
      return -1;
    }
    if (wait_if_drained(h, d) < 0) return -1;
    char* dst = b->rbuf_.reserve(kReadChunk);
    if (!dst) return PyErr_NoMemory(), -1;
    ssize_t n = ::read(h->fd_, dst, kReadChunk);
    if (n > 0) {
      h->after_read(n, kReadChunk);
      b->rbuf_.commit(n);
      return n;
    }
    if (n == 0) {
      b->eof_ = true;
      return 0;
    }
    // About to wait (maybe for long, on an idle connection): give back the
    // chunk reserved for this read if nothing is buffered.
    b->rbuf_.shrink_if_empty();
    if (retry_after_failure(h, EV_READ, d) < 0) return -1;
  }
}

PyObject* take(BufferedIo* b, size_t n) {
  if (n > b->rbuf_.size()) n = b->rbuf_.size();
  PyObject* r = PyBytes_FromStringAndSize(b->rbuf_.data(), n);
  if (r) {
    b->rbuf_.consume(n);
    b->rbuf_.shrink_if_empty();
  }
  return r;
}

// Fills until `delim` is buffered (or limit bytes, or EOF). Returns the
// length to take including the delimiter, or -1 with an error.
Py_ssize_t scan_for(BufferedIo* b, std::string_view delim, Py_ssize_t limit) {
  Deadline d(b->read_timeout_);
  size_t searched = 0;
  for (;;) {
    std::string_view have(b->rbuf_.data(), b->rbuf_.size());
    size_t from = searched >= delim.size() ? searched - delim.size() + 1 : 0;
    size_t pos = have.find(delim, from);
    if (pos != std::string_view::npos) {
      size_t len = pos + delim.size();
      return limit >= 0 && static_cast<size_t>(limit) < len ? limit : len;
    }
    if (limit >= 0 && have.size() >= static_cast<size_t>(limit)) return limit;
    searched = have.size();
    if (b->eof_) return have.size();
    Py_ssize_t n = fill(b, d);
    if (n < 0) return -1;
  }
}

int send_all(BufferedIo* b, const char* p, size_t n, const Deadline& d) {
  IoHandle* h = b->out();
  while (n) {
    if (h->closed_) {
      errno = EBADF;
      PyErr_SetFromErrno(PyExc_OSError);
      return -1;
    }
    ssize_t k = ::write(h->fd_, p, n);
    if (k >= 0) {
      if (k > 0 && h == b->in()) h->after_send();
      p += k;
      n -= k;
      continue;
    }
    if (retry_after_failure(h, EV_WRITE, d) < 0) return -1;
  }
  return 0;
}

}  // namespace

PyObject* BufferedIo::readline(std::string_view delim, Py_ssize_t limit) {
  Py_ssize_t len = scan_for(this, delim, limit);
  if (len < 0) return nullptr;
  return take(this, len);
}

int BufferedIo::flush() {
  if (wbuf_.empty()) return 0;
  Deadline d(write_timeout_);
  IoHandle* h = out();
  while (!wbuf_.empty()) {
    if (h->closed_) {
      errno = EBADF;
      PyErr_SetFromErrno(PyExc_OSError);
      return -1;
    }
    ssize_t k = ::write(h->fd_, wbuf_.data(), wbuf_.size());
    if (k >= 0) {
      if (k > 0 && h == in()) h->after_send();
      wbuf_.consume(k);  // what was sent leaves the buffer even on error
      continue;
    }
    if (retry_after_failure(h, EV_WRITE, d) < 0) return -1;
  }
  wbuf_.shrink_if_empty();
  return 0;
}

PyObject* BufferedIo::read(Py_ssize_t n) {
  Deadline d(read_timeout_);
  while ((n < 0 || rbuf_.size() < static_cast<size_t>(n)) && !eof_)
    if (fill(this, d) < 0) return nullptr;
  return take(this, n < 0 ? rbuf_.size() : n);
}

PyObject* BufferedIo::read1(Py_ssize_t n) {
  if (rbuf_.empty() && !eof_) {
    Deadline d(read_timeout_);
    if (fill(this, d) < 0) return nullptr;
  }
  return take(this, n < 0 ? rbuf_.size() : n);
}

Py_ssize_t BufferedIo::find(std::string_view delim, Py_ssize_t limit) {
  Py_ssize_t len = scan_for(this, delim, limit);
  if (len < 0) return -2;
  std::string_view have(rbuf_.data(), len);
  size_t pos = have.find(delim);
  return pos == std::string_view::npos ? -1 : static_cast<Py_ssize_t>(pos);
}

PyObject* BufferedIo::peek(Py_ssize_t n) {
  Deadline d(read_timeout_);
  size_t want = n > 0 ? n : 1;
  while (rbuf_.size() < want && !eof_)
    if (fill(this, d) < 0) return nullptr;
  size_t len = n > 0 ? std::min<size_t>(n, rbuf_.size()) : rbuf_.size();
  return PyBytes_FromStringAndSize(rbuf_.data(), len);
}

Py_ssize_t BufferedIo::discard(Py_ssize_t n) {
  Deadline d(read_timeout_);
  Py_ssize_t done = 0;
  while (done < n) {
    if (rbuf_.empty()) {
      if (eof_) break;
      if (fill(this, d) < 0) return -1;
      continue;
    }
    size_t k = std::min<size_t>(n - done, rbuf_.size());
    rbuf_.consume(k);
    done += k;
  }
  rbuf_.shrink_if_empty();
  return done;
}

int BufferedIo::unread(std::string_view data) {
  if (!rbuf_.prepend(data.data(), data.size())) return PyErr_NoMemory(), -1;
  if (!data.empty()) eof_ = false;
  return 0;
}

PyObject* BufferedIo::readlines(Py_ssize_t hint) {
  py::Ref list = py::Ref::steal(PyList_New(0));
  if (!list) return nullptr;
  Py_ssize_t total = 0;
  for (;;) {
    py::Ref line = py::Ref::steal(readline("\n", -1));
    if (!line) return nullptr;
    Py_ssize_t len = PyBytes_GET_SIZE(line.get());
    if (len == 0) break;
    if (PyList_Append(list.get(), line.get()) < 0) return nullptr;
    total += len;
    if (hint > 0 && total >= hint) break;
  }
  return list.release();
}

int BufferedIo::write(std::string_view data) {
  if (!wbuf_.append(data.data(), data.size())) return PyErr_NoMemory(), -1;
  if (wbuf_.size() >= kWriteFlushAt && flush() < 0) return -1;
  return 0;
}

int BufferedIo::sendall(std::string_view data) {
  if (flush() < 0) return -1;
  Deadline d(write_timeout_);
  return send_all(this, data.data(), data.size(), d);
}

}  // namespace ptsevent::io

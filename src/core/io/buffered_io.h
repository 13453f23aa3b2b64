// BufferedIo (`_core.BufferedIo(in_handle, out_handle)`): C++ read and write
// buffers over one or two IoHandles — the engine of `fastsocket` and
// `nbfile`. readline / read(n) / read_upto / find / peek / discard / unread
// are served from the read buffer and refill it with read(2) (64 KiB at a
// time, waiting cooperatively on EAGAIN) without a Python-level loop; write
// appends to the write buffer, which flush() (or a full buffer) sends.
// Each call's wait is bounded by the object's read_timeout/write_timeout
// (None: forever), which fastsocket takes from SO_RCVTIMEO/SO_SNDTIMEO.
// An emptied buffer frees its memory, so an idle connection keeps none.
//
// The engine is buffered_io.cpp; its Python face (argument parsing, the
// type's methods and attributes) is buffered_io_type.cpp.
#pragma once

#include <Python.h>

#include <string_view>

#include "io/byte_buffer.h"
#include "io/io_handle.h"
#include "py/ref.h"

namespace ptsevent::io {

struct BufferedIo {
  PyObject_HEAD PyObject* weakrefs_;
  py::Ref in_;   // IoHandle
  py::Ref out_;  // IoHandle (may be the same object)
  ByteBuffer rbuf_;
  ByteBuffer wbuf_;
  double read_timeout_;  // < 0: none
  double write_timeout_;
  bool eof_;

  IoHandle* in() { return reinterpret_cast<IoHandle*>(in_.get()); }
  IoHandle* out() { return reinterpret_cast<IoHandle*>(out_.get()); }
  PyObject* self() { return reinterpret_cast<PyObject*>(this); }

  // Reads: a new reference, or null with an error set. Every wait of one
  // call is bounded by read_timeout_ together.
  PyObject* read(Py_ssize_t n);   // n bytes (fewer at EOF); < 0: to EOF
  PyObject* read1(Py_ssize_t n);  // what is buffered, or one read(2)
  // Up to and including `delim` (not empty), at most `limit` bytes (< 0:
  // any); b"" at EOF.
  PyObject* readline(std::string_view delim, Py_ssize_t limit);
  PyObject* peek(Py_ssize_t n);  // n > 0 bytes, or what is buffered
  PyObject* readlines(Py_ssize_t hint);
  // The index of `delim` in the input, reading as needed: -1 if EOF or
  // `limit` bytes come first, -2 with an error set.
  Py_ssize_t find(std::string_view delim, Py_ssize_t limit);
  // Drops n bytes of input: how many were dropped, or -1 with an error.
  Py_ssize_t discard(Py_ssize_t n);
  // Pushes data back in front of the input. -1 with MemoryError.
  int unread(std::string_view data);

  // Writes: 0, or -1 with an error set. Waits are bounded by
  // write_timeout_. write() sends when 64 KiB are buffered.
  int write(std::string_view data);
  int flush();
  int sendall(std::string_view data);  // flush, then data in full
};

// The Python type (buffered_io_type.cpp).
extern PyTypeObject* BufferedIoType;
PyTypeObject* make_buffered_io_type();

}  // namespace ptsevent::io

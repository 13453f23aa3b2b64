// BufferedIo (`_core.BufferedIo(in_handle, out_handle)`): C++ read and write
// buffers over one or two IoHandles — the engine of `fastsocket` and
// `nbfile`. readline / read(n) / read_upto / find / peek / discard / unread
// are served from the read buffer and refill it with read(2) (64 KiB at a
// time, waiting cooperatively on EAGAIN) without a Python-level loop; write
// appends to the write buffer, which flush() (or a full buffer) sends.
// Each call's wait is bounded by the object's read_timeout/write_timeout
// (None: forever), which fastsocket takes from SO_RCVTIMEO/SO_SNDTIMEO.
// An emptied buffer frees its memory, so an idle connection keeps none.
#pragma once

#include <Python.h>

namespace ptsevent::io {

extern PyTypeObject* BufferedIoType;
PyTypeObject* make_buffered_io_type();

}  // namespace ptsevent::io

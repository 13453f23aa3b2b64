// The read and write loops of ptsevent.ssl.SSLSocket, in C++: the socket's
// _ssl object (which reads and writes the descriptor itself, never waiting:
// the descriptor is non-blocking) is called through its Python methods, and
// the loop waits on the IoHandle when it raises SSLWantReadError or
// SSLWantWriteError. No OpenSSL here: only the calls ssl.py would make, with
// no Python frame and no exception raised in the common case.
#pragma once

#include <Python.h>

#include "io/io_handle.h"

namespace ptsevent::io {

// IoHandle.tls_read(sslobj, lock, len, buffer=None) -> bytes or int
// IoHandle.tls_write(sslobj, lock, data) -> int
// NotImplemented when the caller must take its general path: the socket is
// non-blocking (timeout 0) or the lock is held by another tasklet.
PyObject* IoHandle_tls_read(IoHandle* h, PyObject* const* args,
                            Py_ssize_t nargs);
PyObject* IoHandle_tls_write(IoHandle* h, PyObject* const* args,
                             Py_ssize_t nargs);

}  // namespace ptsevent::io

// The read and write loops of ptsevent.ssl.SSLSocket, in C++: the socket's
// _ssl object (which reads and writes the descriptor itself, never waiting:
// the descriptor is non-blocking) is called through its Python methods, and
// the loop waits on the IoHandle when it raises SSLWantReadError or
// SSLWantWriteError: the calls ssl.py would make, with no Python frame and
// no exception raised in the common case. OpenSSL is called directly only
// to read ahead (tls_ssl.h).
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
// IoHandle.tls_read_ahead(sslobj) -> bool: OpenSSL holds received bytes
// it has not decrypted (read ahead by tls_read()), which neither
// sslobj.pending() nor the descriptor shows.
PyObject* IoHandle_tls_read_ahead(IoHandle* h, PyObject* sslobj);

// _core.tls_socket_methods(socket_type) -> (recv, sendall): SSLSocket's
// recv() and sendall() as method descriptors in C, which call the above
// without a Python frame in the common case and ssl.py's _recv_slow /
// _sendall_slow otherwise.
extern PyMethodDef tls_functions[];

}  // namespace ptsevent::io

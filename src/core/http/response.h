// The response (response.cpp): start_response and its write(), the
// framing decided once when the headers go out (Content-Length, chunked,
// or close-delimited), the body from whatever the app returned, and
// wsgi.file_wrapper (sendfile(2) for a regular file). The Python objects
// (start_response, FileWrapper) are response_type.cpp's.
#pragma once

#include <Python.h>

#include <cstdint>

#include "http/request.h"

namespace ptsevent::http {

// wsgi.file_wrapper (ptsevent.wsgi.FileWrapper).
struct FileWrapper {
  PyObject_HEAD PyObject* filelike;
  Py_ssize_t blksize;
};
extern PyTypeObject* FileWrapperType;

// What start_response(status, headers, exc_info) does: checks them and
// records the head in `req`. 0, or -1 with an exception set.
int start_response(Request* req, PyObject* status, PyObject* headers,
                   PyObject* exc_info);
// Sends part of the body (the headers first, if not yet sent), framed as
// start_response decided. 0, or -1 with an exception set.
int send_body(Connection* c, Request* req, const char* data, size_t len);

// start_response for a request: a new reference, or null with an exception.
PyObject* new_start_response(Connection* c, Request* req);
// At the request's end: start_response and write() then raise.
void detach_start_response(PyObject* start_response);

// Sends what the app returned (the result of calling it) and ends the body.
// 0, or -1 with an exception set.
int send_result(Connection* c, Request* req, PyObject* result);

// An error before any header was sent: a plain response of our own. The
// connection goes on only if `keep_alive` (an app error, whose request was
// read as framed: the next one starts where it ended).
int send_simple(Connection* c, Request* req, int status, bool keep_alive);

PyTypeObject* make_start_response_type();
PyTypeObject* make_file_wrapper_type();

}  // namespace ptsevent::http

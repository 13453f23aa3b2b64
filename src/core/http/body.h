// The request body (body.cpp): read from the socket on the app's demand,
// through the parser (which decodes chunked bodies and counts max_body),
// and wsgi.input, the object the app reads it with (body_type.cpp).
#pragma once

#include <Python.h>

#include "http/request.h"

namespace ptsevent::http {

// The body as the app reads it: `size` bytes (fewer at its end; < 0: all
// of it), or one line of at most `size` bytes. New bytes (b"" at the end),
// or null with an exception.
PyObject* read_body(Connection* c, Request* req, Py_ssize_t size);
PyObject* readline_body(Connection* c, Request* req, Py_ssize_t size);

// wsgi.input for a request: a new reference, or null with an exception.
PyObject* new_input(Connection* c, Request* req);
// At the request's end: the object the app may keep then raises ValueError.
void detach_input(PyObject* input);

// Reads the rest of an unread body (at most max_drain bytes), so that it is
// never parsed as the next request. False when the connection cannot go on
// (too much left, or an error: cleared). Then frees the body buffer.
bool drain_unread_body(Connection* c, Request* req);

PyTypeObject* make_input_type();

}  // namespace ptsevent::http

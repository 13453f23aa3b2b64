// The request body (body.cpp): read from the socket on the app's demand,
// through the parser (which decodes chunked bodies and counts max_body),
// and wsgi.input, the object the app reads it with.
#pragma once

#include <Python.h>

#include "http/request.h"

namespace ptsevent::http {

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

// The HttpServer's keyword options: one table (options.cpp) of every name
// HttpServer() accepts, with its kind and validation. The numeric defaults
// are the member initialisers below (and Limits' in parser.h): the table
// reads them from a default Options, HttpServer() parses from the table,
// and `_core.HTTP_OPTIONS` exports the tunable ones to Python, where
// ptsevent.wsgi.DEFAULTS and the command line take them from.
#pragma once

#include <Python.h>

#include "http/parser.h"

namespace ptsevent::http {

struct Options {
  Limits limits;
  double header_timeout = 10.0;     // first byte of a head -> complete head
  double body_timeout = 30.0;       // each wait for request body bytes
  double keepalive_timeout = 30.0;  // idle between requests
  double write_timeout = 30.0;      // each wait to write the response
  size_t max_drain = 65536;         // unread body bytes drained for keep-alive
  double accept_backoff = 0.1;      // pause after EMFILE/ENFILE
  bool multiprocess = false;
};

// The Python objects HttpServer() is given rather than numbers to check.
struct ServerObjects {
  PyObject* server_name = nullptr;  // str, required
  PyObject* server_port = nullptr;  // str, required
  PyObject* url_scheme = nullptr;   // str, default "http"
  PyObject* errors = nullptr;       // wsgi.errors, default sys.stderr
  PyObject* log_error = nullptr;    // callable(message, exc) or None
  PyObject* access_log = nullptr;   // callable(line) or None
};

// Parses HttpServer()'s keywords (kw may be null) into *options (which
// starts from the defaults) and *objects (borrowed references). -1 with
// TypeError for an unknown name or a value of the wrong type, ValueError
// for a number out of range.
int parse_options(PyObject* kw, Options* options, ServerObjects* objects);

// A read-only mapping: the name of every tunable option (limits, timeouts)
// -> its default. New reference, or null with an exception.
PyObject* option_defaults();

}  // namespace ptsevent::http

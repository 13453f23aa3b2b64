// Request: the state of one request while its app runs, shared by the
// phases that serve it: the request tasklet (request.cpp) makes it, the
// environ (environ.cpp), wsgi.input (body.cpp) and start_response
// (response.cpp) read and fill it.
//
// It lives on the heap for one request: wsgi.input and start_response point
// to it, and a suspended tasklet's stack does not stay where it was. At the
// request's end those objects are detached (they then raise if the app
// kept and used them).
#pragma once

#include <Python.h>

#include <cstdint>
#include <string>

#include "http/connection.h"
#include "py/ref.h"

namespace ptsevent::http {

struct Request {
  Connection* conn;
  py::Ref input;           // the wsgi.input object
  py::Ref start_response;  // the start_response object
  std::string head;        // status line + the app's headers (no framing)
  std::string method;      // for the access log
  std::string target;
  int status = 0;
  int minor = 1;
  int64_t content_length = -1;  // the app's Content-Length
  uint64_t sent_body = 0;
  uint64_t app_body = 0;  // body bytes the app produced (sent or not)
  int body_error = 0;     // a status the request body earned (400, 413)
  bool started = false;
  bool headers_sent = false;
  bool chunked = false;
  bool no_body = false;  // 204/304: no body, no framing
  bool is_head = false;
  bool keep_alive = true;
  bool continue_sent = false;
  bool has_date = false;
  bool has_server = false;
  bool length_mismatch = false;
  bool client_gone = false;
  // KeyboardInterrupt or SystemExit raised in the app: it ends the request
  // and goes on out of the tasklet (to the main tasklet).
  py::Ref escape;
};

// The request tasklet's job (a hub::NativeJob): serves the requests of
// the connection `conn` (a Connection*) that start_app() started it for,
// until it has no complete request left.
PyObject* serve_connection(void* conn);

}  // namespace ptsevent::http

// The environ of a request (environ.cpp): the interned keys, the template
// every request's environ is copied from, and the per-request entries from
// the parsed head (the CGI names of cgi.h).
#pragma once

#include <Python.h>

#include <cstring>
#include <string_view>

#include "http/request.h"

namespace ptsevent::http {

// Interned strings, made once by init_keys().
struct Keys {
  PyObject *REQUEST_METHOD, *SCRIPT_NAME, *PATH_INFO, *QUERY_STRING,
      *CONTENT_TYPE, *CONTENT_LENGTH, *SERVER_NAME, *SERVER_PORT,
      *SERVER_PROTOCOL, *REMOTE_ADDR, *REMOTE_PORT, *RAW_URI, *wsgi_version,
      *wsgi_url_scheme, *wsgi_input, *wsgi_errors, *wsgi_multithread,
      *wsgi_multiprocess, *wsgi_run_once, *wsgi_input_terminated,
      *wsgi_file_wrapper;
  PyObject *empty, *http10, *http11, *version_tuple;
  PyObject *close, *read, *fileno;
};
extern Keys K;
int init_keys();

// The environ every request of a server starts from. New reference.
PyObject* make_environ_template(Server* s);
// The environ of the request whose head c's parser holds. New reference, or
// null with an exception (req->body_error = 400 for a malformed target).
PyObject* build_environ(Connection* c, Request* req);

// The client's address as text (REMOTE_ADDR). New reference.
PyObject* remote_addr(Connection* c);

// ASCII case-insensitive comparison with a lower-case literal.
inline bool iequals(std::string_view a, const char* lower) {
  size_t n = std::strlen(lower);
  if (a.size() != n) return false;
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = a[i];
    if (c >= 'A' && c <= 'Z') c += 32;
    if (c != static_cast<unsigned char>(lower[i])) return false;
  }
  return true;
}

}  // namespace ptsevent::http

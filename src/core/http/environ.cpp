#include "http/environ.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>
#include <unordered_map>

#include "http/cgi.h"
#include "http/response.h"
#include "http/server.h"

namespace ptsevent::http {

Keys K;

// wsgi.multithread is True: the app object is called again, for another
// request, before an earlier call has returned (requests interleave at
// every wait, in one OS thread), and per-thread state (threading.local
// without ptsevent.patch) is shared between those concurrent requests: the
// hazard the flag exists to announce. The built-in server and the gunicorn
// worker (which runs it) both take it from here.
constexpr bool kMultithread = true;

namespace {

struct Method {
  const char* name;
  PyObject* obj;
} methods[] = {{"GET", nullptr},  {"POST", nullptr},   {"HEAD", nullptr},
               {"PUT", nullptr},  {"DELETE", nullptr}, {"OPTIONS", nullptr},
               {"PATCH", nullptr}};

struct CommonHeader {
  const char* name;  // lower case
  PyObject* key;
} common_headers[] = {
    {"host", nullptr},
    {"user-agent", nullptr},
    {"accept", nullptr},
    {"accept-encoding", nullptr},
    {"accept-language", nullptr},
    {"connection", nullptr},
    {"cookie", nullptr},
    {"referer", nullptr},
    {"cache-control", nullptr},
    {"upgrade-insecure-requests", nullptr},
    {"origin", nullptr},
    {"authorization", nullptr},
    {"x-forwarded-for", nullptr},
    {"expect", nullptr},
    {"transfer-encoding", nullptr},
    {"if-none-match", nullptr},
    {"if-modified-since", nullptr},
    {"pragma", nullptr},
};

}  // namespace

int init_keys() {
#define KEY(field, text) \
  if (!(K.field = PyUnicode_InternFromString(text))) return -1;
  KEY(REQUEST_METHOD, "REQUEST_METHOD");
  KEY(SCRIPT_NAME, "SCRIPT_NAME");
  KEY(PATH_INFO, "PATH_INFO");
  KEY(QUERY_STRING, "QUERY_STRING");
  KEY(CONTENT_TYPE, "CONTENT_TYPE");
  KEY(CONTENT_LENGTH, "CONTENT_LENGTH");
  KEY(SERVER_NAME, "SERVER_NAME");
  KEY(SERVER_PORT, "SERVER_PORT");
  KEY(SERVER_PROTOCOL, "SERVER_PROTOCOL");
  KEY(REMOTE_ADDR, "REMOTE_ADDR");
  KEY(REMOTE_PORT, "REMOTE_PORT");
  KEY(RAW_URI, "RAW_URI");
  KEY(wsgi_version, "wsgi.version");
  KEY(wsgi_url_scheme, "wsgi.url_scheme");
  KEY(wsgi_input, "wsgi.input");
  KEY(wsgi_errors, "wsgi.errors");
  KEY(wsgi_multithread, "wsgi.multithread");
  KEY(wsgi_multiprocess, "wsgi.multiprocess");
  KEY(wsgi_run_once, "wsgi.run_once");
  KEY(wsgi_input_terminated, "wsgi.input_terminated");
  KEY(wsgi_file_wrapper, "wsgi.file_wrapper");
  KEY(empty, "");
  KEY(http10, "HTTP/1.0");
  KEY(http11, "HTTP/1.1");
  KEY(close, "close");
  KEY(read, "read");
  KEY(fileno, "fileno");
#undef KEY
  if (!(K.version_tuple = Py_BuildValue("(ii)", 1, 0))) return -1;
  for (Method& m : methods)
    if (!(m.obj = PyUnicode_InternFromString(m.name))) return -1;
  for (CommonHeader& h : common_headers) {
    std::string key;
    cgi_header_key(h.name, &key);
    if (!(h.key = PyUnicode_InternFromString(key.c_str()))) return -1;
  }
  return 0;
}

namespace {

PyObject* latin1(std::string_view v) {
  if (v.empty()) return Py_NewRef(K.empty);
  return PyUnicode_DecodeLatin1(v.data(), static_cast<Py_ssize_t>(v.size()),
                                nullptr);
}

// Clients often share an address (a proxy, loopback): the last string is
// reused.
PyObject* cached_remote_addr(Connection* c) {
  Server* s = c->server;
  if (!c->peer && s->last_addr_ && s->last_peer4_ == c->peer4)
    return Py_NewRef(s->last_addr_.get());
  PyObject* a = remote_addr(c);
  if (a && !c->peer) {
    s->last_addr_ = py::Ref::borrow(a);
    s->last_peer4_ = c->peer4;
  }
  return a;
}

PyObject* port_string(unsigned port) {
  char buf[8];
  char* end = buf + sizeof buf;
  char* p = end;
  do {
    *--p = static_cast<char>('0' + port % 10);
    port /= 10;
  } while (port);
  return PyUnicode_FromStringAndSize(p, end - p);
}

int set_item(PyObject* d, PyObject* key, PyObject* value) {
  if (!value) return -1;
  int rc = PyDict_SetItem(d, key, value);
  Py_DECREF(value);
  return rc;
}

PyObject* header_key(std::string_view name, std::string* scratch_key) {
  for (CommonHeader& h : common_headers)
    if (iequals(name, h.name)) return Py_NewRef(h.key);
  if (!cgi_header_key(name, scratch_key)) return nullptr;
  PyObject* k = PyUnicode_FromStringAndSize(
      scratch_key->data(), static_cast<Py_ssize_t>(scratch_key->size()));
  if (k) PyUnicode_InternInPlace(&k);
  return k;
}

}  // namespace

PyObject* remote_addr(Connection* c) {
  char buf[INET6_ADDRSTRLEN];
  if (!c->peer) {
    struct in_addr a;
    a.s_addr = c->peer4;
    inet_ntop(AF_INET, &a, buf, sizeof buf);
  } else if (c->peer->ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(c->peer)->sin6_addr,
              buf, sizeof buf);
  } else {
    return Py_NewRef(K.empty);
  }
  return PyUnicode_FromString(buf);
}

PyObject* build_environ(Connection* c, Request* req) {
  Server* s = c->server;
  RequestParser& p = c->parser;
  // A copy of the server's template: every key already has its slot, so
  // the per-request values replace and nothing resizes.
  py::Ref env = py::Ref::steal(PyDict_Copy(s->environ_template_.get()));
  if (!env) return nullptr;
  PyObject* d = env.get();
  std::string_view method = p.method();
  PyObject* m = nullptr;
  for (Method& mm : methods)
    if (method == mm.name) {
      m = Py_NewRef(mm.obj);
      break;
    }
  if (!m) m = latin1(method);
  if (set_item(d, K.REQUEST_METHOD, m) < 0) return nullptr;
  std::string path;
  std::string_view query;
  if (!split_target(p.target(), &path, &query)) {
    req->body_error = 400;
    PyErr_SetString(PyExc_ValueError,
                    "malformed percent-escape in the request target");
    return nullptr;
  }
  if (path == "*") path.clear();
  if (set_item(d, K.PATH_INFO, latin1(path)) < 0 ||
      set_item(d, K.QUERY_STRING, latin1(query)) < 0 ||
      set_item(d, K.RAW_URI, latin1(p.target())) < 0 ||
      PyDict_SetItem(d, K.SERVER_PROTOCOL,
                     p.version_minor() ? K.http11 : K.http10) < 0 ||
      set_item(d, K.REMOTE_ADDR, cached_remote_addr(c)) < 0 ||
      set_item(d, K.REMOTE_PORT, port_string(c->peer_port)) < 0 ||
      PyDict_SetItem(d, K.wsgi_input, req->input.get()) < 0)
    return nullptr;
  std::string key;
  std::unordered_map<PyObject*, std::string> repeated;
  for (const HeaderField& f : p.headers()) {
    std::string_view name = p.field_name(f);
    std::string_view value = p.field_value(f);
    if (iequals(name, "content-type")) {
      if (set_item(d, K.CONTENT_TYPE, latin1(value)) < 0) return nullptr;
      continue;
    }
    if (iequals(name, "content-length")) {
      if (set_item(d, K.CONTENT_LENGTH, latin1(value)) < 0) return nullptr;
      continue;
    }
    py::Ref k = py::Ref::steal(header_key(name, &key));
    if (!k) {
      if (PyErr_Occurred()) return nullptr;
      continue;  // names with '_' are dropped
    }
    PyObject* old = PyDict_GetItemWithError(d, k.get());
    if (old) {
      // A repeated field: its values are joined with ',' once at the end
      // (joining at each repeat would make many repeats quadratic). Keys
      // are interned, so the pointer identifies the name.
      auto it = repeated.find(k.get());
      if (it == repeated.end()) {
        std::string first(static_cast<const char*>(PyUnicode_DATA(old)),
                          static_cast<size_t>(PyUnicode_GET_LENGTH(old)));
        it = repeated.emplace(k.get(), std::move(first)).first;
      }
      it->second.push_back(',');
      it->second.append(value);
    } else {
      if (PyErr_Occurred()) return nullptr;
      if (set_item(d, k.get(), latin1(value)) < 0) return nullptr;
    }
  }
  for (auto& [k, joined] : repeated)
    if (set_item(d, k, latin1(joined)) < 0) return nullptr;
  std::string_view target = p.target();
  if (!target.empty() && target[0] != '/' && target != "*") {
    // An absolute-form target names the host: it replaces Host (RFC 9112
    // section 3.2.2). SERVER_NAME and SERVER_PORT stay the server's.
    py::Ref host_key = py::Ref::steal(header_key("host", &key));
    if (!host_key ||
        set_item(d, host_key.get(), latin1(target_authority(target))) < 0)
      return nullptr;
  }
  return env.release();
}

// The environ every request starts from: the constant entries, and a slot
// for each per-request one. Presized for a typical number of headers.
PyObject* make_environ_template(Server* s) {
  py::Ref env = py::Ref::steal(_PyDict_NewPresized(40));
  if (!env) return nullptr;
  PyObject* d = env.get();
  PyObject* per_request[] = {
      K.REQUEST_METHOD,  K.PATH_INFO,   K.QUERY_STRING, K.RAW_URI,
      K.SERVER_PROTOCOL, K.REMOTE_ADDR, K.REMOTE_PORT,  K.wsgi_input};
  for (PyObject* k : per_request)
    if (PyDict_SetItem(d, k, Py_None) < 0) return nullptr;
  if (PyDict_SetItem(d, K.SCRIPT_NAME, K.empty) < 0 ||
      PyDict_SetItem(d, K.SERVER_NAME, s->server_name_.get()) < 0 ||
      PyDict_SetItem(d, K.SERVER_PORT, s->server_port_.get()) < 0 ||
      PyDict_SetItem(d, K.wsgi_version, K.version_tuple) < 0 ||
      PyDict_SetItem(d, K.wsgi_url_scheme, s->url_scheme_.get()) < 0 ||
      PyDict_SetItem(d, K.wsgi_errors, s->errors_.get()) < 0 ||
      PyDict_SetItem(d, K.wsgi_multithread, kMultithread ? Py_True : Py_False) <
          0 ||
      PyDict_SetItem(d, K.wsgi_multiprocess,
                     s->options_.multiprocess ? Py_True : Py_False) < 0 ||
      PyDict_SetItem(d, K.wsgi_run_once, Py_False) < 0 ||
      PyDict_SetItem(d, K.wsgi_input_terminated, Py_True) < 0 ||
      PyDict_SetItem(d, K.wsgi_file_wrapper,
                     reinterpret_cast<PyObject*>(FileWrapperType)) < 0)
    return nullptr;
  return env.release();
}

}  // namespace ptsevent::http

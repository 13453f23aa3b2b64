#include "http/options.h"

#include <cstdint>
#include <type_traits>

#include "py/ref.h"

namespace ptsevent::http {

namespace {

enum class Kind : uint8_t {
  kSize,     // a positive int: bytes, or a count
  kSeconds,  // a positive number of seconds
  kFlag,     // any object, by its truth value
  kObject,   // a Python object, checked by the server (ServerObjects)
};

// One keyword of HttpServer(): where its value goes. Numeric options are
// tunable (exported with their defaults); the others are what
// ptsevent.wsgi.WSGIServer passes itself.
struct Spec {
  const char* name;
  Kind kind;
  void* (*place)(Options& o, ServerObjects& x);
};

// Limits mixes size_t and uint64_t: one integer type for both here.
static_assert(std::is_same_v<size_t, uint64_t>, "size_t must be uint64_t");

#define OPTION(name, kind, field)                                \
  Spec {                                                         \
#name, Kind::kind, [](Options& o, ServerObjects& x) -> void* { \
      (void)o;                                               \
      (void)x;                                               \
      return &(field);                                       \
    } \
  }

// In the order `python -m ptsevent.wsgi --help` lists them.
const Spec kOptions[] = {
    OPTION(max_request_line, kSize, o.limits.max_request_line),
    OPTION(max_header_line, kSize, o.limits.max_header_line),
    OPTION(max_header_block, kSize, o.limits.max_header_block),
    OPTION(max_headers, kSize, o.limits.max_headers),
    OPTION(max_body, kSize, o.limits.max_body),
    OPTION(max_trailer_block, kSize, o.limits.max_trailer_block),
    OPTION(max_drain, kSize, o.max_drain),
    OPTION(header_timeout, kSeconds, o.header_timeout),
    OPTION(body_timeout, kSeconds, o.body_timeout),
    OPTION(keepalive_timeout, kSeconds, o.keepalive_timeout),
    OPTION(write_timeout, kSeconds, o.write_timeout),
    OPTION(accept_backoff, kSeconds, o.accept_backoff),
    OPTION(multiprocess, kFlag, o.multiprocess),
    OPTION(server_name, kObject, x.server_name),
    OPTION(server_port, kObject, x.server_port),
    OPTION(url_scheme, kObject, x.url_scheme),
    OPTION(errors, kObject, x.errors),
    OPTION(log_error, kObject, x.log_error),
    OPTION(access_log, kObject, x.access_log),
};

#undef OPTION

bool tunable(const Spec& spec) {
  return spec.kind == Kind::kSize || spec.kind == Kind::kSeconds;
}

const Spec* find(PyObject* key) {
  if (!PyUnicode_Check(key)) return nullptr;
  for (const Spec& spec : kOptions)
    if (PyUnicode_CompareWithASCIIString(key, spec.name) == 0) return &spec;
  return nullptr;
}

int parse_size(const Spec& spec, PyObject* v, uint64_t* out) {
  if (!PyLong_Check(v)) {
    PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", spec.name,
                 Py_TYPE(v)->tp_name);
    return -1;
  }
  long long n = PyLong_AsLongLong(v);
  if (n == -1 && PyErr_Occurred()) return -1;
  if (n <= 0) {
    PyErr_Format(PyExc_ValueError, "%s must be positive", spec.name);
    return -1;
  }
  *out = static_cast<uint64_t>(n);
  return 0;
}

int parse_seconds(const Spec& spec, PyObject* v, double* out) {
  double d = PyFloat_AsDouble(v);
  if (d == -1.0 && PyErr_Occurred()) return -1;
  if (!(d > 0)) {
    PyErr_Format(PyExc_ValueError, "%s must be a positive number of seconds",
                 spec.name);
    return -1;
  }
  *out = d;
  return 0;
}

int parse_one(const Spec& spec, PyObject* v, void* place) {
  switch (spec.kind) {
    case Kind::kSize:
      return parse_size(spec, v, static_cast<uint64_t*>(place));
    case Kind::kSeconds:
      return parse_seconds(spec, v, static_cast<double*>(place));
    case Kind::kFlag: {
      int b = PyObject_IsTrue(v);
      if (b < 0) return -1;
      *static_cast<bool*>(place) = b;
      return 0;
    }
    case Kind::kObject:
      *static_cast<PyObject**>(place) = v;
      return 0;
  }
  return 0;
}

}  // namespace

int parse_options(PyObject* kw, Options* options, ServerObjects* objects) {
  if (!kw) return 0;
  PyObject *key, *value;
  Py_ssize_t pos = 0;
  while (PyDict_Next(kw, &pos, &key, &value)) {
    const Spec* spec = find(key);
    if (!spec) {
      PyErr_Format(PyExc_TypeError,
                   "HttpServer() got an unexpected keyword argument %R", key);
      return -1;
    }
    if (parse_one(*spec, value, spec->place(*options, *objects)) < 0) return -1;
  }
  return 0;
}

PyObject* option_defaults() {
  Options defaults;
  ServerObjects unused;
  py::Ref d = py::Ref::steal(PyDict_New());
  if (!d) return nullptr;
  for (const Spec& spec : kOptions) {
    if (!tunable(spec)) continue;
    void* place = spec.place(defaults, unused);
    py::Ref v = py::Ref::steal(
        spec.kind == Kind::kSize
            ? PyLong_FromUnsignedLongLong(*static_cast<uint64_t*>(place))
            : PyFloat_FromDouble(*static_cast<double*>(place)));
    if (!v || PyDict_SetItemString(d.get(), spec.name, v.get()) < 0)
      return nullptr;
  }
  return PyDictProxy_New(d.get());
}

}  // namespace ptsevent::http

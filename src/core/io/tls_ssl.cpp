#include "io/tls_ssl.h"

#include <dlfcn.h>

namespace ptsevent::io::tls {

namespace {

// The head of _ssl._SSLSocket's instances, unchanged from CPython 3.7
// through 3.14: the weak reference to the Python socket, then the
// connection. Other versions are not looked into.
#if PY_VERSION_HEX >= 0x03070000 && PY_VERSION_HEX < 0x030F0000
#define PTSEVENT_KNOWN_SSL_LAYOUT 1
#endif
struct SslSocketHead {
  PyObject ob_base;  // PyObject_HEAD
  PyObject* socket;  // weakref
  Ssl* ssl;
};

// SSL_CTRL_SET_READ_AHEAD for SSL_ctrl (SSL_set_read_ahead is a macro
// over it in OpenSSL 1.1).
constexpr int kSetReadAhead = 41;

struct Api {
  PyTypeObject* type;  // _ssl._SSLSocket; null: not usable
  bool tried;
  long (*ctrl)(Ssl*, int, long, void*);
  int (*get_fd)(const Ssl*);
  int (*get_shutdown)(const Ssl*);
  int (*has_pending)(const Ssl*);
};
Api api;

template <typename F>
bool find(void* lib, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(dlsym(lib, name));
  return *fn != nullptr;
}

// Looks _ssl's type and OpenSSL's functions up once; false when any is
// missing (an OpenSSL older than 1.1.1, a static build, another layout).
// Python errors met on the way are cleared: the callers' fallback needs
// none of this.
bool ready() noexcept {
  if (api.tried) return api.type != nullptr;
  api.tried = true;
#ifdef PTSEVENT_KNOWN_SSL_LAYOUT
  PyObject* module = PyImport_ImportModule("_ssl");
  PyObject* type =
      module ? PyObject_GetAttrString(module, "_SSLSocket") : nullptr;
  PyObject* file = module ? PyModule_GetFilenameObject(module) : nullptr;
  const char* path = file ? PyUnicode_AsUTF8(file) : nullptr;
  // RTLD_NOLOAD: the library the import above loaded; dlsym on its handle
  // searches it and the libraries it depends on, OpenSSL's.
  void* lib = path ? dlopen(path, RTLD_LAZY | RTLD_NOLOAD) : nullptr;
  bool ok = lib && type && PyType_Check(type) &&
            find(lib, "SSL_ctrl", &api.ctrl) &&
            find(lib, "SSL_get_fd", &api.get_fd) &&
            find(lib, "SSL_get_shutdown", &api.get_shutdown) &&
            find(lib, "SSL_has_pending", &api.has_pending);
  // The handle only pins a library _ssl keeps loaded anyway.
  if (lib) dlclose(lib);
  if (ok) {
    Py_INCREF(type);  // for the life of the process, as _ssl's own
    api.type = reinterpret_cast<PyTypeObject*>(type);
  }
  Py_XDECREF(file);
  Py_XDECREF(type);
  Py_XDECREF(module);
  PyErr_Clear();
  return ok;
#else
  return false;
#endif
}

}  // namespace

Ssl* ssl_of(PyObject* sslobj, int fd) noexcept {
  if (!ready() || !Py_IS_TYPE(sslobj, api.type)) return nullptr;
  auto* head = reinterpret_cast<SslSocketHead*>(sslobj);
  // The layout check: a socket-based _SSLSocket holds a weak reference
  // first, and its connection reads the socket's descriptor.
  if (!head->socket || !PyWeakref_CheckRef(head->socket) || !head->ssl)
    return nullptr;
  return api.get_fd(head->ssl) == fd ? head->ssl : nullptr;
}

void set_read_ahead(Ssl* ssl, bool on) noexcept {
  if (on && api.get_shutdown(ssl)) return;
  api.ctrl(ssl, kSetReadAhead, on, nullptr);
}

bool has_pending(Ssl* ssl) noexcept { return api.has_pending(ssl) != 0; }

}  // namespace ptsevent::io::tls

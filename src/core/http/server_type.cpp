// The Python face of the HTTP server (server.h): HttpServer's constructor,
// methods and garbage-collector support, and the making of the server's
// types.
#include <Python.h>
#include <fcntl.h>

#include <array>

#include "http/body.h"
#include "http/environ.h"
#include "http/request.h"
#include "http/response.h"
#include "http/server.h"
#include "hub/tasklet.h"
#include "hub/timeout.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::http {

PyTypeObject* ServerType = nullptr;

using hub::Hub;
using hub::Tasklet;

namespace {

PyObject* server_new(PyTypeObject* type, PyObject*, PyObject*) {
  Server* s = reinterpret_cast<Server*>(type->tp_alloc(type, 0));
  if (!s) return nullptr;
  new (&s->options_) Options();
  new (&s->owner_) ServerOwner();
  new (&s->date_) std::string();
  new (&s->drain_waiters_) hub::WaitList();
  new (&s->drain_spare_) hub::WaitRecordPool<DrainWait>();
  s->owner_.server = s;
  s->listen_fd_ = -1;
  return s->self();
}

int server_init(PyObject* self, PyObject* args, PyObject* kw) {
  Server* s = reinterpret_cast<Server*>(self);
  if (s->started_) {
    PyErr_SetString(PyExc_RuntimeError, "the server is already started");
    return -1;
  }
  PyObject *listener, *app;
  if (!PyArg_ParseTuple(args, "OO:HttpServer", &listener, &app)) return -1;
  if (!PyCallable_Check(app)) {
    PyErr_SetString(PyExc_TypeError, "the application must be callable");
    return -1;
  }
  Options o;
  ServerObjects x;
  if (parse_options(kw, &o, &x) < 0) return -1;
  py::Ref fdobj =
      py::Ref::steal(PyObject_CallMethod(listener, "fileno", nullptr));
  if (!fdobj) return -1;
  int fd = as_int(fdobj.get());
  if (fd == -1 && PyErr_Occurred()) return -1;
  if (fd < 0) {
    PyErr_SetString(PyExc_ValueError, "the listening socket is closed");
    return -1;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
  }
  if (!x.server_name || !PyUnicode_Check(x.server_name) || !x.server_port ||
      !PyUnicode_Check(x.server_port)) {
    PyErr_SetString(PyExc_TypeError,
                    "server_name and server_port must be given as str");
    return -1;
  }
  py::Ref scheme = x.url_scheme
                       ? py::Ref::borrow(x.url_scheme)
                       : py::Ref::steal(PyUnicode_InternFromString("http"));
  if (!scheme || !PyUnicode_Check(scheme.get())) {
    PyErr_SetString(PyExc_TypeError, "url_scheme must be a str");
    return -1;
  }
  PyObject* errors = x.errors ? x.errors : PySys_GetObject("stderr");
  s->options_ = o;
  s->listen_fd_ = fd;
  s->listener_ = py::Ref::borrow(listener);
  s->app_ = py::Ref::borrow(app);
  s->server_name_ = py::Ref::borrow(x.server_name);
  s->server_port_ = py::Ref::borrow(x.server_port);
  s->url_scheme_ = std::move(scheme);
  s->errors_ = py::Ref::borrow(errors ? errors : Py_None);
  s->log_error_ = py::Ref::borrow(x.log_error ? x.log_error : Py_None);
  s->access_log_ = py::Ref::borrow(x.access_log ? x.access_log : Py_None);
  return 0;
}

PyObject* server_start(PyObject* self, PyObject*) {
  if (start(reinterpret_cast<Server*>(self)) < 0) return nullptr;
  Py_RETURN_NONE;
}

// stop_accepting(), close_idle(), abort() and close(): each runs one of the
// server's stop steps, only on the thread whose hub the server belongs to.
template <void (*step)(Server*)>
PyObject* server_step(PyObject* self, PyObject*) {
  Server* s = reinterpret_cast<Server*>(self);
  if (check_thread(s) < 0) return nullptr;
  step(s);
  Py_RETURN_NONE;
}

PyObject* server_wait_drained(PyObject* self, PyObject* args) {
  PyObject* timeout_obj = Py_None;
  if (!PyArg_ParseTuple(args, "|O:wait_drained", &timeout_obj)) return nullptr;
  double seconds;
  if (hub::parse_timeout(timeout_obj, hub::TimeoutMode::kWait, &seconds) < 0)
    return nullptr;
  int drained = wait_drained(reinterpret_cast<Server*>(self), seconds);
  if (drained < 0) return nullptr;
  return PyBool_FromLong(drained);
}

PyObject* server_stats(PyObject* self, PyObject*) {
  Server* s = reinterpret_cast<Server*>(self);
  long idle = 0;
  for (Connection* c = s->head_; c; c = c->next)
    if (c->state == Connection::State::kIdle) ++idle;
  return Py_BuildValue(
      "{s:l,s:l,s:l,s:K,s:K,s:O}", "connections", s->connections_, "active",
      s->active_, "idle", idle, "requests", s->requests_, "accept_errors",
      s->accept_errors_, "accepting", s->accepting_ ? Py_True : Py_False);
}

// The Python references of the server, for the garbage collector: an app
// may hold its server (a closure, an attribute). While accepting, and while
// a connection is open, the server holds a reference to itself that no
// traverse reports, so the collector never clears a running server.
std::array<py::Ref*, 11> server_refs(Server* s) {
  return {&s->listener_,         &s->app_,         &s->context_,
          &s->server_name_,      &s->server_port_, &s->url_scheme_,
          &s->errors_,           &s->log_error_,   &s->access_log_,
          &s->environ_template_, &s->last_addr_};
}

int server_traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  for (py::Ref* r : server_refs(reinterpret_cast<Server*>(self)))
    if (int rc = r->visit(visit, arg)) return rc;
  return 0;
}

int server_clear(PyObject* self) {
  for (py::Ref* r : server_refs(reinterpret_cast<Server*>(self))) r->reset();
  return 0;
}

// After server_clear (py::make_heap_type's dealloc).
void server_destroy(PyObject* self) {
  Server* s = reinterpret_cast<Server*>(self);
  if (s->started_ && s->hub_ && Hub::alive(s->hub_))
    s->hub_->remove_owner(&s->owner_);
  s->options_.~Options();
  s->owner_.~ServerOwner();
  s->date_.~basic_string();
  PTSEVENT_ASSERT(s->drain_waiters_.empty(),
                  "a server is freed while tasklets wait for it to drain");
  s->drain_spare_.destroy();
}

PyMethodDef server_methods[] = {
    {"start", py::method(server_start), METH_NOARGS,
     "start($self, /)\n--\n\n"
     "start accepting connections on this thread's hub"},
    {"stop_accepting", py::method(server_step<stop_accepting>), METH_NOARGS,
     "stop_accepting($self, /)\n--\n\n"
     "stop accepting new connections"},
    {"close_idle", py::method(server_step<stop_idle>), METH_NOARGS,
     "close_idle($self, /)\n--\n\n"
     "close idle keep-alive connections now; busy ones close after their "
     "response"},
    {"abort", py::method(server_step<abort_all>), METH_NOARGS,
     "abort($self, /)\n--\n\n"
     "close every connection now, busy ones too"},
    {"close", py::method(server_step<close_server>), METH_NOARGS,
     "close($self, /)\n--\n\n"
     "stop accepting and close every connection"},
    {"wait_drained", py::method(server_wait_drained), METH_VARARGS,
     "wait_drained($self, timeout=None, /)\n--\n\n"
     "wait until no request runs (True) or the timeout passes (False)"},
    {"stats", py::method(server_stats), METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "counters: connections, active, idle, requests"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

PyTypeObject* make_server_type() {
  if (init_keys() < 0) return nullptr;
  bool types_made = make_input_type() && make_start_response_type() &&
                    make_file_wrapper_type();
  static PyType_Slot server_slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(server_new)},
      {Py_tp_init, reinterpret_cast<void*>(server_init)},
      {Py_tp_traverse, reinterpret_cast<void*>(server_traverse)},
      {Py_tp_methods, server_methods},
      {Py_tp_doc,
       const_cast<char*>(
           "HttpServer(listener, app, /, **options)\n--\n\n"
           "HttpServer(listener, app, *, server_name, server_port, ...): the "
           "C++ HTTP/1.1 WSGI server (use ptsevent.wsgi.WSGIServer)")},
      {0, nullptr}};
  static PyType_Spec server_spec = {"ptsevent._core.HttpServer", sizeof(Server),
                                    0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
                                    server_slots};
  if (!types_made) return nullptr;
  ServerType =
      py::make_heap_type<PyObject, server_clear, server_destroy>(&server_spec);
  return ServerType;
}

PyTypeObject* file_wrapper_type() { return FileWrapperType; }

}  // namespace ptsevent::http

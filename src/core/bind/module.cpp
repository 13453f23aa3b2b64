// The extension module ptsevent._core: what it holds and in which order it
// is built. Each type and module function is written in the Python face of
// its engine (x_type.cpp beside x.cpp) with the helpers of py/; this file
// only puts them into the module.
//
// Single-phase initialisation (PyModule_Create, m_size -1): the core's
// state is per process and per thread (the static types, the exception
// objects, one hub per thread), not per module object, so there is one
// module object per process. An interpreter that requires per-module state
// (an isolated subinterpreter) refuses to import it, rather than sharing
// this state with the main interpreter.
#include <Python.h>
#include <event2/event.h>

#include "http/server.h"
#include "hub/channel.h"
#include "hub/event.h"
#include "hub/hub.h"
#include "hub/lock.h"
#include "hub/queue.h"
#include "hub/rlock.h"
#include "hub/semaphore.h"
#include "hub/tasklet.h"
#include "hub/timeout.h"
#include "hub/timer.h"
#include "hub/wait_queue.h"
#include "io/buffered_io.h"
#include "io/io_handle.h"
#include "io/poll.h"
#include "io/tls_calls.h"
#include "py/datastack.h"
#include "py/greenlet_api.h"
#include "py/ref.h"

namespace ptsevent {
namespace {

// Adds `value` (a new reference, or null with an error set) as `name`.
int add(PyObject* m, const char* name, PyObject* value) {
  py::Ref v = py::Ref::steal(value);
  if (!v) return -1;
  return PyModule_AddObjectRef(m, name, v.get());
}

int add_type(PyObject* m, const char* name, PyTypeObject* type) {
  return add(m, name, Py_XNewRef(reinterpret_cast<PyObject*>(type)));
}

int make_exceptions() {
  hub::LoopExit = PyErr_NewExceptionWithDoc(
      "ptsevent.LoopExit",
      "Raised in the main tasklet when it waits and nothing can ever wake "
      "it.",
      nullptr, nullptr);
  if (!hub::LoopExit) return -1;
  hub::BlockingSwitchOutError = PyErr_NewExceptionWithDoc(
      "ptsevent.BlockingSwitchOutError",
      "Raised when a blocking call is made in the hub itself.",
      PyExc_RuntimeError, nullptr);
  if (!hub::BlockingSwitchOutError) return -1;
  http::RequestEntityTooLarge = PyErr_NewExceptionWithDoc(
      "ptsevent.wsgi.RequestEntityTooLarge",
      "Raised by wsgi.input when the request body goes over max_body: the "
      "server answers 413 Content Too Large and closes the connection. A "
      "ValueError, as for any other malformed body.",
      PyExc_ValueError, nullptr);
  if (!http::RequestEntityTooLarge) return -1;
  return 0;
}

int exec_core(PyObject* m) {
  if (!py::greenlet::import_api()) return -1;
  py::datastack::install();
  for (PyMethodDef* functions :
       {hub::tasklet_functions, hub::hub_functions, io::poll_functions,
        hub::post_functions, hub::timeout_functions, io::tls_functions})
    if (PyModule_AddFunctions(m, functions) < 0) return -1;

  if (add_type(m, "Tasklet", hub::make_tasklet_type()) < 0 ||
      add_type(m, "Timer", hub::make_timer_type()) < 0 ||
      add_type(m, "Waiter", hub::make_waiter_type()) < 0 ||
      add_type(m, "WaitQueue", hub::make_wait_queue_type()) < 0 ||
      add_type(m, "Channel", hub::make_channel_type()) < 0 ||
      add_type(m, "Lock", hub::make_lock_type()) < 0 ||
      add_type(m, "RLock", hub::make_rlock_type()) < 0 ||
      add_type(m, "BoundedSemaphore", hub::make_semaphore_types()) < 0 ||
      add_type(m, "Semaphore", hub::SemaphoreType) < 0 ||
      add_type(m, "Event", hub::make_event_type()) < 0 ||
      add_type(m, "Queue", hub::make_queue_type()) < 0 ||
      add_type(m, "IoHandle", io::make_io_handle_type()) < 0 ||
      add_type(m, "BufferedIo", io::make_buffered_io_type()) < 0 ||
      add_type(m, "HttpServer", http::make_server_type()) < 0 ||
      add_type(m, "FileWrapper", http::file_wrapper_type()) < 0)
    return -1;

  if (make_exceptions() < 0) return -1;
  if (PyModule_AddObjectRef(m, "RequestEntityTooLarge",
                            http::RequestEntityTooLarge) < 0 ||
      PyModule_AddObjectRef(m, "LoopExit", hub::LoopExit) < 0 ||
      PyModule_AddObjectRef(m, "BlockingSwitchOutError",
                            hub::BlockingSwitchOutError) < 0 ||
      PyModule_AddObjectRef(m, "TaskletExit", py::greenlet::exit_exception()) <
          0)
    return -1;
  // The tunable options of HttpServer and their defaults (read-only): the
  // one source ptsevent.wsgi.DEFAULTS and the command line read.
  if (add(m, "HTTP_OPTIONS", http::option_defaults()) < 0) return -1;
  if (PyModule_AddStringConstant(m, "LIBEVENT_VERSION", event_get_version()) <
      0)
    return -1;
  // Whether PTSEVENT_ASSERT checks are compiled in (the sanitizer build).
  return add(m, "_ASSERTS", PyBool_FromLong(PTSEVENT_ASSERTS != 0));
}

PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    "ptsevent._core",
    "The C++ core of ptsevent: hub, tasklets, waits, cooperative I/O, the "
    "HTTP server.",
    -1,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace
}  // namespace ptsevent

PyMODINIT_FUNC PyInit__core() {
  PyObject* m = PyModule_Create(&ptsevent::core_module);
  if (!m) return nullptr;
  if (ptsevent::exec_core(m) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}

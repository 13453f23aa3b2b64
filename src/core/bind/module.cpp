// The extension module ptsevent._core: the only binding code.
#include <nanobind/nanobind.h>

#include "http/server.h"
#include "hub/channel.h"
#include "hub/datastack.h"
#include "hub/event.h"
#include "hub/hub.h"
#include "hub/lock.h"
#include "hub/queue.h"
#include "hub/rlock.h"
#include "hub/semaphore.h"
#include "hub/tasklet.h"
#include "hub/timer.h"
#include "hub/wait_queue.h"
#include "io/buffered_io.h"
#include "io/io_handle.h"
#include "io/poll.h"
#include "py/greenlet_api.h"

namespace nb = nanobind;
using namespace ptsevent;

NB_MODULE(_core, m) {
  if (!py::greenlet::import_api()) throw nb::python_error();
  hub::datastack::install();
  if (PyModule_AddFunctions(m.ptr(), hub::tasklet_functions) < 0 ||
      PyModule_AddFunctions(m.ptr(), io::poll_functions) < 0 ||
      PyModule_AddFunctions(m.ptr(), hub::post_functions) < 0)
    throw nb::python_error();

  auto add_type = [&](const char* name, PyTypeObject* type) {
    if (!type) throw nb::python_error();
    m.attr(name) = nb::handle(reinterpret_cast<PyObject*>(type));
  };
  add_type("Tasklet", hub::make_tasklet_type());
  add_type("Timer", hub::make_timer_type());
  add_type("Waiter", hub::make_waiter_type());
  add_type("WaitQueue", hub::make_wait_queue_type());
  add_type("Channel", hub::make_channel_type());
  add_type("Lock", hub::make_lock_type());
  add_type("RLock", hub::make_rlock_type());
  add_type("BoundedSemaphore", hub::make_semaphore_types());
  add_type("Semaphore", hub::SemaphoreType);
  add_type("Event", hub::make_event_type());
  add_type("Queue", hub::make_queue_type());
  add_type("IoHandle", io::make_io_handle_type());
  add_type("BufferedIo", io::make_buffered_io_type());
  add_type("HttpServer", http::make_server_type());
  add_type("FileWrapper", http::file_wrapper_type());

  hub::LoopExit = PyErr_NewExceptionWithDoc(
      "ptsevent.LoopExit",
      "Raised in the main tasklet when it waits and nothing can ever wake "
      "it.",
      nullptr, nullptr);
  hub::BlockingSwitchOutError = PyErr_NewExceptionWithDoc(
      "ptsevent.BlockingSwitchOutError",
      "Raised when a blocking call is made in the hub itself.",
      PyExc_RuntimeError, nullptr);
  http::RequestEntityTooLarge = PyErr_NewExceptionWithDoc(
      "ptsevent.wsgi.RequestEntityTooLarge",
      "Raised by wsgi.input when the request body goes over max_body: the "
      "server answers 413 Content Too Large and closes the connection. A "
      "ValueError, as for any other malformed body.",
      PyExc_ValueError, nullptr);
  if (!hub::LoopExit || !hub::BlockingSwitchOutError ||
      !http::RequestEntityTooLarge)
    throw nb::python_error();
  m.attr("RequestEntityTooLarge") = nb::handle(http::RequestEntityTooLarge);
  // The tunable options of HttpServer and their defaults (read-only): the
  // one source ptsevent.wsgi.DEFAULTS and the command line read.
  PyObject* options = http::option_defaults();
  if (!options) throw nb::python_error();
  m.attr("HTTP_OPTIONS") = nb::steal(options);
  m.attr("LoopExit") = nb::handle(hub::LoopExit);
  m.attr("BlockingSwitchOutError") = nb::handle(hub::BlockingSwitchOutError);
  m.attr("TaskletExit") = nb::handle(py::greenlet::exit_exception());
  m.attr("LIBEVENT_VERSION") = event_get_version();
  // Whether PTSEVENT_ASSERT checks are compiled in (the sanitizer build).
  m.attr("_ASSERTS") = nb::bool_(PTSEVENT_ASSERTS != 0);
}

// The Python face of the hub: the module-level functions about the running
// tasklet and this thread's hub as a whole (getcurrent, getmain, sleep,
// _schedule, wait_read/wait_write, hub_stats, hub_turns, the error handler,
// shutdown and fork, the signal wake-up fd), in hub_functions. Hot entry
// points use METH_FASTCALL directly.
#include <Python.h>

#include <climits>

#include "hub/hub.h"
#include "hub/tasklet.h"
#include "hub/timeout.h"
#include "py/args.h"
#include "py/datastack.h"
#include "py/method.h"

namespace ptsevent::hub {

namespace {

using py::parse_args;

int fd_arg(PyObject* obj) { return PyObject_AsFileDescriptor(obj); }

PyObject* wait_fd_call(const char* fname, short what, PyObject* const* args,
                       Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"fd", "timeout"};
  PyObject* a[2] = {nullptr, Py_None};
  if (parse_args(fname, args, nargs, kwnames, names, 2, a) < 0) return nullptr;
  if (!a[0]) {
    PyErr_Format(PyExc_TypeError, "%s() missing required argument 'fd'", fname);
    return nullptr;
  }
  int fd = fd_arg(a[0]);
  if (fd < 0) return nullptr;
  double timeout;
  if (parse_timeout(a[1], TimeoutMode::kWait, &timeout) < 0) return nullptr;
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Tasklet* t = hub->current();
  if (!t) return nullptr;
  int rc = t->wait_fd(fd, what, timeout);
  if (rc < 0) return nullptr;
  if (rc == 1) {
    PyErr_SetString(PyExc_TimeoutError, "timed out");
    return nullptr;
  }
  Py_RETURN_NONE;
}

}  // namespace

static PyObject* fn_sleep(PyObject*, PyObject* const* args, Py_ssize_t nargs,
                          PyObject* kwnames) {
  static const char* const names[] = {"seconds"};
  PyObject* a[1] = {nullptr};
  if (parse_args("sleep", args, nargs, kwnames, names, 1, a) < 0)
    return nullptr;
  double seconds = 0;
  if (a[0]) {
    if (a[0] == Py_None) {
      PyErr_SetString(PyExc_TypeError,
                      "'NoneType' object cannot be interpreted as an integer");
      return nullptr;
    }
    if (parse_timeout(a[0], TimeoutMode::kSleep, &seconds) < 0) return nullptr;
  }
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Tasklet* t = hub->current();
  if (!t) return nullptr;
  if (seconds == 0) {
    // Yield: queue ourselves behind the tasklets already ready.
    hub->schedule(t);
    if (hub->suspend(t) < 0) return nullptr;
    Py_RETURN_NONE;
  }
  if (t->wait_with_timer(seconds) < 0) return nullptr;
  Py_RETURN_NONE;
}

static PyObject* fn_getcurrent(PyObject*, PyObject*) {
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Tasklet* t = hub->current();
  return t ? Py_NewRef(t->self()) : nullptr;
}

static PyObject* fn_getmain(PyObject*, PyObject*) {
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Tasklet* t = hub->main_or_adopt();
  return t ? Py_NewRef(t->self()) : nullptr;
}

// Stackless's schedule(): the current tasklet goes to the end of the
// runnables of this pass (sleep(0) waits for the next pass, after a poll).
static PyObject* fn_schedule(PyObject*, PyObject*) {
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Tasklet* t = hub->current();
  if (!t) return nullptr;
  hub->schedule_in_pass(t);
  if (hub->suspend(t) < 0) return nullptr;
  Py_RETURN_NONE;
}

static PyObject* fn_wait_read(PyObject*, PyObject* const* args,
                              Py_ssize_t nargs, PyObject* kwnames) {
  return wait_fd_call("wait_read", EV_READ, args, nargs, kwnames);
}

static PyObject* fn_wait_write(PyObject*, PyObject* const* args,
                               Py_ssize_t nargs, PyObject* kwnames) {
  return wait_fd_call("wait_write", EV_WRITE, args, nargs, kwnames);
}

static PyObject* fn_hub_stats(PyObject*, PyObject*) {
  Hub* hub = Hub::get();
  return hub ? hub->stats() : nullptr;
}

static PyObject* fn_datastack_stats(PyObject*, PyObject*) {
  return py::datastack::stats();
}

static PyObject* fn_live_tasklets(PyObject*, PyObject*) {
  Hub* hub = Hub::peek();
  return hub ? hub->live_tasklets() : PyList_New(0);
}

static PyObject* fn_shutdown(PyObject*, PyObject*) {
  Hub::shutdown_current();
  Py_RETURN_NONE;
}

static PyObject* fn_after_fork(PyObject*, PyObject*) {
  if (Hub::reinit_after_fork() < 0) return nullptr;
  Py_RETURN_NONE;
}

static PyObject* fn_set_error_handler(PyObject*, PyObject* fn) {
  Hub::set_error_handler(fn == Py_None ? nullptr : fn);
  Py_RETURN_NONE;
}

static PyObject* fn_add_signal_handlers(PyObject*, PyObject* n) {
  long v = PyLong_AsLong(n);
  if (v == -1 && PyErr_Occurred()) return nullptr;
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  hub->count(Source::kSignalHandler, v);
  Py_RETURN_NONE;
}

static PyObject* turns_tuple(const Hub::Turns& t) {
  return Py_BuildValue("(KdO)", static_cast<unsigned long long>(t.passes),
                       t.last_poll, t.polling ? Py_True : Py_False);
}

static PyObject* fn_hub_turns(PyObject*, PyObject* const* args,
                              Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"thread"};
  PyObject* thread = Py_None;
  if (parse_args("hub_turns", args, nargs, kwnames, names, 1, &thread) < 0)
    return nullptr;
  Hub::Turns t;
  if (thread == Py_None) {
    Hub* hub = Hub::peek();
    if (!hub) Py_RETURN_NONE;
    return turns_tuple(hub->turns());
  }
  unsigned long ident = PyLong_AsUnsignedLong(thread);
  if (ident == static_cast<unsigned long>(-1) && PyErr_Occurred())
    return nullptr;
  bool found;
  // The lookup takes a mutex that a hub's thread holds only briefly.
  Py_BEGIN_ALLOW_THREADS found = Hub::turns_of(ident, &t);
  Py_END_ALLOW_THREADS if (!found) Py_RETURN_NONE;
  return turns_tuple(t);
}

static PyObject* fn_chain_wakeup_fd(PyObject*, PyObject* fd_obj) {
  long v = PyLong_AsLong(fd_obj);
  if (v == -1 && PyErr_Occurred()) return nullptr;
  if (v < -1 || v > INT_MAX) {
    PyErr_SetString(PyExc_ValueError, "invalid file descriptor");
    return nullptr;
  }
  int fd = static_cast<int>(v);
  // Checked first: Hub::get() would make a hub for this thread.
  Hub* hub = _PyOS_IsMainThread() ? Hub::get() : nullptr;
  if (!hub && PyErr_Occurred()) return nullptr;
  if (!hub || !hub->handles_signals()) {
    PyErr_SetString(PyExc_ValueError,
                    "set_wakeup_fd only works in main thread of the main "
                    "interpreter");
    return nullptr;
  }
  return PyLong_FromLong(hub->chain_wakeup_fd(fd));
}

#if PTSEVENT_ASSERTS
// _assign_event_on_stack(): hands libevent a callback argument on the C
// stack, of a type that is otherwise a valid owner, which PTSEVENT_ASSERT
// must stop before libevent sees it. Only in the build with assertions,
// where the tests use it to prove the checks are compiled in.
static PyObject* fn_assign_event_on_stack(PyObject*, PyObject*) {
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  alignas(Tasklet) unsigned char on_stack[sizeof(Tasklet)] = {};
  Tasklet* t = reinterpret_cast<Tasklet*>(on_stack);
  struct event ev;
  assign_timer(
      &ev, hub->base(), [](evutil_socket_t, short, void*) {}, t);
  Py_RETURN_NONE;  // not reached
}
#endif

PyMethodDef hub_functions[] = {
#if PTSEVENT_ASSERTS
    {"_assign_event_on_stack", fn_assign_event_on_stack, METH_NOARGS,
     "_assign_event_on_stack()\n--\n\nBreaks the rule that a libevent "
     "callback argument lives on the heap: aborts (assertion build only)."},
#endif
    {"sleep", py::method(fn_sleep), METH_FASTCALL | METH_KEYWORDS,
     "sleep(seconds=0)\n--\n\n"
     "sleep(seconds=0): suspend the current tasklet; 0 yields to the other "
     "ready tasklets."},
    {"getmain", py::method(fn_getmain), METH_NOARGS,
     "getmain()\n--\n\n"
     "getmain() -> the main tasklet of this thread"},
    {"_schedule", py::method(fn_schedule), METH_NOARGS,
     "_schedule()\n--\n\n"
     "_schedule(): yield to the end of this pass's runnables (Stackless's "
     "schedule)"},
    {"getcurrent", py::method(fn_getcurrent), METH_NOARGS,
     "getcurrent()\n--\n\n"
     "getcurrent() -> the running Tasklet."},
    {"wait_read", py::method(fn_wait_read), METH_FASTCALL | METH_KEYWORDS,
     "wait_read(fd, timeout=None)\n--\n\n"
     "wait_read(fd, timeout=None): wait until fd is readable; TimeoutError."},
    {"wait_write", py::method(fn_wait_write), METH_FASTCALL | METH_KEYWORDS,
     "wait_write(fd, timeout=None)\n--\n\n"
     "wait_write(fd, timeout=None): wait until fd is writable; TimeoutError."},
    {"hub_stats", py::method(fn_hub_stats), METH_NOARGS,
     "hub_stats()\n--\n\n"
     "Counters of this thread's hub (for tests and debugging)."},
    {"_live_tasklets", py::method(fn_live_tasklets), METH_NOARGS,
     "_live_tasklets()\n--\n\n"},
    {"_datastack_stats", py::method(fn_datastack_stats), METH_NOARGS,
     "_datastack_stats()\n--\n\n"},
    {"_shutdown", py::method(fn_shutdown), METH_NOARGS, "_shutdown()\n--\n\n"},
    {"_after_fork", py::method(fn_after_fork), METH_NOARGS,
     "_after_fork()\n--\n\n"},
    {"_set_error_handler", py::method(fn_set_error_handler), METH_O,
     "_set_error_handler(fn, /)\n--\n\n"},
    {"_add_signal_handlers", py::method(fn_add_signal_handlers), METH_O,
     "_add_signal_handlers(n, /)\n--\n\n"},
    {"hub_turns", py::method(fn_hub_turns), METH_FASTCALL | METH_KEYWORDS,
     "hub_turns(thread=None)\n--\n\n"
     "hub_turns(thread=None) -> (passes, last_poll, polling) or None: how "
     "far the hub of this thread (or of the OS thread whose ident is given) "
     "has turned. passes counts its polls, last_poll is the time.monotonic() "
     "at the end of the latest one, polling is True while it waits for "
     "events. A hub that is not polling and whose last_poll is old is held "
     "by a tasklet. None when that thread has no hub. Any thread may ask."},
    {"_chain_wakeup_fd", py::method(fn_chain_wakeup_fd), METH_O,
     "_chain_wakeup_fd(fd, /)\n--\n\n"
     "The hub forwards signal bytes to fd (-1: none); returns the previous."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace ptsevent::hub

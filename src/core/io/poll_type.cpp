// The Python face of poll_fds (poll.h): the list of (fd, events) pairs
// and the timeout in, the list of (fd, revents) pairs out.
#include <Python.h>

#include <vector>

#include "hub/clock.h"
#include "hub/hub.h"
#include "hub/tasklet.h"
#include "hub/timeout.h"
#include "io/io_handle.h"
#include "io/poll.h"
#include "py/method.h"

namespace ptsevent::io {

using hub::Hub;
using hub::Tasklet;

namespace {

PyObject* result_list(const std::vector<pollfd>& fds) {
  PyObject* out = PyList_New(0);
  if (!out) return nullptr;
  for (const pollfd& p : fds) {
    if (!p.revents) continue;
    PyObject* item = Py_BuildValue("(ih)", p.fd, p.revents);
    if (!item || PyList_Append(out, item) < 0) {
      Py_XDECREF(item);
      Py_DECREF(out);
      return nullptr;
    }
    Py_DECREF(item);
  }
  return out;
}

// poll_fds([(fd, events), ...], timeout=None) -> [(fd, revents), ...]
PyObject* fn_poll_fds(PyObject*, PyObject* args) {
  PyObject* seq;
  PyObject* timeout_obj = Py_None;
  if (!PyArg_ParseTuple(args, "O|O:poll_fds", &seq, &timeout_obj))
    return nullptr;
  double timeout;
  if (hub::parse_timeout(timeout_obj, hub::TimeoutMode::kWait, &timeout) < 0)
    return nullptr;
  PyObject* fast = PySequence_Fast(seq, "poll_fds() needs a sequence");
  if (!fast) return nullptr;
  std::vector<pollfd> fds;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
  fds.reserve(n);
  for (Py_ssize_t i = 0; i < n; ++i) {
    int fd;
    short events;
    if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "ih", &fd,
                          &events)) {
      Py_DECREF(fast);
      return nullptr;
    }
    if (fd < 0) {
      Py_DECREF(fast);
      PyErr_Format(PyExc_ValueError,
                   "file descriptor cannot be a negative integer (%d)", fd);
      return nullptr;
    }
    fds.push_back(pollfd{fd, events, 0});
  }
  Py_DECREF(fast);
  if (poll_fds(fds, timeout) < 0) return nullptr;
  return result_list(fds);
}

// retry_read(fd, fn, *args) / retry_write(...): the IoHandle's
// retry_read() for a bare descriptor (os.read, os.write), without a
// timeout.
PyObject* retry_fd(short what, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 2) {
    PyErr_SetString(PyExc_TypeError,
                    "expected a descriptor, a callable and its arguments");
    return nullptr;
  }
  long fd = PyLong_AsLong(args[0]);
  if (fd == -1 && PyErr_Occurred()) return nullptr;
  hub::Deadline forever(-1);
  return retry_python_call(
      args + 1, static_cast<size_t>(nargs - 1), forever, [&]() -> int {
        Hub* hub = Hub::get();
        Tasklet* t = hub ? hub->current() : nullptr;
        if (!t) return -1;
        return t->wait_fd(static_cast<int>(fd), what, -1) < 0 ? -1 : 0;
      });
}

PyObject* fn_retry_read(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  return retry_fd(EV_READ, args, nargs);
}

PyObject* fn_retry_write(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  return retry_fd(EV_WRITE, args, nargs);
}

}  // namespace

PyMethodDef poll_functions[] = {
    {"retry_read", py::method(fn_retry_read), METH_FASTCALL,
     "retry_read(fd, fn, /, *args)\n--\n\n"
     "fn(*args), waiting until fd is readable while it raises "
     "BlockingIOError."},
    {"retry_write", py::method(fn_retry_write), METH_FASTCALL,
     "retry_write(fd, fn, /, *args)\n--\n\n"
     "retry_read() waiting until fd is writable."},
    {"poll_fds", py::method(fn_poll_fds), METH_VARARGS,
     "poll_fds(fds, timeout=None, /)\n--\n\n"
     "poll_fds([(fd, events), ...], timeout=None) -> [(fd, revents), ...]: "
     "poll(2) semantics, blocking only the current tasklet."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace ptsevent::io

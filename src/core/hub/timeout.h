// The one reader of timeout arguments: every call that takes seconds
// (sleep, waits, socket timeouts, Timeout, select, locks) parses them here,
// each with the rules and error messages of the standard call it mirrors.
#pragma once

#include <Python.h>

namespace ptsevent::hub {

// How a timeout argument is read (seconds; None = forever, -1.0).
enum class TimeoutMode {
  kSleep,          // as time.sleep: negative -> ValueError
  kWait,           // as threading waits: negative means 0
  kStrict,         // a timeout property of ours: negative -> ValueError
  kSocket,         // as socket.settimeout: its messages, whole nanoseconds
  kTimeoutObject,  // ptsevent.Timeout(seconds)
  kSelect,         // as select.select: seconds, negative -> ValueError
  kPoll,  // as poll.poll/epoll.poll: any sign (negative: forever, -1.0)
  kLock,  // as _thread.lock.acquire: type and NaN only; -1 kept
};
// Parses `obj` into *seconds (-1.0 for None). 0 on success, -1 with an error.
int parse_timeout(PyObject* obj, TimeoutMode mode, double* seconds);

// _core.parse_timeout(value, mode): the same, for the Python layer; mode is
// "Timeout", "select" or "poll". None or a float.
PyObject* py_parse_timeout(PyObject*, PyObject* const* args, Py_ssize_t nargs);
extern PyMethodDef timeout_functions[];

}  // namespace ptsevent::hub

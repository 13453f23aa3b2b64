// The out-of-line parts of Waiters (waiters.h): the pool of wait records,
// the introspection snapshot, the threading-style wait timeout.
#include "hub/waiters.h"

#include "hub/timeout.h"

namespace ptsevent::hub {

namespace {

// Spare records for every primitive's waits. The GIL guards them: every
// wait and every hand-off runs with it held. Enough for the waiters of a
// busy process; beyond, records are freed.
WaitRecordPool<HandoffWait, 1024> g_spare;

PyTypeObject* g_snapshot_type = nullptr;

PyStructSequence_Field snapshot_fields[] = {
    {"wq", "the waiting tasklets, oldest first"},
    {"woken", "waiters handed something that have not returned yet"},
    {nullptr, nullptr}};
PyStructSequence_Desc snapshot_desc = {
    "ptsevent._core.WaitersState",
    "The tasklets waiting on a primitive (a snapshot).", snapshot_fields, 2};

}  // namespace

HandoffWait* take_handoff_wait() {
  HandoffWait* r = g_spare.take();
  if (!r) PyErr_NoMemory();
  return r;
}

void give_handoff_wait(HandoffWait* r) noexcept { g_spare.give(r); }

PyObject* Waiters::tasklets() const {
  PyObject* t = PyTuple_New(count);
  if (!t) return nullptr;
  Py_ssize_t i = 0;
  for (WaitRecord* r = list.front(); r && i < count; r = r->next, ++i)
    PyTuple_SET_ITEM(t, i, Py_NewRef(r->tasklet->self()));
  return t;
}

PyObject* waiters_snapshot(const Waiters& w) {
  if (!w.used) Py_RETURN_NONE;
  if (!g_snapshot_type) {
    g_snapshot_type = PyStructSequence_NewType(&snapshot_desc);
    if (!g_snapshot_type) return nullptr;
  }
  PyObject* s = PyStructSequence_New(g_snapshot_type);
  if (!s) return nullptr;
  PyObject* wq = w.tasklets();
  PyObject* woken = wq ? PyLong_FromSsize_t(w.handed) : nullptr;
  if (!woken) {
    Py_XDECREF(wq);
    Py_DECREF(s);
    return nullptr;
  }
  PyStructSequence_SET_ITEM(s, 0, wq);
  PyStructSequence_SET_ITEM(s, 1, woken);
  return s;
}

int threading_wait_timeout(PyObject* obj, double* seconds) {
  if (!obj || obj == Py_None) {
    *seconds = -1;
    return 0;
  }
  double s = PyFloat_AsDouble(obj);  // TypeError for what is not a number
  if (s == -1 && PyErr_Occurred()) return -1;
  if (!(s > 0)) {  // 0, negative, NaN: as threading, no wait at all
    *seconds = 0;
    return 0;
  }
  return parse_timeout(obj, TimeoutMode::kWait, seconds);
}

int type_names(PyObject* self, py::Ref* module, py::Ref* qualname) {
  PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(self));
  *module = py::Ref::steal(PyObject_GetAttrString(type, "__module__"));
  if (!*module) return -1;
  *qualname = py::Ref::steal(PyObject_GetAttrString(type, "__qualname__"));
  return *qualname ? 0 : -1;
}

}  // namespace ptsevent::hub

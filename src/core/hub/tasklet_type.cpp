// The Python face of tasklets: the Tasklet type (construction, GC support,
// methods, attributes) and the module-level functions that make one (spawn,
// spawn_later). The functions about the running tasklet and the hub as a
// whole are hub_type.cpp. Hot entry points use METH_FASTCALL directly.
#include <Python.h>
#include <structmember.h>

#include "hub/channel.h"
#include "hub/tasklet.h"
#include "hub/timeout.h"
#include "py/args.h"
#include "py/greenlet_api.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

namespace {

using py::parse_args;

// fn, *args, **kwargs of a FASTCALL|KEYWORDS call starting at `first`.
Tasklet* tasklet_from_call(Hub* hub, PyObject* const* args, Py_ssize_t nargs,
                           PyObject* kwnames, Py_ssize_t first) {
  py::Ref pos = py::Ref::steal(PyTuple_New(nargs - first - 1));
  if (!pos) return nullptr;
  for (Py_ssize_t i = first + 1; i < nargs; ++i)
    PyTuple_SET_ITEM(pos.get(), i - first - 1, Py_NewRef(args[i]));
  py::Ref kw;
  if (kwnames && PyTuple_GET_SIZE(kwnames)) {
    kw = py::Ref::steal(PyDict_New());
    if (!kw) return nullptr;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); ++k)
      if (PyDict_SetItem(kw.get(), PyTuple_GET_ITEM(kwnames, k),
                         args[nargs + k]) < 0)
        return nullptr;
  }
  return new_tasklet(hub, args[first], pos.get(), kw.get());
}

}  // namespace

// ------------------------------------------------------- Tasklet methods

static PyObject* Tasklet_new(PyTypeObject* type, PyObject* args,
                             PyObject* kwds) {
  if (PyTuple_GET_SIZE(args) < 1) {
    PyErr_SetString(PyExc_TypeError,
                    "Tasklet() missing required argument 'run'");
    return nullptr;
  }
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Tasklet* t = alloc_tasklet(type, hub);
  if (!t) return nullptr;
  py::Ref rest = py::Ref::steal(PyTuple_GetSlice(args, 1, PY_SSIZE_T_MAX));
  if (!rest || bind_job(t, PyTuple_GET_ITEM(args, 0), rest.get(), kwds) < 0) {
    Py_DECREF(t->self());
    return nullptr;
  }
  return t->self();
}

int Tasklet::traverse(visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(this));
  Py_VISIT(dict);
  for (py::Ref* r : refs())
    if (int rc = r->visit(visit, arg)) return rc;
  return 0;
}

void Tasklet::clear() noexcept {
  Py_CLEAR(dict);
  // greenlet_ is kept: an adopted greenlet may still be running.
  for (py::Ref* r : refs())
    if (r != &greenlet_) r->reset();
}

void Tasklet::destroy() noexcept {
  // A live tasklet is referenced by its hub, so nothing is armed here; stay
  // defensive all the same: no event may outlive its memory.
  PTSEVENT_ASSERT(!io_armed_ && !timer_armed_,
                  "a tasklet is freed with an armed event");
  // The run queue holds raw pointers: a queued tasklet is held by the hub
  // (live list, or the queue itself for a zombie).
  PTSEVENT_ASSERT(!queued_, "a tasklet is freed while on the run queue");
  // A waiting structure holds whoever waits on it: nobody waits on a freed
  // one, and this tasklet, waiting, would be held by its hub.
  PTSEVENT_ASSERT(!wait_, "a tasklet is freed while listed as waiting");
  PTSEVENT_ASSERT(joiners_.empty(), "a tasklet is freed while joined");
  Hub* hub = Hub::peek();
  if (hub && hub == hub_ && hub->serial() == hub_serial_) disarm();
  for (py::Ref* r : refs()) r->~Ref();
}

int Tasklet::link(PyObject* cb) {
  if (!PyCallable_Check(cb)) {
    PyErr_Format(PyExc_TypeError, "'%.200s' object is not callable",
                 Py_TYPE(cb)->tp_name);
    return -1;
  }
  if (state_ == State::kDead) {
    Hub* hub = Hub::get();
    if (!hub) return -1;
    py::Ref args = py::Ref::steal(PyTuple_Pack(1, self()));
    if (!args) return -1;
    Tasklet* l = new_tasklet(hub, cb, args.get(), nullptr);
    if (!l) return -1;
    int rc = l->start(0);
    Py_DECREF(l->self());
    return rc;
  }
  if (!links_) {
    links_ = py::Ref::steal(PyList_New(0));
    if (!links_) return -1;
  }
  return PyList_Append(links_.get(), cb);
}

int Tasklet::unlink(PyObject* cb) {
  if (!links_) return 0;
  PyObject* list = links_.get();
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); ++i) {
    int eq = PyObject_RichCompareBool(PyList_GET_ITEM(list, i), cb, Py_EQ);
    if (eq < 0) return -1;
    if (eq) return PySequence_DelItem(list, i);
  }
  return 0;
}

static int Tasklet_traverse(Tasklet* t, visitproc visit, void* arg) {
  return t->traverse(visit, arg);
}

static int Tasklet_clear(Tasklet* t) {
  t->clear();
  return 0;
}

// After Tasklet_clear (py::make_heap_type's dealloc).
static void Tasklet_destroy(Tasklet* t) { t->destroy(); }

static PyObject* Tasklet_repr(Tasklet* t) {
  const char* state = "idle";
  switch (t->state()) {
    case State::kIdle:
      state = "idle";
      break;
    case State::kPending:
      state = "pending";
      break;
    case State::kRunning:
      state = t->waiting() ? "waiting" : "running";
      break;
    case State::kDead:
      state = "dead";
      break;
  }
  if (t->is_main())
    return PyUnicode_FromFormat("<Tasklet main at %p: %s>", t, state);
  if (t->run())
    return PyUnicode_FromFormat("<Tasklet at %p: %R: %s>", t, t->run(), state);
  return PyUnicode_FromFormat("<Tasklet at %p: %s>", t, state);
}

static PyObject* Tasklet_join(Tasklet* t, PyObject* const* args,
                              Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"timeout"};
  PyObject* a[1] = {Py_None};
  if (parse_args("join", args, nargs, kwnames, names, 1, a) < 0) return nullptr;
  double timeout;
  if (parse_timeout(a[0], TimeoutMode::kWait, &timeout) < 0) return nullptr;
  if (t->join(timeout) < 0) return nullptr;
  Py_RETURN_NONE;
}

static PyObject* Tasklet_kill(Tasklet* t, PyObject* const* args,
                              Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"exception", "block", "timeout"};
  PyObject* a[3] = {py::greenlet::exit_exception(), Py_True, Py_None};
  if (parse_args("kill", args, nargs, kwnames, names, 3, a) < 0) return nullptr;
  // None: the default, so that the signature can name it (inspect accepts
  // only constants as defaults).
  if (a[0] == Py_None) a[0] = py::greenlet::exit_exception();
  int block = PyObject_IsTrue(a[1]);
  if (block < 0) return nullptr;
  double timeout;
  if (parse_timeout(a[2], TimeoutMode::kWait, &timeout) < 0) return nullptr;
  if (t->kill(a[0], block, timeout) < 0) return nullptr;
  Py_RETURN_NONE;
}

static PyObject* Tasklet_get(Tasklet* t, PyObject* const* args,
                             Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"block", "timeout"};
  PyObject* a[2] = {Py_True, Py_None};
  if (parse_args("get", args, nargs, kwnames, names, 2, a) < 0) return nullptr;
  int block = PyObject_IsTrue(a[0]);
  if (block < 0) return nullptr;
  double timeout;
  if (parse_timeout(a[1], TimeoutMode::kWait, &timeout) < 0) return nullptr;
  if (!t->dead()) {
    if (block && t->join(timeout) < 0) return nullptr;
    if (!t->dead()) {
      PyErr_SetString(PyExc_TimeoutError, "timed out");
      return nullptr;
    }
  }
  if (PyObject* e = t->exception()) {
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(e)), e);
    return nullptr;
  }
  return Py_NewRef(t->value() ? t->value() : Py_None);
}

static PyObject* Tasklet_start(Tasklet* t, PyObject*) {
  if (t->start(0) < 0) return nullptr;
  Py_RETURN_NONE;
}

// _insert(): start(), at the end of this pass's runnables (Stackless's
// insert) instead of the next pass.
static PyObject* Tasklet_insert(Tasklet* t, PyObject*) {
  if (t->start(0, true) < 0) return nullptr;
  Py_RETURN_NONE;
}

// _bind(run, args=(), kwargs=None): rebinds the job of a tasklet that has
// not been started (Stackless's tasklet.bind / setup).
static PyObject* Tasklet_bind(Tasklet* t, PyObject* const* args,
                              Py_ssize_t nargs) {
  if (nargs < 1 || nargs > 3) {
    PyErr_SetString(PyExc_TypeError, "_bind(run, args=(), kwargs=None)");
    return nullptr;
  }
  if (t->state() != State::kIdle) {
    PyErr_SetString(PyExc_RuntimeError,
                    "cannot bind a tasklet that was started");
    return nullptr;
  }
  PyObject* a = nargs > 1 && args[1] != Py_None ? args[1] : nullptr;
  PyObject* kw = nargs > 2 && args[2] != Py_None ? args[2] : nullptr;
  if (a && !PyTuple_Check(a)) {
    PyErr_SetString(PyExc_TypeError, "args must be a tuple");
    return nullptr;
  }
  if (kw && !PyDict_Check(kw)) {
    PyErr_SetString(PyExc_TypeError, "kwargs must be a dict");
    return nullptr;
  }
  if (bind_job(t, args[0], a, kw) < 0) return nullptr;
  Py_RETURN_NONE;
}

static PyObject* Tasklet_get_waiting(Tasklet* t, void*) {
  return PyBool_FromLong(t->waiting());
}

static PyObject* Tasklet_get_queued(Tasklet* t, void*) {
  return PyBool_FromLong(t->queued());
}

static PyObject* Tasklet_get_tempval(Tasklet* t, void*) {
  PyObject* v = channel_transfer(t->wait_record());
  return Py_NewRef(v ? v : Py_None);
}

static PyObject* Tasklet_start_later(Tasklet* t, PyObject* seconds) {
  double s;
  if (parse_timeout(seconds, TimeoutMode::kSleep, &s) < 0) return nullptr;
  if (s < 0) {
    PyErr_SetString(PyExc_TypeError, "start_later() needs a number of seconds");
    return nullptr;
  }
  if (t->start(s) < 0) return nullptr;
  Py_RETURN_NONE;
}

static PyObject* Tasklet_ready(Tasklet* t, PyObject*) {
  return PyBool_FromLong(t->dead());
}

static PyObject* Tasklet_successful(Tasklet* t, PyObject*) {
  return PyBool_FromLong(t->dead() && !t->exception());
}

static PyObject* Tasklet_link(Tasklet* t, PyObject* cb) {
  if (t->link(cb) < 0) return nullptr;
  Py_RETURN_NONE;
}

static PyObject* Tasklet_unlink(Tasklet* t, PyObject* cb) {
  if (t->unlink(cb) < 0) return nullptr;
  Py_RETURN_NONE;
}

static PyObject* Tasklet_get_dead(Tasklet* t, void*) {
  if (t->adopted()) return PyBool_FromLong(py::greenlet::dead(t->greenlet()));
  return PyBool_FromLong(t->dead());
}
static PyObject* Tasklet_get_started(Tasklet* t, void*) {
  return PyBool_FromLong(t->state() != State::kIdle);
}
static PyObject* Tasklet_get_value(Tasklet* t, void*) {
  return Py_NewRef(t->value() ? t->value() : Py_None);
}
static PyObject* Tasklet_get_exception(Tasklet* t, void*) {
  return Py_NewRef(t->exception() ? t->exception() : Py_None);
}
static PyObject* Tasklet_get_main(Tasklet* t, void*) {
  return PyBool_FromLong(t->is_main());
}

static PyMethodDef Tasklet_methods[] = {
    {"join", py::method(Tasklet_join), METH_FASTCALL | METH_KEYWORDS,
     "join($self, timeout=None)\n--\n\n"
     "join(timeout=None): wait until the tasklet is dead (or the timeout)."},
    {"kill", py::method(Tasklet_kill), METH_FASTCALL | METH_KEYWORDS,
     "kill($self, exception=None, block=True, timeout=None)\n--\n\n"
     "kill(exception=TaskletExit, block=True, timeout=None): raise the "
     "exception in the tasklet at its wait point; a tasklet not yet started "
     "never runs."},
    {"get", py::method(Tasklet_get), METH_FASTCALL | METH_KEYWORDS,
     "get($self, block=True, timeout=None)\n--\n\n"
     "get(block=True, timeout=None): the return value, or raise the "
     "tasklet's exception; TimeoutError if it is not dead in time."},
    {"start", py::method(Tasklet_start), METH_NOARGS,
     "start($self, /)\n--\n\n"
     "Schedule the tasklet to run."},
    {"_insert", py::method(Tasklet_insert), METH_NOARGS,
     "_insert($self, /)\n--\n\n"
     "_insert(): start at the end of this pass's runnables"},
    {"_bind", py::method(Tasklet_bind), METH_FASTCALL,
     "_bind($self, run, args=(), kwargs=None, /)\n--\n\n"
     "_bind(run, args=(), kwargs=None): rebind a tasklet not yet started"},
    {"start_later", py::method(Tasklet_start_later), METH_O,
     "start_later($self, seconds, /)\n--\n\n"
     "start_later(seconds): schedule the tasklet to run after a delay."},
    {"ready", py::method(Tasklet_ready), METH_NOARGS,
     "ready($self, /)\n--\n\n"
     "True once the tasklet is dead."},
    {"successful", py::method(Tasklet_successful), METH_NOARGS,
     "successful($self, /)\n--\n\n"
     "True if dead without an exception (TaskletExit counts as success)."},
    {"link", py::method(Tasklet_link), METH_O,
     "link($self, callback, /)\n--\n\n"
     "link(callback): run callback(tasklet) in a new tasklet once it is dead."},
    {"unlink", py::method(Tasklet_unlink), METH_O,
     "unlink($self, callback, /)\n--\n\n"
     "unlink(callback): remove a callback added by link()."},
    {nullptr, nullptr, 0, nullptr}};

static PyGetSetDef Tasklet_getset[] = {
    {"dead", reinterpret_cast<getter>(Tasklet_get_dead), nullptr,
     "True once the tasklet finished or was killed.", nullptr},
    {"started", reinterpret_cast<getter>(Tasklet_get_started), nullptr,
     "True once start() (or spawn) scheduled it.", nullptr},
    {"value", reinterpret_cast<getter>(Tasklet_get_value), nullptr,
     "The return value (None until dead or on failure).", nullptr},
    {"exception", reinterpret_cast<getter>(Tasklet_get_exception), nullptr,
     "The exception that ended it, or None.", nullptr},
    {"_waiting", reinterpret_cast<getter>(Tasklet_get_waiting), nullptr,
     "suspended, waiting for something to wake it", nullptr},
    {"_queued", reinterpret_cast<getter>(Tasklet_get_queued), nullptr,
     "on the run queue (or scheduled to start)", nullptr},
    {"_tempval", reinterpret_cast<getter>(Tasklet_get_tempval), nullptr,
     "the value of a channel transfer in progress", nullptr},
    {"is_main", reinterpret_cast<getter>(Tasklet_get_main), nullptr,
     "True for the tasklet of a thread's main greenlet.", nullptr},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, nullptr,
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

static PyMemberDef Tasklet_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(TaskletHead, weakrefs),
     READONLY, nullptr},
    {"__dictoffset__", T_PYSSIZET, offsetof(TaskletHead, dict), READONLY,
     nullptr},
    {nullptr, 0, 0, 0, nullptr}};

PyTypeObject* make_tasklet_type() {
  PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(Tasklet_new)},
      {Py_tp_traverse, reinterpret_cast<void*>(Tasklet_traverse)},
      {Py_tp_repr, reinterpret_cast<void*>(Tasklet_repr)},
      {Py_tp_methods, Tasklet_methods},
      {Py_tp_getset, Tasklet_getset},
      {Py_tp_members, Tasklet_members},
      {Py_tp_doc,
       const_cast<char*>("Tasklet(run, /, *args, **kwargs)\n--\n\n"
                         "run(*args, **kwargs) as a lightweight cooperative "
                         "task once started.")},
      {0, nullptr}};
  PyType_Spec spec = {
      "ptsevent.Tasklet", sizeof(Tasklet), 0,
      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE, slots};
  TaskletType =
      py::make_heap_type<Tasklet, Tasklet_clear, Tasklet_destroy>(&spec);
  return TaskletType;
}

// ------------------------------------------------------ module functions

static PyObject* fn_spawn(PyObject*, PyObject* const* args, Py_ssize_t nargs,
                          PyObject* kwnames) {
  if (nargs < 1) {
    PyErr_SetString(PyExc_TypeError, "spawn() missing required argument 'fn'");
    return nullptr;
  }
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Tasklet* t = tasklet_from_call(hub, args, nargs, kwnames, 0);
  if (!t) return nullptr;
  if (t->start(0) < 0) {
    Py_DECREF(t->self());
    return nullptr;
  }
  return t->self();
}

static PyObject* fn_spawn_later(PyObject*, PyObject* const* args,
                                Py_ssize_t nargs, PyObject* kwnames) {
  if (nargs < 2) {
    PyErr_SetString(PyExc_TypeError,
                    "spawn_later() missing required arguments 'seconds' and "
                    "'fn'");
    return nullptr;
  }
  double delay;
  if (parse_timeout(args[0], TimeoutMode::kSleep, &delay) < 0) return nullptr;
  if (delay < 0) {
    PyErr_SetString(PyExc_TypeError, "spawn_later() needs a number of seconds");
    return nullptr;
  }
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Tasklet* t = tasklet_from_call(hub, args, nargs, kwnames, 1);
  if (!t) return nullptr;
  if (t->start(delay) < 0) {
    Py_DECREF(t->self());
    return nullptr;
  }
  return t->self();
}

PyMethodDef tasklet_functions[] = {
    {"spawn", py::method(fn_spawn), METH_FASTCALL | METH_KEYWORDS,
     "spawn(fn, /, *args, **kwargs)\n--\n\n"
     "spawn(fn, *args, **kwargs) -> Tasklet: run fn in a new tasklet."},
    {"spawn_later", py::method(fn_spawn_later), METH_FASTCALL | METH_KEYWORDS,
     "spawn_later(seconds, fn, /, *args, **kwargs)\n--\n\n"
     "spawn_later(seconds, fn, *args, **kwargs) -> Tasklet."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace ptsevent::hub

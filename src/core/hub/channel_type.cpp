// The Python face of Channel (`_core.Channel`, `ptsevent.stackless.channel`):
// construction, the arguments of send_exception() and send_throw(), method
// and attribute tables, the type. The engine is channel.cpp.
#include <Python.h>
#include <structmember.h>

#include "hub/channel.h"
#include "hub/tasklet.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

PyTypeObject* ChannelType = nullptr;

namespace {

// An exception instance from (type, *args) as `raise type(*args)` would.
PyObject* make_exception(PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 1) {
    PyErr_SetString(PyExc_TypeError,
                    "send_exception() needs an exception type");
    return nullptr;
  }
  PyObject* exc = args[0];
  if (PyExceptionInstance_Check(exc)) {
    if (nargs > 1) {
      PyErr_SetString(PyExc_TypeError,
                      "instance exception may not have separate args");
      return nullptr;
    }
    return Py_NewRef(exc);
  }
  if (!PyExceptionClass_Check(exc)) {
    PyErr_SetString(
        PyExc_TypeError,
        "exceptions must be classes or instances deriving from BaseException");
    return nullptr;
  }
  py::Ref tuple = py::Ref::steal(PyTuple_New(nargs - 1));
  if (!tuple) return nullptr;
  for (Py_ssize_t i = 1; i < nargs; ++i)
    PyTuple_SET_ITEM(tuple.get(), i - 1, Py_NewRef(args[i]));
  return PyObject_Call(exc, tuple.get(), nullptr);
}

PyObject* Channel_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
    PyErr_SetString(PyExc_TypeError, "channel() takes no arguments");
    return nullptr;
  }
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Channel* ch = reinterpret_cast<Channel*>(type->tp_alloc(type, 0));
  if (!ch) return nullptr;
  ch->hub_ = hub;
  ch->hub_serial_ = hub->serial();
  new (&ch->queue_) WaitList();
  new (&ch->spare_) WaitRecordPool<ChannelWait>();
  ch->preference_ = -1;
  return ch->self();
}

// py::make_heap_type's dealloc calls it.
void Channel_destroy(Channel* ch) {
  // A blocked tasklet holds the channel: nobody waits here.
  PTSEVENT_ASSERT(ch->queue_.empty(),
                  "a channel is freed while tasklets wait on it");
  ch->spare_.destroy();
}

PyObject* Channel_send(Channel* ch, PyObject* value) {
  return channel_send(ch, value, kValue);
}

PyObject* Channel_receive(Channel* ch, PyObject*) {
  return channel_receive(ch);
}

PyObject* Channel_send_exception(Channel* ch, PyObject* const* args,
                                 Py_ssize_t nargs) {
  py::Ref exc = py::Ref::steal(make_exception(args, nargs));
  if (!exc) return nullptr;
  return channel_send(ch, exc.get(), kException);
}

PyObject* Channel_send_throw(Channel* ch, PyObject* const* args,
                             Py_ssize_t nargs) {
  // send_throw(exc, value=None, tb=None): the exception as generator.throw
  // builds it: a class with a value that is an instance of it, a tuple of
  // arguments, a single argument or nothing; an instance with no value.
  if (nargs < 1 || nargs > 3) {
    PyErr_SetString(PyExc_TypeError, "send_throw(exc, value=None, tb=None)");
    return nullptr;
  }
  PyObject* type = args[0];
  PyObject* value = nargs > 1 ? args[1] : Py_None;
  py::Ref exc;
  if (PyExceptionInstance_Check(type)) {
    if (value != Py_None) {
      PyErr_SetString(PyExc_TypeError,
                      "instance exception may not have a separate value");
      return nullptr;
    }
    exc = py::Ref::borrow(type);
  } else if (PyExceptionClass_Check(type)) {
    if (value != Py_None && PyObject_IsInstance(value, type) == 1) {
      exc = py::Ref::borrow(value);
    } else if (value == Py_None) {
      exc = py::Ref::steal(PyObject_CallNoArgs(type));
    } else if (PyTuple_Check(value)) {
      exc = py::Ref::steal(PyObject_Call(type, value, nullptr));
    } else {
      exc = py::Ref::steal(PyObject_CallOneArg(type, value));
    }
    if (!exc) return nullptr;
    if (!PyExceptionInstance_Check(exc.get())) {
      PyErr_Format(PyExc_TypeError,
                   "calling %R should have returned an instance of "
                   "BaseException, not %s",
                   type, Py_TYPE(exc.get())->tp_name);
      return nullptr;
    }
  } else {
    PyErr_SetString(
        PyExc_TypeError,
        "exceptions must be classes or instances deriving from BaseException");
    return nullptr;
  }
  if (nargs > 2 && args[2] != Py_None) {
    if (!PyTraceBack_Check(args[2])) {
      PyErr_SetString(PyExc_TypeError,
                      "throw() third argument must be a traceback object");
      return nullptr;
    }
    if (PyException_SetTraceback(exc.get(), args[2]) < 0) return nullptr;
  }
  return channel_send(ch, exc.get(), kException);
}

PyObject* Channel_send_sequence(Channel* ch, PyObject* seq) {
  py::Ref it = py::Ref::steal(PyObject_GetIter(seq));
  if (!it) return nullptr;
  Py_ssize_t n = 0;
  for (;;) {
    py::Ref item = py::Ref::steal(PyIter_Next(it.get()));
    if (!item) {
      if (PyErr_Occurred()) return nullptr;
      break;
    }
    py::Ref r = py::Ref::steal(channel_send(ch, item.get(), kValue));
    if (!r) return nullptr;
    ++n;
  }
  return PyLong_FromSsize_t(n);
}

PyObject* Channel_close(Channel* ch, PyObject*) { return channel_close(ch); }

PyObject* Channel_open(Channel* ch, PyObject*) {
  ch->closing_ = false;
  Py_RETURN_NONE;
}

PyObject* Channel_iternext(PyObject* self) {
  Channel* ch = reinterpret_cast<Channel*>(self);
  if (ch->closed()) return nullptr;  // StopIteration
  PyObject* r = channel_receive(ch);
  if (!r && ch->closed() && PyErr_ExceptionMatches(PyExc_ValueError)) {
    PyErr_Clear();
    return nullptr;
  }
  return r;
}

PyObject* get_balance(Channel* ch, void*) {
  return PyLong_FromLong(ch->balance_);
}
PyObject* get_closing(Channel* ch, void*) {
  return PyBool_FromLong(ch->closing_);
}
PyObject* get_closed(Channel* ch, void*) {
  return PyBool_FromLong(ch->closed());
}
PyObject* get_queue(Channel* ch, void*) {
  if (ch->queue_.empty()) Py_RETURN_NONE;
  return Py_NewRef(ch->queue_.front()->tasklet->self());
}
PyObject* get_preference(Channel* ch, void*) {
  return PyLong_FromLong(ch->preference_);
}
int set_preference(Channel* ch, PyObject* v, void*) {
  if (!v) {
    PyErr_SetString(PyExc_AttributeError, "cannot delete preference");
    return -1;
  }
  long p = PyLong_AsLong(v);
  if (p == -1 && PyErr_Occurred()) return -1;
  if (p < -1 || p > 1) {
    PyErr_SetString(PyExc_ValueError, "preference must be -1, 0 or 1");
    return -1;
  }
  ch->preference_ = static_cast<int>(p);
  return 0;
}

PyGetSetDef Channel_getset[] = {
    {"balance", reinterpret_cast<getter>(get_balance), nullptr,
     "senders waiting (> 0) or receivers waiting (< 0)", nullptr},
    {"closing", reinterpret_cast<getter>(get_closing), nullptr,
     "close() was called", nullptr},
    {"closed", reinterpret_cast<getter>(get_closed), nullptr,
     "closing and nobody waits: nothing more will pass", nullptr},
    {"queue", reinterpret_cast<getter>(get_queue), nullptr,
     "the first blocked tasklet, or None", nullptr},
    {"preference", reinterpret_cast<getter>(get_preference),
     reinterpret_cast<setter>(set_preference),
     "-1 prefer the receiver (default), 1 prefer the sender, 0 never switch",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMethodDef Channel_methods[] = {
    {"send", py::method(Channel_send), METH_O,
     "send($self, value, /)\n--\n\n"
     "send(value): rendezvous with a receiver"},
    {"receive", py::method(Channel_receive), METH_NOARGS,
     "receive($self, /)\n--\n\n"
     "receive() -> value"},
    {"send_exception", py::method(Channel_send_exception), METH_FASTCALL,
     "send_exception($self, exc, /, *args)\n--\n\n"
     "send_exception(exc, *args): the receiver raises exc(*args)"},
    {"send_throw", py::method(Channel_send_throw), METH_FASTCALL,
     "send_throw($self, exc, value=None, tb=None, /)\n--\n\n"
     "send_throw(exc, value=None, tb=None): the receiver raises it"},
    {"send_sequence", py::method(Channel_send_sequence), METH_O,
     "send_sequence($self, iterable, /)\n--\n\n"
     "send_sequence(iterable) -> number of values sent"},
    {"close", py::method(Channel_close), METH_NOARGS,
     "close($self, /)\n--\n\n"
     "stop sends; closed once no sender is left"},
    {"open", py::method(Channel_open), METH_NOARGS,
     "open($self, /)\n--\n\n"
     "undo close()"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

PyTypeObject* make_channel_type() {
  static PyMemberDef members[] = {
      {"__weaklistoffset__", T_PYSSIZET, offsetof(Channel, weakrefs_), READONLY,
       nullptr},
      {nullptr, 0, 0, 0, nullptr}};
  static PyType_Slot slots[] = {
      {Py_tp_new, reinterpret_cast<void*>(Channel_new)},
      {Py_tp_methods, Channel_methods},
      {Py_tp_getset, Channel_getset},
      {Py_tp_members, members},
      {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
      {Py_tp_iternext, reinterpret_cast<void*>(Channel_iternext)},
      {Py_tp_doc,
       const_cast<char*>(
           "Channel()\n--\n\n"
           "channel(): Stackless's rendezvous channel between tasklets")},
      {0, nullptr}};
  static PyType_Spec spec = {"ptsevent._core.Channel", sizeof(Channel), 0,
                             Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots};
  ChannelType = py::make_heap_type<Channel, nullptr, Channel_destroy>(&spec);
  return ChannelType;
}

}  // namespace ptsevent::hub

// Channel (`_core.Channel`, `ptsevent.stackless.channel`): Stackless's
// rendezvous channel on ptsevent tasklets.
//
// A send with no receiver waiting blocks the sender in the channel's FIFO
// (balance > 0); a receive with no sender waiting blocks the receiver
// (balance < 0). When the counterpart is there the value moves through the
// blocked tasklet's wait record (ChannelWait, Stackless's tempval) and the
// channel's preference decides who runs:
// the counterpart is switched to at once when preference == -direction
// (direction +1 for send, -1 for receive: the default -1 prefers the
// receiver), and the current tasklet goes to the end of the run queue;
// otherwise the counterpart is appended to the run queue and the current
// tasklet goes on. preference 0 never switches.
//
// Channels belong to the hub of the thread that made them (Stackless's
// channels also worked across threads; ptsevent's do not).
#include "hub/channel.h"

#include <Python.h>
#include <structmember.h>

#include "hub/tasklet.h"
#include "hub/wait_record.h"
#include "py/errors.h"
#include "py/heap_type.h"
#include "py/method.h"

namespace ptsevent::hub {

PyTypeObject* ChannelType = nullptr;

namespace {

enum : uint8_t { kValue = 0, kException = 1, kClosed = 2 };

// A blocked tasklet's place in the channel, with the transfer: a blocked
// sender's value, or what a counterpart hands a blocked receiver.
struct ChannelWait : WaitRecord {
  ChannelWait() noexcept : WaitRecord(WaitKind::kChannel) {}
  py::Ref value;
  uint8_t kind = kValue;  // what value is: kValue, kException or kClosed
};

struct Channel {
  PyObject_HEAD PyObject* weakrefs_;
  Hub* hub_;
  uint64_t hub_serial_;
  WaitList queue_;  // blocked tasklets' ChannelWaits, all one direction
  WaitRecordPool<ChannelWait> spare_;
  long balance_;  // > 0 senders wait, < 0 receivers wait
  int preference_;
  bool closing_;

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
  bool closed() const noexcept { return closing_ && balance_ == 0; }
};

Hub* channel_hub(Channel* ch) {
  Hub* hub = Hub::here(ch->hub_, ch->hub_serial_);
  if (!hub) {
    PyErr_SetString(PyExc_RuntimeError,
                    "this channel belongs to another thread's hub");
    return nullptr;
  }
  return hub;
}

ChannelWait* pop_waiter(Channel* ch) {
  return static_cast<ChannelWait*>(ch->queue_.pop_front());
}

// Hands control according to the preference after a transfer to `target`
// (now unblocked). dir: +1 send, -1 receive. 0 or -1 with an error.
int hand_over(Channel* ch, Hub* hub, Tasklet* me, Tasklet* target, int dir) {
  if (ch->preference_ == -dir) {
    // The counterpart runs now; we go to the end of the run queue.
    hub->schedule_first(target);
    hub->schedule_in_pass(me);
    return hub->suspend(me);
  }
  hub->schedule_in_pass(target);
  return 0;
}

// Blocks `me` in the channel through r until a counterpart takes r out (0),
// or an interrupt (-1: r left the queue).
int block(Channel* ch, Tasklet* me, int dir, ChannelWait* r) {
  ch->balance_ += dir;
  Py_INCREF(ch->self());  // the queue entry points into this channel
  bool woken;
  int rc;
  do {
    rc = me->wait_listed(&ch->queue_, r, -1, &woken);
    // A wake-up that is not the channel's (none is expected) waits again.
  } while (rc == 0 && !woken);
  if (!woken) ch->balance_ -= dir;
  Py_DECREF(ch->self());
  return rc;
}

// Delivers what a receiver got: a value, or an exception to raise.
PyObject* deliver(py::Ref value, uint8_t kind) {
  if (kind == kException) {
    py::raise(value.get());
    return nullptr;
  }
  if (kind == kClosed) {
    PyErr_SetString(PyExc_ValueError, "the channel is closed");
    return nullptr;
  }
  return value.release();
}

PyObject* do_send(Channel* ch, PyObject* value, uint8_t kind) {
  Hub* hub = channel_hub(ch);
  if (!hub) return nullptr;
  if (ch->closing_) {
    PyErr_SetString(PyExc_ValueError, "send() on a closed channel");
    return nullptr;
  }
  Tasklet* me = hub->current();
  if (!me) return nullptr;
  if (ch->balance_ < 0) {
    ChannelWait* target = pop_waiter(ch);
    ++ch->balance_;
    target->value = py::Ref::borrow(value);
    target->kind = kind;
    if (hand_over(ch, hub, me, target->tasklet, +1) < 0) return nullptr;
    Py_RETURN_NONE;
  }
  ChannelWait* r = ch->spare_.take();
  if (!r) return PyErr_NoMemory();
  r->value = py::Ref::borrow(value);
  r->kind = kind;
  int rc = block(ch, me, +1, r);
  r->value.reset();  // a receiver took it, or nobody will
  ch->spare_.give(r);
  if (rc < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* do_receive(Channel* ch) {
  Hub* hub = channel_hub(ch);
  if (!hub) return nullptr;
  Tasklet* me = hub->current();
  if (!me) return nullptr;
  if (ch->balance_ > 0) {
    ChannelWait* target = pop_waiter(ch);
    --ch->balance_;
    py::Ref value = std::move(target->value);
    uint8_t kind = target->kind;
    if (hand_over(ch, hub, me, target->tasklet, -1) < 0) return nullptr;
    return deliver(std::move(value), kind);
  }
  if (ch->closing_) {
    PyErr_SetString(PyExc_ValueError, "the channel is closed");
    return nullptr;
  }
  ChannelWait* r = ch->spare_.take();
  if (!r) return PyErr_NoMemory();
  r->kind = kValue;
  int rc = block(ch, me, -1, r);
  py::Ref value = std::move(r->value);
  uint8_t kind = r->kind;
  ch->spare_.give(r);
  if (rc < 0) return nullptr;
  return deliver(std::move(value), kind);
}

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
  return do_send(ch, value, kValue);
}

PyObject* Channel_receive(Channel* ch, PyObject*) { return do_receive(ch); }

PyObject* Channel_send_exception(Channel* ch, PyObject* const* args,
                                 Py_ssize_t nargs) {
  py::Ref exc = py::Ref::steal(make_exception(args, nargs));
  if (!exc) return nullptr;
  return do_send(ch, exc.get(), kException);
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
  return do_send(ch, exc.get(), kException);
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
    py::Ref r = py::Ref::steal(do_send(ch, item.get(), kValue));
    if (!r) return nullptr;
    ++n;
  }
  return PyLong_FromSsize_t(n);
}

PyObject* Channel_close(Channel* ch, PyObject*) {
  Hub* hub = channel_hub(ch);
  if (!hub) return nullptr;
  ch->closing_ = true;
  // Receivers waiting now can never get a value (sends raise): they are
  // woken with "the channel is closed".
  while (ch->balance_ < 0) {
    ChannelWait* r = pop_waiter(ch);
    ++ch->balance_;
    r->value.reset();
    r->kind = kClosed;
    hub->schedule_in_pass(r->tasklet);
  }
  Py_RETURN_NONE;
}

PyObject* Channel_open(Channel* ch, PyObject*) {
  ch->closing_ = false;
  Py_RETURN_NONE;
}

PyObject* Channel_iternext(PyObject* self) {
  Channel* ch = reinterpret_cast<Channel*>(self);
  if (ch->closed()) return nullptr;  // StopIteration
  PyObject* r = do_receive(ch);
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

PyObject* channel_transfer(const WaitRecord* r) noexcept {
  if (!r || r->kind != WaitKind::kChannel) return nullptr;
  return static_cast<const ChannelWait*>(r)->value.get();
}

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

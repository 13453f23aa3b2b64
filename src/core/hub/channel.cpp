// The Channel engine (see channel.h).
#include "hub/channel.h"

#include "hub/tasklet.h"
#include "py/errors.h"

namespace ptsevent::hub {

namespace {

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

}  // namespace

PyObject* channel_send(Channel* ch, PyObject* value, uint8_t kind) {
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

PyObject* channel_receive(Channel* ch) {
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

PyObject* channel_close(Channel* ch) {
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

PyObject* channel_transfer(const WaitRecord* r) noexcept {
  if (!r || r->kind != WaitKind::kChannel) return nullptr;
  return static_cast<const ChannelWait*>(r)->value.get();
}

}  // namespace ptsevent::hub

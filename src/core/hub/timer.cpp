// The Timer and Waiter engines (see timer.h): arming, firing and
// cancelling a Timer; setting, delivering and waiting for a Waiter's result.
#include "hub/timer.h"

#include <algorithm>

#include "hub/clock.h"
#include "hub/tasklet.h"
#include "py/errors.h"

namespace ptsevent::hub {

namespace {

void erase_armed(Hub* hub, Timer* t) {
  auto& v = hub->armed_timers_;
  auto it = std::find(v.begin(), v.end(), t);
  if (it != v.end()) v.erase(it);
}

}  // namespace

// ------------------------------------------------------------------ Timer

void Timer::on_fire(evutil_socket_t, short, void* arg) {
  // Runs inside event_base_loop, possibly without the GIL: only C++ state.
  Timer* t = static_cast<Timer*>(arg);
  t->armed_ = false;
  t->fired_ = true;
  t->hub_->on_event_disarmed();
  erase_armed(t->hub_, t);
  t->hub_->park_timer(t);
}

void Timer::disarm() noexcept {
  if (!armed_) return;
  event_del(&ev_);
  armed_ = false;
  hub_->on_event_disarmed();
}

void Timer::deliver() {
  fired_ = false;
  if (!cancelled_ && target_) {
    Tasklet* t = Tasklet::from(target_.get());
    if (t->waiting()) {
      if (t->interrupt_pending()) {
        // Another interrupt is on its way (an inner Timeout, a kill): fire
        // again on the next pass, after that one has been raised.
        struct timeval zero = {0, 0};
        if (event_add(&ev_, &zero) == 0) {
          armed_ = true;
          hub_->on_event_armed();
          hub_->armed_timers_.push_back(this);
          return;  // keeps the self reference
        }
      } else {
        hub_->interrupt(t, exc_.get(), false);
      }
    }
  }
  cancelled_ = false;
  target_.reset();
  Py_DECREF(self());  // the reference held while armed
}

PyObject* timer_start(Timer* self, double seconds, PyObject* exc) {
  Hub* hub = Hub::get();
  if (!hub) return nullptr;
  Tasklet* t = hub->current();
  if (!t) return nullptr;
  self->hub_ = hub;
  self->hub_serial_ = hub->serial();
  ++self->starts_;
  assign_timer(&self->ev_, hub->base(), Timer::on_fire, self);
  struct timeval tv = to_timeval(seconds);
  if (event_add(&self->ev_, &tv) < 0) {
    PyErr_SetString(PyExc_OSError, "libevent: cannot add a timer");
    return nullptr;
  }
  self->armed_ = true;
  self->cancelled_ = false;
  hub->on_event_armed();
  hub->armed_timers_.push_back(self);
  self->target_ = py::Ref::borrow(t->self());
  self->exc_ = py::Ref::borrow(exc);
  Py_INCREF(self);  // held while armed or fired
  Py_RETURN_NONE;
}

static void cancel_here(Timer* self) {
  if (self->armed_) {
    self->disarm();
    erase_armed(self->hub_, self);
    self->target_.reset();
    Py_DECREF(self->self());
  } else if (self->fired_) {
    self->cancelled_ = true;  // delivery will drop it
  }
}

PyObject* timer_cancel(Timer* self) {
  if (!self->armed_ && !self->fired_) Py_RETURN_NONE;
  if (Hub::here(self->hub_, self->hub_serial_)) {
    cancel_here(self);
    Py_RETURN_NONE;
  }
  // Another thread's hub owns the timer and may be polling without the GIL
  // right now: it cancels this run of the timer itself (until then the
  // timer may still fire). A hub that is gone has disarmed it already.
  if (!Hub::alive(self->hub_, self->hub_serial_)) Py_RETURN_NONE;
  py::Ref args = py::Ref::steal(
      Py_BuildValue("(K)", static_cast<unsigned long long>(self->starts_)));
  if (!args) return nullptr;
  if (Hub::post_method(self->hub_->thread_ident(), self->self(), "_cancel_run",
                       args.get()) < 0)
    PyErr_Clear();  // that hub is closing: nothing is left to fire
  Py_RETURN_NONE;
}

PyObject* timer_cancel_run(Timer* self, unsigned long long n) {
  if (n == self->starts_ && Hub::here(self->hub_, self->hub_serial_))
    cancel_here(self);
  Py_RETURN_NONE;
}

// ----------------------------------------------------------------- Waiter

void Waiter::deliver() {
  done_ = true;
  if (counted_) {
    counted_ = false;
    hub_->count(Source::kThreadJob, -1);
  }
  if (waiter_) {
    Tasklet* t = Tasklet::from(waiter_.get());
    if (t->waiting()) hub_->schedule(t);
  }
}

int waiter_set(Waiter* self, PyObject* value, PyObject* exc) {
  if (self->has_result_) {
    PyErr_SetString(PyExc_RuntimeError, "this Waiter already has a result");
    return -1;
  }
  self->has_result_ = true;
  self->value_ = py::Ref::borrow(value);
  self->exc_ = py::Ref::borrow(exc);
  if (Hub::peek() == self->hub_) {
    self->deliver();
    return 0;
  }
  if (!Hub::alive(self->hub_)) {
    PyErr_SetString(PyExc_RuntimeError,
                    "the hub of the waiting thread is shut down");
    return -1;
  }
  return self->hub_->post(self);
}

PyObject* waiter_get(Waiter* self, double timeout) {
  Hub* hub = Hub::peek();
  if (hub != self->hub_) {
    PyErr_SetString(PyExc_RuntimeError,
                    "Waiter.get() must be called in the thread that made it");
    return nullptr;
  }
  if (!self->done_) {
    Tasklet* t = hub->current();
    if (!t) return nullptr;
    if (self->waiter_) {
      PyErr_SetString(PyExc_RuntimeError, "another tasklet waits on this");
      return nullptr;
    }
    self->waiter_ = py::Ref::borrow(t->self());
    int rc = t->wait_with_timer(timeout);
    self->waiter_.reset();
    if (rc < 0) return nullptr;
    if (!self->done_) {
      PyErr_SetString(PyExc_TimeoutError, "timed out");
      return nullptr;
    }
  }
  if (self->exc_) {
    py::raise(self->exc_.get());
    return nullptr;
  }
  return self->value_.new_ref();
}

}  // namespace ptsevent::hub

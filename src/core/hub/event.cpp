// The Event engine (see event.h).
#include "hub/event.h"

#include "hub/clock.h"

namespace ptsevent::hub {

void event_set(Event* e) {
  if (e->flag_) return;
  ++e->gen_;
  e->flag_ = true;
  e->w_.notify(e->self(), PY_SSIZE_T_MAX, "_dispatch");
}

int event_wait(Event* e, double seconds) {
  if (e->flag_) return 1;
  if (seconds == 0) return 0;
  Hub* hub = Hub::get();
  if (!hub || e->w_.adopt(hub, "Event") < 0) return -1;
  Tasklet* me = hub->current();
  if (!me) return -1;
  // Read after adopt(), see waiters.h.
  uint64_t gen = e->gen_;
  if (e->flag_) return 1;
  Deadline deadline(seconds);
  for (;;) {
    bool handed;
    int rc = e->w_.wait(e->self(), me, deadline.wait_seconds(), &handed);
    if (rc < 0) return -1;
    if (e->gen_ != gen || e->flag_) return 1;
    if (rc == 0 || deadline.wait_seconds() == 0) return 0;
  }
}

void event_dispatch(Event* e) noexcept {
  e->w_.posted = false;
  if (e->w_.owner_here()) e->w_.hand(PY_SSIZE_T_MAX);
}

}  // namespace ptsevent::hub

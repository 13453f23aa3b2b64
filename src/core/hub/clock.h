// The clock every deadline in the core reads: CLOCK_MONOTONIC in seconds
// (what Python's time.monotonic() returns), and Deadline, a timeout of one
// call turned into a point on that clock once, so the waits of a retry loop
// share what is left of it.
#pragma once

#include <sys/time.h>
#include <time.h>

namespace ptsevent::hub {

// CLOCK_MONOTONIC, in seconds.
inline double monotonic_seconds() noexcept {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) +
         static_cast<double>(ts.tv_nsec) * 1e-9;
}

// A libevent timeval for `seconds` >= 0.
struct timeval to_timeval(double seconds);

// A timeout in seconds for one call: < 0 blocks forever, 0 never waits.
class Deadline {
 public:
  explicit Deadline(double seconds) : seconds_(seconds) {
    if (seconds > 0) at_ = monotonic_seconds() + seconds;
  }
  bool forever() const { return seconds_ < 0; }
  bool never_wait() const { return seconds_ == 0; }
  // -1 forever, else seconds left (>= 0).
  double wait_seconds() const {
    if (forever()) return -1.0;
    if (never_wait()) return 0;
    double left = at_ - monotonic_seconds();
    return left > 0 ? left : 0;
  }
  // Whether a bounded deadline has passed (never for forever).
  bool expired() const { return !forever() && wait_seconds() <= 0; }

 private:
  double seconds_;
  double at_ = 0;  // CLOCK_MONOTONIC seconds
};

}  // namespace ptsevent::hub

// PTSEVENT_ASSERT: checks an invariant that a comment states ("never armed
// here", "nobody waits here", who owns a run-queue entry, that a libevent
// callback argument lives on the heap).
//
// On in the sanitizer build (CMake defines PTSEVENT_ASSERTS=1 with
// PTSEVENT_SANITIZE=ON): a broken invariant prints the condition, what it
// means and where, then aborts, so the test run stops at the first broken
// invariant instead of at a later crash. Compiled out otherwise: the
// condition is not evaluated (it may cost a loop), only type-checked.
//
// It lives under hub/ rather than py/: it needs no Python (it is used in
// libevent callbacks that run without the GIL, where py/ glue may not be
// called), and hub/ is the lowest floor that states such invariants, whose
// headers io/ and http/ include already.
#pragma once

#ifndef PTSEVENT_ASSERTS
#define PTSEVENT_ASSERTS 0
#endif

#include <pthread.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace ptsevent::hub {

[[noreturn]] inline void assert_failed(const char* cond, const char* what,
                                       const char* file, int line) noexcept {
  std::fprintf(stderr,
               "ptsevent: internal invariant broken: %s\n  (%s) at %s:%d\n",
               what, cond, file, line);
  std::fflush(stderr);
  std::abort();
}

// Whether p points into this thread's C stack. Every tasklet of a thread runs
// on that one stack (greenlet copies a suspended tasklet's part of it to the
// heap and back), so this is true for an address on any tasklet's stack, the
// running one's or a suspended one's. The bounds are read once per thread.
inline bool on_thread_stack(const void* p) noexcept {
  thread_local uintptr_t lo = 0, hi = 0;
  if (!hi) {
    pthread_attr_t attr;
    void* addr = nullptr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) return false;
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    lo = reinterpret_cast<uintptr_t>(addr);
    hi = lo + size;
  }
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return a >= lo && a < hi;
}

}  // namespace ptsevent::hub

#if PTSEVENT_ASSERTS

#define PTSEVENT_ASSERT(cond, what) \
  ((cond) ? static_cast<void>(0)    \
          : ::ptsevent::hub::assert_failed(#cond, what, __FILE__, __LINE__))

#else

#define PTSEVENT_ASSERT(cond, what) \
  static_cast<void>(sizeof(((cond) ? 1 : 0) + sizeof(what)))

#endif

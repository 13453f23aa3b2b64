// assign_event / new_event: the only way the core gives libevent an event
// and the argument its callback receives.
//
// greenlet runs every tasklet of a thread on the thread's one C stack: when
// a tasklet is suspended, its part of the stack is copied to the heap and
// the next tasklet's frames take its place. An address on a tasklet's stack
// is therefore valid only while that tasklet runs, and a libevent callback
// runs later, from the hub. The callback's argument must be an object on
// the heap that stays alive until the callback has run or the event is
// deleted (a select() that broke this rule woke on another tasklet's frames
// and crashed).
//
// So the argument's type must say so: these functions accept only a pointer
// to a type that declares `static constexpr bool kEventOwner = true`, next
// to a comment on who keeps its objects alive while their events are
// pending (the hub's live list for a Tasklet, a self-reference for an armed
// Timer ...). A stack address can then not be passed by accident, and in the
// sanitizer build PTSEVENT_ASSERT also checks that the pointer is not into
// the thread's stack (where a kEventOwner object must never be declared).
#pragma once

#include <event2/event.h>
#include <event2/event_struct.h>

#include <type_traits>

#include "hub/assert.h"

namespace ptsevent::hub {

template <typename T, typename = void>
struct is_event_owner : std::false_type {};
template <typename T>
struct is_event_owner<T, std::void_t<decltype(T::kEventOwner)>>
    : std::bool_constant<T::kEventOwner> {};

// The rule every assignment below enforces: by type at compile time, by
// address in the sanitizer build.
template <typename Owner>
inline void check_owner(Owner* owner) noexcept {
  static_assert(is_event_owner<Owner>::value,
                "a libevent callback argument must be a heap object whose "
                "type declares kEventOwner (see hub/event_owner.h)");
  PTSEVENT_ASSERT(!on_thread_stack(owner),
                  "a libevent callback argument is on a C stack");
}

// event_assign() for an event embedded in a heap object (or in `owner`).
template <typename Owner>
inline int assign_event(struct event* ev, event_base* base, evutil_socket_t fd,
                        short what, event_callback_fn cb,
                        Owner* owner) noexcept {
  check_owner(owner);
  PTSEVENT_ASSERT(!on_thread_stack(ev), "a libevent event is on a C stack");
  return event_assign(ev, base, fd, what, cb, owner);
}

// evtimer_assign() likewise.
template <typename Owner>
inline int assign_timer(struct event* ev, event_base* base,
                        event_callback_fn cb, Owner* owner) noexcept {
  return assign_event(ev, base, -1, 0, cb, owner);
}

// event_new() likewise: the event itself is on the heap (event_free it).
template <typename Owner>
inline struct event* new_event(event_base* base, evutil_socket_t fd, short what,
                               event_callback_fn cb, Owner* owner) noexcept {
  check_owner(owner);
  return event_new(base, fd, what, cb, owner);
}

}  // namespace ptsevent::hub

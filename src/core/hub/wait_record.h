// WaitRecord and WaitList: what one waiting tasklet waits on, and the list
// of them that a waiting structure keeps. The one shape of "tasklets
// waiting on something" in the core.
//
// The structure a tasklet waits on (a descriptor's IoHandle, a channel, a
// tasklet being joined, a coordination primitive's Waiters) owns its
// WaitList, the records in it and their links; the Tasklet only points at
// its record while it waits (Tasklet::wait_record()), so that a dump of the
// tasklets can say what each one waits on, and carries no field for any
// structure above the hub. A structure that must pass something to its
// waiter (a channel's value, a primitive's hand-off) derives its record
// from WaitRecord and puts it there.
//
// A record never lives on the waiting tasklet's stack: greenlet copies a
// suspended stack away and lets another tasklet's stack take its place,
// while the owner touches the record (to wake the tasklet or hand it a
// value). Records come from a pool (a WaitRecordPool per owner, or the one
// pool of hand-off records in waiters.cpp), so a wait allocates nothing
// once the pool is warm.
//
// Lifetime: a record is on a list only while its tasklet waits (and the
// waiting tasklet holds a reference to the owner); whoever wakes the
// tasklet takes the record off, and a wait that ends otherwise (timeout,
// kill) takes itself off (Tasklet::wait_listed) before it returns.
// Nothing here touches Python: lists are woken from libevent callbacks,
// without the GIL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

#include "hub/assert.h"

namespace ptsevent::hub {

struct Tasklet;

// What a record's tasklet waits on, for a dump of the tasklets.
enum class WaitKind : uint8_t {
  kDescriptor,  // readiness of a descriptor (io::IoHandle)
  kChannel,     // a channel's counterpart (hub/channel.cpp)
  kJoin,        // another tasklet's end (Tasklet::join)
  kHandoff,     // a coordination primitive's hand-off (hub/waiters.h)
  kDrain,       // the HTTP server's running apps to end (wait_drained)
};

struct WaitRecord {
  explicit WaitRecord(WaitKind k) noexcept : kind(k) {}
  WaitRecord(const WaitRecord&) = delete;
  WaitRecord& operator=(const WaitRecord&) = delete;

  WaitKind kind;
  bool linked = false;         // on a WaitList
  Tasklet* tasklet = nullptr;  // the waiter (set by the owner)
  WaitRecord* prev = nullptr;  // links owned by the WaitList
  WaitRecord* next = nullptr;
};

// A FIFO of records, linked through the records themselves (no allocation).
// An owner that is a Python object constructs it (placement new) in tp_new.
class WaitList {
 public:
  bool empty() const noexcept { return !head_; }
  WaitRecord* front() const noexcept { return head_; }

  void push_back(WaitRecord* r) noexcept {
    PTSEVENT_ASSERT(!r->linked, "a wait record is on two lists");
    r->linked = true;
    r->next = nullptr;
    r->prev = tail_;
    if (tail_)
      tail_->next = r;
    else
      head_ = r;
    tail_ = r;
  }

  void remove(WaitRecord* r) noexcept {
    PTSEVENT_ASSERT(r->linked, "a wait record is taken off a list twice");
    if (r->prev)
      r->prev->next = r->next;
    else
      head_ = r->next;
    if (r->next)
      r->next->prev = r->prev;
    else
      tail_ = r->prev;
    r->prev = r->next = nullptr;
    r->linked = false;
  }

  WaitRecord* pop_front() noexcept {
    WaitRecord* r = head_;
    if (r) remove(r);
    return r;
  }

  // Empties the list, calling f(record) for each (oldest first) once it is
  // off the list: f may free or re-link it.
  template <class F>
  void take_all(F f) noexcept {
    WaitRecord* r = head_;
    head_ = tail_ = nullptr;
    while (r) {
      WaitRecord* next = r->next;
      r->prev = r->next = nullptr;
      r->linked = false;
      f(r);
      r = next;
    }
  }

 private:
  WaitRecord* head_ = nullptr;
  WaitRecord* tail_ = nullptr;
};

// The spare records of one owner: a wait takes one and gives it back when
// it ends. The owner calls destroy() when it is freed (nobody waits on it
// then). At most kMaxSpare are kept: beyond, a record given back is freed.
template <class R, size_t kMaxSpare = SIZE_MAX>
class WaitRecordPool {
 public:
  // Null when memory is exhausted (the caller raises MemoryError).
  R* take() noexcept {
    if (R* r = spare_) {
      spare_ = static_cast<R*>(r->next);
      r->next = nullptr;
      --count_;
      return r;
    }
    return new (std::nothrow) R();
  }
  void give(R* r) noexcept {
    PTSEVENT_ASSERT(!r->linked, "a wait record is recycled while listed");
    r->tasklet = nullptr;
    if (count_ >= kMaxSpare) {
      delete r;
      return;
    }
    r->next = spare_;
    spare_ = r;
    ++count_;
  }
  void destroy() noexcept {
    while (R* r = spare_) {
      spare_ = static_cast<R*>(r->next);
      delete r;
    }
    count_ = 0;
  }

 private:
  R* spare_ = nullptr;
  size_t count_ = 0;
};

}  // namespace ptsevent::hub

// The hub: one per OS thread, created lazily by Hub::get().
//
// The hub owns a libevent event_base and a greenlet (the hub greenlet) that
// runs the loop: it polls libevent, then switches to the tasklets that became
// ready, in FIFO order. A tasklet that must wait arms a libevent event whose
// callback puts it back on the run queue, and switches away: straight to the
// next ready tasklet of the current pass when there is one, else to the hub.
//
// GIL: libevent 2.1 has no hooks around its poll, so the GIL is released
// around the whole event_base_loop() call. libevent callbacks therefore touch
// no Python object: they move a tasklet onto the C++ run queue, set a flag,
// or append to a C++ list that the hub processes once it holds the GIL again.
//
// Lifetime: the hub lives until Hub::shutdown() (at interpreter exit for the
// main thread, when the thread state is cleared for other threads). Every
// tasklet that is scheduled or started holds a reference from the hub (the
// "live" list), so a pending libevent callback never outlives its tasklet.
#pragma once

#include <Python.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "hub/assert.h"
#include "hub/event_owner.h"
#include "hub/run_queue.h"
#include "py/ref.h"

namespace ptsevent::hub {

struct Tasklet;
struct Timer;
struct Waiter;

// Exception types, created when the module is initialised.
extern PyObject* LoopExit;
extern PyObject* BlockingSwitchOutError;

// Module functions: call_threadsafe (Hub::post_call for Python code).
extern PyMethodDef post_functions[];
// Module functions about the running tasklet and the hub as a whole
// (getcurrent, sleep, hub_stats ...): hub_type.cpp.
extern PyMethodDef hub_functions[];

struct EventBaseFree {
  void operator()(event_base* b) const noexcept { event_base_free(b); }
};

// What can wake a waiting tasklet besides its own armed event, counted so
// that the hub knows when nothing can (LoopExit) and hub_stats() is exact.
// A source says what it is, never which structure counts it.
enum class Source : uint8_t {
  // A tasklet listed on a structure whose persistent event wakes it.
  kListedWaiter,
  // A persistent registration that wakes nobody unless a tasklet is listed
  // on its owner: counted for the statistics, not a wake source.
  kIdleRegistration,
  // A persistent event whose callback makes work by itself (a listener
  // accepts, a connection parses and starts a tasklet).
  kActiveEvent,
  // A Python signal handler (signals wake the main tasklet).
  kSignalHandler,
  // A job for or from another OS thread (posted call, run_in_thread).
  kThreadJob,
  kCount,
};

class Hub {
 public:
  // This thread's hub, created on first use. Null with an error set.
  static Hub* get();
  // This thread's hub if it exists.
  static Hub* peek() noexcept;
  // This thread's hub if it is `hub` (the same serial: a freed hub's
  // address may be reused), else null.
  static Hub* here(const Hub* hub, uint64_t serial) noexcept {
    Hub* h = peek();
    return h && h == hub && h->serial() == serial ? h : nullptr;
  }

  event_base* base() const noexcept { return base_.get(); }
  // A libevent callback argument (hub/event_owner.h): allocated by get(),
  // its own events deleted before event_base_free.
  static constexpr bool kEventOwner = true;
  // A serial number unique to this hub in the process: a tasklet compares
  // it with its own, since a freed hub's address may be reused.
  uint64_t serial() const noexcept { return serial_; }

  // The timeval to pass to event_add for a timeout of `seconds`. Durations
  // that recur (a loop over sleep(0.001), a fixed socket timeout) use one
  // of libevent's "common timeout" queues: O(1) insertion instead of the
  // min-heap's O(log n), which matters with thousands of sleeping tasklets.
  // The returned pointer stays valid until the next call.
  const struct timeval* timeout_tv(double seconds);
  bool closed() const noexcept { return closed_; }

  // The running tasklet; the main greenlet (or a greenlet ptsevent did not
  // create) is adopted into a Tasklet the first time. Null with
  // BlockingSwitchOutError when the hub greenlet itself is running.
  Tasklet* current();
  Tasklet* current_or_null() noexcept { return current_; }

  // Puts t on the run queue unless it is there already. No Python calls:
  // safe from libevent callbacks with the GIL released.
  void schedule(Tasklet* t) noexcept;
  // Puts t first in the current pass: the next tasklet to run.
  void schedule_first(Tasklet* t) noexcept;
  // Puts t at the end of the current pass (a channel or lock hand-off), so
  // that tasklets passing control back and forth need no poll in between;
  // after kPassLimit tasklets in one pass it waits for the next one, so I/O
  // is never starved.
  void schedule_in_pass(Tasklet* t) noexcept;
  static constexpr uint32_t kPassLimit = 4096;
  // While tasklets stay ready, the hub polls libevent (without blocking)
  // once this much time has passed since the previous poll, or after
  // kPassLimit tasklet runs, whichever comes first; passes in between go
  // on without a poll. A non-blocking epoll_wait costs about as much as a
  // few tasklet switches, so polling after every short pass (a lock or
  // queue hand-off, one tasklet yielding) would dominate; 50 us keeps
  // timers, I/O and signals prompt.
  static constexpr double kPollInterval = 50e-6;

  // Suspends the running tasklet t until something schedules it. Returns 0
  // on a plain wake-up, -1 with an exception set when t was interrupted
  // (kill, Timeout, LoopExit, signal) or greenlet threw into it. The caller
  // disarms its own events afterwards in both cases.
  int suspend(Tasklet* t);

  // Makes a suspended tasklet raise `exc` (an exception class or instance)
  // at its wait point. With override false an interrupt already pending
  // wins. GIL held.
  void interrupt(Tasklet* t, PyObject* exc, bool override);

  // Signals belong to the main tasklet: CPython runs signal handlers in the
  // main thread, in whichever greenlet is running, and ptsevent promises
  // that their exceptions (KeyboardInterrupt) reach the main tasklet.
  // raise_in_main() throws `exc` there when the main tasklet is waiting;
  // false when it cannot (the caller then keeps the exception).
  bool raise_in_main(PyObject* exc);
  // PyErr_CheckSignals() for a system call a tasklet made that a signal
  // interrupted (EINTR): a handler's exception goes to the main tasklet
  // and the caller goes on (0). -1 with the error set when the caller is
  // the main tasklet (or nobody else can take it).
  static int check_signals();

  // Bookkeeping of what can still wake a waiting tasklet (LoopExit): a
  // one-shot libevent event armed, and the other sources.
  void on_event_armed() noexcept { ++armed_events_; }
  void on_event_disarmed() noexcept { --armed_events_; }
  void count(Source s, long n) noexcept {
    // Thread jobs are counted from other OS threads too.
    if (s == Source::kThreadJob)
      thread_jobs_ += n;
    else
      counts_[static_cast<size_t>(s)] += n;
  }

  // Work for the hub to run with the GIL after the current poll: a libevent
  // callback (no GIL) queues it. fn must not be queued twice for one arg
  // (the owner keeps a flag) and arg must stay valid until fn runs or
  // cancel_deferred(arg) is called.
  using DeferredFn = void (*)(void*);
  void defer(DeferredFn fn, void* arg) { deferred_.push_back({fn, arg}); }
  void cancel_deferred(void* arg) noexcept {
    for (auto& d : deferred_)
      if (d.arg == arg) d.fn = nullptr;
    for (auto& d : running_deferred_)
      if (d.arg == arg) d.fn = nullptr;
  }
  // Native owners told when the hub shuts down (before event_base_free).
  struct NativeOwner {
    virtual void hub_closing() noexcept = 0;
    // In a forked child, once the event_base is re-initialised (GIL held):
    // what the parent process serves must not be served here too.
    virtual void after_fork_in_child() {}
    virtual ~NativeOwner() = default;
  };
  void add_owner(NativeOwner* o) { owners_.push_back(o); }
  void remove_owner(NativeOwner* o) noexcept {
    for (size_t i = 0; i < owners_.size(); ++i)
      if (owners_[i] == o) {
        owners_.erase(owners_.begin() + static_cast<long>(i));
        return;
      }
  }
  // Armed Timers, so that shutdown can disarm them (timer.cpp).
  std::vector<Timer*> armed_timers_;
  // Whether `hub` still exists (a Waiter may outlive its thread's hub).
  static bool alive(Hub* hub);
  // ... and is still the hub of that serial (a freed hub's address may be
  // reused by a new one).
  static bool alive(Hub* hub, uint64_t serial) {
    return alive(hub) && hub->serial() == serial;
  }

  // Hands a finished Waiter from another OS thread to this hub (GIL held
  // by the caller). Returns -1 with an error if the hub is closed.
  int post(Waiter* w);
  // Runs fn(*args) in a new tasklet of the hub of OS thread `thread`
  // (any thread may call it, GIL held). -1 with RuntimeError when that
  // thread has no hub.
  static int post_call(unsigned long thread, PyObject* fn, PyObject* args);
  // post_call of obj.<name>(*args) (args a tuple, null for none; the bound
  // method keeps obj alive until it has run): how an object hands work to
  // the hub that owns its state.
  static int post_method(unsigned long thread, PyObject* obj, const char* name,
                         PyObject* args = nullptr);
  unsigned long thread_ident() const noexcept { return thread_ident_; }

  // "Has the hub turned": what a watchdog on another OS thread reads to
  // tell a hub that a tasklet holds (an unpatched blocking call, a long
  // computation) from one that waits for events. Published once per poll
  // (relaxed atomics: a few stores per poll, nothing per switch).
  struct Turns {
    uint64_t passes;   // polls so far
    double last_poll;  // monotonic seconds at the end of the latest poll
    bool polling;      // in a blocking poll now: idle, not held
  };
  Turns turns() const noexcept {
    return {pub_passes_.load(std::memory_order_relaxed),
            pub_last_poll_.load(std::memory_order_relaxed),
            pub_polling_.load(std::memory_order_relaxed)};
  }
  // The turns of the hub of OS thread `thread`; false when it has none.
  static bool turns_of(unsigned long thread, Turns* out) noexcept;

  // Signals: the wake-up fd that user code set through the patched
  // signal.set_wakeup_fd (or that was set before the hub took the real
  // one). The hub forwards the signal bytes it drains to it; -1 for none.
  // Returns the previous one.
  bool handles_signals() const noexcept { return sig_armed_; }
  int chain_wakeup_fd(int fd) noexcept {
    return chained_wakeup_fd_.exchange(fd, std::memory_order_relaxed);
  }

  // Tasklet bookkeeping (tasklet.cpp).
  void add_live(Tasklet* t);
  void remove_live(Tasklet* t);
  void park_timer(Timer* t) noexcept { fired_timers_.push_back(t); }
  PyObject* live_tasklets() const;
  PyObject* stats() const;
  PyObject* main_tasklet() const { return main_.get(); }
  // The thread's main tasklet, adopting the root greenlet if needed.
  Tasklet* main_or_adopt();

  // Worker greenlets: a started tasklet takes one (from the pool or new).
  PyObject* take_greenlet();
  // The entry points of the hub greenlet and of worker greenlets.
  static PyObject* hub_main(PyObject*, PyObject*);
  static PyObject* worker_main(PyObject*, PyObject*);

  // Tears the hub down: disarms every event, drops the tasklets, frees the
  // event_base. Live tasklets should have been killed before (Python side).
  static void shutdown_current();
  // In a forked child: re-initialise the event_base and the wake-up fds.
  static int reinit_after_fork();
  // Sets the callable that reports a tasklet's uncaught exception.
  static void set_error_handler(PyObject* fn);
  static void report_error(Tasklet* t, PyObject* exc);

  ~Hub();

 private:
  Hub() = default;
  int init();
  int open_wakeups();
  void close_wakeups();
  PyObject* run_loop();
  int poll();
  // A non-blocking poll is due (see kPollInterval).
  bool poll_due() const noexcept;
  void process_after_poll();
  void deliver_signals();
  void deliver_posts();
  void deliver_fired_timers();
  long counted(Source s) const noexcept {
    return s == Source::kThreadJob ? thread_jobs_.load()
                                   : counts_[static_cast<size_t>(s)];
  }
  bool can_wake() const noexcept {
    return armed_events_ > 0 || counted(Source::kListedWaiter) > 0 ||
           thread_jobs_ > 0 || counted(Source::kSignalHandler) > 0 ||
           counted(Source::kActiveEvent) > 0 || !deferred_.empty();
  }
  // The Tasklet of greenlet g, one ptsevent did not create, adopted the
  // first time (the root greenlet's becomes main_).
  Tasklet* adopted_tasklet(PyObject* g);
  // Queues a finished Waiter (w) or a call under posts_mu_ and wakes the
  // hub's poll through the eventfd if the queues were empty.
  void enqueue_post(Waiter* w, PyObject* call);
  Tasklet* pop_batch() noexcept;
  PyObject* switch_to_next(Tasklet* self);
  int ensure_hub_greenlet();

  static void on_wake(evutil_socket_t fd, short what, void* arg);
  static void on_signal(evutil_socket_t fd, short what, void* arg);

  friend struct Tasklet;
  friend struct Timer;

  std::unique_ptr<event_base, EventBaseFree> base_;
  py::Ref hub_greenlet_;
  py::Ref root_greenlet_;
  py::Ref main_;     // the adopted root greenlet's Tasklet
  py::Ref adopted_;  // dict: greenlet -> Tasklet, for greenlets we did not make
  Tasklet* current_ = nullptr;

  // Run queue: tasklets made ready during this pass go to ready_; the hub
  // swaps it into batch_ after each poll, so it polls once per pass.
  RunQueue<Tasklet*> ready_;
  RunQueue<Tasklet*> batch_;

  std::vector<PyObject*> pool_;  // idle worker greenlets (owned refs)
  static constexpr size_t kMaxPool = 256;

  Tasklet* live_head_ = nullptr;  // intrusive list of live tasklets
  long live_count_ = 0;

  long armed_events_ = 0;
  long internal_events_ = 0;
  long counts_[static_cast<size_t>(Source::kCount)] = {};  // but thread jobs
  struct Deferred {
    DeferredFn fn;
    void* arg;
  };
  std::vector<Deferred> deferred_;
  std::vector<Deferred> running_deferred_;
  std::vector<NativeOwner*> owners_;
  void run_deferred();
  std::atomic<long> thread_jobs_{0};

  std::vector<Timer*> fired_timers_;

  struct CommonTimeout {
    long long usec;
    const struct timeval* tv;
  };
  std::vector<CommonTimeout> common_timeouts_;
  static constexpr size_t kMaxCommonTimeouts = 64;  // libevent allows 256
  struct timeval scratch_tv_ {};

  // Cross-thread wake-up: an eventfd the hub watches.
  std::mutex posts_mu_;
  std::vector<Waiter*> posts_;    // owned refs
  std::vector<PyObject*> calls_;  // owned (fn, args) tuples
  unsigned long thread_ident_ = 0;
  void deliver_calls(std::vector<PyObject*>* calls);
  int wake_fd_ = -1;
  struct event wake_ev_ {};
  bool wake_armed_ = false;
  bool posts_pending_ = false;  // set by the callback, GIL-free

  // Signals: CPython's signal.set_wakeup_fd on a pipe (main thread only).
  int sig_rfd_ = -1, sig_wfd_ = -1;
  struct event sig_ev_ {};
  bool sig_armed_ = false;
  bool signal_pending_ = false;
  int old_wakeup_fd_ = -1;
  // Written by Python (GIL), read by on_signal (no GIL).
  std::atomic<int> chained_wakeup_fd_{-1};

  std::atomic<uint64_t> pub_passes_{0};
  std::atomic<double> pub_last_poll_{0};
  std::atomic<bool> pub_polling_{false};
  void publish_turn() noexcept {
    pub_last_poll_.store(last_poll_, std::memory_order_relaxed);
    pub_passes_.store(polls_, std::memory_order_relaxed);
  }

  uint64_t serial_ = 0;
  uint64_t polls_ = 0;      // event_base_loop calls
  uint32_t pass_runs_ = 0;  // tasklets run since the last poll
  double last_poll_ = 0;    // monotonic_seconds() at the end of the last poll
  uint64_t blocking_polls_ = 0;
  bool stopping_ = false;
  bool closed_ = false;
  bool main_thread_ = false;
};

}  // namespace ptsevent::hub

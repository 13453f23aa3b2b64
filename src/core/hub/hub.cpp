#include "hub/hub.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cmath>

#include "hub/clock.h"
#include "hub/tasklet.h"
#include "hub/timer.h"
#include "py/errors.h"
#include "py/greenlet_api.h"

namespace ptsevent::hub {

PyObject* LoopExit = nullptr;
PyObject* BlockingSwitchOutError = nullptr;

namespace {

thread_local Hub* tls_hub = nullptr;
// Every hub that exists, for Hub::alive(): a Waiter set from another thread
// must not post to a hub whose thread has already torn it down.
std::mutex hubs_mu;
std::vector<Hub*> all_hubs;
// Module-lifetime objects are plain pointers, never freed: a static Ref
// would be destroyed by the C runtime after the interpreter is gone.
PyObject* error_handler = nullptr;

PyMethodDef hub_main_def = {"hub_main", Hub::hub_main, METH_NOARGS, nullptr};
PyMethodDef worker_main_def = {"worker_main", Hub::worker_main, METH_NOARGS,
                               nullptr};
PyObject* hub_main_fn = nullptr;
PyObject* worker_main_fn = nullptr;

// libevent logs bad event_add calls to stderr; the errors reach the user as
// Python exceptions instead.
void quiet_log(int, const char*) {}

int set_nonblock_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
  int fdfl = fcntl(fd, F_GETFD);
  if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0) return -1;
  return 0;
}

}  // namespace

// ---------------------------------------------------------------- timeouts

struct timeval to_timeval(double seconds) {
  struct timeval tv;
  double whole = std::floor(seconds);
  tv.tv_sec = static_cast<time_t>(whole);
  tv.tv_usec = static_cast<suseconds_t>((seconds - whole) * 1e6);
  if (tv.tv_usec >= 1000000) {
    tv.tv_sec += 1;
    tv.tv_usec -= 1000000;
  }
  return tv;
}

const struct timeval* Hub::timeout_tv(double seconds) {
  scratch_tv_ = to_timeval(seconds);
  long long usec = static_cast<long long>(scratch_tv_.tv_sec) * 1000000 +
                   scratch_tv_.tv_usec;
  for (const CommonTimeout& c : common_timeouts_)
    if (c.usec == usec) return c.tv;
  if (common_timeouts_.size() < kMaxCommonTimeouts && usec > 0 &&
      usec < 3600LL * 1000000) {
    const struct timeval* tv =
        event_base_init_common_timeout(base(), &scratch_tv_);
    if (tv) {
      common_timeouts_.push_back({usec, tv});
      return tv;
    }
  }
  return &scratch_tv_;
}

// ---------------------------------------------------------------- creation

Hub* Hub::peek() noexcept { return tls_hub; }

Hub* Hub::get() {
  if (tls_hub) return tls_hub;
  if (!hub_main_fn) {
    hub_main_fn = PyCFunction_New(&hub_main_def, nullptr);
    worker_main_fn = PyCFunction_New(&worker_main_def, nullptr);
    if (!hub_main_fn || !worker_main_fn) return nullptr;
    event_set_log_callback(quiet_log);
  }
  static std::atomic<uint64_t> serials{0};
  std::unique_ptr<Hub> hub(new Hub());
  hub->serial_ = ++serials;
  if (hub->init() < 0) return nullptr;
  Hub* h = hub.release();
  tls_hub = h;
  {
    std::lock_guard<std::mutex> lock(hubs_mu);
    all_hubs.push_back(h);
  }
  if (!h->main_thread_) {
    // Other threads: tear the hub down when the thread state is cleared
    // (thread exit, GIL held, in that thread), through a capsule kept in
    // the thread state's dict. The main thread's hub goes at exit (atexit).
    PyObject* dict = PyThreadState_GetDict();
    py::Ref cap =
        py::Ref::steal(PyCapsule_New(h, "ptsevent.hub", [](PyObject* c) {
          Hub* hub = static_cast<Hub*>(PyCapsule_GetPointer(c, "ptsevent.hub"));
          if (hub && hub == tls_hub) shutdown_current();
        }));
    if (!dict || !cap ||
        PyDict_SetItemString(dict, "ptsevent.hub", cap.get()) < 0) {
      PyErr_Clear();  // the hub works; it just is not freed at thread exit
    }
  }
  return h;
}

bool Hub::alive(Hub* hub) {
  std::lock_guard<std::mutex> lock(hubs_mu);
  for (Hub* h : all_hubs)
    if (h == hub) return true;
  return false;
}

int Hub::init() {
  event_config* cfg = event_config_new();
  if (!cfg) return PyErr_NoMemory(), -1;
  // One hub per thread and no libevent locking: other threads reach a hub
  // only through post(), which has its own mutex.
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  // libevent otherwise reads CLOCK_MONOTONIC_COARSE (a few ms of
  // granularity): sleep(0.001) would wake up to 4 ms late.
  event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  base_.reset(event_base_new_with_config(cfg));
  event_config_free(cfg);
  if (!base_) {
    PyErr_SetString(PyExc_OSError, "libevent: cannot create an event_base");
    return -1;
  }
  adopted_ = py::Ref::steal(PyDict_New());
  if (!adopted_) return -1;
  // The root greenlet of this thread parents the hub greenlet, so that an
  // error escaping the hub reaches the main program.
  py::Ref g = py::Ref::steal(py::greenlet::current());
  if (!g) return -1;
  for (;;) {
    py::Ref p = py::Ref::steal(py::greenlet::parent(g.get()));
    if (!p) break;
    g = std::move(p);
  }
  PyErr_Clear();
  root_greenlet_ = std::move(g);
  main_thread_ = _PyOS_IsMainThread();
  thread_ident_ = PyThread_get_thread_ident();
  return open_wakeups();
}

int Hub::open_wakeups() {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return PyErr_SetFromErrno(PyExc_OSError), -1;
  assign_event(&wake_ev_, base(), wake_fd_, EV_READ | EV_PERSIST, on_wake,
               this);
  if (event_add(&wake_ev_, nullptr) < 0) {
    PyErr_SetString(PyExc_OSError, "libevent: cannot watch the wake-up fd");
    return -1;
  }
  wake_armed_ = true;
  ++internal_events_;

  if (!main_thread_) return 0;
  // Signals: CPython's C handler writes the signal number to the wake-up fd,
  // which ends the poll; the hub then runs the Python handlers itself.
  int fds[2];
  if (pipe(fds) < 0) return PyErr_SetFromErrno(PyExc_OSError), -1;
  sig_rfd_ = fds[0];
  sig_wfd_ = fds[1];
  if (set_nonblock_cloexec(sig_rfd_) < 0 || set_nonblock_cloexec(sig_wfd_) < 0)
    return PyErr_SetFromErrno(PyExc_OSError), -1;
  // _signal's own set_wakeup_fd: signal.set_wakeup_fd may be ptsevent's
  // (patched), which chains a user's fd behind this one.
  py::Ref signal_mod = py::Ref::steal(PyImport_ImportModule("_signal"));
  if (!signal_mod) return -1;
  py::Ref kw =
      py::Ref::steal(Py_BuildValue("{s:O}", "warn_on_full_buffer", Py_False));
  py::Ref fn =
      py::Ref::steal(PyObject_GetAttrString(signal_mod.get(), "set_wakeup_fd"));
  py::Ref args = py::Ref::steal(Py_BuildValue("(i)", sig_wfd_));
  if (!kw || !fn || !args) return -1;
  py::Ref old = py::Ref::steal(PyObject_Call(fn.get(), args.get(), kw.get()));
  if (!old) {
    // Not the main interpreter thread after all: run without signal wake-up.
    PyErr_Clear();
    close(sig_rfd_);
    close(sig_wfd_);
    sig_rfd_ = sig_wfd_ = -1;
    main_thread_ = false;
    return 0;
  }
  old_wakeup_fd_ = static_cast<int>(PyLong_AsLong(old.get()));
  // A wake-up fd set before the hub existed still receives the signals.
  chained_wakeup_fd_.store(old_wakeup_fd_, std::memory_order_relaxed);
  assign_event(&sig_ev_, base(), sig_rfd_, EV_READ | EV_PERSIST, on_signal,
               this);
  if (event_add(&sig_ev_, nullptr) < 0) {
    PyErr_SetString(PyExc_OSError, "libevent: cannot watch the signal fd");
    return -1;
  }
  sig_armed_ = true;
  ++internal_events_;
  return 0;
}

void Hub::close_wakeups() {
  if (wake_armed_) {
    event_del(&wake_ev_);
    wake_armed_ = false;
    --internal_events_;
  }
  if (wake_fd_ >= 0) close(wake_fd_);
  wake_fd_ = -1;
  if (sig_armed_) {
    event_del(&sig_ev_);
    sig_armed_ = false;
    --internal_events_;
  }
  if (sig_rfd_ >= 0) close(sig_rfd_);
  if (sig_wfd_ >= 0) close(sig_wfd_);
  sig_rfd_ = sig_wfd_ = -1;
}

Hub::~Hub() {
  close_wakeups();
  base_.reset();
}

// ------------------------------------------------------------- scheduling

Tasklet* Hub::adopted_tasklet(PyObject* g) {
  if (PyObject* t = PyDict_GetItemWithError(adopted_.get(), g))
    return Tasklet::from(t);
  if (PyErr_Occurred()) return nullptr;
  bool is_main = g == root_greenlet_.get();
  Tasklet* t = adopt_greenlet(this, g, is_main);
  if (!t) return nullptr;
  int rc = PyDict_SetItem(adopted_.get(), g, t->self());
  if (is_main && rc == 0) main_ = py::Ref::borrow(t->self());
  Py_DECREF(t->self());  // adopted_ holds it
  return rc < 0 ? nullptr : t;
}

Tasklet* Hub::main_or_adopt() {
  if (main_) return Tasklet::from(main_.get());
  Tasklet* t = adopted_tasklet(root_greenlet_.get());
  if (t && !main_) main_ = py::Ref::borrow(t->self());
  return t;
}

Tasklet* Hub::current() {
  py::Ref g = py::Ref::steal(py::greenlet::current());
  if (!g) return nullptr;
  if (current_ && current_->greenlet_.get() == g.get()) return current_;
  if (g.get() == hub_greenlet_.get()) {
    PyErr_SetString(BlockingSwitchOutError,
                    "cannot block in the hub: this code runs in the event "
                    "loop itself (a signal handler or a hub callback); spawn "
                    "a tasklet for blocking work");
    return nullptr;
  }
  Tasklet* t = adopted_tasklet(g.get());
  if (!t) return nullptr;
  current_ = t;
  return current_;
}

void Hub::schedule(Tasklet* t) noexcept {
  PTSEVENT_ASSERT(t->hub_ == this, "a tasklet is queued on another hub");
  if (t->queued_) return;
  t->queued_ = true;
  ready_.push_back(t);
}

void Hub::schedule_first(Tasklet* t) noexcept {
  PTSEVENT_ASSERT(t->hub_ == this, "a tasklet is queued on another hub");
  if (t->queued_) return;
  t->queued_ = true;
  batch_.push_front(t);
}

void Hub::schedule_in_pass(Tasklet* t) noexcept {
  PTSEVENT_ASSERT(t->hub_ == this, "a tasklet is queued on another hub");
  if (t->queued_) return;
  t->queued_ = true;
  if (pass_runs_ < kPassLimit)
    batch_.push_back(t);
  else
    ready_.push_back(t);
}

Tasklet* Hub::pop_batch() noexcept {
  while (!batch_.empty()) {
    Tasklet* t = batch_.pop_front();
    t->queued_ = false;
    ++pass_runs_;
    // The queue holds raw pointers: a queued tasklet is kept alive by the
    // hub (its live list, main_ or adopted_ for an adopted greenlet) or,
    // once dead, by the queue itself (zombie).
    PTSEVENT_ASSERT(t->live_ || t->adopted_ || t->zombie_,
                    "a queued tasklet is not held by its hub");
    if (t->state_ == State::kDead) {
      // Killed before it started, while queued: the queue held its last
      // hub reference.
      if (t->zombie_) {
        t->zombie_ = false;
        Py_DECREF(t->self());
      }
      continue;
    }
    return t;
  }
  return nullptr;
}

PyObject* Hub::take_greenlet() {
  if (!pool_.empty()) {
    PyObject* g = pool_.back();
    pool_.pop_back();
    return g;
  }
  if (ensure_hub_greenlet() < 0) return nullptr;
  return py::greenlet::create(worker_main_fn, hub_greenlet_.get());
}

int Hub::ensure_hub_greenlet() {
  if (hub_greenlet_ && !py::greenlet::dead(hub_greenlet_.get())) return 0;
  hub_greenlet_ =
      py::Ref::steal(py::greenlet::create(hub_main_fn, root_greenlet_.get()));
  return hub_greenlet_ ? 0 : -1;
}

// Switches from `self` (the running tasklet, which has already queued
// itself or armed what will wake it) to the next ready tasklet of this pass,
// or to the hub.
PyObject* Hub::switch_to_next(Tasklet* self) {
  Tasklet* next = pop_batch();
  if (next && next->state_ == State::kPending && pool_.empty()) {
    // A new greenlet inherits the Python recursion depth of the greenlet
    // that starts it: start new ones from the hub, whose depth is constant,
    // never from a chain of tasklets.
    next->queued_ = true;
    batch_.push_front(next);
    next = nullptr;
  }
  PyObject* target;
  if (next) {
    if (next->state_ == State::kPending) {
      PyObject* g = take_greenlet();
      next->greenlet_ = py::Ref::steal(g);
      next->state_ = State::kRunning;
    }
    target = next->greenlet_.get();
    current_ = next;
  } else {
    if (ensure_hub_greenlet() < 0) return nullptr;
    target = hub_greenlet_.get();
    current_ = nullptr;
  }
  PyObject* r = py::greenlet::switch_to(target);
  current_ = self;
  return r;
}

int Hub::suspend(Tasklet* t) {
  if (closed_) {
    PyErr_SetString(PyExc_RuntimeError, "the ptsevent hub is shut down");
    return -1;
  }
  t->waiting_ = true;
  t->wake_ = Wake::kNone;
  PyObject* r = switch_to_next(t);
  t->waiting_ = false;
  if (!r) return -1;
  Py_DECREF(r);
  if (t->pending_exc_) {
    py::Ref exc = std::move(t->pending_exc_);
    py::raise(exc.get());
    return -1;
  }
  return 0;
}

void Hub::interrupt(Tasklet* t, PyObject* exc, bool override) {
  if (t->pending_exc_ && !override) return;
  t->pending_exc_ = py::Ref::borrow(exc);
  t->disarm();
  schedule(t);
}

// ---------------------------------------------------------------- the loop

PyObject* Hub::hub_main(PyObject*, PyObject*) {
  Hub* hub = tls_hub;
  if (!hub) Py_RETURN_NONE;
  return hub->run_loop();
}

PyObject* Hub::run_loop() {
  for (;;) {
    current_ = nullptr;
    if (stopping_) Py_RETURN_NONE;
    if (batch_.empty()) {
      if (ready_.empty() && !can_wake()) {
        // Nothing can ever make a tasklet ready: tell the main tasklet.
        Tasklet* m = Tasklet::from(main_.get());
        if (m && m->waiting_) {
          py::Ref e = py::Ref::steal(PyObject_CallFunction(
              LoopExit, "s",
              "the main tasklet waits, but nothing can wake it: no other "
              "tasklet is ready and no timer, descriptor wait, thread job or "
              "signal handler is pending"));
          if (!e) return nullptr;
          interrupt(m, e.get(), true);
        } else {
          PyErr_SetString(LoopExit,
                          "the hub has nothing left to run or wait for");
          return nullptr;
        }
      } else if ((ready_.empty() || poll_due()) && poll() < 0) {
        PyErr_WriteUnraisable(nullptr);
      }
      batch_.swap(ready_);
    }
    Tasklet* t = pop_batch();
    if (!t) continue;
    if (t->state_ == State::kPending) {
      PyObject* g = take_greenlet();
      if (!g) {
        PyErr_WriteUnraisable(nullptr);
        schedule(t);
        continue;
      }
      t->greenlet_ = py::Ref::steal(g);
      t->state_ = State::kRunning;
    }
    current_ = t;
    PyObject* r = py::greenlet::switch_to(t->greenlet_.get());
    if (r) {
      Py_DECREF(r);
    } else if (closed_ || stopping_) {
      return nullptr;  // the hub greenlet itself is being killed
    } else {
      // An error escaped a worker greenlet (they catch everything a job
      // raises, so this is a bug, not a user error): report and go on.
      PyErr_WriteUnraisable(hub_greenlet_.get());
    }
  }
}

bool Hub::poll_due() const noexcept {
  return pass_runs_ >= kPassLimit ||
         monotonic_seconds() - last_poll_ >= kPollInterval;
}

int Hub::poll() {
  int rc;
  ++polls_;
  pass_runs_ = 0;
  if (ready_.empty()) {
    ++blocking_polls_;
    pub_polling_.store(true, std::memory_order_relaxed);
    // Block: release the GIL for the whole poll. Callbacks run inside
    // event_base_loop and touch no Python object.
    Py_BEGIN_ALLOW_THREADS rc = event_base_loop(base(), EVLOOP_ONCE);
    Py_END_ALLOW_THREADS
        // The poll's end is a turn: published before polling_ clears, so a
        // watchdog never sees "not polling" with the time of an older poll.
        last_poll_ = monotonic_seconds();
    publish_turn();
    pub_polling_.store(false, std::memory_order_relaxed);
  } else {
    // ONCE as well: with NONBLOCK alone, libevent keeps looping for as long
    // as callbacks ran in the previous iteration.
    rc = event_base_loop(base(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
  }
  if (rc < 0) {
    PyErr_SetString(PyExc_OSError, "libevent: event_base_loop failed");
    return -1;
  }
  process_after_poll();
  last_poll_ = monotonic_seconds();
  publish_turn();
  return 0;
}

void Hub::run_deferred() {
  // Entries queued while these run (by a callback of a nested poll, which
  // cannot happen in the hub, or by fn itself) wait for the next pass.
  running_deferred_.swap(deferred_);
  for (size_t i = 0; i < running_deferred_.size(); ++i) {
    Deferred d = running_deferred_[i];
    if (!d.fn) continue;
    // A later entry for an owner that fn freed was cancelled through
    // cancel_deferred(), which also looks at the running list.
    d.fn(d.arg);
    if (PyErr_Occurred()) PyErr_WriteUnraisable(nullptr);
  }
  running_deferred_.clear();
}

void Hub::process_after_poll() {
  if (!deferred_.empty()) run_deferred();
  if (!fired_timers_.empty()) deliver_fired_timers();
  if (posts_pending_) deliver_posts();
  if (signal_pending_) deliver_signals();
}

void Hub::deliver_fired_timers() {
  std::vector<Timer*> fired;
  fired.swap(fired_timers_);
  for (Timer* tm : fired) tm->deliver();
}

void Hub::deliver_signals() {
  signal_pending_ = false;
  // Runs the Python-level handlers, here in the hub greenlet; an exception
  // (KeyboardInterrupt from the default SIGINT handler) goes to the main
  // tasklet.
  if (PyErr_CheckSignals() < 0) {
    py::Ref exc = py::fetch_error();
    if (!raise_in_main(exc.get())) {
      py::raise(exc.get());
      PyErr_WriteUnraisable(nullptr);
    }
  }
}

bool Hub::raise_in_main(PyObject* exc) {
  Tasklet* m = Tasklet::from(main_.get());
  if (!m || m == current_ || !m->waiting_) return false;
  interrupt(m, exc, true);
  return true;
}

int Hub::check_signals() {
  if (PyErr_CheckSignals() == 0) return 0;
  Hub* hub = tls_hub;
  if (!hub) return -1;
  py::Ref exc = py::fetch_error();
  if (hub->raise_in_main(exc.get())) return 0;
  py::raise(exc.get());
  return -1;
}

void Hub::on_signal(evutil_socket_t fd, short, void* arg) {
  Hub* hub = static_cast<Hub*>(arg);
  // Drain here, so the persistent event does not stay active; the bytes
  // (signal numbers) go on to a chained wake-up fd, as CPython would have
  // written them there. It is non-blocking (set_wakeup_fd checks): when
  // full, bytes are dropped, as CPython drops them.
  char buf[256];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    int chained = hub->chained_wakeup_fd_.load(std::memory_order_relaxed);
    if (chained >= 0) {
      ssize_t w = write(chained, buf, static_cast<size_t>(n));
      (void)w;
    }
  }
  hub->signal_pending_ = true;
}

bool Hub::turns_of(unsigned long thread, Turns* out) noexcept {
  std::lock_guard<std::mutex> lock(hubs_mu);  // the hub cannot go away
  for (Hub* hub : all_hubs) {
    if (hub->thread_ident_ != thread || hub->closed_) continue;
    *out = hub->turns();
    return true;
  }
  return false;
}

// ---------------------------------------------------- cross-thread posting

void Hub::on_wake(evutil_socket_t fd, short, void* arg) {
  uint64_t n;
  while (read(fd, &n, sizeof n) > 0) {
  }
  static_cast<Hub*>(arg)->posts_pending_ = true;
}

void Hub::enqueue_post(Waiter* w, PyObject* call) {
  bool first;
  {
    std::lock_guard<std::mutex> lock(posts_mu_);
    first = posts_.empty() && calls_.empty();
    if (w)
      posts_.push_back(w);
    else
      calls_.push_back(call);
  }
  // Otherwise a wake-up is already on its way: the hub drains both queues
  // at once.
  if (first) {
    uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof one);
    (void)n;  // EAGAIN means the counter is already non-zero: awake anyway
  }
}

int Hub::post(Waiter* w) {
  if (closed_) {
    PyErr_SetString(PyExc_RuntimeError,
                    "the hub of the waiting thread is shut down");
    return -1;
  }
  Py_INCREF(w->self());
  enqueue_post(w, nullptr);
  return 0;
}

void Hub::deliver_posts() {
  posts_pending_ = false;
  std::vector<Waiter*> posts;
  std::vector<PyObject*> calls;
  {
    std::lock_guard<std::mutex> lock(posts_mu_);
    posts.swap(posts_);
    calls.swap(calls_);
  }
  for (Waiter* w : posts) {
    w->deliver();
    Py_DECREF(w->self());
  }
  if (!calls.empty()) deliver_calls(&calls);
}

void Hub::deliver_calls(std::vector<PyObject*>* calls) {
  for (PyObject* call : *calls) {
    Tasklet* t = new_tasklet(this, PyTuple_GET_ITEM(call, 0),
                             PyTuple_GET_ITEM(call, 1), nullptr);
    if (!t || t->start(0) < 0) PyErr_WriteUnraisable(PyTuple_GET_ITEM(call, 0));
    Py_XDECREF(t ? t->self() : nullptr);
    Py_DECREF(call);
    count(Source::kThreadJob, -1);
  }
}

int Hub::post_call(unsigned long thread, PyObject* fn, PyObject* args) {
  PyObject* call = PyTuple_Pack(2, fn, args);
  if (!call) return -1;
  std::lock_guard<std::mutex> hubs_lock(hubs_mu);  // the hub cannot go away
  for (Hub* hub : all_hubs) {
    if (hub->thread_ident_ != thread || hub->closed_) continue;
    // Pending: something that can wake its tasklets.
    hub->count(Source::kThreadJob, 1);
    hub->enqueue_post(nullptr, call);
    return 0;
  }
  Py_DECREF(call);
  PyErr_Format(PyExc_RuntimeError, "thread %lu has no running ptsevent hub",
               thread);
  return -1;
}

int Hub::post_method(unsigned long thread, PyObject* obj, const char* name,
                     PyObject* args) {
  py::Ref fn = py::Ref::steal(PyObject_GetAttrString(obj, name));
  py::Ref none = args ? py::Ref() : py::Ref::steal(PyTuple_New(0));
  if (!fn || (!args && !none)) return -1;
  return post_call(thread, fn.get(), args ? args : none.get());
}

namespace {

// call_threadsafe(thread_ident, fn, *args): Hub::post_call for Python code.
PyObject* call_threadsafe(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 2) {
    PyErr_SetString(PyExc_TypeError,
                    "call_threadsafe(thread_ident, fn, *args)");
    return nullptr;
  }
  unsigned long ident = PyLong_AsUnsignedLong(args[0]);
  if (ident == static_cast<unsigned long>(-1) && PyErr_Occurred())
    return nullptr;
  if (!PyCallable_Check(args[1])) {
    PyErr_Format(PyExc_TypeError, "'%.200s' object is not callable",
                 Py_TYPE(args[1])->tp_name);
    return nullptr;
  }
  py::Ref rest = py::Ref::steal(PyTuple_New(nargs - 2));
  if (!rest) return nullptr;
  for (Py_ssize_t i = 2; i < nargs; ++i)
    PyTuple_SET_ITEM(rest.get(), i - 2, Py_NewRef(args[i]));
  if (Hub::post_call(ident, args[1], rest.get()) < 0) return nullptr;
  Py_RETURN_NONE;
}

}  // namespace

PyMethodDef post_functions[] = {
    {"call_threadsafe",
     reinterpret_cast<PyCFunction>(
         reinterpret_cast<void (*)()>(call_threadsafe)),
     METH_FASTCALL,
     "call_threadsafe(thread_ident, fn, /, *args)\n--\n\n"
     "call_threadsafe(thread_ident, fn, *args): run fn(*args) in a new tasklet "
     "of that thread's hub; callable from any thread"},
    {nullptr, nullptr, 0, nullptr}};

// ------------------------------------------------------------- stats/exit

PyObject* Hub::stats() const {
  return Py_BuildValue(
      "{s:l,s:l,s:l,s:i,s:l,s:n,s:l,s:l,s:K,s:K,s:l,s:l}", "tasklets",
      live_count_, "events", armed_events_, "internal_events", internal_events_,
      "libevent_events",
      event_base_get_num_events(base(), EVENT_BASE_COUNT_ADDED), "thread_jobs",
      thread_jobs_.load(), "ready",
      static_cast<Py_ssize_t>(ready_.size() + batch_.size()), "signal_handlers",
      counted(Source::kSignalHandler), "native_events",
      counted(Source::kActiveEvent), "polls",
      static_cast<unsigned long long>(polls_), "blocking_polls",
      static_cast<unsigned long long>(blocking_polls_), "io_handles",
      counted(Source::kIdleRegistration), "io_waiters",
      counted(Source::kListedWaiter));
}

void Hub::set_error_handler(PyObject* fn) {
  Py_XINCREF(fn);
  Py_XSETREF(error_handler, fn);
}

void Hub::report_error(Tasklet* t, PyObject* exc) {
  if (error_handler) {
    py::Ref r = py::Ref::steal(
        PyObject_CallFunctionObjArgs(error_handler, t->self(), exc, nullptr));
    if (r) return;
    PyErr_WriteUnraisable(error_handler);
    return;
  }
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_DisplayException(exc);
#else
  PyErr_Display(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc,
                PyException_GetTraceback(exc));
#endif
}

void Hub::shutdown_current() {
  Hub* hub = tls_hub;
  if (!hub) return;
  hub->stopping_ = true;
  {
    std::vector<NativeOwner*> owners;
    owners.swap(hub->owners_);
    for (NativeOwner* o : owners) o->hub_closing();
    hub->deferred_.clear();
  }
  // Disarm every event first: nothing may point into a freed event_base.
  for (Tasklet* t = hub->live_head_; t; t = t->live_next_) t->disarm();
  for (Timer* tm : hub->armed_timers_) tm->disarm();
  hub->armed_timers_.clear();
  {
    std::lock_guard<std::mutex> lock(hub->posts_mu_);
    for (Waiter* w : hub->posts_) Py_DECREF(w->self());
    hub->posts_.clear();
    for (PyObject* call : hub->calls_) Py_DECREF(call);
    hub->calls_.clear();
  }
  hub->closed_ = true;
  // Drop the run queues (tasklets there are live, still held by the hub).
  for (auto* queue : {&hub->ready_, &hub->batch_}) {
    RunQueue<Tasklet*> q;
    q.swap(*queue);
    q.for_each([](Tasklet* t) {
      t->queued_ = false;
      if (t->zombie_) {
        t->zombie_ = false;
        Py_DECREF(t->self());
      }
    });
  }
  // Release the live tasklets. A suspended one's greenlet is killed by
  // greenlet when its last reference goes (GreenletExit at its wait point,
  // which now fails fast because the hub is closed).
  while (Tasklet* t = hub->live_head_) {
    hub->remove_live(t);
    t->hub_ = nullptr;  // finish() schedules nothing on this hub any more
    if (t->state_ == State::kRunning && !t->adopted_ && t->greenlet_) {
      // Kill its greenlet while the tasklet still exists: the worker
      // unwinds through run_job and finish(t), which must not meet a
      // tasklet that is being freed (and whose greenlet reference it
      // would drop a second time).
      py::Ref g = std::move(t->greenlet_);
      g.reset();
      if (PyErr_Occurred()) PyErr_WriteUnraisable(nullptr);
    }
    Py_DECREF(t->self());
  }
  std::vector<PyObject*> pool;
  pool.swap(hub->pool_);
  for (PyObject* g : pool) Py_DECREF(g);
  hub->hub_greenlet_.reset();
  hub->main_.reset();
  hub->adopted_.reset();
  if (hub->main_thread_) {
    // What user code set last (through the patched set_wakeup_fd, or
    // before the hub) is CPython's own wake-up fd again.
    py::Ref signal_mod = py::Ref::steal(PyImport_ImportModule("_signal"));
    if (signal_mod) {
      py::Ref r = py::Ref::steal(PyObject_CallMethod(
          signal_mod.get(), "set_wakeup_fd", "i",
          hub->chained_wakeup_fd_.load(std::memory_order_relaxed)));
    }
    PyErr_Clear();
  }
  tls_hub = nullptr;
  {
    std::lock_guard<std::mutex> lock(hubs_mu);
    for (size_t i = 0; i < all_hubs.size(); ++i)
      if (all_hubs[i] == hub) {
        all_hubs.erase(all_hubs.begin() + i);
        break;
      }
  }
  delete hub;
}

int Hub::reinit_after_fork() {
  Hub* hub = tls_hub;
  if (!hub) return 0;
  // The parent's threads do not exist here: their posts never come.
  {
    std::lock_guard<std::mutex> lock(hub->posts_mu_);
    for (Waiter* w : hub->posts_) Py_DECREF(w->self());
    hub->posts_.clear();
    for (PyObject* call : hub->calls_) Py_DECREF(call);
    hub->calls_.clear();
  }
  hub->thread_jobs_ = 0;
  // event_reinit first: until then the epoll instance is the parent's too
  // (shared across fork), and an event_del here would remove the parent's
  // own registrations of the same descriptors.
  if (event_reinit(hub->base()) < 0) {
    PyErr_SetString(PyExc_OSError, "libevent: event_reinit failed");
    return -1;
  }
  hub->close_wakeups();
  // Keep the descriptor that was installed before the first hub, not the
  // parent's (now replaced) signal pipe.
  int original = hub->old_wakeup_fd_;
  int chained = hub->chained_wakeup_fd_.load(std::memory_order_relaxed);
  int rc = hub->open_wakeups();
  hub->old_wakeup_fd_ = original;
  hub->chained_wakeup_fd_.store(chained, std::memory_order_relaxed);
  if (rc < 0) return rc;
  // An owner may go away while it handles this (and leave the list).
  std::vector<NativeOwner*> owners = hub->owners_;
  for (NativeOwner* o : owners) o->after_fork_in_child();
  return 0;
}

}  // namespace ptsevent::hub

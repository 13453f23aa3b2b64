// IoHandle (`_core.IoHandle`): the cooperative side of one descriptor.
//
// A socket (or pipe) registers ONE persistent, edge-triggered libevent
// event for reading and writing the first time an operation would block,
// and keeps it until close(): a wait then costs no epoll_ctl at all, only
// (with a timeout) a timer. The callback records readiness and wakes every
// tasklet waiting in that direction; they retry the system call, and those
// that get EAGAIN again wait again. So several tasklets may read (or write)
// the same descriptor; each gets whole system-call results, in no promised
// order.
//
// The I/O loops (try the call, wait on EAGAIN, retry until the deadline)
// run here in C++: recv/recv_into/send/sendall/recvfrom/recvfrom_into/
// sendto make the system call themselves; retry_read()/retry_write() loop
// the same way around a Python call that raises BlockingIOError (accept,
// recvmsg, sendmsg, sendfile, os.read ...). All read the deadline from the
// handle's timeout; MSG_DONTWAIT in the flags makes one call non-blocking.
//
// Lifetime: the handle lives as long as the Python socket object holds it.
// close() (or dealloc) removes the event before the descriptor is closed
// and wakes the waiters, which raise OSError(EBADF). A waiting tasklet is
// live (held by its hub) and holds the handle, so the records in the waiter
// lists stay valid; a waiter is always off its list before it returns.
//
// The engine (this header, io_handle.cpp) registers, waits and loops on
// C++ arguments; its Python face (construction and teardown, the parsing
// of the socket module's arguments and timeouts, attributes, the type) is
// io_handle_type.cpp.
#pragma once

#include <Python.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "hub/clock.h"
#include "hub/hub.h"
#include "hub/wait_record.h"

namespace ptsevent::io {

// A tasklet's place among a handle's readers or writers.
struct IoWait : hub::WaitRecord {
  IoWait() noexcept : WaitRecord(hub::WaitKind::kDescriptor) {}
};

struct IoHandle {
  PyObject_HEAD PyObject* weakrefs_;
  hub::Hub* hub_;
  uint64_t hub_serial_;
  int fd_;
  struct event ev_;
  // A libevent callback argument (hub/event_owner.h): a Python object on
  // the heap whose dealloc (and close) unregisters ev_.
  static constexpr bool kEventOwner = true;
  bool registered_;
  // Bytes the last recv() returned (saturating): a stream that just
  // delivered a large read is likely to deliver another.
  uint32_t last_read_;
  // Stream sockets only: false once a read came back short (the kernel
  // buffer was drained) or with EAGAIN, true again when epoll reports an
  // edge. While false, a read waits first instead of spending a system call
  // on a certain EAGAIN; an edge-triggered epoll reports every arrival, so
  // no data can be missed. (libuv stops reading on a short read likewise.)
  // The socket's timeout (socket.settimeout writes it, gettimeout reads
  // it: its one owner): < 0 none, 0 non-blocking.
  double timeout_;
  // The socket's address family, read on first need (0: not yet).
  int family_;
  bool stream_;
  bool maybe_readable_;
  bool peer_closed_;  // EV_CLOSED seen: reads never wait again (EOF/error)
  // A short read cleared maybe_readable_ but proved less than it seems: a
  // reset arriving with the last data comes on the same edge, and libevent
  // reports EPOLLHUP/EPOLLERR as READ|WRITE without EV_CLOSED. So the next
  // read is still tried, unless a send succeeded since (a send fails on a
  // reset connection) or a read came back with EAGAIN (after which a reset
  // is a new edge).
  bool unconfirmed_;
  bool read_ready_;
  bool write_ready_;
  // tls_read() (tls_calls.cpp): the last read filled the caller's buffer or
  // a whole TLS record without waiting, so the peer is likely streaming:
  // the next read is tried at once, without checking for data first.
  bool tls_streaming_;
  // tls_read(): the last read returned a whole record (16 KiB), so the
  // next one reads ahead (see tls_calls.cpp).
  bool tls_whole_records_;
  bool closed_;
  // The tasklets waiting to read / to write, in arrival order, and the
  // records their waits take (one per tasklet that waits at a time).
  hub::WaitList readers_;
  hub::WaitList writers_;
  hub::WaitRecordPool<IoWait> spare_;

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
  // Waits until the descriptor may be readable (EV_READ) or writable.
  // 0: ready, 1: timed out, -1: error (closed, interrupted ...).
  int wait(short what, double seconds);
  void unregister() noexcept;
  // Takes the registration from another thread's hub (see wait()).
  int release_from_owner();
  static constexpr double kReleaseTimeout = 2.0;
  // Schedules every tasklet of *list and empties it.
  void wake_all(hub::WaitList* list) noexcept;
  static void on_event(evutil_socket_t fd, short what, void* arg);

  // Whether to try a read now, or wait for readiness first.
  // Until the descriptor is registered no edge can have been seen, so the
  // flag means nothing: try the call.
  bool should_try_read() const noexcept {
    return !stream_ || maybe_readable_ || !registered_ || peer_closed_ ||
           unconfirmed_;
  }
  // Records the outcome of a read of `asked` bytes that returned n (>= 0).
  // A short read proves the buffer empty, but not that no FIN or reset is
  // pending: a FIN arrives with EV_CLOSED (EPOLLRDHUP), which makes the
  // flag stick; a reset does not (see unconfirmed_).
  void after_read(ssize_t n, size_t asked) noexcept {
    if (stream_ && !peer_closed_ && n > 0 && static_cast<size_t>(n) < asked) {
      maybe_readable_ = false;
      unconfirmed_ = true;
    }
  }
  // Records a send that took bytes: no reset was pending.
  void after_send() noexcept { unconfirmed_ = false; }
  void note_read(ssize_t n) noexcept {
    last_read_ = n > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(n);
  }
};

using hub::Deadline;

// After a system call on h failed with errno: returns 1 to retry (EINTR,
// or waited until the descriptor may be ready), -1 with the Python error
// set (another error, BlockingIOError when the deadline never waits,
// TimeoutError, or the wait failed).
int retry_after_failure(IoHandle* h, short what, const Deadline& d);
// Before a read on a stream: when the last read drained the socket, wait
// for the next edge instead of trying (0 to read now, -1 on error).
int wait_if_drained(IoHandle* h, const Deadline& d);

// The loop of the retry_read()/retry_write() calls: call[0](*call[1:])
// until it raises something else than BlockingIOError (which reaches the
// caller when the deadline never waits); between tries, wait() (0 to try
// again, -1 with an error set).
template <class Wait>
PyObject* retry_python_call(PyObject* const* call, size_t n, const Deadline& d,
                            Wait wait) {
  for (;;) {
    PyObject* r = PyObject_Vectorcall(call[0], call + 1, n - 1, nullptr);
    if (r || !PyErr_ExceptionMatches(PyExc_BlockingIOError) || d.never_wait())
      return r;
    PyErr_Clear();
    if (wait() < 0) return nullptr;
  }
}

extern PyTypeObject* IoHandleType;

inline bool is_io_handle(PyObject* o) {
  return PyObject_TypeCheck(o, IoHandleType);
}
PyTypeObject* make_io_handle_type();

// The methods' engines, once the face has parsed their arguments: seconds
// is the call's timeout (< 0 none, 0 never wait). Each returns a new
// reference, or null with the Python error set.

// close(): unregisters (through the owner hub from another thread) and
// wakes the waiters, which raise OSError(EBADF). None.
PyObject* io_handle_close(IoHandle* h);
// close()'s and _release_in_owner()'s work, in the owner hub's thread
// (nothing elsewhere).
void io_handle_close_in_owner(IoHandle* h);
void io_handle_release_in_owner(IoHandle* h);
// wait_read()/wait_write(): None once ready, TimeoutError after seconds.
PyObject* io_handle_wait(IoHandle* h, short what, double seconds);
// recv(size, flags) -> bytes; recv_into(buf, nbytes, flags) -> int (nbytes
// 0: nothing asked for); send(data, flags) -> int, or with `all` sendall()
// -> None (seconds bound the whole call).
PyObject* io_handle_recv(IoHandle* h, Py_ssize_t size, int flags,
                         double seconds);
PyObject* io_handle_recv_into(IoHandle* h, void* buf, Py_ssize_t nbytes,
                              int flags, double seconds);
PyObject* io_handle_send(IoHandle* h, const char* data, Py_ssize_t len,
                         int flags, double seconds, bool all);
// retry_read()/retry_write(): call[0](*call[1:n]) until it does not raise
// BlockingIOError, waiting for `what` in between.
PyObject* io_handle_retry(IoHandle* h, short what, PyObject* const* call,
                          size_t n, double seconds);
// finish_connect(err) with the handle's own timeout -> error number.
PyObject* io_handle_finish_connect(IoHandle* h, int err);
// recvfrom(size, flags) -> (bytes, address), recvfrom_into(buf, nbytes,
// flags) -> (nbytes, address), sendto(data, flags, addr) -> int; each
// NotImplemented for what the socket module must do itself (see
// io_handle.cpp).
PyObject* io_handle_recvfrom(IoHandle* h, Py_ssize_t size, int flags,
                             double seconds);
PyObject* io_handle_recvfrom_into(IoHandle* h, void* buf, Py_ssize_t nbytes,
                                  int flags, double seconds);
PyObject* io_handle_sendto(IoHandle* h, const void* data, Py_ssize_t len,
                           int flags, PyObject* addr, double seconds);

}  // namespace ptsevent::io

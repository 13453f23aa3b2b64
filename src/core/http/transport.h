// The transport seam: every byte the server reads from or writes to a
// client's socket goes through these three calls, and nothing else in
// src/core/http touches the socket's data (accept, shutdown and close are
// the connection's lifetime, not its data).
//
// They are the system calls, non-blocking, with their return values and
// errno: n > 0 bytes, 0 at EOF (reads), -1 with errno (EAGAIN: not ready;
// the callers wait on the connection's event). A TLS transport plugs in
// here, behind the same three calls (a transport that cannot hand a file
// to the kernel will have send_file iterate the file wrapper instead).
// Inline: the plain transport costs one system call per call, nothing more.
#pragma once

#include <errno.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "http/connection.h"

namespace ptsevent::http {

inline ssize_t transport_recv(Connection* c, char* buf, size_t cap) noexcept {
  return ::recv(c->fd, buf, cap, 0);
}

// At most 1024 buffers per call (IOV_MAX): the caller loops.
inline ssize_t transport_sendv(Connection* c, const struct iovec* iov,
                               int cnt) noexcept {
  struct msghdr msg {};
  msg.msg_iov = const_cast<struct iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(cnt > 1024 ? 1024 : cnt);
  return ::sendmsg(c->fd, &msg, MSG_NOSIGNAL);
}

inline ssize_t transport_sendfile(Connection* c, int file_fd, off_t* offset,
                                  size_t count) noexcept {
  return ::sendfile(c->fd, file_fd, offset, count);
}

}  // namespace ptsevent::http

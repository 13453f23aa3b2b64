// poll_fds(): the one primitive under ptsevent's select.select, select.poll
// and selectors. A zero-timeout poll(2) first (nothing to register when
// something is ready already); otherwise one temporary libevent event per
// descriptor, a wait, and poll(2) again for the exact revents, which
// libevent 2.1 cannot report (it folds error and hang-up into read|write
// and has no POLLPRI).
//
// The engine is poll.cpp; its Python face (_core.poll_fds: the arguments
// and the result list) is poll_type.cpp.
#pragma once

#include <Python.h>
#include <poll.h>

#include <vector>

namespace ptsevent::io {

// Waits, blocking only the calling tasklet, until a descriptor of `fds` has
// an event or `timeout` seconds pass (< 0: forever, 0: no wait), and sets
// each entry's revents as poll(2) does. 0, or -1 with an error set.
int poll_fds(std::vector<pollfd>& fds, double timeout);

// _core.poll_fds (poll_type.cpp).
extern PyMethodDef poll_functions[];

}  // namespace ptsevent::io

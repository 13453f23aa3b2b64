// poll_fds(): the one primitive under ptsevent's select.select, select.poll
// and selectors. A zero-timeout poll(2) first (nothing to register when
// something is ready already); otherwise one temporary libevent event per
// descriptor, a wait, and poll(2) again for the exact revents, which
// libevent 2.1 cannot report (it folds error and hang-up into read|write
// and has no POLLPRI).
#pragma once

#include <Python.h>

namespace ptsevent::io {

extern PyMethodDef poll_functions[];

}  // namespace ptsevent::io

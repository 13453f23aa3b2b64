// Channel: Stackless's rendezvous channel (see channel.cpp).
#pragma once

#include <Python.h>

namespace ptsevent::hub {

struct WaitRecord;

extern PyTypeObject* ChannelType;
// The value a tasklet blocked on a channel holds or was handed (Stackless's
// tempval), borrowed; null when r is not a channel's.
PyObject* channel_transfer(const WaitRecord* r) noexcept;
PyTypeObject* make_channel_type();

}  // namespace ptsevent::hub

// Channel: Stackless's rendezvous channel (see channel.cpp).
#pragma once

#include <Python.h>

namespace ptsevent::hub {

extern PyTypeObject* ChannelType;
PyTypeObject* make_channel_type();

}  // namespace ptsevent::hub

// Queue: queue.Queue for tasklets, in C++ (see queue.cpp).
#pragma once

#include <Python.h>

namespace ptsevent::hub {

extern PyTypeObject* QueueType;
PyTypeObject* make_queue_type();

}  // namespace ptsevent::hub

// Channel (`_core.Channel`, `ptsevent.stackless.channel`): Stackless's
// rendezvous channel on ptsevent tasklets.
//
// A send with no receiver waiting blocks the sender in the channel's FIFO
// (balance > 0); a receive with no sender waiting blocks the receiver
// (balance < 0). When the counterpart is there the value moves through the
// blocked tasklet's wait record (ChannelWait, Stackless's tempval) and the
// channel's preference decides who runs:
// the counterpart is switched to at once when preference == -direction
// (direction +1 for send, -1 for receive: the default -1 prefers the
// receiver), and the current tasklet goes to the end of the run queue;
// otherwise the counterpart is appended to the run queue and the current
// tasklet goes on. preference 0 never switches.
//
// Channels belong to the hub of the thread that made them (Stackless's
// channels also worked across threads; ptsevent's do not).
//
// The engine (this header, channel.cpp) moves values and tasklets; its
// Python face (construction, the exception arguments, method and attribute
// tables, the type) is channel_type.cpp.
#pragma once

#include <Python.h>

#include "hub/hub.h"
#include "hub/wait_record.h"
#include "py/ref.h"

namespace ptsevent::hub {

// What a ChannelWait's value is.
enum : uint8_t { kValue = 0, kException = 1, kClosed = 2 };

// A blocked tasklet's place in the channel, with the transfer: a blocked
// sender's value, or what a counterpart hands a blocked receiver.
struct ChannelWait : WaitRecord {
  ChannelWait() noexcept : WaitRecord(WaitKind::kChannel) {}
  py::Ref value;
  uint8_t kind = kValue;  // what value is: kValue, kException or kClosed
};

struct Channel {
  PyObject_HEAD PyObject* weakrefs_;
  Hub* hub_;
  uint64_t hub_serial_;
  WaitList queue_;  // blocked tasklets' ChannelWaits, all one direction
  WaitRecordPool<ChannelWait> spare_;
  long balance_;  // > 0 senders wait, < 0 receivers wait
  int preference_;
  bool closing_;

  PyObject* self() noexcept { return reinterpret_cast<PyObject*>(this); }
  bool closed() const noexcept { return closing_ && balance_ == 0; }
};

extern PyTypeObject* ChannelType;
// The value a tasklet blocked on a channel holds or was handed (Stackless's
// tempval), borrowed; null when r is not a channel's.
PyObject* channel_transfer(const WaitRecord* r) noexcept;
PyTypeObject* make_channel_type();

// Sends value (kind kValue or kException) to a receiver, blocking until one
// takes it. None, or null with an error.
PyObject* channel_send(Channel* ch, PyObject* value, uint8_t kind);
// Receives a value, blocking until a sender gives one. Null with an error
// (also the exception a sender sent, raised).
PyObject* channel_receive(Channel* ch);
// Stops sends and wakes the waiting receivers with "the channel is closed".
// None, or null with an error.
PyObject* channel_close(Channel* ch);

}  // namespace ptsevent::hub

// Small frame data stacks for worker greenlets (CPython 3.11+).
//
// CPython 3.11 keeps the frames of Python calls in per-thread "data stack"
// chunks (tstate->datastack_chunk), and greenlet gives every greenlet a
// chain of its own: the first Python call in a new greenlet allocates a
// 16 KiB root chunk with _PyObject_VirtualAlloc (an anonymous mmap, through
// the object arena allocator), kept until the greenlet dies. A worker
// greenlet suspended in sock.recv() has two or three small frames in it,
// but its first page is resident: 4 KiB per idle connection, more than
// half of what one costs.
//
// So a worker greenlet starts with a small root chunk instead (kRootChunk
// bytes, carved from shared slabs, several to a page): its frames live
// there until the call depth outgrows it; deeper calls then get ordinary
// chunks from CPython (which links them to ours and frees them when the
// calls return). Everything that frees a chunk (CPython when a call
// returns, greenlet when a greenlet ends or is deallocated unfinished) goes
// through the arena allocator, which ptsevent wraps: it recognises its
// own chunks by address and recycles them; everything else goes to the
// allocator it wrapped. The wrapper also keeps a few freed 16 KiB chunks
// for reuse, so that a call depth oscillating across the end of a small
// root chunk does not cost an mmap and a munmap per call.
#pragma once

#include <Python.h>

namespace ptsevent::py::datastack {

// Wraps the object arena allocator (once per process). Call with the GIL.
void install();

// Gives the running greenlet a small root chunk if it has no data stack
// yet (a new greenlet that has run no Python code). Call with the GIL,
// before the greenlet's first Python call.
void adopt_small_root();

// For tests and benchmarks: chunks handed out and cached.
PyObject* stats();

}  // namespace ptsevent::py::datastack

#include "py/datastack.h"

#include <sys/mman.h>

#include <algorithm>
#include <mutex>

// The data stack layout (tstate->datastack_*, _PyStackChunk) and the root
// chunk rule of push_chunk() are those of CPython 3.11, where this was
// checked (with greenlet 3.5); 3.12 and later are not enabled until they
// are checked the same way. Elsewhere this is a no-op.
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && \
    !defined(Py_GIL_DISABLED)
#define PTSEVENT_SMALL_DATASTACK 1
#else
#define PTSEVENT_SMALL_DATASTACK 0
#endif

namespace ptsevent::py::datastack {

#if PTSEVENT_SMALL_DATASTACK
namespace {

// Bytes of a worker greenlet's root chunk: the chunk header and about six
// small frames (a frame takes 80 bytes plus 8 per local and stack slot).
constexpr size_t kRootChunk = 1024;
// Root chunks are carved from anonymous mappings of this size. They start
// at an odd offset, so that none is page-aligned: were one ever handed to
// another arena allocator's free (munmap), that would fail harmlessly.
constexpr size_t kSlabSize = 256 * 1024;
constexpr size_t kSlabOffset = 64;
constexpr size_t kChunksPerSlab = (kSlabSize - kSlabOffset) / kRootChunk;
// CPython's DATA_STACK_CHUNK_SIZE: the chunks it allocates when a call
// does not fit. A few freed ones are kept for the next such call.
constexpr size_t kSpillChunk = 16 * 1024;
constexpr size_t kMaxSpillCache = 16;

// Plain data only: the allocator may be called during finalization, after
// C++ static destructors would have run.
std::mutex mu;  // arena calls hold the GIL; this is belt and braces
bool installed = false;
PyObjectArenaAllocator wrapped;
char** slabs = nullptr;  // sorted by address
size_t nslabs = 0;
size_t slabs_cap = 0;
char* fresh_slab = nullptr;  // where never-used chunks are carved from
size_t fresh_next = 0;
void* free_roots = nullptr;  // freed root chunks, linked by their first word
size_t roots_out = 0;
void* spill_cache = nullptr;
size_t spill_cached = 0;

bool is_root(void* p) {
  char* c = static_cast<char*>(p);
  char** end = slabs + nslabs;
  char** it = std::upper_bound(slabs, end, c);
  if (it == slabs) return false;
  char* slab = *(it - 1);
  return c >= slab && c < slab + kSlabSize;
}

void* arena_alloc(void*, size_t size) {
  if (size == kSpillChunk) {
    std::lock_guard<std::mutex> lock(mu);
    if (void* p = spill_cache) {
      spill_cache = *static_cast<void**>(p);
      --spill_cached;
      return p;
    }
  }
  return wrapped.alloc(wrapped.ctx, size);
}

void arena_free(void*, void* p, size_t size) {
  if (!p) return;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (nslabs && is_root(p)) {
      *static_cast<void**>(p) = free_roots;
      free_roots = p;
      --roots_out;
      return;
    }
    if (size == kSpillChunk && spill_cached < kMaxSpillCache) {
      *static_cast<void**>(p) = spill_cache;
      spill_cache = p;
      ++spill_cached;
      return;
    }
  }
  wrapped.free(wrapped.ctx, p, size);
}

void* take_root() {
  std::lock_guard<std::mutex> lock(mu);
  if (void* p = free_roots) {
    free_roots = *static_cast<void**>(p);
    ++roots_out;
    return p;
  }
  if (!fresh_slab || fresh_next == kChunksPerSlab) {
    if (nslabs == slabs_cap) {
      size_t cap = slabs_cap ? 2 * slabs_cap : 16;
      char** grown =
          static_cast<char**>(PyMem_RawRealloc(slabs, cap * sizeof(char*)));
      if (!grown) return nullptr;
      slabs = grown;
      slabs_cap = cap;
    }
    void* m = mmap(nullptr, kSlabSize, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    char* slab = static_cast<char*>(m);
    char** at = std::upper_bound(slabs, slabs + nslabs, slab);
    std::copy_backward(at, slabs + nslabs, slabs + nslabs + 1);
    *at = slab;
    ++nslabs;
    fresh_slab = slab;
    fresh_next = 0;
  }
  void* p = fresh_slab + kSlabOffset + fresh_next++ * kRootChunk;
  ++roots_out;
  return p;
}

}  // namespace

void install() {
  if (installed) return;
  PyObject_GetArenaAllocator(&wrapped);
  if (!wrapped.alloc || !wrapped.free) return;
  PyObjectArenaAllocator mine = {nullptr, arena_alloc, arena_free};
  PyObject_SetArenaAllocator(&mine);
  installed = true;
}

void adopt_small_root() {
  PyThreadState* ts = PyThreadState_Get();
  if (!installed || ts->datastack_chunk) return;
  // Only while the wrapper is the arena allocator: another one installed
  // since would not know these chunks when it frees them.
  PyObjectArenaAllocator cur;
  PyObject_GetArenaAllocator(&cur);
  if (cur.alloc != arena_alloc || cur.free != arena_free) return;
  auto* c = static_cast<_PyStackChunk*>(take_root());
  if (!c) return;  // CPython allocates an ordinary chunk instead
  c->previous = nullptr;
  c->size = kRootChunk;
  c->top = 0;
  ts->datastack_chunk = c;
  // As CPython's push_chunk does for a root chunk: the first slot stays
  // unused, so the chunk is never popped (only freed with the greenlet).
  ts->datastack_top = &c->data[1];
  ts->datastack_limit =
      reinterpret_cast<PyObject**>(reinterpret_cast<char*>(c) + kRootChunk);
}

PyObject* stats() {
  std::lock_guard<std::mutex> lock(mu);
  return Py_BuildValue("{s:O,s:n,s:n,s:n,s:n}", "enabled",
                       installed ? Py_True : Py_False, "root_chunk_size",
                       static_cast<Py_ssize_t>(kRootChunk), "roots_in_use",
                       static_cast<Py_ssize_t>(roots_out), "slabs",
                       static_cast<Py_ssize_t>(nslabs), "spill_cached",
                       static_cast<Py_ssize_t>(spill_cached));
}

#else

void install() {}
void adopt_small_root() {}
PyObject* stats() {
  return Py_BuildValue("{s:O,s:n,s:n,s:n,s:n}", "enabled", Py_False,
                       "root_chunk_size", Py_ssize_t{0}, "roots_in_use",
                       Py_ssize_t{0}, "slabs", Py_ssize_t{0}, "spill_cached",
                       Py_ssize_t{0});
}

#endif

}  // namespace ptsevent::py::datastack

// ByteBuffer: a growable byte queue (append at the end, consume at the
// front) without zero-filling, for BufferedIo's read and write sides.
#pragma once

#include <cstdlib>
#include <cstring>
#include <new>

namespace ptsevent::io {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ~ByteBuffer() { std::free(data_); }

  size_t size() const noexcept { return end_ - start_; }
  bool empty() const noexcept { return end_ == start_; }
  const char* data() const noexcept { return data_ + start_; }

  // Room for at least n more bytes at the end; returns where to write.
  // Returns null when out of memory.
  char* reserve(size_t n) {
    if (cap_ - end_ >= n) return data_ + end_;
    size_t used = size();
    if (start_ > 0 && cap_ - used >= n && start_ >= used) {
      std::memmove(data_, data_ + start_, used);  // compact, no realloc
    } else {
      size_t ncap = cap_ ? cap_ : 4096;
      while (ncap - used < n) ncap *= 2;
      char* nd = static_cast<char*>(std::malloc(ncap));
      if (!nd) return nullptr;
      if (used) std::memcpy(nd, data_ + start_, used);
      std::free(data_);
      data_ = nd;
      cap_ = ncap;
    }
    start_ = 0;
    end_ = used;
    return data_ + end_;
  }
  void commit(size_t n) noexcept { end_ += n; }
  bool append(const char* p, size_t n) {
    char* dst = reserve(n);
    if (!dst) return false;
    std::memcpy(dst, p, n);
    commit(n);
    return true;
  }
  bool prepend(const char* p, size_t n) {
    if (start_ >= n) {
      start_ -= n;
      std::memcpy(data_ + start_, p, n);
      return true;
    }
    size_t used = size();
    size_t ncap = cap_ ? cap_ : 4096;
    while (ncap < used + n) ncap *= 2;
    char* nd = static_cast<char*>(std::malloc(ncap));
    if (!nd) return false;
    std::memcpy(nd, p, n);
    if (used) std::memcpy(nd + n, data_ + start_, used);
    std::free(data_);
    data_ = nd;
    cap_ = ncap;
    start_ = 0;
    end_ = used + n;
    return true;
  }
  void consume(size_t n) noexcept {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;
  }
  // Frees the memory of an empty buffer (idle connections keep nothing).
  void shrink_if_empty() noexcept {
    if (empty() && data_) {
      std::free(data_);
      data_ = nullptr;
      cap_ = start_ = end_ = 0;
    }
  }

 private:
  char* data_ = nullptr;
  size_t cap_ = 0;
  size_t start_ = 0;
  size_t end_ = 0;
};

}  // namespace ptsevent::io

// RunQueue: the FIFO of ready tasklets. A ring buffer of raw pointers that
// only grows (power-of-two capacity): pushing and popping never allocate in
// the steady state, unlike std::deque, which frees and allocates a block
// every few hundred entries. push_back may be called from a libevent
// callback without the GIL (it touches no Python object).
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

namespace ptsevent::hub {

template <typename T>
class RunQueue {
 public:
  bool empty() const noexcept { return size_ == 0; }
  size_t size() const noexcept { return size_; }

  void push_back(T v) {
    if (size_ == cap_) grow();
    buf_[(head_ + size_) & (cap_ - 1)] = v;
    ++size_;
  }
  void push_front(T v) {
    if (size_ == cap_) grow();
    head_ = (head_ + cap_ - 1) & (cap_ - 1);
    buf_[head_] = v;
    ++size_;
  }
  T pop_front() noexcept {
    T v = buf_[head_];
    head_ = (head_ + 1) & (cap_ - 1);
    --size_;
    return v;
  }
  void swap(RunQueue& other) noexcept {
    std::swap(buf_, other.buf_);
    std::swap(cap_, other.cap_);
    std::swap(head_, other.head_);
    std::swap(size_, other.size_);
  }
  template <typename F>
  void for_each(F&& f) const {
    for (size_t i = 0; i < size_; ++i) f(buf_[(head_ + i) & (cap_ - 1)]);
  }
  void clear() noexcept { head_ = size_ = 0; }

 private:
  void grow() {
    size_t ncap = cap_ ? cap_ * 2 : 64;
    std::unique_ptr<T[]> nbuf(new T[ncap]);
    for (size_t i = 0; i < size_; ++i) nbuf[i] = buf_[(head_ + i) & (cap_ - 1)];
    buf_ = std::move(nbuf);
    cap_ = ncap;
    head_ = 0;
  }

  std::unique_ptr<T[]> buf_;
  size_t cap_ = 0;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace ptsevent::hub

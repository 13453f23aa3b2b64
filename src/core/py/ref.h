// ptsevent::py::Ref — the one owning reference type for PyObject* in the core.
//
// A Ref owns exactly one strong reference (or none). Construct it with
// Ref::steal() for a new reference returned by the C API, or Ref::borrow()
// to take an extra reference to a borrowed one. It must only be created,
// moved into, reset or destroyed with the GIL held.
#pragma once

#include <Python.h>

namespace ptsevent::py {

class Ref {
 public:
  Ref() = default;
  static Ref steal(PyObject* o) noexcept { return Ref(o); }
  static Ref borrow(PyObject* o) noexcept {
    Py_XINCREF(o);
    return Ref(o);
  }

  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  Ref(Ref&& other) noexcept : p_(other.p_) { other.p_ = nullptr; }
  Ref& operator=(Ref&& other) noexcept {
    if (this != &other) {
      PyObject* old = p_;
      p_ = other.p_;
      other.p_ = nullptr;
      Py_XDECREF(old);
    }
    return *this;
  }
  ~Ref() { Py_XDECREF(p_); }

  PyObject* get() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

  // Gives up ownership: the caller now owns the reference.
  PyObject* release() noexcept {
    PyObject* p = p_;
    p_ = nullptr;
    return p;
  }
  // A new strong reference for the caller; this Ref keeps its own.
  PyObject* new_ref() const noexcept {
    Py_XINCREF(p_);
    return p_;
  }
  // Drops the reference. The field is cleared before the decref runs, so a
  // finalizer re-entering this object sees it empty (as Py_CLEAR does).
  void reset() noexcept {
    PyObject* p = p_;
    p_ = nullptr;
    Py_XDECREF(p);
  }
  // For tp_traverse.
  int visit(visitproc visit, void* arg) const {
    return p_ ? visit(p_, arg) : 0;
  }

 private:
  explicit Ref(PyObject* o) noexcept : p_(o) {}
  PyObject* p_ = nullptr;
};

}  // namespace ptsevent::py

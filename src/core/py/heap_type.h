// make_heap_type: how every Python type of the core is built, together with
// its deallocation.
//
// A heap type's instances each hold a reference to their type (taken by
// tp_alloc / PyObject_New), which tp_dealloc must give back, after it has
// also untracked a GC object, cleared weak references and the object's
// Python references. Written once here instead of in every type, none of
// them can forget a step: each type supplies only what is its own.
//
//   Clear    int (T*): drops the Python references (tp_clear); required
//            for a type with Py_TPFLAGS_HAVE_GC, which also needs a
//            Py_tp_traverse slot.
//   Destroy  void (T*): releases the rest (C++ members' destructors,
//            libevent registrations), after Clear.
//   Finalize void (T*): tp_finalize, run first (it may resurrect).
//
// The spec must not set Py_tp_dealloc, Py_tp_clear or Py_tp_finalize: they
// come from here. A Python subclass of a core type reaches the same dealloc
// through CPython's subtype_dealloc, which leaves the type reference to it
// when the base is a heap type, as all of ours are.
#pragma once

#include <Python.h>

#include <vector>

namespace ptsevent::py {

template <typename T, int (*Clear)(T*), void (*Destroy)(T*),
          void (*Finalize)(T*)>
void heap_dealloc(PyObject* self) {
  PyTypeObject* tp = Py_TYPE(self);
  if constexpr (Finalize != nullptr) {
    if (PyObject_CallFinalizerFromDealloc(self) < 0) return;  // resurrected
  }
  if (PyType_IS_GC(tp)) PyObject_GC_UnTrack(self);
  if (tp->tp_weaklistoffset) PyObject_ClearWeakRefs(self);
  T* obj = reinterpret_cast<T*>(self);
  if constexpr (Clear != nullptr) Clear(obj);
  if constexpr (Destroy != nullptr) Destroy(obj);
  tp->tp_free(self);
  Py_DECREF(tp);
}

// The type built from `spec` (base: null, a type or a tuple of types), with
// the dealloc above. Null with an error set.
template <typename T, int (*Clear)(T*) = nullptr, void (*Destroy)(T*) = nullptr,
          void (*Finalize)(T*) = nullptr>
PyTypeObject* make_heap_type(PyType_Spec* spec, PyObject* base = nullptr) {
  bool gc = spec->flags & Py_TPFLAGS_HAVE_GC;
  std::vector<PyType_Slot> slots;
  bool traverse = false;
  for (PyType_Slot* s = spec->slots; s->slot; ++s) {
    if (s->slot == Py_tp_dealloc || s->slot == Py_tp_clear ||
        s->slot == Py_tp_finalize) {
      PyErr_Format(PyExc_SystemError,
                   "%s: dealloc, clear and finalize come from make_heap_type",
                   spec->name);
      return nullptr;
    }
    traverse |= s->slot == Py_tp_traverse;
    slots.push_back(*s);
  }
  if (gc != (traverse && Clear != nullptr)) {
    PyErr_Format(PyExc_SystemError,
                 "%s: a GC type needs traverse and clear, others neither",
                 spec->name);
    return nullptr;
  }
  auto dealloc = heap_dealloc<T, Clear, Destroy, Finalize>;
  slots.push_back({Py_tp_dealloc, reinterpret_cast<void*>(dealloc)});
  if constexpr (Clear != nullptr)
    slots.push_back({Py_tp_clear, reinterpret_cast<void*>(Clear)});
  if constexpr (Finalize != nullptr)
    slots.push_back({Py_tp_finalize, reinterpret_cast<void*>(Finalize)});
  slots.push_back({0, nullptr});
  PyType_Spec copy = *spec;
  copy.slots = slots.data();
  return reinterpret_cast<PyTypeObject*>(PyType_FromSpecWithBases(&copy, base));
}

}  // namespace ptsevent::py

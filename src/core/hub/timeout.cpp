#include "hub/timeout.h"

#include <climits>
#include <cmath>
#include <cstring>

#include "hub/clock.h"
#include "py/method.h"
#include "py/ref.h"

namespace ptsevent::hub {

namespace {

// What a timeout argument may be.
enum class Accept {
  kNumber,        // anything with __float__ or __index__, but str/bytes
  kFloatMethod,   // anything whose type has __float__, but str/bytes
  kFloatOrIndex,  // a float, else what __index__ makes an int (CPython's
                  // time conversions: "'str' object cannot be interpreted
                  // as an integer")
};
enum class Negative { kError, kZero, kForever, kKeep };

struct Rules {
  Accept accept;
  // TypeError text; one %.200s is the type's name. Null: __index__'s own.
  const char* type_error;
  Negative negative;
  const char* negative_error;  // ValueError text, with Negative::kError
  bool short_name;             // the type's name without its module
  // The bound of time.sleep: what fits a 64-bit count of nanoseconds.
  bool bounded;
};

constexpr const char kSecondsTypeError[] =
    "'%.200s' object cannot be interpreted as a number of seconds";

// Indexed by TimeoutMode.
const Rules kRules[] = {
    {Accept::kNumber, kSecondsTypeError, Negative::kError,
     "sleep length must be non-negative", false, true},
    {Accept::kNumber, kSecondsTypeError, Negative::kZero, nullptr, false, true},
    {Accept::kNumber, kSecondsTypeError, Negative::kError,
     "timeout value must be non-negative", false, true},
    {Accept::kFloatOrIndex, nullptr, Negative::kError,
     "Timeout value out of range", false, false},  // bounds: parse_socket
    {Accept::kFloatMethod,
     "Timeout seconds must be a number or None, not %.200s", Negative::kError,
     "Timeout seconds must be non-negative", true, false},
    {Accept::kFloatMethod, "timeout must be a float or None", Negative::kError,
     "timeout must be non-negative", false, false},
    {Accept::kFloatMethod, "timeout must be an integer or None",
     Negative::kForever, nullptr, false, false},
    {Accept::kFloatOrIndex, nullptr, Negative::kKeep, nullptr, false, false},
};

constexpr const char kTooLarge[] =
    "timestamp too large to convert to C _PyTime_t";

bool has_float(PyObject* obj) {
  PyNumberMethods* nb = Py_TYPE(obj)->tp_as_number;
  return nb && nb->nb_float;
}

// The value as a double, by the rules' accepted types (NaN not checked).
int to_double(PyObject* obj, const Rules& r, double* out) {
  if (PyFloat_Check(obj)) {
    *out = PyFloat_AS_DOUBLE(obj);
    return 0;
  }
  bool ok = false;
  switch (r.accept) {
    case Accept::kNumber:
      ok = PyLong_Check(obj) || (!PyUnicode_Check(obj) && !PyBytes_Check(obj) &&
                                 Py_TYPE(obj)->tp_as_number &&
                                 (Py_TYPE(obj)->tp_as_number->nb_float ||
                                  Py_TYPE(obj)->tp_as_number->nb_index));
      break;
    case Accept::kFloatMethod:
      ok = !PyUnicode_Check(obj) && !PyBytes_Check(obj) && has_float(obj);
      break;
    case Accept::kFloatOrIndex: {
      py::Ref i = py::Ref::steal(PyNumber_Index(obj));  // its TypeError
      if (!i) return -1;
      *out = PyLong_AsDouble(i.get());
      return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
    }
  }
  if (!ok) {
    PyErr_Format(
        PyExc_TypeError, r.type_error,
        r.short_name ? _PyType_Name(Py_TYPE(obj)) : Py_TYPE(obj)->tp_name);
    return -1;
  }
  // An int converts without the float object its __float__ would make
  // (sleep(0) is a hot call), with the same OverflowError.
  *out = PyLong_Check(obj) ? PyLong_AsDouble(obj) : PyFloat_AsDouble(obj);
  if (*out == -1.0 && PyErr_Occurred()) {
    // An int too large for a double: for the modes without a bound, a
    // huge timeout (never reached), as a comparison with it would say.
    if (!r.bounded && PyLong_Check(obj) &&
        PyErr_ExceptionMatches(PyExc_OverflowError)) {
      PyErr_Clear();
      *out = Py_SIZE(obj) < 0 ? -HUGE_VAL : HUGE_VAL;
      return 0;
    }
    return -1;
  }
  return 0;
}

// socket.settimeout's reading: whole nanoseconds (rounded away from zero),
// within a 64-bit count of them, negative refused; read back as seconds.
int parse_socket(PyObject* obj, const Rules& r, double* seconds) {
  long long ns;
  if (PyFloat_Check(obj)) {
    double d = PyFloat_AS_DOUBLE(obj);
    if (std::isnan(d)) {
      PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
      return -1;
    }
    d *= 1e9;
    d = d >= 0 ? std::ceil(d) : std::floor(d);
    if (!(d >= static_cast<double>(LLONG_MIN) &&
          d < -static_cast<double>(LLONG_MIN))) {
      PyErr_SetString(PyExc_OverflowError,
                      "timestamp out of range for platform time_t");
      return -1;
    }
    ns = static_cast<long long>(d);
  } else {
    py::Ref i = py::Ref::steal(PyNumber_Index(obj));
    if (!i) return -1;
    long long sec = PyLong_AsLongLong(i.get());
    if (sec == -1 && PyErr_Occurred()) {
      if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
        PyErr_SetString(PyExc_OverflowError, kTooLarge);
      }
      return -1;
    }
    if (sec > LLONG_MAX / 1000000000LL || sec < LLONG_MIN / 1000000000LL) {
      PyErr_SetString(PyExc_OverflowError, kTooLarge);
      return -1;
    }
    ns = sec * 1000000000LL;
  }
  if (ns < 0) {
    PyErr_SetString(PyExc_ValueError, r.negative_error);
    return -1;
  }
  *seconds = ns % 1000000000LL == 0 ? static_cast<double>(ns / 1000000000LL)
                                    : static_cast<double>(ns) / 1e9;
  return 0;
}

}  // namespace

int parse_timeout(PyObject* obj, TimeoutMode mode, double* seconds) {
  // _thread's acquire() has no "None": __index__ refuses it.
  if (obj == nullptr || (obj == Py_None && mode != TimeoutMode::kLock)) {
    *seconds = -1.0;
    return 0;
  }
  const Rules& r = kRules[static_cast<int>(mode)];
  if (mode == TimeoutMode::kSocket) return parse_socket(obj, r, seconds);
  double s;
  if (to_double(obj, r, &s) < 0) return -1;
  if (std::isnan(s)) {
    PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
    return -1;
  }
  if (s < 0) {
    switch (r.negative) {
      case Negative::kError:
        PyErr_SetString(PyExc_ValueError, r.negative_error);
        return -1;
      case Negative::kZero:
        s = 0;
        break;
      case Negative::kForever:
        s = -1.0;
        break;
      case Negative::kKeep:
        break;
    }
  }
  if (r.bounded && s > 9.2e9) {
    PyErr_SetString(PyExc_OverflowError, kTooLarge);
    return -1;
  }
  *seconds = s;
  return 0;
}

PyObject* py_parse_timeout(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  static const struct {
    const char* name;
    TimeoutMode mode;
  } kNames[] = {{"Timeout", TimeoutMode::kTimeoutObject},
                {"select", TimeoutMode::kSelect},
                {"poll", TimeoutMode::kPoll}};
  const char* name = nargs == 2 && PyUnicode_Check(args[1])
                         ? PyUnicode_AsUTF8(args[1])
                         : nullptr;
  for (const auto& n : kNames) {
    if (!name || std::strcmp(name, n.name) != 0) continue;
    double s;
    if (parse_timeout(args[0], n.mode, &s) < 0) return nullptr;
    if (s < 0) Py_RETURN_NONE;
    return PyFloat_FromDouble(s);
  }
  if (!PyErr_Occurred())
    PyErr_SetString(PyExc_TypeError,
                    "parse_timeout(value, mode): mode is 'Timeout', 'select' "
                    "or 'poll'");
  return nullptr;
}

PyMethodDef timeout_functions[] = {
    {"parse_timeout", py::method(py_parse_timeout), METH_FASTCALL,
     "parse_timeout(value, mode, /)\n--\n\n"
     "value checked as the call named by mode reads its timeout ('Timeout', "
     "'select', 'poll'): None (no limit) or seconds as a float."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace ptsevent::hub

// The CGI view of a request head, for the environ (PEP 3333): PATH_INFO and
// QUERY_STRING from a request target, HTTP_* keys from field names.
//
// Pure C++, no Python: the parser speaks only HTTP, the environ builder
// (environ.cpp) makes the Python strings from these, and the fuzz harness
// checks them on every head it accepts.
#pragma once

#include <string>
#include <string_view>

namespace ptsevent::http {

// Splits a request target into PATH_INFO (percent-decoded; the path of an
// absolute-form target) and QUERY_STRING (raw). The asterisk-form gives
// path "*". False for a malformed percent escape.
bool split_target(std::string_view target, std::string* path,
                  std::string_view* query);

// The CGI name of a request header ("HTTP_" + upper case, '-' -> '_'), or
// false when the name contains '_' (such fields are dropped: they could
// otherwise impersonate the '-' spelling) or is Content-Type/-Length (they
// have keys of their own).
bool cgi_header_key(std::string_view name, std::string* key);

}  // namespace ptsevent::http

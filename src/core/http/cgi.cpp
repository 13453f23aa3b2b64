#include "http/cgi.h"

namespace ptsevent::http {

namespace {
int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool split_target(std::string_view target, std::string* path,
                  std::string_view* query) {
  path->clear();
  *query = std::string_view();
  if (target == "*") {
    path->assign("*");
    return true;
  }
  if (!target.empty() && target[0] != '/') {
    size_t scheme = target.find("://");
    if (scheme == std::string_view::npos) return false;
    size_t slash = target.find_first_of("/?#", scheme + 3);
    target = slash == std::string_view::npos ? std::string_view("/")
                                             : target.substr(slash);
    if (!target.empty() && target[0] != '/') {
      // "http://host?q": the path is empty, which means "/".
      path->assign("/");
    }
  }
  size_t hash = target.find('#');
  if (hash != std::string_view::npos) target = target.substr(0, hash);
  size_t q = target.find('?');
  std::string_view raw_path = target;
  if (q != std::string_view::npos) {
    raw_path = target.substr(0, q);
    *query = target.substr(q + 1);
  }
  path->reserve(path->size() + raw_path.size());
  for (size_t i = 0; i < raw_path.size(); ++i) {
    char c = raw_path[i];
    if (c == '%') {
      if (i + 2 >= raw_path.size()) return false;
      int hi = hex_value(static_cast<unsigned char>(raw_path[i + 1]));
      int lo = hex_value(static_cast<unsigned char>(raw_path[i + 2]));
      if (hi < 0 || lo < 0) return false;
      path->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      path->push_back(c);
    }
  }
  return true;
}

bool cgi_header_key(std::string_view name, std::string* key) {
  key->assign("HTTP_");
  for (unsigned char c : name) {
    if (c == '_') return false;
    if (c == '-')
      c = '_';
    else if (c >= 'a' && c <= 'z')
      c -= 32;
    key->push_back(static_cast<char>(c));
  }
  return *key != "HTTP_CONTENT_TYPE" && *key != "HTTP_CONTENT_LENGTH";
}

}  // namespace ptsevent::http

// request_fuzzer: libFuzzer harness for the HTTP/1.x request path.
//
// It drives ptsevent::http::RequestParser the way the WSGI server's
// connection loop does (feed() until kHead; read the head and build the
// environ's keys; feed() the body into a sink until kMessageEnd;
// next_message() when keep-alive and feed the unconsumed rest), once with the
// whole stream in one piece and once cut into the pieces the input chooses,
// and aborts when an invariant breaks:
//
//  - API contract: consumed <= len; kNeedMore consumed everything; kHead only
//    in the head phase, kMessageEnd only in the body phase; a dead stream stays
//    dead; error_status() in {400,413,414,417,431,501,505} with a reason.
//  - Differential: both runs give the same trace (each head, each body with
//    the stream offsets where they end, the final status or EOF state).
//  - Reference oracle: every accepted head is re-parsed from its raw bytes by
//    a small strict RFC 9112 parser written here (CRLF only, no NUL, no
//    obs-fold, token names, field values without controls); it must accept,
//    see the same method/target/fields, and the framing rules of the
//    checklist (docs/http-checklist.md) must hold (one Host on 1.1, never CL
//    with TE, TE exactly "chunked", a single all-digit CL, Expect only
//    100-continue, "close" never kept alive, limits).
//    Every accepted body is checked against the raw bytes: a Content-Length
//    body is the next CL bytes; a chunked body is re-decoded by a strict
//    reference decoder (1-16 hex digits, token/quoted-string extensions, CRLF
//    after data, strict trailers without CL/TE/Host) that must accept, give
//    the same bytes and end at the same offset.
//  - Environ helpers: split_target() and cgi_header_key() on every accepted
//    head (query is a slice of the target; path/query of a target without
//    '%'; keys are HTTP_ + upper case, never collide for different names,
//    never produced for a name with '_', never CONTENT_TYPE/LENGTH).
//
// Input layout (see fuzz/README.md):
//   byte 0       bits 0-1: limits profile (0 default, 1 small, 2 tiny,
//                3 custom: 6 more bytes follow); bits 2-4: K, the number of
//                piece-length bytes (0: the stream is fed one byte at a time)
//   [6 bytes]    custom limits, profile 3 only
//   K bytes      piece lengths (b + 1), used cyclically
//   rest         the byte stream a client sends on one connection

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "http/cgi.h"
#include "http/parser.h"

namespace {

namespace http = ptsevent::http;
using Status = http::RequestParser::Status;

// REQUEST_FUZZER_KNOWN=name,name...: tolerate the named findings of
// fuzz/README.md (each narrowly) so that a run can look past them until the
// parser is fixed. Off by default: the checks are strict.
//   status   the two runs may fail with different statuses (F1)
//   trailer  the trailer section may contain obs-fold lines, end in a bare
//            LF and have fields with empty names (F2, F3, F5)
//   chunkext a chunk extension may be any bytes but CR, LF and NUL up to the
//            CRLF (F4)
//   close    a request whose Connection field lists "close" may be kept
//            alive (F6: HTTP/1.0 with close and keep-alive; F7: "close\t")
//   rtsp     the request line may end in RTSP/x.y instead of HTTP/x.y (F8)
bool known(const char* name) {
  static const std::string list = [] {
    const char* v = std::getenv("REQUEST_FUZZER_KNOWN");
    return "," + std::string(v ? v : "") + ",";
  }();
  return list.find("," + std::string(name) + ",") != std::string::npos;
}

// What the current input is, printed when a check fails.
std::string_view g_stream;
const char* g_run = "";

[[noreturn]] void violation(const char* what, int line,
                            std::string_view detail) {
  std::fprintf(
      stderr, "\n*** request_fuzzer invariant violated (line %d, %s run): %s\n",
      line, g_run, what);
  if (!detail.empty())
    std::fprintf(stderr, "%.*s\n", static_cast<int>(detail.size()),
                 detail.data());
  std::fprintf(stderr, "stream (%zu bytes): \"", g_stream.size());
  for (unsigned char c : g_stream) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
      std::fputc(c, stderr);
    else
      std::fprintf(stderr, "\\x%02x", c);
  }
  std::fprintf(stderr, "\"\n");
  std::abort();
}

#define CHECK(cond)                              \
  do {                                           \
    if (!(cond)) violation(#cond, __LINE__, {}); \
  } while (0)
#define CHECK_MSG(cond, detail)                        \
  do {                                                 \
    if (!(cond)) violation(#cond, __LINE__, (detail)); \
  } while (0)

// ---------------------------------------------------------------- helpers

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
      (c >= 'A' && c <= 'Z'))
    return true;
  return c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}
bool is_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}
int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}
// field-vchar / SP / HTAB (RFC 9110 5.5; obs-text allowed)
bool is_field_char(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}
bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }
char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}
bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}
std::string to_lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = lower(c);
  return r;
}
std::string quote(std::string_view s) {
  std::string r = "\"";
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      r += static_cast<char>(c);
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      r += b;
    }
  }
  return r + "\"";
}

// A comma-separated header value contains `token` (case-insensitive).
bool list_has(std::string_view v, std::string_view token) {
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    if (comma == std::string_view::npos) comma = v.size();
    std::string_view item = v.substr(start, comma - start);
    while (!item.empty() && is_ows(item.front())) item.remove_prefix(1);
    while (!item.empty() && is_ows(item.back())) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    start = comma + 1;
  }
  return false;
}

// ------------------------------------------------- reference head parser

struct RefHead {
  std::string_view method, target;
  int major = 0, minor = 0;
  std::vector<std::pair<std::string_view, std::string_view>> fields;
  size_t request_line = 0;  // method + target + version bytes
};

// Strict RFC 9112 head: *(CRLF) request-line *(field-line CRLF) CRLF, and
// nothing after it. Returns an empty string when it accepts, else why not.
std::string ref_parse_head(std::string_view s, RefHead* h) {
  size_t i = 0;
  while (s.substr(i, 2) == "\r\n") i += 2;  // empty lines before (RFC 9112 2.2)
  size_t m = i;
  while (i < s.size() && is_tchar(s[i])) ++i;
  if (i == m) return "method is not a token";
  h->method = s.substr(m, i - m);
  if (i >= s.size() || s[i] != ' ') return "no SP after method";
  while (i < s.size() && s[i] == ' ')
    ++i;  // llhttp takes 1*SP here (RFC 9112 3: MAY)
  size_t t = i;
  while (i < s.size() && static_cast<unsigned char>(s[i]) > 0x20 &&
         static_cast<unsigned char>(s[i]) != 0x7f)
    ++i;
  if (i == t) return "empty target";
  h->target = s.substr(t, i - t);
  if (i >= s.size() || s[i] != ' ') return "no SP after target";
  while (i < s.size() && s[i] == ' ') ++i;     // and here
  static const bool lax_rtsp = known("rtsp");  // F8
  bool proto =
      s.substr(i, 5) == "HTTP/" || (lax_rtsp && s.substr(i, 5) == "RTSP/");
  if (!proto || i + 8 > s.size() ||
      !std::isdigit(static_cast<unsigned char>(s[i + 5])) || s[i + 6] != '.' ||
      !std::isdigit(static_cast<unsigned char>(s[i + 7])))
    return "bad HTTP-version";
  h->major = s[i + 5] - '0';
  h->minor = s[i + 7] - '0';
  i += 8;
  // What Limits::max_request_line counts: llhttp's method, url and version
  // spans ("1.1"), not the spaces, "HTTP/" or the CRLF.
  h->request_line = h->method.size() + h->target.size() + 3;
  if (s.substr(i, 2) != "\r\n") return "request line does not end in CRLF";
  i += 2;
  for (;;) {
    if (s.substr(i, 2) == "\r\n") {
      i += 2;
      break;
    }
    size_t n = i;
    while (i < s.size() && is_tchar(s[i])) ++i;
    if (i == n)
      return "field name is not a token (or obs-fold, or no final CRLF)";
    std::string_view name = s.substr(n, i - n);
    if (i >= s.size() || s[i] != ':')
      return "no ':' right after the field name";
    ++i;
    size_t v = i;
    while (i < s.size() && is_field_char(s[i])) ++i;
    std::string_view value = s.substr(v, i - v);
    while (!value.empty() && is_ows(value.front())) value.remove_prefix(1);
    while (!value.empty() && is_ows(value.back())) value.remove_suffix(1);
    if (s.substr(i, 2) != "\r\n")
      return "field line does not end in CRLF (bare CR/LF, NUL or CTL)";
    i += 2;
    h->fields.emplace_back(name, value);
  }
  if (i != s.size()) return "bytes after the head inside the head span";
  return "";
}

// Strict chunked body (RFC 9112 7.1) from s[0]: returns "" and sets *used and
// *body when it accepts, else why not ("incomplete" when s ends too soon).
std::string ref_decode_chunked(std::string_view s, size_t* used,
                               std::string* body) {
  size_t i = 0;
  auto ows = [&] {
    while (i < s.size() && is_ows(s[i])) ++i;
  };
  for (;;) {
    size_t d = i;
    uint64_t size = 0;
    while (i < s.size() && is_hex(s[i])) size = size * 16 + hex_value(s[i++]);
    if (i == d) return "chunk size has no hex digit";
    if (i - d > 16) return "chunk size has more than 16 digits";
    // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ]
    // )
    static const bool lax_ext = known("chunkext");
    if (lax_ext && i < s.size() &&
        s[i] == ';') {  // F4: any bytes but CR, LF, NUL
      while (i < s.size() && s[i] != '\r' && s[i] != '\n' && s[i] != '\0') ++i;
      if (i == s.size()) return "incomplete";
    }
    for (;;) {
      size_t save = i;
      ows();
      if (i >= s.size() || s[i] != ';') {
        i = save;
        break;
      }
      ++i;
      ows();
      size_t n = i;
      while (i < s.size() && is_tchar(s[i])) ++i;
      if (i == n) return "chunk extension name is not a token";
      size_t save2 = i;
      ows();
      if (i < s.size() && s[i] == '=') {
        ++i;
        ows();
        if (i < s.size() && s[i] == '"') {
          ++i;
          for (;;) {
            if (i >= s.size()) return "incomplete";
            unsigned char c = s[i];
            if (c == '"') {
              ++i;
              break;
            }
            if (c == '\\') {
              if (i + 1 >= s.size()) return "incomplete";
              unsigned char q = s[i + 1];
              if (!(q == '\t' || (q >= 0x20 && q != 0x7f)))
                return "bad quoted-pair";
              i += 2;
              continue;
            }
            if (!(c == '\t' || (c >= 0x20 && c != 0x7f))) return "bad qdtext";
            ++i;
          }
        } else {
          size_t v = i;
          while (i < s.size() && is_tchar(s[i])) ++i;
          if (i == v) return "chunk extension value is not a token";
        }
      } else {
        i = save2;
      }
    }
    if (s.substr(i, 2) != "\r\n") return "chunk size line does not end in CRLF";
    i += 2;
    if (size == 0) break;
    if (s.size() - i < size) return "incomplete";
    body->append(s.substr(i, size));
    i += size;
    if (s.substr(i, 2) != "\r\n") return "chunk data does not end in CRLF";
    i += 2;
  }
  // trailer-section = *( field-line CRLF ) CRLF
  static const bool lax_trailer = known("trailer");
  for (;;) {
    if (s.substr(i, 2) == "\r\n") {
      i += 2;
      break;
    }
    if (lax_trailer && s.substr(i, 1) == "\n") {  // F3
      i += 1;
      break;
    }
    size_t n = i;
    while (i < s.size() && is_tchar(s[i])) ++i;
    if (i == n && !(lax_trailer && s.substr(i, 1) == ":"))  // F5: empty name
      return "trailer name is not a token";
    std::string_view name = s.substr(n, i - n);
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
        iequals(name, "host"))
      return "forbidden trailer field";
    if (i >= s.size() || s[i] != ':') return "no ':' after trailer name";
    ++i;
    while (i < s.size() && is_field_char(s[i])) ++i;
    if (s.substr(i, 2) != "\r\n") return "trailer line does not end in CRLF";
    i += 2;
    while (lax_trailer && i < s.size() && is_ows(s[i])) {  // F2: obs-fold
      while (i < s.size() && is_field_char(s[i])) ++i;
      if (s.substr(i, 2) != "\r\n") return "trailer line does not end in CRLF";
      i += 2;
    }
  }
  *used = i;
  return "";
}

// ------------------------------------------------------------ the driver

// One connection as the server sees it: bytes arrive in pieces, the parser
// is fed like the connection loop feeds it, and every observable event is
// appended to trace (compared across runs).
class Connection {
 public:
  Connection(const http::Limits& limits, std::string_view stream)
      : limits_(limits), stream_(stream), parser_(&limits_) {}

  void receive(std::string_view piece) {
    if (closed_) return;
    buf_.append(piece.data(), piece.size());
    pump();
  }

  void eof() {
    if (closed_) return;
    trace.push_back(std::string(in_head_ ? "EOF head" : "EOF body") +
                    " started=" + std::to_string(parser_.started()) +
                    " body_bytes=" + std::to_string(parser_.body_bytes()));
  }

  std::vector<std::string> trace;
  std::string reason_;  // of the error, for the report only: not compared

 private:
  void consume(size_t n) {
    buf_.erase(0, n);
    base_ += n;
  }

  void pump() {
    while (!closed_) {
      if (buf_.empty() && (in_head_ || !parser_.body_done())) return;
      size_t len = buf_.size(), consumed = ~size_t{0};
      Status st = in_head_ ? parser_.feed(buf_.data(), len, &consumed)
                           : parser_.feed(buf_.data(), len, &consumed, &body_);
      CHECK(consumed <= len);
      consume(consumed);
      switch (st) {
        case Status::kNeedMore:
          CHECK(consumed == len);
          CHECK(in_head_ || !parser_.body_done());
          return;
        case Status::kError:
          on_error();
          return;
        case Status::kHead:
          CHECK_MSG(in_head_, "kHead in the body phase");
          on_head();
          in_head_ = false;
          break;
        case Status::kMessageEnd:
          CHECK_MSG(!in_head_, "kMessageEnd in the head phase");
          on_end();
          if (!parser_.keep_alive()) {
            trace.push_back("close");
            closed_ = true;
            return;
          }
          parser_.next_message();
          CHECK(!parser_.started() && !parser_.in_body() &&
                parser_.headers().empty());
          in_head_ = true;
          msg_start_ = base_;
          body_.clear();
          break;
      }
    }
  }

  void on_error() {
    int st = parser_.error_status();
    const char* reason = parser_.error_reason();
    CHECK_MSG(st == 400 || st == 413 || st == 414 || st == 417 || st == 431 ||
                  st == 501 || st == 505,
              "status " + std::to_string(st));
    CHECK(reason != nullptr && reason[0] != '\0');
    CHECK(std::strcmp(http::reason_phrase(st), "Unknown") != 0);
    // A dead stream stays dead and consumes nothing.
    size_t consumed = 1;
    std::string sink;
    CHECK(parser_.feed("GET / HTTP/1.1\r\n", 16, &consumed, &sink) ==
          Status::kError);
    CHECK(consumed == 0 && sink.empty());
    CHECK(parser_.error_status() == st);
    static const bool any_status = known("status");
    trace.push_back(any_status ? "error" : "error " + std::to_string(st));
    reason_ = reason;
    closed_ = true;
  }

  void on_head() {
    head_end_ = base_;
    CHECK(parser_.error_status() == 0);
    CHECK(parser_.started());
    CHECK(parser_.in_body() || parser_.body_done());
    CHECK(parser_.has_body() != parser_.body_done());
    CHECK(parser_.body_bytes() == 0);
    check_head();
    build_environ_keys();

    std::string t = "head " + quote(parser_.method()) + " " +
                    quote(parser_.target()) + " HTTP/" +
                    std::to_string(parser_.version_major()) + "." +
                    std::to_string(parser_.version_minor()) +
                    " ka=" + std::to_string(parser_.keep_alive()) +
                    " chunked=" + std::to_string(parser_.chunked()) +
                    " cl=" + std::to_string(parser_.content_length()) +
                    " expect=" + std::to_string(parser_.expect_continue()) +
                    " at=" + std::to_string(head_end_);
    for (const http::HeaderField& f : parser_.headers())
      t += " " + quote(parser_.field_name(f)) + ":" +
           quote(parser_.field_value(f));
    trace.push_back(t);
  }

  // The head against the raw bytes it came from and the checklist's rules.
  void check_head() {
    std::string_view raw = stream_.substr(msg_start_, head_end_ - msg_start_);
    RefHead ref;
    // Without a body the head's consumed bytes end exactly at its CRLFCRLF.
    std::string why = ref_parse_head(raw, &ref);
    CHECK_MSG(why.empty(), "accepted head rejected by the reference: " + why +
                               "\nhead: " + quote(raw));
    CHECK(ref.method == parser_.method());
    CHECK(ref.target == parser_.target());
    CHECK(ref.major == parser_.version_major() &&
          ref.minor == parser_.version_minor());
    const auto& fields = parser_.headers();
    CHECK_MSG(ref.fields.size() == fields.size(),
              std::to_string(ref.fields.size()) + " vs " +
                  std::to_string(fields.size()));
    for (size_t i = 0; i < fields.size(); ++i) {
      CHECK(ref.fields[i].first == parser_.field_name(fields[i]));
      CHECK_MSG(ref.fields[i].second == parser_.field_value(fields[i]),
                quote(ref.fields[i].second) + " vs " +
                    quote(parser_.field_value(fields[i])));
    }

    // Limits.
    CHECK(ref.request_line <= limits_.max_request_line);
    CHECK(raw.size() <= limits_.max_header_block);
    CHECK(fields.size() <= limits_.max_headers);
    for (const auto& [name, value] : ref.fields)
      CHECK(name.size() + value.size() <= limits_.max_header_line);

    // Semantics (docs/http-checklist.md, items 1-3, 10, 16).
    CHECK(ref.major == 1 && (ref.minor == 0 || ref.minor == 1));
    CHECK(ref.method != "CONNECT");
    if (ref.target == "*")
      CHECK(ref.method == "OPTIONS");
    else if (ref.target[0] != '/')
      CHECK(ref.target.find("://") != std::string_view::npos);
    size_t hosts = 0, cls = 0, tes = 0;
    bool conn_close = false, expect = false;
    std::string_view cl, te;
    for (const auto& [name, value] : ref.fields) {
      if (iequals(name, "host")) ++hosts;
      if (iequals(name, "content-length")) ++cls, cl = value;
      if (iequals(name, "transfer-encoding")) ++tes, te = value;
      if (iequals(name, "connection") && list_has(value, "close"))
        conn_close = true;
      if (iequals(name, "expect")) {
        CHECK(iequals(value, "100-continue"));
        expect = true;
      }
    }
    CHECK(ref.minor == 0 ? hosts <= 1 : hosts == 1);
    CHECK(!(cls && tes));
    CHECK(cls <= 1 && tes <= 1);
    if (tes) {
      CHECK(ref.minor == 1);
      CHECK(iequals(te, "chunked"));
    }
    CHECK(parser_.chunked() == (tes == 1));
    if (cls) {
      CHECK(!cl.empty() && cl.size() <= 18);
      int64_t n = 0;
      for (char c : cl) {
        CHECK(c >= '0' && c <= '9');
        n = n * 10 + (c - '0');
      }
      CHECK(parser_.content_length() == n);
      CHECK(static_cast<uint64_t>(n) <= limits_.max_body);
    } else {
      CHECK(parser_.content_length() == -1);
    }
    CHECK(parser_.expect_continue() == (expect && ref.minor == 1));
    static const bool lax_close = known("close");  // F6, F7
    if (conn_close && !lax_close) CHECK(!parser_.keep_alive());
  }

  // What the environ builder computes from the head.
  void build_environ_keys() {
    std::string path;
    std::string_view query;
    std::string_view target = parser_.target();
    if (http::split_target(target, &path, &query)) {
      if (!query.empty())
        CHECK(query.data() >= target.data() &&
              query.data() + query.size() <= target.data() + target.size());
      if (target[0] == '/' && target.find('%') == std::string_view::npos) {
        size_t cut = target.find_first_of("?#");
        CHECK(path == target.substr(0, cut));
        std::string_view q;
        if (cut != std::string_view::npos && target[cut] == '?') {
          size_t hash = target.find('#', cut);
          q = target.substr(
              cut + 1, hash == std::string_view::npos ? hash : hash - cut - 1);
        }
        CHECK(query == q);
      }
      if (target == "*") CHECK(path == "*");
      CHECK(path.size() <= target.size() || path == "/");
    } else {
      CHECK(target != "*");
    }

    std::map<std::string, std::string> seen;  // key -> lower-case name
    std::string key;
    for (const http::HeaderField& f : parser_.headers()) {
      std::string_view name = parser_.field_name(f);
      bool ok = http::cgi_header_key(name, &key);
      if (name.find('_') != std::string_view::npos) CHECK(!ok);
      if (iequals(name, "content-type") || iequals(name, "content-length"))
        CHECK(!ok);
      if (!ok) continue;
      CHECK(key.size() == 5 + name.size() && key.compare(0, 5, "HTTP_") == 0);
      for (size_t i = 5; i < key.size(); ++i) {
        char c = key[i];
        CHECK(!(c >= 'a' && c <= 'z') && c != '-');
      }
      auto [it, fresh] = seen.emplace(key, to_lower(name));
      if (!fresh)
        CHECK_MSG(it->second == to_lower(name), "key collision " + key);
    }
  }

  void on_end() {
    size_t end = base_;
    CHECK(parser_.body_done());
    CHECK(parser_.body_bytes() == body_.size());
    CHECK(body_.size() <= limits_.max_body);
    int64_t cl = parser_.content_length();
    if (cl >= 0) CHECK(body_.size() == static_cast<uint64_t>(cl));
    if (!parser_.chunked()) {
      if (cl < 0) CHECK(body_.empty());
      CHECK(end == head_end_ + body_.size());
      CHECK(stream_.substr(head_end_, body_.size()) == body_);
    } else {
      size_t used = 0;
      std::string ref_body;
      std::string why =
          ref_decode_chunked(stream_.substr(head_end_), &used, &ref_body);
      CHECK_MSG(
          why.empty(),
          "accepted chunked body rejected by the reference: " + why +
              "\nbody: " + quote(stream_.substr(head_end_, end - head_end_)));
      CHECK_MSG(head_end_ + used == end,
                "reference ends at " + std::to_string(head_end_ + used) +
                    ", parser at " + std::to_string(end));
      CHECK(ref_body == body_);
    }
    trace.push_back("body " + quote(body_) + " end=" + std::to_string(end) +
                    " ka=" + std::to_string(parser_.keep_alive()));
  }

  http::Limits limits_;
  std::string_view stream_;
  http::RequestParser parser_;
  std::string buf_;  // received, not yet consumed
  size_t base_ = 0;  // stream offset of buf_[0]
  size_t msg_start_ = 0, head_end_ = 0;
  std::string body_;
  bool in_head_ = true;
  bool closed_ = false;
};

// Runs the stream cut after each length of `pieces` (cyclically; empty: in
// one piece) and returns the trace.
std::vector<std::string> run(const http::Limits& limits,
                             std::string_view stream,
                             const std::vector<size_t>& pieces,
                             std::string* reason) {
  Connection conn(limits, stream);
  size_t pos = 0, k = 0;
  while (pos < stream.size()) {
    size_t n = pieces.empty() ? stream.size() : pieces[k++ % pieces.size()];
    if (n > stream.size() - pos) n = stream.size() - pos;
    conn.receive(stream.substr(pos, n));
    pos += n;
  }
  conn.eof();
  *reason = conn.reason_;
  return std::move(conn.trace);
}

std::string join(const std::vector<std::string>& t) {
  std::string r;
  for (const std::string& s : t) r += "  " + s + "\n";
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The configuration comes first, byte by byte (not FuzzedDataProvider,
  // which takes integers from the end), so that a corpus file reads as
  // "mode byte + HTTP stream".
  size_t pos = 0;
  auto next_byte = [&]() -> uint8_t { return pos < size ? data[pos++] : 0; };
  uint8_t mode = next_byte();
  http::Limits limits;
  switch (mode & 3) {
    case 0:
      break;
    case 1:  // small: the 413/414/431 paths within a few hundred bytes
      limits.max_request_line = 64;
      limits.max_header_line = 64;
      limits.max_header_block = 256;
      limits.max_headers = 4;
      limits.max_body = 32;
      limits.max_trailer_block = 32;
      break;
    case 2:  // tiny
      limits.max_request_line = 16;
      limits.max_header_line = 24;
      limits.max_header_block = 64;
      limits.max_headers = 2;
      limits.max_body = 2;
      limits.max_trailer_block = 4;
      break;
    case 3:  // custom
      limits.max_request_line = 1 + next_byte() * 4u;
      limits.max_header_line = 1 + next_byte() * 4u;
      limits.max_header_block = 1 + next_byte() * 16u;
      limits.max_headers = next_byte() % 32u;
      limits.max_body = next_byte() * 4u;
      limits.max_trailer_block = next_byte() * 4u;
      break;
  }
  size_t k = (mode >> 2) & 7;
  std::vector<size_t> pieces;
  for (size_t i = 0; i < k; ++i) pieces.push_back(size_t{next_byte()} + 1);
  if (pieces.empty()) pieces.push_back(1);  // byte by byte
  std::string stream(reinterpret_cast<const char*>(data) + std::min(pos, size),
                     size - std::min(pos, size));
  g_stream = stream;

  // The environ helper on arbitrary bytes, not only on accepted targets.
  {
    std::string path;
    std::string_view query;
    std::string_view head = std::string_view(stream).substr(0, 256);
    if (http::split_target(head, &path, &query) && !query.empty())
      CHECK(query.data() >= head.data() &&
            query.data() + query.size() <= head.data() + head.size());
  }

  std::string whole_reason, cut_reason;
  g_run = "one-piece";
  std::vector<std::string> whole = run(limits, stream, {}, &whole_reason);
  g_run = "in-pieces";
  std::vector<std::string> cut = run(limits, stream, pieces, &cut_reason);
  CHECK_MSG(whole == cut, "traces differ\none piece:\n" + join(whole) + "  (" +
                              whole_reason + ")\nin pieces (" +
                              std::to_string(pieces.size()) +
                              " lengths, first " + std::to_string(pieces[0]) +
                              "):\n" + join(cut) + "  (" + cut_reason + ")");
  // REQUEST_FUZZER_TRACE=1 ./request_fuzzer FILE shows what the server saw.
  static const bool print_trace =
      std::getenv("REQUEST_FUZZER_TRACE") != nullptr;
  if (print_trace)
    std::fprintf(stderr, "%s  (%s)\n", join(whole).c_str(),
                 whole_reason.c_str());
  return 0;
}

// RequestParser: one HTTP/1.x request stream of a server connection.
//
// llhttp (strict mode, no lenient flag) does the tokenising; this class adds
// what llhttp 8.1 accepts but a server must not (see docs/http-checklist.md):
// bare LF or CR in the head, obs-fold, HTTP versions other than 1.0
// and 1.1, Transfer-Encoding on HTTP/1.0, a missing or repeated Host,
// Content-Length or Transfer-Encoding in trailers, chunk sizes of more than
// 16 digits, targets that do not fit the method; and the size limits (request
// line 414, header line / block / count 431, body 413).
//
// Pure C++, no Python: the server and the fuzz harness drive it alike.
//
// Use: feed() bytes until it returns kHead; read the head; then feed() body
// bytes (only when the application asks for them) until kMessageEnd; then
// next_message() and feed() the rest. Bytes a call did not consume (after
// kHead or kMessageEnd) must be fed again, from the first unconsumed byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "llhttp.h"

namespace ptsevent::http {

struct Limits {
  size_t max_request_line = 8190;   // method + target + version: else 414
  size_t max_header_line = 8190;    // one field name + value: else 431
  size_t max_header_block = 65536;  // the whole head: else 431
  size_t max_headers = 100;         // number of fields: else 431
  uint64_t max_body = 1ull << 30;   // decoded body bytes: else 413
  size_t max_trailer_block = 8192;  // trailer fields in total: else 431
};

struct HeaderField {
  uint32_t name_off, name_len, value_off, value_len;  // into head_bytes()
};

class RequestParser {
 public:
  enum class Status {
    kNeedMore,    // everything consumed; feed more
    kHead,        // a complete, valid request head is available
    kMessageEnd,  // the body (and trailers) ended
    kError,       // error_status() / error_reason(); the stream is dead
  };

  explicit RequestParser(const Limits* limits);
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Parses data[0, len). *consumed = bytes used. In the body phase the
  // decoded body is appended to *body (may be null only if none expected).
  Status feed(const char* data, size_t len, size_t* consumed,
              std::string* body = nullptr);

  // After kMessageEnd: prepares for the next request on the stream.
  void next_message();
  // Frees the buffers of the previous head (an idle connection keeps none).
  void release() noexcept;

  // Whether the current request has started: any byte of it seen, the
  // empty lines a client may send before a request line included (so that
  // they run the header timeout, not the idle one).
  bool started() const noexcept { return started_; }
  // Whether its request line has started (more than empty lines seen).
  bool request_line_started() const noexcept { return line_started_; }

  // Empty lines ignored before a request line (RFC 9112 section 2.2 asks
  // for at least one): more are a 400.
  static constexpr size_t kMaxEmptyLines = 4;
  bool in_body() const noexcept { return phase_ == Phase::kBody; }

  // The head, valid from kHead until next_message()/release().
  std::string_view method() const { return view(method_off_, method_len_); }
  std::string_view target() const { return view(target_off_, target_len_); }
  int version_major() const noexcept { return major_; }
  int version_minor() const noexcept { return minor_; }
  const std::vector<HeaderField>& headers() const noexcept { return fields_; }
  std::string_view field_name(const HeaderField& f) const {
    return view(f.name_off, f.name_len);
  }
  std::string_view field_value(const HeaderField& f) const {
    return view(f.value_off, f.value_len);
  }
  bool keep_alive() const noexcept { return keep_alive_; }
  bool chunked() const noexcept { return chunked_; }
  // -1 without Content-Length (chunked, or no body at all).
  int64_t content_length() const noexcept { return content_length_; }
  bool has_body() const noexcept { return chunked_ || content_length_ > 0; }
  bool expect_continue() const noexcept { return expect_continue_; }
  bool body_done() const noexcept { return phase_ == Phase::kDone; }
  uint64_t body_bytes() const noexcept { return body_bytes_; }

  int error_status() const noexcept { return error_status_; }
  const char* error_reason() const noexcept { return error_reason_; }

 private:
  enum class Phase : uint8_t { kHead, kBody, kDone, kError };
  enum class Span : uint8_t { kNone, kMethod, kUrl, kVersion, kField, kValue };

  std::string_view view(uint32_t off, uint32_t len) const {
    return std::string_view(head_.data() + off, len);
  }
  int fail(int status, const char* reason) noexcept;
  void fail_llhttp(llhttp_errno_t err) noexcept;
  int append_span(Span span, const char* at, size_t len);
  int scan_head_bytes(const char* data, size_t len);
  int scan_chunk_size(const char* data, size_t len, size_t* scanned);
  void note_request_line(const char* p, size_t n);
  int check_line_length();
  // The limits count method + target + version digits, or name + value; a
  // raw line adds this much syntax (single spaces and "HTTP/"; the colon);
  // optional whitespace counts against the limit.
  static constexpr size_t kRequestLineSyntax = 7;
  static constexpr size_t kFieldLineSyntax = 1;  // the colon
  int finish_field() noexcept;
  int check_head();

  static int on_message_begin(llhttp_t* p);
  static int on_method(llhttp_t* p, const char* at, size_t len);
  static int on_url(llhttp_t* p, const char* at, size_t len);
  static int on_version(llhttp_t* p, const char* at, size_t len);
  static int on_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_header_value_complete(llhttp_t* p);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, size_t len);
  static int on_chunk_header(llhttp_t* p);
  static int on_chunk_complete(llhttp_t* p);
  static int on_message_complete(llhttp_t* p);
  static const llhttp_settings_t* settings();

  llhttp_t parser_;
  const Limits* limits_;
  std::string head_;  // method, target, version, names, values, back to back
  std::string trailer_name_;
  std::vector<HeaderField> fields_;
  std::string* body_ = nullptr;  // the current feed()'s sink

  uint32_t method_off_ = 0, method_len_ = 0;
  uint32_t target_off_ = 0, target_len_ = 0;
  size_t request_line_ = 0;  // bytes of the request line so far
  size_t head_bytes_ = 0;    // raw bytes of the head so far
  size_t trailer_bytes_ = 0;
  size_t host_count_ = 0;
  int64_t content_length_ = -1;
  uint64_t body_bytes_ = 0;
  size_t chunk_digits_ = 0;
  int major_ = 0, minor_ = 0;
  int error_status_ = 0;
  const char* error_reason_ = "";

  Phase phase_ = Phase::kHead;
  Span span_ = Span::kNone;
  bool started_ = false;
  bool keep_alive_ = false;
  bool chunked_ = false;
  bool expect_continue_ = false;
  bool in_trailers_ = false;
  bool at_chunk_size_ = false;  // the next bytes start a chunk-size line
  bool prev_cr_ = false;        // the last head byte scanned was CR
  bool after_lf_ = false;       // ... ended a line
  bool line_started_ = false;   // the request line's first byte was seen
  bool request_line_done_ = false;
  uint8_t rl_tail_len_ = 0;
  size_t line_len_ = 0;     // raw bytes of the current head line
  size_t field_lines_ = 0;  // header (or trailer) lines so far
  size_t empty_lines_ = 0;  // before the request line
  char rl_tail_[8] = {};    // the last bytes of the request line
  bool pause_head_ = false;
  bool pause_end_ = false;
  bool pause_chunk_ = false;
  bool pause_trailers_ = false;
};

// The authority of an absolute-form target ("http://host:port/p" ->
// "host:port"), or empty for any other form.
std::string_view target_authority(std::string_view target);

// The reason phrase of a status code the server sends itself.
const char* reason_phrase(int status) noexcept;

}  // namespace ptsevent::http

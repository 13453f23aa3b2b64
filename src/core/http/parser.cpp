#include "http/parser.h"

#include <array>
#include <cstring>

namespace ptsevent::http {

namespace {

RequestParser* self_of(llhttp_t* p) {
  return static_cast<RequestParser*>(p->data);
}

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
      (c >= 'A' && c <= 'Z'))
    return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

bool is_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
    v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
    v.remove_suffix(1);
  return v;
}

// A comma-separated list of tokens (a transfer-coding list we might
// recognise but do not implement), as opposed to garbage.
bool is_token_list(std::string_view v) {
  bool any = false;
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    if (comma == std::string_view::npos) comma = v.size();
    std::string_view item = trim(v.substr(start, comma - start));
    if (item.empty()) return false;
    for (unsigned char c : item)
      if (!is_tchar(c)) return false;
    any = true;
    start = comma + 1;
  }
  return any;
}

// uri-host [ ":" port ] (RFC 9112 section 3.2, RFC 3986 section 3.2.2):
// an IP-literal in brackets, or reg-name / IPv4address characters
// (unreserved, sub-delims, percent-escapes), then an optional port of
// digits. Empty is valid (a Host for a target without an authority). No
// userinfo, path, space or other delimiter: a value an application or a
// proxy behind it could read as a different host.
bool valid_host(std::string_view v) {
  auto name_char = [](unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') ||
           (c != 0 && std::strchr("-._~!$&'()*+,;=", c) != nullptr);
  };
  size_t i = 0;
  if (!v.empty() && v[0] == '[') {
    size_t close = v.find(']');
    if (close == std::string_view::npos || close < 2) return false;
    for (i = 1; i < close; ++i)
      if (!name_char(static_cast<unsigned char>(v[i])) && v[i] != ':')
        return false;
    i = close + 1;
  } else {
    while (i < v.size() && v[i] != ':') {
      unsigned char c = v[i];
      if (c == '%') {
        if (i + 2 >= v.size() || !is_hex(v[i + 1]) || !is_hex(v[i + 2]))
          return false;
        i += 3;
        continue;
      }
      if (!name_char(c)) return false;
      ++i;
    }
  }
  if (i == v.size()) return true;
  if (v[i] != ':') return false;
  for (++i; i < v.size(); ++i)
    if (v[i] < '0' || v[i] > '9') return false;
  return true;
}

}  // namespace

std::string_view target_authority(std::string_view target) {
  size_t scheme = target.find("://");
  if (target.empty() || target[0] == '/' || scheme == std::string_view::npos)
    return std::string_view();
  std::string_view rest = target.substr(scheme + 3);
  return rest.substr(0, rest.find_first_of("/?#"));
}

const llhttp_settings_t* RequestParser::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_message_begin = on_message_begin;
    st.on_method = on_method;
    st.on_url = on_url;
    st.on_version = on_version;
    st.on_header_field = on_header_field;
    st.on_header_value = on_header_value;
    st.on_header_value_complete = on_header_value_complete;
    st.on_headers_complete = on_headers_complete;
    st.on_body = on_body;
    st.on_chunk_header = on_chunk_header;
    st.on_chunk_complete = on_chunk_complete;
    st.on_message_complete = on_message_complete;
    return st;
  }();
  return &s;
}

RequestParser::RequestParser(const Limits* limits) : limits_(limits) {
  llhttp_init(&parser_, HTTP_REQUEST, settings());
  parser_.data = this;
}

void RequestParser::release() noexcept {
  std::string().swap(head_);
  std::string().swap(trailer_name_);
  std::vector<HeaderField>().swap(fields_);
}

void RequestParser::next_message() {
  head_.clear();
  fields_.clear();
  method_off_ = method_len_ = target_off_ = target_len_ = 0;
  request_line_ = head_bytes_ = trailer_bytes_ = host_count_ = 0;
  content_length_ = -1;
  body_bytes_ = 0;
  chunk_digits_ = 0;
  major_ = minor_ = 0;
  span_ = Span::kNone;
  started_ = keep_alive_ = chunked_ = expect_continue_ = false;
  in_trailers_ = at_chunk_size_ = prev_cr_ = after_lf_ = false;
  line_started_ = request_line_done_ = false;
  rl_tail_len_ = 0;
  line_len_ = 0;
  field_lines_ = 0;
  empty_lines_ = 0;
  if (phase_ == Phase::kError) return;
  phase_ = Phase::kHead;
  if (llhttp_get_errno(&parser_) == HPE_PAUSED) llhttp_resume(&parser_);
}

int RequestParser::fail(int status, const char* reason) noexcept {
  if (error_status_ == 0) {
    error_status_ = status;
    error_reason_ = reason;
  }
  phase_ = Phase::kError;
  return HPE_USER;
}

constexpr auto kHeadSpecial = [] {
  std::array<bool, 256> t{};
  t['\r'] = t['\n'] = t['\0'] = true;
  return t;
}();

// The head must end every line with CRLF and contain no NUL; llhttp 8.1
// takes a bare LF as a line end. Called on the bytes llhttp consumed as
// head, so body bytes are never scanned.
int RequestParser::scan_head_bytes(const char* data, size_t len) {
  // The header-block limit counts byte by byte, in stream order with the
  // other checks, so that the verdict does not depend on how the bytes
  // were split into reads.
  size_t limit =
      in_trailers_ ? limits_->max_trailer_block : limits_->max_header_block;
  size_t& used = in_trailers_ ? trailer_bytes_ : head_bytes_;
  size_t room = limit > used ? limit - used : 0;
  size_t n = len < room ? len : room;
  bool ended = false;
  for (size_t i = 0; i < n; ++i) {
    if (!prev_cr_ && !after_lf_ && line_started_) {
      // Fast path: skip the bytes that need no attention.
      size_t j = i;
      while (j < n && !kHeadSpecial[static_cast<unsigned char>(data[j])]) ++j;
      if (!request_line_done_) note_request_line(data + i, j - i);
      line_len_ += j - i;
      if (check_line_length() != 0) return -1;
      i = j;
      if (i == n) break;
    }
    char c = data[i];
    if (prev_cr_) {
      if (c != '\n')
        return fail(400, "bare CR in the request head or trailers");
      prev_cr_ = false;
      after_lf_ = true;
      bool empty = line_len_ == 0;
      line_len_ = 0;
      if (!line_started_ && ++empty_lines_ > kMaxEmptyLines)
        return fail(400, "too many empty lines before the request line");
      if (line_started_ && !request_line_done_) {
        request_line_done_ = true;
        // llhttp 8.1 also takes RTSP/x.y: only HTTP/1.x is HTTP here.
        if (rl_tail_len_ < 8 ||
            std::memcmp(rl_tail_ + rl_tail_len_ - 8, "HTTP/1.", 7) != 0)
          return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
      } else if (empty && request_line_done_) {
        // The empty line that ends the head (or the trailers): what
        // follows is body or the next request, never head bytes. When
        // llhttp stops on an error of the head (a 413 for its
        // Content-Length), the byte after it is not judged as head.
        n = i + 1;
        ended = true;
        break;
      }
      continue;
    }
    if (after_lf_) {
      after_lf_ = false;
      if (c == ' ' || c == '\t')
        return fail(400, "obs-fold or whitespace before a header field");
      if (c != '\r' && request_line_done_ &&
          ++field_lines_ > limits_->max_headers)
        return fail(431, in_trailers_ ? "too many trailer fields"
                                      : "too many header fields");
    }
    if (c == '\r') {
      prev_cr_ = true;
    } else if (c == '\n') {
      return fail(400, "bare LF in the request head or trailers");
    } else if (c == '\0') {
      return fail(400, "NUL in request head");
    } else {
      if (!line_started_) line_started_ = true;
      if (!request_line_done_) note_request_line(&c, 1);
      ++line_len_;
      if (check_line_length() != 0) return -1;
    }
  }
  used += n;
  if (n < len && !ended)
    return fail(431, in_trailers_ ? "trailer block too large"
                                  : "request header block too large");
  return 0;
}

// The raw length of the current line (without its CRLF) against the request
// line or header line limit, byte by byte in stream order: a line that
// never ends is refused as soon as it is too long.
int RequestParser::check_line_length() {
  if (!request_line_done_) {
    if (line_len_ > limits_->max_request_line + kRequestLineSyntax)
      return fail(414, "request line too long");
  } else if (line_len_ > limits_->max_header_line + kFieldLineSyntax) {
    return fail(431, "request header line too long");
  }
  return 0;
}

void RequestParser::note_request_line(const char* p, size_t n) {
  // Keeps the last 8 bytes of the request line (its version).
  if (n >= sizeof rl_tail_) {
    std::memcpy(rl_tail_, p + n - sizeof rl_tail_, sizeof rl_tail_);
    rl_tail_len_ = sizeof rl_tail_;
    return;
  }
  size_t keep =
      rl_tail_len_ + n > sizeof rl_tail_ ? sizeof rl_tail_ - n : rl_tail_len_;
  std::memmove(rl_tail_, rl_tail_ + rl_tail_len_ - keep, keep);
  std::memcpy(rl_tail_ + keep, p, n);
  rl_tail_len_ = keep + n;
}

// llhttp reads chunk sizes of any length as long as they fit in 64 bits
// (leading zeros): more than 16 hex digits is refused here.
int RequestParser::scan_chunk_size(const char* data, size_t len,
                                   size_t* scanned) {
  size_t i = 0;
  while (i < len && is_hex(static_cast<unsigned char>(data[i]))) {
    if (++chunk_digits_ > 16)
      return fail(400, "chunk size has more than 16 digits");
    ++i;
  }
  if (i < len) {  // the size ended
    at_chunk_size_ = false;
    chunk_digits_ = 0;
  }
  *scanned = i;
  return 0;
}

int RequestParser::append_span(Span span, const char* at, size_t len) {
  // The size limits are the byte scanner's (scan_head_bytes), in stream
  // order: llhttp reports spans at the end of each buffer, so a check here
  // would depend on how the bytes were split into reads.
  if (head_.size() + len > UINT32_MAX)
    return fail(431, "request head too large");
  uint32_t off = static_cast<uint32_t>(head_.size());
  head_.append(at, len);
  switch (span) {
    case Span::kMethod:
      if (span_ != Span::kMethod) method_off_ = off;
      method_len_ += static_cast<uint32_t>(len);
      break;
    case Span::kUrl:
      if (span_ != Span::kUrl) target_off_ = off;
      target_len_ += static_cast<uint32_t>(len);
      break;
    case Span::kVersion:
      break;
    case Span::kField:
      if (span_ != Span::kField) fields_.push_back(HeaderField{off, 0, off, 0});
      fields_.back().name_len += static_cast<uint32_t>(len);
      break;
    case Span::kValue: {
      HeaderField& f = fields_.back();
      if (span_ != Span::kValue) f.value_off = off;
      f.value_len += static_cast<uint32_t>(len);
      // obs-fold reaches us as CR/LF inside a value.
      if (std::memchr(at, '\r', len) || std::memchr(at, '\n', len))
        return fail(400, "obs-fold or line break in a header value");
      break;
    }
    case Span::kNone:
      break;
  }
  span_ = span;
  return 0;
}

int RequestParser::finish_field() noexcept {
  if (fields_.empty()) return 0;
  HeaderField& f = fields_.back();
  // Only spaces and tabs are trimmed (llhttp strips the leading ones).
  while (f.value_len > 0) {
    char c = head_[f.value_off + f.value_len - 1];
    if (c != ' ' && c != '\t') break;
    --f.value_len;
  }
  std::string_view name = field_name(f);
  if (name.empty()) return fail(400, "empty header field name");
  // Control characters in values: llhttp's strict mode refuses them.
  if (iequals(name, "host")) {
    ++host_count_;
    if (!valid_host(field_value(f))) return fail(400, "invalid Host");
  }
  return 0;
}

int RequestParser::on_message_begin(llhttp_t* p) {
  self_of(p)->started_ = true;
  return 0;
}

int RequestParser::on_method(llhttp_t* p, const char* at, size_t len) {
  return self_of(p)->append_span(Span::kMethod, at, len);
}

int RequestParser::on_url(llhttp_t* p, const char* at, size_t len) {
  return self_of(p)->append_span(Span::kUrl, at, len);
}

int RequestParser::on_version(llhttp_t* p, const char* at, size_t len) {
  return self_of(p)->append_span(Span::kVersion, at, len);
}

int RequestParser::on_header_field(llhttp_t* p, const char* at, size_t len) {
  RequestParser* self = self_of(p);
  if (self->phase_ != Phase::kHead) {  // a trailer field
    if (self->span_ != Span::kField) self->trailer_name_.clear();
    self->trailer_name_.append(at, len);
    self->span_ = Span::kField;
    return 0;
  }
  return self->append_span(Span::kField, at, len);
}

int RequestParser::on_header_value(llhttp_t* p, const char* at, size_t len) {
  RequestParser* self = self_of(p);
  if (self->phase_ != Phase::kHead) {
    if (std::memchr(at, '\r', len) || std::memchr(at, '\n', len))
      return self->fail(400, "line break in a trailer value");
    self->span_ = Span::kValue;
    return 0;
  }
  return self->append_span(Span::kValue, at, len);
}

int RequestParser::on_header_value_complete(llhttp_t* p) {
  RequestParser* self = self_of(p);
  if (self->phase_ != Phase::kHead) {
    // Trailers are checked, then dropped: never merged into the environ.
    std::string_view name = self->trailer_name_;
    if (name.empty() || self->span_ == Span::kNone)
      return self->fail(400, "empty trailer field name");
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
        iequals(name, "host"))
      return self->fail(400, "forbidden field in trailers");
    self->span_ = Span::kNone;
    return 0;
  }
  self->span_ = Span::kNone;
  return self->finish_field();
}

int RequestParser::check_head() {
  if (major_ != 1 || (minor_ != 0 && minor_ != 1))
    return fail(505, "HTTP version not supported");
  std::string_view method = this->method();
  std::string_view target = this->target();
  if (method == "CONNECT") return fail(501, "CONNECT is not supported");
  if (target.empty()) return fail(400, "empty request target");
  if (target == "*") {
    if (method != "OPTIONS")
      return fail(400, "asterisk-form target needs OPTIONS");
  } else if (target[0] != '/') {
    // absolute-form only: scheme "://" authority
    size_t colon = target.find("://");
    if (colon == std::string_view::npos || colon == 0)
      return fail(400, "request target is not origin-form or absolute-form");
    for (size_t i = 0; i < colon; ++i) {
      unsigned char c = target[i];
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (i > 0 &&
                 ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
      if (!ok) return fail(400, "bad scheme in absolute-form target");
    }
    // The authority replaces Host (RFC 9112 section 3.2.2): it is checked
    // as one, and must name a host.
    std::string_view authority = target_authority(target);
    if (authority.empty() || authority[0] == ':' || !valid_host(authority))
      return fail(400, "invalid authority in absolute-form target");
  }
  if (minor_ == 1 && host_count_ != 1)
    return fail(400, host_count_ ? "more than one Host field"
                                 : "HTTP/1.1 request without Host");
  if (host_count_ > 1) return fail(400, "more than one Host field");

  size_t te_count = 0, cl_count = 0;
  std::string_view te, cl;
  for (const HeaderField& f : fields_) {
    std::string_view name = field_name(f);
    if (iequals(name, "transfer-encoding")) {
      ++te_count;
      te = field_value(f);
    } else if (iequals(name, "content-length")) {
      ++cl_count;
      cl = field_value(f);
    } else if (iequals(name, "expect")) {
      std::string_view v = field_value(f);
      if (!iequals(v, "100-continue"))
        return fail(417, "unsupported expectation");
      if (minor_ == 1) expect_continue_ = true;
    }
  }
  if (te_count) {
    if (minor_ == 0) return fail(400, "Transfer-Encoding on HTTP/1.0");
    if (cl_count) return fail(400, "both Content-Length and Transfer-Encoding");
    if (te_count > 1) return fail(400, "more than one Transfer-Encoding field");
    if (!iequals(te, "chunked")) {
      if (is_token_list(te))
        return fail(501, "transfer coding not implemented");
      return fail(400, "malformed Transfer-Encoding");
    }
    if (!(parser_.flags & F_CHUNKED))
      return fail(400, "malformed Transfer-Encoding");
    chunked_ = true;
  }
  if (cl_count) {
    if (cl_count > 1) return fail(400, "more than one Content-Length field");
    if (cl.empty() || cl.size() > 18)
      return fail(400, "malformed Content-Length");
    int64_t n = 0;
    for (unsigned char c : cl) {
      if (c < '0' || c > '9') return fail(400, "malformed Content-Length");
      n = n * 10 + (c - '0');
    }
    content_length_ = n;
    if (static_cast<uint64_t>(n) > limits_->max_body)
      return fail(413, "request body too large");
  }
  // Keep-alive from the Connection tokens (llhttp 8.1 misses "close\t",
  // and on HTTP/1.0 lets keep-alive win over close).
  bool close = false, keep = false;
  for (const HeaderField& f : fields_) {
    if (!iequals(field_name(f), "connection")) continue;
    std::string_view v = field_value(f);
    size_t start = 0;
    while (start <= v.size()) {
      size_t comma = v.find(',', start);
      if (comma == std::string_view::npos) comma = v.size();
      std::string_view token = trim(v.substr(start, comma - start));
      if (iequals(token, "close"))
        close = true;
      else if (iequals(token, "keep-alive"))
        keep = true;
      start = comma + 1;
    }
  }
  keep_alive_ = !close && (minor_ == 1 || keep) && !parser_.upgrade;
  at_chunk_size_ = chunked_;
  return 0;
}

int RequestParser::on_headers_complete(llhttp_t* p) {
  RequestParser* self = self_of(p);
  self->major_ = p->http_major;
  self->minor_ = p->http_minor;
  if (self->check_head() != 0) return HPE_USER;
  self->pause_head_ = true;
  if (!self->has_body()) {
    // Let llhttp reach on_message_complete in this call; the head and the
    // end of the message are reported together.
    self->phase_ = Phase::kBody;
    return 0;
  }
  self->phase_ = Phase::kBody;
  return HPE_PAUSED;
}

int RequestParser::on_body(llhttp_t* p, const char* at, size_t len) {
  RequestParser* self = self_of(p);
  self->body_bytes_ += len;
  if (self->body_bytes_ > self->limits_->max_body)
    return self->fail(413, "request body too large");
  if (self->body_) self->body_->append(at, len);
  return 0;
}

int RequestParser::on_chunk_header(llhttp_t* p) {
  RequestParser* self = self_of(p);
  if (p->content_length == 0) {
    // The last chunk: pause so that feed() scans the trailer section (and
    // its final CRLF) with the head's strict line-end rules.
    self->in_trailers_ = true;
    self->pause_trailers_ = true;
    return HPE_PAUSED;
  }
  return 0;
}

int RequestParser::on_chunk_complete(llhttp_t* p) {
  RequestParser* self = self_of(p);
  if (self->in_trailers_) return 0;
  self->pause_chunk_ = true;
  return HPE_PAUSED;  // so that feed() can scan the next chunk-size line
}

int RequestParser::on_message_complete(llhttp_t* p) {
  RequestParser* self = self_of(p);
  self->pause_end_ = true;
  self->at_chunk_size_ = false;
  return HPE_PAUSED;
}

// An error llhttp found (none of our checks did first): its status.
void RequestParser::fail_llhttp(llhttp_errno_t err) noexcept {
  switch (err) {
    case HPE_INVALID_VERSION:
      fail(505, "HTTP version not supported");
      break;
    case HPE_INVALID_METHOD:
      fail(400, "invalid method");
      break;
    case HPE_INVALID_URL:
      fail(400, "invalid request target");
      break;
    case HPE_INVALID_CONTENT_LENGTH:
    case HPE_UNEXPECTED_CONTENT_LENGTH:
      fail(400, "invalid Content-Length");
      break;
    case HPE_INVALID_TRANSFER_ENCODING:
      fail(400, "invalid Transfer-Encoding");
      break;
    case HPE_INVALID_CHUNK_SIZE:
      fail(400, "invalid chunk size");
      break;
    default:
      fail(400, llhttp_errno_name(err));
      break;
  }
}

RequestParser::Status RequestParser::feed(const char* data, size_t len,
                                          size_t* consumed, std::string* body) {
  *consumed = 0;
  if (phase_ == Phase::kError) return Status::kError;
  if (phase_ == Phase::kDone) return Status::kMessageEnd;
  body_ = body;
  if (phase_ == Phase::kHead && len > 0) started_ = true;
  if (phase_ == Phase::kBody && llhttp_get_errno(&parser_) == HPE_PAUSED)
    llhttp_resume(&parser_);
  size_t pos = 0;
  for (;;) {
    if (phase_ == Phase::kBody && at_chunk_size_ && pos < len) {
      size_t scanned = 0;
      if (scan_chunk_size(data + pos, len - pos, &scanned) != 0) {
        body_ = nullptr;
        return Status::kError;
      }
    }
    bool head_phase = phase_ == Phase::kHead;
    bool scan_lines = head_phase || (phase_ == Phase::kBody && in_trailers_);
    pause_head_ = pause_end_ = pause_chunk_ = pause_trailers_ = false;
    llhttp_errno_t err = llhttp_execute(&parser_, data + pos, len - pos);
    size_t used = len - pos;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      used = static_cast<size_t>(llhttp_get_error_pos(&parser_) - (data + pos));
    } else if (err != HPE_OK) {
      used = 0;
      if (error_status_ == 0) {
        const char* pos_err = llhttp_get_error_pos(&parser_);
        if (pos_err) used = static_cast<size_t>(pos_err - (data + pos));
      }
    }
    if (scan_lines) {
      // The bytes of the head llhttp consumed: all of them when it wants
      // more, up to the pause when the head ended, up to and including the
      // byte it (or one of our callbacks) failed on. A violation the scan
      // finds there came first in the stream: it wins over the later one.
      size_t head_used = used;
      if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
        const char* pos_err = llhttp_get_error_pos(&parser_);
        head_used = pos_err ? static_cast<size_t>(pos_err - (data + pos)) + 1
                            : len - pos;
        if (head_used > len - pos) head_used = len - pos;
      }
      int saved_status = error_status_;
      const char* saved_reason = error_reason_;
      error_status_ = 0;
      Phase saved_phase = phase_;
      if (scan_head_bytes(data + pos, head_used) != 0) {
        body_ = nullptr;
        *consumed = pos + used;
        return Status::kError;
      }
      error_status_ = saved_status;
      error_reason_ = saved_reason;
      phase_ = saved_phase;
    }
    pos += used;
    *consumed = pos;
    if (err == HPE_OK) {
      body_ = nullptr;
      return Status::kNeedMore;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      if (pause_end_) {
        phase_ = Phase::kDone;
        body_ = nullptr;
        return head_phase ? Status::kHead : Status::kMessageEnd;
      }
      if (pause_head_) {
        body_ = nullptr;
        return Status::kHead;
      }
      if (pause_trailers_) {
        llhttp_resume(&parser_);
        field_lines_ = 0;
        line_len_ = 0;
        prev_cr_ = false;
        after_lf_ = true;  // a trailer line starting with a space is obs-fold
        if (pos == len) {
          body_ = nullptr;
          return Status::kNeedMore;
        }
        continue;
      }
      if (pause_chunk_) {
        llhttp_resume(&parser_);
        at_chunk_size_ = true;
        chunk_digits_ = 0;
        if (pos == len) {
          body_ = nullptr;
          return Status::kNeedMore;
        }
        continue;
      }
    }
    body_ = nullptr;
    if (error_status_ == 0) fail_llhttp(err);
    phase_ = Phase::kError;
    return Status::kError;
  }
}

const char* reason_phrase(int status) noexcept {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace ptsevent::http

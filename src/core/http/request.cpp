#include "http/request.h"

#include <cstdio>
#include <memory>
#include <string>

#include "http/body.h"
#include "http/environ.h"
#include "http/response.h"
#include "http/server.h"
#include "hub/clock.h"
#include "hub/tasklet.h"
#include "py/errors.h"
#include "py/greenlet_api.h"

namespace ptsevent::http {

using hub::Hub;
using hub::Tasklet;

namespace {

// A logging callback of the server's failed. Ctrl-C that landed in it (the
// interpreter runs signal handlers in whatever Python code runs) or a
// sys.exit() goes to the main tasklet, as from the app; anything else is
// reported.
void callback_failed(PyObject* callback) {
  if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
      PyErr_ExceptionMatches(PyExc_SystemExit)) {
    py::Ref exc = py::fetch_error();
    Hub* hub = Hub::peek();
    if (hub && hub->raise_in_main(exc.get())) return;
    py::raise(exc.get());
  }
  PyErr_WriteUnraisable(callback);
}

void log_error(Server* s, const char* message, PyObject* exc) {
  if (!s->log_error_ || s->log_error_.get() == Py_None) return;
  py::Ref r = py::Ref::steal(PyObject_CallFunction(
      s->log_error_.get(), "sO", message, exc ? exc : Py_None));
  if (!r) callback_failed(s->log_error_.get());
}

void escape_into(std::string* out, std::string_view v) {
  static const char hex[] = "0123456789abcdef";
  for (unsigned char ch : v) {
    if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
      out->append("\\x");
      out->push_back(hex[ch >> 4]);
      out->push_back(hex[ch & 15]);
    } else {
      out->push_back(static_cast<char>(ch));
    }
  }
}

void access_log(Connection* c, Request* req, double started) {
  Server* s = c->server;
  if (!s->access_log_ || s->access_log_.get() == Py_None) return;
  py::Ref addr = py::Ref::steal(remote_addr(c));
  std::string line;
  if (addr) {
    Py_ssize_t n;
    const char* a = PyUnicode_AsUTF8AndSize(addr.get(), &n);
    if (a) line.append(a, static_cast<size_t>(n));
  }
  PyErr_Clear();
  double elapsed = hub::monotonic_seconds() - started;
  line.append(" \"");
  escape_into(&line, req->method);
  line.push_back(' ');
  escape_into(&line, req->target);
  line.append(req->minor ? " HTTP/1.1\" " : " HTTP/1.0\" ");
  line.append(std::to_string(req->status)).push_back(' ');
  line.append(std::to_string(req->sent_body));
  char buf[32];
  snprintf(buf, sizeof buf, " %.6f", elapsed);
  line.append(buf);
  py::Ref text = py::Ref::steal(PyUnicode_DecodeLatin1(
      line.data(), static_cast<Py_ssize_t>(line.size()), nullptr));
  py::Ref r = text ? py::Ref::steal(
                         PyObject_CallOneArg(s->access_log_.get(), text.get()))
                   : py::Ref();
  if (!r) callback_failed(s->access_log_.get());
}

void log_length_mismatch(Connection* c, Request* req) {
  std::string m = "response body does not match its Content-Length: ";
  escape_into(&m, c->parser.method());
  m.push_back(' ');
  escape_into(&m, c->parser.target());
  m.append(" declared Content-Length ")
      .append(std::to_string(req->content_length));
  m.append(", the application gave ").append(std::to_string(req->app_body));
  m.append(" bytes");
  if (req->app_body > req->sent_body)
    m.append(" (")
        .append(std::to_string(req->sent_body))
        .append(" sent, the rest dropped)");
  m.append("; connection closed");
  log_error(c->server, m.c_str(), nullptr);
}

// The request's own state from the parsed head, and the objects the app
// gets. False with an exception when they cannot be made.
bool begin_request(Connection* c, Request* req) {
  Server* s = c->server;
  RequestParser& p = c->parser;
  req->minor = p.version_minor();
  req->keep_alive = p.keep_alive() && !s->stopping_;
  req->is_head = p.method() == "HEAD";
  if (s->access_log_ && s->access_log_.get() != Py_None) {
    req->method.assign(p.method());
    req->target.assign(p.target());
  }
  ++s->requests_;
  req->input = py::Ref::steal(new_input(c, req));
  req->start_response = py::Ref::steal(new_start_response(c, req));
  return req->input && req->start_response;
}

void close_result(PyObject* result) {
  if (PyObject_HasAttr(result, K.close)) {
    py::Ref r = py::Ref::steal(PyObject_CallMethodNoArgs(result, K.close));
    if (!r) PyErr_WriteUnraisable(result);
  }
}

// wsgi.input refused the body (413, 400) and the app answered anyway, often
// with a framework's 500 for the exception: the client gets the status its
// request earned. An app that chose a client error itself keeps its answer.
bool body_error_overrides(Request* req) {
  return req->body_error && !req->headers_sent &&
         !(req->started && req->status >= 400 && req->status < 500);
}

// Calls the app and sends its response. True when it all went through;
// false with *exc (or the pending exception) when it did not.
bool run_app(Connection* c, Request* req, py::Ref* exc) {
  Server* s = c->server;
  py::Ref env = py::Ref::steal(build_environ(c, req));
  if (!env) return false;
  py::Ref result = py::Ref::steal(PyObject_CallFunctionObjArgs(
      s->app_.get(), env.get(), req->start_response.get(), nullptr));
  if (!result) return false;
  if (body_error_overrides(req)) {
    close_result(result.get());
    if (send_simple(c, req, req->body_error, false) < 0) PyErr_Clear();
    return true;
  }
  if (send_result(c, req, result.get()) < 0) *exc = py::fetch_error();
  // The iterable's close() is always called.
  if (PyObject_HasAttr(result.get(), K.close)) {
    py::Ref r =
        py::Ref::steal(PyObject_CallMethodNoArgs(result.get(), K.close));
    if (!r && !*exc)
      *exc = py::fetch_error();
    else if (!r)
      PyErr_WriteUnraisable(result.get());
  }
  return !*exc;
}

// The app (or sending its response) raised `exc`: answer what can still be
// answered, and decide whether the connection goes on.
void fail_request(Connection* c, Request* req, py::Ref* exc) {
  Server* s = c->server;
  bool killed =
      PyErr_GivenExceptionMatches(exc->get(), py::greenlet::exit_exception());
  if (PyErr_GivenExceptionMatches(exc->get(), PyExc_KeyboardInterrupt) ||
      PyErr_GivenExceptionMatches(exc->get(), PyExc_SystemExit)) {
    // Ctrl-C (the interpreter runs signal handlers in whichever tasklet
    // runs Python code) or sys.exit(): the process is asked to stop, the
    // app did nothing wrong. No 500: the connection closes unanswered.
    req->keep_alive = false;
    req->headers_sent = true;
    c->aborted = true;
    req->escape = std::move(*exc);
  } else if (req->client_gone || c->send_failed || c->aborted || killed) {
    req->keep_alive = false;
    req->headers_sent = true;  // nothing more to send
  } else if (!req->headers_sent) {
    int status = req->body_error ? req->body_error : 500;
    if (status == 500)
      log_error(s, "error in the WSGI application", exc->get());
    bool keep = status == 500 && c->parser.keep_alive() && !s->stopping_;
    if (send_simple(c, req, status, keep) < 0) PyErr_Clear();
  } else {
    log_error(s, "error in the WSGI application after the response started",
              exc->get());
    req->keep_alive = false;
    c->aborted = true;  // abort: the response is incomplete
  }
}

// A body that does not match its Content-Length closes the connection
// (the client cannot tell where the body ends, or the bytes over the
// length were dropped): say why, unless an error already ended the
// response.
void check_length(Connection* c, Request* req, bool failed) {
  if (req->content_length >= 0 && !req->no_body && !req->is_head &&
      req->sent_body != static_cast<uint64_t>(req->content_length))
    req->length_mismatch = true;
  if (!req->length_mismatch) return;
  req->keep_alive = false;
  if (!failed && !req->client_gone && !c->send_failed && !c->aborted)
    log_length_mismatch(c, req);
}

void detach(Request* req) {
  if (req->input) detach_input(req->input.get());
  if (req->start_response) detach_start_response(req->start_response.get());
  req->input.reset();
  req->start_response.reset();
}

// Calls the app for the parsed head and writes its response; says whether
// the connection may carry another request.
AppOutcome handle_request(Connection* c, Request* req) {
  double started = hub::monotonic_seconds();
  py::Ref exc;
  bool ok = begin_request(c, req) && run_app(c, req, &exc);
  if (!ok && !exc) exc = py::fetch_error();
  if (exc) fail_request(c, req, &exc);
  check_length(c, req, static_cast<bool>(exc));
  access_log(c, req, started);
  detach(req);
  if (!req->keep_alive) return AppOutcome::kClose;
  // An unread body is drained (bounded) so it is never parsed as a request.
  return drain_unread_body(c, req) ? AppOutcome::kKeepAlive
                                   : AppOutcome::kClose;
}

}  // namespace

// Serves the connection's requests until it has no complete request left,
// then hands it back to the hub as idle.
PyObject* serve_connection(void* conn) {
  Connection* c = static_cast<Connection*>(conn);
  Server* s = c->server;
  py::Ref hold =
      py::Ref::borrow(s->self());  // a closing connection drops its own
  for (;;) {
    if (c->aborted) {  // closed by the server before the app started
      after_app(c, AppOutcome::kClose);
      break;
    }
    AppOutcome outcome;
    py::Ref escape;
    {
      // On the heap: wsgi.input and start_response point to it, and a
      // suspended tasklet's stack does not stay where it was.
      std::unique_ptr<Request> req(new Request());
      req->conn = c;
      outcome = handle_request(c, req.get());
      if (s->stopping_) outcome = AppOutcome::kClose;
      escape = std::move(req->escape);
    }
    if (after_app(c, outcome) == NextRequest::kAgain) continue;
    if (escape) {
      // Out of the tasklet: the hub raises it in the main tasklet.
      py::raise(escape.get());
      return nullptr;
    }
    break;
  }
  Py_RETURN_NONE;
}

}  // namespace ptsevent::http

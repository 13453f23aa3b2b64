// The OpenSSL connection behind a ptsevent.ssl.SSLSocket, for the two
// things the read loop (tls_calls.cpp) does to it directly: read-ahead
// while the peer streams whole records, and asking whether OpenSSL holds
// received bytes the descriptor no longer shows.
//
// The connection belongs to the standard library's _ssl object (an
// _ssl._SSLSocket, alive as long as the Python socket wraps it); it is found
// through that object's layout, for the CPython versions whose layout is
// known, and checked against the descriptor it must read. The functions are
// looked up once in the OpenSSL that _ssl itself is linked with, never
// another copy. When anything does not match, ssl_of() returns null and the
// callers keep to the _ssl object's methods (one read per record header and
// one per record body, as the standard library reads).
#pragma once

#include <Python.h>

namespace ptsevent::io::tls {

// OpenSSL's SSL*, opaque here.
struct Ssl;

// sslobj's connection when sslobj is an _ssl._SSLSocket reading descriptor
// fd, else null (no error set).
Ssl* ssl_of(PyObject* sslobj, int fd) noexcept;

// Read-ahead on (one read() takes what has arrived, up to OpenSSL's read
// buffer: a whole record and the start of the next) or off (the default:
// OpenSSL reads a record's header, then exactly its body). Not turned on while
// the connection shuts down: clear text sent after close_notify must stay in
// the kernel for unwrap().
void set_read_ahead(Ssl* ssl, bool on) noexcept;

// Whether OpenSSL holds bytes received and not yet returned: decrypted
// ones, or whole or partial records read ahead.
bool has_pending(Ssl* ssl) noexcept;

}  // namespace ptsevent::io::tls

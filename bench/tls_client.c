/* TLS load generator for bench/tls.py (OpenSSL, one thread, epoll).
 *
 * Offers exactly one TLS 1.3 cipher suite and one key-exchange group, so
 * every server negotiates the same ones whatever its own defaults; the
 * negotiated suite is reported and checked by the driver. Certificates are
 * not verified (the load is the server's; the CertificateVerify signature is
 * still checked by OpenSSL as part of the handshake).
 *
 * --mode echo: N connections, each handshaken once before the window;
 *   then each sends a message of --size bytes, reads the whole echo back,
 *   checks it and sends the next (one message in flight per connection).
 * --mode handshake: N connections at a time, each in a loop: TCP connect,
 *   TLS handshake (with --resume: offering the session of the previous
 *   connection of the same slot), one byte sent and echoed (so the server
 *   has finished and its session tickets have been read), close_notify,
 *   then a reset (SO_LINGER 0: thousands of closes per second would
 *   otherwise fill the ephemeral port range with TIME_WAIT).
 *
 * Messages (or handshakes) completed during a window after a warm-up are
 * counted; the client's CPU (getrusage) and the server's (/proc/<pid>/stat)
 * are sampled at the start and the end of the window. One JSON object on
 * stdout. Every wait is bounded: 5 s without progress is an error, and
 * alarm() ends the process after warm-up + duration + 30 s.
 *
 *   tls_client --port P --mode echo|handshake [--resume] --conns N
 *              [--size BYTES] [--warmup S] [--duration S] [--cpu C]
 *              [--server-pid PID] [--server-cpu C]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define SCRATCH (256 * 1024)
#define STALL_SECONDS 5.0
#define SUITE "TLS_AES_128_GCM_SHA256"
#define GROUP "X25519"

enum state { CONNECTING, HANDSHAKE, SENDING, RECEIVING };

struct conn {
    int fd;
    SSL *ssl;
    SSL_SESSION *session; /* of the slot's previous connection (--resume) */
    enum state st;
    uint32_t events;      /* registered epoll events */
    size_t sent, rcvd;
    uint64_t done, done_at_start;
};

static SSL_CTX *ctx;
static struct sockaddr_in sa;
static unsigned char *msg, *scratch;
static size_t size;
static int ep, handshake_mode, resume;
static uint64_t total, resumed, handshakes;
static double last_progress;
static char errbuf[512];
static char suite[64] = "", version[32] = "";

static void fail(const char *what) {
    /* JSON-safe: no quotes or backslashes in the message */
    char clean[512];
    size_t j = 0;
    for (size_t i = 0; what[i] && j < sizeof clean - 1; i++)
        clean[j++] = (what[i] == '"' || what[i] == '\\') ? '\'' : what[i];
    clean[j] = 0;
    printf("{\"status\": \"error\", \"error\": \"%s\"}\n", clean);
    fflush(stdout);
    exit(1);
}

static int want(struct conn *c, uint32_t events) {
    if (c->events == events) return 0;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    c->events = events;
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int ssl_failed(struct conn *c, int r, const char *what) {
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) return want(c, EPOLLIN) < 0 ? -1 : 1;
    if (e == SSL_ERROR_WANT_WRITE) return want(c, EPOLLOUT) < 0 ? -1 : 1;
    unsigned long code = ERR_get_error();
    char reason[256] = "";
    if (code) ERR_error_string_n(code, reason, sizeof reason);
    snprintf(errbuf, sizeof errbuf, "%s: SSL error %d %s errno %s", what, e, reason,
             e == SSL_ERROR_SYSCALL ? strerror(errno) : "-");
    return -1;
}

/* A new TCP connection for slot c, connecting in the background. */
static int start(struct conn *c) {
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        snprintf(errbuf, sizeof errbuf, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (handshake_mode) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        snprintf(errbuf, sizeof errbuf, "connect: %s", strerror(errno));
        return -1;
    }
    c->st = CONNECTING;
    c->events = EPOLLOUT;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        snprintf(errbuf, sizeof errbuf, "epoll_ctl: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void finish_connection(struct conn *c) {
    if (resume) {
        SSL_SESSION *s = SSL_get1_session(c->ssl);
        if (s && SSL_SESSION_is_resumable(s)) {
            if (c->session) SSL_SESSION_free(c->session);
            c->session = s;
        } else if (s) {
            SSL_SESSION_free(s);
        }
    }
    SSL_shutdown(c->ssl); /* sends close_notify; the reply is not awaited */
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->fd = -1;
}

/* Advance connection c as far as it can go; 0, or -1 with errbuf set. */
static int step(struct conn *c, double t) {
    for (;;) {
        int r;
        switch (c->st) {
        case CONNECTING: {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err == EINPROGRESS) return 0;
            if (err) {
                snprintf(errbuf, sizeof errbuf, "connect: %s", strerror(err));
                return -1;
            }
            c->ssl = SSL_new(ctx);
            if (!c->ssl) fail("SSL_new");
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_connect_state(c->ssl);
            if (resume && c->session) SSL_set_session(c->ssl, c->session);
            c->st = HANDSHAKE;
            break;
        }
        case HANDSHAKE:
            r = SSL_do_handshake(c->ssl);
            if (r != 1) return ssl_failed(c, r, "handshake") < 0 ? -1 : 0;
            if (!suite[0]) {
                snprintf(suite, sizeof suite, "%s", SSL_get_cipher_name(c->ssl));
                snprintf(version, sizeof version, "%s", SSL_get_version(c->ssl));
            }
            handshakes++;
            if (SSL_session_reused(c->ssl)) resumed++;
            c->sent = c->rcvd = 0;
            c->st = SENDING;
            break;
        case SENDING:
            while (c->sent < size) {
                r = SSL_write(c->ssl, msg + c->sent, (int)(size - c->sent));
                if (r <= 0) return ssl_failed(c, r, "write") < 0 ? -1 : 0;
                c->sent += (size_t)r;
            }
            c->st = RECEIVING;
            if (want(c, EPOLLIN) < 0) return -1;
            break;
        case RECEIVING:
            while (c->rcvd < size) {
                size_t n = size - c->rcvd;
                if (n > SCRATCH) n = SCRATCH;
                r = SSL_read(c->ssl, scratch, (int)n);
                if (r <= 0) return ssl_failed(c, r, "read") < 0 ? -1 : 0;
                if (scratch[0] != msg[c->rcvd] || memcmp(scratch + r - 1, msg + c->rcvd + r - 1, 1)) {
                    snprintf(errbuf, sizeof errbuf,
                             "echo does not match what was sent at offset %zu", c->rcvd);
                    return -1;
                }
                c->rcvd += (size_t)r;
            }
            c->done++;
            total++;
            last_progress = t;
            if (handshake_mode) {
                finish_connection(c);
                if (start(c) < 0) return -1;
                return 0;
            }
            c->sent = c->rcvd = 0;
            c->st = SENDING;
            break;
        }
    }
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *mode = "echo";
    int port = 0, nconns = 10, cpu = -1, server_cpu = -1;
    long server_pid = 0;
    double warmup = 0.5, duration = 3.0;
    size = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--resume")) { resume = 1; continue; }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) fail("missing value for an option");
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--mode")) mode = v;
        else if (!strcmp(a, "--conns")) nconns = atoi(v);
        else if (!strcmp(a, "--size")) size = (size_t)atol(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--cpu")) cpu = atoi(v);
        else if (!strcmp(a, "--server-pid")) server_pid = atol(v);
        else if (!strcmp(a, "--server-cpu")) server_cpu = atoi(v);
        else fail("unknown option");
        i++;
    }
    handshake_mode = !strcmp(mode, "handshake");
    if (handshake_mode) size = 1;
    else if (strcmp(mode, "echo")) fail("--mode is echo or handshake");
    if (port <= 0 || nconns <= 0 || size == 0 || duration <= 0 || warmup < 0)
        fail("bad arguments");
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)(warmup + duration + 30));

    int pinned = pin_cpu(cpu);

    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) fail("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    if (SSL_CTX_set_ciphersuites(ctx, SUITE) != 1) fail("SSL_CTX_set_ciphersuites");
    if (SSL_CTX_set1_groups_list(ctx, GROUP) != 1) fail("SSL_CTX_set1_groups_list");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

    msg = malloc(size);
    scratch = malloc(SCRATCH);
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!msg || !scratch || !conns) fail("out of memory");
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        msg[i] = (unsigned char)('a' + x % 26);
    }
    msg[size - 1] = '\n';

    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) fail("bad host");
    ep = epoll_create1(0);
    if (ep < 0) fail("epoll_create1");
    double t0 = now();
    last_progress = t0;
    for (int i = 0; i < nconns; i++)
        if (start(&conns[i]) < 0) fail(errbuf);
    struct epoll_event evs[512];

    if (!handshake_mode) {
        /* Handshake every connection, outside the timed window: stop each
         * one at SENDING until all are ready. */
        int ready = 0;
        while (ready < nconns) {
            if (now() - t0 > STALL_SECONDS) fail("handshakes did not complete in 5 s");
            int n = epoll_wait(ep, evs, 512, 100);
            for (int i = 0; i < n; i++) {
                struct conn *c = evs[i].data.ptr;
                if (c->st == SENDING) continue;
                int r = 0;
                if (c->st == CONNECTING) {
                    int err = 0;
                    socklen_t len = sizeof err;
                    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                    if (err) fail("connect failed");
                    c->ssl = SSL_new(ctx);
                    SSL_set_fd(c->ssl, c->fd);
                    SSL_set_connect_state(c->ssl);
                    c->st = HANDSHAKE;
                }
                r = SSL_do_handshake(c->ssl);
                if (r == 1) {
                    snprintf(suite, sizeof suite, "%s", SSL_get_cipher_name(c->ssl));
                    snprintf(version, sizeof version, "%s", SSL_get_version(c->ssl));
                    c->st = SENDING;
                    c->sent = c->rcvd = 0;
                    if (want(c, EPOLLOUT) < 0) fail("epoll_ctl");
                    ready++;
                } else if (ssl_failed(c, r, "handshake") < 0) {
                    fail(errbuf);
                }
            }
        }
        for (int i = 0; i < nconns; i++)
            if (step(&conns[i], now()) < 0) fail(errbuf);
    }

    double warm_end = now() + warmup, end = warm_end + duration;
    double t_start = 0, t_end = 0, cpu0 = 0, cpu1 = 0, srv0 = -1, srv1 = -1;
    uint64_t total0 = 0, resumed0 = 0, hs0 = 0;
    double cb0 = 0, ct0 = 0, cb1 = 0, ct1 = 0, sb0 = 0, st0 = 0, sb1 = 0, st1 = 0;
    int have_core = 0, measuring = 0;
    last_progress = now();
    for (;;) {
        double t = now();
        if (!measuring && t >= warm_end) {
            measuring = 1;
            for (int i = 0; i < nconns; i++) conns[i].done_at_start = conns[i].done;
            total0 = total;
            resumed0 = resumed;
            hs0 = handshakes;
            srv0 = cpu_of(server_pid);
            have_core = cpu_busy(pinned, &cb0, &ct0) == 0;
            have_core = cpu_busy(server_cpu, &sb0, &st0) == 0 && have_core;
            cpu0 = cpu_self();
            t_start = now();
        }
        if (measuring && t >= end) {
            t_end = now();
            cpu1 = cpu_self();
            srv1 = cpu_of(server_pid);
            have_core = cpu_busy(pinned, &cb1, &ct1) == 0 && have_core;
            have_core = cpu_busy(server_cpu, &sb1, &st1) == 0 && have_core;
            break;
        }
        if (t - last_progress > STALL_SECONDS) {
            snprintf(errbuf, sizeof errbuf, "nothing completed for %.0f s (%llu done)",
                     STALL_SECONDS, (unsigned long long)total);
            fail(errbuf);
        }
        double next = measuring ? end : warm_end;
        int timeout_ms = (int)((next - t) * 1000) + 1;
        if (timeout_ms > 100) timeout_ms = 100;
        int n = epoll_wait(ep, evs, 512, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait");
        }
        t = n ? now() : t;
        for (int i = 0; i < n; i++)
            if (step(evs[i].data.ptr, t) < 0) fail(errbuf);
    }

    uint64_t done = total - total0, mn = UINT64_MAX, mx = 0;
    for (int i = 0; i < nconns; i++) {
        uint64_t d = conns[i].done - conns[i].done_at_start;
        if (d < mn) mn = d;
        if (d > mx) mx = d;
    }
    double secs = t_end - t_start, ccpu = cpu1 - cpu0;
    uint64_t hs = handshakes - hs0;
    printf("{\"status\": \"ok\", \"mode\": \"%s\", \"conns\": %d, \"size\": %zu, "
           "\"seconds\": %.6f, \"messages\": %llu, \"rate\": %.3f, "
           "\"suite\": \"%s\", \"version\": \"%s\", \"resumed_share\": %.4f, "
           "\"client_cpu\": %.4f, \"client_util\": %.4f, \"client_cpu_pinned\": %d, "
           "\"per_conn_min\": %llu, \"per_conn_max\": %llu",
           mode, nconns, size, secs, (unsigned long long)done, done / secs, suite,
           version, hs ? (double)(resumed - resumed0) / (double)hs : 0.0, ccpu,
           ccpu / secs, pinned, (unsigned long long)mn, (unsigned long long)mx);
    if (srv0 >= 0 && srv1 >= 0)
        printf(", \"server_cpu\": %.4f, \"server_util\": %.4f", srv1 - srv0,
               (srv1 - srv0) / secs);
    else
        printf(", \"server_cpu\": null, \"server_util\": null");
    if (have_core && ct1 > ct0 && st1 > st0 && pinned != server_cpu)
        printf(", \"client_core_busy\": %.4f, \"server_core_busy\": %.4f",
               (cb1 - cb0) / (ct1 - ct0), (sb1 - sb0) / (st1 - st0));
    else
        printf(", \"client_core_busy\": null, \"server_core_busy\": null");
    printf("}\n");
    return 0;
}

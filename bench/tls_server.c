/* Reference TLS echo server for bench/tls.py: plain C over OpenSSL, one
 * thread, epoll, non-blocking: the ceiling the Python servers are put
 * against.
 *
 * Listens on 127.0.0.1 (port 0 = any free port), prints one JSON line with
 * the port on stdout, then for every connection: the TLS handshake
 * (server side, with the given certificate and key; session tickets as
 * OpenSSL's default: stateless, two per handshake), then echoes what it
 * reads (SSL_read of up to 64 KiB, as the Python servers' recv(65536)),
 * writing it back before reading more. TCP_NODELAY on every connection.
 *
 * Runs until killed; alarm() ends it after --lifetime seconds in any case.
 *
 *   tls_server --cert PEM --key PEM [--port P] [--cpu C] [--lifetime S]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

#define BUF (64 * 1024)

struct conn {
    int fd;
    SSL *ssl;
    int handshaken;
    size_t off, len; /* pending bytes buf[off:len] still to be written */
    unsigned char buf[BUF];
};

static int ep;

static void drop(struct conn *c) {
    SSL_free(c->ssl);
    close(c->fd); /* also removes it from the epoll set */
    free(c);
}

static int set_events(struct conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* What to wait for after r <= 0 from an SSL call: EPOLLIN or EPOLLOUT, or 0
 * when the connection is over (EOF, close_notify, error). */
static uint32_t wait_for(struct conn *c, int r) {
    int e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ) return EPOLLIN;
    if (e == SSL_ERROR_WANT_WRITE) return EPOLLOUT;
    return 0;
}

/* Run the connection until it would block; drops it when it is over. */
static void serve(struct conn *c) {
    for (;;) {
        int r;
        uint32_t ev;
        if (!c->handshaken) {
            r = SSL_do_handshake(c->ssl);
            if (r != 1) goto blocked;
            c->handshaken = 1;
        }
        while (c->off < c->len) {
            r = SSL_write(c->ssl, c->buf + c->off, (int)(c->len - c->off));
            if (r <= 0) goto blocked;
            c->off += (size_t)r;
        }
        c->off = c->len = 0;
        r = SSL_read(c->ssl, c->buf, BUF);
        if (r <= 0) goto blocked;
        c->len = (size_t)r;
        continue;
    blocked:
        ev = wait_for(c, r);
        if (!ev || set_events(c, ev) < 0) drop(c);
        return;
    }
}

int main(int argc, char **argv) {
    int port = 0, cpu = -1, lifetime = 3600;
    const char *cert = NULL, *key = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cpu")) cpu = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lifetime")) lifetime = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cert")) cert = argv[i + 1];
        else if (!strcmp(argv[i], "--key")) key = argv[i + 1];
    }
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)lifetime);
    cpu = pin_cpu(cpu);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || !cert || !key || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        printf("{\"status\": \"error\", \"error\": \"cannot load --cert/--key\"}\n");
        return 1;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    int one = 1, bound = 0, ls = listen_loopback(port, &bound);
    if (ls < 0) {
        printf("{\"status\": \"error\", \"error\": \"listen: %s\"}\n", strerror(errno));
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    printf("{\"status\": \"ok\", \"port\": %d, \"pid\": %d, \"cpu\": %d, \"version\": \"%s\"}\n",
           bound, (int)getpid(), cpu, OpenSSL_version(OPENSSL_VERSION));
    fflush(stdout);

    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) { /* the listening socket */
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = malloc(sizeof *nc);
                    SSL *ssl = nc ? SSL_new(ctx) : NULL;
                    if (!ssl) { free(nc); close(fd); continue; }
                    nc->fd = fd;
                    nc->ssl = ssl;
                    nc->handshaken = 0;
                    nc->off = nc->len = 0;
                    SSL_set_fd(ssl, fd);
                    SSL_set_accept_state(ssl);
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) drop(nc);
                }
                continue;
            }
            serve(c);
        }
    }
}

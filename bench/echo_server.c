/* Reference echo server for bench/echo.py: plain C, one thread, epoll.
 *
 * Listens on 127.0.0.1 (port 0 = any free port), prints one JSON line with
 * the port on stdout, then echoes every byte it reads back on the same
 * connection: read up to 256 KiB (uvloop reads into 256,000 bytes), write
 * it back; if the write is short, stop reading that connection until the
 * rest has been written. Level-triggered,
 * TCP_NODELAY on every accepted connection, as the Python servers.
 *
 * Runs until killed; alarm() ends it after --lifetime seconds in any case.
 *
 *   echo_server [--port P] [--cpu C] [--lifetime S]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

#define BUF (256 * 1024)

struct conn {
    int fd;
    size_t off, len; /* pending bytes buf[off:len] still to be written */
    unsigned char buf[BUF];
};

static int ep;

static void drop(struct conn *c) {
    close(c->fd); /* also removes it from the epoll set */
    free(c);
}

static int set_events(struct conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what is pending; 1 if all written, 0 if it would block, -1 on error. */
static int flush_pending(struct conn *c) {
    while (c->off < c->len) {
        ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (w > 0) c->off += (size_t)w;
        else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        else if (w < 0 && errno == EINTR) continue;
        else return -1;
    }
    c->off = c->len = 0;
    return 1;
}

static void on_readable(struct conn *c) {
    for (;;) {
        ssize_t r = recv(c->fd, c->buf, BUF, 0);
        if (r > 0) {
            c->off = 0;
            c->len = (size_t)r;
            int f = flush_pending(c);
            if (f < 0) { drop(c); return; }
            if (f == 0) { /* wait for room, stop reading meanwhile */
                if (set_events(c, EPOLLOUT) < 0) drop(c);
                return;
            }
            if ((size_t)r < BUF) return; /* drained for now */
        } else if (r == 0) {
            drop(c);
            return;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else if (errno != EINTR) {
            drop(c);
            return;
        }
    }
}

int main(int argc, char **argv) {
    int port = 0, cpu = -1, lifetime = 3600;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cpu")) cpu = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--lifetime")) lifetime = atoi(argv[i + 1]);
    }
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)lifetime);
    cpu = pin_cpu(cpu);

    int one = 1, bound = 0, ls = listen_loopback(port, &bound);
    if (ls < 0) {
        printf("{\"status\": \"error\", \"error\": \"listen: %s\"}\n", strerror(errno));
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    printf("{\"status\": \"ok\", \"port\": %d, \"pid\": %d, \"cpu\": %d}\n",
           bound, (int)getpid(), cpu);
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
                    if (!nc) { close(fd); continue; }
                    nc->fd = fd;
                    nc->off = nc->len = 0;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) drop(nc);
                }
                continue;
            }
            uint32_t e = evs[i].events;
            if (c->len > c->off) { /* waiting for room to write */
                if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                    int f = flush_pending(c);
                    if (f < 0) drop(c);
                    else if (f == 1 && set_events(c, EPOLLIN) < 0) drop(c);
                }
            } else if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                on_readable(c);
            }
        }
    }
}

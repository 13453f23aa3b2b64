/* Load generator for bench/echo.py.
 *
 * Opens N TCP connections to an echo server on loopback. Each connection
 * sends one message of a fixed size, waits until the whole message has come
 * back, checks it, and sends the next one: at most one message in flight per
 * connection. One thread, one epoll instance, level-triggered.
 *
 * After a warm-up, messages completed during a fixed window are counted. The
 * client's own CPU time (getrusage) and, when --server-pid is given, the
 * server's (utime + stime from /proc/<pid>/stat) are sampled at the start and
 * the end of that same window. One JSON object is printed on stdout.
 *
 * Every wait is bounded: connect has a 5 s timeout, a window in which no
 * message completes for 5 s is an error, and alarm() ends the process if it
 * somehow outlives warm-up + duration + 30 s.
 *
 *   echo_client --port P [--host 127.0.0.1] --conns N --size BYTES
 *               [--warmup S] [--duration S] [--cpu C] [--server-pid PID]
 *               [--server-cpu C]
 *
 * With --cpu and --server-cpu (two different CPUs), the busy share of both
 * CPUs over the window is read from /proc/stat as well.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

struct conn {
    int fd;
    int want_out;      /* EPOLLOUT registered: a send is pending */
    size_t sent, rcvd; /* bytes of the current message */
    uint64_t done;     /* messages completed */
    uint64_t done_at_start;
};

static unsigned char *msg;  /* the message: one line of pseudo-random letters */
static unsigned char *scratch;
static size_t size;
static int ep;
static uint64_t total;
static double last_progress;
static char errbuf[256];

static void fail(const char *what) {
    printf("{\"status\": \"error\", \"error\": \"%s\"}\n", what);
    fflush(stdout);
    exit(1);
}

static int set_events(struct conn *c, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    c->want_out = out;
    return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Send what is left of the current message; 0 on success, -1 on error. */
static int do_send(struct conn *c) {
    while (c->sent < size) {
        ssize_t w = send(c->fd, msg + c->sent, size - c->sent, MSG_NOSIGNAL);
        if (w > 0) {
            c->sent += (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out && set_events(c, 1) < 0) return -1;
            return 0;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            snprintf(errbuf, sizeof errbuf, "send: %s", strerror(errno));
            return -1;
        }
    }
    if (c->want_out && set_events(c, 0) < 0) return -1;
    return 0;
}

/* Read the echo; 0 on success, -1 on error. */
static int do_recv(struct conn *c, double t) {
    for (;;) {
        size_t want = size - c->rcvd;
        if (want > SCRATCH) want = SCRATCH;
        ssize_t r = recv(c->fd, scratch, want, 0);
        if (r > 0) {
            /* Cheap check that the echo is the message, in order: the first
             * byte of every chunk must be the byte sent at that offset. */
            if (scratch[0] != msg[c->rcvd] || c->rcvd + (size_t)r > c->sent) {
                snprintf(errbuf, sizeof errbuf,
                         "echo does not match what was sent at offset %zu", c->rcvd);
                return -1;
            }
            c->rcvd += (size_t)r;
            if (c->rcvd == size) {
                c->done++;
                total++;
                last_progress = t;
                c->rcvd = c->sent = 0;
                return do_send(c);
            }
            if ((size_t)r < want) return 0; /* drained for now */
        } else if (r == 0) {
            snprintf(errbuf, sizeof errbuf, "server closed a connection");
            return -1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else if (errno != EINTR) {
            snprintf(errbuf, sizeof errbuf, "recv: %s", strerror(errno));
            return -1;
        }
    }
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0, nconns = 10, cpu = -1, server_cpu = -1;
    long server_pid = 0;
    double warmup = 0.25, duration = 3.0;
    size = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) fail("missing value for an option");
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = atoi(v);
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
    if (port <= 0 || nconns <= 0 || size == 0 || duration <= 0 || warmup < 0)
        fail("bad arguments");
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)(warmup + duration + 30));

    int pinned = pin_cpu(cpu);

    msg = malloc(size);
    scratch = malloc(SCRATCH);
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!msg || !scratch || !conns) fail("out of memory");
    uint32_t x = 2463534242u;
    /* Lowercase letters ending in a newline: one line per message, so the
       line-protocol servers (readline) and the byte echoes serve the same
       load. */
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        msg[i] = (unsigned char)('a' + x % 26);
    }
    msg[size - 1] = '\n';

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) fail("bad host");
    ep = epoll_create1(0);
    if (ep < 0) fail("epoll_create1");
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        int one = 1;
        struct timeval tv = {.tv_sec = 5};
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0) fail("socket");
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds connect */
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            snprintf(errbuf, sizeof errbuf, "connect %d/%d: %s", i + 1, nconns, strerror(errno));
            fail(errbuf);
        }
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) fail("epoll_ctl");
    }

    double t0 = now(), warm_end = t0 + warmup, end = warm_end + duration;
    double t_start = 0, t_end = 0, cpu0 = 0, cpu1 = 0, srv0 = -1, srv1 = -1;
    uint64_t total0 = 0;
    double cb0 = 0, ct0 = 0, cb1 = 0, ct1 = 0, sb0 = 0, st0 = 0, sb1 = 0, st1 = 0;
    int have_core = 0;
    int measuring = 0;
    last_progress = t0;
    for (int i = 0; i < nconns; i++)
        if (do_send(&conns[i]) < 0) fail(errbuf);

    struct epoll_event evs[512];
    for (;;) {
        double t = now();
        if (!measuring && t >= warm_end) {
            measuring = 1;
            for (int i = 0; i < nconns; i++) conns[i].done_at_start = conns[i].done;
            total0 = total;
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
            snprintf(errbuf, sizeof errbuf,
                     "no message completed for %.0f s (%llu done)", STALL_SECONDS,
                     (unsigned long long)total);
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
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (e & EPOLLIN) {
                if (do_recv(c, t) < 0) fail(errbuf);
            } else if (e & (EPOLLERR | EPOLLHUP)) {
                fail("connection error or hang-up");
            }
            if ((e & EPOLLOUT) && c->want_out && do_send(c) < 0) fail(errbuf);
        }
    }

    uint64_t messages = total - total0, mn = UINT64_MAX, mx = 0;
    for (int i = 0; i < nconns; i++) {
        uint64_t d = conns[i].done - conns[i].done_at_start;
        if (d < mn) mn = d;
        if (d > mx) mx = d;
        close(conns[i].fd);
    }
    double secs = t_end - t_start, ccpu = cpu1 - cpu0;
    printf("{\"status\": \"ok\", \"conns\": %d, \"size\": %zu, \"warmup\": %g, "
           "\"seconds\": %.6f, \"messages\": %llu, \"rate\": %.3f, "
           "\"client_cpu\": %.4f, \"client_util\": %.4f, \"client_cpu_pinned\": %d, "
           "\"per_conn_min\": %llu, \"per_conn_max\": %llu",
           nconns, size, warmup, secs, (unsigned long long)messages,
           messages / secs, ccpu, ccpu / secs, pinned,
           (unsigned long long)mn, (unsigned long long)mx);
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

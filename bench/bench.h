/* What the benchmarks' C load generators share: the clock and the CPU
 * figures they sample at the start and the end of a timed window; and the
 * loopback listener and CPU pinning of the C reference servers. Included by
 * bench/echo_client.c, tls_client.c, echo_server.c and tls_server.c (one
 * translation unit each, so everything here is static inline).
 */
/* Needs _GNU_SOURCE defined before the first system header (cpu_set_t). */
#ifndef PTSEVENT_BENCH_H
#define PTSEVENT_BENCH_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static inline double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline double cpu_self(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

/* utime + stime of a process in seconds, or -1. */
static inline double cpu_of(long pid) {
    char path[64], buf[4096];
    if (pid <= 0) return -1;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    /* after ") ": field 3 (state) ... field 14 utime, field 15 stime */
    unsigned long long utime = 0, stime = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Busy and total jiffies of one CPU from /proc/stat; 0 or -1. Busy is
 * everything but idle and iowait: user, system, softirq (where loopback TCP
 * does much of its work, not always charged to a process) and steal. */
static inline int cpu_busy(int cpu, double *busy, double *tot) {
    char want[32], line[512];
    if (cpu < 0) return -1;
    snprintf(want, sizeof want, "cpu%d ", cpu);
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, want, strlen(want))) continue;
        unsigned long long v[10] = {0};
        int n = sscanf(line + strlen(want), "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                       &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
        if (n < 5) break;
        double t = 0;
        for (int i = 0; i < 8; i++) t += v[i]; /* guest time is inside user */
        *tot = t;
        *busy = t - v[3] - v[4];
        found = 0;
        break;
    }
    fclose(f);
    return found;
}

/* Pin this process to one CPU; returns cpu, or -1 if cpu < 0 or it failed. */
static inline int pin_cpu(int cpu) {
    if (cpu < 0) return -1;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0 ? cpu : -1;
}

/* A non-blocking listening socket on 127.0.0.1:port (0 = any free port);
 * the descriptor with *bound set to its port, or -1 with errno set. */
static inline int listen_loopback(int port, int *bound) {
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    if (ls < 0) return -1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1024) < 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
        int saved = errno;
        close(ls);
        errno = saved;
        return -1;
    }
    *bound = ntohs(sa.sin_port);
    return ls;
}

#endif

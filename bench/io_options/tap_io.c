/*
 * tap_io.c: TAP forwarding I/O options, measured in isolation.
 *
 * Two TAPs with IFF_VNET_HDR (12-byte header, csum/TSO offloads on), each
 * moved into its own namespace (we keep the fds).  A sender in namespace A
 * (trafgen, started by run_tap_io.sh) transmits on tap A, so frames queue
 * on our fd A; we forward every one of them, unchanged, to fd B, whose
 * namespace's stack receives it.  Reported: frames forwarded per second
 * and this process's CPU (utime+stime, all threads, including io_uring's
 * workers) per forwarded frame.
 *
 * Modes:
 *   readv   epoll + readv() per frame until EAGAIN (bursts of 32), then
 *           writev() per frame: what the switch does today.
 *   uring   io_uring: QD reads in flight on A (registered buffers, fixed
 *           files); each completed read becomes a write to B; all queued
 *           SQEs go out with one io_uring_enter() that also waits for the
 *           next completion.
 * Options: -n (tap B with IFF_NAPI), -q QD, -t seconds.
 *
 * Build: cc -O2 -o tap_io tap_io.c -luring
 * Usage (root): ./tap_io MODE NS_A NS_B TAP_A TAP_B [-n] [-q 64] [-t 5]
 *   creates TAP_A/TAP_B, moves them into NS_A/NS_B (which must exist),
 *   prints "ready" and waits for SIGUSR1 or 1 s, then measures for -t s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define BUF 2048
#define BURST 32

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
           + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int
open_tap(const char *name, int napi, int nonblock)
{
    struct ifreq ifr;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
    if (fd < 0) {
        perror("open /dev/net/tun");
        exit(1);
    }
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (napi ? IFF_NAPI : 0);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        perror("TUNSETIFF");
        exit(1);
    }
    int hl = 12;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hl) < 0
        || ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) {
        perror("vnet hdr/offload");
        exit(1);
    }
    return fd;
}

static void
sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        exit(1);
    }
}

static volatile sig_atomic_t go;
static void on_usr1(int s) { (void) s; go = 1; }

static unsigned long long frames, syscalls;

static void
run_readv(int a, int b, double secs)
{
    static uint8_t bufs[BURST][BUF];
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN }, evs[4];
    epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
    double end = now() + secs;
    while (now() < end) {
        syscalls++;
        if (epoll_wait(ep, evs, 4, 100) <= 0) {
            continue;
        }
        ssize_t len[BURST];
        int n = 0;
        while (n < BURST) {
            struct iovec iov = { bufs[n], BUF };
            syscalls++;
            len[n] = readv(a, &iov, 1);
            if (len[n] < 0) {
                break;
            }
            n++;
        }
        for (int i = 0; i < n; i++) {
            struct iovec iov = { bufs[i], (size_t) len[i] };
            syscalls++;
            if (writev(b, &iov, 1) > 0) {
                frames++;
            }
        }
    }
}

static void
run_uring(int a, int b, double secs, unsigned qd)
{
    struct io_uring ring;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
    int r = io_uring_queue_init_params(qd * 4, &ring, &p);
    if (r < 0) {
        memset(&p, 0, sizeof p);
        r = io_uring_queue_init_params(qd * 4, &ring, &p);
    }
    if (r < 0) {
        fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-r));
        exit(1);
    }
    uint8_t *mem = aligned_alloc(4096, (size_t) qd * BUF);
    struct iovec *iovs = calloc(qd, sizeof *iovs);
    for (unsigned i = 0; i < qd; i++) {
        iovs[i].iov_base = mem + (size_t) i * BUF;
        iovs[i].iov_len = BUF;
    }
    if ((r = io_uring_register_buffers(&ring, iovs, qd)) < 0
        || (r = io_uring_register_files(&ring, (int[]) { a, b }, 2)) < 0) {
        fprintf(stderr, "register: %s\n", strerror(-r));
        exit(1);
    }
    for (unsigned i = 0; i < qd; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read_fixed(sqe, 0, iovs[i].iov_base, BUF, 0, (int) i);
        sqe->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data64(sqe, i);          /* read of buffer i */
    }
    double end = now() + secs;
    struct __kernel_timespec ts = { 0, 100 * 1000 * 1000 };
    while (now() < end) {
        struct io_uring_cqe *cqe;
        syscalls++;
        io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            uint64_t d = cqe->user_data;
            unsigned i = (unsigned) (d & 0xffffffff);
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            if (!sqe) {
                io_uring_submit(&ring);
                sqe = io_uring_get_sqe(&ring);
            }
            if (!(d >> 32) && cqe->res > 0) {
                /* A frame: write it to B from the same buffer. */
                io_uring_prep_write_fixed(sqe, 1, iovs[i].iov_base,
                                          (unsigned) cqe->res, 0, (int) i);
                sqe->flags |= IOSQE_FIXED_FILE;
                io_uring_sqe_set_data64(sqe, (1ull << 32) | i);
            } else {
                if ((d >> 32) && cqe->res > 0) {
                    frames++;
                }
                io_uring_prep_read_fixed(sqe, 0, iovs[i].iov_base, BUF, 0,
                                         (int) i);
                sqe->flags |= IOSQE_FIXED_FILE;
                io_uring_sqe_set_data64(sqe, i);
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
    io_uring_queue_exit(&ring);
}

int
main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s readv|uring NS_A NS_B TAP_A TAP_B [-n] [-q QD] [-t S]\n",
                argv[0]);
        return 2;
    }
    const char *mode = argv[1], *nsa = argv[2], *nsb = argv[3];
    const char *ta = argv[4], *tb = argv[5];
    int napi = 0;
    unsigned qd = 64;
    double secs = 5;
    for (int i = 6; i < argc; i++) {
        if (!strcmp(argv[i], "-n")) {
            napi = 1;
        } else if (!strcmp(argv[i], "-q") && i + 1 < argc) {
            qd = (unsigned) atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            secs = atof(argv[++i]);
        }
    }
    int uring = !strcmp(mode, "uring");
    int a = open_tap(ta, 0, !uring);
    int b = open_tap(tb, napi, !uring);
    sh("ip link set %s netns %s && ip -n %s link set %s up", ta, nsa, nsa, ta);
    sh("ip link set %s netns %s && ip -n %s addr add 10.197.0.2/24 dev %s && "
       "ip -n %s link set %s up", tb, nsb, nsb, tb, nsb, tb);
    signal(SIGUSR1, on_usr1);
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < 100 && !go; i++) {
        usleep(10000);
    }
    double c0 = cpu(), t0 = now();
    if (uring) {
        run_uring(a, b, secs, qd);
    } else {
        run_readv(a, b, secs);
    }
    double c1 = cpu(), t1 = now();
    printf("{\"mode\": \"%s\", \"napi\": %d, \"qd\": %u, \"secs\": %.2f, "
           "\"frames\": %llu, \"kfps\": %.1f, \"cpu_pct\": %.1f, "
           "\"us_cpu_per_frame\": %.3f, \"syscalls_per_frame\": %.3f}\n",
           mode, napi, uring ? qd : 0, t1 - t0, frames, frames / (t1 - t0) / 1e3,
           100 * (c1 - c0) / (t1 - t0), 1e6 * (c1 - c0) / (frames ? frames : 1),
           (double) syscalls / (frames ? frames : 1));
    return 0;
}

/*
 * wire.c: the least any userspace switch must do to move frames -- a wire.
 *
 * Two ports, every frame read from one is written unchanged to the other:
 * no parsing, no learning, no lookup, no VLANs, no counters.  It does the
 * I/O vswitchd's worker does with its defaults, with the same virtio-net
 * header and offloads, pinned to the last CPU as vswitchd's first worker:
 *
 *   tap     two TAPs it creates: epoll, then up to a burst of read()s per
 *           ready fd until EAGAIN, one write() per frame.
 *   packet  AF_PACKET sockets bound to two existing interfaces (veths):
 *           PACKET_VNET_HDR, PACKET_QDISC_BYPASS, PACKET_IGNORE_OUTGOING;
 *           epoll, recvmmsg() of a burst, one sendmmsg() for it.
 *
 * `make bench` runs it as the "wire-*" rows: the CPU it spends per
 * forwarded frame is the kernel's floor for one receive plus one transmit
 * (the transmit also runs the receiving namespace's stack inside the
 * syscall), so a switch's us/frame can be read against it, and a target
 * below it cannot be met by a switch that moves frames through these fds.
 *
 * Build: cc -O2 -o wire wire.c
 * Usage (root): wire tap|packet [--no-offload] IF_A IF_B
 *   prints "ready", forwards until SIGTERM/SIGINT, then "forwarded N".
 *   The TAPs of the tap mode vanish when it exits.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>      /* before linux/if.h, which defers to it */
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define TAP_VNET_HDR_LEN 12     /* with num_buffers, as vswitchd's TAPs */
#define FRAME_MAX (TAP_VNET_HDR_LEN + 65550)
#define BURST 32

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
    (void) sig;
    stop = 1;
}

static void
die(const char *what)
{
    perror(what);
    exit(1);
}

static int
open_tap(const char *name, int offload)
{
    struct ifreq ifr;
    int hdr_len = TAP_VNET_HDR_LEN;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0) {
        die("open /dev/net/tun");
    }
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        die("TUNSETIFF");
    }
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
        die("TUNSETVNETHDRSZ");
    }
    unsigned long features = offload ? TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 : 0;
    if (ioctl(fd, TUNSETOFFLOAD, features) < 0) {
        die("TUNSETOFFLOAD");
    }
    return fd;
}

static int
open_packet(const char *ifname)
{
    int one = 1;
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };

    if (fd < 0) {
        die("socket(AF_PACKET)");
    }
    /* The virtio-net header carries GSO and partial checksums both ways;
     * without it, frames with partial checksums would go out broken. */
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0
        || setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0
        || setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) {
        die("setsockopt(SOL_PACKET)");
    }
    sll.sll_ifindex = (int) if_nametoindex(ifname);
    if (!sll.sll_ifindex) {
        die(ifname);
    }
    if (bind(fd, (struct sockaddr *) &sll, sizeof sll) < 0) {
        die("bind");
    }
    return fd;
}

static void
pin_to_last_cpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(n > 0 ? n - 1 : 0, &set);
    sched_setaffinity(0, sizeof set, &set);   /* best effort, as vswitchd */
}

/* TAP: read until EAGAIN (at most a burst), one write per frame. */
static unsigned long long
forward_tap(int in, int out)
{
    static unsigned char buf[FRAME_MAX];
    unsigned long long n = 0;

    for (int b = 0; b < BURST; b++) {
        ssize_t len = read(in, buf, sizeof buf);
        if (len <= 0) {
            break;      /* EAGAIN: drained; anything else: next wake-up */
        }
        n += write(out, buf, (size_t) len) == len;
    }
    return n;
}

/* Packet sockets: one recvmmsg() for the burst, one sendmmsg() for it. */
static unsigned long long
forward_packet(int in, int out)
{
    static unsigned char bufs[BURST][FRAME_MAX];
    struct mmsghdr msgs[BURST];
    struct iovec iovs[BURST];

    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BURST; i++) {
        iovs[i].iov_base = bufs[i];
        iovs[i].iov_len = FRAME_MAX;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(in, msgs, BURST, MSG_DONTWAIT, NULL);
    if (got <= 0) {
        return 0;
    }
    for (int i = 0; i < got; i++) {
        iovs[i].iov_len = msgs[i].msg_len;
    }
    int sent = sendmmsg(out, msgs, (unsigned) got, MSG_DONTWAIT);
    return sent > 0 ? (unsigned long long) sent : 0;
}

int
main(int argc, char **argv)
{
    unsigned long long forwarded = 0;
    int offload = 1, packet, fds[2], ep;
    int arg = 2;

    if (argc < 2 || (strcmp(argv[1], "tap") && strcmp(argv[1], "packet"))) {
        fprintf(stderr, "usage: %s tap|packet [--no-offload] IF_A IF_B\n", argv[0]);
        return 2;
    }
    packet = !strcmp(argv[1], "packet");
    if (argc > arg && !strcmp(argv[arg], "--no-offload")) {
        offload = 0;
        arg++;
    }
    if (argc - arg != 2) {
        fprintf(stderr, "usage: %s tap|packet [--no-offload] IF_A IF_B\n", argv[0]);
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    pin_to_last_cpu();

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        die("epoll_create1");
    }
    for (int i = 0; i < 2; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t) i };
        fds[i] = packet ? open_packet(argv[arg + i]) : open_tap(argv[arg + i], offload);
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
            die("epoll_ctl");
        }
    }
    printf("ready\n");
    fflush(stdout);

    while (!stop) {
        struct epoll_event evs[2];
        int n = epoll_wait(ep, evs, 2, 100);
        for (int e = 0; e < n; e++) {
            int in = fds[evs[e].data.u32], out = fds[!evs[e].data.u32];
            forwarded += packet ? forward_packet(in, out) : forward_tap(in, out);
        }
    }
    printf("forwarded %llu\n", forwarded);
    return 0;
}

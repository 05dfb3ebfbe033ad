/*
 * vs_worker.c: worker threads: poll owned rx queues, read bursts, pass
 * quiescent points.
 *
 * A worker's loop, once per iteration:
 *   1. announce it is online, then load the current config (in that order,
 *      both sequentially consistent: the publisher swaps then reads
 *      'online', so either it sees us online or we see its new config);
 *   2. if the config changed, rebuild the epoll set from the rx queues the
 *      config gives this worker;
 *   3. collect ready queues without blocking; if there are none, go
 *      offline (holding no config references) and block in epoll_wait();
 *   4. read a burst from each ready queue and forward it;
 *   5. pass a quiescent point: from here on it holds no references into
 *      the config it loaded in step 1.
 *
 * Epoll is level-triggered: a queue that still has frames after one burst
 * is simply reported again on the next iteration, so busy queues of one
 * worker are served round-robin, a burst each.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_packet.h>

#include "vs_port_class.h"
#include "vs_ring.h"
#include "vs_guard.h"
#include "vs_qos.h"
#include "vs_worker.h"

#define VS_IDLE_WAIT_MS 100

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* Seconds on CLOCK_MONOTONIC, the clock the control plane ages with. */
static uint32_t
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t) ts.tv_sec;
}

/* Sets up 'ctx' as context 'index' of 'sw', to run pinned to 'cpu' (-1:
 * anywhere).  Returns 0 or a positive errno. */
int
vs_ctx_init(struct vs_ctx *ctx, struct vs_switch *sw, uint32_t index, int cpu)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->sw = sw;
    ctx->index = index;
    ctx->cpu = cpu;
    ctx->epfd = -1;
    ctx->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ctx->rx_bufs = malloc((size_t) VS_BURST * VS_FRAME_MAX);
    ctx->rx_hdrs = calloc(VS_BURST, sizeof *ctx->rx_hdrs);
    ctx->stage_buf = malloc(VS_FRAME_MAX);
    ctx->seg_buf = malloc(VS_FRAME_MAX);
    ctx->counters = calloc(VS_MAX_PORTS, sizeof *ctx->counters);
    ctx->rxq_stats = calloc(VS_MAX_PORTS, sizeof *ctx->rxq_stats);
    ctx->guard = vs_guard_new();
    ctx->qos = vs_qos_queues_new();
    if (ctx->wake_fd < 0 || !ctx->rx_bufs || !ctx->rx_hdrs || !ctx->stage_buf
        || !ctx->seg_buf || !ctx->counters || !ctx->rxq_stats || !ctx->guard
        || !ctx->qos) {
        int error = ctx->wake_fd < 0 ? errno : ENOMEM;
        vs_ctx_destroy(ctx);
        return error;
    }
    return 0;
}

/* Frees what vs_ctx_init() allocated; the thread must have exited. */
void
vs_ctx_destroy(struct vs_ctx *ctx)
{
    if (ctx->epfd >= 0) {
        close(ctx->epfd);
    }
    if (ctx->wake_fd >= 0) {
        close(ctx->wake_fd);
    }
    free(ctx->rx_bufs);
    free(ctx->rx_hdrs);
    free(ctx->stage_buf);
    free(ctx->seg_buf);
    free(ctx->counters);
    free(ctx->rxq_stats);
    vs_guard_free(ctx->guard);
    vs_qos_queues_free(ctx->qos);
    memset(ctx, 0, sizeof *ctx);
    ctx->epfd = ctx->wake_fd = -1;
}

static void
parse_vnet_hdr(const uint8_t *b, uint32_t len, struct vs_vnet_hdr *vh)
{
    memset(vh, 0, sizeof *vh);
    if (len < VS_VNET_HDR_LEN) {
        return;
    }
    vh->flags = b[0];
    vh->gso_type = b[1];
    memcpy(&vh->hdr_len, b + 2, 2);
    memcpy(&vh->gso_size, b + 4, 2);
    memcpy(&vh->csum_start, b + 6, 2);
    memcpy(&vh->csum_offset, b + 8, 2);
}

/* Fills ctx->pkts[i] from what was read: 'got' bytes, virtio-net header
 * first when the port has one. */
static void
fill_pkt(struct vs_ctx *ctx, uint32_t i, uint32_t hl, size_t got)
{
    struct vs_pkt *pkt = &ctx->pkts[i];
    pkt->data = ctx->rx_bufs + (size_t) i * VS_FRAME_MAX;
    if (got < hl) {
        /* A short read cannot even hold the header: a runt. */
        pkt->len = 0;
        memset(&pkt->vh, 0, sizeof pkt->vh);
        return;
    }
    pkt->len = (uint32_t) (got - hl);
    parse_vnet_hdr(ctx->rx_hdrs[i], hl, &pkt->vh);
}

/* Reads up to a burst from TAP-style 'fd': one frame per readv(). */
static uint32_t
read_burst_fd(struct vs_ctx *ctx, int fd, uint32_t hl)
{
    uint32_t n = 0;
    while (n < VS_BURST) {
        struct iovec iov[2] = {
            { ctx->rx_hdrs[n], hl },
            { ctx->rx_bufs + (size_t) n * VS_FRAME_MAX, VS_FRAME_MAX },
        };
        ssize_t got = hl ? readv(fd, iov, 2) : readv(fd, iov + 1, 1);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;  /* EAGAIN: drained; anything else: try next poll */
        }
        fill_pkt(ctx, n++, hl, (size_t) got);
    }
    return n;
}

/* Puts back the 802.1Q tag 'tci' (TPID 'tpid') that the kernel's receive
 * path moved into skb metadata, using the VS_VLAN_HLEN bytes of headroom
 * in front of 'pkt', and moves its virtio-net header offsets with it. */
static void
restore_tag(struct vs_pkt *pkt, uint16_t tci, uint16_t tpid)
{
    if (pkt->len < 2 * VS_ETH_ALEN) {
        return;
    }
    uint8_t *d = pkt->data - VS_VLAN_HLEN;
    memmove(d, pkt->data, 2 * VS_ETH_ALEN);
    vs_put_be16(d + 12, tpid ? tpid : VS_ETH_TYPE_VLAN);
    vs_put_be16(d + 14, tci);
    pkt->data = d;
    pkt->len += VS_VLAN_HLEN;
    if (pkt->vh.flags & VS_VNET_F_NEEDS_CSUM) {
        pkt->vh.csum_start = (uint16_t) (pkt->vh.csum_start + VS_VLAN_HLEN);
    }
    if (vs_vnet_hdr_is_gso(&pkt->vh) && pkt->vh.hdr_len) {
        pkt->vh.hdr_len = (uint16_t) (pkt->vh.hdr_len + VS_VLAN_HLEN);
    }
}

/* Reads up to a burst from datagram socket 'fd' with one recvmmsg().
 * Frames land VS_VLAN_HLEN bytes into their buffers: room to put back the
 * VLAN tag that PACKET_AUXDATA reports (netdev sockets ask for it; the
 * kernel strips the tag before packet sockets see the frame). */
static uint32_t
read_burst_mmsg(struct vs_ctx *ctx, int fd, uint32_t hl)
{
    struct mmsghdr msgs[VS_BURST];
    struct iovec iovs[VS_BURST][2];
    union {
        struct cmsghdr align;
        uint8_t buf[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    } ctl[VS_BURST];

    for (uint32_t i = 0; i < VS_BURST; i++) {
        iovs[i][0].iov_base = ctx->rx_hdrs[i];
        iovs[i][0].iov_len = hl;
        iovs[i][1].iov_base = ctx->rx_bufs + (size_t) i * VS_FRAME_MAX
                              + VS_VLAN_HLEN;
        iovs[i][1].iov_len = VS_FRAME_MAX - VS_VLAN_HLEN;
        memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
        msgs[i].msg_hdr.msg_iov = hl ? iovs[i] : iovs[i] + 1;
        msgs[i].msg_hdr.msg_iovlen = hl ? 2 : 1;
        msgs[i].msg_hdr.msg_control = ctl[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof ctl[i].buf;
    }
    int r;
    do {
        r = recvmmsg(fd, msgs, VS_BURST, MSG_DONTWAIT, NULL);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        return 0;
    }
    for (int i = 0; i < r; i++) {
        size_t got = msgs[i].msg_len;
        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            got = 0;    /* larger than any frame we forward: a runt by length */
        }
        fill_pkt(ctx, (uint32_t) i, hl, got);
        struct vs_pkt *pkt = &ctx->pkts[i];
        pkt->data += VS_VLAN_HLEN;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c;
             c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
            if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA
                && c->cmsg_len >= CMSG_LEN(sizeof(struct tpacket_auxdata))) {
                struct tpacket_auxdata aux;
                memcpy(&aux, CMSG_DATA(c), sizeof aux);
                if (aux.tp_status & TP_STATUS_VLAN_VALID) {
                    restore_tag(pkt, aux.tp_vlan_tci,
                                aux.tp_status & TP_STATUS_VLAN_TPID_VALID
                                ? aux.tp_vlan_tpid : 0);
                }
            }
        }
    }
    return (uint32_t) r;
}

/* Reads up to a burst from 'ring', the rx ring of queue 'rxq': no
 * syscall.  Small frames are copied out and their blocks handed back at
 * once; large ones (GSO super-frames) are forwarded from the ring
 * (ctx->pkts point into it) and their blocks handed back by the next read
 * of this ring, once the burst has been sent.  A frame the
 * kernel had to clamp (tp_snaplen < tp_len: the block could not hold it)
 * is counted as received and dropped as oversize, never forwarded. */
static uint32_t
read_burst_ring(struct vs_ctx *ctx, struct vs_ring *ring,
                const struct vs_rxq_ref *rxq, uint32_t hl)
{
    struct vs_ring_frame fr[VS_BURST];
    uint32_t released;
    int got = vs_ring_read(ring, fr, VS_BURST, &released);
    if (got < 0) {
        return 0;   /* another worker has it for a moment: it reads */
    }
    if (got == 0 && !released) {
        /* Woken with nothing in the ring: a socket error (ENETDOWN when
         * the interface goes down) that level-triggered epoll would report
         * forever until it is read.  recvmmsg() reads and clears it. */
        return read_burst_mmsg(ctx, rxq->fd, hl);
    }

    uint32_t n = 0;
    int in_place = 0;
    for (int i = 0; i < got; i++) {
        struct vs_ring_frame *f = &fr[i];
        if (f->len < f->wire_len) {
            uint32_t id = rxq->port->p.id;
            vs_count(ctx, id, VS_C_RX_PACKETS, 1);
            vs_count(ctx, id, VS_C_RX_BYTES, f->wire_len);
            vs_count(ctx, id, VS_C_DROP_OVERSIZE, 1);
            continue;
        }
        struct vs_pkt *pkt = &ctx->pkts[n];
        if (f->len <= VS_RING_COPY_MAX) {
            /* Small: copy it, so its block can go back right away. */
            pkt->data = ctx->rx_bufs + (size_t) n * VS_FRAME_MAX;
            memcpy(pkt->data, f->data, f->len);
        } else {
            pkt->data = f->data;
            in_place = 1;
        }
        pkt->len = f->len;
        if (hl && f->vnet) {
            parse_vnet_hdr(f->vnet, hl, &pkt->vh);
        } else {
            memset(&pkt->vh, 0, sizeof pkt->vh);
        }
        n++;
    }
    if (!in_place) {
        /* Nothing of this burst points into the ring: return its blocks
         * now rather than at the next poll (which would cost a wakeup). */
        vs_ring_release(ring);
    }
    return n;
}

/* Reads up to a burst from packet-socket rx queue 'rxq': from its rx ring
 * when the port's published params give it one, else with recvmmsg().
 * The ring lives at least as long as the config that names it. */
static uint32_t
read_burst_packet(struct vs_ctx *ctx, const struct vs_rxq_ref *rxq,
                  uint32_t hl)
{
    struct vs_ring *ring = rxq->port->p.rings[rxq->queue];
    return ring ? read_burst_ring(ctx, ring, rxq, hl)
                : read_burst_mmsg(ctx, rxq->fd, hl);
}

/* Reads one burst from rx queue 'rxq' and forwards it under 'cfg' with
 * time 'now_s'.  Returns the number of frames read. */
int
vs_ctx_poll_rxq(struct vs_ctx *ctx, const struct vs_config *cfg,
                const struct vs_rxq_ref *rxq, uint32_t now_s)
{
    struct vs_port *port = rxq->port;
    uint32_t hl = port->p.vnet_hdr_len;
    _Atomic uint8_t *reader = &ctx->sw->rxq_reader[port->p.id][rxq->queue];
    uint8_t free_ = 0;
    if (!atomic_compare_exchange_strong(reader, &free_, 1)) {
        return 0;   /* another worker is reading it: it gets the frames */
    }
    uint64_t t0 = now_ns();
    /* Workers rate-limit on CLOCK_MONOTONIC; the control thread's
     * context (vs_switch_poll_once()) on the caller's clock, which
     * tests move by hand.  Set before the read: a class may forward
     * bursts from inside it (vs_port_class.h). */
    ctx->now_ns = ctx->index < ctx->sw->n_workers
                  ? t0 : (uint64_t) now_s * 1000000000u;
    const struct vs_port_class *cls = vs_port_class_of(port->p.kind);
    uint32_t n = cls ? cls->read_burst(ctx, cfg, rxq, now_s)
                 : port->p.kind == VS_PORT_PACKET
                 ? read_burst_packet(ctx, rxq, hl)
                 : read_burst_fd(ctx, rxq->fd, hl);
    if (n) {
        vs_stat_add(&ctx->stats.polls, 1);
        vs_stat_add(&ctx->stats.frames, n);
        if (n == VS_BURST) {
            vs_stat_add(&ctx->stats.batches_full, 1);
        }
        vs_forward_burst(ctx, cfg, port, n, now_s);
        struct vs_rxq_stats *qs = &ctx->rxq_stats[port->p.id][rxq->queue];
        vs_stat_add(&qs->busy_ns, now_ns() - t0);
        vs_stat_add(&qs->frames, n);
        vs_stat_add(&qs->polls, 1);
    }
    /* Released only once the burst is sent: the next reader's frames
     * cannot overtake these. */
    atomic_store(reader, 0);
    return (int) n;
}

/* Makes ctx's epoll set the rx queues 'cfg' assigns to it, plus its wake
 * eventfd.  A fresh epoll instance each time: old registrations may name
 * fds that have been closed and reused since. */
static void
rebuild_epoll(struct vs_ctx *ctx, const struct vs_config *cfg)
{
    struct epoll_event ev;

    uint64_t junk;
    ssize_t r = read(ctx->wake_fd, &junk, sizeof junk);   /* consume the kick */
    (void) r;

    if (ctx->epfd >= 0) {
        close(ctx->epfd);
    }
    ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->wake_fd, &ev);
    if (ctx->index < VS_MAX_WORKERS) {
        for (uint32_t i = 0; i < cfg->n_rxqs[ctx->index]; i++) {
            struct vs_rxq_ref *rxq = &cfg->rxqs[ctx->index][i];
            ev.events = EPOLLIN;
            ev.data.ptr = rxq;
            epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, rxq->fd, &ev);
        }
    }
    ctx->epoll_generation = cfg->generation;
}

static void
pin_to_cpu(int cpu)
{
    cpu_set_t set;
    if (cpu < 0) {
        return;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* Polls, once, the rx queues of the ports this iteration delivered to.
 *
 * Writing a frame into a TAP (or a veth, through a packet socket) runs the
 * receiver's network stack inside our syscall: a reply (an ARP answer, an echo reply, a TCP ACK) is often
 * queued on the receiver's TAP before writev() returns.  Its owner worker
 * may be asleep on a halted vCPU that takes tens of microseconds to wake;
 * reading the reply here, while it is hot, is what the Linux bridge gets
 * for free by forwarding in the sender's context.  The per-queue reader
 * lock keeps the queue's frames in order. */
static int
poll_touched(struct vs_ctx *ctx, const struct vs_config *cfg, uint32_t now)
{
    int frames = 0;
    uint32_t n = ctx->n_touched;

    ctx->n_touched = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct vs_port *port = cfg->ports[ctx->touched[i]];
        if (!port) {
            continue;
        }
        uint32_t q = ctx->index % port->p.n_queues;
        struct vs_rxq_ref rxq = { port, q, port->p.fds[q] };
        frames += vs_ctx_poll_rxq(ctx, cfg, &rxq, now);
    }
    ctx->n_touched = 0;
    return frames;
}

/* Thread body of a worker; 'arg' is its struct vs_ctx. */
void *
vs_worker_main(void *arg)
{
    struct vs_ctx *ctx = arg;
    struct vs_switch *sw = ctx->sw;
    struct epoll_event evs[64];

    pin_to_cpu(ctx->cpu);
    while (!atomic_load(&sw->stopping)) {
        atomic_store(&ctx->online, 1);
        struct vs_config *cfg = atomic_load(&sw->config);
        if (cfg->generation != ctx->epoll_generation) {
            rebuild_epoll(ctx, cfg);
        }

        uint64_t t_poll = now_ns();
        vs_qos_flush_due(ctx, cfg, t_poll);
        int n = epoll_wait(ctx->epfd, evs, 64, 0);
        if (n <= 0) {
            /* Busy-poll window: for a while after the last frame, poll
             * again instead of sleeping.  A sleeping worker is woken by the
             * sender's syscall and may wait for a scheduler tick to run
             * (4 ms at HZ=250), while frames pile up in the TAP's queue. */
            uint64_t spin_ns = atomic_load_explicit(&sw->busy_poll_ns,
                                                    memory_order_relaxed);
            uint64_t t1 = now_ns();
            if (spin_ns && t1 - ctx->last_rx_ns < spin_ns) {
                vs_stat_add(&ctx->stats.idle_ns, t1 - t_poll);
                atomic_fetch_add(&ctx->quiescent, 1);
                continue;
            }
            uint64_t t0 = t1;
            atomic_store(&ctx->online, 0);
            n = epoll_wait(ctx->epfd, evs, 64, vs_qos_wait_ms(ctx, t0, VS_IDLE_WAIT_MS));
            atomic_store(&ctx->online, 1);
            vs_stat_add(&ctx->stats.idle_ns, now_ns() - t0);
            cfg = atomic_load(&sw->config);
            if (n <= 0 || cfg->generation != ctx->epoll_generation) {
                /* The events may point into a config freed while we were
                 * offline: drop them; level-triggered epoll repeats them. */
                continue;
            }
        }

        uint64_t t0 = now_ns();
        uint32_t now = now_s();
        int frames = 0;
        for (int i = 0; i < n; i++) {
            struct vs_rxq_ref *rxq = evs[i].data.ptr;
            if (!rxq) {
                uint64_t junk;
                ssize_t r = read(ctx->wake_fd, &junk, sizeof junk);
                (void) r;
                continue;
            }
            int got = vs_ctx_poll_rxq(ctx, cfg, rxq, now);
            frames += got;
            if (got == 0 && evs[i].events & (EPOLLERR | EPOLLHUP)) {
                /* A queue in error with nothing to read: a TAP whose device
                 * vanished (with its namespace), a socket whose interface
                 * went down.  Level-triggered epoll would report it forever:
                 * stop polling it until the control plane publishes a new
                 * config, which it does when the link changes. */
                epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, rxq->fd, NULL);
            }
        }
        frames += poll_touched(ctx, cfg, now);
        uint64_t t_end = now_ns();
        vs_stat_add(&ctx->stats.busy_ns, t_end - t0);
        if (frames) {
            ctx->last_rx_ns = t_end;
        }

        /* Quiescent point: nothing of 'cfg' is held past this line. */
        atomic_fetch_add(&ctx->quiescent, 1);
        vs_stat_add(&ctx->stats.quiescent, 1);
    }
    atomic_store(&ctx->online, 0);
    return NULL;
}

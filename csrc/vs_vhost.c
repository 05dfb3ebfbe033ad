/*
 * vs_vhost.c: the vhost-user port class (vs_vhost.h): a device's memory
 * table and queues, and the pipeline's read_burst/egress on them.
 *
 * Batch semantics: read_burst() copies up to a burst of frames out of one
 * guest TX queue and returns all their chains at once; egress() writes
 * one frame into a guest RX queue and publishes it immediately.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vs_gso.h"
#include "vs_port_class.h"
#include "vs_trace.h"
#include "vs_vhost.h"
#include "vs_virtq.h"
#include "vs_vlan.h"
#include "vs_worker.h"

struct vs_vhost {
    uint64_t features;
    struct vs_vmem mem;
    uint32_t n_qp;
    struct vs_virtq vq[2 * VS_VHOST_MAX_QP];
};

static void
unmap_all(struct vs_vmem *m)
{
    for (uint32_t i = 0; i < m->n; i++) {
        if (m->r[i].map) {
            munmap(m->r[i].map, m->r[i].map_len);
        }
    }
    m->n = 0;
}

static int
setup_queues(struct vs_vhost *vh, const struct vs_vhost_params *p)
{
    if (!p->n_qp || p->n_qp > VS_VHOST_MAX_QP) {
        return EINVAL;
    }
    vh->features = p->features;
    vh->n_qp = p->n_qp;
    for (uint32_t i = 0; i < 2 * p->n_qp; i++) {
        int error = vs_virtq_setup(&vh->vq[i], &vh->mem, &p->vrings[i], p->features);
        if (error) {
            return error;
        }
        if (!(i & 1)) {
            /* Guest RX: we never poll it, so we never want its kicks. */
            vh->vq[i].used[0] = VS_VRING_USED_F_NO_NOTIFY;
        }
    }
    return 0;
}

/* Maps the regions of 'p' and points the queues into them.  Returns the
 * device, or NULL with '*error' set (EINVAL: a region or ring the memory
 * table cannot hold; mmap()'s errno). */
struct vs_vhost *
vs_vhost_new(const struct vs_vhost_params *p, int *error)
{
    struct vs_vhost *vh = calloc(1, sizeof *vh);
    *error = ENOMEM;
    if (!vh) {
        return NULL;
    }
    *error = EINVAL;
    if (p->n_regions > VS_VHOST_MAX_REGIONS) {
        goto fail;
    }
    for (uint32_t i = 0; i < p->n_regions; i++) {
        const struct vs_vhost_region *r = &p->regions[i];
        if (!r->size || r->mmap_offset > SIZE_MAX - r->size
            || r->guest_phys_addr > UINT64_MAX - r->size) {
            goto fail;
        }
        size_t len = (size_t) (r->size + r->mmap_offset);
        void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
        if (map == MAP_FAILED) {
            *error = errno;
            goto fail;
        }
        struct vs_vmem_region *mr = &vh->mem.r[vh->mem.n++];
        mr->gpa = r->guest_phys_addr;
        mr->size = r->size;
        mr->uaddr = r->user_addr;
        mr->host = (uint8_t *) map + r->mmap_offset;
        mr->map = map;
        mr->map_len = len;
    }
    *error = setup_queues(vh, p);
    if (*error) {
        goto fail;
    }
    return vh;

fail:
    vs_vhost_free(vh);
    return NULL;
}

/* A device over memory the caller owns: one region at 'mem', guest and
 * user address p->regions[0].guest_phys_addr.  For tests and the fuzzer. */
struct vs_vhost *
vs_vhost_new_unmapped(const struct vs_vhost_params *p, uint8_t *mem, int *error)
{
    struct vs_vhost *vh = calloc(1, sizeof *vh);
    *error = ENOMEM;
    if (!vh) {
        return NULL;
    }
    vh->mem.n = 1;
    vh->mem.r[0].gpa = p->regions[0].guest_phys_addr;
    vh->mem.r[0].uaddr = p->regions[0].guest_phys_addr;
    vh->mem.r[0].size = p->regions[0].size;
    vh->mem.r[0].host = mem;
    *error = setup_queues(vh, p);
    if (*error) {
        vs_vhost_free(vh);
        return NULL;
    }
    return vh;
}

/* Unmaps and frees 'vh' (NULL is fine); the fds stay the caller's. */
void
vs_vhost_free(struct vs_vhost *vh)
{
    if (vh) {
        unmap_all(&vh->mem);
        free(vh);
    }
}

/* Where virtqueue 'vring' goes on: its next avail entry, what
 * VHOST_USER_GET_VRING_BASE answers. */
uint16_t
vs_vhost_last_avail(const struct vs_vhost *vh, uint32_t vring)
{
    return vring < 2 * vh->n_qp ? vh->vq[vring].last_avail : 0;
}

/* Whether some queue of 'vh' was stopped for a broken ring. */
int
vs_vhost_broken(const struct vs_vhost *vh)
{
    for (uint32_t i = 0; i < 2 * vh->n_qp; i++) {
        if (atomic_load(&vh->vq[i].broken)) {
            return 1;
        }
    }
    return 0;
}

static void
parse_hdr(const uint8_t *b, struct vs_vnet_hdr *vh)
{
    vh->flags = b[0];
    vh->gso_type = b[1];
    memcpy(&vh->hdr_len, b + 2, 2);
    memcpy(&vh->gso_size, b + 4, 2);
    memcpy(&vh->csum_start, b + 6, 2);
    memcpy(&vh->csum_offset, b + 8, 2);
    vh->num_buffers = 0;
}

static void
rearm(struct vs_virtq *vq)
{
    uint64_t one = 1;
    ssize_t r = write(vq->kick_fd, &one, sizeof one);
    (void) r;
}

/* Reads a burst from the guest TX queue behind rx queue 'rxq' (see the
 * interrupt-mode notes in vs_vhost.h). */
uint32_t
vs_vhost_read_burst(struct vs_ctx *ctx, const struct vs_config *cfg,
                    const struct vs_rxq_ref *rxq, uint32_t now_s)
{
    struct vs_port *port = rxq->port;
    struct vs_vhost *vh = port->p.vhost;
    struct vs_virtq *vq = &vh->vq[2 * rxq->queue + 1];
    uint32_t id = port->p.id;
    int32_t lens[VS_BURST];

    if (atomic_load_explicit(&vq->broken, memory_order_relaxed)) {
        /* Stopped for good: swallow the guest's kicks, or level-triggered
         * epoll would hand us the queue forever. */
        uint64_t junk;
        ssize_t r = read(vq->kick_fd, &junk, sizeof junk);
        (void) r;
        return 0;
    }
    uint32_t got = vs_virtq_dequeue(&vh->mem, vq, VS_BURST, ctx->rx_hdrs,
                                    ctx->rx_bufs, VS_FRAME_MAX, VS_FRAME_MAX,
                                    lens);
    if (atomic_load_explicit(&vq->broken, memory_order_relaxed)) {
        vs_count(ctx, id, VS_C_DROP_VHOST_RING_BROKEN, 1);
    }
    if (got) {
        if (vq->notify_on) {
            vs_virtq_kick_off(vq);
            rearm(vq);      /* polled again whether or not the guest kicks */
        }
    } else if (vq->kick_fd >= 0) {
        uint64_t junk;
        ssize_t r = read(vq->kick_fd, &junk, sizeof junk);
        (void) r;
        if (vs_virtq_kick_arm(vq)) {
            rearm(vq);
        }
    }

    uint32_t n = 0;
    for (uint32_t i = 0; i < got; i++) {
        if (lens[i] < 0) {
            /* Received and dropped here; the pipeline counts the rest. */
            vs_count(ctx, id, VS_C_RX_PACKETS, 1);
            vs_count(ctx, id, -lens[i], 1);
            continue;
        }
        struct vs_pkt *pkt = &ctx->pkts[n];
        memset(pkt, 0, sizeof *pkt);
        pkt->data = ctx->rx_bufs + (size_t) i * VS_FRAME_MAX;
        pkt->len = (uint32_t) lens[i];
        parse_hdr(ctx->rx_hdrs[i], &pkt->vh);
        n++;
    }
    return n;
}

uint32_t
vs_vhost_learn_port(const struct vs_port *port, const struct vs_pkt *pkt)
{
    return port->p.id;
}

/* Writes 'vh' in the virtio-net layout, 12 bytes (num_buffers zero). */
static void
put_hdr(uint8_t *out, const struct vs_vnet_hdr *vh)
{
    out[0] = vh->flags;
    out[1] = vh->gso_type;
    memcpy(out + 2, &vh->hdr_len, 2);
    memcpy(out + 4, &vh->gso_size, 2);
    memcpy(out + 6, &vh->csum_start, 2);
    memcpy(out + 8, &vh->csum_offset, 2);
    out[10] = out[11] = 0;
}

static void
lock_vq(struct vs_virtq *vq)
{
    int expected = 0;
    while (!atomic_compare_exchange_weak_explicit(&vq->lock, &expected, 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
        expected = 0;
    }
}

/* Remembers that this burst wrote into 'vq'; returns 0 when the list is
 * full (the caller publishes at once). */
static int
note_pending(struct vs_ctx *ctx, struct vs_virtq *vq)
{
    for (uint32_t i = 0; i < ctx->n_vhost_pending; i++) {
        if (ctx->vhost_pending[i] == vq) {
            return 1;
        }
    }
    if (ctx->n_vhost_pending == VS_VHOST_PENDING) {
        return 0;
    }
    ctx->vhost_pending[ctx->n_vhost_pending++] = vq;
    return 1;
}

/* Shows the guests what this burst wrote into their RX queues and
 * interrupts those that asked: called by vs_tx_flush() at the end of
 * every burst, before the worker's quiescent point (the queues' memory is
 * live until then). */
void
vs_vhost_flush(struct vs_ctx *ctx)
{
    for (uint32_t i = 0; i < ctx->n_vhost_pending; i++) {
        struct vs_virtq *vq = ctx->vhost_pending[i];
        lock_vq(vq);
        vs_virtq_publish_used(vq, vq->published);
        atomic_store_explicit(&vq->lock, 0, memory_order_release);
    }
    ctx->n_vhost_pending = 0;
}

/* Enqueues one frame ('iov' after the header slot iov[0]) on 'port''s
 * guest RX queue for this worker, counting the outcome. */
static void
send_frame(struct vs_ctx *ctx, struct vs_port *port, struct iovec *iov,
           int n, uint32_t len)
{
    struct vs_vhost *vh = port->p.vhost;
    struct vs_virtq *vq = &vh->vq[2 * (ctx->index % vh->n_qp)];

    if (ctx->trace) {
        vs_trace_sent(ctx, port->p.id);
        return;
    }
    iov[0].iov_len = vq->hdr_len;
    lock_vq(vq);
    int r = vs_virtq_enqueue(&vh->mem, vq, iov, n);
    if (!r && !note_pending(ctx, vq)) {
        vs_virtq_publish_used(vq, vq->published);   /* no room to defer */
    }
    atomic_store_explicit(&vq->lock, 0, memory_order_release);
    if (r) {
        vs_count(ctx, port->p.id, r, 1);
        return;
    }
    vs_count(ctx, port->p.id, VS_C_TX_PACKETS, 1);
    vs_count(ctx, port->p.id, VS_C_TX_BYTES, len);
}

struct seg_ctx {
    struct vs_ctx *ctx;
    struct vs_port *port;
};

static int
emit_segment(void *arg, const uint8_t *seg, uint32_t seg_len)
{
    struct seg_ctx *sc = arg;
    uint8_t hdr[VS_VNET_HDR_MRG_LEN] = { 0 };
    struct iovec iov[2] = { { hdr, 0 }, { (void *) seg, seg_len } };
    send_frame(sc->ctx, sc->port, iov, 2, seg_len);
    return 0;
}

/* A super-frame for a guest that did not negotiate TSO: restaged with the
 * port's Ethernet header and cut into segments. */
static void
egress_segmented(struct vs_ctx *ctx, struct vs_port *port, struct vs_pkt *pkt)
{
    uint8_t l2[VS_ETH_VLAN_HLEN];
    uint32_t l2_len = vs_vlan_egress_l2(port, pkt, l2);
    uint32_t rest = pkt->len - pkt->inner_off;
    struct vs_vnet_hdr vh = pkt->vh;

    if (l2_len + rest > VS_FRAME_MAX) {
        vs_count(ctx, port->p.id, VS_C_DROP_OVERSIZE, 1);
        return;
    }
    memcpy(ctx->stage_buf, l2, l2_len);
    memcpy(ctx->stage_buf + l2_len, pkt->data + pkt->inner_off, rest);
    vs_vnet_hdr_shift(&vh, (int) l2_len - (int) pkt->inner_off);
    struct seg_ctx sc = { ctx, port };
    int r = vs_gso_segment(ctx->stage_buf, l2_len + rest, &vh, ctx->seg_buf,
                           VS_FRAME_MAX, emit_segment, &sc);
    if (r < 0) {
        vs_count(ctx, port->p.id, -r, 1);
    } else if (r > 0) {
        vs_count(ctx, port->p.id, VS_C_SEGMENTED, 1);
    }
}

/* Sends 'pkt' into the guest behind 'port'. */
void
vs_vhost_egress(struct vs_ctx *ctx, struct vs_port *port, struct vs_pkt *pkt)
{
    int gso = vs_vnet_hdr_is_gso(&pkt->vh);
    if (gso && !port->p.offload_tso) {
        egress_segmented(ctx, port, pkt);
        return;
    }
    if (!gso && port->p.mtu && pkt->len - pkt->inner_off - 2 > port->p.mtu) {
        vs_count(ctx, port->p.id, VS_C_DROP_OVERSIZE, 1);
        return;
    }
    uint8_t hdr[VS_VNET_HDR_MRG_LEN];
    uint8_t l2[VS_ETH_VLAN_HLEN];
    uint32_t l2_len = vs_vlan_egress_l2(port, pkt, l2);
    struct vs_vnet_hdr vh = pkt->vh;
    vs_vnet_hdr_shift(&vh, (int) l2_len - (int) pkt->inner_off);
    put_hdr(hdr, &vh);
    uint32_t rest = pkt->len - pkt->inner_off;
    struct iovec iov[3] = {
        { hdr, 0 }, { l2, l2_len }, { pkt->data + pkt->inner_off, rest },
    };
    send_frame(ctx, port, iov, 3, l2_len + rest);
}

const struct vs_port_class vs_vhost_class = {
    .name = "vhostuser",
    .read_burst = vs_vhost_read_burst,
    .egress = vs_vhost_egress,
    .learn_port = vs_vhost_learn_port,
    .split_horizon = 0,
};

/* Test and fuzzer entry points (vs_vhost.h). */
uint32_t
vs_vhost_test_dequeue(struct vs_vhost *vh, uint32_t vring, uint8_t *out,
                      uint32_t out_len, uint64_t *drops)
{
    static __thread uint8_t hdrs[VS_BURST][12];
    int32_t lens[VS_BURST];
    if (vring >= 2 * vh->n_qp || !(vring & 1)) {
        return 0;
    }
    uint32_t stride = 2048;
    uint8_t *bufs = malloc((size_t) VS_BURST * stride);
    if (!bufs) {
        return 0;
    }
    uint32_t got = vs_virtq_dequeue(&vh->mem, &vh->vq[vring], VS_BURST, hdrs,
                                    bufs, stride, stride, lens);
    uint32_t off = 0, n = 0;
    for (uint32_t i = 0; i < got; i++) {
        if (lens[i] < 0) {
            if (-lens[i] < VS_N_COUNTERS) {
                drops[-lens[i]]++;
            }
            continue;
        }
        if (off + 4 + (uint32_t) lens[i] > out_len) {
            break;
        }
        uint32_t l = (uint32_t) lens[i];
        memcpy(out + off, &l, 4);
        memcpy(out + off + 4, bufs + (size_t) i * stride, l);
        off += 4 + l;
        n++;
    }
    if (atomic_load(&vh->vq[vring].broken)) {
        drops[VS_C_DROP_VHOST_RING_BROKEN]++;
    }
    free(bufs);
    return n;
}

int
vs_vhost_test_enqueue(struct vs_vhost *vh, uint32_t vring, const uint8_t *frame,
                      uint32_t len)
{
    if (vring >= 2 * vh->n_qp || (vring & 1)) {
        return EINVAL;
    }
    struct vs_virtq *vq = &vh->vq[vring];
    uint8_t hdr[VS_VNET_HDR_MRG_LEN];
    if (len < vq->hdr_len) {
        return VS_C_DROP_RUNT;
    }
    memcpy(hdr, frame, vq->hdr_len);
    struct iovec iov[2] = {
        { hdr, vq->hdr_len }, { (void *) (frame + vq->hdr_len), len - vq->hdr_len },
    };
    int r = vs_virtq_enqueue(&vh->mem, vq, iov, 2);
    vs_virtq_publish_used(vq, vq->published);
    return r;
}

/*
 * vs_mirror.c: copies of selected frames to mirror output ports (see
 * vs_mirror.h for what is selected and the guarantees).
 *
 * Batch semantics: none of its own.  vs_forward_burst() calls vs_mirror_rx()
 * for each frame of the burst that its ingress port accepted, in burst
 * order, after the whole burst is classified; egress() calls vs_mirror_tx()
 * for each (frame, egress port) just before the frame is handed to the
 * port.  A copy is sent at once, never queued: it cannot hold a burst's rx
 * buffers past the burst, and a full output port costs one failed syscall.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "vs_mirror.h"
#include "vs_trace.h"
#include "vs_vlan.h"

void
vs_mirror_set_free(struct vs_mirror_set *set)
{
    free(set);
}

/* Adds a copy of mirror 'mp' to unpublished config 'cfg', whose ports must
 * already be added.  Returns 0, EINVAL (bad slot, output port absent or
 * also selected), EEXIST (slot taken) or ENOMEM. */
int
vs_config_add_mirror(struct vs_config *cfg, const struct vs_mirror_params *mp)
{
    if (mp->id >= VS_MAX_MIRRORS || mp->output_port >= VS_MAX_PORTS
        || !cfg->ports[mp->output_port]
        || vs_port_bit(mp->src_ports, mp->output_port)
        || vs_port_bit(mp->dst_ports, mp->output_port)) {
        return EINVAL;
    }
    if (!cfg->mirrors) {
        cfg->mirrors = calloc(1, sizeof *cfg->mirrors);
        if (!cfg->mirrors) {
            return ENOMEM;
        }
    }
    struct vs_mirror_set *set = cfg->mirrors;
    for (uint32_t i = 0; i < set->n; i++) {
        if (set->m[i].id == mp->id) {
            return EEXIST;
        }
    }
    if (set->n == VS_MAX_MIRRORS) {
        return ENOSPC;
    }
    set->m[set->n++] = *mp;
    set->outputs[mp->output_port >> 6] |= 1ull << (mp->output_port & 63);
    for (uint32_t w = 0; w < VS_PORT_WORDS; w++) {
        set->any_src[w] |= mp->src_ports[w];
        set->any_dst[w] |= mp->dst_ports[w];
    }
    return 0;
}

/* Sums mirror slot 'id''s counters over every context into 'out'.
 * Returns 0 or EINVAL. */
int
vs_switch_mirror_stats(const struct vs_switch *sw, uint32_t id,
                       struct vs_mirror_stats *out)
{
    memset(out, 0, sizeof *out);
    if (id >= VS_MAX_MIRRORS) {
        return EINVAL;
    }
    for (uint32_t w = 0; w <= sw->n_workers; w++) {
        const uint64_t *c = sw->ctxs[w].mirror_stats[id];
        out->packets += __atomic_load_n(&c[VS_MIRROR_SENT], __ATOMIC_RELAXED);
        out->dropped += __atomic_load_n(&c[VS_MIRROR_DROPPED], __ATOMIC_RELAXED);
    }
    return 0;
}

static void
count(struct vs_ctx *ctx, uint32_t id, int which)
{
    uint64_t *c = &ctx->mirror_stats[id][which];
    __atomic_store_n(c, *c + 1, __ATOMIC_RELAXED);
}

static int
selects_vlan(const struct vs_mirror_params *m, uint16_t vlan)
{
    return m->all_vlans || vs_vlan_bit(m->vlans, vlan);
}

/* Sends one copy for mirror 'm': the pieces 'a' ('a_len' bytes) and 'b'
 * ('b_len'), with virtio-net header 'vh', cut to the mirror's snaplen. */
static void
send_copy(struct vs_ctx *ctx, const struct vs_config *cfg,
          const struct vs_mirror_params *m, const struct vs_vnet_hdr *vh,
          const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
    const struct vs_port *out = cfg->ports[m->output_port];
    uint32_t hl = out->p.vnet_hdr_len;
    int gso = vs_vnet_hdr_is_gso(vh);
    int cut = 0;

    if (m->snaplen && a_len + b_len > m->snaplen) {
        cut = 1;
        if (a_len >= m->snaplen) {
            a_len = m->snaplen;
            b_len = 0;
        } else {
            b_len = m->snaplen - a_len;
        }
    }
    if (ctx->trace) {
        vs_trace_note(ctx, VS_TRACE_MIRROR, "mirror %u: copy of %u bytes to port %u",
                      m->id, a_len + b_len, m->output_port);
        return;
    }
    if (!out->p.up || (gso && !cut && (!hl || !out->p.offload_tso))) {
        count(ctx, m->id, VS_MIRROR_DROPPED);
        return;
    }

    /* A cut copy's offloads no longer describe it: it goes out as it is,
     * header all zeroes (a capture tool shows what was there). */
    uint8_t vnet[VS_VNET_HDR_MRG_LEN] = { 0 };
    if (hl && !cut) {
        vnet[0] = vh->flags;
        vnet[1] = vh->gso_type;
        memcpy(vnet + 2, &vh->hdr_len, 2);
        memcpy(vnet + 4, &vh->gso_size, 2);
        memcpy(vnet + 6, &vh->csum_start, 2);
        memcpy(vnet + 8, &vh->csum_offset, 2);
    }
    struct iovec iov[3];
    int n = 0;
    if (hl) {
        iov[n].iov_base = vnet;
        iov[n++].iov_len = hl;
    }
    iov[n].iov_base = (void *) a;
    iov[n++].iov_len = a_len;
    if (b_len) {
        iov[n].iov_base = (void *) b;
        iov[n++].iov_len = b_len;
    }

    int fd = out->p.fds[ctx->index % out->p.n_queues];
    ssize_t r;
    do {
        if (out->p.kind == VS_PORT_PACKET) {
            struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t) n };
            r = sendmsg(fd, &msg, MSG_DONTWAIT);
        } else {
            r = writev(fd, iov, n);
        }
    } while (r < 0 && errno == EINTR);
    count(ctx, m->id, r < 0 ? VS_MIRROR_DROPPED : VS_MIRROR_SENT);
}

/* Copies frame 'pkt', just accepted on port 'in', as it arrived, to every
 * mirror of 'cfg' that selects it. */
void
vs_mirror_rx(struct vs_ctx *ctx, const struct vs_config *cfg,
             const struct vs_port *in, const struct vs_pkt *pkt)
{
    const struct vs_mirror_set *set = cfg->mirrors;
    if (!vs_port_bit(set->any_src, in->p.id)) {
        return;
    }
    for (uint32_t i = 0; i < set->n; i++) {
        const struct vs_mirror_params *m = &set->m[i];
        if (vs_port_bit(m->src_ports, in->p.id) && selects_vlan(m, pkt->vlan)) {
            send_copy(ctx, cfg, m, &pkt->vh, pkt->data, pkt->len, NULL, 0);
        }
    }
}

/* Copies frame 'pkt' as it leaves port 'out' (Ethernet header 'l2',
 * 'l2_len' bytes up to the EtherType, then the rest of the frame; offloads
 * 'vh') to every mirror of 'cfg' that selects it. */
void
vs_mirror_tx(struct vs_ctx *ctx, const struct vs_config *cfg,
             const struct vs_port *out, const struct vs_pkt *pkt,
             const struct vs_vnet_hdr *vh, const uint8_t *l2, uint32_t l2_len)
{
    const struct vs_mirror_set *set = cfg->mirrors;
    if (!vs_port_bit(set->any_dst, out->p.id)) {
        return;
    }
    for (uint32_t i = 0; i < set->n; i++) {
        const struct vs_mirror_params *m = &set->m[i];
        if (vs_port_bit(m->dst_ports, out->p.id) && selects_vlan(m, pkt->vlan)) {
            send_copy(ctx, cfg, m, vh, l2, l2_len, pkt->data + pkt->inner_off,
                      pkt->len - pkt->inner_off);
        }
    }
}

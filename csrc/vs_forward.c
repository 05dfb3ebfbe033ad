/*
 * vs_forward.c: one burst from one rx queue, from parse to transmit.
 *
 * Batch semantics (as in VPP's l2_learn.c): the whole burst is first
 * checked, classified into its VLAN and learned; then every frame is looked
 * up and sent, based on the end state of the MAC table.  A burst is at most
 * VS_BURST frames from one rx queue of one port.
 *
 * Frames are never copied on the common path.  A frame leaves through a
 * scatter list: the egress port's virtio-net header and the frame's MAC
 * addresses, plus a VLAN tag where the egress port wants one, in a small
 * header buffer; then the rest of the frame, straight from the rx buffer.
 *
 * Offloads pass through: a partial checksum or a GSO super-frame goes out
 * as it came in when the egress port accepts it (its virtio-net header moved
 * by the 4 bytes of a tag we add or strip).  When it does not, the checksum
 * is completed in place (once, for every egress port of the frame) and the
 * super-frame is segmented in C.
 *
 * Every frame that is not delivered is counted under exactly one drop
 * reason.  Frames to packet-socket ports are queued in the worker's tx list
 * and sent with one sendmmsg() per port at the end of the burst; TAP queues
 * take one writev() per frame, their only interface.
 *
 * Observation (mirrors, captures, trace: vs_mirror.h, vs_capture.h,
 * vs_trace.h) hangs off one flag, ctx->observe, set per burst; a trace
 * context runs this same code with learning and transmission turned off
 * where they happen (tests of ctx->trace) and notes each decision.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vs_capture.h"
#include "vs_csum.h"
#include "vs_gso.h"
#include "vs_guard.h"
#include "vs_mirror.h"
#include "vs_policy.h"
#include "vs_port_class.h"
#include "vs_qos.h"
#include "vs_trace.h"
#include "vs_vlan.h"
#include "vs_worker.h"

/* Counts 'pkt' as not delivered to port 'port_id' for 'reason', for the
 * counters, the trace and captures with --drops, without dropping it for
 * its other destinations. */
static void
note_drop(struct vs_ctx *ctx, struct vs_pkt *pkt, uint32_t port_id, int reason)
{
    vs_count(ctx, port_id, reason, 1);
    if (__builtin_expect(ctx->observe, 0)) {
        if (ctx->trace) {
            vs_trace_drop(ctx, port_id, reason);
        } else if (vs_capture_on(ctx->cfg, port_id)) {
            vs_capture_frame(ctx, port_id, VS_CAP_DROPS, reason, pkt->data,
                             pkt->len, NULL, 0);
        }
    }
}

static void
drop(struct vs_ctx *ctx, struct vs_pkt *pkt, uint32_t port_id, int reason)
{
    pkt->dropped = 1;
    note_drop(ctx, pkt, port_id, reason);
}

/* Writes the virtio-net header 'vh' into 'out' in the kernel's legacy
 * layout (native byte order), 'len' bytes (10 or 12). */
static void
put_vnet_hdr(uint8_t *out, const struct vs_vnet_hdr *vh, uint32_t len)
{
    out[0] = vh->flags;
    out[1] = vh->gso_type;
    memcpy(out + 2, &vh->hdr_len, 2);
    memcpy(out + 4, &vh->gso_size, 2);
    memcpy(out + 6, &vh->csum_start, 2);
    memcpy(out + 8, &vh->csum_offset, 2);
    if (len > VS_VNET_HDR_LEN) {
        memset(out + VS_VNET_HDR_LEN, 0, len - VS_VNET_HDR_LEN);
    }
}

/* Remembers that this iteration delivered to port 'id', for the worker to
 * poll its rx queue before sleeping (see poll_touched() in vs_worker.c). */
static void
note_touched(struct vs_ctx *ctx, uint32_t id)
{
    for (uint32_t i = 0; i < ctx->n_touched; i++) {
        if (ctx->touched[i] == id) {
            return;
        }
    }
    if (ctx->n_touched < VS_TOUCHED_MAX) {
        ctx->touched[ctx->n_touched++] = id;
    }
}

/* Sends the 'iovcnt' pieces in 'iov' ('len' Ethernet bytes) to 'port'
 * right now, with one writev() on this worker's queue of the port. */
static void
send_now(struct vs_ctx *ctx, struct vs_port *port, struct iovec *iov,
         int iovcnt, uint32_t len)
{
    int fd = port->p.fds[ctx->index % port->p.n_queues];
    ssize_t n;

    if (ctx->trace) {
        vs_trace_sent(ctx, port->p.id);
        return;
    }
    do {
        n = writev(fd, iov, iovcnt);
    } while (n < 0 && errno == EINTR);

    if (n < 0) {
        vs_count(ctx, port->p.id, VS_C_DROP_TX_ERROR, 1);
        return;
    }
    note_touched(ctx, port->p.id);
    vs_count(ctx, port->p.id, VS_C_TX_PACKETS, 1);
    vs_count(ctx, port->p.id, VS_C_TX_BYTES, len);
}

/* Sends every queued frame: one sendmmsg() per packet-socket fd, frames of
 * one port kept in order.  Called at the end of each burst (the queued
 * frames point into the burst's rx buffers) and when the queue fills. */
void
vs_tx_flush(struct vs_ctx *ctx)
{
    struct mmsghdr msgs[VS_TX_PENDING];
    uint8_t sent[VS_TX_PENDING];

    if (ctx->n_vhost_pending) {
        vs_vhost_flush(ctx);
    }

    memset(sent, 0, ctx->n_tx);
    for (uint32_t i = 0; i < ctx->n_tx; i++) {
        if (sent[i]) {
            continue;
        }
        struct vs_port *port = ctx->tx[i].port;
        int fd = ctx->tx[i].fd;
        uint32_t idx[VS_TX_PENDING];
        unsigned int n = 0;

        for (uint32_t j = i; j < ctx->n_tx; j++) {
            if (!sent[j] && ctx->tx[j].fd == fd) {
                struct vs_tx_entry *e = &ctx->tx[j];
                memset(&msgs[n], 0, sizeof msgs[n]);
                msgs[n].msg_hdr.msg_iov = e->iov;
                msgs[n].msg_hdr.msg_iovlen = (size_t) e->iovcnt;
                msgs[n].msg_hdr.msg_name = (void *) e->name;
                msgs[n].msg_hdr.msg_namelen = e->namelen;
                idx[n++] = j;
                sent[j] = 1;
            }
        }

        unsigned int done = 0;
        while (done < n) {
            int r = sendmmsg(fd, msgs + done, n - done, MSG_DONTWAIT);
            if (r < 0) {
                if (errno == EINTR) {
                    continue;
                }
                /* The first frame was refused (ENOBUFS, EMSGSIZE, a bad
                 * header...): count it and go on with the rest. */
                vs_count(ctx, port->p.id, VS_C_DROP_TX_ERROR, 1);
                done++;
                continue;
            }
            if (r > 0) {
                note_touched(ctx, port->p.id);
            }
            for (int k = 0; k < r; k++) {
                vs_count(ctx, port->p.id, VS_C_TX_PACKETS, 1);
                vs_count(ctx, port->p.id, VS_C_TX_BYTES,
                         ctx->tx[idx[done + k]].len);
            }
            done += (unsigned int) r;
        }
    }
    ctx->n_tx = 0;
}

struct seg_emit_ctx {
    struct vs_ctx *ctx;
    struct vs_port *port;
};

/* vs_gso_segment() callback: sends one finished segment (fully
 * checksummed, so its virtio-net header is all zeroes).  Segments fit the
 * port's MTU: egress() has checked the super-frame's MSS. */
static int
emit_segment(void *arg, const uint8_t *seg, uint32_t seg_len)
{
    struct seg_emit_ctx *sc = arg;
    uint8_t vnet[VS_VNET_HDR_MRG_LEN] = { 0 };
    struct iovec iov[2];
    int n = 0;

    if (sc->port->p.vnet_hdr_len) {
        iov[n].iov_base = vnet;
        iov[n++].iov_len = sc->port->p.vnet_hdr_len;
    }
    iov[n].iov_base = (void *) seg;
    iov[n++].iov_len = seg_len;
    send_now(sc->ctx, sc->port, iov, n, seg_len);
    return 0;
}

/* Sends GSO super-frame 'pkt' to 'port', which cannot take it whole, as
 * MSS-sized segments.  The super-frame is first restaged with the port's
 * Ethernet header when that differs from the one it came with. */
static void
egress_segmented(struct vs_ctx *ctx, struct vs_port *port, struct vs_pkt *pkt)
{
    uint8_t l2[VS_ETH_VLAN_HLEN];
    uint32_t l2_len = vs_vlan_egress_l2(port, pkt, l2);
    const uint8_t *frame = pkt->data;
    uint32_t len = pkt->len;
    struct vs_vnet_hdr vh = pkt->vh;

    if (l2_len != pkt->inner_off || memcmp(l2, pkt->data, l2_len)) {
        uint32_t rest = pkt->len - pkt->inner_off;
        if (l2_len + rest > VS_FRAME_MAX) {
            vs_count(ctx, port->p.id, VS_C_DROP_OVERSIZE, 1);
            return;
        }
        memcpy(ctx->stage_buf, l2, l2_len);
        memcpy(ctx->stage_buf + l2_len, pkt->data + pkt->inner_off, rest);
        vs_vnet_hdr_shift(&vh, (int) l2_len - (int) pkt->inner_off);
        frame = ctx->stage_buf;
        len = l2_len + rest;
    }

    struct seg_emit_ctx sc = { ctx, port };
    int r = vs_gso_segment(frame, len, &vh, ctx->seg_buf, VS_FRAME_MAX,
                           emit_segment, &sc);
    if (r < 0) {
        vs_count(ctx, port->p.id, -r, 1);
    } else if (r > 0) {
        vs_count(ctx, port->p.id, VS_C_SEGMENTED, 1);
    }
}

/* Whether the segments super-frame 'pkt' stands for fit 'port''s MTU,
 * whether the port's device cuts them (TSO) or we do.  An MSS chosen for
 * a larger MTU would put frames on the wire that the peer must drop: a
 * physical switch drops the super-frame instead, and so does the Linux
 * bridge (is_skb_forwardable()); it is counted once.  A super-frame we
 * cannot parse passes: a TSO device validates it, and vs_gso_segment()
 * refuses it with its own reason. */
static int
gso_fits_mtu(struct vs_ctx *ctx, const struct vs_port *port,
             const struct vs_pkt *pkt)
{
    uint32_t seg_l3_len;

    if (!port->p.mtu
        || vs_gso_seg_l3_len(pkt->data, pkt->len, &pkt->vh, &seg_l3_len)
        || seg_l3_len <= port->p.mtu) {
        return 1;
    }
    vs_count(ctx, port->p.id, VS_C_DROP_OVERSIZE, 1);
    return 0;
}

/* What egress() does beyond sending when something observes: notes the
 * frame's egress tagging and offloads (trace), copies it to the mirrors and
 * captures that select 'port'.  'vh' and 'l2' ('l2_len' bytes up to the
 * EtherType) are the frame's header on 'port'. */
static void
observe_tx(struct vs_ctx *ctx, const struct vs_port *port, const struct vs_pkt *pkt,
           const struct vs_vnet_hdr *vh, const uint8_t *l2, uint32_t l2_len)
{
    const struct vs_config *cfg = ctx->cfg;

    if (ctx->trace) {
        const char *off = vs_vnet_hdr_is_gso(vh) ? "super-frame passed through (TSO)"
                          : (vh->flags & VS_VNET_F_NEEDS_CSUM)
                          ? "partial checksum passed through" : "none needed";
        if (l2_len == 16) {
            vs_trace_note(ctx, VS_TRACE_EGRESS, "port %u: tagged VLAN %u (pcp %u), "
                          "offloads: %s", port->p.id, pkt->vlan, pkt->pcp, off);
        } else {
            vs_trace_note(ctx, VS_TRACE_EGRESS, "port %u: untagged, offloads: %s",
                          port->p.id, off);
        }
    }
    if (cfg->mirrors) {
        vs_mirror_tx(ctx, cfg, port, pkt, vh, l2, l2_len);
    }
    if (vs_capture_on(cfg, port->p.id)) {
        vs_capture_frame(ctx, port->p.id, VS_CAP_TX, -1, l2, l2_len,
                         pkt->data + pkt->inner_off, pkt->len - pkt->inner_off);
    }
}

/* Sends 'pkt' out of 'port' with the port's tagging and offloads. */
static void
egress(struct vs_ctx *ctx, struct vs_port *port, struct vs_pkt *pkt)
{
    int gso = vs_vnet_hdr_is_gso(&pkt->vh);

    if (gso && !gso_fits_mtu(ctx, port, pkt)) {
        return;
    }
    const struct vs_port_class *cls = vs_port_class_of(port->p.kind);
    if (cls) {
        if (__builtin_expect(ctx->observe, 0)) {
            /* What enters the overlay is the frame untagged (the VNI says
             * its VLAN): mirrors and captures see it so, before the class
             * encapsulates (or segments) it. */
            struct vs_vnet_hdr vh = pkt->vh;
            vs_vnet_hdr_shift(&vh, 12 - (int) pkt->inner_off);
            observe_tx(ctx, port, pkt, &vh, pkt->data, 12);
        }
        cls->egress(ctx, port, pkt);
        return;
    }
    if (gso && !port->p.offload_tso) {
        vs_trace_note(ctx, VS_TRACE_OFFLOAD, "port %u has no TSO: super-frame "
                      "(gso_size %u) segmented in software", port->p.id,
                      pkt->vh.gso_size);
        egress_segmented(ctx, port, pkt);
        return;
    }
    if (!gso && port->p.mtu
        && pkt->len - pkt->inner_off - 2 > port->p.mtu) {
        vs_count(ctx, port->p.id, VS_C_DROP_OVERSIZE, 1);
        return;
    }

    struct vs_tx_entry local;
    struct vs_tx_entry *e = &local;
    if (port->p.kind == VS_PORT_PACKET && !ctx->trace) {
        if (ctx->n_tx == VS_TX_PENDING) {
            vs_tx_flush(ctx);
        }
        e = &ctx->tx[ctx->n_tx++];
    }

    uint32_t hl = port->p.vnet_hdr_len;
    uint32_t l2_len = vs_vlan_egress_l2(port, pkt, e->hdr + hl);
    struct vs_vnet_hdr vh = pkt->vh;
    vs_vnet_hdr_shift(&vh, (int) l2_len - (int) pkt->inner_off);
    if (hl) {
        put_vnet_hdr(e->hdr, &vh, hl);
    }
    if (__builtin_expect(ctx->observe, 0)) {
        observe_tx(ctx, port, pkt, &vh, e->hdr + hl, l2_len);
    }
    e->port = port;
    e->name = NULL;
    e->namelen = 0;
    e->fd = port->p.fds[ctx->index % port->p.n_queues];
    e->len = l2_len + (pkt->len - pkt->inner_off);
    e->iov[0].iov_base = e->hdr;
    e->iov[0].iov_len = hl + l2_len;
    e->iov[1].iov_base = pkt->data + pkt->inner_off;
    e->iov[1].iov_len = pkt->len - pkt->inner_off;
    e->iovcnt = 2;

    if (port->p.kind != VS_PORT_PACKET || ctx->trace) {
        send_now(ctx, port, e->iov, e->iovcnt, e->len);
    }
}

/* Completes 'pkt''s partial checksum in place if any of its 'n'
 * destinations cannot carry it, and marks it complete for all of them:
 * a finished checksum is right for every port, a partial one is not. */
static int
settle_checksum(struct vs_ctx *ctx, struct vs_pkt *pkt, struct vs_port **dests,
                uint32_t n)
{
    if (!(pkt->vh.flags & VS_VNET_F_NEEDS_CSUM) || vs_vnet_hdr_is_gso(&pkt->vh)) {
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!dests[i]->p.offload_csum) {
            int r = vs_csum_complete(pkt->data, pkt->len, &pkt->vh);
            if (r) {
                return r;
            }
            pkt->vh.flags = VS_VNET_F_DATA_VALID;
            pkt->vh.csum_start = pkt->vh.csum_offset = 0;
            vs_count(ctx, dests[i]->p.id, VS_C_CSUM_FILLED, 1);
            vs_trace_note(ctx, VS_TRACE_OFFLOAD, "partial checksum completed in "
                          "software: port %u has no checksum offload",
                          dests[i]->p.id);
            return 0;
        }
    }
    return 0;
}

static void send_to(struct vs_ctx *, const struct vs_port *in, struct vs_pkt *,
                    struct vs_port **dests, uint32_t n);

/* Why port 'p' is not in the flood set of a frame from port 'in' on
 * 'vlan' under 'cfg', or NULL when it is. */
static inline const char *
flood_skip(const struct vs_config *cfg, const struct vs_port *in,
           const struct vs_port *p, uint16_t vlan)
{
    if (p == in) {
        return "ingress port";
    }
    if (vs_port_split(in->p.kind, p->p.kind)) {
        return "split horizon (overlay to overlay)";
    }
    if (!p->p.up) {
        return "link down";
    }
    if (!vs_vlan_carries(p, vlan)) {
        return "VLAN not carried";
    }
    if (vs_mirror_is_output(cfg, p->p.id)) {
        return "mirror output port";
    }
    return NULL;
}

/* Looks up where 'pkt' goes and sends it there: one port for a known
 * unicast destination, every other up port of its VLAN otherwise. */
static void
deliver(struct vs_ctx *ctx, const struct vs_config *cfg, struct vs_port *in,
        struct vs_pkt *pkt)
{
    struct vs_port *dests[VS_MAX_PORTS];
    uint32_t n = 0;

    if (pkt->out_port != VS_PORT_NONE) {
        dests[n++] = cfg->ports[pkt->out_port];
    } else {
        for (uint32_t i = 0; i < cfg->n_ports; i++) {
            struct vs_port *p = cfg->ports[cfg->port_ids[i]];
            const char *why = flood_skip(cfg, in, p, pkt->vlan);
            if (!why) {
                dests[n++] = p;
            } else {
                vs_trace_note(ctx, VS_TRACE_FLOOD, "port %u left out: %s", p->p.id, why);
            }
        }
        if (!n) {
            drop(ctx, pkt, in->p.id, VS_C_DROP_NO_DEST);
            return;
        }
        int r = vs_guard_flood(ctx, cfg, in, pkt);
        if (r) {
            drop(ctx, pkt, in->p.id, r);
            return;
        }
        vs_count(ctx, in->p.id, VS_C_FLOODED, 1);
        vs_trace_note(ctx, VS_TRACE_FLOOD, "flooded to %u ports of VLAN %u", n, pkt->vlan);
    }

    /* The IN policy of each destination: a refusal is counted on the
     * port whose policy it is, and the others still get the frame. */
    struct vs_policy_key key = { 0 };
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (vs_policy_in_active(&dests[i]->p)) {
            int refused = vs_policy_in(ctx, dests[i], pkt, &key);
            if (refused) {
                note_drop(ctx, pkt, dests[i]->p.id, refused);
                continue;
            }
        }
        dests[kept++] = dests[i];
    }
    n = kept;
    if (!n) {
        pkt->dropped = 1;
        return;
    }
    if (in->p.max_bps_out || vs_qos_any_in_limit(dests, n)) {
        n = vs_qos_shape(ctx, in, pkt, dests, n);
        if (!n) {
            return;
        }
    }
    send_to(ctx, in, pkt, dests, n);
}

/* Settles 'pkt''s checksum for its 'n' destinations and sends it to each. */
static void
send_to(struct vs_ctx *ctx, const struct vs_port *in, struct vs_pkt *pkt,
        struct vs_port **dests, uint32_t n)
{
    int r = settle_checksum(ctx, pkt, dests, n);
    if (r) {
        drop(ctx, pkt, in->p.id, r);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        egress(ctx, dests[i], pkt);
    }
}

/* Sends a frame the bandwidth limit held back ('slot' 0: the ingress
 * port's out limit, 1: the destination's in limit) to the ports 'ids' it
 * was for, those of them still present and up in 'cfg'. */
void
vs_forward_held(struct vs_ctx *ctx, const struct vs_config *cfg, struct vs_pkt *pkt,
                int slot, const uint32_t *ids, uint32_t n_ids)
{
    struct vs_port *dests[VS_MAX_PORTS];
    uint32_t n = 0;

    for (uint32_t i = 0; i < n_ids; i++) {
        struct vs_port *p = ids[i] < VS_MAX_PORTS ? cfg->ports[ids[i]] : NULL;
        if (p && p->p.up && vs_vlan_carries(p, pkt->vlan)) {
            dests[n++] = p;
        } else if (p) {
            vs_count(ctx, p->p.id, VS_C_DROP_NO_DEST, 1);
        }
    }
    if (n && slot == 0) {
        n = vs_qos_shape(ctx, NULL, pkt, dests, n);
    }
    if (n) {
        send_to(ctx, dests[0], pkt, dests, n);
    }
}

/* Checks, classifies and learns one received frame (port 'in', config
 * 'cfg'); returns 0 to forward it or the drop reason. */
static int
classify(struct vs_ctx *ctx, const struct vs_config *cfg, struct vs_port *in,
         struct vs_pkt *pkt, uint32_t now_s)
{
    int tagged = 0;
    uint16_t vid = 0;
    int r;

    if (pkt->len < VS_ETH_HLEN) {
        return VS_C_DROP_RUNT;
    }
    if (vs_mirror_is_output(cfg, in->p.id)) {
        return VS_C_DROP_MIRROR_OUTPUT;
    }
    if (in->p.vnet_hdr_len) {
        r = vs_vnet_hdr_check(&pkt->vh, pkt->data, pkt->len);
        if (r) {
            return r;
        }
        /* Fields that do not apply are ignored on input but checked by the
         * kernel on output (a stale hdr_len past the end makes the egress
         * TAP refuse the frame): keep only what the flags give meaning. */
        if (!(pkt->vh.flags & VS_VNET_F_NEEDS_CSUM)) {
            pkt->vh.csum_start = pkt->vh.csum_offset = 0;
        }
        if (!vs_vnet_hdr_is_gso(&pkt->vh)) {
            pkt->vh.gso_type = VS_VNET_GSO_NONE;
            pkt->vh.gso_size = pkt->vh.hdr_len = 0;
        }
    }

    pkt->inner_off = 12;
    pkt->pcp = 0;
    if (vs_get_be16(pkt->data + 12) == VS_ETH_TYPE_VLAN) {
        if (pkt->len < VS_ETH_VLAN_HLEN) {
            return VS_C_DROP_RUNT;
        }
        uint16_t tci = vs_get_be16(pkt->data + 14);
        tagged = 1;
        vid = tci & 0xfff;
        pkt->pcp = tci >> 13;
        pkt->inner_off = 16;
    }
    /* The header's offsets must point past the Ethernet header: egress
     * rewrites that header and moves the offsets by the tag it adds or
     * strips (found by fuzzing: csum_start 0 wrapped to 65532). */
    if (in->p.vnet_hdr_len
        && (((pkt->vh.flags & VS_VNET_F_NEEDS_CSUM)
             && pkt->vh.csum_start < pkt->inner_off + 2u)
            || (vs_vnet_hdr_is_gso(&pkt->vh) && pkt->vh.hdr_len
                && pkt->vh.hdr_len < pkt->inner_off + 2u))) {
        return VS_C_DROP_BAD_VNET_HDR;
    }
    r = vs_vlan_ingress(in, tagged, vid, &pkt->vlan);
    if (ctx->trace) {
        vs_trace_vlan(ctx, in, tagged, vid, pkt->vlan, r);
    }
    if (r) {
        return r;
    }

    const uint8_t *src = pkt->data + VS_ETH_ALEN;
    if (vs_mac_is_multicast(src)) {
        return VS_C_DROP_SRC_MULTICAST;
    }
    if (vs_mac_is_zero(src)) {
        return VS_C_DROP_SRC_ZERO;
    }
    if (vs_guard_active(&in->p)) {
        r = vs_guard_ingress(ctx, cfg, in, pkt, now_s);
        if (r) {
            return r;
        }
        vs_trace_note(ctx, VS_TRACE_GUARD, "port guards passed");
    }
    if (vs_policy_out_active(&in->p)) {
        r = vs_policy_out(ctx, in, pkt);
        if (r) {
            return r;
        }
    }
    /* Where the source lives: the port, or for an overlay port the
     * (port, remote VTEP) the frame came from (vs_port_class.h). */
    const struct vs_port_class *cls = vs_port_class_of(in->p.kind);
    uint32_t at = cls ? cls->learn_port(in, pkt) : in->p.id;
    if (at == VS_PORT_NONE) {
        return 0;
    }
    if (__builtin_expect(ctx->trace != NULL, 0)) {
        vs_trace_learn(ctx, pkt->vlan, src, at);     /* record, never learn */
    } else {
        vs_mac_learn(ctx->sw->macs, pkt->vlan, src, at, now_s);
    }
    return 0;
}

/* Forwards the 'n' frames in ctx->pkts, all received on port 'in' under
 * config 'cfg', learning with time 'now_s'. */
void
vs_forward_burst(struct vs_ctx *ctx, const struct vs_config *cfg,
                 struct vs_port *in, uint32_t n, uint32_t now_s)
{
    uint32_t in_id = in->p.id;
    uint64_t bytes = 0;

    ctx->cfg = cfg;
    ctx->observe = cfg->mirrors || cfg->n_captures || ctx->trace;
    for (uint32_t i = 0; i < n; i++) {
        struct vs_pkt *pkt = &ctx->pkts[i];
        bytes += pkt->len;
        pkt->dropped = 0;
        int r = classify(ctx, cfg, in, pkt, now_s);
        if (__builtin_expect(ctx->observe, 0)) {
            /* Taken after classify() (which reads the frame, never writes
             * it): a capture then records a frame refused on arrival once,
             * as dropped with its reason, or as received. */
            if (vs_capture_on(cfg, in_id)) {
                vs_capture_frame(ctx, in_id, VS_CAP_RX, r ? r : -1, pkt->data, pkt->len,
                                 NULL, 0);
            }
            if (r) {
                pkt->dropped = 1;
                vs_count(ctx, in_id, r, 1);
                if (ctx->trace) {
                    vs_trace_drop(ctx, in_id, r);
                }
            } else if (cfg->mirrors) {
                vs_mirror_rx(ctx, cfg, in, pkt);
            }
        } else if (r) {
            drop(ctx, pkt, in_id, r);
        }
    }
    vs_count(ctx, in_id, VS_C_RX_PACKETS, n);
    vs_count(ctx, in_id, VS_C_RX_BYTES, bytes);

    for (uint32_t i = 0; i < n; i++) {
        struct vs_pkt *pkt = &ctx->pkts[i];
        if (pkt->dropped) {
            continue;
        }
        pkt->out_port = VS_PORT_NONE;
        pkt->out_vtep = 0;
        if (!vs_mac_is_multicast(pkt->data)) {
            uint32_t out = vs_mac_lookup(ctx->sw->macs, pkt->vlan, pkt->data);
            if (__builtin_expect(ctx->trace != NULL, 0)) {
                out = vs_trace_lookup(ctx, pkt->vlan, pkt->data, out);
            }
            if (out != VS_PORT_NONE) {
                pkt->out_vtep = (uint16_t) VS_MAC_VTEP(out);
                out = VS_MAC_PORT(out);
            }
            if (out == in_id
                || (out < VS_MAX_PORTS && cfg->ports[out]
                    && vs_port_split(in->p.kind, cfg->ports[out]->p.kind))) {
                /* Both ends are on the ingress port (or behind the same
                 * overlay: split horizon): a physical switch filters the
                 * frame; it never goes back where it came from. */
                vs_trace_note(ctx, VS_TRACE_LOOKUP, "hit on the ingress port %u%s", out,
                              out == in_id ? "" : "'s overlay (split horizon)");
                drop(ctx, pkt, in_id, VS_C_DROP_SAME_PORT);
                continue;
            }
            if (out < VS_MAX_PORTS && cfg->ports[out] && cfg->ports[out]->p.up
                && vs_vlan_carries(cfg->ports[out], pkt->vlan)
                && !vs_mirror_is_output(cfg, out)) {
                pkt->out_port = out;
                vs_trace_note(ctx, VS_TRACE_LOOKUP, "VLAN %u hit on port %u",
                              pkt->vlan, out);
            } else if (out < VS_MAX_PORTS) {
                vs_trace_note(ctx, VS_TRACE_LOOKUP, "VLAN %u hit on port %u, which "
                              "cannot take it now: flood", pkt->vlan, out);
            } else {
                vs_trace_note(ctx, VS_TRACE_LOOKUP, "VLAN %u miss: flood", pkt->vlan);
            }
        } else {
            vs_trace_note(ctx, VS_TRACE_LOOKUP, "%s destination: flood",
                          !memcmp(pkt->data, "\xff\xff\xff\xff\xff\xff", 6) ? "broadcast" : "multicast");
        }
        deliver(ctx, cfg, in, pkt);
    }
    vs_tx_flush(ctx);
}

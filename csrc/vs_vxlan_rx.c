/*
 * vs_vxlan_rx.c: the vxlan port's receive side (see vs_vxlan.h): one
 * recvmmsg() per burst, UDP GRO datagrams split into their segments,
 * each checked and decapsulated in place, TCP runs merged for the VMs'
 * TAPs (vs_vxlan_gro.c).
 *
 * Batch semantics: a burst read from the UDP socket is decapsulated whole
 * first (bad datagrams dropped and counted here, the rest turned into
 * 802.1Q-tagged frames of their VNI's VLAN, in place), then forwarded by
 * vs_forward_burst() like a burst from a trunk port: learned, looked up,
 * delivered.
 *
 * Decapsulation in place: the UDP payload lands at the start of an rx
 * buffer, [VXLAN 8][dst src 12][type ...].  Moving the 12 MAC bytes 4 bytes
 * forward leaves exactly 4 bytes for a tag in front of the inner
 * EtherType: [4 unused][dst src][8100 TCI][type ...].  No copy of the
 * payload, and the pipeline's VLAN rules apply unchanged (the port is a
 * trunk of the vni_map's VLANs without a native VLAN).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>

#include "vs_port_class.h"
#include "vs_vxlan.h"
#include "vs_vxlan_priv.h"
#include "vs_worker.h"

/* Checks the UDP payload 'b' ('got' bytes) from VTEP address 'from' and
 * turns it into a tagged frame in 'pkt'.  Returns 0 or a drop reason. */
static int
decap(struct vs_vxlan *vx, const struct vs_port *port, uint8_t *b, size_t got,
      const uint8_t *from, struct vs_pkt *pkt)
{
    if (got < VS_VXLAN_HLEN + VS_ETH_HLEN) {
        return VS_C_DROP_VXLAN_SHORT;
    }
    if (!(b[0] & VS_VXLAN_FLAG_I)) {
        return VS_C_DROP_VXLAN_NO_VNI_FLAG;
    }
    if ((b[0] & ~VS_VXLAN_FLAG_I) || b[1] || b[2] || b[3] || b[7]) {
        return VS_C_DROP_VXLAN_RESERVED;
    }
    uint16_t vlan = vs_vx_vni_to_vlan(vx, (uint32_t) vs_vx_load_be(b + 4, 3));
    if (!vlan) {
        return VS_C_DROP_VXLAN_UNKNOWN_VNI;
    }
    uint32_t vtep = vs_vx_find_vtep(vx, from);
    if (vx->p.learning) {
        if (!vtep) {
            vtep = vs_vx_add_vtep(vx, from, 0);   /* 0: full; forward, don't learn */
        }
    } else if (!vtep || !vs_vx_floods(&vx->vteps[vtep], vlan)) {
        return VS_C_DROP_VXLAN_UNKNOWN_VTEP;
    }
    memmove(b + 4, b + VS_VXLAN_HLEN, 2 * VS_ETH_ALEN);
    vs_put_be16(b + 16, VS_ETH_TYPE_VLAN);
    vs_put_be16(b + 18, vlan);
    pkt->data = b + 4;
    pkt->len = (uint32_t) (got - VS_VXLAN_HLEN + VS_VLAN_HLEN);
    memset(&pkt->vh, 0, sizeof pkt->vh);
    pkt->in_vtep = (uint16_t) vtep;
    (void) port;
    return 0;
}

/* The sender's address in 'from' as the port's family wants it, or NULL. */
static const uint8_t *
from_addr(const struct vs_vxlan *vx, const struct sockaddr_storage *from)
{
    if (from->ss_family == AF_INET && vx->p.family == AF_INET) {
        return (const uint8_t *) &((const struct sockaddr_in *) from)->sin_addr;
    }
    if (from->ss_family == AF_INET6 && vx->p.family == AF_INET6) {
        return (const uint8_t *) &((const struct sockaddr_in6 *) from)->sin6_addr;
    }
    return NULL;
}

/* The segment size the kernel's UDP GRO put in 'msg''s control data, 0
 * when the datagram is a single one. */
static uint32_t
gro_size(struct msghdr *msg)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO
            && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int size;
            memcpy(&size, CMSG_DATA(c), sizeof size);
            return size > 0 ? (uint32_t) size : 0;
        }
    }
    return 0;
}

/* Reads up to a burst of datagrams from the port's UDP socket with one
 * recvmmsg(), decapsulates them into ctx->pkts and merges TCP runs
 * (vs_vxlan_gro.c).  Returns how many frames are left to forward; the
 * dropped ones are counted here.
 *
 * With UDP_GRO on the socket (vswitchd/ports/vxlan.py), one datagram may
 * hold up to 64 VXLAN datagrams back to back, all 'gso_size' bytes but the
 * last: each is decapsulated in place as a frame of its own.  When they
 * fill ctx->pkts and merging frees no slot, the frames so far are
 * forwarded under 'cfg' at 'now_s' before the rest are decapsulated, so
 * nothing is dropped for want of room and order is kept. */
uint32_t
vs_vxlan_read_burst(struct vs_ctx *ctx, const struct vs_config *cfg,
                    const struct vs_rxq_ref *rxq, uint32_t now_s)
{
    struct vs_port *port = rxq->port;
    struct vs_vxlan *vx = port->p.vxlan;
    struct vx_ctx *vc = &vx->ctx[ctx->index % vx->p.n_ctx];
    struct mmsghdr msgs[VS_BURST];
    struct iovec iovs[VS_BURST];
    struct sockaddr_storage from[VS_BURST];
    union {
        struct cmsghdr align;
        uint8_t buf[CMSG_SPACE(sizeof(int))];
    } ctl[VS_BURST];

    for (uint32_t i = 0; i < VS_BURST; i++) {
        iovs[i].iov_base = ctx->rx_bufs + (size_t) i * VS_FRAME_MAX;
        iovs[i].iov_len = VS_FRAME_MAX;
        memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        msgs[i].msg_hdr.msg_control = ctl[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof ctl[i].buf;
    }
    int r;
    do {
        r = recvmmsg(rxq->fd, msgs, VS_BURST, MSG_DONTWAIT, NULL);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        return 0;
    }

    uint32_t n = 0;
    for (int i = 0; i < r; i++) {
        const uint8_t *addr = from_addr(vx, &from[i]);
        size_t total = msgs[i].msg_len;
        size_t step = gro_size(&msgs[i].msg_hdr);
        step = step ? step : total;
        for (size_t off = 0; off < total || off == 0; off += step) {
            if (n == VS_BURST) {
                n = vs_vxlan_coalesce(ctx->pkts, n, ctx->rx_bufs);
                if (n == VS_BURST) {
                    vs_stat_add(&ctx->stats.frames, n);
                    vs_forward_burst(ctx, cfg, port, n, now_s);
                    n = 0;
                }
            }
            struct vs_pkt *pkt = &ctx->pkts[n];
            size_t got = total - off < step ? total - off : step;
            uint8_t *b = (uint8_t *) iovs[i].iov_base + off;
            int reason = addr ? decap(vx, port, b, got, addr, pkt)
                              : VS_C_DROP_VXLAN_UNKNOWN_VTEP;
            if (reason) {
                vs_count(ctx, port->p.id, VS_C_RX_PACKETS, 1);
                vs_count(ctx, port->p.id, VS_C_RX_BYTES, got);
                vs_count(ctx, port->p.id, reason, 1);
            } else {
                vs_vx_vtep_count(vc, pkt->in_vtep, VS_VTEP_RX_PACKETS, 1);
                vs_vx_vtep_count(vc, pkt->in_vtep, VS_VTEP_RX_BYTES, got - VS_VXLAN_HLEN);
                n++;
            }
            if (!step) {
                break;      /* an empty datagram */
            }
        }
    }
    return vs_vxlan_coalesce(ctx->pkts, n, ctx->rx_bufs);
}

/* Where a frame from 'pkt''s source is learned: at (port, VTEP), or not
 * at all without learning or without a VTEP index. */
uint32_t
vs_vxlan_learn_port(const struct vs_port *port, const struct vs_pkt *pkt)
{
    if (!port->p.vxlan->p.learning || !pkt->in_vtep) {
        return VS_PORT_NONE;
    }
    return VS_MAC_AT(port->p.id, pkt->in_vtep);
}

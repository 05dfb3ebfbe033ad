/*
 * vs_vxlan.c: VXLAN encapsulation and decapsulation (see vs_vxlan.h).
 *
 * Batch semantics: a burst read from the UDP socket is decapsulated whole
 * first (bad datagrams dropped and counted here, the rest turned into
 * 802.1Q-tagged frames of their VNI's VLAN, in place), then forwarded by
 * vs_forward_burst() like a burst from a trunk port: learned, looked up,
 * delivered.  Encapsulated frames join the worker's tx list and leave with
 * one sendmmsg() at the end of the burst, frames to one VTEP in order.
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
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "vs_gso.h"
#include "vs_hash.h"
#include "vs_port_class.h"
#include "vs_vxlan.h"
#include "vs_worker.h"

#define UDP_HLEN 8
#define ENCAP_HLEN (UDP_HLEN + VS_VXLAN_HLEN)
/* Segments of one super-frame, collected before any is sent. */
#define SEGS_MAX 128
#define SEG_AREA (2 * VS_FRAME_MAX)
/* UDP GSO: at most this many segments per sendmsg() (the kernel's
 * UDP_MAX_SEGMENTS) and this many payload bytes (one IP datagram). */
#define UDP_GSO_SEGS_MAX 64
#define UDP_GSO_BYTES_MAX (65535 - 40 - UDP_HLEN)
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

_Static_assert(ENCAP_HLEN + 2 * VS_ETH_ALEN
               <= sizeof(((struct vs_tx_entry *) 0)->hdr),
               "a tx entry's header buffer holds UDP + VXLAN + inner MACs");

struct vtep {
    struct sockaddr_storage sa;     /* for the raw socket */
    socklen_t sa_len;
    struct sockaddr_storage sa_udp; /* for the UDP pool: with dstport */
    uint8_t addr[16];
    _Atomic int flood;              /* in every VNI's flood list (a static peer) */
    /* Bit v: in the flood list of VLAN v's VNI only (an EVPN type-3 route,
     * which is per VNI).  VLANs and VNIs map one to one on a port. */
    _Atomic uint64_t flood_vlans[4096 / 64];
};

/* What one context owns: written by that context's thread only. */
struct vx_ctx {
    uint64_t counters[VS_VXLAN_VTEPS_MAX][VS_VTEP_N_COUNTERS];
    uint8_t *seg_area;
    uint32_t seg_off[SEGS_MAX];
    uint32_t seg_len[SEGS_MAX];
    /* With a UDP pool only the segments' headers are in the area and
     * their payloads stay in the super-frame (place_headers()). */
    const uint8_t *seg_pay[SEGS_MAX];
    uint32_t seg_pay_len[SEGS_MAX];
};

struct vni_vlan {
    uint32_t vni;
    uint16_t vlan;
};

struct vs_vxlan {
    struct vs_vxlan_params p;
    uint64_t seed;
    uint32_t n_vnis;
    struct vni_vlan vnis[4096];     /* sorted by VNI */
    pthread_mutex_t add_lock;       /* adding a VTEP; nothing else */
    _Atomic uint32_t n_vteps;       /* valid indexes are 1..n_vteps */
    struct vtep vteps[VS_VXLAN_VTEPS_MAX];
    struct vx_ctx *ctx;             /* p.n_ctx of them */
};

static int
cmp_vni(const void *a, const void *b)
{
    const struct vni_vlan *x = a, *y = b;
    return x->vni < y->vni ? -1 : x->vni > y->vni;
}

/* Creates a VTEP from 'params' (copied).  NULL for bad parameters (a VNI
 * out of range or used twice, a bad port range or family) or ENOMEM. */
struct vs_vxlan *
vs_vxlan_new(const struct vs_vxlan_params *params)
{
    if ((params->family != AF_INET && params->family != AF_INET6)
        || params->src_port_min > params->src_port_max
        || params->n_ctx < 1 || params->tx_fd < 0
        || params->n_udp > VS_VXLAN_UDP_MAX) {
        return NULL;
    }
    struct vs_vxlan *vx = calloc(1, sizeof *vx);
    if (!vx) {
        return NULL;
    }
    vx->p = *params;
    for (uint32_t v = 1; v <= VS_VID_MAX; v++) {
        uint32_t vni = params->vlan_vni[v];
        if (vni) {
            vx->vnis[vx->n_vnis].vni = vni;
            vx->vnis[vx->n_vnis++].vlan = (uint16_t) v;
        }
    }
    qsort(vx->vnis, vx->n_vnis, sizeof vx->vnis[0], cmp_vni);
    int bad = params->vlan_vni[0] || params->vlan_vni[4095];
    for (uint32_t i = 0; i < vx->n_vnis; i++) {
        bad |= vx->vnis[i].vni > VS_VXLAN_VNI_MAX
               || (i && vx->vnis[i].vni == vx->vnis[i - 1].vni);
    }
    vx->ctx = calloc(params->n_ctx, sizeof *vx->ctx);
    if (bad || !vx->ctx) {
        free(vx->ctx);
        free(vx);
        return NULL;
    }
    if (getrandom(&vx->seed, sizeof vx->seed, 0) != sizeof vx->seed) {
        vx->seed = (uint64_t) (uintptr_t) vx;
    }
    pthread_mutex_init(&vx->add_lock, NULL);
    return vx;
}

/* Frees 'vx'; no published config may name it any more. */
void
vs_vxlan_free(struct vs_vxlan *vx)
{
    if (!vx) {
        return;
    }
    for (uint32_t i = 0; i < vx->p.n_ctx; i++) {
        free(vx->ctx[i].seg_area);
    }
    free(vx->ctx);
    pthread_mutex_destroy(&vx->add_lock);
    free(vx);
}

static size_t
addr_len(const struct vs_vxlan *vx)
{
    return vx->p.family == AF_INET ? 4 : 16;
}

/* Index of the VTEP at 'addr' (4 or 16 bytes by family), 0 if unknown. */
static uint32_t
find_vtep(const struct vs_vxlan *vx, const uint8_t *addr)
{
    uint32_t n = atomic_load_explicit(&((struct vs_vxlan *) vx)->n_vteps,
                                      memory_order_acquire);
    size_t len = addr_len(vx);
    for (uint32_t i = 1; i <= n; i++) {
        if (!memcmp(vx->vteps[i].addr, addr, len)) {
            return i;
        }
    }
    return 0;
}

/* Adds the VTEP at 'addr' unless it is known; any thread.  Returns its
 * index, or 0 when the table is full. */
static uint32_t
add_vtep(struct vs_vxlan *vx, const uint8_t *addr, int flood)
{
    pthread_mutex_lock(&vx->add_lock);
    uint32_t i = find_vtep(vx, addr);
    if (!i) {
        uint32_t n = atomic_load_explicit(&vx->n_vteps, memory_order_relaxed);
        if (n + 1 < VS_VXLAN_VTEPS_MAX) {
            struct vtep *t = &vx->vteps[n + 1];
            memset(&t->sa, 0, sizeof t->sa);
            if (vx->p.family == AF_INET) {
                struct sockaddr_in *sin = (struct sockaddr_in *) &t->sa;
                sin->sin_family = AF_INET;
                /* A raw IPv4 socket ignores the port (and an IPv6 one
                 * refuses any but 0); a UDP socket, which unit tests use
                 * in place of the raw one, needs it. */
                sin->sin_port = htons(vx->p.dstport);
                memcpy(&sin->sin_addr, addr, 4);
                t->sa_len = sizeof *sin;
            } else {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &t->sa;
                sin6->sin6_family = AF_INET6;
                memcpy(&sin6->sin6_addr, addr, 16);
                t->sa_len = sizeof *sin6;
            }
            memcpy(t->addr, addr, addr_len(vx));
            t->sa_udp = t->sa;
            if (vx->p.family == AF_INET6) {
                ((struct sockaddr_in6 *) &t->sa_udp)->sin6_port = htons(vx->p.dstport);
            }
            atomic_store(&t->flood, flood);
            /* Release: a reader that sees the count sees the entry. */
            atomic_store_explicit(&vx->n_vteps, n + 1, memory_order_release);
            i = n + 1;
        }
    } else if (flood) {
        atomic_store(&vx->vteps[i].flood, 1);
    }
    pthread_mutex_unlock(&vx->add_lock);
    return i;
}

/* Adds the VTEP at 'addr' (4 or 16 bytes, the port's family), in the
 * flood list if 'flood'.  Returns its index (>= 1), or -ENOSPC. */
int
vs_vxlan_add_vtep(struct vs_vxlan *vx, const uint8_t *addr, int flood)
{
    uint32_t i = add_vtep(vx, addr, flood);
    return i ? (int) i : -ENOSPC;
}

/* Puts VTEP 'vtep' in the flood list or takes it out.  0 or EINVAL. */
int
vs_vxlan_set_flood(struct vs_vxlan *vx, uint32_t vtep, int flood)
{
    if (vtep < 1 || vtep > atomic_load(&vx->n_vteps)) {
        return EINVAL;
    }
    atomic_store(&vx->vteps[vtep].flood, !!flood);
    return 0;
}

static uint16_t vni_to_vlan(const struct vs_vxlan *, uint32_t vni);

/* Whether VTEP 't' gets VLAN 'vlan''s broadcast, multicast and unknown
 * unicast, and may send us that VLAN's frames when learning is off. */
static int
vtep_floods(const struct vtep *t, uint16_t vlan)
{
    struct vtep *w = (struct vtep *) t;
    return atomic_load_explicit(&w->flood, memory_order_relaxed)
           || (atomic_load_explicit(&w->flood_vlans[(vlan & 0xfff) >> 6],
                                    memory_order_relaxed) >> (vlan & 63) & 1);
}

/* Puts VTEP 'vtep' in the flood list of VNI 'vni' only, or takes it out
 * (its all-VNI flag, vs_vxlan_set_flood(), stays as it is).  0, or EINVAL
 * for an unknown VTEP or a VNI the port does not carry. */
int
vs_vxlan_set_flood_vni(struct vs_vxlan *vx, uint32_t vtep, uint32_t vni, int flood)
{
    uint16_t vlan = vni_to_vlan(vx, vni);
    if (vtep < 1 || vtep > atomic_load(&vx->n_vteps) || !vlan) {
        return EINVAL;
    }
    uint64_t bit = 1ull << (vlan & 63);
    if (flood) {
        atomic_fetch_or(&vx->vteps[vtep].flood_vlans[vlan >> 6], bit);
    } else {
        atomic_fetch_and(&vx->vteps[vtep].flood_vlans[vlan >> 6], ~bit);
    }
    return 0;
}

uint32_t
vs_vxlan_n_vteps(const struct vs_vxlan *vx)
{
    return atomic_load(&((struct vs_vxlan *) vx)->n_vteps);
}

/* Copies VTEP 'vtep' (its address, flood flag and counters summed over
 * every context) into 'out'.  Any thread.  0 or EINVAL. */
int
vs_vxlan_vtep_get(const struct vs_vxlan *vx, uint32_t vtep,
                  struct vs_vtep_info *out)
{
    memset(out, 0, sizeof *out);
    if (vtep < 1 || vtep > vs_vxlan_n_vteps(vx)) {
        return EINVAL;
    }
    out->family = vx->p.family;
    memcpy(out->addr, vx->vteps[vtep].addr, addr_len(vx));
    const struct vtep *t = &vx->vteps[vtep];
    out->flood = atomic_load(&((struct vtep *) t)->flood);
    for (uint32_t i = 0; i < vx->n_vnis; i++) {
        out->flood_vnis += vtep_floods(t, vx->vnis[i].vlan);
    }
    for (uint32_t c = 0; c < vx->p.n_ctx; c++) {
        for (int k = 0; k < VS_VTEP_N_COUNTERS; k++) {
            out->counters[k] += __atomic_load_n(&vx->ctx[c].counters[vtep][k],
                                                __ATOMIC_RELAXED);
        }
    }
    return 0;
}

static void
vtep_count(struct vx_ctx *c, uint32_t vtep, int which, uint64_t n)
{
    uint64_t *p = &c->counters[vtep][which];
    __atomic_store_n(p, *p + n, __ATOMIC_RELAXED);
}

/* The VLAN VNI 'vni' maps to, 0 if none. */
static uint16_t
vni_to_vlan(const struct vs_vxlan *vx, uint32_t vni)
{
    uint32_t lo = 0, hi = vx->n_vnis;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (vx->vnis[mid].vni == vni) {
            return vx->vnis[mid].vlan;
        }
        if (vx->vnis[mid].vni < vni) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return 0;
}

static uint64_t
load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Hash of the flow of the untagged view of a frame: Ethernet header at
 * 'eth', EtherType at 'type' (eth + 12, or past a tag), 'end' one past the
 * last byte.  IP addresses, protocol and TCP/UDP/SCTP ports where present
 * (never past 'end', never for an IPv4 fragment); the MACs otherwise. */
static uint64_t
flow_hash(uint64_t seed, const uint8_t *eth, const uint8_t *type,
          const uint8_t *end)
{
    const uint8_t *l3 = type + 2;
    uint16_t ethertype = vs_get_be16(type);
    uint64_t h = seed;
    const uint8_t *l4 = NULL;
    uint8_t proto = 0;

    if (ethertype == VS_ETH_TYPE_IPV4 && end - l3 >= 20) {
        h = vs_hash64(load_be(l3 + 12, 8), h);
        proto = l3[9];
        uint32_t ihl = (uint32_t) (l3[0] & 0xf) * 4;
        if (!(vs_get_be16(l3 + 6) & 0x3fff) && ihl >= 20) {
            l4 = l3 + ihl;
        }
    } else if (ethertype == VS_ETH_TYPE_IPV6 && end - l3 >= 40) {
        h = vs_hash64(load_be(l3 + 8, 8), h);
        h = vs_hash64(load_be(l3 + 16, 8), h);
        h = vs_hash64(load_be(l3 + 24, 8), h);
        h = vs_hash64(load_be(l3 + 32, 8), h);
        proto = l3[6];
        l4 = l3 + 40;
    } else {
        return vs_hash64(load_be(eth, 6) ^ (load_be(eth + 6, 6) << 16), h);
    }
    if (l4 && (proto == 6 || proto == 17 || proto == 132) && end - l4 >= 4) {
        h = vs_hash64(load_be(l4, 4) | ((uint64_t) proto << 32), h);
    } else {
        h = vs_hash64(proto, h);
    }
    return h;
}

/* The UDP pool socket flow hash 'h' sends from. */
static uint32_t
pool_slot(const struct vs_vxlan *vx, uint64_t h)
{
    return (uint32_t) ((h >> 16) % vx->p.n_udp);
}

static uint16_t
pick_src_port(const struct vs_vxlan *vx, uint64_t h)
{
    if (vx->p.n_udp) {
        return vx->p.udp_ports[pool_slot(vx, h)];
    }
    uint32_t span = (uint32_t) vx->p.src_port_max - vx->p.src_port_min + 1;
    return (uint16_t) (vx->p.src_port_min + (uint32_t) ((h >> 16) % span));
}

/* The outer UDP source port for untagged frame 'frame' ('len' bytes). */
uint16_t
vs_vxlan_src_port(const struct vs_vxlan *vx, const uint8_t *frame, uint32_t len)
{
    if (len < VS_ETH_HLEN) {
        return vx->p.src_port_min;
    }
    return pick_src_port(vx, flow_hash(vx->seed, frame, frame + 12, frame + len));
}

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
    uint16_t vlan = vni_to_vlan(vx, (uint32_t) load_be(b + 4, 3));
    if (!vlan) {
        return VS_C_DROP_VXLAN_UNKNOWN_VNI;
    }
    uint32_t vtep = find_vtep(vx, from);
    if (vx->p.learning) {
        if (!vtep) {
            vtep = add_vtep(vx, from, 0);   /* 0: full; forward, don't learn */
        }
    } else if (!vtep || !vtep_floods(&vx->vteps[vtep], vlan)) {
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
                vtep_count(vc, pkt->in_vtep, VS_VTEP_RX_PACKETS, 1);
                vtep_count(vc, pkt->in_vtep, VS_VTEP_RX_BYTES, got - VS_VXLAN_HLEN);
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

static void
put_vxlan_hdr(uint8_t *h, uint32_t vni)
{
    h[0] = VS_VXLAN_FLAG_I;
    h[1] = h[2] = h[3] = 0;
    h[4] = (uint8_t) (vni >> 16);
    h[5] = (uint8_t) (vni >> 8);
    h[6] = (uint8_t) vni;
    h[7] = 0;
}

/* Queues one encapsulated frame of flow hash 'fh' to VTEP 'vtep' on ctx's
 * tx list: the outer headers we write (UDP for the raw socket, then VXLAN)
 * and 'macs' (12 bytes, unless NULL) in the entry's header buffer, then
 * 'rest' ('rest_len' bytes) where it lies. */
static void
enqueue(struct vs_ctx *ctx, struct vs_port *port, struct vs_vxlan *vx,
        uint32_t vtep, uint32_t vni, uint64_t fh, const uint8_t *macs,
        const uint8_t *rest, uint32_t rest_len)
{
    if (ctx->n_tx == VS_TX_PENDING) {
        vs_tx_flush(ctx);
    }
    struct vs_tx_entry *e = &ctx->tx[ctx->n_tx++];
    uint8_t *h = e->hdr;
    uint32_t inner_len = (macs ? 2 * VS_ETH_ALEN : 0) + rest_len;
    uint32_t hl = 0;

    if (vx->p.n_udp) {
        e->fd = vx->p.udp_fds[pool_slot(vx, fh)];
        e->name = &vx->vteps[vtep].sa_udp;
    } else {
        vs_put_be16(h, pick_src_port(vx, fh));
        vs_put_be16(h + 2, vx->p.dstport);
        vs_put_be16(h + 4, (uint16_t) (ENCAP_HLEN + inner_len));
        vs_put_be16(h + 6, 0);  /* IPv4: none; IPv6: the kernel fills it in */
        hl = UDP_HLEN;
        e->fd = vx->p.tx_fd;
        e->name = &vx->vteps[vtep].sa;
    }
    e->namelen = vx->vteps[vtep].sa_len;
    put_vxlan_hdr(h + hl, vni);
    hl += VS_VXLAN_HLEN;
    if (macs) {
        memcpy(h + hl, macs, 2 * VS_ETH_ALEN);
        hl += 2 * VS_ETH_ALEN;
    }
    e->port = port;
    e->len = inner_len;
    e->iov[0].iov_base = h;
    e->iov[0].iov_len = hl;
    e->iov[1].iov_base = (void *) rest;
    e->iov[1].iov_len = rest_len;
    e->iovcnt = 2;

    struct vx_ctx *vc = &vx->ctx[ctx->index % vx->p.n_ctx];
    vtep_count(vc, vtep, VS_VTEP_TX_PACKETS, 1);
    vtep_count(vc, vtep, VS_VTEP_TX_BYTES, inner_len);
}

/* Segments are collected VS_VXLAN_HLEN bytes apart, room for the VXLAN
 * header that goes in front of each for UDP GSO. */
struct seg_collect {
    struct vx_ctx *vc;
    uint32_t used;
    uint32_t n;
    int full;
    int split;      /* headers here, payloads in the super-frame */
};

/* vs_gso_headers_fn: like place_segment(), for a segment's 'hdr_len'
 * header bytes; its payload is remembered where it lies. */
static uint8_t *
place_headers(void *arg, uint32_t hdr_len, const uint8_t *payload, uint32_t n)
{
    struct seg_collect *sc = arg;
    if (sc->n == SEGS_MAX || hdr_len + VS_VXLAN_HLEN > SEG_AREA - sc->used) {
        sc->full = 1;
        return NULL;
    }
    uint32_t off = sc->used + VS_VXLAN_HLEN;
    sc->vc->seg_off[sc->n] = off;
    sc->vc->seg_len[sc->n] = hdr_len + n;
    sc->vc->seg_pay[sc->n] = payload;
    sc->vc->seg_pay_len[sc->n++] = n;
    sc->used = off + hdr_len;
    return sc->vc->seg_area + off;
}

/* vs_gso_place_fn: where in the context's segment area the next segment
 * ('seg_len' bytes) is built, VS_VXLAN_HLEN bytes after the previous one. */
static uint8_t *
place_segment(void *arg, uint32_t seg_len)
{
    struct seg_collect *sc = arg;
    if (sc->n == SEGS_MAX || seg_len + VS_VXLAN_HLEN > SEG_AREA - sc->used) {
        sc->full = 1;
        return NULL;
    }
    uint32_t off = sc->used + VS_VXLAN_HLEN;
    sc->vc->seg_off[sc->n] = off;
    sc->vc->seg_len[sc->n++] = seg_len;
    sc->used = off + seg_len;
    return sc->vc->seg_area + off;
}

/* Sends segments 'first'..'first + n - 1' of the area, VXLAN headers in
 * place, to VTEP 'vtep' with one UDP GSO sendmsg() on pool socket 'fd'.
 * All but the last are 'seg_len' bytes long.  Returns 0 or an errno. */
static int
send_gso(struct vs_vxlan *vx, struct vx_ctx *vc, int fd, uint32_t vtep,
         uint32_t first, uint32_t n, uint32_t seg_len, int split)
{
    union {
        struct cmsghdr align;
        uint8_t buf[CMSG_SPACE(sizeof(uint16_t))];
    } ctl;
    struct iovec iov[2 * UDP_GSO_SEGS_MAX];
    uint32_t n_iov = 0;
    if (split) {
        /* [VXLAN + inner headers][payload] per segment: the kernel copies
         * the payload straight from the super-frame. */
        for (uint32_t s = first; s < first + n; s++) {
            uint32_t hl = vc->seg_len[s] - vc->seg_pay_len[s];
            iov[n_iov].iov_base = vc->seg_area + vc->seg_off[s] - VS_VXLAN_HLEN;
            iov[n_iov++].iov_len = VS_VXLAN_HLEN + hl;
            iov[n_iov].iov_base = (void *) vc->seg_pay[s];
            iov[n_iov++].iov_len = vc->seg_pay_len[s];
        }
    } else {
        uint32_t start = vc->seg_off[first] - VS_VXLAN_HLEN;
        uint32_t last = first + n - 1;
        iov[0].iov_base = vc->seg_area + start;
        iov[0].iov_len = vc->seg_off[last] + vc->seg_len[last] - start;
        n_iov = 1;
    }
    struct msghdr msg = {
        .msg_name = &vx->vteps[vtep].sa_udp,
        .msg_namelen = vx->vteps[vtep].sa_len,
        .msg_iov = iov,
        .msg_iovlen = n_iov,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof ctl.buf,
    };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    uint16_t gso_size = (uint16_t) (VS_VXLAN_HLEN + seg_len);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof gso_size);
    memcpy(CMSG_DATA(c), &gso_size, sizeof gso_size);
    ssize_t r;
    do {
        r = sendmsg(fd, &msg, MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? errno : 0;
}

/* Encapsulates GSO super-frame 'pkt' segment by segment for the 'n' VTEPs
 * in 'dests'.  Every segment is cut before any is sent, so a frame that
 * cannot be cut whole is dropped whole.  With a UDP pool, the segments go
 * to the kernel as UDP GSO batches; without, through the tx list, which is
 * flushed at the end because its entries point into the segment area that
 * the next super-frame reuses. */
static void
egress_segmented(struct vs_ctx *ctx, struct vs_port *port, struct vs_vxlan *vx,
                 struct vs_pkt *pkt, uint32_t vni, const uint32_t *dests,
                 uint32_t n)
{
    const uint8_t *frame = pkt->data;
    uint32_t len = pkt->len;
    struct vs_vnet_hdr vh = pkt->vh;

    if (pkt->inner_off != 12) {
        /* Tagged on ingress: the encapsulated frame is untagged. */
        uint32_t rest = pkt->len - pkt->inner_off;
        memcpy(ctx->stage_buf, pkt->data, 12);
        memcpy(ctx->stage_buf + 12, pkt->data + pkt->inner_off, rest);
        int delta = 12 - (int) pkt->inner_off;
        if (vh.flags & VS_VNET_F_NEEDS_CSUM) {
            vh.csum_start = (uint16_t) (vh.csum_start + delta);
        }
        if (vh.hdr_len) {
            vh.hdr_len = (uint16_t) (vh.hdr_len + delta);
        }
        frame = ctx->stage_buf;
        len = 12 + rest;
    }
    uint64_t fh = flow_hash(vx->seed, frame, frame + 12, frame + len);
    struct vx_ctx *vc = &vx->ctx[ctx->index % vx->p.n_ctx];
    if (!vc->seg_area) {
        /* Only this context's thread touches its area: allocated on the
         * first super-frame, so contexts that never see one cost nothing. */
        vc->seg_area = malloc(SEG_AREA);
        if (!vc->seg_area) {
            vs_count(ctx, port->p.id, VS_C_DROP_OVERSIZE, 1);
            return;
        }
    }
    /* With a UDP pool the segments leave as UDP GSO batches, headers and
     * payloads as iovec pieces; the tx list (no pool) wants them whole. */
    struct seg_collect sc = { vc, 0, 0, 0, vx->p.n_udp != 0 };
    int r = sc.split ? vs_gso_segment_headers(frame, len, &vh, place_headers, &sc)
                     : vs_gso_segment_placed(frame, len, &vh, place_segment, &sc);
    if (r < 0 || sc.full) {
        vs_count(ctx, port->p.id, r < 0 ? -r : VS_C_DROP_OVERSIZE, 1);
        return;
    }
    vs_count(ctx, port->p.id, VS_C_SEGMENTED, 1);
    int uniform = 1;
    uint64_t bytes = 0;
    for (uint32_t s = 0; s < sc.n; s++) {
        put_vxlan_hdr(vc->seg_area + vc->seg_off[s] - VS_VXLAN_HLEN, vni);
        uniform &= s + 1 == sc.n || vc->seg_len[s] == vc->seg_len[0];
        bytes += vc->seg_len[s];
    }
    if (sc.split && !uniform) {
        vs_count(ctx, port->p.id, VS_C_DROP_OVERSIZE, 1);   /* not from GSO: never */
        return;
    }
    if (!sc.split) {
        for (uint32_t d = 0; d < n; d++) {
            for (uint32_t s = 0; s < sc.n; s++) {
                enqueue(ctx, port, vx, dests[d], vni, fh, NULL,
                        vc->seg_area + vc->seg_off[s], vc->seg_len[s]);
            }
        }
        vs_tx_flush(ctx);
        return;
    }
    uint32_t seg_len = vc->seg_len[0];
    uint32_t per_send = UDP_GSO_BYTES_MAX / (VS_VXLAN_HLEN + seg_len);
    per_send = per_send > UDP_GSO_SEGS_MAX ? UDP_GSO_SEGS_MAX : per_send;
    int fd = vx->p.udp_fds[pool_slot(vx, fh)];
    for (uint32_t d = 0; d < n; d++) {
        uint32_t sent = 0;
        for (uint32_t s = 0; s < sc.n; s += per_send) {
            uint32_t k = sc.n - s < per_send ? sc.n - s : per_send;
            if (send_gso(vx, vc, fd, dests[d], s, k, seg_len, sc.split)) {
                vs_count(ctx, port->p.id, VS_C_DROP_TX_ERROR, 1);
                break;
            }
            sent += k;
        }
        uint64_t sent_bytes = sent == sc.n ? bytes : (uint64_t) sent * seg_len;
        vs_count(ctx, port->p.id, VS_C_TX_PACKETS, sent);
        vs_count(ctx, port->p.id, VS_C_TX_BYTES, sent_bytes);
        vtep_count(vc, dests[d], VS_VTEP_TX_PACKETS, sent);
        vtep_count(vc, dests[d], VS_VTEP_TX_BYTES, sent_bytes);
    }
}

/* Sends 'pkt' into the overlay through vxlan port 'port': to the VTEP its
 * destination was learned at, or to every VTEP of the flood list. */
void
vs_vxlan_egress(struct vs_ctx *ctx, struct vs_port *port, struct vs_pkt *pkt)
{
    struct vs_vxlan *vx = port->p.vxlan;
    uint32_t vni = vx->p.vlan_vni[pkt->vlan & 0xfff];
    uint32_t dests[VS_VXLAN_VTEPS_MAX];
    uint32_t n = 0;
    uint32_t n_vteps = atomic_load_explicit(&vx->n_vteps, memory_order_acquire);

    if (pkt->out_vtep && pkt->out_vtep <= n_vteps) {
        dests[n++] = pkt->out_vtep;
    } else {
        for (uint32_t i = 1; i <= n_vteps; i++) {
            if (vtep_floods(&vx->vteps[i], pkt->vlan)) {
                dests[n++] = i;
            }
        }
    }
    if (!vni || !n) {
        vs_count(ctx, port->p.id, VS_C_DROP_NO_DEST, 1);
        return;
    }
    if (vs_vnet_hdr_is_gso(&pkt->vh)) {
        egress_segmented(ctx, port, vx, pkt, vni, dests, n);
        return;
    }
    uint32_t rest = pkt->len - pkt->inner_off;
    if (port->p.mtu && rest - 2 > port->p.mtu) {
        vs_count(ctx, port->p.id, VS_C_DROP_OVERSIZE, 1);
        return;
    }
    uint64_t fh = flow_hash(vx->seed, pkt->data, pkt->data + pkt->inner_off,
                            pkt->data + pkt->len);
    for (uint32_t d = 0; d < n; d++) {
        enqueue(ctx, port, vx, dests[d], vni, fh, pkt->data,
                pkt->data + pkt->inner_off, rest);
    }
}

const struct vs_port_class vs_vxlan_class = {
    .name = "vxlan",
    .read_burst = vs_vxlan_read_burst,
    .egress = vs_vxlan_egress,
    .learn_port = vs_vxlan_learn_port,
    .split_horizon = 1,
};

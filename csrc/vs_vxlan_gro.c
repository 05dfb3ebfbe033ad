/*
 * vs_vxlan_gro.c: receive offload for decapsulated TCP, in userspace.
 *
 * What it is for: a VXLAN receiver gets a TCP stream as 1.4 KB datagrams,
 * and writing each into the VM's TAP runs the VM's TCP stack once per
 * segment.  The kernel merges such segments (GRO) before its bridge sees
 * them; this does the same for one decapsulated burst, so a TAP with TSO
 * gets one super-frame (virtio-net header: GSO TCPv4, gso_size = MSS,
 * partial checksum) per run of segments, and a port without TSO gets them
 * cut again by vs_gso_segment().
 *
 * Batch semantics: only neighbours in one burst merge, in order, never
 * across a gap: segment j joins the run of segment i when it directly
 * follows it in the burst, comes from the same VTEP, has the same
 * Ethernet/802.1Q/IP/TCP headers but for the IP id, IP checksum, TCP
 * sequence number (which must continue the run) and TCP checksum, carries
 * only ACK (PSH ends a run), and the run's segments all have the first
 * one's payload size (the last may be shorter).  Like Linux's GRO, every
 * segment's TCP checksum is verified before it is merged: the merged frame
 * carries a partial checksum the VM will trust.  IPv4 without options
 * only; anything else passes untouched.
 *
 * Frames here are as vs_vxlan.c left them: tagged ([MACs][8100 TCI][type]),
 * in rx buffers of VS_FRAME_MAX bytes each, starting 4 bytes in, or, for
 * the segments of a UDP GRO datagram, one after the other in one buffer.
 */
#include <string.h>

#include "vs_csum.h"
#include "vs_vxlan.h"
#include "vs_worker.h"

#define L3_OFF VS_ETH_VLAN_HLEN     /* 18 */
#define L4_OFF (L3_OFF + 20)
#define TCP_FLAG_ACK 0x10
#define TCP_FLAG_PSH 0x08
#define IP_MAX 65535u

struct seg {
    uint32_t hl;        /* Ethernet + tag + IP + TCP header bytes */
    uint32_t payload;
    uint32_t seq;
    uint8_t flags;
    uint32_t mss;       /* nonzero: a run merged earlier, of this gso_size */
};

/* Parses 'pkt' as a mergeable TCP/IPv4 segment with a correct checksum,
 * or as a run merged here before (its virtio-net header says so: decap
 * zeroes it, finish() sets it), whose segments were verified then and
 * whose checksum field holds the pseudo-header sum.  A burst that fills
 * up with a peer's UDP GRO batch is merged more than once (vs_vxlan.c):
 * a run then grows across those passes instead of ending at each, and
 * its bytes are summed once.  Returns 0 (and fills 's') or -1. */
static int
parse(const struct vs_pkt *pkt, struct seg *s)
{
    const uint8_t *f = pkt->data;
    const uint8_t *ip = f + L3_OFF;
    const uint8_t *tcp = f + L4_OFF;

    if (pkt->len < L4_OFF + 20 || vs_get_be16(f + 16) != VS_ETH_TYPE_IPV4
        || ip[0] != 0x45 || ip[9] != 6 || (vs_get_be16(ip + 6) & 0x3fff)
        || vs_get_be16(ip + 2) != pkt->len - L3_OFF) {
        return -1;
    }
    uint32_t doff = (uint32_t) (tcp[12] >> 4) * 4;
    uint8_t flags = tcp[13];
    if (doff < 20 || L4_OFF + doff >= pkt->len
        || (flags & ~TCP_FLAG_PSH) != TCP_FLAG_ACK) {
        return -1;
    }
    s->mss = 0;
    if (pkt->vh.gso_type == VS_VNET_GSO_TCPV4) {
        s->mss = pkt->vh.gso_size;
        if (!s->mss || pkt->vh.hdr_len != L4_OFF + doff) {
            return -1;
        }
    } else {
        uint32_t l4_len = pkt->len - L4_OFF;
        uint32_t sum = vs_csum_pseudo_v4(ip + 12, ip + 16, 6, l4_len);
        if (pkt->vh.gso_type || vs_csum_fold(vs_csum_partial(tcp, l4_len, sum)) != 0) {
            return -1;  /* wrong (or left partial by a veth): the VM decides */
        }
    }
    s->hl = L4_OFF + doff;
    s->payload = pkt->len - s->hl;
    s->seq = (uint32_t) ((tcp[4] << 24) | (tcp[5] << 16) | (tcp[6] << 8) | tcp[7]);
    s->flags = flags;
    return 0;
}

/* Whether segment 'b' may follow 'a' (headers of 'a''s run head). */
static int
same_flow(const struct vs_pkt *a, const struct seg *sa, const struct vs_pkt *b,
          const struct seg *sb)
{
    const uint8_t *x = a->data, *y = b->data;
    return sa->hl == sb->hl
           && !memcmp(x, y, L3_OFF + 2)                 /* L2, tag, IP ver, tos */
           && !memcmp(x + L3_OFF + 6, y + L3_OFF + 6, 4)   /* frag, ttl, proto */
           && !memcmp(x + L3_OFF + 12, y + L3_OFF + 12, 8 + 4)  /* addrs, ports */
           && !memcmp(x + L4_OFF + 8, y + L4_OFF + 8, 5)       /* ack, doff */
           && !memcmp(x + L4_OFF + 14, y + L4_OFF + 14, 2)     /* window */
           && !memcmp(x + L4_OFF + 18, y + L4_OFF + 18, sa->hl - L4_OFF - 18);
}

/* Turns the run now in 'head' ('n' segments of 'mss' payload bytes but the
 * last) into a GSO super-frame: IP length and checksum, the TCP checksum
 * field left with the pseudo-header sum, the virtio-net header. */
static void
finish(struct vs_pkt *head, const struct seg *s, uint32_t mss, uint8_t flags)
{
    uint8_t *ip = head->data + L3_OFF;
    uint8_t *tcp = head->data + L4_OFF;

    vs_put_be16(ip + 2, (uint16_t) (head->len - L3_OFF));
    vs_put_be16(ip + 10, 0);
    vs_put_be16(ip + 10, vs_csum_fold(vs_csum_partial(ip, 20, 0)));
    tcp[13] = flags;
    uint32_t pseudo = vs_csum_pseudo_v4(ip + 12, ip + 16, 6, head->len - L4_OFF);
    vs_put_be16(tcp + 16, (uint16_t) ~vs_csum_fold(pseudo));
    memset(&head->vh, 0, sizeof head->vh);
    head->vh.flags = VS_VNET_F_NEEDS_CSUM;
    head->vh.gso_type = VS_VNET_GSO_TCPV4;
    head->vh.gso_size = (uint16_t) mss;
    head->vh.hdr_len = (uint16_t) s->hl;
    head->vh.csum_start = L4_OFF;
    head->vh.csum_offset = 16;
}

/* Merges runs of TCP segments among the 'n' decapsulated frames in 'pkts'
 * (see the top of the file), all in the VS_FRAME_MAX-byte buffers from
 * 'bufs' on; returns how many frames are left, in order. */
uint32_t
vs_vxlan_coalesce(struct vs_pkt *pkts, uint32_t n, const uint8_t *bufs)
{
    uint32_t out = 0;

    for (uint32_t i = 0; i < n;) {
        struct vs_pkt *head = &pkts[i];
        struct seg sh, sj;
        uint32_t j = i + 1;
        /* A run grows in its head's buffer, which a segment of a UDP GRO
         * datagram (vs_vxlan.c) may start well inside. */
        uint32_t room = VS_FRAME_MAX
                        - (uint32_t) ((size_t) (head->data - bufs) % VS_FRAME_MAX);

        if (!parse(head, &sh) && !(sh.flags & TCP_FLAG_PSH)) {
            uint32_t mss = sh.mss ? sh.mss : sh.payload;
            uint32_t next = sh.seq + sh.payload, segs = 1;
            uint8_t flags = sh.flags;
            /* A merged run grows only while its last segment was whole. */
            uint32_t last = sh.payload % mss ? sh.payload % mss : mss;
            while (j < n && last == mss && !(flags & TCP_FLAG_PSH)
                   && pkts[j].in_vtep == head->in_vtep && !parse(&pkts[j], &sj)
                   && !sj.mss
                   && same_flow(head, &sh, &pkts[j], &sj) && sj.seq == next
                   && sj.payload <= mss
                   && head->len + sj.payload - L3_OFF <= IP_MAX
                   && head->len + sj.payload <= room) {
                /* memmove: with UDP GRO the segments of one datagram lie
                 * back to back in one buffer, and the run is compacted
                 * over the headers of the segments it swallowed. */
                memmove(head->data + head->len, pkts[j].data + sj.hl, sj.payload);
                head->len += sj.payload;
                next += sj.payload;
                last = sj.payload;
                flags |= sj.flags;
                segs++;
                j++;
            }
            if (segs > 1) {
                finish(head, &sh, mss, flags);
            }
        }
        if (out != i) {
            pkts[out] = *head;
        }
        out++;
        i = j;
    }
    return out;
}

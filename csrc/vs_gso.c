/*
 * vs_gso.c: checking virtio-net headers and segmenting GSO super-frames.
 *
 * Nothing here trusts the virtio-net header or the frame: the segmenter
 * parses L2 (up to two VLAN tags), L3 (IPv4 with options, IPv6 with
 * hop-by-hop and destination options) and L4 itself, and only checks the
 * header's csum_start/csum_offset against what it found.  hdr_len is a hint
 * (Linux treats it as one too) and is never used to find anything.
 *
 * Segments are built one at a time in the caller's scratch buffer: the
 * headers are copied once, then for each segment the payload slice is
 * copied after them (each payload byte is copied exactly once), the
 * per-segment fields are patched and the L4 checksum is computed over the
 * slice while it is still in L1 cache.  Segments leave fully checksummed.
 *
 * What changes per segment, as Linux's tcp_gso_segment() and
 * __udp_gso_segment() do it:
 *   IPv4: total length, id (original id + segment index), header checksum.
 *   IPv6: payload length.
 *   TCP:  sequence number (+ gso_size per segment), FIN and PSH only on the
 *         last segment, CWR only on the first, checksum.
 *   UDP:  length and checksum (each segment is a datagram of its own).
 */
#include "vs_gso.h"

#include <stdlib.h>
#include <string.h>

#include "vs_counters.h"
#include "vs_csum.h"

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_DSTOPTS_ 60

#define TCP_CSUM_OFFSET 16
#define UDP_CSUM_OFFSET 6
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_PSH 0x08
#define TCP_FLAG_CWR 0x80

/* Most VLAN tags we look through (802.1ad outer + 802.1Q inner), and most
 * IPv6 extension headers before the L4 header. */
#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT 4

/* Where the headers of a super-frame are, as found by gso_parse(). */
struct gso_layout {
    uint32_t l3_off;     /* IPv4 or IPv6 header */
    uint32_t l3_hlen;    /* IPv4 header length (options included) */
    uint32_t l4_off;     /* TCP or UDP header */
    uint32_t hdr_len;    /* every header: l4_off + L4 header length */
    uint32_t end;        /* end of the IP datagram (<= frame length) */
    int is_ipv6;
    int is_udp;
};

/* Returns 0 if 'vh' is safe to act on for the 'len'-byte frame 'frame',
 * otherwise the drop reason: VS_C_DROP_RUNT for a frame shorter than an
 * Ethernet header, VS_C_DROP_UNSUPPORTED_GSO for UFO (GSO_UDP), and
 * VS_C_DROP_BAD_VNET_HDR for unknown flags or GSO types, a NEEDS_CSUM
 * field outside the frame, GSO without NEEDS_CSUM, with gso_size 0, with a
 * csum_offset that is not the TCP or UDP checksum, or hdr_len > 'len'.
 *
 * Only the header's consistency with itself and with 'len' is checked:
 * vs_gso_segment() still validates the frame's own headers. */
int
vs_vnet_hdr_check(const struct vs_vnet_hdr *vh, const uint8_t *frame,
                  uint32_t len)
{
    uint8_t gso = vh->gso_type & ~VS_VNET_GSO_ECN;
    int ecn = (vh->gso_type & VS_VNET_GSO_ECN) != 0;

    if (len < VS_ETH_HLEN) {
        return VS_C_DROP_RUNT;
    }
    if (vh->flags & ~(VS_VNET_F_NEEDS_CSUM | VS_VNET_F_DATA_VALID)) {
        return VS_C_DROP_BAD_VNET_HDR;
    }
    if (vh->flags & VS_VNET_F_NEEDS_CSUM
        && (uint32_t) vh->csum_start + vh->csum_offset + 2 > len) {
        return VS_C_DROP_BAD_VNET_HDR;
    }
    if (vh->hdr_len > len) {
        return VS_C_DROP_BAD_VNET_HDR;
    }

    switch (gso) {
    case VS_VNET_GSO_NONE:
        return ecn ? VS_C_DROP_BAD_VNET_HDR : 0;
    case VS_VNET_GSO_TCPV4:
    case VS_VNET_GSO_TCPV6:
        if (vh->csum_offset != TCP_CSUM_OFFSET) {
            return VS_C_DROP_BAD_VNET_HDR;
        }
        break;
    case VS_VNET_GSO_UDP_L4:
        if (ecn || vh->csum_offset != UDP_CSUM_OFFSET) {
            return VS_C_DROP_BAD_VNET_HDR;
        }
        break;
    case VS_VNET_GSO_UDP:
        /* UFO: a valid type we do not segment (IP fragmentation). */
        return VS_C_DROP_UNSUPPORTED_GSO;
    default:
        return VS_C_DROP_BAD_VNET_HDR;
    }
    if (!vh->gso_size || !(vh->flags & VS_VNET_F_NEEDS_CSUM)) {
        return VS_C_DROP_BAD_VNET_HDR;
    }
    return 0;
}

/* Finds the IPv6 upper-layer header of the datagram at 'l3' in 'frame',
 * which ends at 'end', skipping hop-by-hop and destination options (the
 * only extension headers that neither change the pseudo-header nor make
 * segmenting wrong).  On success stores its offset in '*l4' and its
 * protocol in '*proto' and returns 0, otherwise returns a drop reason. */
static int
ipv6_find_l4(const uint8_t *frame, uint32_t l3, uint32_t end, uint32_t *l4,
             uint8_t *proto)
{
    uint8_t nh = frame[l3 + 6];
    uint32_t off = l3 + 40;
    int i;

    for (i = 0; i < MAX_IPV6_EXT; i++) {
        if (nh != IPPROTO_HOPOPTS_ && nh != IPPROTO_DSTOPTS_) {
            break;
        }
        if (off + 8 > end) {
            return VS_C_DROP_BAD_VNET_HDR;
        }
        nh = frame[off];
        off += (frame[off + 1] + 1u) * 8;
        if (off > end) {
            return VS_C_DROP_BAD_VNET_HDR;
        }
    }
    *l4 = off;
    *proto = nh;
    return 0;
}

/* Parses the 'len'-byte super-frame 'frame' announced by 'vh' (already
 * passed by vs_vnet_hdr_check()) into '*lay'.  Returns 0, or
 * VS_C_DROP_BAD_VNET_HDR if the frame is not what 'vh' says (wrong or
 * truncated IP or L4 header, IP fragment, csum_start not at the L4
 * header), or VS_C_DROP_UNSUPPORTED_GSO for what we do not segment (more
 * VLAN tags, IPv6 extension headers other than options, jumbograms). */
static int
gso_parse(const uint8_t *frame, uint32_t len, const struct vs_vnet_hdr *vh,
          struct gso_layout *lay)
{
    uint8_t gso = vh->gso_type & ~VS_VNET_GSO_ECN;
    uint32_t off = VS_ETH_HLEN;
    uint16_t type = vs_get_be16(frame + 12);
    uint32_t l4_hlen;
    uint8_t proto;
    int i;

    for (i = 0; i < MAX_VLAN_TAGS; i++) {
        if (type != VS_ETH_TYPE_VLAN && type != VS_ETH_TYPE_QINQ) {
            break;
        }
        if (off + VS_VLAN_HLEN > len) {
            return VS_C_DROP_BAD_VNET_HDR;
        }
        type = vs_get_be16(frame + off + 2);
        off += VS_VLAN_HLEN;
    }

    memset(lay, 0, sizeof *lay);
    lay->l3_off = off;
    if (type == VS_ETH_TYPE_IPV4) {
        uint32_t ihl, tot_len;

        if (gso == VS_VNET_GSO_TCPV6 || off + 20 > len
            || frame[off] >> 4 != 4) {
            return VS_C_DROP_BAD_VNET_HDR;
        }
        ihl = (frame[off] & 0xfu) * 4;
        tot_len = vs_get_be16(frame + off + 2);
        if (ihl < 20 || tot_len < ihl || off + tot_len > len
            || vs_get_be16(frame + off + 6) & 0x3fff) {  /* MF, offset */
            return VS_C_DROP_BAD_VNET_HDR;
        }
        lay->l3_hlen = ihl;
        lay->l4_off = off + ihl;
        lay->end = off + tot_len;
        proto = frame[off + 9];
    } else if (type == VS_ETH_TYPE_IPV6) {
        uint32_t plen;
        int error;

        if (gso == VS_VNET_GSO_TCPV4 || off + 40 > len
            || frame[off] >> 4 != 6) {
            return VS_C_DROP_BAD_VNET_HDR;
        }
        plen = vs_get_be16(frame + off + 4);
        if (!plen) {
            return VS_C_DROP_UNSUPPORTED_GSO;   /* jumbogram */
        }
        if (off + 40 + plen > len) {
            return VS_C_DROP_BAD_VNET_HDR;
        }
        lay->is_ipv6 = 1;
        lay->l3_hlen = 40;
        lay->end = off + 40 + plen;
        error = ipv6_find_l4(frame, off, lay->end, &lay->l4_off, &proto);
        if (error) {
            return error;
        }
    } else if (type == VS_ETH_TYPE_VLAN || type == VS_ETH_TYPE_QINQ) {
        return VS_C_DROP_UNSUPPORTED_GSO;       /* a third tag */
    } else {
        return VS_C_DROP_BAD_VNET_HDR;          /* GSO on non-IP */
    }

    if (gso == VS_VNET_GSO_UDP_L4) {
        if (proto != IPPROTO_UDP_) {
            return lay->is_ipv6 && proto != IPPROTO_TCP_
                   ? VS_C_DROP_UNSUPPORTED_GSO : VS_C_DROP_BAD_VNET_HDR;
        }
        lay->is_udp = 1;
        l4_hlen = 8;
    } else {
        if (proto != IPPROTO_TCP_) {
            /* In IPv6 another next header is most likely an extension
             * header we do not walk (routing, fragment, AH, ...). */
            return lay->is_ipv6 && proto != IPPROTO_UDP_
                   ? VS_C_DROP_UNSUPPORTED_GSO : VS_C_DROP_BAD_VNET_HDR;
        }
        if (lay->l4_off + 20 > lay->end) {
            return VS_C_DROP_BAD_VNET_HDR;
        }
        l4_hlen = (frame[lay->l4_off + 12] >> 4) * 4u;
        if (l4_hlen < 20) {
            return VS_C_DROP_BAD_VNET_HDR;
        }
    }
    if (lay->l4_off + l4_hlen > lay->end || vh->csum_start != lay->l4_off) {
        return VS_C_DROP_BAD_VNET_HDR;
    }
    lay->hdr_len = lay->l4_off + l4_hlen;
    return 0;
}

/* Cuts the GSO super-frame 'frame' ('len' bytes, Ethernet header first,
 * described by 'vh') into frames of at most vh->gso_size L4 payload bytes,
 * built one at a time in 'scratch' ('scratch_len' bytes; VS_FRAME_MAX is
 * always enough) and passed to 'emit' with 'ctx'.  Segments are fully
 * checksummed.  'frame' and 'vh' are not modified.
 *
 * Returns the number of segments 'emit' accepted (returned 0 for): all of
 * them, or fewer if 'emit' returned nonzero, which stops segmenting (the
 * refused segment is not counted; 'ctx' can say why).  A super-frame with
 * no payload gives one segment.  On error returns a negative drop reason,
 * before anything is emitted: -VS_C_DROP_UNSUPPORTED_GSO for a frame that
 * is not GSO or that we cannot segment, -VS_C_DROP_BAD_VNET_HDR (or
 * -VS_C_DROP_RUNT) for a header or frame that is malformed, and
 * -VS_C_DROP_OVERSIZE if 'scratch_len' cannot hold the largest segment. */
static int gso_cut(const uint8_t *frame, uint32_t len, const struct vs_vnet_hdr *vh,
                   uint8_t *scratch, uint32_t scratch_len, vs_gso_emit_fn emit,
                   vs_gso_place_fn place, void *ctx);

int
vs_gso_segment(const uint8_t *frame, uint32_t len,
               const struct vs_vnet_hdr *vh, uint8_t *scratch,
               uint32_t scratch_len, vs_gso_emit_fn emit, void *ctx)
{
    return gso_cut(frame, len, vh, scratch, scratch_len, emit, NULL, ctx);
}

/* Segments like vs_gso_segment(), but builds each segment where 'place'
 * (called with 'ctx' and the segment's length) says, and leaves it there:
 * no scratch buffer and no copy out of it, for a caller that sends the
 * segments from where they lie (vs_vxlan.c's UDP GSO batches).  Returns
 * the number of segments placed: all of them, or fewer if 'place'
 * returned NULL; or a negative drop reason as vs_gso_segment() does. */
int
vs_gso_segment_placed(const uint8_t *frame, uint32_t len,
                      const struct vs_vnet_hdr *vh, vs_gso_place_fn place,
                      void *ctx)
{
    return gso_cut(frame, len, vh, NULL, 0, NULL, place, ctx);
}

/* Both of the above: with 'place', segments are built where it says;
 * without, in 'scratch' and passed to 'emit'. */
static int
gso_cut(const uint8_t *frame, uint32_t len, const struct vs_vnet_hdr *vh,
        uint8_t *scratch, uint32_t scratch_len, vs_gso_emit_fn emit,
        vs_gso_place_fn place, void *ctx)
{
    struct gso_layout lay;
    uint32_t payload, mss, nseg, addr_sum, seq0, i;
    uint16_t ip_id0 = 0;
    uint8_t tcp_flags0 = 0;
    uint8_t proto;
    int error;

    if (!vs_vnet_hdr_is_gso(vh)) {
        return -VS_C_DROP_UNSUPPORTED_GSO;
    }
    error = vs_vnet_hdr_check(vh, frame, len);
    if (!error) {
        error = gso_parse(frame, len, vh, &lay);
    }
    if (error) {
        return -error;
    }

    mss = vh->gso_size;
    payload = lay.end - lay.hdr_len;
    if (!place && scratch_len < lay.hdr_len + (payload < mss ? payload : mss)) {
        return -VS_C_DROP_OVERSIZE;
    }
    nseg = payload ? (payload + mss - 1) / mss : 1;

    /* The pseudo-header minus its length, which varies per segment. */
    proto = lay.is_udp ? IPPROTO_UDP_ : IPPROTO_TCP_;
    if (lay.is_ipv6) {
        addr_sum = vs_csum_pseudo_v6(frame + lay.l3_off + 8,
                                     frame + lay.l3_off + 24, proto, 0);
    } else {
        addr_sum = vs_csum_pseudo_v4(frame + lay.l3_off + 12,
                                     frame + lay.l3_off + 16, proto, 0);
        ip_id0 = vs_get_be16(frame + lay.l3_off + 4);
    }
    if (!lay.is_udp) {
        const uint8_t *th = frame + lay.l4_off;

        seq0 = ((uint32_t) th[4] << 24) | ((uint32_t) th[5] << 16)
               | ((uint32_t) th[6] << 8) | th[7];
        tcp_flags0 = th[13];
    } else {
        seq0 = 0;
    }

    /* Headers once; every field patched below is patched in every
     * segment, so nothing carries over from the previous one. */
    if (!place) {
        memcpy(scratch, frame, lay.hdr_len);
    }
    for (i = 0; i < nseg; i++) {
        uint32_t pay_off = i * mss;
        uint32_t n = payload - pay_off < mss ? payload - pay_off : mss;
        uint32_t seg_len = lay.hdr_len + n;
        uint32_t l4_len = seg_len - lay.l4_off;
        uint8_t *seg = scratch;
        uint16_t csum;

        if (place) {
            seg = place(ctx, seg_len);
            if (!seg) {
                return (int) i;
            }
            memcpy(seg, frame, lay.hdr_len);
        }
        uint8_t *l3 = seg + lay.l3_off;
        uint8_t *l4 = seg + lay.l4_off;
        memcpy(seg + lay.hdr_len, frame + lay.hdr_len + pay_off, n);

        if (lay.is_ipv6) {
            vs_put_be16(l3 + 4, (uint16_t) (seg_len - lay.l3_off - 40));
        } else {
            vs_put_be16(l3 + 2, (uint16_t) (seg_len - lay.l3_off));
            vs_put_be16(l3 + 4, (uint16_t) (ip_id0 + i));
            vs_put_be16(l3 + 10, 0);
            vs_put_be16(l3 + 10,
                        vs_csum_fold(vs_csum_partial(l3, lay.l3_hlen, 0)));
        }

        if (lay.is_udp) {
            vs_put_be16(l4 + 4, (uint16_t) l4_len);
            vs_put_be16(l4 + UDP_CSUM_OFFSET, 0);
        } else {
            uint32_t seq = seq0 + pay_off;
            uint8_t flags = tcp_flags0;

            if (i + 1 < nseg) {
                flags &= ~(TCP_FLAG_FIN | TCP_FLAG_PSH);
            }
            if (i > 0) {
                flags &= ~TCP_FLAG_CWR;
            }
            l4[4] = (uint8_t) (seq >> 24);
            l4[5] = (uint8_t) (seq >> 16);
            l4[6] = (uint8_t) (seq >> 8);
            l4[7] = (uint8_t) seq;
            l4[13] = flags;
            vs_put_be16(l4 + TCP_CSUM_OFFSET, 0);
        }
        csum = vs_csum_fold(vs_csum_partial(l4, l4_len, addr_sum + l4_len));
        if (lay.is_udp && !csum) {
            csum = 0xffff;
        }
        vs_put_be16(l4 + (lay.is_udp ? UDP_CSUM_OFFSET : TCP_CSUM_OFFSET),
                    csum);

        if (!place && emit(ctx, seg, seg_len)) {
            return (int) i;
        }
    }
    return (int) nseg;
}

/* Sets '*seg_l3_len' to the IP length of the largest segment that
 * super-frame 'frame' stands for: all its L3/L4 headers plus gso_size (or
 * the whole payload when that is shorter).  This is what a TSO-capable
 * egress port will put on the wire per segment, so it is what must fit
 * that port's MTU.  Returns 0, or the drop reason vs_gso_segment() would
 * give for the frame. */
int
vs_gso_seg_l3_len(const uint8_t *frame, uint32_t len,
                  const struct vs_vnet_hdr *vh, uint32_t *seg_l3_len)
{
    struct gso_layout lay;
    uint32_t payload;
    int error;

    if (!vs_vnet_hdr_is_gso(vh)) {
        return VS_C_DROP_UNSUPPORTED_GSO;
    }
    error = vs_vnet_hdr_check(vh, frame, len);
    if (!error) {
        error = gso_parse(frame, len, vh, &lay);
    }
    if (error) {
        return error;
    }
    payload = lay.end - lay.hdr_len;
    *seg_l3_len = lay.hdr_len - lay.l3_off
                  + (payload < vh->gso_size ? payload : vh->gso_size);
    return 0;
}

/* Where vs_gso_segment_to_buffer() collects segments. */
struct gso_buffer {
    uint8_t *out;
    uint32_t out_len;
    uint32_t used;
    uint32_t *seg_lens;
    uint32_t max_segs;
    uint32_t n_segs;
    int full;            /* a segment did not fit */
};

/* vs_gso_emit_fn for vs_gso_segment_to_buffer(): appends 'seg' ('seg_len'
 * bytes) to the gso_buffer 'ctx'.  Returns 0, or 1 if it does not fit. */
static int
gso_buffer_emit(void *ctx, const uint8_t *seg, uint32_t seg_len)
{
    struct gso_buffer *b = ctx;

    if (b->n_segs >= b->max_segs || seg_len > b->out_len - b->used) {
        b->full = 1;
        return 1;
    }
    memcpy(b->out + b->used, seg, seg_len);
    b->used += seg_len;
    b->seg_lens[b->n_segs++] = seg_len;
    return 0;
}

/* Segments like vs_gso_segment(), but writes the segments back to back into
 * 'out' ('out_len' bytes) and their lengths into 'seg_lens' (room for
 * 'max_segs').  For tests and fuzzing: it allocates its scratch buffer, of
 * exactly 'len' bytes (no segment is longer than the super-frame), so a
 * sanitizer catches any write past a segment.
 *
 * Returns the number of segments, or a negative drop reason as
 * vs_gso_segment() does; -VS_C_DROP_OVERSIZE also when 'out' or
 * 'seg_lens' is too small for every segment. */
int
vs_gso_segment_to_buffer(const uint8_t *frame, uint32_t len,
                         const struct vs_vnet_hdr *vh, uint8_t *out,
                         uint32_t out_len, uint32_t *seg_lens,
                         uint32_t max_segs)
{
    struct gso_buffer b = {
        .out = out, .out_len = out_len, .seg_lens = seg_lens,
        .max_segs = max_segs,
    };
    uint8_t *scratch = malloc(len ? len : 1);
    int n;

    if (!scratch) {
        return -VS_C_DROP_OVERSIZE;
    }
    n = vs_gso_segment(frame, len, vh, scratch, len, gso_buffer_emit, &b);
    free(scratch);
    if (b.full) {
        return -VS_C_DROP_OVERSIZE;
    }
    return n;
}

/*
 * fuzz_gso.c: libFuzzer target for the virtio-net header check, software
 * segmentation and checksum completion (csrc/vs_gso.c, csrc/vs_csum.c).
 *
 * Input: a 10-byte virtio-net header (host order, as the kernel writes it)
 * then an Ethernet frame.  If vs_vnet_hdr_check() accepts the header:
 *   - a GSO frame is cut with vs_gso_segment_to_buffer(), whose scratch
 *     buffer is exactly as long as the frame, so ASan sees any overrun;
 *   - a frame with NEEDS_CSUM gets vs_csum_complete() on a copy.
 *
 * Oracle (__builtin_trap() when broken):
 *   - segmenting never writes the input, and either fails with a drop
 *     reason or gives ceil(payload / gso_size) segments (1 if no payload);
 *   - every segment re-parsed: same L2 and L3 addresses as the super-frame;
 *     IPv4 total length (IPv6 payload length + 40) == segment length - L2
 *     header, a correct IPv4 header checksum; TCP: sequence number advances
 *     by gso_size, a correct checksum over the pseudo header; UDP: length
 *     == L4 length, a correct checksum; every segment but the last carries
 *     exactly gso_size payload bytes, and the payloads put back together
 *     are the super-frame's payload;
 *   - after vs_csum_complete(), the one's complement sum from csum_start to
 *     the end plus the pseudo-header sum the field held before folds to 0
 *     (for a field at an even distance from csum_start, the only case where
 *     "checksum" has a meaning), and bytes outside the field are unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs_counters.h"
#include "vs_csum.h"
#include "vs_frame.h"
#include "vs_gso.h"

/* A super-frame is at most ~64 KiB and gso_size >= 1, so at most ~64 Ki
 * segments, each at most hdr_len (< 256 + options) + 1 byte when that
 * many: size the output for the worst case (every segment a full copy of
 * the headers). */
#define MAX_SEGS 70000
#define OUT_LEN (64u * 1024 * 1024)

static uint8_t *out;
static uint32_t seg_lens[MAX_SEGS];

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "fuzz_gso: invariant broken: %s: ", #cond);    \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            __builtin_trap();                                              \
        }                                                                  \
    } while (0)

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    out = malloc(OUT_LEN);
    if (!out) {
        abort();
    }
    return 0;
}

/* The offsets of a frame's headers, found independently of vs_gso.c. */
struct layout {
    uint32_t l3, l4, hdr, end;
    int v6, udp;
};

/* Parses 'f' ('len' bytes) loosely: two VLAN tags at most, IPv4 or IPv6
 * with hop-by-hop/destination options, TCP or UDP.  Only called on frames
 * vs_gso_segment() accepted, so it only has to agree with it. */
static int
parse(const uint8_t *f, uint32_t len, struct layout *l)
{
    uint32_t off = 14;
    uint16_t type = vs_get_be16(f + 12);
    uint8_t proto;

    for (int i = 0; i < 2 && (type == 0x8100 || type == 0x88a8); i++) {
        CHECK(off + 4 <= len, "tag");
        type = vs_get_be16(f + off + 2);
        off += 4;
    }
    memset(l, 0, sizeof *l);
    l->l3 = off;
    if (type == VS_ETH_TYPE_IPV4) {
        CHECK(off + 20 <= len, "v4 header");
        l->l4 = off + (f[off] & 0xf) * 4u;
        l->end = off + vs_get_be16(f + off + 2);
        proto = f[off + 9];
    } else {
        CHECK(type == VS_ETH_TYPE_IPV6, "segmented a non-IP frame (type %#x)",
              type);
        CHECK(off + 40 <= len, "v6 header");
        l->v6 = 1;
        l->end = off + 40 + vs_get_be16(f + off + 4);
        proto = f[off + 6];
        l->l4 = off + 40;
        while (proto == 0 || proto == 60) {
            CHECK(l->l4 + 8 <= l->end, "v6 ext");
            proto = f[l->l4];
            l->l4 += (f[l->l4 + 1] + 1u) * 8;
        }
    }
    CHECK(l->end <= len, "IP datagram past the frame: %u > %u", l->end, len);
    if (proto == 17) {
        l->udp = 1;
        l->hdr = l->l4 + 8;
    } else {
        CHECK(proto == 6, "segmented L4 protocol %u", proto);
        CHECK(l->l4 + 20 <= l->end, "tcp header");
        l->hdr = l->l4 + (f[l->l4 + 12] >> 4) * 4u;
    }
    CHECK(l->hdr <= l->end, "headers past the datagram");
    return 0;
}

static uint32_t
get_be32(const uint8_t *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | p[3];
}

static void
check_segments(const uint8_t *frame, uint32_t len,
               const struct vs_vnet_hdr *vh, int n)
{
    struct layout sl, l;
    uint32_t mss = vh->gso_size;
    uint32_t used = 0, pay_done = 0;

    parse(frame, len, &l);
    uint32_t payload = l.end - l.hdr;
    uint32_t want = payload ? (payload + mss - 1) / mss : 1;
    CHECK((uint32_t) n == want, "%d segments for %u payload bytes, mss %u",
          n, payload, mss);

    for (int i = 0; i < n; i++) {
        const uint8_t *s = out + used;
        uint32_t slen = seg_lens[i];
        used += slen;

        CHECK(slen >= l.hdr, "segment %d shorter than the headers", i);
        CHECK(!memcmp(s, frame, 12), "segment %d: MACs changed", i);
        CHECK(!memcmp(s + 12, frame + 12, l.l3 - 12),
              "segment %d: VLAN tags changed", i);
        parse(s, slen, &sl);
        CHECK(sl.l3 == l.l3 && sl.l4 == l.l4 && sl.hdr == l.hdr
              && sl.udp == l.udp && sl.v6 == l.v6, "segment %d: layout", i);
        CHECK(sl.end == slen, "segment %d: IP says %u bytes after L2, "
              "segment has %u", i, sl.end - sl.l3, slen - sl.l3);

        uint32_t l4_len = slen - sl.l4;
        uint32_t pseudo;
        const uint8_t *ip = s + sl.l3;
        if (sl.v6) {
            CHECK(!memcmp(ip + 8, frame + l.l3 + 8, 32),
                  "segment %d: v6 addresses", i);
            pseudo = vs_csum_pseudo_v6(ip + 8, ip + 24,
                                       sl.udp ? 17 : 6, l4_len);
        } else {
            uint32_t ihl = sl.l4 - sl.l3;
            CHECK(vs_csum_fold(vs_csum_partial(ip, ihl, 0)) == 0,
                  "segment %d: bad IPv4 header checksum", i);
            CHECK(!memcmp(ip + 12, frame + l.l3 + 12, 8),
                  "segment %d: v4 addresses", i);
            CHECK(vs_get_be16(ip + 4)
                  == (uint16_t) (vs_get_be16(frame + l.l3 + 4) + i),
                  "segment %d: IPv4 id", i);
            pseudo = vs_csum_pseudo_v4(ip + 12, ip + 16,
                                       sl.udp ? 17 : 6, l4_len);
        }
        CHECK(vs_csum_fold(vs_csum_partial(s + sl.l4, l4_len, pseudo)) == 0,
              "segment %d: bad %s checksum", i, sl.udp ? "UDP" : "TCP");
        if (sl.udp) {
            CHECK(vs_get_be16(s + sl.l4 + 4) == l4_len,
                  "segment %d: UDP length %u, L4 has %u", i,
                  vs_get_be16(s + sl.l4 + 4), l4_len);
        } else {
            CHECK(get_be32(s + sl.l4 + 4)
                  == get_be32(frame + l.l4 + 4) + pay_done,
                  "segment %d: TCP sequence", i);
        }

        uint32_t pay = slen - sl.hdr;
        if (i + 1 < n) {
            CHECK(pay == mss, "segment %d: %u payload bytes, mss %u", i, pay,
                  mss);
        }
        CHECK(pay_done + pay <= payload
              && !memcmp(s + sl.hdr, frame + l.hdr + pay_done, pay),
              "segment %d: payload is not the super-frame's", i);
        pay_done += pay;
    }
    CHECK(pay_done == payload, "segments carry %u of %u payload bytes",
          pay_done, payload);
}

static void
check_csum_complete(const uint8_t *frame, uint32_t len,
                    const struct vs_vnet_hdr *vh)
{
    uint8_t *copy = malloc(len);
    uint32_t field = (uint32_t) vh->csum_start + vh->csum_offset;

    memcpy(copy, frame, len);
    int r = vs_csum_complete(copy, len, vh);
    CHECK(r == 0, "vs_csum_complete refused what vs_vnet_hdr_check took");
    CHECK(!memcmp(copy, frame, field)
          && !memcmp(copy + field + 2, frame + field + 2, len - field - 2),
          "vs_csum_complete wrote outside the checksum field");
    if (vh->csum_offset % 2 == 0) {
        /* The field held the pseudo-header sum P; the stored checksum C
         * makes data + C == ~P, so data + C + P is -0. */
        uint32_t p = vs_get_be16(frame + field);
        uint16_t folded = vs_csum_fold(vs_csum_partial(
            copy + vh->csum_start, len - vh->csum_start, p));
        CHECK(folded == 0, "completed checksum does not verify: fold %#x",
              folded);
    }
    free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vs_vnet_hdr vh;

    if (size < VS_VNET_HDR_LEN || size - VS_VNET_HDR_LEN > VS_FRAME_MAX) {
        return 0;
    }
    memset(&vh, 0, sizeof vh);
    vh.flags = data[0];
    vh.gso_type = data[1];
    memcpy(&vh.hdr_len, data + 2, 2);
    memcpy(&vh.gso_size, data + 4, 2);
    memcpy(&vh.csum_start, data + 6, 2);
    memcpy(&vh.csum_offset, data + 8, 2);

    /* An exact-size heap copy: ASan catches reads past the frame. */
    uint32_t len = (uint32_t) (size - VS_VNET_HDR_LEN);
    uint8_t *frame = malloc(len ? len : 1);
    memcpy(frame, data + VS_VNET_HDR_LEN, len);

    int r = vs_vnet_hdr_check(&vh, frame, len);
    CHECK(r >= 0 && r < VS_N_COUNTERS, "check returned %d", r);
    if (!r && vs_vnet_hdr_is_gso(&vh)) {
        int n = vs_gso_segment_to_buffer(frame, len, &vh, out, OUT_LEN,
                                         seg_lens, MAX_SEGS);
        CHECK(!memcmp(frame, data + VS_VNET_HDR_LEN, len),
              "segmenting modified the super-frame");
        if (n >= 0) {
            check_segments(frame, len, &vh, n);
        } else {
            CHECK(-n >= VS_C_FIRST_DROP && -n < VS_N_COUNTERS,
                  "segment returned %d", n);
        }
    }
    if (!r && (vh.flags & VS_VNET_F_NEEDS_CSUM)) {
        check_csum_complete(frame, len, &vh);
    }
    free(frame);
    return 0;
}

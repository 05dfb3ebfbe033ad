/*
 * vs_csum.c: RFC 1071 Internet checksums.
 *
 * Sums cross this API "as numbers in network order": the one's complement
 * sum of the data read as big-endian 16-bit words, so a folded checksum is
 * stored with vs_put_be16() and read with vs_get_be16(), on any host.
 *
 * The hot loop does not read big-endian words.  A one's complement sum is
 * independent of byte order up to one final swap (RFC 1071 section 2(B)),
 * and of word size up to a final fold (2(C)), so it adds native 64-bit words
 * with end-around carry, folds to 16 bits and swaps once at the end.  The
 * result is bit for bit the classic 16-bit loop's, including 0 for
 * all-zero data and 0xffff (never 0) for any other data summing to "-0".
 */
#include "vs_csum.h"

#include <string.h>

#include "vs_counters.h"

/* Offset of the checksum field in a UDP header: a computed UDP checksum of
 * 0 must be sent as 0xffff, since 0 means "no checksum" (RFC 768). */
#define VS_UDP_CSUM_OFFSET 6

/* Returns the 8 bytes at 'p' as a native-order word; 'p' may be unaligned. */
static inline uint64_t
load64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof v);    /* one load instruction on x86 and arm64 */
    return v;
}

/* Returns 'a' + 'b' with the carry out of bit 63 added back in (one's
 * complement addition on 64-bit words); compiles to add + adc. */
static inline uint64_t
add_carry64(uint64_t a, uint64_t b)
{
    uint64_t s = a + b;

    return s + (s < a);
}

/* Folds the 64-bit one's complement sum 's' to 16 bits without changing
 * its value modulo 0xffff; a nonzero 's' never folds to 0. */
static inline uint32_t
fold64(uint64_t s)
{
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (uint32_t) s;
}

/* Adds the 'len' bytes at 'data' into the partial sum 'sum' (network order,
 * folded or not, e.g. a pseudo-header sum or the result of an earlier call
 * over the preceding bytes, which must then have had an even length).
 * 'data' may have any alignment and 'len' may be odd: a last odd byte is
 * the high byte of a word whose low byte is 0.
 *
 * Returns the sum folded to 16 bits (0..0xffff), not complemented. */
uint32_t
vs_csum_partial(const void *data, size_t len, uint32_t sum)
{
    const uint8_t *p = data;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    uint32_t native;

    /* Four independent carry chains: 32 bytes per iteration. */
    while (len >= 32) {
        s0 = add_carry64(s0, load64(p));
        s1 = add_carry64(s1, load64(p + 8));
        s2 = add_carry64(s2, load64(p + 16));
        s3 = add_carry64(s3, load64(p + 24));
        p += 32;
        len -= 32;
    }
    while (len >= 8) {
        s0 = add_carry64(s0, load64(p));
        p += 8;
        len -= 8;
    }
    if (len) {
        /* Zero padding keeps the tail at its place in the stream: an odd
         * last byte becomes the high (first) byte of a big-endian word. */
        uint8_t tail[8] = { 0 };

        memcpy(tail, p, len);
        s1 = add_carry64(s1, load64(tail));
    }
    s0 = add_carry64(add_carry64(s0, s1), add_carry64(s2, s3));

    native = fold64(s0);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    native = ((native & 0xff) << 8) | (native >> 8);
#endif
    return fold64((uint64_t) native + sum);
}

/* Returns the checksum to store for the partial sum 'sum': 'sum' folded to
 * 16 bits and complemented, in host order (store it with vs_put_be16()).
 * Like Linux's csum_fold(), this complements: a correct packet summed over
 * its checksum field gives vs_csum_fold() == 0. */
uint16_t
vs_csum_fold(uint32_t sum)
{
    return (uint16_t) ~fold64(sum);
}

/* Returns the unfolded sum of the TCP/UDP pseudo-header over IPv4
 * (RFC 793 section 3.1): source and destination addresses 'src4' and
 * 'dst4' (4 bytes each, network order as in the packet), protocol 'proto'
 * and the L4 length 'l4_len' in bytes (header plus payload). */
uint32_t
vs_csum_pseudo_v4(const uint8_t *src4, const uint8_t *dst4, uint8_t proto,
                  uint32_t l4_len)
{
    return (uint32_t) vs_get_be16(src4) + vs_get_be16(src4 + 2)
           + vs_get_be16(dst4) + vs_get_be16(dst4 + 2)
           + proto + (l4_len >> 16) + (l4_len & 0xffff);
}

/* Returns the unfolded sum of the upper-layer pseudo-header over IPv6
 * (RFC 8200 section 8.1): addresses 'src16' and 'dst16' (16 bytes each, as
 * in the packet), next header 'proto' and the upper-layer length 'l4_len'
 * in bytes. */
uint32_t
vs_csum_pseudo_v6(const uint8_t *src16, const uint8_t *dst16, uint8_t proto,
                  uint32_t l4_len)
{
    uint32_t sum = proto + (l4_len >> 16) + (l4_len & 0xffff);
    int i;

    for (i = 0; i < 16; i += 2) {
        sum += vs_get_be16(src16 + i) + vs_get_be16(dst16 + i);
    }
    return sum;
}

/* Completes the partial checksum of the 'len'-byte Ethernet frame 'frame'
 * as a NIC would for CHECKSUM_PARTIAL: sums [csum_start, 'len') of 'vh',
 * whose field at csum_start + csum_offset already holds the folded
 * pseudo-header sum (Linux leaves it there), and stores the complemented
 * result in that field.  A result of 0 is stored as 0xffff when the field
 * is at the UDP checksum offset (6).  'vh' is not modified: the caller
 * clears NEEDS_CSUM in its own copy if it wants to.
 *
 * Returns 0 (also when 'vh' does not say NEEDS_CSUM: nothing to do), or
 * VS_C_DROP_BAD_VNET_HDR if the field is not inside the frame. */
int
vs_csum_complete(uint8_t *frame, uint32_t len, const struct vs_vnet_hdr *vh)
{
    uint32_t start = vh->csum_start;
    uint32_t field = start + vh->csum_offset;
    uint16_t csum;

    if (!(vh->flags & VS_VNET_F_NEEDS_CSUM)) {
        return 0;
    }
    if (field + 2 > len) {      /* no overflow: both are 16-bit */
        return VS_C_DROP_BAD_VNET_HDR;
    }
    csum = vs_csum_fold(vs_csum_partial(frame + start, len - start, 0));
    if (csum == 0 && vh->csum_offset == VS_UDP_CSUM_OFFSET) {
        csum = 0xffff;
    }
    vs_put_be16(frame + field, csum);
    return 0;
}

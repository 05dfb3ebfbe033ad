/*
 * vs_csum.h: Internet checksums (RFC 1071) and completing partial checksums.
 *
 * A frame whose virtio-net header says NEEDS_CSUM carries an L4 checksum
 * field that holds only the pseudo-header sum: the sender left the rest to
 * "hardware".  When the egress port cannot take that promise (no checksum
 * offload), the switch must finish the job here, or TCP and UDP silently
 * black-hole while ping still works.
 *
 * Byte order: sums are numbers in network order (the data read as
 * big-endian 16-bit words), so vs_put_be16(field, vs_csum_fold(sum)) stores
 * a checksum.  vs_csum_fold() complements, like Linux's csum_fold():
 * summing a correct packet over its checksum field gives fold == 0.
 *
 * Pure functions over caller-owned buffers; safe from any thread.
 */
#ifndef VS_CSUM_H
#define VS_CSUM_H 1

#include <stddef.h>
#include <stdint.h>

#include "vs_frame.h"

/* Basics. */
uint32_t vs_csum_partial(const void *data, size_t len, uint32_t sum);
uint16_t vs_csum_fold(uint32_t sum);

/* Pseudo-header sums (unfolded), for TCP/UDP over IPv4 and IPv6.
 * 'l4_len' and 'proto' in host order; addresses as they are in the packet. */
uint32_t vs_csum_pseudo_v4(const uint8_t *src4, const uint8_t *dst4,
                           uint8_t proto, uint32_t l4_len);
uint32_t vs_csum_pseudo_v6(const uint8_t *src16, const uint8_t *dst16,
                           uint8_t proto, uint32_t l4_len);

/* Offload completion. */
int vs_csum_complete(uint8_t *frame, uint32_t len,
                     const struct vs_vnet_hdr *vh);

#endif /* vs_csum.h */

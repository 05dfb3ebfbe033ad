/*
 * vs_gso.h: checking virtio-net headers and segmenting GSO super-frames.
 *
 * A TAP with TUNSETOFFLOAD(TSO) or an AF_PACKET socket with PACKET_VNET_HDR
 * hands us TCP super-frames of up to 64 KiB with gso_size = MSS.  When the
 * egress port can take them they pass through untouched; when it cannot,
 * vs_gso_segment() cuts them into MSS-sized frames with correct IPv4 ids,
 * TCP sequence numbers, flags and checksums, VLAN tag or not.
 *
 * Hostile input: the header comes from an untrusted VM.  vs_vnet_hdr_check()
 * is called on every received frame before anything trusts hdr_len,
 * csum_start or gso_size, and returns a drop reason instead of crashing.
 *
 * Return conventions: vs_vnet_hdr_check() returns 0 or a drop reason
 * (enum vs_counter, positive).  vs_gso_segment() returns the number of
 * segments emitted (>= 0), or a negated drop reason (< 0) when the frame
 * is malformed or cannot be segmented; it emits nothing in that case.
 *
 * Pure functions over caller-owned buffers; safe from any thread.
 */
#ifndef VS_GSO_H
#define VS_GSO_H 1

#include <stdint.h>

#include "vs_frame.h"

/* Called once per segment built by vs_gso_segment(); 'seg' (Ethernet header
 * first, no virtio-net header) is valid only during the call.  Return 0 to
 * go on, anything else to stop segmenting. */
typedef int (*vs_gso_emit_fn)(void *ctx, const uint8_t *seg, uint32_t seg_len);
/* Called once per segment by vs_gso_segment_placed(): where to build the
 * next 'seg_len'-byte segment, or NULL to stop. */
typedef uint8_t *(*vs_gso_place_fn)(void *ctx, uint32_t seg_len);

/* Checking. */
int vs_vnet_hdr_check(const struct vs_vnet_hdr *vh, const uint8_t *frame,
                      uint32_t len);

/* Segmentation. */
int vs_gso_segment(const uint8_t *frame, uint32_t len,
                   const struct vs_vnet_hdr *vh, uint8_t *scratch,
                   uint32_t scratch_len, vs_gso_emit_fn emit, void *ctx);
int vs_gso_segment_placed(const uint8_t *frame, uint32_t len,
                          const struct vs_vnet_hdr *vh, vs_gso_place_fn place,
                          void *ctx);

/* IP length of each segment a TSO-capable port would cut 'frame' into. */
int vs_gso_seg_l3_len(const uint8_t *frame, uint32_t len,
                      const struct vs_vnet_hdr *vh, uint32_t *seg_l3_len);

/* Testing and fuzzing: all segments back to back in 'out'. */
int vs_gso_segment_to_buffer(const uint8_t *frame, uint32_t len,
                             const struct vs_vnet_hdr *vh, uint8_t *out,
                             uint32_t out_len, uint32_t *seg_lens,
                             uint32_t max_segs);

#endif /* vs_gso.h */

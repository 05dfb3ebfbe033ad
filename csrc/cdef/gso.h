/* cdef: virtio-net header checks and GSO segmentation (vs_gso.h).
 * Needs struct vs_vnet_hdr from cdef/frame.h. */
typedef int (*vs_gso_emit_fn)(void *ctx, const uint8_t *seg, uint32_t seg_len);

int vs_vnet_hdr_check(const struct vs_vnet_hdr *vh, const uint8_t *frame,
                      uint32_t len);
int vs_gso_segment(const uint8_t *frame, uint32_t len,
                   const struct vs_vnet_hdr *vh, uint8_t *scratch,
                   uint32_t scratch_len, vs_gso_emit_fn emit, void *ctx);
int vs_gso_seg_l3_len(const uint8_t *frame, uint32_t len,
                      const struct vs_vnet_hdr *vh, uint32_t *seg_l3_len);
int vs_gso_segment_to_buffer(const uint8_t *frame, uint32_t len,
                             const struct vs_vnet_hdr *vh, uint8_t *out,
                             uint32_t out_len, uint32_t *seg_lens,
                             uint32_t max_segs);

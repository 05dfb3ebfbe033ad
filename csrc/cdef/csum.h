/* cdef: Internet checksums (vs_csum.h). */
uint32_t vs_csum_partial(const void *data, size_t len, uint32_t sum);
uint16_t vs_csum_fold(uint32_t sum);
uint32_t vs_csum_pseudo_v4(const uint8_t *src4, const uint8_t *dst4,
                           uint8_t proto, uint32_t l4_len);
uint32_t vs_csum_pseudo_v6(const uint8_t *src16, const uint8_t *dst16,
                           uint8_t proto, uint32_t l4_len);
int vs_csum_complete(uint8_t *frame, uint32_t len,
                     const struct vs_vnet_hdr *vh);

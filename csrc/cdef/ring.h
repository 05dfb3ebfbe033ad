/* PACKET_MMAP rx rings (TPACKET_V2/V3) for packet-socket ports (vs_ring.h). */
#define VS_RING_BLOCK_SIZE ...
#define VS_RING_BLOCK_NR ...
#define VS_RING_TOV_MS ...
#define VS_RING_V2_FRAME_SIZE ...
#define VS_RING_V2_FRAME_NR ...
#define VS_RING_VERSION ...

struct vs_ring_stats {
    uint64_t blocks;
    uint64_t frames;
    uint64_t truncated;
    uint64_t vlan_restored;
    uint64_t kernel_packets;
    uint64_t kernel_drops;
    uint64_t kernel_freezes;
};

struct vs_ring_frame {
    uint8_t *data;
    uint32_t len;
    uint32_t wire_len;
    const uint8_t *vnet;
    uint8_t vnet_copy[12];
    uint32_t status;
    uint16_t vlan_tci;
    uint16_t vlan_tpid;
};

struct vs_ring;

int vs_ring_attach(int fd, uint32_t vnet_hdr_len, int version,
                   uint32_t block_size, uint32_t block_nr, uint32_t tov_ms,
                   struct vs_ring **ringp);
void vs_ring_detach(struct vs_ring *ring);
void vs_ring_get_stats(struct vs_ring *ring, struct vs_ring_stats *out);
int vs_ring_version(const struct vs_ring *ring);

struct vs_ring *vs_ring_wrap(void *mem, int version, uint32_t block_size,
                             uint32_t block_nr, uint32_t vnet_hdr_len);
void vs_ring_release(struct vs_ring *);
int vs_ring_read(struct vs_ring *, struct vs_ring_frame *out, uint32_t max,
                 uint32_t *released);

/* Vhost-user ports: the running device a vhostuser port's params point to
 * (vs_vhost.h). */
#define VS_PORT_VHOST ...
#define VS_VHOST_MAX_REGIONS ...
#define VS_VHOST_MAX_QP ...
#define VS_VHOST_MAX_RING ...

struct vs_vhost_region {
    uint64_t guest_phys_addr;
    uint64_t size;
    uint64_t user_addr;
    uint64_t mmap_offset;
    int fd;
};

struct vs_vhost_vring {
    uint32_t num;
    uint64_t desc_addr;
    uint64_t avail_addr;
    uint64_t used_addr;
    uint16_t last_avail;
    int kick_fd;
    int call_fd;
};

struct vs_vhost_params {
    uint64_t features;
    uint32_t n_regions;
    struct vs_vhost_region regions[8];
    uint32_t n_qp;
    struct vs_vhost_vring vrings[32];
};

struct vs_vhost *vs_vhost_new(const struct vs_vhost_params *, int *error);
void vs_vhost_free(struct vs_vhost *);
uint16_t vs_vhost_last_avail(const struct vs_vhost *, uint32_t vring);
int vs_vhost_broken(const struct vs_vhost *);
uint32_t vs_vhost_test_dequeue(struct vs_vhost *, uint32_t vring, uint8_t *out,
                               uint32_t out_len, uint64_t *drops);
int vs_vhost_test_enqueue(struct vs_vhost *, uint32_t vring, const uint8_t *frame,
                          uint32_t len);
struct vs_vhost *vs_vhost_new_unmapped(const struct vs_vhost_params *, uint8_t *mem,
                                       int *error);

/*
 * vs_virtq.h: split virtqueues in untrusted guest memory (virtio 1.x,
 * section 2.7), for vs_vhost.c and the fuzzer.
 *
 * Everything the guest wrote is read once, into locals, and checked before
 * use: descriptor addresses and lengths against the memory table
 * (vs_vmem_*), chain lengths against the ring or indirect table size, ring
 * indices against the ring size.  The functions return a vs_counter drop
 * reason instead of touching anything they could not check.
 *
 * A virtqueue has one reader of its avail ring and one writer of its used
 * ring at a time: the caller guarantees it (the rx queue's reader flag for
 * guest TX queues, vq->lock for guest RX queues).
 */
#ifndef VS_VIRTQ_H
#define VS_VIRTQ_H 1

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vs_vhost.h"

#define VS_VRING_DESC_F_NEXT 1
#define VS_VRING_DESC_F_WRITE 2
#define VS_VRING_DESC_F_INDIRECT 4
#define VS_VRING_USED_F_NO_NOTIFY 1
#define VS_VRING_AVAIL_F_NO_INTERRUPT 1

/* Pieces of guest memory one frame may occupy (DPDK allows 256; Linux
 * guests use at most MAX_SKB_FRAGS + 2). */
#define VS_VIRTQ_MAX_IOV 64
/* Guest RX buffers one frame may be merged over (MRG_RXBUF). */
#define VS_VIRTQ_MAX_BUFS 64

struct vs_vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vs_vring_used_elem {
    uint32_t id;
    uint32_t len;
};

struct vs_vmem_region {
    uint64_t gpa;
    uint64_t size;
    uint64_t uaddr;
    uint8_t *host;              /* the region's first byte here */
    void *map;                  /* what munmap() takes; NULL = not ours */
    size_t map_len;
};

struct vs_vmem {
    uint32_t n;
    struct vs_vmem_region r[VS_VHOST_MAX_REGIONS];
};

struct vs_virtq {
    uint32_t num;               /* 0 = not in use */
    uint32_t mask;
    /* Host pointers into guest memory, checked once at setup. */
    struct vs_vring_desc *desc;
    uint16_t *avail;            /* flags, idx, ring[num], used_event */
    uint16_t *used;             /* flags, idx, then ring[num] elems, avail_event */
    struct vs_vring_used_elem *used_ring;
    int kick_fd;
    int call_fd;
    int event_idx;
    int indirect;
    int mrg;                    /* MRG_RXBUF: num_buffers in the header */
    uint32_t hdr_len;           /* 12 (VERSION_1 or MRG_RXBUF) or 10 */
    uint16_t last_avail;        /* next avail entry to take */
    uint16_t used_idx;          /* next used entry to fill (shadow) */
    uint16_t published;         /* used index the guest was last shown */
    int notify_on;              /* guest TX: we asked for kicks */
    _Atomic int broken;
    _Atomic int lock;           /* guest RX: one writer at a time */
};

/* Memory. */
void *vs_vmem_gpa(const struct vs_vmem *, uint64_t gpa, uint64_t len);
void *vs_vmem_ua(const struct vs_vmem *, uint64_t ua, uint64_t len);

/* Rings. */
int vs_virtq_setup(struct vs_virtq *, const struct vs_vmem *,
                   const struct vs_vhost_vring *, uint64_t features);
int vs_virtq_pending(struct vs_virtq *, uint16_t *n);
int vs_virtq_chain(const struct vs_vmem *, const struct vs_virtq *,
                   uint16_t head, int writable, struct iovec *iov,
                   uint32_t max_iov, uint32_t *n_iov, uint32_t *total);
void vs_virtq_push_used(struct vs_virtq *, uint16_t head, uint32_t len);
void vs_virtq_publish_used(struct vs_virtq *, uint16_t old_used);

/* Frames. */
uint32_t vs_virtq_dequeue(const struct vs_vmem *, struct vs_virtq *,
                          uint32_t max, uint8_t (*hdrs)[12], uint8_t *frames,
                          size_t stride, uint32_t frame_max, int32_t *lens);
int vs_virtq_enqueue(const struct vs_vmem *, struct vs_virtq *,
                     struct iovec *src, int n_src);

/* Notifications. */
int vs_virtq_kick_arm(struct vs_virtq *);
void vs_virtq_kick_off(struct vs_virtq *);

#endif /* vs_virtq.h */

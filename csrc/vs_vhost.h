/*
 * vs_vhost.h: the vhost-user port kind: a VM's virtio-net queues, read and
 * written in the VM's own memory by the workers, no syscall per frame.
 *
 * What it is for: VMs at memcpy speed.  QEMU (or DPDK's virtio_user)
 * shares the guest's memory and split virtqueues with us over a unix
 * socket; the control plane (vswitchd/vhost/) speaks that protocol and,
 * once a device is running, hands this file its memory table (region fds,
 * mmapped here) and the rings' addresses in a `struct vs_vhost_params`.
 * The object built from them is immutable but for the rings' indices and
 * flags, which only the workers touch.
 *
 * Queues: queue pair q is virtqueue 2q (the guest's RX: we write frames
 * into it) and 2q+1 (the guest's TX: we read frames from it).  The port's
 * rx queue q is virtqueue 2q+1, its fd the guest's kick eventfd for it, so
 * the switch's epoll sets, rx queue assignment and rebalancing take vhost
 * queues like any other.  Egress uses the guest RX queue ctx->index % n_qp,
 * under a tiny per-queue spinlock: workers that share one are serialised
 * there (as Open vSwitch does for a VM with fewer queues than PMD threads).
 *
 * Interrupt mode: a guest TX queue that had frames keeps its notifications
 * off (VRING_USED_F_NO_NOTIFY, or a stale avail_event with EVENT_IDX) and
 * its kick eventfd readable, so level-triggered epoll hands it back every
 * iteration: a busy queue costs no syscall.  The first empty poll drains
 * the eventfd, turns notifications back on and looks at the ring once more
 * (a frame published in between re-arms the eventfd itself), then the
 * worker may sleep.  A call eventfd is written only when the guest asked
 * (used_event with EVENT_IDX, else VRING_AVAIL_F_NO_INTERRUPT clear).
 *
 * The guest is untrusted.  Every descriptor is copied once out of guest
 * memory before it is looked at, and every address and length is checked
 * against the memory table before a byte is touched; frames are copied
 * out, so the guest cannot change them under the pipeline.  Chains that
 * loop or exceed the ring (vhost_desc_loop), point outside guest memory
 * (vhost_desc_oob), are malformed (vhost_desc_bad: nested or misaligned
 * indirect tables, a write-only buffer on TX, too many pieces) or are
 * longer than a frame (vhost_desc_too_long) are returned to the guest
 * unused and counted.  A ring whose indices make no sense (avail idx more
 * than the ring size ahead, a head out of range) is stopped for good
 * (vhost_ring_broken, counted once) and the port reports itself broken:
 * other queues and ports go on.
 *
 * Threads: vs_vhost_new()/free() and the readers of ring state are for
 * the control thread, and free only once no published config names the
 * object (vs_switch.h); workers use the rest through the port class.
 */
#ifndef VS_VHOST_H
#define VS_VHOST_H 1

#include <stdint.h>

#define VS_VHOST_MAX_REGIONS 8
#define VS_VHOST_MAX_QP 16
#define VS_VHOST_MAX_RING 32768

/* virtio feature bits the fast path looks at. */
#define VS_VIRTIO_NET_F_MRG_RXBUF 15
#define VS_VIRTIO_RING_F_INDIRECT_DESC 28
#define VS_VIRTIO_RING_F_EVENT_IDX 29
#define VS_VIRTIO_F_VERSION_1 32

struct vs_vhost_region {
    uint64_t guest_phys_addr;
    uint64_t size;
    uint64_t user_addr;         /* the front end's address of the region */
    uint64_t mmap_offset;
    int fd;                     /* owned by the caller; may be closed after new() */
};

struct vs_vhost_vring {
    uint32_t num;               /* ring size, a power of two */
    uint64_t desc_addr;         /* front-end (user) addresses, as in */
    uint64_t avail_addr;        /* VHOST_USER_SET_VRING_ADDR */
    uint64_t used_addr;
    uint16_t last_avail;        /* where to start: VHOST_USER_SET_VRING_BASE */
    int kick_fd;                /* owned by the caller, -1 = none */
    int call_fd;                /* owned by the caller, -1 = none */
};

struct vs_vhost_params {
    uint64_t features;          /* negotiated virtio features */
    uint32_t n_regions;
    struct vs_vhost_region regions[VS_VHOST_MAX_REGIONS];
    uint32_t n_qp;              /* queue pairs in use, 1..VS_VHOST_MAX_QP */
    struct vs_vhost_vring vrings[2 * VS_VHOST_MAX_QP];   /* by virtqueue index */
};

struct vs_vhost;
struct vs_ctx;
struct vs_config;
struct vs_port;
struct vs_pkt;
struct vs_rxq_ref;

/* Basics. */
struct vs_vhost *vs_vhost_new(const struct vs_vhost_params *, int *error);
void vs_vhost_free(struct vs_vhost *);

/* Ring state (control thread, once no worker can run on the object). */
uint16_t vs_vhost_last_avail(const struct vs_vhost *, uint32_t vring);
int vs_vhost_broken(const struct vs_vhost *);

/* The pipeline's side (vs_port_class.h; workers only). */
uint32_t vs_vhost_read_burst(struct vs_ctx *, const struct vs_config *,
                             const struct vs_rxq_ref *, uint32_t now_s);
void vs_vhost_egress(struct vs_ctx *, struct vs_port *, struct vs_pkt *);
uint32_t vs_vhost_learn_port(const struct vs_port *, const struct vs_pkt *);

/* Testing and fuzzing: dequeues up to 'max' frames from virtqueue 'vring'
 * (odd: a guest TX queue) into 'out' (frames back to back, each preceded
 * by its 4-byte little-endian length, at most 'out_len' bytes), counting
 * drops into 'drops' (indexed by vs_counter).  Returns frames dequeued. */
uint32_t vs_vhost_test_dequeue(struct vs_vhost *, uint32_t vring,
                               uint8_t *out, uint32_t out_len,
                               uint64_t *drops);
/* Enqueues 'len' bytes of 'frame' (virtio-net header included) into guest
 * RX virtqueue 'vring' (even).  Returns 0 or the drop counter. */
int vs_vhost_test_enqueue(struct vs_vhost *, uint32_t vring,
                          const uint8_t *frame, uint32_t len);
/* A vs_vhost over caller-owned memory: one region at guest address
 * 'gpa' == user address, 'size' bytes at 'mem'.  For the fuzzer. */
struct vs_vhost *vs_vhost_new_unmapped(const struct vs_vhost_params *,
                                       uint8_t *mem, int *error);

#endif /* vs_vhost.h */

/*
 * vs_worker.h: the insides of the switch shared by its C files.
 *
 * A worker context ("ctx") is everything one forwarding thread owns: its
 * frame buffers, its pending transmissions, its counters and its RCU state.
 * Only the owning thread writes a ctx, with two exceptions that are atomics:
 * 'online'/'quiescent' (read by the publisher) and the counters (read by
 * anyone with relaxed loads).
 *
 * The switch has n_workers thread contexts plus one more, used by
 * vs_switch_poll_once() in the control thread: tests drive the very same
 * forwarding code deterministically, without threads and with a fake clock.
 */
#ifndef VS_WORKER_H
#define VS_WORKER_H 1

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vs_frame.h"
#include "vs_switch.h"

/* A port inside a published config: immutable once published. */
struct vs_port {
    struct vs_port_params p;
    uint64_t members[64];       /* bit v set = the port carries VLAN v */
};

struct vs_guard;
struct vs_qos_queues;
struct vs_mirror_set;
struct vs_capture;
struct vs_trace;

/* Observation limits (vs_mirror.h, vs_capture.h). */
#define VS_MAX_MIRRORS 32
#define VS_MAX_CAPTURES 16

/* An rx queue a worker polls: queue 'queue' of 'port', whose params hold
 * its fd and (packet ports) its rx ring, port->p.rings[queue].  'fd' is a
 * copy for epoll. */
struct vs_rxq_ref {
    struct vs_port *port;
    uint32_t queue;
    int fd;
};

struct vs_config {
    uint64_t generation;        /* set by vs_switch_publish() */
    struct vs_port *ports[VS_MAX_PORTS];    /* by id; NULL = absent */
    uint32_t n_ports;
    uint32_t port_ids[VS_MAX_PORTS];        /* ids present, ascending */
    uint32_t n_rxqs[VS_MAX_WORKERS];
    struct vs_rxq_ref *rxqs[VS_MAX_WORKERS];
    /* Observation (vs_mirror.h, vs_capture.h): NULL / 0 when unused.  The
     * mirror set is owned by the config; captures by the control plane. */
    struct vs_mirror_set *mirrors;
    struct vs_capture *captures[VS_MAX_CAPTURES];
    uint32_t n_captures;
    uint64_t capture_ports[VS_MAX_PORTS / 64];  /* bit p: some capture is on port p */
};

/* One frame of a burst, as the pipeline sees it. */
struct vs_pkt {
    uint8_t *data;              /* Ethernet header */
    uint32_t len;
    struct vs_vnet_hdr vh;
    uint16_t vlan;              /* classified VLAN */
    uint16_t pcp;               /* priority bits of the ingress tag */
    uint16_t inner_off;         /* offset of the real EtherType: 12 or 16 */
    uint16_t dropped;           /* nonzero: already dropped and counted */
    uint32_t out_port;          /* VS_PORT_NONE = flood */
    uint16_t in_vtep;           /* vxlan ports: the sender's VTEP, 0 = none */
    uint16_t out_vtep;          /* the destination's VTEP, 0 = flood list */
};

/* A frame waiting for a batched sendmmsg() to a packet-socket port. */
#define VS_TX_PENDING 256
struct vs_tx_entry {
    struct vs_port *port;
    int fd;
    uint32_t len;               /* Ethernet bytes, for the counters */
    uint8_t hdr[VS_VNET_HDR_MRG_LEN + VS_ETH_VLAN_HLEN];
    struct iovec iov[3];
    int iovcnt;
    const void *name;           /* sendmmsg() destination; NULL = none */
    uint32_t namelen;
};

struct vs_ctx {
    struct vs_switch *sw;
    uint32_t index;
    int cpu;                    /* -1 = not pinned */
    pthread_t thread;
    int thread_started;
    int epfd;
    int wake_fd;                /* eventfd: the publisher kicks us */
    uint64_t epoll_generation;  /* config the epoll set was built from */
    uint64_t last_rx_ns;        /* when this worker last read a frame */
    /* Ports this iteration delivered to: polled once before sleeping. */
#define VS_TOUCHED_MAX 8
    uint32_t touched[VS_TOUCHED_MAX];
    uint32_t n_touched;

    /* RCU state, read by the publisher. */
    _Atomic int online;         /* 0 = blocked, holding no config refs */
    _Atomic uint64_t quiescent; /* quiescent points passed */

    /* Frame buffers (one burst), a staging area for retagged super-frames
     * and one for segments. */
    uint8_t *rx_bufs;
    uint8_t (*rx_hdrs)[VS_VNET_HDR_MRG_LEN];
    struct vs_pkt pkts[VS_BURST];
    uint8_t *stage_buf;
    uint8_t *seg_buf;

    struct vs_tx_entry tx[VS_TX_PENDING];
    uint32_t n_tx;
    /* Guest RX virtqueues written this burst whose used index is not yet
     * published: vs_tx_flush() publishes them (vs_vhost.c), one fence and
     * at most one interrupt per queue per burst instead of per frame. */
#define VS_VHOST_PENDING 16
    void *vhost_pending[VS_VHOST_PENDING];
    uint32_t n_vhost_pending;

    /* Per-port counters: this ctx is the only writer. */
    uint64_t (*counters)[VS_N_COUNTERS];
    /* Per rx queue: time spent on it and frames read from it, the load
     * the control plane rebalances queues by. */
    struct vs_rxq_stats (*rxq_stats)[VS_MAX_QUEUES];
    struct vs_worker_stats stats;

    /* Guard state per port (vs_guard.h), and the time of the burst being
     * forwarded, for storm control: set once per burst. */
    struct vs_guard *guard;
    uint64_t now_ns;

    /* Frames held back by bandwidth limits (vs_qos.h). */
    struct vs_qos_queues *qos;
    /* Observation, set once per burst by vs_forward_burst(): the burst's
     * config, and whether any mirror, capture or trace needs the per-frame
     * hooks (the one branch the fast path pays for them).  'trace' is set
     * only on a trace context (vs_trace.h): record, never act. */
    const struct vs_config *cfg;
    int observe;
    struct vs_trace *trace;
    uint64_t mirror_stats[VS_MAX_MIRRORS][2];   /* vs_mirror.h */
};

struct vs_switch {
    _Atomic(struct vs_config *) config;
    uint64_t next_generation;
    struct vs_mac_table *macs;
    uint32_t n_workers;
    _Atomic int stopping;
    _Atomic uint64_t busy_poll_ns;  /* keep polling this long after a frame */
    /* One reader at a time per rx queue, [port id][queue]: the owner and a
     * worker polling the queue right after delivering to it (see
     * vs_worker.c) never read one queue at once, so frames keep their order. */
    _Atomic uint8_t (*rxq_reader)[VS_MAX_QUEUES];
    int started;
    /* Policy state shared by every worker (vs_policy.h): stateful ACL
     * sessions, and the bandwidth buckets [port id][0 out, 1 in]. */
    struct vs_acl_sessions *sessions;
    _Atomic uint64_t (*qos_tat)[2];
    struct vs_ctx *ctxs;        /* n_workers + 1; the last is the control thread's */
};

/* Counting. */
static inline void
vs_count(struct vs_ctx *ctx, uint32_t port_id, int counter, uint64_t n)
{
    uint64_t *c = &ctx->counters[port_id][counter];
    __atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
}

static inline void
vs_stat_add(uint64_t *stat, uint64_t n)
{
    __atomic_store_n(stat, *stat + n, __ATOMIC_RELAXED);
}

/* Context lifecycle (vs_worker.c). */
int vs_ctx_init(struct vs_ctx *, struct vs_switch *, uint32_t index, int cpu);
void vs_ctx_destroy(struct vs_ctx *);
void *vs_worker_main(void *ctx);
int vs_ctx_poll_rxq(struct vs_ctx *, const struct vs_config *,
                    const struct vs_rxq_ref *, uint32_t now_s);

/* The pipeline (vs_forward.c). */
void vs_forward_burst(struct vs_ctx *, const struct vs_config *,
                      struct vs_port *in, uint32_t n, uint32_t now_s);
void vs_tx_flush(struct vs_ctx *);
void vs_vhost_flush(struct vs_ctx *);     /* vs_vhost.c */
void vs_forward_held(struct vs_ctx *, const struct vs_config *, struct vs_pkt *,
                     int slot, const uint32_t *ids, uint32_t n_ids);

#endif /* vs_worker.h */

/*
 * vs_switch.h: the switch object, its configuration snapshots and workers.
 *
 * What it is for: moving frames between ports (file descriptors opened by
 * the Python control plane) without Python running per packet.
 *
 * The switch owns N worker threads, the MAC table and per-worker counters.
 * Everything a worker needs to forward (ports, their VLAN rules, which rx
 * queues each worker polls) lives in one immutable `struct vs_config`.
 *
 * Publishing (RCU-style):
 *  - The control plane builds a new config (vs_config_new(), add ports,
 *    assign rx queues) and hands it to vs_switch_publish(), which swaps the
 *    switch's config pointer atomically, wakes the workers, waits until
 *    every worker has passed a quiescent point (finished the batch it was in,
 *    or was blocked in epoll_wait holding no references), and only then
 *    frees the old config.  When vs_switch_publish() returns, no worker can
 *    touch a port that is absent from the new config: its fds may be closed
 *    and its rx rings detached.
 *  - Workers never block the publisher for longer than one batch, and the
 *    publisher never blocks a worker: there is no lock anywhere.
 *
 * Threads: vs_switch_publish(), vs_switch_stop(), vs_switch_free() and
 * vs_switch_poll_once() are for one control thread.  Counter and stats
 * readers may run on any thread at any time.
 *
 * Port ids are small integers chosen by the control plane (0 ..
 * VS_MAX_PORTS - 1).  An id may be reused for another port only after a
 * config without it has been published (and its MAC entries flushed).
 */
#ifndef VS_SWITCH_H
#define VS_SWITCH_H 1

#include <stdint.h>

#include "vs_counters.h"
#include "vs_mac_table.h"

#define VS_MAX_PORTS 1024
#define VS_MAX_WORKERS 64
#define VS_MAX_QUEUES 16

/* How frames cross a port's file descriptors. */
enum vs_port_kind {
    VS_PORT_FD = 0,       /* one frame per read()/write(): TAP queues */
    VS_PORT_PACKET = 1,   /* datagram sockets, batched recvmmsg()/sendmmsg() */
    VS_PORT_VXLAN = 2,    /* a VTEP: UDP socket in, raw socket out (vs_vxlan.h) */
    VS_PORT_VHOST = 3,    /* a VM's virtqueues in shared memory (vs_vhost.h) */
};

enum vs_port_mode {
    VS_MODE_ACCESS = 0,
    VS_MODE_TRUNK = 1,
};

struct vs_ring;
struct vs_acl;
struct vs_acl_sessions;

/* Sessions the switch's stateful ACL table holds unless told otherwise. */
#define VS_ACL_SESSIONS_DEFAULT 262144
struct vs_vxlan;
struct vs_vhost;

/* A port as the control plane describes it.  Copied into the config. */
struct vs_port_params {
    uint32_t id;
    int kind;                   /* enum vs_port_kind */
    int mode;                   /* enum vs_port_mode */
    uint16_t access_vlan;       /* access: the port's VLAN */
    uint16_t native_vlan;       /* trunk: untagged frames' VLAN, 0 = none */
    uint64_t allowed[64];       /* trunk: bit v set = VLAN v allowed */
    int up;                     /* link up: part of the flood set */
    uint32_t n_queues;
    int fds[VS_MAX_QUEUES];     /* rx/tx queue fds, owned by the caller */
    /* Packet ports: the rx ring of each queue's socket (vs_ring.h), owned
     * by the caller like the fds and freed only after a config without
     * them is published; NULL = no ring, read with recvmmsg(). */
    struct vs_ring *rings[VS_MAX_QUEUES];
    /* Vxlan ports: the VTEP (vs_vxlan.h), owned by the caller like rings. */
    struct vs_vxlan *vxlan;
    /* Vhost-user ports: the running device (vs_vhost.h), owned by the
     * caller like rings; its queues' kick eventfds are the fds. */
    struct vs_vhost *vhost;
    uint32_t vnet_hdr_len;      /* 0, 10 or 12 */
    int offload_csum;           /* egress may carry partial checksums */
    int offload_tso;            /* egress may carry TCP GSO super-frames */
    uint32_t mtu;               /* max bytes after the Ethernet header; 0 = no check */
    /* Guards (vs_guard.h); all zero = none. */
    uint32_t n_allowed_macs;    /* 0 = any source MAC; at most 64 */
    uint32_t max_macs;          /* MAC table entries on the port; 0 = unlimited */
    int dhcp_guard;             /* drop DHCPv4/v6 server messages */
    int router_guard;           /* drop RAs and ICMP/ICMPv6 redirects */
    uint32_t broadcast_pps;     /* storm control, frames/s; 0 = unlimited */
    uint32_t multicast_pps;
    uint32_t unknown_unicast_pps;
    /* Policy (vs_policy.h): the port's compiled ACL, owned by the caller
     * like the rings (NULL = none), and its bandwidth limits in bit/s
     * (0 = none) with their bucket depth in bytes. */
    struct vs_acl *acl;
    uint64_t max_bps_out;
    uint64_t max_bps_in;
    uint64_t max_burst_bytes;
    /* The port was in an earlier config under this id and its counters go
     * on (a vhost-user port between two connections); 0 = a port new in a
     * config starts with zeroed counters. */
    int keep_counters;
    uint8_t allowed_macs[64][6];    /* last: the scalars above stay together */
};

/* What a worker has done, read at any time. */
struct vs_worker_stats {
    uint64_t busy_ns;           /* time spent reading, forwarding, sending */
    uint64_t idle_ns;           /* time spent waiting for frames */
    uint64_t polls;             /* rx queue reads that returned frames */
    uint64_t frames;            /* frames received */
    uint64_t batches_full;      /* reads that filled a whole burst */
    uint64_t quiescent;         /* quiescent points passed */
};

/* What one rx queue has cost, summed over workers. */
struct vs_rxq_stats {
    uint64_t busy_ns;           /* reading and forwarding its frames */
    uint64_t frames;
    uint64_t polls;
};

struct vs_switch;
struct vs_config;

/* Configuration snapshots. */
struct vs_config *vs_config_new(void);
int vs_config_add_port(struct vs_config *, const struct vs_port_params *);
int vs_config_assign_rxq(struct vs_config *, uint32_t worker, uint32_t port_id,
                         uint32_t queue);
void vs_config_free(struct vs_config *);

/* Basics. */
struct vs_switch *vs_switch_new(uint32_t n_workers, const int *cpus,
                                uint32_t mac_capacity);
int vs_switch_start(struct vs_switch *);
void vs_switch_stop(struct vs_switch *);
void vs_switch_free(struct vs_switch *);
uint32_t vs_switch_n_workers(const struct vs_switch *);
struct vs_mac_table *vs_switch_mac_table(struct vs_switch *);

void vs_switch_set_busy_poll(struct vs_switch *, uint32_t busy_poll_us);
int vs_switch_set_acl_sessions(struct vs_switch *, uint32_t capacity);
struct vs_acl_sessions *vs_switch_acl_sessions(struct vs_switch *);

/* Publishing. */
int vs_switch_publish(struct vs_switch *, struct vs_config *);
uint64_t vs_switch_generation(const struct vs_switch *);

/* Forwarding in the caller's thread (tests, and switches with 0 workers). */
int vs_switch_poll_once(struct vs_switch *, uint32_t now_s);

/* Counters. */
void vs_switch_port_counters(const struct vs_switch *, uint32_t port_id,
                             uint64_t *out);
void vs_switch_rxq_stats(const struct vs_switch *, uint32_t port_id,
                         uint32_t queue, struct vs_rxq_stats *);
int vs_switch_worker_stats(const struct vs_switch *, uint32_t worker,
                           struct vs_worker_stats *);
const char *vs_counter_name(int counter);
const char *vs_counter_help(int counter);

#endif /* vs_switch.h */

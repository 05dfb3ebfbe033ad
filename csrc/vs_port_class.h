/*
 * vs_port_class.h: port kinds as providers.
 *
 * TAP queues (VS_PORT_FD) and packet sockets (VS_PORT_PACKET) are the
 * switch's original kinds, read and written by vs_worker.c and
 * vs_forward.c directly.  Every kind added since is a class: one C file
 * that fills in this table, so the pipeline calls it and never asks what
 * it holds (the model is Open vSwitch's struct netdev_class).
 *
 * A class's functions run in worker threads, on the worker's context,
 * with the config snapshot the worker loaded: the same rules as the rest
 * of the pipeline (vs_worker.h).
 */
#ifndef VS_PORT_CLASS_H
#define VS_PORT_CLASS_H 1

#include <stdint.h>

#include "vs_switch.h"

struct vs_ctx;
struct vs_port;
struct vs_pkt;
struct vs_rxq_ref;

struct vs_port_class {
    const char *name;
    /* Reads up to VS_BURST frames from 'rxq' into ctx->pkts; returns how
     * many.  Frames it drops itself it counts itself (rx and drop). */
    uint32_t (*read_burst)(struct vs_ctx *, const struct vs_rxq_ref *);
    /* Sends 'pkt' (classified, checksum settled) out of 'port'. */
    void (*egress)(struct vs_ctx *, struct vs_port *, struct vs_pkt *);
    /* The MAC table port word 'pkt''s source is learned at, or
     * VS_PORT_NONE not to learn it. */
    uint32_t (*learn_port)(const struct vs_port *, const struct vs_pkt *);
    /* Frames received on a port of this class never leave through one
     * (an overlay's split horizon). */
    int split_horizon;
};

extern const struct vs_port_class vs_vxlan_class;
extern const struct vs_port_class vs_vhost_class;

/* The class of port kind 'kind', NULL for the built-in TAP and packet
 * socket kinds. */
static inline const struct vs_port_class *
vs_port_class_of(int kind)
{
    return kind == VS_PORT_VXLAN ? &vs_vxlan_class
           : kind == VS_PORT_VHOST ? &vs_vhost_class : NULL;
}

/* Whether a frame that came in on a port of kind 'in_kind' must not leave
 * through one of kind 'out_kind'. */
static inline int
vs_port_split(int in_kind, int out_kind)
{
    const struct vs_port_class *c = vs_port_class_of(in_kind);
    return c && c->split_horizon && in_kind == out_kind;
}

#endif /* vs_port_class.h */

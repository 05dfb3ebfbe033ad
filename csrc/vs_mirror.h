/*
 * vs_mirror.h: port mirroring (SPAN), as Hyper-V's PortMirroring and Open
 * vSwitch's Mirror table have it.
 *
 * What it is for: an IDS or a tcpdump on a dedicated "output" port sees a
 * copy of every frame that arrives from the mirror's source ports and of
 * every frame that leaves through its destination ports, optionally only
 * those of some VLANs, each copy exactly as it looked on the wire of the
 * selected port (tagged as it arrived, tagged as it leaves).
 *
 * Invariants:
 *  - Mirrors are part of the immutable config snapshot (vs_config_add_mirror()
 *    copies them in), so they change with a publish like everything else.
 *  - An output port is reserved: it is never in a flood set nor a lookup
 *    result, and what it sends is dropped (reason "mirror_output") before
 *    it is learned.  It is never selected by a mirror (the control plane
 *    refuses that; vs_config_add_mirror() too).
 *  - A copy never slows forwarding: it is sent with one non-blocking
 *    writev()/sendmsg(); when the output port is full (EAGAIN, ENOBUFS) or
 *    cannot take the frame (a GSO super-frame to a port without TSO), the
 *    copy is dropped and counted against the mirror, the original is not
 *    touched.
 *  - Rx copies are taken once a frame has been accepted by its ingress
 *    port's VLAN rules (the mirror's VLAN filter needs the classified VLAN);
 *    tx copies at egress, before the frame is handed to the egress port.
 *    A super-frame segmented in software is mirrored once, whole.
 *
 * Threads: the per-mirror counters live in each worker context (single
 * writer, relaxed stores) and are summed by vs_switch_mirror_stats() on any
 * thread.  A mirror id ("slot") is chosen by the control plane; counters of
 * a slot are not reset when it is reused, the control plane keeps a baseline.
 *
 * Cost when no mirror is configured: one test of cfg->mirrors per burst.
 */
#ifndef VS_MIRROR_H
#define VS_MIRROR_H 1

#include <stdint.h>

#include "vs_worker.h"

#define VS_PORT_WORDS (VS_MAX_PORTS / 64)

/* One mirror, as the control plane describes it. */
struct vs_mirror_params {
    uint32_t id;                        /* slot, 0 .. VS_MAX_MIRRORS - 1 */
    uint32_t output_port;               /* port id receiving the copies */
    uint32_t snaplen;                   /* bytes of each copy; 0 = whole frame */
    int all_vlans;                      /* nonzero: ignore 'vlans' */
    uint64_t vlans[64];                 /* bit v set = VLAN v selected */
    uint64_t src_ports[VS_PORT_WORDS];  /* frames arriving from these */
    uint64_t dst_ports[VS_PORT_WORDS];  /* frames leaving through these */
};

/* Per-mirror counters, summed over contexts. */
struct vs_mirror_stats {
    uint64_t packets;           /* copies sent */
    uint64_t dropped;           /* copies dropped: output full or unfit */
};

enum { VS_MIRROR_SENT = 0, VS_MIRROR_DROPPED = 1 };

/* Configuration (control thread, unpublished config). */
int vs_config_add_mirror(struct vs_config *, const struct vs_mirror_params *);

/* Counters (any thread). */
int vs_switch_mirror_stats(const struct vs_switch *, uint32_t id,
                           struct vs_mirror_stats *);

/* Inside the switch. */

/* The mirrors of one config snapshot. */
struct vs_mirror_set {
    uint32_t n;
    struct vs_mirror_params m[VS_MAX_MIRRORS];
    uint64_t outputs[VS_PORT_WORDS];    /* reserved output ports */
    uint64_t any_src[VS_PORT_WORDS];    /* union of every src_ports */
    uint64_t any_dst[VS_PORT_WORDS];
};

static inline int
vs_port_bit(const uint64_t *words, uint32_t id)
{
    return (words[id >> 6] >> (id & 63)) & 1;
}

/* Whether port 'id' is a mirror output port under 'cfg'. */
static inline int
vs_mirror_is_output(const struct vs_config *cfg, uint32_t id)
{
    return cfg->mirrors && vs_port_bit(cfg->mirrors->outputs, id);
}

/* Pipeline hooks: called only when cfg->mirrors is set. */
void vs_mirror_rx(struct vs_ctx *, const struct vs_config *,
                  const struct vs_port *in, const struct vs_pkt *);
void vs_mirror_tx(struct vs_ctx *, const struct vs_config *,
                  const struct vs_port *out, const struct vs_pkt *,
                  const struct vs_vnet_hdr *vh, const uint8_t *l2,
                  uint32_t l2_len);
void vs_mirror_set_free(struct vs_mirror_set *);

#endif /* vs_mirror.h */

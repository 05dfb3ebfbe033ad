/*
 * vs_vlan.h: 802.1Q ingress classification and egress tagging.
 *
 * Access port (VLAN A): untagged and priority-tagged (VID 0) frames enter A,
 * as do frames tagged A; a frame tagged with any other VID is dropped.
 * Egress is untagged.
 *
 * Trunk port (allowed set S, native VLAN N or none): a frame tagged with a
 * VID in S enters that VLAN, other tagged frames are dropped; untagged and
 * priority-tagged frames enter N, or are dropped when there is no native
 * VLAN.  Egress is tagged, except frames of the native VLAN.
 *
 * VID 4095 is reserved and never allowed.  Pure functions; any thread.
 */
#ifndef VS_VLAN_H
#define VS_VLAN_H 1

#include <stdint.h>
#include <string.h>

#include "vs_worker.h"

static inline int
vs_vlan_bit(const uint64_t *bitmap, uint16_t vid)
{
    return (bitmap[vid >> 6] >> (vid & 63)) & 1;
}

/* Ingress. */
int vs_vlan_ingress(const struct vs_port *, int tagged, uint16_t vid,
                    uint16_t *vlan);

/* Egress. */
static inline int
vs_vlan_carries(const struct vs_port *port, uint16_t vlan)
{
    return vs_vlan_bit(port->members, vlan);
}

static inline int
vs_vlan_egress_tagged(const struct vs_port *port, uint16_t vlan)
{
    return port->p.mode == VS_MODE_TRUNK && vlan != port->p.native_vlan;
}

/* Builds the Ethernet header 'pkt' has on 'port' into 'out': the MAC
 * addresses, then an 802.1Q tag if the port wants the frame tagged.
 * Returns its length up to (not including) the EtherType: 12 or 16. */
static inline uint32_t
vs_vlan_egress_l2(const struct vs_port *port, const struct vs_pkt *pkt, uint8_t *out)
{
    memcpy(out, pkt->data, 2 * VS_ETH_ALEN);
    if (!vs_vlan_egress_tagged(port, pkt->vlan)) {
        return 12;
    }
    vs_put_be16(out + 12, VS_ETH_TYPE_VLAN);
    vs_put_be16(out + 14, (uint16_t) ((pkt->pcp << 13) | pkt->vlan));
    return 16;
}

void vs_vlan_fill_members(struct vs_port *);

#endif /* vs_vlan.h */

/* vs_vlan.c: 802.1Q ingress classification (see vs_vlan.h). */
#include "vs_vlan.h"

#include <string.h>

/* Classifies a frame received on 'port'.  'tagged' says whether it carried
 * an 802.1Q tag, 'vid' is the tag's VLAN id (ignored when untagged).
 * Stores the frame's VLAN in '*vlan' and returns 0, or returns the drop
 * reason (a VS_C_DROP_* counter). */
int
vs_vlan_ingress(const struct vs_port *port, int tagged, uint16_t vid,
                uint16_t *vlan)
{
    /* A priority tag (VID 0) only carries PCP bits: the frame is untagged
     * as far as VLAN membership goes. */
    if (tagged && vid == 0) {
        tagged = 0;
    }

    if (port->p.mode == VS_MODE_ACCESS) {
        if (tagged && vid != port->p.access_vlan) {
            return VS_C_DROP_VLAN_TAGGED_ON_ACCESS;
        }
        *vlan = port->p.access_vlan;
        return 0;
    }

    if (!tagged) {
        if (!port->p.native_vlan) {
            return VS_C_DROP_UNTAGGED_NO_NATIVE;
        }
        *vlan = port->p.native_vlan;
        return 0;
    }
    if (vid > VS_VID_MAX || !vs_vlan_bit(port->p.allowed, vid)) {
        return VS_C_DROP_VLAN_NOT_ALLOWED;
    }
    *vlan = vid;
    return 0;
}

/* Computes the set of VLANs 'port' carries, from its mode and parameters:
 * the one access VLAN, or the trunk's allowed list plus its native VLAN. */
void
vs_vlan_fill_members(struct vs_port *port)
{
    memset(port->members, 0, sizeof port->members);
    if (port->p.mode == VS_MODE_ACCESS) {
        uint16_t v = port->p.access_vlan;
        port->members[v >> 6] |= UINT64_C(1) << (v & 63);
        return;
    }
    memcpy(port->members, port->p.allowed, sizeof port->members);
    if (port->p.native_vlan) {
        uint16_t v = port->p.native_vlan;
        port->members[v >> 6] |= UINT64_C(1) << (v & 63);
    }
    /* VLAN 0 and 4095 are never carried. */
    port->members[0] &= ~UINT64_C(1);
    port->members[63] &= ~(UINT64_C(1) << 63);
}

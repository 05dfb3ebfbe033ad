/*
 * vs_counters.h: every per-port counter, defined once.
 *
 * Each worker owns a private array of counters per port and is its only
 * writer, so an increment is a plain relaxed store, never an atomic
 * read-modify-write and never a shared cache line.  Readers (the control
 * plane, at scrape or `show` time) sum the workers' arrays with relaxed
 * loads: a sum may be a few frames behind, never torn.
 *
 * Drop reasons are counters too: every frame the switch does not deliver is
 * counted under exactly one reason, on the port it came in on (or, for
 * transmit failures, the port it was going out of).
 */
#ifndef VS_COUNTERS_H
#define VS_COUNTERS_H 1

/* X(ENUM, "name", "help") */

#define VS_TRAFFIC_COUNTERS(X)                                              \
    X(RX_PACKETS, "rx_packets", "Frames received on the port")             \
    X(RX_BYTES, "rx_bytes", "Bytes received on the port (Ethernet header on)") \
    X(TX_PACKETS, "tx_packets", "Frames transmitted on the port")          \
    X(TX_BYTES, "tx_bytes", "Bytes transmitted on the port")               \
    X(FLOODED, "flooded", "Frames received on the port and flooded")       \
    X(SEGMENTED, "segmented", "GSO frames segmented in software for the port") \
    X(CSUM_FILLED, "csum_filled", "Partial checksums completed in software for the port") \
    X(QOS_DROPPED_OUT_BYTES, "qos_dropped_out_bytes", "Bytes from the VM dropped by max_bandwidth_out") \
    X(QOS_DROPPED_IN_BYTES, "qos_dropped_in_bytes", "Bytes toward the VM dropped by max_bandwidth_in") \
    X(QOS_HELD_OUT, "qos_held_out", "Frames from the VM held back to keep within max_bandwidth_out") \
    X(QOS_HELD_IN, "qos_held_in", "Frames toward the VM held back to keep within max_bandwidth_in")

#define VS_DROP_REASONS(X)                                                  \
    X(DROP_RUNT, "runt", "Shorter than 14 bytes, or 18 when VLAN tagged")   \
    X(DROP_OVERSIZE, "oversize", "Larger than the egress port's MTU and not segmentable") \
    X(DROP_BAD_VNET_HDR, "bad_vnet_hdr", "Inconsistent virtio-net header")  \
    X(DROP_VLAN_TAGGED_ON_ACCESS, "vlan_tagged_on_access", "Tagged with another VLAN on an access port") \
    X(DROP_VLAN_NOT_ALLOWED, "vlan_not_allowed", "Tagged with a VLAN the trunk does not allow") \
    X(DROP_UNTAGGED_NO_NATIVE, "untagged_no_native", "Untagged on a trunk without a native VLAN") \
    X(DROP_SRC_MULTICAST, "src_multicast", "Multicast or broadcast source MAC") \
    X(DROP_SRC_ZERO, "src_zero", "All-zero source MAC")                     \
    X(DROP_SAME_PORT, "same_port", "Destination learned on the ingress port") \
    X(DROP_NO_DEST, "no_destination", "No other port up in the VLAN")       \
    X(DROP_UNSUPPORTED_GSO, "unsupported_gso", "GSO type the switch cannot segment") \
    X(DROP_TX_ERROR, "tx_error", "The egress port refused the frame") \
    X(DROP_MAC_SPOOF, "mac_spoof", "Source MAC not in the port's allowed_macs") \
    X(DROP_MAX_MACS, "max_macs", "New source MAC beyond the port's max_macs") \
    X(DROP_DHCP_GUARD, "dhcp_guard", "DHCP server message from a port with dhcp_guard") \
    X(DROP_ROUTER_GUARD, "router_guard", "Router advertisement or redirect from a port with router_guard") \
    X(DROP_STORM_BROADCAST, "storm_broadcast", "Broadcast beyond the port's broadcast_pps") \
    X(DROP_STORM_MULTICAST, "storm_multicast", "Multicast beyond the port's multicast_pps") \
    X(DROP_STORM_UNKNOWN_UNICAST, "storm_unknown_unicast", "Unknown unicast beyond the port's unknown_unicast_pps") \
    X(DROP_ACL_DENY, "acl_deny", "Denied by an ACL rule of the port") \
    X(DROP_ACL_DEFAULT, "acl_default", "Matched no ACL rule of the port, whose acl_default is deny") \
    X(DROP_ACL_SESSIONS_FULL, "acl_sessions_full", "A stateful ACL rule could not open a session: the table is full") \
    X(DROP_ACL_UNPARSABLE, "acl_unparsable", "IP header cut short where an ACL deny rule needs its fields") \
    X(DROP_QOS_OUT, "qos_out", "From the VM beyond the port's max_bandwidth_out") \
    X(DROP_QOS_IN, "qos_in", "Toward the VM beyond the port's max_bandwidth_in") \
    X(DROP_MIRROR_OUTPUT, "mirror_output", "Sent by a mirror output port, which only receives copies") \
    VS_VXLAN_DROP_REASONS(X)                                               \
    VS_VHOST_DROP_REASONS(X)

/* Guest ring drops of vhost-user ports (vs_vhost.h). */
#define VS_VHOST_DROP_REASONS(X)                                            \
    X(DROP_VHOST_DESC_OOB, "vhost_desc_oob", "vhost-user descriptor pointing outside guest memory") \
    X(DROP_VHOST_DESC_LOOP, "vhost_desc_loop", "vhost-user descriptor chain looping or longer than its ring") \
    X(DROP_VHOST_DESC_BAD, "vhost_desc_bad", "vhost-user descriptor chain malformed (indirect table, direction, pieces)") \
    X(DROP_VHOST_DESC_TOO_LONG, "vhost_desc_too_long", "vhost-user frame longer than the switch forwards") \
    X(DROP_VHOST_RING_BROKEN, "vhost_ring_broken", "vhost-user queue stopped: its ring indices are inconsistent") \
    X(DROP_VHOST_NO_BUFFERS, "vhost_no_buffers", "Guest receive queue full or not running")

/* Decapsulation drops of vxlan ports (vs_vxlan.h). */
#define VS_VXLAN_DROP_REASONS(X)                                            \
    X(DROP_VXLAN_SHORT, "vxlan_short", "VXLAN datagram shorter than its header plus an Ethernet header") \
    X(DROP_VXLAN_NO_VNI_FLAG, "vxlan_no_vni_flag", "VXLAN header without the I flag") \
    X(DROP_VXLAN_RESERVED, "vxlan_reserved", "VXLAN header with reserved bits or unknown flags set") \
    X(DROP_VXLAN_UNKNOWN_VNI, "vxlan_unknown_vni", "VXLAN VNI not in the port's vni_map") \
    X(DROP_VXLAN_UNKNOWN_VTEP, "vxlan_unknown_vtep", "VXLAN from a VTEP not in the flood list while learning is off")

#define VS_COUNTER_ENUM(ENUM, NAME, HELP) VS_C_##ENUM,
enum vs_counter {
    VS_TRAFFIC_COUNTERS(VS_COUNTER_ENUM)
    VS_DROP_REASONS(VS_COUNTER_ENUM)
    VS_N_COUNTERS
};
#undef VS_COUNTER_ENUM

/* First drop reason: counters from here on are drops. */
#define VS_C_FIRST_DROP VS_C_DROP_RUNT

#endif /* vs_counters.h */

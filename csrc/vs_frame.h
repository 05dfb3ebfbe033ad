/*
 * vs_frame.h: frames, bursts and the virtio-net header.
 *
 * A frame is an Ethernet frame as read from a port, plus the virtio-net
 * header the kernel handed us with it (TAP with IFF_VNET_HDR, AF_PACKET with
 * PACKET_VNET_HDR).  The header is how the kernel says "this is a GSO
 * super-frame" or "the L4 checksum is still partial": we keep it beside the
 * frame, in host byte order, and rebuild it for the egress port.
 *
 * Frames live in buffers owned by one worker; nothing here is shared
 * between threads.  Byte order is in the type: fields named *_be are
 * network order, everything else is host order.
 */
#ifndef VS_FRAME_H
#define VS_FRAME_H 1

#include <stdint.h>
#include <string.h>

/* Frames read from one rx queue in one poll. */
#define VS_BURST 32

/* A GSO super-frame is at most 64 KiB of IP datagram plus its L2 header (and
 * a VLAN tag we may add): size every frame buffer for the largest one. */
#define VS_FRAME_MAX (65536 + 64)

#define VS_ETH_ALEN 6
#define VS_ETH_HLEN 14
#define VS_VLAN_HLEN 4
#define VS_ETH_VLAN_HLEN (VS_ETH_HLEN + VS_VLAN_HLEN)

#define VS_ETH_TYPE_IPV4 0x0800
#define VS_ETH_TYPE_IPV6 0x86dd
#define VS_ETH_TYPE_VLAN 0x8100
#define VS_ETH_TYPE_QINQ 0x88a8

#define VS_VLAN_NONE 0xffff
#define VS_VID_MAX 4094

/* virtio-net header, as in <linux/virtio_net.h>, converted to host order.
 * The kernel's tap and packet sockets use the legacy header: native endian
 * unless TUNSETVNETLE/BE says otherwise, which we never set. */
#define VS_VNET_F_NEEDS_CSUM 1
#define VS_VNET_F_DATA_VALID 2

#define VS_VNET_GSO_NONE 0
#define VS_VNET_GSO_TCPV4 1
#define VS_VNET_GSO_UDP 3
#define VS_VNET_GSO_TCPV6 4
#define VS_VNET_GSO_UDP_L4 5
#define VS_VNET_GSO_ECN 0x80

/* Size of the header on the wire: 10 bytes, or 12 with num_buffers
 * (TUNSETVNETHDRSZ 12).  0 = the port carries no header. */
#define VS_VNET_HDR_LEN 10
#define VS_VNET_HDR_MRG_LEN 12

struct vs_vnet_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
    uint16_t num_buffers;   /* only meaningful in the 12-byte form */
};

static inline int
vs_vnet_hdr_is_gso(const struct vs_vnet_hdr *vh)
{
    return (vh->gso_type & ~VS_VNET_GSO_ECN) != VS_VNET_GSO_NONE;
}

/* Moves the offsets of 'vh' by 'delta' bytes, for a tag added or
 * stripped in front of the L3 header. */
static inline void
vs_vnet_hdr_shift(struct vs_vnet_hdr *vh, int delta)
{
    if (vh->flags & VS_VNET_F_NEEDS_CSUM) {
        vh->csum_start = (uint16_t) (vh->csum_start + delta);
    }
    if (vs_vnet_hdr_is_gso(vh) && vh->hdr_len) {
        vh->hdr_len = (uint16_t) (vh->hdr_len + delta);
    }
}

/* Ethernet accessors.  'p' points at the destination MAC. */
static inline uint16_t
vs_get_be16(const uint8_t *p)
{
    return (uint16_t) ((p[0] << 8) | p[1]);
}

static inline void
vs_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t) (v >> 8);
    p[1] = (uint8_t) v;
}

static inline int
vs_mac_is_multicast(const uint8_t *mac)
{
    return mac[0] & 1;
}

static inline int
vs_mac_is_zero(const uint8_t *mac)
{
    return !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]);
}

#endif /* vs_frame.h */

/*
 * vs_acl_key.c: the classification key of a frame (struct vs_acl_key in
 * vs_acl.h): Ethernet, VLAN, IPv4/IPv6 and the first L4 header, as seen
 * from the VM's side of a port.
 *
 * Parsing never reads past 'len'.  What a frame does not carry stays zero,
 * and its flags say what was found: an IP header (VS_ACL_F_IP), an L4
 * header with ports or an ICMP type (VS_ACL_F_L4), a non-first fragment
 * (VS_ACL_F_FRAG: L3 fields only), or an IP packet cut short before the
 * fields a rule may need (VS_ACL_F_L4_MISSING).
 */
#include <string.h>

#include "vs_acl.h"
#include "vs_frame.h"

#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_ICMP 1
#define PROTO_ICMPV6 58
#define PROTO_SCTP 132
#define PROTO_UDPLITE 136

static int
is_ipv6_ext(uint8_t nh)
{
    return nh == 0 || nh == 43 || nh == 44 || nh == 51 || nh == 60;
}

/* Fills the L4 part of 'k' from the header at 'f' + 'l4' (protocol
 * k->proto), or marks it missing when the frame is cut short. */
static void
parse_l4(const uint8_t *f, uint32_t len, uint32_t l4, struct vs_acl_key *k,
         uint16_t *src, uint16_t *dst)
{
    switch (k->proto) {
    case PROTO_TCP:
    case PROTO_UDP:
    case PROTO_SCTP:
    case PROTO_UDPLITE:
        if (len < l4 + 4) {
            k->flags |= VS_ACL_F_L4_MISSING;
            return;
        }
        *src = vs_get_be16(f + l4);
        *dst = vs_get_be16(f + l4 + 2);
        if (k->proto == PROTO_TCP && len >= l4 + 14) {
            k->tcp_flags = f[l4 + 13];
        }
        k->flags |= VS_ACL_F_L4;
        return;
    case PROTO_ICMP:
    case PROTO_ICMPV6:
        if (len < l4 + 1) {
            k->flags |= VS_ACL_F_L4_MISSING;
            return;
        }
        k->icmp_type = f[l4];
        k->flags |= VS_ACL_F_L4;
        return;
    default:
        return;         /* no L4 fields a rule can name */
    }
}

static void
parse_ipv4(const uint8_t *f, uint32_t len, uint32_t off, struct vs_acl_key *k,
           const uint8_t **src_ip, const uint8_t **dst_ip, uint16_t *sp, uint16_t *dp)
{
    uint32_t ihl = len >= off + 20 ? (uint32_t) (f[off] & 0xf) * 4 : 0;
    if (len < off + 20 || (f[off] >> 4) != 4 || ihl < 20 || len < off + ihl) {
        k->flags |= VS_ACL_F_L4_MISSING;        /* an IPv4 header we cannot read */
        return;
    }
    k->flags |= VS_ACL_F_IP;
    k->proto = f[off + 9];
    *src_ip = f + off + 12;
    *dst_ip = f + off + 16;
    if (vs_get_be16(f + off + 6) & 0x1fff) {
        k->flags |= VS_ACL_F_FRAG;              /* L3 fields only */
        return;
    }
    parse_l4(f, len, off + ihl, k, sp, dp);
}

static void
parse_ipv6(const uint8_t *f, uint32_t len, uint32_t off, struct vs_acl_key *k,
           const uint8_t **src_ip, const uint8_t **dst_ip, uint16_t *sp, uint16_t *dp)
{
    if (len < off + 40 || (f[off] >> 4) != 6) {
        k->flags |= VS_ACL_F_L4_MISSING;
        return;
    }
    k->flags |= VS_ACL_F_IP | VS_ACL_F_IP6;
    *src_ip = f + off + 8;
    *dst_ip = f + off + 24;
    uint8_t nh = f[off + 6];
    uint32_t l4 = off + 40;
    /* As vs_guard.c: a first fragment carries the whole header chain
     * (RFC 7112); a chain that runs off the frame is unparsable. */
    for (int i = 0; is_ipv6_ext(nh); i++) {
        if (i == 8 || len < l4 + 8) {
            k->proto = nh;
            k->flags |= VS_ACL_F_L4_MISSING;
            return;
        }
        uint8_t next = f[l4];
        if (nh == 44) {
            if (vs_get_be16(f + l4 + 2) & 0xfff8) {
                k->proto = next;
                k->flags |= VS_ACL_F_FRAG;
                return;
            }
            l4 += 8;
        } else if (nh == 51) {
            l4 += ((uint32_t) f[l4 + 1] + 2) * 4;
        } else {
            l4 += ((uint32_t) f[l4 + 1] + 1) * 8;
        }
        nh = next;
    }
    k->proto = nh;
    parse_l4(f, len, l4, k, sp, dp);
}

/* Builds the key of frame 'frame' ('len' bytes, EtherType at 'type_off',
 * classified into VLAN 'vlan') as seen from direction 'dir' into '*out'. */
void
vs_acl_parse(const uint8_t *frame, uint32_t len, uint32_t type_off,
             uint16_t vlan, int dir, struct vs_acl_key *out)
{
    const uint8_t *src_ip = NULL, *dst_ip = NULL;
    uint16_t sp = 0, dp = 0;
    struct vs_acl_key k;

    memset(&k, 0, sizeof k);
    k.vlan = vlan;
    if (len >= type_off + 2) {
        k.ethertype = vs_get_be16(frame + type_off);
        if (k.ethertype == VS_ETH_TYPE_IPV4) {
            parse_ipv4(frame, len, type_off + 2, &k, &src_ip, &dst_ip, &sp, &dp);
        } else if (k.ethertype == VS_ETH_TYPE_IPV6) {
            parse_ipv6(frame, len, type_off + 2, &k, &src_ip, &dst_ip, &sp, &dp);
        }
    }
    uint32_t ip_len = (k.flags & VS_ACL_F_IP6) ? 16 : 4;
    int out_dir = dir == VS_ACL_OUT;
    memcpy(k.local_mac, frame + (out_dir ? VS_ETH_ALEN : 0), VS_ETH_ALEN);
    memcpy(k.remote_mac, frame + (out_dir ? 0 : VS_ETH_ALEN), VS_ETH_ALEN);
    if (src_ip) {
        memcpy(k.local_ip, out_dir ? src_ip : dst_ip, ip_len);
        memcpy(k.remote_ip, out_dir ? dst_ip : src_ip, ip_len);
    }
    k.local_port = out_dir ? sp : dp;
    k.remote_port = out_dir ? dp : sp;
    *out = k;
}

/* The same frame's key seen from the other direction: local and remote
 * swapped. */
void
vs_acl_key_flip(const struct vs_acl_key *in, struct vs_acl_key *out)
{
    struct vs_acl_key k = *in;
    memcpy(k.local_ip, in->remote_ip, 16);
    memcpy(k.remote_ip, in->local_ip, 16);
    memcpy(k.local_mac, in->remote_mac, 6);
    memcpy(k.remote_mac, in->local_mac, 6);
    k.local_port = in->remote_port;
    k.remote_port = in->local_port;
    *out = k;
}

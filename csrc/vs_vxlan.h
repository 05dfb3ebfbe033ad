/*
 * vs_vxlan.h: the vxlan port kind, a VTEP (RFC 7348) in the workers' burst
 * pipeline.
 *
 * What it is for: stretching VLANs across hosts.  A vxlan port carries the
 * VLANs of its vni_map, one VNI each (VLAN-based service).  Frames that
 * leave through it are encapsulated in UDP and handed to the kernel, which
 * routes them, resolves the next hop and picks the underlay interface;
 * frames that arrive on its UDP socket are decapsulated and switched like
 * frames from any other port.  No Python runs per frame.
 *
 * A port kind is a provider (see vs_port_class.h): the pipeline calls this
 * file through its class (read a burst, encapsulate one frame) and never
 * looks inside.  Sockets, both opened by the control plane:
 *  - the port's rx fd, a UDP socket bound to local_ip:dstport, read with
 *    recvmmsg(); the sender's address names the remote VTEP;
 *  - 'tx_fd', a raw IPPROTO_UDP socket bound to local_ip: the kernel adds
 *    the IP header (TTL from IP_TTL, DF set, IPv6 UDP checksum computed
 *    through IPV6_CHECKSUM) and we write the UDP header, so the outer
 *    source port can follow the inner flow, as RFC 7348 asks, and ECMP and
 *    RSS in the underlay spread flows.  A bound UDP socket could only send
 *    from one port.  IPv4 UDP checksum is zero (RFC 7348); IPv6 computed
 *    (RFC 6935 allows zero only with care we do not take).
 *    Frames go out through the worker's tx list, one sendmmsg() per burst.
 *  - or, when the control plane gives it one, a pool of UDP sockets bound
 *    to local_ip and to ports spread over src_port_range: a flow hashes to
 *    one socket, so its source port is still the flow's.  Their win is UDP
 *    GSO (UDP_SEGMENT): a TCP super-frame from a VM is cut into segments
 *    here, each with its VXLAN header, laid back to back and handed to the
 *    kernel in one sendmsg() that the underlay's device (or the kernel,
 *    late) splits into datagrams: one trip through the IP stack per ~40
 *    segments instead of one each.  The price: the outer UDP checksum is
 *    computed (UDP GSO requires it; RFC 7348 allows it) and a flow's source
 *    port is one of at most VS_VXLAN_UDP_MAX.
 *
 * Remote MACs live in the switch's MAC table at (vxlan port, VTEP): the
 * entry's port word carries the VTEP index in its high 16 bits
 * (VS_MAC_AT() in vs_mac_table.h).  VTEPs are kept in a small table here,
 * indexed 1..VS_VXLAN_VTEPS_MAX-1 (0: no VTEP).  The table only grows:
 * static peers are added when the port is created, remote VTEPs learned
 * from traffic (learning = true) by the worker that first hears them, and
 * control-plane VTEPs (EVPN) by the control thread.  An index, once given,
 * names the same address for the life of the port, so a MAC table entry
 * can never point at a recycled VTEP.  A VTEP is in the flood list (the
 * head-end replication list for broadcast, multicast and unknown unicast)
 * of every VNI (its "flood" flag: a static peer) or of some VNIs (one bit
 * per VLAN: EVPN type-3 routes are per VNI).  With learning = false, only
 * a VTEP in a VNI's flood list may send us that VNI's frames.
 *
 * Receive offload: runs of one TCP flow's segments in a burst are merged
 * into one GSO super-frame (vs_vxlan_gro.c), so a VM's TAP takes a
 * stream in 64 KB steps as it would from the kernel's GRO.
 *
 * Decapsulation drops, each counted on the vxlan port under its own
 * reason: shorter than the VXLAN header plus an Ethernet header
 * (vxlan_short), I flag clear (vxlan_no_vni_flag), any other flag or
 * reserved bit set (vxlan_reserved, as the Linux kernel does without
 * extensions), a VNI not in vni_map (vxlan_unknown_vni), and with
 * learning = false a sender that is not in the flood list
 * (vxlan_unknown_vtep).
 *
 * Split horizon: the pipeline never sends a frame that came from the
 * overlay back into it (vs_forward.c skips vxlan ports when flooding a
 * decapsulated frame, and a unicast to a MAC behind the overlay from the
 * overlay is a same_port drop).
 *
 * MTU: the port's 'mtu' (the underlay's minus 50 for IPv4, 70 for IPv6,
 * set by the control plane) bounds the inner frame's L3 bytes; larger
 * frames are dropped as oversize, never fragmented.  GSO super-frames are
 * segmented here, each segment encapsulated on its own.
 *
 * Threads: vs_vxlan_new()/free() and the vtep setters are for the control
 * thread; free only once no published config names the port.  Workers
 * read the immutable parts without synchronisation, the VTEP table through
 * its acquire-loaded count, and write their own counters (one row per
 * context, relaxed stores, summed by readers as in vs_counters.h).  The
 * only lock is taken to add a VTEP, which happens once per remote host.
 */
#ifndef VS_VXLAN_H
#define VS_VXLAN_H 1

#include <stdint.h>

#define VS_VXLAN_VTEPS_MAX 256
#define VS_VXLAN_UDP_MAX 32         /* sockets of the UDP send pool */
#define VS_VXLAN_HLEN 8
#define VS_VXLAN_FLAG_I 0x08
#define VS_VXLAN_VNI_MAX 0xffffff
/* Outer header bytes an encapsulated frame adds on the wire, after the
 * inner Ethernet header: IP + UDP + VXLAN + inner Ethernet. */
#define VS_VXLAN_OVERHEAD_V4 50
#define VS_VXLAN_OVERHEAD_V6 70

/* Per-VTEP counters. */
enum {
    VS_VTEP_TX_PACKETS,
    VS_VTEP_TX_BYTES,
    VS_VTEP_RX_PACKETS,
    VS_VTEP_RX_BYTES,
    VS_VTEP_N_COUNTERS
};

/* What the control plane gives vs_vxlan_new(). */
struct vs_vxlan_params {
    int family;                 /* AF_INET or AF_INET6 */
    uint8_t local_ip[16];       /* IPv4: first 4 bytes */
    uint16_t dstport;
    uint16_t src_port_min;      /* outer source ports, inclusive */
    uint16_t src_port_max;
    int learning;               /* learn remote MACs and VTEPs from traffic */
    int tx_fd;                  /* raw IPPROTO_UDP socket, owned by the caller */
    /* The UDP send pool: sockets bound to local_ip:udp_ports[i], owned by
     * the caller; n_udp = 0 sends everything through 'tx_fd'. */
    uint32_t n_udp;
    int udp_fds[VS_VXLAN_UDP_MAX];
    uint16_t udp_ports[VS_VXLAN_UDP_MAX];
    uint32_t n_ctx;             /* the switch's contexts: workers + 1 */
    uint32_t vlan_vni[4096];    /* VLAN -> VNI, 0 = not carried */
};

/* One VTEP as vs_vxlan_vtep_get() reports it. */
struct vs_vtep_info {
    int family;
    uint8_t addr[16];
    int flood;                  /* in every VNI's flood list */
    uint32_t flood_vnis;        /* VNIs whose flood list it is in */
    uint64_t counters[VS_VTEP_N_COUNTERS];  /* summed over contexts */
};

struct vs_vxlan;
struct vs_config;
struct vs_ctx;
struct vs_port;
struct vs_pkt;
struct vs_rxq_ref;

/* Basics. */
struct vs_vxlan *vs_vxlan_new(const struct vs_vxlan_params *);
void vs_vxlan_free(struct vs_vxlan *);

/* VTEPs (control thread). */
int vs_vxlan_add_vtep(struct vs_vxlan *, const uint8_t *addr, int flood);
int vs_vxlan_set_flood(struct vs_vxlan *, uint32_t vtep, int flood);
int vs_vxlan_set_flood_vni(struct vs_vxlan *, uint32_t vtep, uint32_t vni, int flood);
uint32_t vs_vxlan_n_vteps(const struct vs_vxlan *);
int vs_vxlan_vtep_get(const struct vs_vxlan *, uint32_t vtep,
                      struct vs_vtep_info *out);

/* Hashing (exposed for tests): the outer source port for inner frame
 * 'frame' of 'len' bytes, untagged. */
uint16_t vs_vxlan_src_port(const struct vs_vxlan *, const uint8_t *frame,
                           uint32_t len);

/* The pipeline's side (vs_port_class.h; workers only). */
uint32_t vs_vxlan_read_burst(struct vs_ctx *, const struct vs_config *,
                             const struct vs_rxq_ref *, uint32_t now_s);
void vs_vxlan_egress(struct vs_ctx *, struct vs_port *, struct vs_pkt *);
uint32_t vs_vxlan_learn_port(const struct vs_port *, const struct vs_pkt *);
/* Receive offload: merges a burst's decapsulated TCP segments into GSO
 * super-frames (vs_vxlan_gro.c); returns the frames left. */
uint32_t vs_vxlan_coalesce(struct vs_pkt *pkts, uint32_t n, const uint8_t *bufs);

#endif /* vs_vxlan.h */

/*
 * fuzz_pipeline.c: libFuzzer target for the whole frame path, from a read on
 * an rx queue to the bytes written on every egress port.
 *
 * The switch is the real one (csrc/vs_*.c linked as they are), with no
 * worker threads: vs_switch_poll_once() runs the pipeline in this thread.
 * Its ports are AF_UNIX SOCK_DGRAM socketpairs; the switch owns one end,
 * this harness writes frames into and drains frames out of the other.
 *
 * Ports (a mix of every kind, mode, header size and offload):
 *
 *   idx  id    mode                   kind    vnet  csum tso  mtu
 *   0    0     access 10              PACKET  12    on   on   1500
 *   1    3     access 20              FD      10    off  off  -
 *   2    17    trunk 1-100, native 10 PACKET  0     off  off  -
 *   3    200   trunk 1-100, no native FD      10    off  off  1000
 *   4    1023  access 10              FD      10    on   off  576
 *   5    40    trunk 10,20 (VNI 5010, 5020)  VXLAN  0  off off  1450
 *
 * The vxlan port's "peer" is a UDP socket on 127.0.0.1 that is both the
 * one remote VTEP (in the flood list, learning on) and the sender of
 * records written "into" the port: they arrive as VXLAN datagrams to
 * decapsulate.  The port sends with a plain UDP socket instead of the
 * daemon's raw one, so what the peer drains is [UDP 8][VXLAN 8][frame].
 *
 * Policy (csrc/vs_policy.h, vs_qos.h): port 3 has a stateful VM firewall
 * (out: allow TCP stateful, meter everything; in: allow ARP, deny the
 * rest), port 4 an ACL of 40 rules, so the tuple space classifier runs,
 * with a deny of UDP to its local port 7 on top; port 1 has a 10 Mbit/s
 * out limit and port 0 a 20 Mbit/s in limit with small buckets, so frames
 * are held back and dropped.
 *
 * Input: a sequence of records
 *
 *   [selector: 1 byte][length: 2 bytes, big-endian][length bytes]
 *
 * The bytes are what the peer writes into the port: the virtio-net header
 * (when the port has one, host order as the kernel writes it) then the
 * frame.  A length of 0xffff, or one longer than what is left, takes the
 * rest of the input, so the last record can exceed 64 KiB (and
 * VS_FRAME_MAX).  The selector says what happens around the write:
 *
 *   bits 0-2  port index (mod 5)
 *   bit  3    poll the switch and check what came out after this write
 *             (the last record always does)
 *   bits 4-5  advance the fake clock by 0, 1, 60 or 400 s before polling
 *   bit  6    vs_mac_age(now, 300 s) after polling
 *   bit  7    vs_mac_flush() of the port's entries after polling
 *
 * Oracle, after every poll (a broken one is __builtin_trap()):
 *   - every counter of every port is monotonic;
 *   - what the switch says it sent is what arrived: per port, the tx_packets
 *     delta equals the frames drained from its peer and tx_bytes the sum of
 *     their Ethernet lengths (no vnet header);
 *   - every drained frame holds the port's vnet header plus at least an
 *     Ethernet header, and that vnet header is one the kernel would accept
 *     (vs_vnet_hdr_check() passes) and uses no offload the port lacks;
 *   - frames out of an access port are untagged, out of the trunk without
 *     native VLAN tagged with an allowed VID, out of the native trunk
 *     untagged or tagged with an allowed VID other than 10 (frames that were
 *     double tagged on ingress are exempt from these three: stripping one
 *     tag legitimately exposes the inner one);
 *   - a port's L3 bytes never exceed its MTU; for a GSO super-frame to a
 *     TSO port, the L3 bytes of each segment the port will cut it into;
 *   - when only one port received during a poll, nothing came out of it
 *     (unless a bandwidth limit held frames back during this input: one
 *     sent late may leave through the port that just received; for the
 *     vxlan port: split horizon);
 *   - nothing out of port 4 is an unfragmented IPv4 UDP datagram to port 7;
 *   - what the vxlan port sends has its outer UDP header right (ports,
 *     length, zero checksum), the I flag, the VNI of a mapped VLAN, an
 *     untagged inner frame (double-tag exemption aside) within the MTU.
 *
 * Known bugs: VS_FUZZ_IGNORE=name,name... (read once at start) turns off
 * the oracle checks named, so a long run can look past a bug already
 * reported: "mtu" (the MTU check), "vnet" (the re-check of egress vnet
 * headers), "tags" (the tagging checks).  Tests never set it.
 *
 * State: the switch lives across inputs (creating one allocates ~2 MiB of
 * buffers per context), but each input starts with an empty MAC table, no
 * ACL sessions, full bandwidth buckets, no held frames, a reset clock and
 * empty sockets, so inputs replay deterministically.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vs_acl.h"
#include "vs_acl_sessions.h"
#include "vs_counters.h"
#include "vs_frame.h"
#include "vs_gso.h"
#include "vs_mac_table.h"
#include "vs_switch.h"
#include "vs_worker.h"
#include "vs_vxlan.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#define N_PORTS 6
#define VX_IDX 5
#define PEER_BUF (VS_FRAME_MAX + 4096)
#define SOCK_BUF (32 * 1024 * 1024)
#define START_S 1000u

struct fuzz_port {
    struct vs_port_params p;
    int sw_fd;          /* the switch's end */
    int peer_fd;        /* ours */
};

static struct vs_switch *sw;
static struct fuzz_port ports[N_PORTS];
static uint8_t peer_buf[PEER_BUF];
static uint64_t last[N_PORTS][VS_N_COUNTERS];
static int frames_held;         /* a bandwidth limit held some back this input */
static int ignore_mtu, ignore_vnet, ignore_tags;
static struct vs_vxlan *vx;
static struct sockaddr_in vx_rx_addr;
static uint16_t vx_peer_port;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_pipeline: invariant broken: %s: ", #cond); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            __builtin_trap();                                                \
        }                                                                    \
    } while (0)

static void
die(const char *what)
{
    perror(what);
    abort();
}

static void
set_bufs(int fd)
{
    int sz = SOCK_BUF;

    /* FORCE ignores wmem_max/rmem_max but needs CAP_NET_ADMIN. */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz)) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz)) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
}

static void
allow_range(struct vs_port_params *p, unsigned lo, unsigned hi)
{
    for (unsigned v = lo; v <= hi; v++) {
        p->allowed[v >> 6] |= UINT64_C(1) << (v & 63);
    }
}

static void
add_port(struct vs_config *cfg, int idx, uint32_t id, int kind, int mode,
         uint16_t vlan, uint32_t vnet, int csum, int tso, uint32_t mtu)
{
    struct fuzz_port *fp = &ports[idx];
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv)) {
        die("socketpair");
    }
    set_bufs(sv[0]);
    set_bufs(sv[1]);
    fp->sw_fd = sv[0];
    fp->peer_fd = sv[1];

    /* Keep the policy setup() gave the port; everything else from here. */
    struct vs_acl *acl = fp->p.acl;
    uint64_t bps_out = fp->p.max_bps_out, bps_in = fp->p.max_bps_in;
    uint64_t burst = fp->p.max_burst_bytes;
    memset(&fp->p, 0, sizeof fp->p);
    fp->p.acl = acl;
    fp->p.max_bps_out = bps_out;
    fp->p.max_bps_in = bps_in;
    fp->p.max_burst_bytes = burst;
    fp->p.id = id;
    fp->p.kind = kind;
    fp->p.mode = mode;
    if (mode == VS_MODE_ACCESS) {
        fp->p.access_vlan = vlan;
    } else {
        fp->p.native_vlan = vlan;
        allow_range(&fp->p, 1, 100);
    }
    fp->p.up = 1;
    fp->p.n_queues = 1;
    fp->p.fds[0] = fp->sw_fd;
    fp->p.vnet_hdr_len = vnet;
    fp->p.offload_csum = csum;
    fp->p.offload_tso = tso;
    fp->p.mtu = mtu;
    if (vs_config_add_port(cfg, &fp->p)) {
        die("vs_config_add_port");
    }
}

/* A rule for the fuzzed ACLs: 'proto' 0 = any, ports 0-65535 = any. */
static struct vs_acl_rule
acl_rule(uint64_t id, uint32_t weight, int dirs, int action, int stateful, uint8_t proto)
{
    struct vs_acl_rule r;
    memset(&r, 0, sizeof r);
    r.id = id;
    r.weight = weight;
    r.dirs = (uint8_t) dirs;
    r.action = (uint8_t) action;
    r.stateful = (uint8_t) stateful;
    r.idle_timeout_s = 30;
    r.local_port_hi = r.remote_port_hi = 65535;
    if (proto) {
        r.key.proto = proto;
        r.mask.proto = 0xff;
        r.key.flags = r.mask.flags = VS_ACL_F_IP;
    }
    return r;
}

static struct vs_acl *
compile_acl(const struct vs_acl_rule *rules, uint32_t n)
{
    struct vs_acl *acl;
    if (vs_acl_new(rules, n, VS_ACL_ALLOW, 1, &acl)) {
        die("vs_acl_new");
    }
    return acl;
}

/* Port 3: a VM that may open TCP connections and take nothing else in. */
static struct vs_acl *
firewall_acl(void)
{
    struct vs_acl_rule r[4];
    r[0] = acl_rule(1, 100, VS_ACL_OUT, VS_ACL_ALLOW, 1, 6);
    r[1] = acl_rule(2, 75, VS_ACL_IN | VS_ACL_OUT, VS_ACL_METER, 0, 0);
    r[2] = acl_rule(3, 50, VS_ACL_IN, VS_ACL_ALLOW, 0, 0);
    r[2].key.ethertype = 0x0806;
    r[2].mask.ethertype = 0xffff;
    r[3] = acl_rule(4, 1, VS_ACL_IN, VS_ACL_DENY, 0, 0);
    return compile_acl(r, 4);
}

/* Port 4: 40 rules over addresses, prefixes and port ranges, IPv4 and
 * IPv6, under a deny of UDP to local port 7 (the oracle's). */
static struct vs_acl *
many_rules_acl(void)
{
    struct vs_acl_rule r[40];
    r[0] = acl_rule(100, 1000, VS_ACL_IN, VS_ACL_DENY, 0, 17);
    r[0].local_port_lo = r[0].local_port_hi = 7;
    r[0].key.flags |= VS_ACL_F_L4;
    r[0].mask.flags |= VS_ACL_F_L4;
    for (int i = 1; i < 40; i++) {
        int v6 = i % 5 == 0;
        r[i] = acl_rule(100 + (uint64_t) i, (uint32_t) (10 + i), i % 3 ? VS_ACL_IN : VS_ACL_OUT,
                        i % 4 ? VS_ACL_DENY : (i % 8 ? VS_ACL_ALLOW : VS_ACL_METER),
                        i % 8 == 4, i % 2 ? 6 : 17);
        r[i].mask.flags |= VS_ACL_F_IP6;
        if (v6) {
            r[i].key.flags |= VS_ACL_F_IP6;
            r[i].key.remote_ip[0] = 0xfd;
            r[i].key.remote_ip[15] = (uint8_t) i;
            memset(r[i].mask.remote_ip, 0xff, 16);
        } else {
            r[i].key.remote_ip[0] = 10;
            r[i].key.remote_ip[1] = (uint8_t) i;
            memset(r[i].mask.remote_ip, 0xff, (size_t) (1 + i % 4));
        }
        if (i % 3 == 1) {
            r[i].local_port_lo = (uint16_t) (i * 100);
            r[i].local_port_hi = (uint16_t) (i * 100 + i * 37);
            r[i].key.flags |= VS_ACL_F_L4;
            r[i].mask.flags |= VS_ACL_F_L4;
        }
    }
    return compile_acl(r, 40);
}

static int
udp_socket(struct sockaddr_in *bound)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof *bound;

    memset(bound, 0, sizeof *bound);
    bound->sin_family = AF_INET;
    bound->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *) bound, sizeof *bound)
        || getsockname(fd, (struct sockaddr *) bound, &len)) {
        die("udp socket");
    }
    set_bufs(fd);
    return fd;
}

static void
add_vxlan_port(struct vs_config *cfg)
{
    struct fuzz_port *fp = &ports[VX_IDX];
    struct sockaddr_in peer;
    static const uint8_t lo[4] = { 127, 0, 0, 1 };
    struct vs_vxlan_params vp;

    fp->sw_fd = udp_socket(&vx_rx_addr);
    fp->peer_fd = udp_socket(&peer);
    vx_peer_port = ntohs(peer.sin_port);
    memset(&vp, 0, sizeof vp);
    vp.family = AF_INET;
    memcpy(vp.local_ip, lo, 4);
    vp.dstport = vx_peer_port;
    vp.src_port_min = 32768;
    vp.src_port_max = 61000;
    vp.learning = 1;
    vp.tx_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    vp.n_ctx = 1;
    vp.vlan_vni[10] = 5010;
    vp.vlan_vni[20] = 5020;
    vx = vs_vxlan_new(&vp);
    if (vp.tx_fd < 0 || !vx || vs_vxlan_add_vtep(vx, lo, 1) != 1) {
        die("vs_vxlan_new");
    }
    memset(&fp->p, 0, sizeof fp->p);
    fp->p.id = 40;
    fp->p.kind = VS_PORT_VXLAN;
    fp->p.mode = VS_MODE_TRUNK;
    allow_range(&fp->p, 10, 10);
    allow_range(&fp->p, 20, 20);
    fp->p.up = 1;
    fp->p.n_queues = 1;
    fp->p.fds[0] = fp->sw_fd;
    fp->p.mtu = 1450;
    fp->p.vxlan = vx;
    if (vs_config_add_port(cfg, &fp->p)) {
        die("vs_config_add_port vxlan");
    }
}

/* Checks one datagram ('n' bytes) the vxlan port sent to its peer;
 * returns the inner frame's length. */
static uint32_t
check_vxlan_out(const uint8_t *b, size_t n, int exempt_tags)
{
    CHECK(n >= 16 + VS_ETH_HLEN, "vxlan: %zu-byte datagram out", n);
    CHECK(vs_get_be16(b) >= 32768 && vs_get_be16(b) <= 61000,
          "vxlan: source port %u", vs_get_be16(b));
    CHECK(vs_get_be16(b + 2) == vx_peer_port && vs_get_be16(b + 4) == n
          && vs_get_be16(b + 6) == 0, "vxlan: bad outer UDP header");
    uint32_t vni = ((uint32_t) b[12] << 16) | (b[13] << 8) | b[14];
    CHECK(b[8] == VS_VXLAN_FLAG_I && !b[9] && !b[10] && !b[11] && !b[15]
          && (vni == 5010 || vni == 5020), "vxlan: bad header, VNI %u", vni);
    const uint8_t *eth = b + 16;
    uint32_t len = (uint32_t) n - 16;
    int tagged = vs_get_be16(eth + 12) == VS_ETH_TYPE_VLAN;
    CHECK(!tagged || exempt_tags || ignore_tags, "vxlan: tagged inner frame");
    CHECK(len - VS_ETH_HLEN <= ports[VX_IDX].p.mtu || ignore_mtu,
          "vxlan: %u L3 bytes over mtu %u", len - VS_ETH_HLEN,
          ports[VX_IDX].p.mtu);
    return len;
}

static void
setup(void)
{
    struct vs_config *cfg;

    sw = vs_switch_new(0, NULL, 64);
    cfg = vs_config_new();
    if (!sw || !cfg) {
        die("vs_switch_new");
    }
    if (vs_switch_set_acl_sessions(sw, 64)) {
        die("vs_switch_set_acl_sessions");
    }
    ports[0].p.max_bps_in = 20000000;
    ports[0].p.max_burst_bytes = 4000;
    ports[1].p.max_bps_out = 10000000;
    ports[1].p.max_burst_bytes = 3028;
    ports[3].p.acl = firewall_acl();
    ports[4].p.acl = many_rules_acl();
    add_port(cfg, 0, 0, VS_PORT_PACKET, VS_MODE_ACCESS, 10, 12, 1, 1, 1500);
    add_port(cfg, 1, 3, VS_PORT_FD, VS_MODE_ACCESS, 20, 10, 0, 0, 0);
    add_port(cfg, 2, 17, VS_PORT_PACKET, VS_MODE_TRUNK, 10, 0, 0, 0, 0);
    add_port(cfg, 3, 200, VS_PORT_FD, VS_MODE_TRUNK, 0, 10, 0, 0, 1000);
    add_port(cfg, 4, 1023, VS_PORT_FD, VS_MODE_ACCESS, 10, 10, 1, 0, 576);
    add_vxlan_port(cfg);
    if (vs_switch_publish(sw, cfg)) {
        die("vs_switch_publish");
    }
    for (int i = 0; i < N_PORTS; i++) {
        vs_switch_port_counters(sw, ports[i].p.id, last[i]);
    }
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    const char *ign = getenv("VS_FUZZ_IGNORE");
    if (ign) {
        ignore_mtu = strstr(ign, "mtu") != NULL;
        ignore_vnet = strstr(ign, "vnet") != NULL;
        ignore_tags = strstr(ign, "tags") != NULL;
        fprintf(stderr, "fuzz_pipeline: ignoring %s\n", ign);
    }
    setup();
    return 0;
}

static void
parse_vnet_hdr(const uint8_t *b, struct vs_vnet_hdr *vh)
{
    memset(vh, 0, sizeof *vh);
    vh->flags = b[0];
    vh->gso_type = b[1];
    memcpy(&vh->hdr_len, b + 2, 2);
    memcpy(&vh->gso_size, b + 4, 2);
    memcpy(&vh->csum_start, b + 6, 2);
    memcpy(&vh->csum_offset, b + 8, 2);
}

static int
vid_allowed(const struct vs_port_params *p, uint16_t vid)
{
    return vid >= 1 && vid <= VS_VID_MAX
           && ((p->allowed[vid >> 6] >> (vid & 63)) & 1);
}

/* Checks one frame ('n' bytes, vnet header first) drained from port 'idx';
 * 'exempt_tags': a double-tagged frame went in during this round.  Returns
 * the frame's Ethernet length. */
static uint32_t
check_out_frame(int idx, const uint8_t *b, size_t n, int exempt_tags)
{
    const struct fuzz_port *fp = &ports[idx];
    uint32_t hl = fp->p.vnet_hdr_len;

    CHECK(n >= hl + VS_ETH_HLEN, "port %u: %zu-byte frame out", fp->p.id, n);
    const uint8_t *eth = b + hl;
    uint32_t len = (uint32_t) (n - hl);
    int tagged = vs_get_be16(eth + 12) == VS_ETH_TYPE_VLAN;
    struct vs_vnet_hdr vh = { 0 };

    if (hl) {
        parse_vnet_hdr(b, &vh);
        if (hl == VS_VNET_HDR_MRG_LEN) {
            CHECK(b[10] == 0 && b[11] == 0, "port %u: num_buffers set",
                  fp->p.id);
        }
        int r = vs_vnet_hdr_check(&vh, eth, len);
        CHECK(r == 0 || ignore_vnet, "port %u: switch wrote a vnet header the kernel would "
              "refuse (reason %d): flags %#x gso %#x hdr_len %u gso_size %u "
              "csum_start %u csum_offset %u, frame %u bytes", fp->p.id, r,
              vh.flags, vh.gso_type, vh.hdr_len, vh.gso_size, vh.csum_start,
              vh.csum_offset, len);
        CHECK(fp->p.offload_csum || !(vh.flags & VS_VNET_F_NEEDS_CSUM),
              "port %u: partial checksum to a port without csum offload",
              fp->p.id);
        CHECK(fp->p.offload_tso || !vs_vnet_hdr_is_gso(&vh),
              "port %u: GSO frame to a port without TSO", fp->p.id);
    }
    if (idx == 4 && len >= VS_ETH_HLEN + 24 && vs_get_be16(eth + 12) == VS_ETH_TYPE_IPV4
        && (eth[14] >> 4) == 4 && (eth[14] & 0xf) >= 5 && eth[14 + 9] == 17
        && !(vs_get_be16(eth + 14 + 6) & 0x1fff)) {
        uint32_t l4 = 14 + (uint32_t) (eth[14] & 0xf) * 4;
        CHECK(len < l4 + 4 || vs_get_be16(eth + l4 + 2) != 7,
              "port 1023: UDP to port 7 passed its ACL's deny");
    }

    if (!exempt_tags && !ignore_tags) {
        CHECK(!tagged || len >= VS_ETH_VLAN_HLEN, "port %u: truncated tag",
              fp->p.id);
        uint16_t vid = tagged ? (vs_get_be16(eth + 14) & 0xfff) : 0;

        if (fp->p.mode == VS_MODE_ACCESS) {
            CHECK(!tagged, "access port %u sent a tagged frame (VID %u)",
                  fp->p.id, vid);
        } else if (!fp->p.native_vlan) {
            CHECK(tagged && vid_allowed(&fp->p, vid),
                  "trunk %u without native VLAN sent %s frame (VID %u)",
                  fp->p.id, tagged ? "a tagged" : "an untagged", vid);
        } else if (tagged) {
            CHECK(vid_allowed(&fp->p, vid) && vid != fp->p.native_vlan,
                  "trunk %u sent a frame tagged with VID %u", fp->p.id, vid);
        }
    }
    if (fp->p.mtu && !ignore_mtu) {
        /* L3 bytes: after the Ethernet header and the tag the switch added
         * (a tag of the frame's own, exposed by stripping, counts as L3). */
        uint32_t l2 = VS_ETH_HLEN;
        if (tagged && fp->p.mode == VS_MODE_TRUNK) {
            l2 = VS_ETH_VLAN_HLEN;
        }
        uint32_t l3 = len - l2;
        if (vs_vnet_hdr_is_gso(&vh)) {
            /* What goes on the wire is each segment.  One the segmenter
             * cannot parse passes unchecked, as in the switch: the egress
             * device validates it. */
            uint32_t seg_l3;
            l3 = vs_gso_seg_l3_len(eth, len, &vh, &seg_l3) ? 0 : seg_l3;
        }
        CHECK(l3 <= fp->p.mtu, "port %u (mtu %u) sent %u L3 bytes%s", fp->p.id,
              fp->p.mtu, l3, vs_vnet_hdr_is_gso(&vh) ? " per segment" : "");
    }
    return len;
}

/* Drains every peer socket, checks each frame and the counters. */
static void
drain_and_check(int exempt_tags)
{
    uint64_t now_c[N_PORTS][VS_N_COUNTERS];
    uint64_t got_pkts[N_PORTS] = { 0 }, got_bytes[N_PORTS] = { 0 };
    int receivers = 0, receiver = -1;

    for (int i = 0; i < N_PORTS; i++) {
        for (;;) {
            ssize_t n = recv(ports[i].peer_fd, peer_buf, sizeof peer_buf,
                             MSG_DONTWAIT | MSG_TRUNC);
            if (n < 0) {
                CHECK(errno == EAGAIN || errno == EWOULDBLOCK, "recv: %s",
                      strerror(errno));
                break;
            }
            CHECK((size_t) n <= sizeof peer_buf,
                  "port %u sent a %zd-byte datagram", ports[i].p.id, n);
            got_bytes[i] += i == VX_IDX
                            ? check_vxlan_out(peer_buf, (size_t) n, exempt_tags)
                            : check_out_frame(i, peer_buf, (size_t) n,
                                              exempt_tags);
            got_pkts[i]++;
        }
    }

    for (int i = 0; i < N_PORTS; i++) {
        vs_switch_port_counters(sw, ports[i].p.id, now_c[i]);
        for (int c = 0; c < VS_N_COUNTERS; c++) {
            CHECK(now_c[i][c] >= last[i][c], "port %u: counter %s went "
                  "back from %llu to %llu", ports[i].p.id, vs_counter_name(c),
                  (unsigned long long) last[i][c],
                  (unsigned long long) now_c[i][c]);
        }
        uint64_t tx = now_c[i][VS_C_TX_PACKETS] - last[i][VS_C_TX_PACKETS];
        uint64_t txb = now_c[i][VS_C_TX_BYTES] - last[i][VS_C_TX_BYTES];
        CHECK(tx == got_pkts[i], "port %u: tx_packets +%llu but %llu frames "
              "arrived", ports[i].p.id, (unsigned long long) tx,
              (unsigned long long) got_pkts[i]);
        CHECK(txb == got_bytes[i], "port %u: tx_bytes +%llu but %llu bytes "
              "arrived", ports[i].p.id, (unsigned long long) txb,
              (unsigned long long) got_bytes[i]);
        if (now_c[i][VS_C_RX_PACKETS] != last[i][VS_C_RX_PACKETS]) {
            receivers++;
            receiver = i;
        }
        if (now_c[i][VS_C_QOS_HELD_OUT] != last[i][VS_C_QOS_HELD_OUT]
            || now_c[i][VS_C_QOS_HELD_IN] != last[i][VS_C_QOS_HELD_IN]) {
            frames_held = 1;
        }
    }
    if (receivers == 1 && !frames_held) {
        CHECK(got_pkts[receiver] == 0, "port %u: %llu frames went back out "
              "of the only port that received", ports[receiver].p.id,
              (unsigned long long) got_pkts[receiver]);
    }
    memcpy(last, now_c, sizeof last);
}

/* Polls until every rx queue is empty, checking after each poll. */
static void
poll_all(uint32_t now, int exempt_tags)
{
    int guard = 0;

    while (vs_switch_poll_once(sw, now) > 0) {
        drain_and_check(exempt_tags);
        CHECK(++guard < 100000, "poll never drains");
    }
    drain_and_check(exempt_tags);
}

static int
is_double_tagged(const uint8_t *frame, size_t len)
{
    if (len < VS_ETH_VLAN_HLEN) {
        return 0;
    }
    uint16_t t1 = vs_get_be16(frame + 12);
    uint16_t t2 = vs_get_be16(frame + 16);
    return (t1 == VS_ETH_TYPE_VLAN || t1 == VS_ETH_TYPE_QINQ)
           && (t2 == VS_ETH_TYPE_VLAN || t2 == VS_ETH_TYPE_QINQ);
}

static ssize_t
send_record(const struct fuzz_port *fp, const uint8_t *rec, size_t len)
{
    if (fp == &ports[VX_IDX]) {
        return sendto(fp->peer_fd, rec, len, MSG_DONTWAIT,
                      (const struct sockaddr *) &vx_rx_addr, sizeof vx_rx_addr);
    }
    return send(fp->peer_fd, rec, len, MSG_DONTWAIT);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t advance[4] = { 0, 1, 60, 400 };
    struct vs_mac_table *macs = vs_switch_mac_table(sw);
    uint32_t now = START_S;
    int exempt = 0;
    size_t off = 0;

    vs_mac_flush(macs, -1, -1);
    vs_acl_sessions_flush(vs_switch_acl_sessions(sw), -1, NULL);
    frames_held = 0;
    memset(sw->qos_tat, 0, VS_MAX_PORTS * sizeof *sw->qos_tat);
    while (off + 3 <= size) {
        uint8_t sel = data[off];
        size_t len = vs_get_be16(data + off + 1);
        off += 3;
        if (len == 0xffff || len > size - off) {
            len = size - off;
        }
        const uint8_t *rec = data + off;
        off += len;

        struct fuzz_port *fp = &ports[(sel & 7) % N_PORTS];
        uint32_t hl = fp->p.vnet_hdr_len;
        /* Into the vxlan port: the record is a VXLAN datagram. */
        uint32_t skip = fp == &ports[VX_IDX] ? VS_VXLAN_HLEN : hl;
        if (len >= skip && is_double_tagged(rec + skip, len - skip)) {
            exempt = 1;
        }
        if (send_record(fp, rec, len) < 0) {
            /* Queue full (or too big for the socket): make room, retry. */
            poll_all(now, exempt);
            exempt = 0;
            if (send_record(fp, rec, len) < 0) {
                continue;
            }
        }

        if ((sel & 0x08) || off + 3 > size) {
            now += advance[(sel >> 4) & 3];
            poll_all(now, exempt);
            exempt = 0;
            if (sel & 0x40) {
                vs_mac_age(macs, now, 300);
            }
            if (sel & 0x80) {
                vs_mac_flush(macs, -1, fp->p.id);
            }
        }
    }
    poll_all(now, exempt);
    /* Whatever the bandwidth limits still hold is due within 50 ms: send
     * it now, so the next input starts with nothing held. */
    poll_all(now + 1, exempt);
    CHECK(vs_mac_table_check(macs) == 0, "MAC table invariants");
    return 0;
}

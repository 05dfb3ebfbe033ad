/*
 * vs_acl.h: a port's compiled ACL, Hyper-V style, and the frame keys it
 * classifies.
 *
 * What it is for: "this VM may open TCP connections out, nothing may reach
 * it except SSH from 10.0.0.0/8".  The control plane (vswitchd/policy.py)
 * resolves a port's rule sets into one list of rules and compiles it here
 * into an immutable `struct vs_acl`, named by the port's params in a
 * published config; workers classify frames against it without a lock.
 *
 * Directions are the VM's: VS_ACL_OUT is traffic from the VM (entering the
 * switch through the port), VS_ACL_IN traffic toward it (leaving through
 * the port).  A key is always "local" (the VM's side) and "remote": for an
 * OUT frame local is the source, for an IN frame the destination, so one
 * rule reads the same both ways and a session's two directions share a key.
 *
 * Semantics: entries are evaluated from the highest weight down; the first
 * ALLOW or DENY that matches decides; a METER that matches first is counted
 * and evaluation goes on.  No match: the port's default action.  A field a
 * rule leaves out is masked off and matches anything.
 *
 * Structure (docs/policy.md has the measurements behind it):
 *  - A port range is expanded into the prefixes that cover it (at most 30
 *    per field), so every entry is a (value, mask) pair over the 56-byte key
 *    and a match is `(key & mask) == value`, seven 64-bit words.
 *  - Up to VS_ACL_LINEAR_MIN decisive entries per direction are scanned in
 *    weight order: for a handful of rules nothing beats a short loop; up
 *    to VS_ACL_LINEAR_MAX, too, when they use so many masks that a tuple
 *    space search would probe at least half as many tables.
 *  - Beyond that, tuple space search (Srinivasan et al., as Open vSwitch's
 *    classifier): entries with the same mask share a hash table keyed by
 *    the masked key, holding the best entry per key; tables are visited in
 *    order of their best weight and the search stops at the first table
 *    whose best weight cannot beat the match already found.  Real policies
 *    use few distinct masks (a /32 or /24, a port or none), so 1,000 rules
 *    cost a few hash probes.
 *  - Meters never decide, so they sit apart in a linear list and are
 *    counted when they outweigh the decision; policies have few of them.
 *  - In front of both, a small decision cache per context (key -> what it
 *    decided, which meters it hit), so the frames of a flow after its first
 *    cost one hash and one compare whatever the policy's size.
 *
 * Counters: per rule and per (direction, default action), packets and
 * bytes, one row per switch context; each context is the only writer of its
 * row (relaxed stores), readers sum rows with relaxed loads, as
 * vs_counters.h does for ports.  The counters belong to the compiled ACL:
 * the control plane carries them over when it compiles a replacement.
 *
 * Lifetime: vs_acl_new() in the control thread; published through
 * vs_port_params.acl; freed with vs_acl_free() only after a config that no
 * longer names it has been published (vs_switch.h), like a port's fds.
 */
#ifndef VS_ACL_H
#define VS_ACL_H 1

#include <stdint.h>

#define VS_ACL_IN 1
#define VS_ACL_OUT 2

#define VS_ACL_ALLOW 0
#define VS_ACL_DENY 1
#define VS_ACL_METER 2

/* Key flags: what the frame carries.  A rule that needs an IP header (an
 * address, a protocol) masks in VS_ACL_F_IP (and VS_ACL_F_IP6 to pick the
 * family); one that needs ports or an ICMP type masks in VS_ACL_F_L4, which
 * non-first fragments never have, so they match on L3 fields only. */
#define VS_ACL_F_IP 1
#define VS_ACL_F_IP6 2
#define VS_ACL_F_L4 4
/* Not for rules (always masked off): an IP first fragment or unfragmented
 * packet whose L4 header is cut short, and a non-first fragment. */
#define VS_ACL_F_L4_MISSING 0x40
#define VS_ACL_F_FRAG 0x80

/* Per-context decision cache: slots, and meters an entry remembers. */
#define VS_ACL_CACHE_SIZE 512
#define VS_ACL_CACHE_METERS 4

#define VS_ACL_LINEAR_MIN 4
#define VS_ACL_LINEAR_MAX 16
#define VS_ACL_MAX_RULES 65536

/* A frame's classification key, local/remote as above.  IPv4 addresses
 * sit in the first 4 bytes of their 16.  Ports are host order; for ICMP
 * and ICMPv6 'icmp_type' is set instead.  Exactly 56 bytes: 7 words. */
struct vs_acl_key {
    uint8_t local_ip[16];
    uint8_t remote_ip[16];
    uint8_t local_mac[6];
    uint8_t remote_mac[6];
    uint16_t ethertype;
    uint16_t vlan;
    uint16_t local_port;
    uint16_t remote_port;
    uint8_t proto;
    uint8_t icmp_type;
    uint8_t flags;
    uint8_t tcp_flags;          /* never matched: for session tracking */
};

/* One rule as the control plane gives it.  'key' holds the values and
 * 'mask' the bits that matter, except for ports, given as inclusive ranges
 * (0-65535 = any; a range implies VS_ACL_F_L4, which the caller sets). */
struct vs_acl_rule {
    uint64_t id;                /* stable across reloads: sessions follow it */
    uint32_t weight;
    uint8_t dirs;               /* VS_ACL_IN | VS_ACL_OUT */
    uint8_t action;             /* VS_ACL_ALLOW, _DENY, _METER */
    uint8_t stateful;           /* ALLOW only: create a session */
    uint32_t idle_timeout_s;    /* stateful: idle sessions expire after this */
    struct vs_acl_key key;
    struct vs_acl_key mask;
    uint16_t local_port_lo, local_port_hi;
    uint16_t remote_port_lo, remote_port_hi;
};

/* What classification decided, for one frame in one direction. */
struct vs_acl_verdict {
    int action;                 /* VS_ACL_ALLOW or VS_ACL_DENY */
    int32_t rule;               /* index of the deciding rule; -1 = default */
};

struct vs_acl;

/* Basics. */
int vs_acl_new(const struct vs_acl_rule *rules, uint32_t n_rules,
               int default_action, uint32_t n_ctx, struct vs_acl **out);
void vs_acl_free(struct vs_acl *);
uint32_t vs_acl_n_rules(const struct vs_acl *);
uint32_t vs_acl_n_tables(const struct vs_acl *, int dir);
int vs_acl_default_action(const struct vs_acl *);
int vs_acl_has_dir(const struct vs_acl *, int dir);
int vs_acl_has_stateful(const struct vs_acl *);
const struct vs_acl_rule *vs_acl_rule(const struct vs_acl *, uint32_t index);

/* Keys. */
void vs_acl_parse(const uint8_t *frame, uint32_t len, uint32_t type_off,
                  uint16_t vlan, int dir, struct vs_acl_key *out);
void vs_acl_key_flip(const struct vs_acl_key *in, struct vs_acl_key *out);

/* Classification.  'ctx' (< n_ctx) picks the counter row; 'bytes' is what
 * the frame counts for.  With 'count' zero nothing is counted (trace). */
void vs_acl_classify(const struct vs_acl *, int dir,
                     const struct vs_acl_key *key, uint32_t ctx,
                     uint64_t bytes, int count, struct vs_acl_verdict *out);
int vs_acl_l4_deny_possible(const struct vs_acl *, int dir,
                            const struct vs_acl_key *key);
void vs_acl_count(const struct vs_acl *, int dir, int32_t rule, uint32_t ctx,
                  uint64_t bytes);

/* Counters: 'out' gets packets and bytes per rule (2 * n_rules values),
 * then packets and bytes of the default action IN, then OUT (4 more). */
void vs_acl_counters(const struct vs_acl *, uint64_t *out);

#endif /* vs_acl.h */

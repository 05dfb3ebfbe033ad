/*
 * vs_guard.c: per-port security guards (the design is in vs_guard.h).
 *
 * Everything here runs in the thread of the context it is given, on that
 * context's own state; the only shared reads are other contexts' admitted
 * MAC sets and their sizes (relaxed atomic loads) and the MAC table.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "vs_hash.h"
#include "vs_guard.h"

#define NS_PER_S 1000000000ull

#define IP_PROTO_ICMP 1
#define IP_PROTO_UDP 17
#define IP_PROTO_ICMPV6 58

enum storm_class {
    STORM_BROADCAST,
    STORM_MULTICAST,
    STORM_UNKNOWN_UNICAST,
    N_STORM_CLASSES
};

/* A token bucket of one (context, port, class), in fixed point: it gains
 * 'rate_pps' units a nanosecond and holds one second of them (rate_pps *
 * 10^9 units), and a frame costs 10^9 units per worker sharing the port, so
 * each of k workers passes rate/k frames a second (vs_guard.h).  At most
 * 10^7 pps * 10^9: fits 64 bits. */
struct bucket {
    uint64_t units;
    uint64_t last_ns;
    uint32_t rate_pps;          /* rate 'units' was filled at; 0 = not started */
};

/* A context's set of (VLAN, MAC) keys admitted on one port: open
 * addressing, linear probing, load at most 1/2, no deletion except by a
 * rebuild.  Other contexts read 'keys' with relaxed atomic loads. */
struct macset {
    struct macset *retired;     /* the smaller set this one replaced */
    uint32_t mask;              /* slots - 1 */
    uint64_t *scratch;          /* (mask + 1) / 2 keys, for rebuilds */
    uint64_t keys[];            /* 0 = empty slot */
};

struct guard_port {
    uint64_t generation;        /* config generation + 1 'share' and 'macs'
                                 * follow; 0 = never seen */
    uint32_t share;             /* workers polling the port's queues */
    uint32_t reclaim_s;         /* time of the last reclaim */
    int reclaimed;              /* 'reclaim_s' is meaningful */
    struct bucket storm[N_STORM_CLASSES];
    struct macset *macs;        /* atomic: read by other contexts */
    uint32_t n_macs;            /* atomic: keys in 'macs' */
};

struct vs_guard {
    uint64_t seed;              /* hash key for this context's sets */
    struct guard_port ports[VS_MAX_PORTS];
};

/* Allocates a context's guard state, all guards idle.  NULL on ENOMEM. */
struct vs_guard *
vs_guard_new(void)
{
    struct vs_guard *g = calloc(1, sizeof *g);
    if (!g) {
        return NULL;
    }
    if (getrandom(&g->seed, sizeof g->seed, GRND_NONBLOCK) != sizeof g->seed) {
        g->seed = (uintptr_t) g ^ UINT64_C(0x9e3779b97f4a7c15);
    }
    return g;
}

/* Frees 'g' and every set it ever had.  No other context may be running. */
void
vs_guard_free(struct vs_guard *g)
{
    if (!g) {
        return;
    }
    for (uint32_t i = 0; i < VS_MAX_PORTS; i++) {
        struct macset *s = g->ports[i].macs;
        while (s) {
            struct macset *older = s->retired;
            free(s);
            s = older;
        }
    }
    free(g);
}

/* --- Frame inspection ------------------------------------------------------ */

enum l4_kind {
    L4_OTHER,
    L4_DHCP_SERVER,     /* UDP 67 -> 68, or 547 -> 546 */
    L4_ROUTER,          /* ICMPv6 RA or redirect, ICMP redirect */
    L4_OPAQUE,          /* an IPv6 first fragment whose header chain does not
                         * reach an upper-layer header within the frame */
};

static int
is_ipv6_ext_header(uint8_t nh)
{
    return nh == 0 || nh == 43 || nh == 44 || nh == 51 || nh == 60;
}

/* Classifies the IPv6 packet at 'f' + 'off' ('len' bytes of frame). */
static enum l4_kind
inspect_ipv6(const uint8_t *f, uint32_t len, uint32_t off)
{
    if (len < off + 40 || (f[off] >> 4) != 6) {
        return L4_OTHER;
    }
    uint8_t nh = f[off + 6];
    uint32_t l4 = off + 40;

    /* RFC 7112: the first fragment carries the whole header chain, so a
     * chain that runs off the frame (or is absurdly long) is an evasion
     * attempt (RFC 7113), not a packet to let through unchecked. */
    for (int i = 0; is_ipv6_ext_header(nh); i++) {
        if (i == 8 || len < l4 + 8) {
            return L4_OPAQUE;
        }
        uint8_t next = f[l4];
        if (nh == 44) {                         /* fragment */
            if (vs_get_be16(f + l4 + 2) & 0xfff8) {
                return L4_OTHER;                /* not the first fragment */
            }
            l4 += 8;
        } else if (nh == 51) {                  /* AH: length in 4-byte units */
            l4 += ((uint32_t) f[l4 + 1] + 2) * 4;
        } else {
            l4 += ((uint32_t) f[l4 + 1] + 1) * 8;
        }
        nh = next;
    }
    if (nh == IP_PROTO_UDP) {
        if (len < l4 + 4) {
            return L4_OPAQUE;
        }
        return vs_get_be16(f + l4) == 547 && vs_get_be16(f + l4 + 2) == 546
               ? L4_DHCP_SERVER : L4_OTHER;
    }
    if (nh == IP_PROTO_ICMPV6) {
        if (len < l4 + 1) {
            return L4_OPAQUE;
        }
        return f[l4] == 134 || f[l4] == 137 ? L4_ROUTER : L4_OTHER;
    }
    return L4_OTHER;
}

/* Classifies the IPv4 packet at 'f' + 'off' ('len' bytes of frame). */
static enum l4_kind
inspect_ipv4(const uint8_t *f, uint32_t len, uint32_t off)
{
    if (len < off + 20 || (f[off] >> 4) != 4) {
        return L4_OTHER;
    }
    uint32_t ihl = (uint32_t) (f[off] & 0xf) * 4;
    if (ihl < 20 || vs_get_be16(f + off + 6) & 0x1fff) {
        return L4_OTHER;        /* bad header, or no L4 header in this fragment */
    }
    uint32_t l4 = off + ihl;
    uint8_t proto = f[off + 9];
    if (proto == IP_PROTO_UDP && len >= l4 + 4) {
        return vs_get_be16(f + l4) == 67 && vs_get_be16(f + l4 + 2) == 68
               ? L4_DHCP_SERVER : L4_OTHER;
    }
    if (proto == IP_PROTO_ICMP && len >= l4 + 1) {
        return f[l4] == 5 ? L4_ROUTER : L4_OTHER;
    }
    return L4_OTHER;
}

/* Classifies frame 'f' ('len' bytes) whose EtherType is at 'type_off'.  A
 * further 802.1Q or 802.1ad tag (a double-tagged frame on a trunk) is
 * looked through. */
static enum l4_kind
inspect(const uint8_t *f, uint32_t len, uint32_t type_off)
{
    uint16_t type = vs_get_be16(f + type_off);
    uint32_t off = type_off + 2;

    if (type == VS_ETH_TYPE_VLAN || type == VS_ETH_TYPE_QINQ) {
        if (len < off + 4) {
            return L4_OTHER;
        }
        type = vs_get_be16(f + off + 2);
        off += 4;
    }
    if (type == VS_ETH_TYPE_IPV4) {
        return inspect_ipv4(f, len, off);
    }
    if (type == VS_ETH_TYPE_IPV6) {
        return inspect_ipv6(f, len, off);
    }
    return L4_OTHER;
}

static int
mac_allowed(const struct vs_port_params *p, const uint8_t *mac)
{
    uint32_t n = p->n_allowed_macs;
    if (n > VS_GUARD_MAX_ALLOWED_MACS) {
        n = VS_GUARD_MAX_ALLOWED_MACS;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!memcmp(p->allowed_macs[i], mac, VS_ETH_ALEN)) {
            return 1;
        }
    }
    return 0;
}

static int
mac_is_broadcast(const uint8_t *mac)
{
    return (mac[0] & mac[1] & mac[2] & mac[3] & mac[4] & mac[5]) == 0xff;
}

/* --- Storm control -------------------------------------------------------- */

/* Takes one frame's worth from bucket 'b' of a port limited to 'rate_pps'
 * whose queues 'share' workers poll, at time 'now_ns'.  Returns 1 if the
 * frame may pass, 0 if it is over the rate. */
static int
bucket_take(struct bucket *b, uint32_t rate_pps, uint32_t share, uint64_t now_ns)
{
    uint64_t cost = (uint64_t) share * NS_PER_S;
    uint64_t depth = (uint64_t) (rate_pps > share ? rate_pps : share) * NS_PER_S;

    if (b->rate_pps != rate_pps) {
        b->rate_pps = rate_pps;         /* new or changed limit: start full */
        b->units = depth;
        b->last_ns = now_ns;
    } else if (now_ns > b->last_ns) {
        uint64_t dt = now_ns - b->last_ns;
        if (dt > NS_PER_S) {
            dt = NS_PER_S;              /* a second refills any bucket */
        }
        b->units += dt * rate_pps;
        if (b->units > depth) {
            b->units = depth;
        }
        b->last_ns = now_ns;
    }
    if (b->units < cost) {
        return 0;
    }
    b->units -= cost;
    return 1;
}

/* --- max_macs --------------------------------------------------------------- */

static uint64_t
pack_key(uint16_t vlan, const uint8_t *mac)
{
    uint64_t k = UINT64_C(1) << 63 | (uint64_t) (vlan & 0xfff) << 48;
    for (int i = 0; i < VS_ETH_ALEN; i++) {
        k |= (uint64_t) mac[i] << (40 - 8 * i);
    }
    return k;
}

static void
unpack_key(uint64_t k, uint16_t *vlan, uint8_t *mac)
{
    *vlan = (uint16_t) ((k >> 48) & 0xfff);
    for (int i = 0; i < VS_ETH_ALEN; i++) {
        mac[i] = (uint8_t) (k >> (40 - 8 * i));
    }
}


static uint64_t
slot_load(const struct macset *s, uint32_t i)
{
    return __atomic_load_n(&s->keys[i], __ATOMIC_RELAXED);
}

/* Returns the slot of 'key' in 's', or of the empty slot where it would go;
 * '*found' says which. */
static uint32_t
set_find(const struct macset *s, uint64_t seed, uint64_t key, int *found)
{
    uint32_t i = (uint32_t) vs_hash64(key, seed) & s->mask;
    for (;;) {
        uint64_t k = slot_load(s, i);
        if (k == key || !k) {
            *found = k == key;
            return i;
        }
        i = (i + 1) & s->mask;
    }
}

/* Puts 'key' into empty slot 'i' of port state 'st''s set. */
static void
set_put(struct guard_port *st, uint32_t i, uint64_t key)
{
    __atomic_store_n(&st->macs->keys[i], key, __ATOMIC_RELAXED);
    __atomic_store_n(&st->n_macs, st->n_macs + 1, __ATOMIC_RELAXED);
}

static void
set_add(struct guard_port *st, uint64_t seed, uint64_t key)
{
    int found;
    uint32_t i = set_find(st->macs, seed, key, &found);
    if (!found) {
        set_put(st, i, key);
    }
}

/* Slots for a limit of 'max_macs': load stays at most 1/2. */
static uint32_t
set_slots(uint32_t max_macs)
{
    uint32_t n = 16;
    while (n < 2 * (max_macs + 1)) {
        n <<= 1;
    }
    return n;
}

/* Makes 'st''s set big enough for a limit of 'max_macs', keeping its keys.
 * The old set stays allocated (another context may be reading it).
 * Returns 0 or ENOMEM. */
static int
set_reserve(struct guard_port *st, uint64_t seed, uint32_t max_macs)
{
    uint32_t slots = set_slots(max_macs);
    struct macset *old = st->macs;
    if (old && old->mask + 1 >= slots) {
        return 0;
    }
    struct macset *s = calloc(1, sizeof *s + (size_t) slots * 3 / 2 * sizeof(uint64_t));
    if (!s) {
        return ENOMEM;
    }
    s->mask = slots - 1;
    s->scratch = s->keys + slots;
    s->retired = old;
    __atomic_store_n(&st->n_macs, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&st->macs, s, __ATOMIC_RELEASE);
    if (old) {
        for (uint32_t i = 0; i <= old->mask; i++) {
            if (old->keys[i]) {
                set_add(st, seed, old->keys[i]);
            }
        }
    }
    return 0;
}

static void
set_clear(struct guard_port *st)
{
    for (uint32_t i = 0; st->macs && i <= st->macs->mask; i++) {
        __atomic_store_n(&st->macs->keys[i], 0, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&st->n_macs, 0, __ATOMIC_RELAXED);
}

/* Sum of every context's admitted-key count for port 'id': never less
 * than the port's entries in the MAC table (but for the races vs_guard.h
 * bounds). */
static uint64_t
count_recorded(const struct vs_ctx *ctx, uint32_t id)
{
    const struct vs_switch *sw = ctx->sw;
    uint64_t n = 0;
    for (uint32_t v = 0; v <= sw->n_workers; v++) {
        n += __atomic_load_n(&sw->ctxs[v].guard->ports[id].n_macs, __ATOMIC_RELAXED);
    }
    return n;
}

static int
on_port(const struct vs_mac_table *t, uint64_t key, uint32_t id)
{
    uint16_t vlan;
    uint8_t mac[VS_ETH_ALEN];
    unpack_key(key, &vlan, mac);
    return vs_mac_lookup(t, vlan, mac) == id;
}

/* Forgets the keys of 'ctx''s set for port 'id' that the MAC table no
 * longer has on the port, then counts the port's live recorded keys over
 * every context.  Returns that count. */
static uint64_t
reclaim(struct vs_ctx *ctx, struct guard_port *st, uint32_t id)
{
    const struct vs_mac_table *t = ctx->sw->macs;
    struct macset *s = st->macs;
    uint64_t seed = ctx->guard->seed;
    uint32_t n = 0;

    for (uint32_t i = 0; i <= s->mask; i++) {
        uint64_t k = s->keys[i];
        if (k && on_port(t, k, id)) {
            s->scratch[n++] = k;
        }
    }
    set_clear(st);
    for (uint32_t i = 0; i < n; i++) {
        set_add(st, seed, s->scratch[i]);
    }

    uint64_t live = n;
    const struct vs_switch *sw = ctx->sw;
    for (uint32_t v = 0; v <= sw->n_workers; v++) {
        if (&sw->ctxs[v] == ctx) {
            continue;
        }
        const struct macset *o = __atomic_load_n(&sw->ctxs[v].guard->ports[id].macs,
                                                 __ATOMIC_ACQUIRE);
        for (uint32_t i = 0; o && i <= o->mask; i++) {
            uint64_t k = slot_load(o, i);
            int mine;
            if (k && (set_find(s, seed, k, &mine), !mine) && on_port(t, k, id)) {
                live++;
            }
        }
    }
    return live;
}

/* Decides whether source 'mac' in 'vlan' may be learned on port 'in',
 * limited to in->p.max_macs entries, at time 'now_s'.  Returns 0 or
 * VS_C_DROP_MAX_MACS. */
static int
admit(struct vs_ctx *ctx, const struct vs_port *in, struct guard_port *st,
      uint16_t vlan, const uint8_t *mac, uint32_t now_s)
{
    uint32_t id = in->p.id;
    uint64_t limit = in->p.max_macs;
    uint64_t seed = ctx->guard->seed;

    if (vs_mac_lookup(ctx->sw->macs, vlan, mac) == id) {
        return 0;
    }
    if (!st->macs) {
        return VS_C_DROP_MAX_MACS;      /* no memory to count in: fail closed */
    }

    uint64_t key = pack_key(vlan, mac);
    int known;
    uint32_t slot = set_find(st->macs, seed, key, &known);
    if (count_recorded(ctx, id) + !known <= limit) {
        if (!known) {
            set_put(st, slot, key);
        }
        return 0;
    }

    /* At the limit by the records: see whether some recorded addresses
     * have left the port, but at most once a second, so that a VM cycling
     * through addresses costs one scan a second, not one a frame. */
    if (st->reclaimed && st->reclaim_s == now_s) {
        return VS_C_DROP_MAX_MACS;
    }
    st->reclaimed = 1;
    st->reclaim_s = now_s;
    if (reclaim(ctx, st, id) + 1 > limit) {
        return VS_C_DROP_MAX_MACS;
    }
    set_add(st, seed, key);
    return 0;
}

/* --- Checking --------------------------------------------------------------- */

/* Number of workers that 'cfg' has polling queues of port 'id', as seen
 * from 'ctx' (the control thread's context polls every queue alone). */
static uint32_t
pollers(const struct vs_ctx *ctx, const struct vs_config *cfg, uint32_t id)
{
    uint32_t n_workers = ctx->sw->n_workers;
    uint32_t k = 0;

    if (ctx->index >= n_workers) {
        return 1;
    }
    for (uint32_t w = 0; w < n_workers && w < VS_MAX_WORKERS; w++) {
        for (uint32_t i = 0; i < cfg->n_rxqs[w]; i++) {
            if (cfg->rxqs[w][i].port->p.id == id) {
                k++;
                break;
            }
        }
    }
    return k ? k : 1;
}

/* Brings 'ctx''s state for port 'in' up to date with config 'cfg' (only
 * does work on the first frame under a new config), and returns it. */
static struct guard_port *
port_state(struct vs_ctx *ctx, const struct vs_config *cfg,
           const struct vs_port *in)
{
    struct guard_port *st = &ctx->guard->ports[in->p.id];

    if (st->generation == cfg->generation + 1) {
        return st;
    }
    st->share = pollers(ctx, cfg, in->p.id);
    if (in->p.max_macs) {
        if (set_reserve(st, ctx->guard->seed, in->p.max_macs)) {
            return st;  /* out of memory: try again on the next frame */
        }
    } else {
        set_clear(st);  /* not counting now: the records would go stale */
    }
    st->generation = cfg->generation + 1;
    return st;
}

/* Applies port 'in''s ingress guards to 'pkt' (classified into its VLAN,
 * source already checked to be a unicast address), in context 'ctx' under
 * config 'cfg', at time 'now_s' (seconds) and ctx->now_ns.  Returns 0 to
 * go on (learn and forward) or the drop reason. */
int
vs_guard_ingress(struct vs_ctx *ctx, const struct vs_config *cfg,
                 const struct vs_port *in, const struct vs_pkt *pkt,
                 uint32_t now_s)
{
    const struct vs_port_params *p = &in->p;
    const uint8_t *src = pkt->data + VS_ETH_ALEN;

    if (p->n_allowed_macs && !mac_allowed(p, src)) {
        return VS_C_DROP_MAC_SPOOF;
    }
    if (p->dhcp_guard || p->router_guard) {
        enum l4_kind kind = inspect(pkt->data, pkt->len, pkt->inner_off);
        if (kind == L4_DHCP_SERVER && p->dhcp_guard) {
            return VS_C_DROP_DHCP_GUARD;
        }
        if (kind == L4_ROUTER && p->router_guard) {
            return VS_C_DROP_ROUTER_GUARD;
        }
        if (kind == L4_OPAQUE) {
            return p->router_guard ? VS_C_DROP_ROUTER_GUARD : VS_C_DROP_DHCP_GUARD;
        }
    }

    struct guard_port *st = port_state(ctx, cfg, in);
    if (vs_mac_is_multicast(pkt->data)) {
        int bcast = mac_is_broadcast(pkt->data);
        uint32_t rate = bcast ? p->broadcast_pps : p->multicast_pps;
        if (rate && !bucket_take(&st->storm[bcast ? STORM_BROADCAST : STORM_MULTICAST],
                                 rate, st->share, ctx->now_ns)) {
            return bcast ? VS_C_DROP_STORM_BROADCAST : VS_C_DROP_STORM_MULTICAST;
        }
    }
    if (p->max_macs) {
        return admit(ctx, in, st, pkt->vlan, src, now_s);
    }
    return 0;
}

/* The out-of-line half of vs_guard_flood(): takes a token from port 'in''s
 * unknown-unicast bucket in 'ctx' under 'cfg' at ctx->now_ns.  Returns 0 or
 * VS_C_DROP_STORM_UNKNOWN_UNICAST. */
int
vs_guard_flood_slow(struct vs_ctx *ctx, const struct vs_config *cfg,
                    const struct vs_port *in)
{
    struct guard_port *st = port_state(ctx, cfg, in);
    return bucket_take(&st->storm[STORM_UNKNOWN_UNICAST], in->p.unknown_unicast_pps,
                       st->share, ctx->now_ns)
           ? 0 : VS_C_DROP_STORM_UNKNOWN_UNICAST;
}

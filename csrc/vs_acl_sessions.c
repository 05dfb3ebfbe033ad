/*
 * vs_acl_sessions.c: the stateful ACL session table (design in
 * vs_acl_sessions.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "vs_acl_sessions.h"
#include "vs_hash.h"
#include "vs_switch.h"

#define NS_PER_S 1000000000ull
/* A live session's last-seen time is rewritten at most this often: the
 * word is shared by the workers serving its two directions. */
#define TOUCH_NS 1000000ull

#define KEY_WORDS 5

enum slot_state { EMPTY = 0, BUSY = 1, LIVE = 2, DEAD = 3 };

struct slot {
    _Atomic uint64_t state;     /* version << 2 | enum slot_state */
    uint64_t key[KEY_WORDS];
    uint64_t rule_id;
    uint64_t created_ns;
    _Atomic uint64_t last_ns;
    _Atomic uint32_t tcp;
    uint32_t idle_s;
    uint8_t dir;
};

struct vs_acl_sessions {
    uint32_t capacity;
    uint32_t mask;              /* slots - 1 */
    uint64_t seed;
    _Atomic uint32_t live;
    /* Live sessions per port: counted as they open and go, so reading
     * them costs no scan (expired ones count until the expiry pass). */
    _Atomic uint32_t per_port_live[VS_MAX_PORTS];
    struct slot *slots;
};

/* Packs the session key of 'k' on 'port'. */
static void
pack_key(uint32_t port, const struct vs_acl_key *k, uint64_t *w)
{
    w[0] = (uint64_t) port | (uint64_t) k->proto << 16
           | (uint64_t) !!(k->flags & VS_ACL_F_IP6) << 24
           | (uint64_t) k->local_port << 32 | (uint64_t) k->remote_port << 48;
    memcpy(&w[1], k->local_ip, 16);
    memcpy(&w[3], k->remote_ip, 16);
}

static uint64_t
hash_key(const uint64_t *w, uint64_t seed)
{
    uint64_t h = seed;
    for (int i = 0; i < KEY_WORDS; i++) {
        h = vs_hash64(h ^ w[i], seed + (uint64_t) i);
    }
    return h;
}

static uint32_t
slot_port(const struct slot *s)
{
    return (uint32_t) (__atomic_load_n(&s->key[0], __ATOMIC_RELAXED) & 0xffff);
}

/* The timeout that applies to 's' now, in seconds. */
static uint32_t
timeout_s(const struct slot *s, uint32_t tcp)
{
    if ((s->key[0] >> 16 & 0xff) != 6) {
        return s->idle_s;
    }
    if ((tcp & VS_ACL_TCP_RST)
        || ((tcp & VS_ACL_TCP_FIN_OUT) && (tcp & VS_ACL_TCP_FIN_IN))) {
        return VS_ACL_TCP_CLOSING_S < s->idle_s ? VS_ACL_TCP_CLOSING_S : s->idle_s;
    }
    uint32_t syns = tcp & (VS_ACL_TCP_SYN_OUT | VS_ACL_TCP_SYN_IN);
    if (syns == VS_ACL_TCP_SYN_OUT || syns == VS_ACL_TCP_SYN_IN) {
        return VS_ACL_TCP_OPENING_S < s->idle_s ? VS_ACL_TCP_OPENING_S : s->idle_s;
    }
    return s->idle_s;
}

static int
expired(const struct slot *s, uint64_t now_ns)
{
    uint64_t last = atomic_load_explicit(&s->last_ns, memory_order_relaxed);
    uint32_t tcp = atomic_load_explicit(&s->tcp, memory_order_relaxed);
    return now_ns > last && now_ns - last > (uint64_t) timeout_s(s, tcp) * NS_PER_S;
}

/* TCP flag bits of a frame with 'tcp_flags' travelling in 'dir'. */
static uint32_t
tcp_bits(uint8_t tcp_flags, int dir)
{
    int out = dir == VS_ACL_OUT;
    uint32_t bits = 0;
    if (tcp_flags & 0x02) {
        bits |= out ? VS_ACL_TCP_SYN_OUT : VS_ACL_TCP_SYN_IN;
    }
    if (tcp_flags & 0x01) {
        bits |= out ? VS_ACL_TCP_FIN_OUT : VS_ACL_TCP_FIN_IN;
    }
    if (tcp_flags & 0x04) {
        bits |= VS_ACL_TCP_RST;
    }
    return bits;
}

/* Creates a table for 'capacity' sessions.  Returns 0, EINVAL or ENOMEM. */
int
vs_acl_sessions_new(uint32_t capacity, struct vs_acl_sessions **out)
{
    *out = NULL;
    if (capacity < 1 || capacity > VS_ACL_SESSIONS_MAX) {
        return EINVAL;
    }
    struct vs_acl_sessions *t = calloc(1, sizeof *t);
    if (!t) {
        return ENOMEM;
    }
    uint32_t slots = 64;
    while (slots < capacity * 2) {
        slots *= 2;
    }
    t->capacity = capacity;
    t->mask = slots - 1;
    /* calloc: untouched pages of a large, mostly empty table cost nothing. */
    t->slots = calloc(slots, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return ENOMEM;
    }
    if (getrandom(&t->seed, sizeof t->seed, GRND_NONBLOCK) != sizeof t->seed) {
        t->seed = (uintptr_t) t ^ UINT64_C(0x9e3779b97f4a7c15);
    }
    *out = t;
    return 0;
}

void
vs_acl_sessions_free(struct vs_acl_sessions *t)
{
    if (t) {
        free(t->slots);
        free(t);
    }
}

uint32_t
vs_acl_sessions_capacity(const struct vs_acl_sessions *t)
{
    return t->capacity;
}

uint32_t
vs_acl_sessions_live(const struct vs_acl_sessions *t)
{
    return atomic_load_explicit(&t->live, memory_order_relaxed);
}

/* Whether slot 's', seen in state 'st', holds key 'w': the key is read
 * between two loads of the state, so a slot rewritten meanwhile is not a
 * match. */
static int
slot_holds(struct slot *s, uint64_t st, const uint64_t *w)
{
    uint64_t diff = 0;
    for (int i = 0; i < KEY_WORDS; i++) {
        diff |= __atomic_load_n(&s->key[i], __ATOMIC_RELAXED) ^ w[i];
    }
    atomic_thread_fence(memory_order_acquire);
    return !diff && atomic_load_explicit(&s->state, memory_order_relaxed) == st;
}

/* Whether a live session of port 'port' matches 'k' (a frame travelling in
 * 'dir') at 'now_ns'.  With 'update' it is refreshed and its TCP state
 * follows the frame's flags; without (trace), nothing is written. */
int
vs_acl_session_match(struct vs_acl_sessions *t, uint32_t port,
                     const struct vs_acl_key *k, int dir, uint64_t now_ns,
                     int update)
{
    uint64_t w[KEY_WORDS];
    pack_key(port, k, w);
    uint32_t i = (uint32_t) hash_key(w, t->seed) & t->mask;

    for (uint32_t n = 0; n < VS_ACL_SESSION_PROBE; n++, i = (i + 1) & t->mask) {
        struct slot *s = &t->slots[i];
        uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if ((st & 3) == EMPTY) {
            return 0;
        }
        if ((st & 3) != LIVE || !slot_holds(s, st, w) || expired(s, now_ns)) {
            continue;
        }
        if (update) {
            uint32_t bits = (k->proto == 6) ? tcp_bits(k->tcp_flags, dir) : 0;
            if (bits && (atomic_load_explicit(&s->tcp, memory_order_relaxed) & bits) != bits) {
                atomic_fetch_or_explicit(&s->tcp, bits, memory_order_relaxed);
            }
            if (now_ns > atomic_load_explicit(&s->last_ns, memory_order_relaxed) + TOUCH_NS) {
                atomic_store_explicit(&s->last_ns, now_ns, memory_order_relaxed);
            }
        }
        return 1;
    }
    return 0;
}

/* Opens a session for 'k' on 'port', for the frame travelling in 'dir'
 * that rule 'rule_id' (idle timeout 'idle_timeout_s') allowed.  Returns 0
 * or ENOSPC when the table is full. */
int
vs_acl_session_open(struct vs_acl_sessions *t, uint32_t port,
                    const struct vs_acl_key *k, int dir, uint64_t rule_id,
                    uint32_t idle_timeout_s, uint64_t now_ns)
{
    uint64_t w[KEY_WORDS];
    pack_key(port, k, w);

    if (atomic_fetch_add_explicit(&t->live, 1, memory_order_relaxed) >= t->capacity) {
        atomic_fetch_sub_explicit(&t->live, 1, memory_order_relaxed);
        return ENOSPC;
    }
    uint32_t i = (uint32_t) hash_key(w, t->seed) & t->mask;
    for (uint32_t n = 0; n < VS_ACL_SESSION_PROBE; n++, i = (i + 1) & t->mask) {
        struct slot *s = &t->slots[i];
        uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
        if ((st & 3) != EMPTY && (st & 3) != DEAD) {
            continue;
        }
        uint64_t busy = ((st >> 2) + 1) << 2 | BUSY;
        if (!atomic_compare_exchange_strong(&s->state, &st, busy)) {
            continue;
        }
        for (int j = 0; j < KEY_WORDS; j++) {
            __atomic_store_n(&s->key[j], w[j], __ATOMIC_RELAXED);
        }
        s->rule_id = rule_id;
        s->created_ns = now_ns;
        s->idle_s = idle_timeout_s;
        s->dir = (uint8_t) dir;
        atomic_store_explicit(&s->last_ns, now_ns, memory_order_relaxed);
        atomic_store_explicit(&s->tcp, k->proto == 6 ? tcp_bits(k->tcp_flags, dir) : 0,
                              memory_order_relaxed);
        atomic_store_explicit(&s->state, (busy & ~3ull) | LIVE, memory_order_release);
        if (port < VS_MAX_PORTS) {
            atomic_fetch_add_explicit(&t->per_port_live[port], 1, memory_order_relaxed);
        }
        return 0;
    }
    atomic_fetch_sub_explicit(&t->live, 1, memory_order_relaxed);
    return ENOSPC;      /* the key's probe window is full */
}

/* Removes live slot 'i' (seen in state 'st') if nobody changed it since. */
static int
kill(struct vs_acl_sessions *t, struct slot *s, uint64_t st, uint32_t *per_port)
{
    uint32_t port = slot_port(s);
    uint64_t dead = ((st >> 2) + 1) << 2 | DEAD;
    if (!atomic_compare_exchange_strong(&s->state, &st, dead)) {
        return 0;
    }
    atomic_fetch_sub_explicit(&t->live, 1, memory_order_relaxed);
    if (port < VS_MAX_PORTS) {
        atomic_fetch_sub_explicit(&t->per_port_live[port], 1, memory_order_relaxed);
        if (per_port) {
            per_port[port]++;
        }
    }
    return 1;
}

typedef int (*slot_pred)(const struct slot *, const void *arg);

static uint32_t
remove_if(struct vs_acl_sessions *t, slot_pred pred, const void *arg,
          uint32_t *per_port)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i <= t->mask; i++) {
        struct slot *s = &t->slots[i];
        uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if ((st & 3) == LIVE && pred(s, arg)) {
            n += (uint32_t) kill(t, s, st, per_port);
        }
    }
    return n;
}

static int
pred_expired(const struct slot *s, const void *arg)
{
    return expired(s, *(const uint64_t *) arg);
}

/* Removes the sessions that have expired at 'now_ns'. */
uint32_t
vs_acl_sessions_expire(struct vs_acl_sessions *t, uint64_t now_ns,
                       uint32_t *per_port)
{
    if (!atomic_load_explicit(&t->live, memory_order_relaxed)) {
        return 0;       /* nothing to scan for: the common idle case */
    }
    return remove_if(t, pred_expired, &now_ns, per_port);
}

static int
pred_port(const struct slot *s, const void *arg)
{
    int32_t port = *(const int32_t *) arg;
    return port < 0 || slot_port(s) == (uint32_t) port;
}

/* Removes every session of 'port' (-1: of every port). */
uint32_t
vs_acl_sessions_flush(struct vs_acl_sessions *t, int32_t port, uint32_t *per_port)
{
    return remove_if(t, pred_port, &port, per_port);
}

struct prune_arg {
    uint32_t port;
    const uint64_t *keep;
    uint32_t n_keep;
};

static int
pred_prune(const struct slot *s, const void *arg_)
{
    const struct prune_arg *a = arg_;
    if (slot_port(s) != a->port) {
        return 0;
    }
    for (uint32_t i = 0; i < a->n_keep; i++) {
        if (a->keep[i] == s->rule_id) {
            return 0;
        }
    }
    return 1;
}

/* Removes the sessions of 'port' opened by a rule whose id is not among
 * the 'n_keep' at 'keep_ids': after a reload, the rules that are gone. */
uint32_t
vs_acl_sessions_prune(struct vs_acl_sessions *t, uint32_t port,
                      const uint64_t *keep_ids, uint32_t n_keep, uint32_t *per_port)
{
    struct prune_arg a = { port, keep_ids, n_keep };
    return remove_if(t, pred_prune, &a, per_port);
}

/* Copies up to 'max' live, unexpired sessions of 'port' (-1: all) into
 * 'out'; returns how many. */
uint32_t
vs_acl_sessions_dump(const struct vs_acl_sessions *t, int32_t port, uint64_t now_ns,
                     struct vs_acl_session_info *out, uint32_t max)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i <= t->mask && n < max; i++) {
        struct slot *s = &t->slots[i];
        uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if ((st & 3) != LIVE || expired(s, now_ns)
            || (port >= 0 && slot_port(s) != (uint32_t) port)) {
            continue;
        }
        struct vs_acl_session_info *o = &out[n];
        uint64_t k0 = s->key[0];
        uint32_t tcp = atomic_load_explicit(&s->tcp, memory_order_relaxed);
        uint64_t last = atomic_load_explicit(&s->last_ns, memory_order_relaxed);
        o->port = (uint32_t) (k0 & 0xffff);
        o->proto = (uint8_t) (k0 >> 16);
        o->ip6 = (uint8_t) (k0 >> 24 & 1);
        o->local_port = (uint16_t) (k0 >> 32);
        o->remote_port = (uint16_t) (k0 >> 48);
        memcpy(o->local_ip, &s->key[1], 16);
        memcpy(o->remote_ip, &s->key[3], 16);
        o->dir = s->dir;
        o->tcp = (uint8_t) tcp;
        o->timeout_s = timeout_s(s, tcp);
        o->rule_id = s->rule_id;
        o->age_ns = now_ns > s->created_ns ? now_ns - s->created_ns : 0;
        o->idle_ns = now_ns > last ? now_ns - last : 0;
        /* A slot reused while we copied it: leave it out. */
        if (atomic_load_explicit(&s->state, memory_order_acquire) == st) {
            n++;
        }
    }
    return n;
}

/* Copies the number of live sessions of each port id into 'per_port'
 * (VS_MAX_PORTS entries); expired sessions count until
 * vs_acl_sessions_expire() removes them.  'now_ns' is unused: the counts
 * are kept as sessions open and go, so reading them scans nothing. */
void
vs_acl_sessions_count(const struct vs_acl_sessions *t, uint64_t now_ns,
                      uint32_t *per_port)
{
    (void) now_ns;
    for (uint32_t i = 0; i < VS_MAX_PORTS; i++) {
        per_port[i] = atomic_load_explicit(&t->per_port_live[i], memory_order_relaxed);
    }
}

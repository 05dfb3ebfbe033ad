/*
 * vs_mac_table.c: the lock-free (VLAN, MAC) -> port table.
 *
 * The design (bucket layout, who writes what, how races resolve) is in
 * vs_mac_table.h.  Here are the details that matter for getting it right.
 *
 * A slot's key word goes through these states:
 *
 *     0 (empty) --CAS--> key|BUSY --store--> key (live) --CAS--> 0
 *                                    ^                 |
 *                                    +------store------+ CAS (move)
 *
 * Only the thread that put a slot into BUSY writes its port, so a port word
 * is never written under a live key.  The one exception is the timestamp: a
 * refresher stores 'seen_s' into the slot where it found its key without
 * re-checking ownership, so if that slot was freed and reused in between,
 * the new owner's timestamp becomes a little newer than it should.  That
 * only delays aging of the new entry by at most one aging period; it is the
 * price of a refresh without read-modify-write.
 *
 * A lookup re-reads the key after reading the port.  That closes the window
 * in which the slot is released, claimed for another key and given another
 * port, except for an ABA in which, between the two loads of one lookup,
 * the slot is released, reused for another key, released again and
 * re-learned for the same key.  Then the lookup could return the middle
 * owner's port, once, for one frame.  A generation counter would close it
 * too, but there is no room for one in a 16-byte slot and a switch that
 * sends one frame to a wrong port while addresses are being flushed under
 * it is not worth a slower lookup.
 */
#include "vs_hash.h"
#include "vs_mac_table.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Key layout: bit 63 valid, bit 62 busy, bits 48..59 VID, bits 0..47 MAC
 * (mac[0] most significant). */
#define KEY_VALID (UINT64_C(1) << 63)
#define KEY_BUSY (UINT64_C(1) << 62)
#define KEY_VLAN_SHIFT 48

#define BUCKET_SLOTS 8
#define SLOTS_PER_ENTRY 2   /* total slots ~ this times capacity */
#define CACHE_LINE 64

struct slot {
    _Atomic uint64_t key;
    _Atomic uint32_t port;
    _Atomic uint32_t seen_s;
};

struct bucket {
    struct slot slots[BUCKET_SLOTS];
} __attribute__((aligned(CACHE_LINE)));

_Static_assert(sizeof(struct slot) == 16, "slot is 16 bytes");
_Static_assert(sizeof(struct bucket) == 2 * CACHE_LINE,
               "bucket is two cache lines");
_Static_assert(sizeof(struct vs_mac_entry) == 16, "entry layout");

/* The read-mostly part (geometry, seed) and the written part (count and
 * stats, touched on every new address) sit on different cache lines so
 * that learning new addresses does not slow down lookups elsewhere. */
struct vs_mac_table {
    uint64_t seed;               /* hash key, chosen at creation */
    uint32_t bucket_mask;        /* number of buckets - 1 */
    uint32_t capacity;           /* entries */

    _Atomic uint32_t count __attribute__((aligned(CACHE_LINE)));
    _Atomic uint64_t learned;
    _Atomic uint64_t moved;
    _Atomic uint64_t aged;
    _Atomic uint64_t flushed;
    _Atomic uint64_t full;

    struct bucket buckets[];     /* bucket_mask + 1 of them */
};

/* Returns the table key for 'vlan' (low 12 bits) and the 6-byte 'mac'. */
static inline uint64_t
make_key(uint16_t vlan, const uint8_t *mac)
{
    uint64_t m = ((uint64_t) mac[0] << 40) | ((uint64_t) mac[1] << 32)
                 | ((uint64_t) mac[2] << 24) | ((uint64_t) mac[3] << 16)
                 | ((uint64_t) mac[4] << 8) | (uint64_t) mac[5];
    return KEY_VALID | ((uint64_t) (vlan & 0xfff) << KEY_VLAN_SHIFT) | m;
}

/* Returns true if 'k' is a published key (not empty, not being written). */
static inline bool
key_is_live(uint64_t k)
{
    return (k & (KEY_VALID | KEY_BUSY)) == KEY_VALID;
}


/* Returns the index of the bucket that holds 'k' in 't'. */
static inline uint32_t
bucket_of(const struct vs_mac_table *t, uint64_t k)
{
    return (uint32_t) vs_hash64(k, t->seed) & t->bucket_mask;
}

/* Creates a table that holds up to 'capacity' entries, between 1 and
 * VS_MAC_CAPACITY_MAX.  Returns the table, or NULL with errno set (EINVAL
 * for a bad 'capacity', ENOMEM). */
struct vs_mac_table *
vs_mac_table_new(uint32_t capacity)
{
    if (capacity == 0 || capacity > VS_MAC_CAPACITY_MAX) {
        errno = EINVAL;
        return NULL;
    }

    uint64_t want = ((uint64_t) capacity * SLOTS_PER_ENTRY + BUCKET_SLOTS - 1)
                    / BUCKET_SLOTS;
    uint64_t n_buckets = 1;
    while (n_buckets < want) {
        n_buckets <<= 1;
    }

    size_t size = sizeof(struct vs_mac_table)   /* a multiple of 64 */
                  + n_buckets * sizeof(struct bucket);
    struct vs_mac_table *t = aligned_alloc(CACHE_LINE, size);
    if (!t) {
        errno = ENOMEM;
        return NULL;
    }
    memset(t, 0, size);   /* all slots empty (key 0), counters 0 */

    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed) {
        /* No entropy yet (early boot): the table still works, only its
         * bucket choice is predictable. */
        seed = (uintptr_t) t ^ UINT64_C(0x9e3779b97f4a7c15);
    }
    t->seed = seed;
    t->bucket_mask = (uint32_t) (n_buckets - 1);
    t->capacity = capacity;
    return t;
}

/* Frees 't' (NULL is fine).  No other thread may be using it. */
void
vs_mac_table_free(struct vs_mac_table *t)
{
    free(t);
}

/* Returns the capacity of 't', in entries, as given at creation. */
uint32_t
vs_mac_table_capacity(const struct vs_mac_table *t)
{
    return t->capacity;
}

/* Returns how many slots of 't' are taken: live entries plus those being
 * learned at this instant.  Never more than the capacity. */
uint32_t
vs_mac_table_count(const struct vs_mac_table *t)
{
    return atomic_load_explicit(&t->count, memory_order_relaxed);
}

/* Copies the event counters of 't' into '*out'.  Each counter is read on
 * its own, so they are not a snapshot of one instant. */
void
vs_mac_table_stats(const struct vs_mac_table *t, struct vs_mac_stats *out)
{
    out->learned = atomic_load_explicit(&t->learned, memory_order_relaxed);
    out->moved = atomic_load_explicit(&t->moved, memory_order_relaxed);
    out->aged = atomic_load_explicit(&t->aged, memory_order_relaxed);
    out->flushed = atomic_load_explicit(&t->flushed, memory_order_relaxed);
    out->full = atomic_load_explicit(&t->full, memory_order_relaxed);
}

/* Counts one event in the counter 'c' of a table. */
static inline void
count_event(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Takes one unit of 't''s capacity.  A compare-and-swap loop rather than
 * fetch_add-then-undo, so the count never exceeds the capacity even
 * transiently (vs_mac_table_count() is exact in that respect).  Returns
 * true on success, false if the table is full. */
static bool
reserve(struct vs_mac_table *t)
{
    uint32_t n = atomic_load_explicit(&t->count, memory_order_relaxed);
    do {
        if (n >= t->capacity) {
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(
                 &t->count, &n, n + 1,
                 memory_order_relaxed, memory_order_relaxed));
    return true;
}

/* Gives back one unit of 't''s capacity. */
static inline void
unreserve(struct vs_mac_table *t)
{
    atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
}

/* Removes the entry for key 'k' from slot 's' of 't' if the slot still
 * holds it.  Returns true if this call removed it. */
static bool
remove_slot(struct vs_mac_table *t, struct slot *s, uint64_t k)
{
    if (atomic_compare_exchange_strong(&s->key, &k, 0)) {
        unreserve(t);
        return true;
    }
    return false;
}

/* Publishes key 'k' in slot 'mine' of bucket 'b', which this thread holds
 * BUSY with port and timestamp already written, then resolves duplicates:
 * another learner may have put 'k' into another slot of 'b' meanwhile.
 *
 * The publishing store and the rescan's loads are sequentially consistent,
 * so of two publishers of 'k' at least one sees the other (the store-load
 * pattern of Dekker's algorithm; acquire/release would let both miss).  The
 * lower slot index wins: whoever sees the other either releases its own
 * higher slot or removes the other's higher one.  If both see each other,
 * both try to remove the same higher slot and only one compare-and-swap
 * succeeds.
 *
 * Returns PUBLISHED if the entry in 'mine' survived; otherwise it gave way
 * to a copy at a lower index, and GAVE_WAY says this call removed it,
 * TAKEN_LIVE that someone else did (the winner, or an aging or flush pass
 * that found it live for that moment and counted it). */
enum publish_result { PUBLISHED, GAVE_WAY, TAKEN_LIVE };

static enum publish_result
publish(struct vs_mac_table *t, struct bucket *b, int mine, uint64_t k)
{
    atomic_store(&b->slots[mine].key, k);
    for (int i = 0; i < BUCKET_SLOTS; i++) {
        if (i == mine || atomic_load(&b->slots[i].key) != k) {
            continue;
        }
        if (i < mine) {
            return remove_slot(t, &b->slots[mine], k) ? GAVE_WAY : TAKEN_LIVE;
        }
        remove_slot(t, &b->slots[i], k);
    }
    return PUBLISHED;
}

/* Learns that a frame with source address 'mac' (6 bytes) in VLAN 'vlan'
 * arrived on 'port' at time 'now_s' (seconds).  Safe to call from any
 * number of threads.
 *
 * Returns a vs_learn_result:
 *  VS_LEARN_REFRESHED  already known on 'port' (or another learner added it
 *                      at the same instant and its answer stands); the
 *                      timestamp is now 'now_s'.
 *  VS_LEARN_NEW        added ('learned' counted).
 *  VS_LEARN_MOVED      was known on another port, now on 'port' ('moved').
 *  VS_LEARN_FULL       not added: the table is at capacity or the address's
 *                      bucket is full ('full' counted).
 *
 * When the address is known on 'port' and its timestamp is 'now_s', this
 * does no store at all: it is the per-frame path. */
int
vs_mac_learn(struct vs_mac_table *t, uint16_t vlan, const uint8_t *mac,
             uint32_t port, uint32_t now_s)
{
    uint64_t k = make_key(vlan, mac);
    struct bucket *b = &t->buckets[bucket_of(t, k)];

    for (;;) {
        int empty = -1;
        int found = -1;
        for (int i = 0; i < BUCKET_SLOTS; i++) {
            uint64_t ki = atomic_load_explicit(&b->slots[i].key,
                                               memory_order_acquire);
            if (ki == k) {
                found = i;
                break;
            }
            if (ki == 0 && empty < 0) {
                empty = i;
            }
        }

        if (found >= 0) {
            struct slot *s = &b->slots[found];
            uint32_t old_port = atomic_load_explicit(&s->port, memory_order_relaxed);
            uint32_t seen = atomic_load_explicit(&s->seen_s, memory_order_relaxed);
            if (seen == VS_MAC_STATIC && now_s != VS_MAC_STATIC
                && VS_MAC_PORT(old_port) == VS_MAC_PORT(port)) {
                return VS_LEARN_REFRESHED;  /* static: traffic does not move it */
            }
            if (old_port == port) {
                if (seen != now_s) {
                    atomic_store_explicit(&s->seen_s, now_s,
                                          memory_order_relaxed);
                }
                return VS_LEARN_REFRESHED;
            }

            /* Move: take the slot BUSY so that the port is never written
             * under a live key.  If the key changed under us (aged,
             * flushed, moved by another learner), start over. */
            uint64_t expect = k;
            if (!atomic_compare_exchange_strong_explicit(
                    &s->key, &expect, k | KEY_BUSY,
                    memory_order_acquire, memory_order_relaxed)) {
                continue;
            }
            atomic_store_explicit(&s->port, port, memory_order_relaxed);
            atomic_store_explicit(&s->seen_s, now_s, memory_order_relaxed);
            if (publish(t, b, found, k) != PUBLISHED) {
                return VS_LEARN_REFRESHED;
            }
            count_event(&t->moved);
            return VS_LEARN_MOVED;
        }

        if (empty < 0 || !reserve(t)) {
            count_event(&t->full);
            return VS_LEARN_FULL;
        }
        for (int i = empty; i < BUCKET_SLOTS; i++) {
            struct slot *s = &b->slots[i];
            uint64_t expect = 0;
            if (atomic_load_explicit(&s->key, memory_order_relaxed) != 0
                || !atomic_compare_exchange_strong_explicit(
                       &s->key, &expect, k | KEY_BUSY,
                       memory_order_acquire, memory_order_relaxed)) {
                continue;
            }
            atomic_store_explicit(&s->port, port, memory_order_relaxed);
            atomic_store_explicit(&s->seen_s, now_s, memory_order_relaxed);
            enum publish_result r = publish(t, b, i, k);
            if (r != PUBLISHED) {
                /* A new entry removed by an aging or flush pass has been
                 * counted as aged or flushed: count it learned too, so that
                 * every entry removed was learned (learned >= entries +
                 * aged + flushed).  The winner's removal is not told apart
                 * and counts one learned too many, in a rarer race. */
                if (r == TAKEN_LIVE) {
                    count_event(&t->learned);
                }
                return VS_LEARN_REFRESHED;
            }
            count_event(&t->learned);
            return VS_LEARN_NEW;
        }

        /* Other learners took the empty slots we saw. */
        unreserve(t);
        count_event(&t->full);
        return VS_LEARN_FULL;
    }
}

/* Returns the port on which 'mac' (6 bytes) in VLAN 'vlan' was last
 * learned, or VS_PORT_NONE if it is not in 't'.  Safe from any thread. */
uint32_t
vs_mac_lookup(const struct vs_mac_table *t, uint16_t vlan, const uint8_t *mac)
{
    uint64_t k = make_key(vlan, mac);
    const struct bucket *b = &t->buckets[bucket_of(t, k)];

    for (int i = 0; i < BUCKET_SLOTS; i++) {
        const struct slot *s = &b->slots[i];
        if (atomic_load_explicit(&s->key, memory_order_acquire) != k) {
            continue;
        }
        /* The acquire load keeps the key re-read below after it: if the
         * key is unchanged, the port we read was written for it. */
        uint32_t port = atomic_load_explicit(&s->port, memory_order_acquire);
        if (atomic_load_explicit(&s->key, memory_order_relaxed) == k) {
            return port;
        }
    }
    return VS_PORT_NONE;
}

/* Which live entries a removal pass takes: the control thread's aging and
 * flushes are one walk over the table with different tests. */
struct removal {
    int aging;                  /* 1: by age; 0: by VLAN and port */
    uint32_t now_s, aging_s;
    int32_t vlan;               /* -1: any */
    int64_t port;               /* -1: any */
    uint32_t port_mask;         /* of the port word, before comparing */
};

static int
removal_matches(const struct removal *r, const struct slot *s, uint64_t k)
{
    if (r->aging) {
        uint32_t seen = atomic_load_explicit(&s->seen_s, memory_order_relaxed);
        int32_t age = (int32_t) (r->now_s - seen);
        return seen != VS_MAC_STATIC && age >= 0 && (uint32_t) age >= r->aging_s;
    }
    if (r->vlan != -1 && (int64_t) ((k >> KEY_VLAN_SHIFT) & 0xfff) != r->vlan) {
        return 0;
    }
    uint32_t word = atomic_load_explicit(&s->port, memory_order_relaxed);
    return r->port == -1 || (int64_t) (word & r->port_mask) == r->port;
}

/* Removes every live entry of 't' that 'r' matches; returns how many. */
static uint32_t
remove_matching(struct vs_mac_table *t, const struct removal *r)
{
    uint32_t removed = 0;
    for (uint64_t bi = 0; bi <= t->bucket_mask; bi++) {
        struct bucket *b = &t->buckets[bi];
        for (int i = 0; i < BUCKET_SLOTS; i++) {
            struct slot *s = &b->slots[i];
            uint64_t k = atomic_load_explicit(&s->key, memory_order_acquire);
            if (key_is_live(k) && removal_matches(r, s, k) && remove_slot(t, s, k)) {
                removed++;
            }
        }
    }
    return removed;
}

/* Removes from 't' every entry whose address has not been learned for
 * 'aging_s' seconds or more at time 'now_s' (seconds), that is whose
 * now_s - seen_s >= aging_s; 'aging_s' 0 removes every entry.  An entry
 * seen "after" 'now_s' (a worker's clock read raced ahead of ours) counts
 * as fresh, not as 4 billion seconds old.  May remove an entry refreshed
 * concurrently; the next frame from it re-learns it.
 *
 * Returns the number of entries removed (also counted as 'aged'). */
uint32_t
vs_mac_age(struct vs_mac_table *t, uint32_t now_s, uint32_t aging_s)
{
    struct removal r = { .aging = 1, .now_s = now_s, .aging_s = aging_s };
    uint32_t removed = remove_matching(t, &r);
    atomic_fetch_add_explicit(&t->aged, removed, memory_order_relaxed);
    return removed;
}

/* Removes from 't' the entries in VLAN 'vlan' (-1: any VLAN) learned on
 * 'port' (-1: any port), e.g. when a port goes down or a VLAN is removed.
 * An entry being learned or moved at the same instant may survive, so
 * flush after the port has stopped receiving.
 *
 * Returns the number of entries removed (also counted as 'flushed'). */
uint32_t
vs_mac_flush(struct vs_mac_table *t, int32_t vlan, int64_t port)
{
    struct removal r = { .aging = 0, .vlan = vlan, .port = port,
                         .port_mask = 0xffffffffu };
    uint32_t removed = remove_matching(t, &r);
    atomic_fetch_add_explicit(&t->flushed, removed, memory_order_relaxed);
    return removed;
}

/* Like vs_mac_flush(), but compares only the bits of an entry's port word
 * in 'mask' with 'port': VS_MAC_PORT_MASK removes a port's entries behind
 * every VTEP of it (see VS_MAC_AT()). */
uint32_t
vs_mac_flush_masked(struct vs_mac_table *t, int32_t vlan, int64_t port,
                    uint32_t mask)
{
    struct removal r = { .aging = 0, .vlan = vlan, .port = port,
                         .port_mask = mask };
    uint32_t removed = remove_matching(t, &r);
    atomic_fetch_add_explicit(&t->flushed, removed, memory_order_relaxed);
    return removed;
}

/* Copies up to 'max' entries of 't' into 'out', in table order (which is
 * hash order: sort them for display).  Entries added or removed during the
 * dump may or may not appear.
 *
 * Returns the number of entries written. */
uint32_t
vs_mac_dump(const struct vs_mac_table *t, struct vs_mac_entry *out,
            uint32_t max)
{
    uint32_t n = 0;
    for (uint64_t bi = 0; bi <= t->bucket_mask && n < max; bi++) {
        const struct bucket *b = &t->buckets[bi];
        for (int i = 0; i < BUCKET_SLOTS && n < max; i++) {
            const struct slot *s = &b->slots[i];
            uint64_t k = atomic_load_explicit(&s->key, memory_order_acquire);
            if (!key_is_live(k)) {
                continue;
            }
            uint32_t port = atomic_load_explicit(&s->port,
                                                 memory_order_relaxed);
            uint32_t seen = atomic_load_explicit(&s->seen_s,
                                                 memory_order_acquire);
            if (atomic_load_explicit(&s->key, memory_order_relaxed) != k) {
                continue;
            }
            struct vs_mac_entry *e = &out[n++];
            e->vlan = (uint16_t) ((k >> KEY_VLAN_SHIFT) & 0xfff);
            for (int j = 0; j < 6; j++) {
                e->mac[j] = (uint8_t) (k >> (40 - 8 * j));
            }
            e->port = port;
            e->seen_s = seen;
        }
    }
    return n;
}

/* Checks the invariants of 't', which no other thread may be using: every
 * slot is empty or live (none left BUSY), no key is in two slots, every key
 * is in the bucket its hash picks, and the count equals the number of live
 * slots and is within capacity.
 *
 * Returns 0 if they hold, otherwise 1 (a slot left BUSY), 2 (a duplicate
 * key), 3 (a key in the wrong bucket), 4 (count differs from the number of
 * live slots) or 5 (count above capacity). */
int
vs_mac_table_check(const struct vs_mac_table *t)
{
    uint64_t live = 0;
    for (uint64_t bi = 0; bi <= t->bucket_mask; bi++) {
        const struct bucket *b = &t->buckets[bi];
        for (int i = 0; i < BUCKET_SLOTS; i++) {
            uint64_t k = atomic_load(&b->slots[i].key);
            if (k == 0) {
                continue;
            }
            if (!key_is_live(k)) {
                return 1;
            }
            for (int j = 0; j < i; j++) {
                if (atomic_load(&b->slots[j].key) == k) {
                    return 2;
                }
            }
            if (bucket_of(t, k) != bi) {
                return 3;
            }
            live++;
        }
    }
    uint32_t count = atomic_load(&t->count);
    if (live != count) {
        return 4;
    }
    return count > t->capacity ? 5 : 0;
}

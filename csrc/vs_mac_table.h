/*
 * vs_mac_table.h: the (VLAN, MAC) -> port table.
 *
 * What it is for: learning where a source address lives, so that known
 * unicast goes out of one port instead of being flooded.
 *
 * Invariants:
 *  - Capacity is fixed at creation ('capacity' entries, the config's
 *    mac_table_size).  When the table holds that many entries a new address
 *    is not learned ("table full" is counted) and existing entries keep
 *    forwarding: MAC flooding cannot evict known hosts.  The count of
 *    entries never exceeds 'capacity', not even for an instant.
 *  - (VLAN, MAC) is packed into one 64-bit key with a valid bit, so an
 *    empty slot is key 0 and every update of a key is one atomic word.
 *    Only the low 12 bits of 'vlan' are used (an 802.1Q VID).
 *  - An entry belongs to exactly one port; learning the same key on another
 *    port moves it.
 *
 * Layout: a set-associative hash table.  Buckets of 8 slots (16 bytes each,
 * so a bucket is two cache lines); a keyed hash of the packed key picks
 * exactly one bucket, and lookup scans only that bucket.  There are about
 * twice as many slots as 'capacity' (rounded up to a power of two of
 * buckets), so a bucket rarely fills before the table does; when one does,
 * the new address is refused with VS_LEARN_FULL just as if the table were
 * full.  Near capacity that refuses roughly 1% of new addresses early; it
 * never evicts anything.  The hash is seeded per table at creation so that
 * an attacker cannot aim a flood of addresses at one bucket without knowing
 * the seed.
 *
 * Threads: any number of workers call vs_mac_learn() and vs_mac_lookup()
 * concurrently with each other and with the control thread's vs_mac_age(),
 * vs_mac_flush() and vs_mac_dump().  Nothing takes a lock:
 *  - A slot's key word is the only thing that says who owns the slot.  A
 *    learner claims an empty slot by compare-and-swap 0 -> key|BUSY, writes
 *    port and timestamp, then publishes the key with a release store; a
 *    lookup loads the key with acquire, reads the port and re-reads the key,
 *    so it does not return a port that the slot held for another key (short
 *    of an ABA that vs_mac_table.c explains and accepts).  A move
 *    to another port goes through the same BUSY state, so the port word is
 *    only ever written by the slot's owner.
 *  - Refreshing a known address on the same port is a plain (relaxed)
 *    store of the timestamp, and no store at all if it did not change: the
 *    per-frame hot path does no read-modify-write.
 *  - Entries are removed by compare-and-swap key -> 0.  Aging and flushing
 *    race with refreshes and moves; they may remove an entry that was
 *    refreshed or moved a moment ago.  That costs a little flooding until
 *    the next frame from that address re-learns it, which is the usual
 *    behaviour of a switch and much cheaper than a lock.
 *  - A racing pair of learners may briefly hold the same key in two slots
 *    of one bucket.  Each publisher rescans the bucket afterwards (with
 *    sequentially consistent loads, so at least one of the pair sees the
 *    other); the copy at the lower slot index wins and the other is
 *    released.  Lookups take the first match, so the duplicate is invisible
 *    to forwarding.
 *
 * Batch semantics are the caller's: vs_forward learns a whole batch first,
 * then looks up destinations against the resulting state of the table.
 *
 * Time is an argument ('now_s', seconds on CLOCK_MONOTONIC), so tests can
 * move a fake clock.  Memory is one allocation, freed by vs_mac_table_free()
 * once no worker can be running (the switch is stopped).
 */
#ifndef VS_MAC_TABLE_H
#define VS_MAC_TABLE_H 1

#include <stdint.h>

/* vs_mac_lookup()'s answer for "not known: flood". */
#define VS_PORT_NONE 0xffffffffu

/* An entry's port word: the port id in the low 16 bits and, for a remote
 * address behind an overlay port, the VTEP's index in the port's VTEP
 * table (vs_vxlan.h) in the high 16; 0 there for a local address. */
#define VS_MAC_AT(port, vtep) ((uint32_t) (port) | ((uint32_t) (vtep) << 16))
#define VS_MAC_PORT_MASK 0xffffu
#define VS_MAC_PORT(word) ((word) & VS_MAC_PORT_MASK)
#define VS_MAC_VTEP(word) ((word) >> 16)

/* A 'now_s' of VS_MAC_STATIC installs a static entry: what a control plane
 * (EVPN) knows, not what traffic taught.  A static entry never ages;
 * learning on its own port id (a frame from the overlay, whichever VTEP)
 * neither refreshes nor moves it; learning on another port moves it there
 * and makes it an ordinary entry (a VM that arrived here: MAC mobility).
 * vs_mac_dump() reports its 'seen_s' as VS_MAC_STATIC. */
#define VS_MAC_STATIC 0xffffffffu

/* Largest 'capacity' vs_mac_table_new() accepts (its slots take 512 MiB). */
#define VS_MAC_CAPACITY_MAX (1u << 24)

struct vs_mac_table;

/* One entry as reported by vs_mac_dump(). */
struct vs_mac_entry {
    uint16_t vlan;
    uint8_t mac[6];
    uint32_t port;
    uint32_t seen_s;   /* last time a frame from this address was learned */
};

/* Learning outcomes. */
enum vs_learn_result {
    VS_LEARN_REFRESHED = 0,   /* known on this port; timestamp updated */
    VS_LEARN_NEW = 1,         /* new entry */
    VS_LEARN_MOVED = 2,       /* known on another port; moved here */
    VS_LEARN_FULL = 3,        /* not learned: table at capacity or bucket full */
};

/* Event counts, monotonically increasing, read with relaxed loads. */
struct vs_mac_stats {
    uint64_t learned;   /* new entries */
    uint64_t moved;     /* entries moved to another port */
    uint64_t aged;      /* entries removed by vs_mac_age() */
    uint64_t flushed;   /* entries removed by vs_mac_flush() */
    uint64_t full;      /* addresses not learned for lack of room */
};

/* Basics. */
struct vs_mac_table *vs_mac_table_new(uint32_t capacity);
void vs_mac_table_free(struct vs_mac_table *);
uint32_t vs_mac_table_capacity(const struct vs_mac_table *);
uint32_t vs_mac_table_count(const struct vs_mac_table *);
void vs_mac_table_stats(const struct vs_mac_table *, struct vs_mac_stats *);

/* Learning. */
int vs_mac_learn(struct vs_mac_table *, uint16_t vlan, const uint8_t *mac,
                 uint32_t port, uint32_t now_s);

/* Lookup. */
uint32_t vs_mac_lookup(const struct vs_mac_table *, uint16_t vlan,
                       const uint8_t *mac);

/* Removal. */
uint32_t vs_mac_age(struct vs_mac_table *, uint32_t now_s, uint32_t aging_s);
uint32_t vs_mac_flush(struct vs_mac_table *, int32_t vlan, int64_t port);
uint32_t vs_mac_flush_masked(struct vs_mac_table *, int32_t vlan, int64_t port,
                             uint32_t mask);

/* Reporting. */
uint32_t vs_mac_dump(const struct vs_mac_table *, struct vs_mac_entry *out,
                     uint32_t max);

/* Debugging: checks the table's invariants; only meaningful when no other
 * thread is using the table.  Returns 0 if they hold. */
int vs_mac_table_check(const struct vs_mac_table *);

#endif /* vs_mac_table.h */

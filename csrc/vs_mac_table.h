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
 *    forwarding: MAC flooding cannot evict known hosts.
 *  - (VLAN, MAC) is packed into one 64-bit key with a valid bit, so an
 *    empty slot is key 0 and every update of a key is one atomic word.
 *  - An entry belongs to exactly one port; learning the same key on another
 *    port moves it (one atomic store of the port).
 *
 * Threads: any number of workers call vs_mac_learn() and vs_mac_lookup()
 * concurrently with each other and with the control thread's vs_mac_age(),
 * vs_mac_flush() and vs_mac_dump().  Nothing takes a lock: slots are claimed
 * with compare-and-swap and released by storing key 0.  A racing pair of
 * learners may briefly hold the same key in two slots of one bucket; the
 * loser notices and releases its slot, and lookups take the first match, so
 * the duplicate is invisible to forwarding.
 *
 * Time is an argument ('now_s', seconds on CLOCK_MONOTONIC), so tests can
 * move a fake clock.  Memory is one allocation, freed by vs_mac_table_free()
 * once no worker can be running (the switch is stopped).
 */
#ifndef VS_MAC_TABLE_H
#define VS_MAC_TABLE_H 1

#include <stdint.h>

#define VS_PORT_NONE 0xffffffffu

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
    uint64_t learned;
    uint64_t moved;
    uint64_t aged;
    uint64_t flushed;
    uint64_t full;
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

/* Reporting. */
uint32_t vs_mac_dump(const struct vs_mac_table *, struct vs_mac_entry *out,
                     uint32_t max);

#endif /* vs_mac_table.h */

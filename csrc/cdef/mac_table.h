/* cdef/mac_table.h: vs_mac_table.h as cffi sees it (values filled in by the
 * compiler wherever they are written as "..."). */

#define VS_PORT_NONE ...
#define VS_MAC_CAPACITY_MAX ...

#define VS_MAC_PORT_MASK ...
#define VS_MAC_STATIC ...

struct vs_mac_table;

struct vs_mac_entry {
    uint16_t vlan;
    uint8_t mac[6];
    uint32_t port;
    uint32_t seen_s;
};

enum vs_learn_result {
    VS_LEARN_REFRESHED,
    VS_LEARN_NEW,
    VS_LEARN_MOVED,
    VS_LEARN_FULL,
    ...
};

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
uint32_t vs_mac_flush_masked(struct vs_mac_table *, int32_t vlan, int64_t port,
                             uint32_t mask);

/* Reporting. */
uint32_t vs_mac_dump(const struct vs_mac_table *, struct vs_mac_entry *out,
                     uint32_t max);

/* Debugging. */
int vs_mac_table_check(const struct vs_mac_table *);

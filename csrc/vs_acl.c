/*
 * vs_acl.c: compiling a port's ACL and classifying frames against it (the
 * design is in vs_acl.h).
 *
 * Compiling runs in the control thread and allocates; classifying runs in
 * the workers on the immutable result and only writes the calling
 * context's counter row.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vs_acl.h"
#include "vs_frame.h"
#include "vs_hash.h"

#define KEY_WORDS 7
_Static_assert(sizeof(struct vs_acl_key) == KEY_WORDS * 8, "key is 7 words");

/* Prefixes covering one 16-bit range: at most 2 * 16 - 2. */
#define MAX_PREFIXES 30

/* One (value, mask) pair of a rule, after port ranges were expanded. */
struct entry {
    uint64_t value[KEY_WORDS];
    uint64_t mask[KEY_WORDS];
    uint32_t weight;
    uint32_t rule;              /* index into vs_acl.rules */
    uint8_t action;
};

/* Tuple space search: the entries of one mask, by masked key. */
struct table {
    uint64_t mask[KEY_WORDS];
    uint8_t words[KEY_WORDS];   /* the words 'mask' covers: the only ones hashed */
    uint32_t n_words;
    uint32_t best_weight;
    uint32_t slot_mask;         /* slots - 1 */
    int32_t *slots;             /* entry index, -1 = empty */
};

/* Everything one direction evaluates. */
struct dir_class {
    struct entry *decisive;     /* ALLOW and DENY, weight descending */
    uint32_t n_decisive;
    struct entry *meters;       /* weight descending */
    uint32_t n_meters;
    struct table *tables;       /* NULL: scan 'decisive' linearly */
    uint32_t n_tables;
    uint32_t *l4_deny;          /* 'decisive' indices of DENYs needing IP/L4 */
    uint32_t n_l4_deny;
};

/* One slot of a context's decision cache (vs_acl_classify()). */
struct cache_entry {
    uint64_t key[KEY_WORDS];
    int32_t decider;            /* index into the direction's decisive entries, -1 */
    uint8_t tag;                /* 0 empty, else direction index + 1 */
    uint8_t n_meters;
    uint32_t meters[VS_ACL_CACHE_METERS];   /* rule indices */
};

struct vs_acl {
    struct vs_acl_rule *rules;
    uint32_t n_rules;
    int default_action;
    int has_stateful;
    uint64_t seed;
    struct dir_class dirs[2];   /* [0] IN, [1] OUT */
    uint32_t n_ctx;
    uint32_t row_len;           /* counters per context */
    uint64_t *counters;         /* n_ctx rows of row_len */
    struct cache_entry *cache;  /* n_ctx rows of VS_ACL_CACHE_SIZE */
};

static int
dir_index(int dir)
{
    return dir == VS_ACL_IN ? 0 : 1;
}

static void
key_words(const struct vs_acl_key *key, uint64_t *w)
{
    memcpy(w, key, sizeof *key);
}

/* Hashes the words of 'k' that table 'tb''s mask covers: a multiply per
 * word and one full mix at the end (a table over a /24 and a port hashes
 * two words, not seven: measured, the per-table cost is what a policy of
 * many masks pays). */
static uint64_t
hash_masked(const uint64_t *k, const struct table *tb, uint64_t seed)
{
    uint64_t h = seed;
    for (uint32_t i = 0; i < tb->n_words; i++) {
        uint32_t w = tb->words[i];
        h = (h ^ (k[w] & tb->mask[w])) * UINT64_C(0x9e3779b97f4a7c15);
        h ^= h >> 29;
    }
    return vs_hash64(h, seed);
}

/* Whether table entry 'e' matches 'k', comparing only the table's words. */
static int
table_entry_matches(const struct entry *e, const struct table *tb, const uint64_t *k)
{
    uint64_t diff = 0;
    for (uint32_t i = 0; i < tb->n_words; i++) {
        uint32_t w = tb->words[i];
        diff |= (k[w] & tb->mask[w]) ^ e->value[w];
    }
    return diff == 0;
}

static int
entry_matches(const struct entry *e, const uint64_t *k)
{
    uint64_t diff = 0;
    for (int i = 0; i < KEY_WORDS; i++) {
        diff |= (k[i] & e->mask[i]) ^ e->value[i];
    }
    return diff == 0;
}

/* --- Compiling --------------------------------------------------------------- */

/* Writes the prefixes covering 'lo'..'hi' into 'values' and 'masks';
 * returns how many. */
static uint32_t
range_prefixes(uint16_t lo, uint16_t hi, uint16_t *values, uint16_t *masks)
{
    uint32_t n = 0;
    uint32_t cur = lo;

    while (cur <= hi) {
        uint32_t size = 1;
        while ((cur & (size * 2 - 1)) == 0 && cur + size * 2 - 1 <= hi
               && size < 65536) {
            size *= 2;
        }
        values[n] = (uint16_t) cur;
        masks[n] = (uint16_t) ~(size - 1);
        n++;
        cur += size;
    }
    return n;
}

/* Appends the entries of 'rule' (index 'ri') to 'list'.  Returns 0 or
 * ENOMEM. */
static int
expand_rule(const struct vs_acl_rule *rule, uint32_t ri, struct entry **list,
            uint32_t *n, uint32_t *cap)
{
    uint16_t lv[MAX_PREFIXES], lm[MAX_PREFIXES], rv[MAX_PREFIXES], rm[MAX_PREFIXES];
    uint32_t nl = range_prefixes(rule->local_port_lo, rule->local_port_hi, lv, lm);
    uint32_t nr = range_prefixes(rule->remote_port_lo, rule->remote_port_hi, rv, rm);

    for (uint32_t a = 0; a < nl; a++) {
        for (uint32_t b = 0; b < nr; b++) {
            if (*n == *cap) {
                uint32_t bigger = *cap ? *cap * 2 : 64;
                struct entry *grown = realloc(*list, bigger * sizeof **list);
                if (!grown) {
                    return ENOMEM;
                }
                *list = grown;
                *cap = bigger;
            }
            struct vs_acl_key key = rule->key, mask = rule->mask;
            mask.flags &= VS_ACL_F_IP | VS_ACL_F_IP6 | VS_ACL_F_L4;
            mask.tcp_flags = 0;
            mask.local_port = lm[a];
            mask.remote_port = rm[b];
            key.local_port = lv[a];
            key.remote_port = rv[b];
            struct entry *e = &(*list)[(*n)++];
            key_words(&mask, e->mask);
            key_words(&key, e->value);
            for (int i = 0; i < KEY_WORDS; i++) {
                e->value[i] &= e->mask[i];
            }
            e->weight = rule->weight;
            e->rule = ri;
            e->action = rule->action;
        }
    }
    return 0;
}

static int
by_weight_desc(const void *a_, const void *b_)
{
    const struct entry *a = a_, *b = b_;
    if (a->weight != b->weight) {
        return a->weight > b->weight ? -1 : 1;
    }
    return a->rule < b->rule ? -1 : a->rule > b->rule;
}

static int
needs_ip(const struct entry *e)
{
    struct vs_acl_key mask;
    memcpy(&mask, e->mask, sizeof mask);
    return (mask.flags & (VS_ACL_F_IP | VS_ACL_F_L4)) != 0;
}

/* Builds the tuple-space tables of 'dc' from its sorted decisive entries. */
static int
build_tables(struct dir_class *dc, uint64_t seed)
{
    dc->tables = calloc(dc->n_decisive, sizeof *dc->tables);
    if (!dc->tables) {
        return ENOMEM;
    }
    /* Entries are in weight order, so the first entry of a mask gives
     * its table's best weight, and tables are created in that order too. */
    uint32_t *table_of = malloc(dc->n_decisive * sizeof *table_of);
    if (!table_of) {
        return ENOMEM;
    }
    uint32_t *counts = calloc(dc->n_decisive, sizeof *counts);
    if (!counts) {
        free(table_of);
        return ENOMEM;
    }
    for (uint32_t i = 0; i < dc->n_decisive; i++) {
        const struct entry *e = &dc->decisive[i];
        uint32_t t = 0;
        while (t < dc->n_tables
               && memcmp(dc->tables[t].mask, e->mask, sizeof e->mask)) {
            t++;
        }
        if (t == dc->n_tables) {
            memcpy(dc->tables[t].mask, e->mask, sizeof e->mask);
            for (uint32_t w = 0; w < KEY_WORDS; w++) {
                if (e->mask[w]) {
                    dc->tables[t].words[dc->tables[t].n_words++] = (uint8_t) w;
                }
            }
            dc->tables[t].best_weight = e->weight;
            dc->n_tables++;
        }
        table_of[i] = t;
        counts[t]++;
    }
    int error = 0;
    for (uint32_t t = 0; t < dc->n_tables && !error; t++) {
        uint32_t slots = 8;
        while (slots < counts[t] * 2) {
            slots *= 2;
        }
        dc->tables[t].slot_mask = slots - 1;
        dc->tables[t].slots = malloc(slots * sizeof(int32_t));
        if (!dc->tables[t].slots) {
            error = ENOMEM;
            break;
        }
        memset(dc->tables[t].slots, 0xff, slots * sizeof(int32_t));
    }
    for (uint32_t i = 0; i < dc->n_decisive && !error; i++) {
        struct table *t = &dc->tables[table_of[i]];
        const struct entry *e = &dc->decisive[i];
        uint64_t h = hash_masked(e->value, t, seed);
        for (uint32_t s = (uint32_t) h & t->slot_mask;; s = (s + 1) & t->slot_mask) {
            int32_t cur = t->slots[s];
            if (cur < 0) {
                t->slots[s] = (int32_t) i;
                break;
            }
            if (!memcmp(dc->decisive[cur].value, e->value, sizeof e->value)) {
                break;          /* shadowed by an earlier, heavier entry */
            }
        }
    }
    free(counts);
    free(table_of);
    return error;
}

static void
free_tables(struct dir_class *dc)
{
    if (dc->tables) {
        for (uint32_t t = 0; t < dc->n_tables; t++) {
            free(dc->tables[t].slots);
        }
    }
    free(dc->tables);
    dc->tables = NULL;
    dc->n_tables = 0;
}

static int
compile_dir(struct vs_acl *acl, int dir, struct dir_class *dc)
{
    struct entry *all = NULL;
    uint32_t n = 0, cap = 0;
    int error = 0;

    for (uint32_t i = 0; i < acl->n_rules && !error; i++) {
        if (acl->rules[i].dirs & dir) {
            error = expand_rule(&acl->rules[i], i, &all, &n, &cap);
        }
    }
    if (error) {
        free(all);
        return error;
    }
    if (n) {
        qsort(all, n, sizeof *all, by_weight_desc);
    }
    dc->decisive = malloc((n ? n : 1) * sizeof *dc->decisive);
    dc->meters = malloc((n ? n : 1) * sizeof *dc->meters);
    dc->l4_deny = malloc((n ? n : 1) * sizeof *dc->l4_deny);
    if (!dc->decisive || !dc->meters || !dc->l4_deny) {
        free(all);
        return ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (all[i].action == VS_ACL_METER) {
            dc->meters[dc->n_meters++] = all[i];
            continue;
        }
        if (all[i].action == VS_ACL_DENY && needs_ip(&all[i])) {
            dc->l4_deny[dc->n_l4_deny++] = dc->n_decisive;
        }
        dc->decisive[dc->n_decisive++] = all[i];
    }
    free(all);
    if (dc->n_decisive <= VS_ACL_LINEAR_MIN) {
        return 0;
    }
    error = build_tables(dc, acl->seed);
    if (error) {
        return error;
    }
    /* A table probe costs about two masked compares (bench/acl_bench.c):
     * a short list over many masks scans faster than it hashes. */
    if (dc->n_decisive <= VS_ACL_LINEAR_MAX && dc->n_tables * 2 >= dc->n_decisive) {
        free_tables(dc);
    }
    return 0;
}

static int
check_rule(const struct vs_acl_rule *r)
{
    if (!r->dirs || (r->dirs & ~(VS_ACL_IN | VS_ACL_OUT))
        || r->action > VS_ACL_METER
        || (r->stateful && r->action != VS_ACL_ALLOW)
        || r->local_port_lo > r->local_port_hi
        || r->remote_port_lo > r->remote_port_hi) {
        return EINVAL;
    }
    return 0;
}

/* Compiles the 'n_rules' rules at 'rules' (any order) with default action
 * 'default_action' (VS_ACL_ALLOW or VS_ACL_DENY), with counters for
 * 'n_ctx' contexts (the switch's workers + 1), into '*out'.  Returns 0,
 * EINVAL for a bad rule or ENOMEM. */
int
vs_acl_new(const struct vs_acl_rule *rules, uint32_t n_rules,
           int default_action, uint32_t n_ctx, struct vs_acl **out)
{
    *out = NULL;
    if (n_rules > VS_ACL_MAX_RULES || n_ctx < 1
        || (default_action != VS_ACL_ALLOW && default_action != VS_ACL_DENY)) {
        return EINVAL;
    }
    for (uint32_t i = 0; i < n_rules; i++) {
        if (check_rule(&rules[i])) {
            return EINVAL;
        }
    }
    struct vs_acl *acl = calloc(1, sizeof *acl);
    if (!acl) {
        return ENOMEM;
    }
    acl->n_rules = n_rules;
    acl->default_action = default_action;
    acl->seed = vs_hash64((uintptr_t) acl, UINT64_C(0x2545f4914f6cdd1d));
    acl->rules = malloc((n_rules ? n_rules : 1) * sizeof *rules);
    acl->n_ctx = n_ctx;
    acl->row_len = 2 * n_rules + 4;
    acl->counters = calloc((size_t) n_ctx * acl->row_len, sizeof(uint64_t));
    acl->cache = calloc((size_t) n_ctx * VS_ACL_CACHE_SIZE, sizeof *acl->cache);
    if (!acl->rules || !acl->counters || !acl->cache) {
        vs_acl_free(acl);
        return ENOMEM;
    }
    memcpy(acl->rules, rules, n_rules * sizeof *rules);
    for (uint32_t i = 0; i < n_rules; i++) {
        acl->has_stateful |= rules[i].stateful;
    }
    int error = compile_dir(acl, VS_ACL_IN, &acl->dirs[0]);
    if (!error) {
        error = compile_dir(acl, VS_ACL_OUT, &acl->dirs[1]);
    }
    if (error) {
        vs_acl_free(acl);
        return error;
    }
    *out = acl;
    return 0;
}

void
vs_acl_free(struct vs_acl *acl)
{
    if (!acl) {
        return;
    }
    for (int d = 0; d < 2; d++) {
        struct dir_class *dc = &acl->dirs[d];
        free_tables(dc);
        free(dc->decisive);
        free(dc->meters);
        free(dc->l4_deny);
    }
    free(acl->rules);
    free(acl->counters);
    free(acl->cache);
    free(acl);
}

uint32_t
vs_acl_n_rules(const struct vs_acl *acl)
{
    return acl->n_rules;
}

/* Hash tables direction 'dir' searches (0: it scans linearly). */
uint32_t
vs_acl_n_tables(const struct vs_acl *acl, int dir)
{
    return acl->dirs[dir_index(dir)].n_tables;
}

int
vs_acl_default_action(const struct vs_acl *acl)
{
    return acl->default_action;
}

/* Whether direction 'dir' has anything to evaluate: any rule, or a
 * default that denies. */
int
vs_acl_has_dir(const struct vs_acl *acl, int dir)
{
    const struct dir_class *dc = &acl->dirs[dir_index(dir)];
    return dc->n_decisive || dc->n_meters || acl->default_action != VS_ACL_ALLOW;
}

int
vs_acl_has_stateful(const struct vs_acl *acl)
{
    return acl->has_stateful;
}

const struct vs_acl_rule *
vs_acl_rule(const struct vs_acl *acl, uint32_t index)
{
    return index < acl->n_rules ? &acl->rules[index] : NULL;
}

/* --- Classifying ------------------------------------------------------------- */

/* Counts one frame of 'bytes' against rule 'rule' (-1: the default action
 * of direction 'dir') in context 'ctx''s row. */
void
vs_acl_count(const struct vs_acl *acl, int dir, int32_t rule, uint32_t ctx,
             uint64_t bytes)
{
    if (ctx >= acl->n_ctx) {
        return;
    }
    uint64_t *row = acl->counters + (size_t) ctx * acl->row_len;
    uint32_t i = rule >= 0 ? 2 * (uint32_t) rule
                           : 2 * acl->n_rules + 2 * (uint32_t) dir_index(dir);
    __atomic_store_n(&row[i], row[i] + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&row[i + 1], row[i + 1] + bytes, __ATOMIC_RELAXED);
}

static int32_t
lookup_tables(const struct dir_class *dc, const uint64_t *k, uint64_t seed)
{
    int32_t best = -1;
    uint32_t best_w = 0;

    for (uint32_t t = 0; t < dc->n_tables; t++) {
        const struct table *tb = &dc->tables[t];
        if (best >= 0 && tb->best_weight <= best_w) {
            break;      /* no entry of this or a later table outweighs it */
        }
        uint64_t h = hash_masked(k, tb, seed);
        for (uint32_t s = (uint32_t) h & tb->slot_mask;; s = (s + 1) & tb->slot_mask) {
            int32_t cur = tb->slots[s];
            if (cur < 0) {
                break;
            }
            const struct entry *e = &dc->decisive[cur];
            if (table_entry_matches(e, tb, k)) {
                if (best < 0 || e->weight > best_w) {
                    best = cur;
                    best_w = e->weight;
                }
                break;
            }
        }
    }
    return best;
}

/* The decision for 'k' in 'dc' by search: the deciding entry's index or
 * -1, and into 'meters' (up to 'max_meters', counted in '*n_meters', which
 * may exceed it) the rules of the meters that outweigh it and match. */
static int32_t
search(const struct vs_acl *acl, const struct dir_class *dc, const uint64_t *k,
       uint32_t *meters, uint32_t max_meters, uint32_t *n_meters)
{
    int32_t best = -1;

    if (dc->tables) {
        best = lookup_tables(dc, k, acl->seed);
    } else {
        for (uint32_t i = 0; i < dc->n_decisive; i++) {
            if (entry_matches(&dc->decisive[i], k)) {
                best = (int32_t) i;
                break;
            }
        }
    }
    const struct entry *decider = best >= 0 ? &dc->decisive[best] : NULL;
    *n_meters = 0;
    for (uint32_t i = 0; i < dc->n_meters; i++) {
        const struct entry *m = &dc->meters[i];
        if (decider && m->weight < decider->weight) {
            break;
        }
        /* The entries of one rule cover disjoint port prefixes: at most
         * one of them matches, so a meter counts once. */
        if (entry_matches(m, k)) {
            if (*n_meters < max_meters) {
                meters[*n_meters] = m->rule;
            }
            (*n_meters)++;
        }
    }
    return best;
}

static uint64_t
hash_key(const uint64_t *k, uint64_t seed)
{
    uint64_t h = seed;
    for (int i = 0; i < KEY_WORDS; i++) {
        h = (h ^ k[i]) * UINT64_C(0x9e3779b97f4a7c15);
        h ^= h >> 29;
    }
    return vs_hash64(h, seed);
}

/* Classifies 'key' in direction 'dir': the deciding rule or the default,
 * into '*out'.  Counts meters that outweigh the decision and the decision
 * itself in context 'ctx''s row, unless 'count' is zero (then nothing at
 * all is written: trace, tests).
 *
 * Counting callers of a tuple space search go through the context's
 * decision cache first (as Open vSwitch's exact-match cache): the last two
 * keys seen in a set and what they decided.  The ACL is immutable, so an entry is right for as long as
 * the ACL lives; each context writes only its own slots. */
void
vs_acl_classify(const struct vs_acl *acl, int dir, const struct vs_acl_key *key,
                uint32_t ctx, uint64_t bytes, int count,
                struct vs_acl_verdict *out)
{
    const struct dir_class *dc = &acl->dirs[dir_index(dir)];
    uint64_t k[KEY_WORDS];
    uint32_t meters[VS_ACL_CACHE_METERS + 1];
    uint32_t n_meters = 0;
    int32_t best;

    key_words(key, k);
    /* tcp_flags (the key's last byte) is never matched: keep it out of
     * the cache key, so a flow's SYN and its data share an entry. */
    k[KEY_WORDS - 1] &= ~(UINT64_C(0xff) << 56);
    struct cache_entry *ce = NULL;
    uint8_t tag = (uint8_t) (dir_index(dir) + 1);
    /* A linear scan of a few entries costs what a cache lookup does
     * (bench/acl_bench.c): only searches through tables are cached. */
    if (count && ctx < acl->n_ctx && dc->tables) {
        /* Two ways per set: a new key goes in way 0, pushing way 0 to 1. */
        uint64_t h = hash_key(k, acl->seed) ^ (uint64_t) tag;
        struct cache_entry *set = &acl->cache[(size_t) ctx * VS_ACL_CACHE_SIZE
                                              + (h & (VS_ACL_CACHE_SIZE / 2 - 1)) * 2];
        for (int way = 0; way < 2; way++) {
            if (set[way].tag == tag && !memcmp(set[way].key, k, sizeof k)) {
                best = set[way].decider;
                n_meters = set[way].n_meters;
                memcpy(meters, set[way].meters, n_meters * sizeof *meters);
                goto decided;
            }
        }
        set[1] = set[0];
        ce = &set[0];
    }
    best = search(acl, dc, k, meters, VS_ACL_CACHE_METERS, &n_meters);
    if (n_meters > VS_ACL_CACHE_METERS) {
        /* More meters than an entry holds: count them by a search that
         * keeps them all, and cache nothing. */
        ce = NULL;
        if (count) {
            for (uint32_t i = 0; i < dc->n_meters; i++) {
                const struct entry *m = &dc->meters[i];
                if (best >= 0 && m->weight < dc->decisive[best].weight) {
                    break;
                }
                if (entry_matches(m, k)) {
                    vs_acl_count(acl, dir, (int32_t) m->rule, ctx, bytes);
                }
            }
        }
        n_meters = 0;
    } else if (ce) {
        memcpy(ce->key, k, sizeof k);
        ce->tag = tag;
        ce->decider = best;
        ce->n_meters = (uint8_t) n_meters;
        memcpy(ce->meters, meters, n_meters * sizeof *meters);
    }
decided:
    if (count) {
        for (uint32_t i = 0; i < n_meters; i++) {
            vs_acl_count(acl, dir, (int32_t) meters[i], ctx, bytes);
        }
    }
    const struct entry *decider = best >= 0 ? &dc->decisive[best] : NULL;
    if (decider) {
        out->action = decider->action;
        out->rule = (int32_t) decider->rule;
    } else {
        out->action = acl->default_action;
        out->rule = -1;
    }
    if (count) {
        vs_acl_count(acl, dir, out->rule, ctx, bytes);
    }
}

/* For a key with VS_ACL_F_L4_MISSING: whether a DENY that needs IP or L4
 * fields could have matched, judged on the fields the frame did carry.
 * Rare (truncated or evasive frames), so a linear scan. */
int
vs_acl_l4_deny_possible(const struct vs_acl *acl, int dir,
                        const struct vs_acl_key *key)
{
    const struct dir_class *dc = &acl->dirs[dir_index(dir)];
    struct vs_acl_key known;
    uint64_t k[KEY_WORDS], kn[KEY_WORDS];

    memset(&known, 0xff, sizeof known);
    known.local_port = known.remote_port = 0;
    known.icmp_type = 0;
    known.flags = (uint8_t) ~VS_ACL_F_L4;
    if (!(key->flags & VS_ACL_F_IP)) {
        memset(known.local_ip, 0, sizeof known.local_ip);
        memset(known.remote_ip, 0, sizeof known.remote_ip);
        known.proto = 0;
        known.flags = 0;
    }
    key_words(key, k);
    key_words(&known, kn);
    for (uint32_t i = 0; i < dc->n_l4_deny; i++) {
        const struct entry *e = &dc->decisive[dc->l4_deny[i]];
        uint64_t diff = 0;
        for (int w = 0; w < KEY_WORDS; w++) {
            diff |= (k[w] & e->mask[w] & kn[w]) ^ (e->value[w] & kn[w]);
        }
        if (!diff) {
            return 1;
        }
    }
    return 0;
}

/* Sums every context's counters into 'out' (2 * n_rules + 4 values, see
 * vs_acl.h).  Any thread. */
void
vs_acl_counters(const struct vs_acl *acl, uint64_t *out)
{
    memset(out, 0, acl->row_len * sizeof *out);
    for (uint32_t c = 0; c < acl->n_ctx; c++) {
        const uint64_t *row = acl->counters + (size_t) c * acl->row_len;
        for (uint32_t i = 0; i < acl->row_len; i++) {
            out[i] += __atomic_load_n(&row[i], __ATOMIC_RELAXED);
        }
    }
}

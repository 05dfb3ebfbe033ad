/*
 * vs_acl_sessions.h: the switch's table of stateful ACL sessions.
 *
 * What it is for: an ALLOW rule with `stateful = true` opens a session on
 * the first frame it passes; frames of that session pass in both
 * directions without rule evaluation, so "out: allow tcp stateful, in:
 * deny all" lets a VM open connections and get the answers.
 *
 * A session is keyed by (port, protocol, local IP, remote IP, local port,
 * remote port), with local/remote as in vs_acl.h, so a frame and its reply
 * have the same key.  It remembers the rule that opened it (its stable id:
 * a reload keeps sessions whose rule still exists, vs_acl_sessions_prune()
 * drops the others), when it was last seen, and for TCP which of SYN, FIN
 * and RST each side has sent:
 *   - one side's SYN only (opening):          VS_ACL_TCP_OPENING_S
 *   - RST, or FIN from both sides (closing):  VS_ACL_TCP_CLOSING_S
 *   - otherwise, and for every other protocol: the rule's idle timeout.
 * An expired session no longer matches; vs_acl_sessions_expire() (the
 * control plane's 1 s timer) frees its slot.
 *
 * Capacity is fixed ([switch] acl_sessions).  When that many sessions are
 * live a new one is refused (ENOSPC: the caller denies the frame and counts
 * acl_sessions_full) and existing ones keep working.
 *
 * Threads and memory: one table shared by every worker, no lock.  Open
 * addressing with linear probing over twice 'capacity' slots, probing at
 * most VS_ACL_SESSION_PROBE slots.  Each slot has a state word: EMPTY,
 * BUSY (being written), LIVE, DEAD (removed; reused by inserts, skipped by
 * lookups), plus a version bumped on every claim.  A lookup reads the state
 * (acquire), the key, then the state again: a slot rewritten meanwhile is
 * not taken for a match (a seqlock per slot; readers never write except the
 * last-seen time and TCP flags, with relaxed stores and atomic ORs).  Two
 * workers opening the same session at the same instant may both insert it;
 * the twin is harmless (both match, both expire) and counts once too many
 * until it does.
 *
 * Time is an argument ('now_ns', CLOCK_MONOTONIC in workers; tests pass
 * their own).
 */
#ifndef VS_ACL_SESSIONS_H
#define VS_ACL_SESSIONS_H 1

#include <stdint.h>

#include "vs_acl.h"

#define VS_ACL_SESSIONS_MAX (1u << 24)
#define VS_ACL_SESSION_PROBE 32
#define VS_ACL_TCP_OPENING_S 30
#define VS_ACL_TCP_CLOSING_S 10

/* TCP flags seen, per side ("out" = sent by the VM). */
#define VS_ACL_TCP_SYN_OUT 1
#define VS_ACL_TCP_SYN_IN 2
#define VS_ACL_TCP_FIN_OUT 4
#define VS_ACL_TCP_FIN_IN 8
#define VS_ACL_TCP_RST 16

struct vs_acl_sessions;

/* One session as vs_acl_sessions_dump() reports it. */
struct vs_acl_session_info {
    uint32_t port;
    uint8_t proto;
    uint8_t ip6;
    uint8_t dir;                /* direction of the frame that opened it */
    uint8_t tcp;                /* VS_ACL_TCP_* */
    uint8_t local_ip[16];
    uint8_t remote_ip[16];
    uint16_t local_port;
    uint16_t remote_port;
    uint32_t timeout_s;         /* what applies in its current state */
    uint64_t rule_id;
    uint64_t age_ns;            /* since it was opened */
    uint64_t idle_ns;           /* since its last frame */
};

/* Basics. */
int vs_acl_sessions_new(uint32_t capacity, struct vs_acl_sessions **out);
void vs_acl_sessions_free(struct vs_acl_sessions *);
uint32_t vs_acl_sessions_capacity(const struct vs_acl_sessions *);
uint32_t vs_acl_sessions_live(const struct vs_acl_sessions *);

/* Forwarding (any worker). */
int vs_acl_session_match(struct vs_acl_sessions *, uint32_t port,
                         const struct vs_acl_key *, int dir, uint64_t now_ns,
                         int update);
int vs_acl_session_open(struct vs_acl_sessions *, uint32_t port,
                        const struct vs_acl_key *, int dir, uint64_t rule_id,
                        uint32_t idle_timeout_s, uint64_t now_ns);

/* Removal (control thread).  Each returns how many sessions it removed
 * and, when 'per_port' is not NULL, adds them up per port id there
 * (VS_MAX_PORTS entries). */
uint32_t vs_acl_sessions_expire(struct vs_acl_sessions *, uint64_t now_ns,
                                uint32_t *per_port);
uint32_t vs_acl_sessions_flush(struct vs_acl_sessions *, int32_t port,
                               uint32_t *per_port);
uint32_t vs_acl_sessions_prune(struct vs_acl_sessions *, uint32_t port,
                               const uint64_t *keep_ids, uint32_t n_keep,
                               uint32_t *per_port);

/* Reading (any thread). */
uint32_t vs_acl_sessions_dump(const struct vs_acl_sessions *, int32_t port,
                              uint64_t now_ns, struct vs_acl_session_info *out,
                              uint32_t max);
void vs_acl_sessions_count(const struct vs_acl_sessions *, uint64_t now_ns,
                           uint32_t *per_port);

#endif /* vs_acl_sessions.h */

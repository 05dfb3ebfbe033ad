/*
 * vs_guard.h: per-port security guards, Hyper-V style.
 *
 * What it is for: a port facing an untrusted VM may be told which source
 * MACs it may use (allowed_macs), how many MACs it may own in the MAC table
 * (max_macs), that it is no DHCP server (dhcp_guard) and no router
 * (router_guard), and how many broadcast, multicast and unknown-unicast
 * frames per second it may send (storm control).  Every frame a guard
 * refuses is counted under its own drop reason on the ingress port.
 *
 * Where it runs: vs_guard_ingress() from classify(), after the VLAN is known
 * and before the source is learned, so a refused frame is never learned;
 * vs_guard_flood() from deliver(), where a unicast frame is about to be
 * flooded (whether a destination is unknown is only known after lookup, so
 * an unknown-unicast frame refused by storm control has already been
 * learned).  Ingress order: mac_spoof, dhcp_guard, router_guard, storm,
 * max_macs; max_macs comes last because it records the source as admitted.
 *
 * Cost when no guard is configured: vs_guard_active() is one test of the
 * port's six scalar guard fields (28 adjacent bytes of vs_port_params, OR-ed
 * together; no derived flag to keep in sync); nothing else runs.
 *
 * State.  Guard parameters live in the port's immutable vs_port_params.
 * The mutable state (token buckets, admitted MACs) is per (context, port):
 * each worker context owns a `struct vs_guard` and is its only writer, so
 * the hot path takes no lock and does no atomic read-modify-write.  The
 * state survives config publications; it is re-derived from the config
 * lazily, the first time a context forwards a frame of the port under a new
 * config generation.
 *
 * Storm control: a token bucket per (context, port, class).  A port's rx
 * queues may be spread over k workers; each worker's bucket refills at
 * rate/k and holds rate/k frames (a frame costs k tokens of a bucket that
 * refills at 'rate' tokens per second and holds one second of them), so in
 * any interval of t seconds the port passes at most rate * (t + 1) frames of
 * the class, summed over its workers.  k is the number of workers the
 * config assigns the port's queues to (1 for the control thread's context,
 * which polls every queue).  The price of no shared state: a port whose
 * traffic sits on one of its k queues is held to rate/k.  A bucket starts
 * full and is refilled from the time of the burst ('now_ns': CLOCK_MONOTONIC
 * in workers, the caller's clock in seconds for vs_switch_poll_once()).
 *
 * max_macs: the MAC table (owned elsewhere, no callbacks) is the truth of
 * what is learned on the port; entries leave it by aging, flushing and
 * moves without telling us.  So each context records in a small hash set
 * the (VLAN, MAC) keys it admitted for the port, and publishes the set's
 * size.  For a frame from source K on port P with limit N:
 *   1. K is in the MAC table on P: pass (the common case: one lookup).
 *   2. R = the sum of every context's set size for P (relaxed loads).  Each
 *      entry of the table on P is in some set, so R >= live entries.  If
 *      K is in our set and R <= N, or K is not and R + 1 <= N: admit.
 *   3. Otherwise reclaim, at most once per second per (context, port):
 *      drop from our set the keys no longer on P in the MAC table, count
 *      the keys of the other contexts' sets that are still on P (and not
 *      in ours), and admit K if that live count + 1 <= N.
 *   4. Otherwise drop (reason max_macs).
 * Accuracy: with one worker polling the port (every single-queue port) the
 * limit is exact.  With k workers admitting new sources of the port at the
 * same instant, each may decide on a count that does not yet include the
 * others' admissions, so the port may hold up to N + k - 1 entries.  Counts
 * err high otherwise (a key recorded by two contexts is counted twice until
 * reclaimed), which refuses a new source early, at most until the next
 * reclaim finds the stale keys.  A new source refused at the limit is
 * retried by its next frame; once an old address has aged out it gets in
 * within a second.  Entries learned before max_macs was set are in no set:
 * the control plane flushes the port's MAC entries when max_macs changes.
 * A port id reused by a new port inherits the old records (and buckets);
 * the records are stale and go at the first reclaim.
 *
 * Memory: a context's admitted-key set only grows (to 2 * N rounded up to a
 * power of two); a replaced, smaller set is kept until the context is freed,
 * because another context may be reading it: at most twice the largest set.
 * Other contexts read set slots with relaxed atomic loads (a slot is one
 * 64-bit word, never torn); a set rebuilt in place during a reclaim may be
 * read half-rebuilt, which can only undercount by the k - 1 bound above.
 */
#ifndef VS_GUARD_H
#define VS_GUARD_H 1

#include <stdint.h>

#include "vs_worker.h"

/* Most entries in a port's allowed_macs. */
#define VS_GUARD_MAX_ALLOWED_MACS 64

struct vs_guard;

/* Basics. */
struct vs_guard *vs_guard_new(void);
void vs_guard_free(struct vs_guard *);

/* Whether port 'p' has any ingress guard configured. */
static inline int
vs_guard_active(const struct vs_port_params *p)
{
    return (p->n_allowed_macs | p->max_macs | p->dhcp_guard | p->router_guard
            | p->broadcast_pps | p->multicast_pps) != 0;
}

/* Checking. */
int vs_guard_ingress(struct vs_ctx *, const struct vs_config *,
                     const struct vs_port *in, const struct vs_pkt *,
                     uint32_t now_s);
int vs_guard_flood_slow(struct vs_ctx *, const struct vs_config *,
                        const struct vs_port *in);

/* Checks unknown-unicast storm control for 'pkt', about to be flooded from
 * port 'in'.  Returns 0 to flood it or a drop reason. */
static inline int
vs_guard_flood(struct vs_ctx *ctx, const struct vs_config *cfg,
               const struct vs_port *in, const struct vs_pkt *pkt)
{
    if (!in->p.unknown_unicast_pps || vs_mac_is_multicast(pkt->data)) {
        return 0;
    }
    return vs_guard_flood_slow(ctx, cfg, in);
}

#endif /* vs_guard.h */

/*
 * vs_policy.h: the ACL stage of the pipeline: a port's rules and its
 * stateful sessions.  (Bandwidth limits come after it, in vs_qos.h.)
 *
 * Where it runs (vs_forward.c), in the VM's terms:
 *  - OUT, traffic from the VM: vs_policy_out() from classify(), once the
 *    VLAN is known and the guards have passed the frame, before its source
 *    is learned, so a denied frame teaches the switch nothing.
 *  - IN, traffic toward the VM: vs_policy_in() from deliver(), for each
 *    destination port, after lookup and before the frame is handed to the
 *    port (a flooded frame may be denied on one port and delivered to the
 *    others).
 * Order within a direction: sessions, then rules.  Bandwidth limits run
 * after both directions' ACLs (deliver(), vs_qos.h), so a frame the ACL
 * refuses costs no tokens.
 *
 * Batch semantics: none beyond the frame; each frame is judged against the
 * sessions and buckets as earlier frames of the burst left them.
 *
 * Cost when a port has no ACL: vs_policy_*_active() tests one field of
 * its params; nothing else runs.
 *
 * Returns: 0 to pass the frame, or the drop reason to count on the port
 * whose policy refused it: acl_deny, acl_default, acl_sessions_full,
 * acl_unparsable.
 */
#ifndef VS_POLICY_H
#define VS_POLICY_H 1

#include "vs_acl.h"
#include "vs_worker.h"

static inline int
vs_policy_out_active(const struct vs_port_params *p)
{
    return p->acl != NULL;
}

static inline int
vs_policy_in_active(const struct vs_port_params *p)
{
    return p->acl != NULL;
}

/* A frame's IN key, parsed once for all the destinations that need it. */
struct vs_policy_key {
    int parsed;
    struct vs_acl_key key;
};

int vs_policy_out(struct vs_ctx *, const struct vs_port *in,
                  const struct vs_pkt *);
int vs_policy_in(struct vs_ctx *, const struct vs_port *out,
                 const struct vs_pkt *, struct vs_policy_key *);

#endif /* vs_policy.h */

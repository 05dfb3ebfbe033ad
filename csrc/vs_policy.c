/*
 * vs_policy.c: the policy stage (design in vs_policy.h, vs_acl.h,
 * vs_acl_sessions.h and vs_qos.h).
 */
#define _GNU_SOURCE
#include <errno.h>

#include "vs_acl_sessions.h"
#include "vs_policy.h"
#include "vs_qos.h"

/* Judges 'pkt' with key 'key' in direction 'dir' against the ACL of port
 * 'port'.  Returns 0 or a drop reason. */
static int
acl_check(struct vs_ctx *ctx, const struct vs_port *port,
          const struct vs_pkt *pkt, const struct vs_acl_key *key, int dir)
{
    const struct vs_acl *acl = port->p.acl;
    struct vs_acl_sessions *sessions = ctx->sw->sessions;
    struct vs_acl_verdict v;

    if (vs_acl_has_stateful(acl) && (key->flags & VS_ACL_F_IP) && sessions
        && vs_acl_session_match(sessions, port->p.id, key, dir, ctx->now_ns, 1)) {
        return 0;
    }
    vs_acl_classify(acl, dir, key, ctx->index, pkt->len, 1, &v);
    if (v.action == VS_ACL_DENY) {
        return v.rule >= 0 ? VS_C_DROP_ACL_DENY : VS_C_DROP_ACL_DEFAULT;
    }
    if ((key->flags & VS_ACL_F_L4_MISSING) && vs_acl_l4_deny_possible(acl, dir, key)) {
        return VS_C_DROP_ACL_UNPARSABLE;
    }
    if (v.rule >= 0 && sessions) {
        const struct vs_acl_rule *rule = vs_acl_rule(acl, (uint32_t) v.rule);
        if (rule->stateful && (key->flags & VS_ACL_F_IP)
            && vs_acl_session_open(sessions, port->p.id, key, dir, rule->id,
                                   rule->idle_timeout_s, ctx->now_ns) == ENOSPC) {
            return VS_C_DROP_ACL_SESSIONS_FULL;
        }
    }
    return 0;
}

/* Polices 'pkt' against port 'port''s limit 'bps' in direction slot 'slot'
 * (0 out, 1 in). */
static int
qos_check(struct vs_ctx *ctx, const struct vs_port *port,
          const struct vs_pkt *pkt, uint64_t bps, int slot)
{
    _Atomic uint64_t *tat = &ctx->sw->qos_tat[port->p.id][slot];
    uint64_t bytes = vs_qos_wire_bytes(pkt->len, &pkt->vh);
    if (vs_qos_conform(tat, ctx->now_ns, bytes, bps, port->p.max_burst_bytes, 1)) {
        return 0;
    }
    vs_count(ctx, port->p.id, slot ? VS_C_QOS_DROPPED_IN_BYTES : VS_C_QOS_DROPPED_OUT_BYTES,
             bytes);
    return slot ? VS_C_DROP_QOS_IN : VS_C_DROP_QOS_OUT;
}

/* The OUT stage for 'pkt', received on port 'in'.  Returns 0 or a drop
 * reason (vs_policy.h). */
int
vs_policy_out(struct vs_ctx *ctx, const struct vs_port *in, const struct vs_pkt *pkt)
{
    if (in->p.acl && vs_acl_has_dir(in->p.acl, VS_ACL_OUT)) {
        struct vs_acl_key key;
        vs_acl_parse(pkt->data, pkt->len, pkt->inner_off, pkt->vlan, VS_ACL_OUT, &key);
        int r = acl_check(ctx, in, pkt, &key, VS_ACL_OUT);
        if (r) {
            return r;
        }
    }
    return in->p.max_bps_out ? qos_check(ctx, in, pkt, in->p.max_bps_out, 0) : 0;
}

/* The IN stage for 'pkt', about to leave through port 'out'; 'cache'
 * holds the frame's IN key once parsed.  Returns 0 or a drop reason. */
int
vs_policy_in(struct vs_ctx *ctx, const struct vs_port *out, const struct vs_pkt *pkt,
             struct vs_policy_key *cache)
{
    if (out->p.acl && vs_acl_has_dir(out->p.acl, VS_ACL_IN)) {
        if (!cache->parsed) {
            vs_acl_parse(pkt->data, pkt->len, pkt->inner_off, pkt->vlan, VS_ACL_IN,
                         &cache->key);
            cache->parsed = 1;
        }
        int r = acl_check(ctx, out, pkt, &cache->key, VS_ACL_IN);
        if (r) {
            return r;
        }
    }
    return out->p.max_bps_in ? qos_check(ctx, out, pkt, out->p.max_bps_in, 1) : 0;
}

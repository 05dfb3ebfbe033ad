/*
 * vs_policy.c: the ACL stage (design in vs_policy.h, vs_acl.h and
 * vs_acl_sessions.h).
 */
#define _GNU_SOURCE
#include <errno.h>

#include "vs_acl_sessions.h"
#include "vs_policy.h"
#include "vs_trace.h"

/* Judges 'pkt' with key 'key' in direction 'dir' against the ACL of port
 * 'port'.  Returns 0 or a drop reason. */
static int
acl_check(struct vs_ctx *ctx, const struct vs_port *port,
          const struct vs_pkt *pkt, const struct vs_acl_key *key, int dir)
{
    const struct vs_acl *acl = port->p.acl;
    struct vs_acl_sessions *sessions = ctx->sw->sessions;
    const char *way = dir == VS_ACL_OUT ? "out" : "in";
    int live = ctx->trace == NULL;      /* a trace changes nothing: no counts, no sessions */
    struct vs_acl_verdict v;

    if (vs_acl_has_stateful(acl) && (key->flags & VS_ACL_F_IP) && sessions
        && vs_acl_session_match(sessions, port->p.id, key, dir, ctx->now_ns, live)) {
        vs_trace_note(ctx, VS_TRACE_ACL, "port %u %s: session of a stateful rule: allow",
                      port->p.id, way);
        return 0;
    }
    vs_acl_classify(acl, dir, key, ctx->index, pkt->len, live, &v);
    const struct vs_acl_rule *rule = v.rule >= 0 ? vs_acl_rule(acl, (uint32_t) v.rule) : NULL;
    if (rule) {
        vs_trace_note(ctx, VS_TRACE_ACL, "port %u %s: rule #%d (weight %u): %s%s", port->p.id,
                      way, v.rule, rule->weight, v.action == VS_ACL_DENY ? "deny" : "allow",
                      rule->stateful ? ", stateful" : "");
    } else {
        vs_trace_note(ctx, VS_TRACE_ACL, "port %u %s: no rule matched: default %s", port->p.id,
                      way, v.action == VS_ACL_DENY ? "deny" : "allow");
    }
    if (v.action == VS_ACL_DENY) {
        return rule ? VS_C_DROP_ACL_DENY : VS_C_DROP_ACL_DEFAULT;
    }
    if ((key->flags & VS_ACL_F_L4_MISSING) && vs_acl_l4_deny_possible(acl, dir, key)) {
        vs_trace_note(ctx, VS_TRACE_ACL, "port %u %s: header cut short where a deny needs it",
                      port->p.id, way);
        return VS_C_DROP_ACL_UNPARSABLE;
    }
    if (rule && rule->stateful && (key->flags & VS_ACL_F_IP) && sessions) {
        if (!live) {
            vs_trace_note(ctx, VS_TRACE_ACL, "port %u %s: would open a session", port->p.id,
                          way);
        } else if (vs_acl_session_open(sessions, port->p.id, key, dir, rule->id,
                                       rule->idle_timeout_s, ctx->now_ns) == ENOSPC) {
            return VS_C_DROP_ACL_SESSIONS_FULL;
        }
    }
    return 0;
}

/* The OUT stage for 'pkt', received on port 'in'.  Returns 0 or a drop
 * reason (vs_policy.h). */
int
vs_policy_out(struct vs_ctx *ctx, const struct vs_port *in, const struct vs_pkt *pkt)
{
    if (in->p.acl && vs_acl_has_dir(in->p.acl, VS_ACL_OUT)) {
        struct vs_acl_key key;
        vs_acl_parse(pkt->data, pkt->len, pkt->inner_off, pkt->vlan, VS_ACL_OUT, &key);
        return acl_check(ctx, in, pkt, &key, VS_ACL_OUT);
    }
    return 0;
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
        return acl_check(ctx, out, pkt, &cache->key, VS_ACL_IN);
    }
    return 0;
}

/*
 * vs_trace.h: packet trace, the real pipeline with a recorder attached.
 *
 * What it is for: `vswitchctl trace PORT FLOW` answers "what would the
 * switch do with this frame, and why" by running the frame through the very
 * functions that forward real frames (vs_forward_burst() and everything it
 * calls), on a private context whose 'trace' pointer is set.  Trace and
 * forwarding cannot disagree: they are one code path.
 *
 * Record-only mode.  A trace context is created per trace and destroyed
 * after it, so whatever the pipeline writes into a context (its counters,
 * its guard state: token buckets, admitted MACs) is private and thrown
 * away: no counter of the switch moves.  The three effects that reach
 * outside a context are each turned off by one test of ctx->trace where
 * they happen: learning (classify()), transmission (send_now() and the tx
 * queue in egress(); mirror copies) and captures.  Storm control therefore
 * sees full buckets: a trace shows what the rules do, not how much of the
 * current second's budget is left.
 *
 * Recording.  A stage says what it decided with vs_trace_note(ctx, STAGE,
 * fmt, ...), a no-op unless ctx->trace is set (one predictable branch on
 * the forwarding path); a new stage (ACLs, QoS) adds its VS_TRACE_* name to
 * VS_TRACE_STAGES and calls vs_trace_note() where it decides.  Drops are
 * recorded from the drop counters the trace context ends with, per port.
 *
 * Threads: vs_switch_trace() runs in the control thread, like
 * vs_switch_publish() (never at the same time: it reads the current config
 * without holding a grace period), while the workers keep forwarding.
 */
#ifndef VS_TRACE_H
#define VS_TRACE_H 1

#include <stdint.h>

#include "vs_switch.h"

#define VS_TRACE_TEXT_MAX 16384
#define VS_TRACE_MAX_DROPS 64

/* X(ENUM, "name") in pipeline order. */
#define VS_TRACE_STAGES(X)                  \
    X(INGRESS, "ingress")                   \
    X(VLAN, "vlan")                         \
    X(GUARD, "guard")                       \
    X(ACL, "acl")                           \
    X(LEARN, "learn")                       \
    X(LOOKUP, "lookup")                     \
    X(FLOOD, "flood")                       \
    X(QOS, "qos")                           \
    X(EGRESS, "egress")                     \
    X(OFFLOAD, "offload")                   \
    X(MIRROR, "mirror")                     \
    X(DROP, "drop")

#define VS_TRACE_ENUM(ENUM, NAME) VS_TRACE_##ENUM,
enum vs_trace_stage {
    VS_TRACE_STAGES(VS_TRACE_ENUM)
    VS_TRACE_N_STAGES
};
#undef VS_TRACE_ENUM

/* What one trace found.  'text' holds one line per decision,
 * "STAGE<TAB>what was decided\n", in the order they were made. */
struct vs_trace_result {
    int32_t drop_reason;        /* first drop counter hit on ingress, -1 = none */
    uint32_t n_egress;          /* ports the frame would leave through */
    uint32_t egress[VS_MAX_PORTS];          /* their ids, in send order */
    uint32_t egress_frames[VS_MAX_PORTS];   /* frames each (segments) */
    uint32_t n_drops;           /* every drop counter the trace hit */
    uint32_t drop_port[VS_TRACE_MAX_DROPS];
    int32_t drop_counter[VS_TRACE_MAX_DROPS];
    uint32_t text_len;
    char text[VS_TRACE_TEXT_MAX];
};

/* Basics. */
int vs_switch_trace(struct vs_switch *, uint32_t port_id, const uint8_t *frame,
                    uint32_t len, const uint8_t *vnet, uint32_t vnet_len,
                    uint32_t now_s, struct vs_trace_result *);
const char *vs_trace_stage_name(int stage);

/* Inside the pipeline. */
struct vs_ctx;
struct vs_port;
struct vs_pkt;

void vs_trace_printf(struct vs_ctx *, int stage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define vs_trace_note(CTX, STAGE, ...)                                  \
    do {                                                                \
        if (__builtin_expect((CTX)->trace != NULL, 0)) {                \
            vs_trace_printf((CTX), (STAGE), __VA_ARGS__);               \
        }                                                               \
    } while (0)

void vs_trace_vlan(struct vs_ctx *, const struct vs_port *in, int tagged,
                   uint16_t vid, uint16_t vlan, int error);
void vs_trace_learn(struct vs_ctx *, uint16_t vlan, const uint8_t *mac,
                    uint32_t port_id);
uint32_t vs_trace_lookup(struct vs_ctx *, uint16_t vlan, const uint8_t *mac,
                         uint32_t found);
void vs_trace_sent(struct vs_ctx *, uint32_t port_id);
void vs_trace_drop(struct vs_ctx *, uint32_t port_id, int reason);

#endif /* vs_trace.h */

/*
 * vs_qos.c: the frames a worker holds back for a bandwidth limit (design
 * in vs_qos.h).
 *
 * Everything here runs in the thread of the context it is given, on that
 * context's own queues; the only shared state is the buckets' words.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "vs_qos.h"
#include "vs_trace.h"
#include "vs_worker.h"

/* A frame held back: a copy of it and of the pipeline state egress needs,
 * and the ids of the ports it is for. */
struct waiting {
    struct waiting *next;
    uint64_t due_ns;
    uint32_t len;
    uint32_t n_dests;
    struct vs_vnet_hdr vh;
    uint16_t vlan, pcp, inner_off;
    uint8_t slot;               /* 0: held for the ingress port's out limit */
    uint32_t *dests;
    uint8_t *data;
};

struct fifo {
    struct waiting *head, *tail;
};

struct vs_qos_queues {
    struct fifo fifos[VS_MAX_PORTS][2];
    uint16_t active[VS_MAX_PORTS * 2];      /* fifo indices with frames */
    uint32_t n_active;
    uint64_t bytes;                         /* held, at most VS_QOS_QUEUE_BYTES */
    uint64_t next_due_ns;                   /* earliest head; 0 = nothing held */
};

struct vs_qos_queues *
vs_qos_queues_new(void)
{
    return calloc(1, sizeof(struct vs_qos_queues));
}

void
vs_qos_queues_free(struct vs_qos_queues *q)
{
    if (!q) {
        return;
    }
    for (uint32_t i = 0; i < q->n_active; i++) {
        struct fifo *f = &q->fifos[q->active[i] >> 1][q->active[i] & 1];
        while (f->head) {
            struct waiting *w = f->head;
            f->head = w->next;
            free(w);
        }
    }
    free(q);
}

/* Bandwidth-limits 'pkt' for port 'port' in direction 'slot' (0: its
 * out limit, the frame entering from it; 1: its in limit, the frame
 * leaving through it) on its way to the 'n_dests' ports at 'dests'.
 * Returns VS_QOS_SEND (go on now), VS_QOS_WAIT (a copy is held and sent
 * later) or VS_QOS_DROP (counted on 'port'). */
int
vs_qos_admit(struct vs_ctx *ctx, const struct vs_port *port, const struct vs_pkt *pkt,
             int slot, struct vs_port *const *dests, uint32_t n_dests)
{
    struct vs_qos_queues *q = ctx->qos;
    uint32_t id = port->p.id;
    struct fifo *f = &q->fifos[id][slot];
    uint64_t bps = slot ? port->p.max_bps_in : port->p.max_bps_out;
    uint64_t bytes = vs_qos_wire_bytes(pkt->len, &pkt->vh);
    uint64_t due = 0;
    int live = ctx->trace == NULL;      /* a trace charges nothing and holds nothing */
    enum vs_qos_verdict v = vs_qos_schedule(&ctx->sw->qos_tat[id][slot], ctx->now_ns, bytes,
                                            bps, port->p.max_burst_bytes, live, &due);
    if (!live) {
        static const char *const what[] = { "within the bucket: sent now",
                                            "beyond the bucket: held back, sent later",
                                            "would wait over 50 ms: dropped" };
        vs_trace_note(ctx, VS_TRACE_QOS, "port %u %s limit %llu bit/s: %s", id,
                      slot ? "in" : "out", (unsigned long long) bps, what[v]);
        if (v == VS_QOS_DROP) {
            vs_count(ctx, id, slot ? VS_C_DROP_QOS_IN : VS_C_DROP_QOS_OUT, 1);
        }
        return v == VS_QOS_DROP ? VS_QOS_DROP : VS_QOS_SEND;
    }

    /* A frame the bucket lets through still queues behind the port's held
     * frames, so that a flow's frames keep their order. */
    if (v == VS_QOS_SEND && !f->head) {
        return VS_QOS_SEND;
    }
    size_t size = sizeof(struct waiting) + n_dests * sizeof(uint32_t) + pkt->len;
    struct waiting *w = NULL;
    if (v != VS_QOS_DROP && q->bytes + size <= VS_QOS_QUEUE_BYTES) {
        w = malloc(size);
    }
    if (!w) {
        vs_count(ctx, id, slot ? VS_C_DROP_QOS_IN : VS_C_DROP_QOS_OUT, 1);
        vs_count(ctx, id, slot ? VS_C_QOS_DROPPED_IN_BYTES : VS_C_QOS_DROPPED_OUT_BYTES, bytes);
        return VS_QOS_DROP;
    }
    w->next = NULL;
    w->due_ns = due;
    w->len = pkt->len;
    w->n_dests = n_dests;
    w->vh = pkt->vh;
    w->vlan = pkt->vlan;
    w->pcp = pkt->pcp;
    w->inner_off = pkt->inner_off;
    w->slot = (uint8_t) slot;
    w->dests = (uint32_t *) (w + 1);
    w->data = (uint8_t *) (w->dests + n_dests);
    for (uint32_t i = 0; i < n_dests; i++) {
        w->dests[i] = dests[i]->p.id;
    }
    memcpy(w->data, pkt->data, pkt->len);
    if (f->tail) {
        f->tail->next = w;
    } else {
        f->head = w;
        q->active[q->n_active++] = (uint16_t) (id << 1 | (uint32_t) slot);
    }
    f->tail = w;
    q->bytes += size;
    vs_count(ctx, id, slot ? VS_C_QOS_HELD_IN : VS_C_QOS_HELD_OUT, 1);
    if (!q->next_due_ns || due < q->next_due_ns) {
        q->next_due_ns = due;
    }
    return VS_QOS_WAIT;
}

/* Whether any of the 'n' ports at 'dests' has an in limit. */
int
vs_qos_any_in_limit(struct vs_port **dests, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (dests[i]->p.max_bps_in) {
            return 1;
        }
    }
    return 0;
}

/* Bandwidth limits (vs_qos.h): the ingress port's out limit for the whole
 * frame, then each destination's in limit.  Returns how many of 'dests'
 * the frame goes to now (kept at the front); the others got it held back
 * or dropped.  'in' is NULL for a frame the out limit held back, now due. */
uint32_t
vs_qos_shape(struct vs_ctx *ctx, const struct vs_port *in, struct vs_pkt *pkt,
             struct vs_port **dests, uint32_t n)
{
    if (in && in->p.max_bps_out) {
        if (vs_qos_admit(ctx, in, pkt, 0, dests, n) != VS_QOS_SEND) {
            pkt->dropped = 1;
            return 0;
        }
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!dests[i]->p.max_bps_in
            || vs_qos_admit(ctx, dests[i], pkt, 1, &dests[i], 1) == VS_QOS_SEND) {
            dests[kept++] = dests[i];
        }
    }
    return kept;
}

/* Sends every held frame that is due at 'now_ns', under config 'cfg'. */
void
vs_qos_flush_due(struct vs_ctx *ctx, const struct vs_config *cfg, uint64_t now_ns)
{
    struct vs_qos_queues *q = ctx->qos;
    if (!q->next_due_ns || q->next_due_ns > now_ns) {
        return;
    }
    uint64_t next = 0;
    uint32_t kept = 0;
    uint64_t saved_now = ctx->now_ns;
    ctx->now_ns = now_ns;
    for (uint32_t i = 0; i < q->n_active; i++) {
        uint16_t a = q->active[i];
        struct fifo *f = &q->fifos[a >> 1][a & 1];
        while (f->head && f->head->due_ns <= now_ns) {
            struct waiting *w = f->head;
            f->head = w->next;
            struct vs_pkt pkt = {
                .data = w->data, .len = w->len, .vh = w->vh, .vlan = w->vlan,
                .pcp = w->pcp, .inner_off = w->inner_off, .out_port = VS_PORT_NONE,
            };
            vs_forward_held(ctx, cfg, &pkt, w->slot, w->dests, w->n_dests);
            /* Segments and packet-socket frames point into 'w': send
             * them before it goes. */
            vs_tx_flush(ctx);
            q->bytes -= sizeof *w + w->n_dests * sizeof(uint32_t) + w->len;
            free(w);
        }
        if (f->head) {
            if (!next || f->head->due_ns < next) {
                next = f->head->due_ns;
            }
            q->active[kept++] = a;
        } else {
            f->tail = NULL;
        }
    }
    q->n_active = kept;
    q->next_due_ns = next;
    ctx->now_ns = saved_now;
}

/* How long a worker with nothing to read may sleep at 'now_ns': at most
 * 'idle_ms', and no later than its next held frame is due. */
int
vs_qos_wait_ms(const struct vs_ctx *ctx, uint64_t now_ns, int idle_ms)
{
    uint64_t due = ctx->qos->next_due_ns;
    if (!due) {
        return idle_ms;
    }
    if (due <= now_ns) {
        return 0;
    }
    uint64_t ms = (due - now_ns + 999999) / 1000000;
    return ms < (uint64_t) idle_ms ? (int) ms : idle_ms;
}

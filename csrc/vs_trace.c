/*
 * vs_trace.c: running one frame through the pipeline in record-only mode,
 * and the recorder the pipeline's stages write to (see vs_trace.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs_trace.h"
#include "vs_vlan.h"
#include "vs_worker.h"

struct vs_trace {
    struct vs_trace_result *res;
    /* The entry learning would have made: the lookup that follows in the
     * same burst sees it (a frame to its own source is filtered). */
    int learned;
    uint16_t vlan;
    uint8_t mac[6];
    uint32_t port_id;
};

#define VS_TRACE_NAME(ENUM, NAME) NAME,
static const char *const stage_names[] = { VS_TRACE_STAGES(VS_TRACE_NAME) };
#undef VS_TRACE_NAME

/* The name of trace stage 'stage' ("vlan", "learn"...), or NULL. */
const char *
vs_trace_stage_name(int stage)
{
    return stage >= 0 && stage < VS_TRACE_N_STAGES ? stage_names[stage] : NULL;
}

/* Appends "STAGE<TAB>text\n" to the trace attached to 'ctx'.  A line
 * that does not fit is cut; the text always ends with a newline. */
void
vs_trace_printf(struct vs_ctx *ctx, int stage, const char *fmt, ...)
{
    struct vs_trace_result *res = ctx->trace->res;
    size_t room = sizeof res->text - res->text_len;
    if (room < 64) {
        return;
    }
    char *p = res->text + res->text_len;
    int n = snprintf(p, room, "%s\t", vs_trace_stage_name(stage));
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(p + n, room - (size_t) n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t) n + ((size_t) m < room - (size_t) n - 1
                               ? (size_t) m : room - (size_t) n - 2);
    p[len++] = '\n';
    p[len] = '\0';
    res->text_len += (uint32_t) len;
}

/* Records how port 'in' classified a frame ('tagged' with VID 'vid') into
 * 'vlan', or refused it with drop reason 'error'. */
void
vs_trace_vlan(struct vs_ctx *ctx, const struct vs_port *in, int tagged,
              uint16_t vid, uint16_t vlan, int error)
{
    char got[32];
    if (!tagged) {
        snprintf(got, sizeof got, "untagged");
    } else if (!vid) {
        snprintf(got, sizeof got, "priority-tagged");
    } else {
        snprintf(got, sizeof got, "tagged %u", vid);
    }
    if (in->p.mode == VS_MODE_ACCESS) {
        if (error) {
            vs_trace_printf(ctx, VS_TRACE_VLAN, "access port VLAN %u, %s: refused",
                            in->p.access_vlan, got);
        } else {
            vs_trace_printf(ctx, VS_TRACE_VLAN, "access port VLAN %u, %s -> VLAN %u",
                            in->p.access_vlan, got, vlan);
        }
    } else {
        char native[32];
        if (in->p.native_vlan) {
            snprintf(native, sizeof native, "native VLAN %u", in->p.native_vlan);
        } else {
            snprintf(native, sizeof native, "no native VLAN");
        }
        if (error) {
            vs_trace_printf(ctx, VS_TRACE_VLAN, "trunk port (%s), %s: refused", native, got);
        } else {
            vs_trace_printf(ctx, VS_TRACE_VLAN, "trunk port (%s), %s -> VLAN %u%s", native,
                            got, vlan, tagged && vid ? " (allowed)" : " (native)");
        }
    }
}

/* Records what learning source 'mac' on 'vlan' from port 'port_id' would
 * do to the MAC table, without doing it. */
void
vs_trace_learn(struct vs_ctx *ctx, uint16_t vlan, const uint8_t *mac,
               uint32_t port_id)
{
    uint32_t now = vs_mac_lookup(ctx->sw->macs, vlan, mac);
    struct vs_trace *t = ctx->trace;
    t->learned = 1;
    t->vlan = vlan;
    memcpy(t->mac, mac, 6);
    t->port_id = port_id;
    if (now == port_id) {
        vs_trace_printf(ctx, VS_TRACE_LEARN, "%02x:%02x:%02x:%02x:%02x:%02x VLAN %u "
                        "already on port %u: would refresh",
                        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], vlan, port_id);
    } else if (now != VS_PORT_NONE) {
        vs_trace_printf(ctx, VS_TRACE_LEARN, "%02x:%02x:%02x:%02x:%02x:%02x VLAN %u "
                        "on port %u: would move to port %u",
                        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], vlan, now, port_id);
    } else {
        vs_trace_printf(ctx, VS_TRACE_LEARN, "%02x:%02x:%02x:%02x:%02x:%02x VLAN %u "
                        "unknown: would learn on port %u (%u/%u entries)",
                        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], vlan, port_id,
                        vs_mac_table_count(ctx->sw->macs),
                        vs_mac_table_capacity(ctx->sw->macs));
    }
}

/* The port the MAC table would give for 'mac' on 'vlan' had the trace
 * learned what it only noted; 'found' is what the table says. */
uint32_t
vs_trace_lookup(struct vs_ctx *ctx, uint16_t vlan, const uint8_t *mac, uint32_t found)
{
    const struct vs_trace *t = ctx->trace;
    if (t->learned && t->vlan == vlan && !memcmp(t->mac, mac, 6)) {
        return t->port_id;
    }
    return found;
}

/* Records one frame that would be sent to port 'port_id'. */
void
vs_trace_sent(struct vs_ctx *ctx, uint32_t port_id)
{
    struct vs_trace_result *res = ctx->trace->res;
    for (uint32_t i = 0; i < res->n_egress; i++) {
        if (res->egress[i] == port_id) {
            res->egress_frames[i]++;
            return;
        }
    }
    if (res->n_egress < VS_MAX_PORTS) {
        res->egress[res->n_egress] = port_id;
        res->egress_frames[res->n_egress++] = 1;
    }
}

/* Records the frame's drop on ingress port 'port_id' for 'reason'. */
void
vs_trace_drop(struct vs_ctx *ctx, uint32_t port_id, int reason)
{
    struct vs_trace_result *res = ctx->trace->res;
    if (res->drop_reason < 0) {
        res->drop_reason = reason;
    }
    vs_trace_printf(ctx, VS_TRACE_DROP, "dropped on port %u: %s", port_id,
                    vs_counter_name(reason));
}

static void
parse_vnet(const uint8_t *b, uint32_t len, struct vs_vnet_hdr *vh)
{
    memset(vh, 0, sizeof *vh);
    if (!b || len < VS_VNET_HDR_LEN) {
        return;
    }
    vh->flags = b[0];
    vh->gso_type = b[1];
    memcpy(&vh->hdr_len, b + 2, 2);
    memcpy(&vh->gso_size, b + 4, 2);
    memcpy(&vh->csum_start, b + 6, 2);
    memcpy(&vh->csum_offset, b + 8, 2);
}

/* Runs 'frame' ('len' bytes, virtio-net header 'vnet' of 'vnet_len' bytes
 * or NULL) through the pipeline as if port 'port_id' had received it at
 * time 'now_s', changing nothing, and describes what happened in 'res'.
 * Returns 0, ENOENT (no such port), EINVAL (frame too long) or ENOMEM. */
int
vs_switch_trace(struct vs_switch *sw, uint32_t port_id, const uint8_t *frame,
                uint32_t len, const uint8_t *vnet, uint32_t vnet_len,
                uint32_t now_s, struct vs_trace_result *res)
{
    struct vs_config *cfg = atomic_load(&sw->config);
    if (port_id >= VS_MAX_PORTS || !cfg->ports[port_id]) {
        return ENOENT;
    }
    if (len > VS_FRAME_MAX) {
        return EINVAL;
    }
    struct vs_port *in = cfg->ports[port_id];
    struct vs_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        return ENOMEM;
    }
    /* An index past every real context: guard code that sums the real
     * contexts' state reads all of them, never this one. */
    int error = vs_ctx_init(ctx, sw, sw->n_workers + 1, -1);
    if (error) {
        free(ctx);
        return error;
    }
    memset(res, 0, sizeof *res);
    res->drop_reason = -1;
    struct vs_trace t = { .res = res };
    ctx->trace = &t;
    ctx->now_ns = (uint64_t) now_s * 1000000000u;

    struct vs_pkt *pkt = &ctx->pkts[0];
    pkt->data = ctx->rx_bufs;
    memcpy(pkt->data, frame, len);
    pkt->len = len;
    parse_vnet(in->p.vnet_hdr_len ? vnet : NULL, vnet_len, &pkt->vh);
    vs_trace_printf(ctx, VS_TRACE_INGRESS, "port %u (%s, %s), %u bytes%s", port_id,
                    in->p.kind == VS_PORT_PACKET ? "packet socket" : "fd",
                    in->p.up ? "up" : "down", len,
                    vs_vnet_hdr_is_gso(&pkt->vh) ? ", GSO super-frame" : "");

    vs_forward_burst(ctx, cfg, in, 1, now_s);

    /* Every drop the pipeline counted, on whichever port. */
    for (uint32_t i = 0; i < cfg->n_ports; i++) {
        uint32_t id = cfg->port_ids[i];
        for (int c = VS_C_FIRST_DROP; c < VS_N_COUNTERS; c++) {
            if (ctx->counters[id][c] && res->n_drops < VS_TRACE_MAX_DROPS) {
                res->drop_port[res->n_drops] = id;
                res->drop_counter[res->n_drops++] = c;
            }
        }
    }
    vs_ctx_destroy(ctx);
    free(ctx);
    return 0;
}

/*
 * vs_switch.c: the switch object, config snapshots and their publication
 * (see vs_switch.h for the RCU contract).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vs_acl_sessions.h"
#include "vs_qos.h"
#include "vs_mirror.h"
#include "vs_vlan.h"
#include "vs_worker.h"

/* Longest a publisher waits for one worker to pass a quiescent point.  A
 * worker finishes any burst in far less; a worker that does not answer in
 * this time is wedged, and freeing the old config under it would be worse
 * than leaking it. */
#define VS_GRACE_TIMEOUT_NS (5ull * 1000000000ull)

/* Creates an empty config: no ports, no rx queues.  NULL on ENOMEM. */
struct vs_config *
vs_config_new(void)
{
    return calloc(1, sizeof(struct vs_config));
}

/* Frees 'cfg' and its ports (not their fds, which the caller owns).  Only
 * for a config never published, or one vs_switch_publish() retired. */
void
vs_config_free(struct vs_config *cfg)
{
    if (!cfg) {
        return;
    }
    for (uint32_t i = 0; i < cfg->n_ports; i++) {
        free(cfg->ports[cfg->port_ids[i]]);
    }
    for (uint32_t w = 0; w < VS_MAX_WORKERS; w++) {
        free(cfg->rxqs[w]);
    }
    vs_mirror_set_free(cfg->mirrors);
    free(cfg);
}

static int
check_port_params(const struct vs_port_params *p)
{
    if (p->id >= VS_MAX_PORTS
        || (p->kind != VS_PORT_FD && p->kind != VS_PORT_PACKET
            && p->kind != VS_PORT_VXLAN && p->kind != VS_PORT_VHOST)
        || (p->kind == VS_PORT_VXLAN) != (p->vxlan != NULL)
        || (p->kind == VS_PORT_VHOST) != (p->vhost != NULL)
        || (p->mode != VS_MODE_ACCESS && p->mode != VS_MODE_TRUNK)
        || p->n_queues < 1 || p->n_queues > VS_MAX_QUEUES
        || (p->vnet_hdr_len != 0 && p->vnet_hdr_len != VS_VNET_HDR_LEN
            && p->vnet_hdr_len != VS_VNET_HDR_MRG_LEN)
        || p->native_vlan > VS_VID_MAX) {
        return EINVAL;
    }
    if (p->mode == VS_MODE_ACCESS
        && (p->access_vlan < 1 || p->access_vlan > VS_VID_MAX)) {
        return EINVAL;
    }
    /* Without a virtio-net header there is no way to hand a port a partial
     * checksum or a super-frame. */
    if (!p->vnet_hdr_len && (p->offload_csum || p->offload_tso)) {
        return EINVAL;
    }
    for (uint32_t q = 0; q < p->n_queues; q++) {
        if (p->fds[q] < 0) {
            return EBADF;
        }
        /* Only packet sockets have rings; a TAP's would never be read. */
        if (p->rings[q] && p->kind != VS_PORT_PACKET) {
            return EINVAL;
        }
    }
    return 0;
}

/* Adds a copy of port 'params' to unpublished config 'cfg'.  Returns 0,
 * EINVAL for bad parameters, EEXIST for a duplicate id, or ENOMEM. */
int
vs_config_add_port(struct vs_config *cfg, const struct vs_port_params *params)
{
    int error = check_port_params(params);
    if (error) {
        return error;
    }
    if (cfg->ports[params->id]) {
        return EEXIST;
    }
    struct vs_port *port = calloc(1, sizeof *port);
    if (!port) {
        return ENOMEM;
    }
    port->p = *params;
    vs_vlan_fill_members(port);
    cfg->ports[params->id] = port;

    /* Keep port_ids ascending: flooding then visits ports in a stable order. */
    uint32_t i = cfg->n_ports++;
    while (i > 0 && cfg->port_ids[i - 1] > params->id) {
        cfg->port_ids[i] = cfg->port_ids[i - 1];
        i--;
    }
    cfg->port_ids[i] = params->id;
    return 0;
}

/* Makes 'worker' poll queue 'queue' of port 'port_id' (already added to
 * 'cfg').  Returns 0, EINVAL or ENOMEM. */
int
vs_config_assign_rxq(struct vs_config *cfg, uint32_t worker, uint32_t port_id,
                     uint32_t queue)
{
    if (worker >= VS_MAX_WORKERS || port_id >= VS_MAX_PORTS
        || !cfg->ports[port_id] || queue >= cfg->ports[port_id]->p.n_queues) {
        return EINVAL;
    }
    uint32_t n = cfg->n_rxqs[worker];
    struct vs_rxq_ref *rxqs = realloc(cfg->rxqs[worker], (n + 1) * sizeof *rxqs);
    if (!rxqs) {
        return ENOMEM;
    }
    rxqs[n].port = cfg->ports[port_id];
    rxqs[n].queue = queue;
    rxqs[n].fd = cfg->ports[port_id]->p.fds[queue];
    cfg->rxqs[worker] = rxqs;
    cfg->n_rxqs[worker] = n + 1;
    return 0;
}

/* Creates a switch with 'n_workers' threads (0: forwarding only through
 * vs_switch_poll_once()), worker i pinned to cpus[i] (-1 or a NULL 'cpus':
 * unpinned), and a MAC table of 'mac_capacity' entries.  Its config is
 * empty until the first vs_switch_publish().  NULL on error. */
struct vs_switch *
vs_switch_new(uint32_t n_workers, const int *cpus, uint32_t mac_capacity)
{
    if (n_workers > VS_MAX_WORKERS) {
        return NULL;
    }
    struct vs_switch *sw = calloc(1, sizeof *sw);
    if (!sw) {
        return NULL;
    }
    sw->n_workers = n_workers;
    sw->macs = vs_mac_table_new(mac_capacity);
    sw->ctxs = calloc(n_workers + 1, sizeof *sw->ctxs);
    sw->rxq_reader = calloc(VS_MAX_PORTS, sizeof *sw->rxq_reader);
    sw->qos_tat = calloc(VS_MAX_PORTS, sizeof *sw->qos_tat);
    struct vs_config *empty = vs_config_new();
    if (!sw->macs || !sw->ctxs || !sw->rxq_reader || !sw->qos_tat || !empty
        || vs_acl_sessions_new(VS_ACL_SESSIONS_DEFAULT, &sw->sessions)) {
        free(empty);
        vs_switch_free(sw);
        return NULL;
    }
    empty->generation = sw->next_generation++;
    atomic_store(&sw->config, empty);

    for (uint32_t i = 0; i <= n_workers; i++) {
        int cpu = (cpus && i < n_workers) ? cpus[i] : -1;
        if (vs_ctx_init(&sw->ctxs[i], sw, i, cpu)) {
            vs_switch_free(sw);
            return NULL;
        }
    }
    return sw;
}

/* Starts the worker threads.  Returns 0 or a positive errno (then no
 * thread runs). */
int
vs_switch_start(struct vs_switch *sw)
{
    if (sw->started) {
        return EALREADY;
    }
    atomic_store(&sw->stopping, 0);
    for (uint32_t i = 0; i < sw->n_workers; i++) {
        struct vs_ctx *ctx = &sw->ctxs[i];
        int error = pthread_create(&ctx->thread, NULL, vs_worker_main, ctx);
        if (error) {
            sw->started = 1;
            vs_switch_stop(sw);
            return error;
        }
        ctx->thread_started = 1;
    }
    sw->started = 1;
    return 0;
}

static void
kick(struct vs_ctx *ctx)
{
    uint64_t one = 1;
    ssize_t r = write(ctx->wake_fd, &one, sizeof one);
    (void) r;
}

/* Stops and joins the worker threads.  Idempotent. */
void
vs_switch_stop(struct vs_switch *sw)
{
    if (!sw->started) {
        return;
    }
    atomic_store(&sw->stopping, 1);
    for (uint32_t i = 0; i < sw->n_workers; i++) {
        struct vs_ctx *ctx = &sw->ctxs[i];
        if (ctx->thread_started) {
            kick(ctx);
            pthread_join(ctx->thread, NULL);
            ctx->thread_started = 0;
        }
    }
    sw->started = 0;
}

/* Stops the switch and frees it, its config and its MAC table. */
void
vs_switch_free(struct vs_switch *sw)
{
    if (!sw) {
        return;
    }
    vs_switch_stop(sw);
    if (sw->ctxs) {
        for (uint32_t i = 0; i <= sw->n_workers; i++) {
            if (sw->ctxs[i].sw) {
                vs_ctx_destroy(&sw->ctxs[i]);
            }
        }
        free(sw->ctxs);
    }
    vs_config_free(atomic_load(&sw->config));
    vs_mac_table_free(sw->macs);
    vs_acl_sessions_free(sw->sessions);
    free(sw->qos_tat);
    free(sw->rxq_reader);
    free(sw);
}

uint32_t
vs_switch_n_workers(const struct vs_switch *sw)
{
    return sw->n_workers;
}

struct vs_mac_table *
vs_switch_mac_table(struct vs_switch *sw)
{
    return sw->macs;
}

/* Makes workers keep polling for 'busy_poll_us' microseconds after the
 * last frame they read before they sleep: lower latency and bigger batches
 * under load, for CPU spent spinning.  0 = sleep as soon as idle. */
void
vs_switch_set_busy_poll(struct vs_switch *sw, uint32_t busy_poll_us)
{
    atomic_store(&sw->busy_poll_ns, (uint64_t) busy_poll_us * 1000u);
}

/* Replaces the stateful ACL session table with an empty one for
 * 'capacity' sessions.  Only before the workers start.  Returns 0,
 * EBUSY, EINVAL or ENOMEM (the old table then stays). */
int
vs_switch_set_acl_sessions(struct vs_switch *sw, uint32_t capacity)
{
    struct vs_acl_sessions *fresh;

    if (sw->started) {
        return EBUSY;
    }
    int error = vs_acl_sessions_new(capacity, &fresh);
    if (error) {
        return error;
    }
    vs_acl_sessions_free(sw->sessions);
    sw->sessions = fresh;
    return 0;
}

struct vs_acl_sessions *
vs_switch_acl_sessions(struct vs_switch *sw)
{
    return sw->sessions;
}

uint64_t
vs_switch_generation(const struct vs_switch *sw)
{
    struct vs_config *cfg = atomic_load(&((struct vs_switch *) sw)->config);
    return cfg->generation;
}

static uint64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* Waits until worker 'ctx' holds no reference to any config older than
 * the current one.  Returns 0, or ETIMEDOUT if it did not answer. */
static int
wait_quiescent(struct vs_ctx *ctx)
{
    uint64_t seen = atomic_load(&ctx->quiescent);
    uint64_t deadline = mono_ns() + VS_GRACE_TIMEOUT_NS;
    struct timespec pause = { 0, 20000 };

    while (atomic_load(&ctx->online) && atomic_load(&ctx->quiescent) == seen) {
        if (mono_ns() > deadline) {
            return ETIMEDOUT;
        }
        nanosleep(&pause, NULL);
    }
    return 0;
}

/* Publishes 'cfg' (taking ownership) as the switch's config, waits for
 * every worker to stop using the previous one, and frees it.  Ports new in
 * 'cfg' start with zeroed counters.  Returns 0, or ETIMEDOUT if a worker
 * did not pass a quiescent point in time (the old config is then leaked
 * rather than freed under it). */
int
vs_switch_publish(struct vs_switch *sw, struct vs_config *cfg)
{
    struct vs_config *old = atomic_load(&sw->config);

    /* A port id absent from the current config is touched by no worker
     * (the previous publish waited them out), so its counters can be reset
     * here without racing their only writers.  A port that only left the
     * snapshot for a while (keep_counters) goes on counting: Prometheus
     * counters never go backwards while the port exists. */
    for (uint32_t i = 0; i < cfg->n_ports; i++) {
        uint32_t id = cfg->port_ids[i];
        if (!old->ports[id] && !cfg->ports[id]->p.keep_counters) {
            for (uint32_t w = 0; w <= sw->n_workers; w++) {
                memset(sw->ctxs[w].counters[id], 0,
                       sizeof sw->ctxs[w].counters[id]);
                memset(sw->ctxs[w].rxq_stats[id], 0,
                       sizeof sw->ctxs[w].rxq_stats[id]);
            }
        }
    }

    cfg->generation = sw->next_generation++;
    old = atomic_exchange(&sw->config, cfg);

    int error = 0;
    if (sw->started) {
        for (uint32_t i = 0; i < sw->n_workers; i++) {
            kick(&sw->ctxs[i]);
        }
        for (uint32_t i = 0; i < sw->n_workers; i++) {
            if (wait_quiescent(&sw->ctxs[i])) {
                error = ETIMEDOUT;
            }
        }
    }
    if (!error) {
        vs_config_free(old);
    }
    return error;
}

/* Reads one burst from every rx queue of every port in the current config,
 * in the calling (control) thread, learning with time 'now_s'.  For tests
 * and for a switch without workers; never while workers run.  Returns the
 * number of frames read. */
int
vs_switch_poll_once(struct vs_switch *sw, uint32_t now_s)
{
    struct vs_ctx *ctx = &sw->ctxs[sw->n_workers];
    struct vs_config *cfg = atomic_load(&sw->config);
    int total = 0;

    if (sw->started) {
        return -EBUSY;
    }
    vs_qos_flush_due(ctx, cfg, (uint64_t) now_s * 1000000000u);
    for (uint32_t i = 0; i < cfg->n_ports; i++) {
        struct vs_port *port = cfg->ports[cfg->port_ids[i]];
        for (uint32_t q = 0; q < port->p.n_queues; q++) {
            struct vs_rxq_ref rxq = { port, q, port->p.fds[q] };
            total += vs_ctx_poll_rxq(ctx, cfg, &rxq, now_s);
        }
    }
    return total;
}

/* Sums port 'port_id''s counters over every context into 'out'
 * (VS_N_COUNTERS values).  Any thread, any time. */
void
vs_switch_port_counters(const struct vs_switch *sw, uint32_t port_id,
                        uint64_t *out)
{
    memset(out, 0, VS_N_COUNTERS * sizeof *out);
    if (port_id >= VS_MAX_PORTS) {
        return;
    }
    for (uint32_t w = 0; w <= sw->n_workers; w++) {
        for (int c = 0; c < VS_N_COUNTERS; c++) {
            out[c] += __atomic_load_n(&sw->ctxs[w].counters[port_id][c],
                                      __ATOMIC_RELAXED);
        }
    }
}

/* Sums what rx queue 'queue' of port 'port_id' has cost every context
 * into 'out'.  Any thread, any time. */
void
vs_switch_rxq_stats(const struct vs_switch *sw, uint32_t port_id,
                    uint32_t queue, struct vs_rxq_stats *out)
{
    memset(out, 0, sizeof *out);
    if (port_id >= VS_MAX_PORTS || queue >= VS_MAX_QUEUES) {
        return;
    }
    for (uint32_t w = 0; w <= sw->n_workers; w++) {
        const struct vs_rxq_stats *s = &sw->ctxs[w].rxq_stats[port_id][queue];
        out->busy_ns += __atomic_load_n(&s->busy_ns, __ATOMIC_RELAXED);
        out->frames += __atomic_load_n(&s->frames, __ATOMIC_RELAXED);
        out->polls += __atomic_load_n(&s->polls, __ATOMIC_RELAXED);
    }
}

/* Copies worker 'worker''s stats into 'out'.  Returns 0 or EINVAL. */
int
vs_switch_worker_stats(const struct vs_switch *sw, uint32_t worker,
                       struct vs_worker_stats *out)
{
    if (worker > sw->n_workers) {
        return EINVAL;
    }
    const struct vs_worker_stats *s = &sw->ctxs[worker].stats;
    out->busy_ns = __atomic_load_n(&s->busy_ns, __ATOMIC_RELAXED);
    out->idle_ns = __atomic_load_n(&s->idle_ns, __ATOMIC_RELAXED);
    out->polls = __atomic_load_n(&s->polls, __ATOMIC_RELAXED);
    out->frames = __atomic_load_n(&s->frames, __ATOMIC_RELAXED);
    out->batches_full = __atomic_load_n(&s->batches_full, __ATOMIC_RELAXED);
    out->quiescent = __atomic_load_n(&s->quiescent, __ATOMIC_RELAXED);
    return 0;
}

#define VS_COUNTER_NAME(ENUM, NAME, HELP) NAME,
#define VS_COUNTER_HELP(ENUM, NAME, HELP) HELP,
static const char *const counter_names[] = {
    VS_TRAFFIC_COUNTERS(VS_COUNTER_NAME) VS_DROP_REASONS(VS_COUNTER_NAME)
};
static const char *const counter_helps[] = {
    VS_TRAFFIC_COUNTERS(VS_COUNTER_HELP) VS_DROP_REASONS(VS_COUNTER_HELP)
};

/* The stable name of counter 'counter' (e.g. "rx_packets", "runt"), or
 * NULL past the last one. */
const char *
vs_counter_name(int counter)
{
    return counter >= 0 && counter < VS_N_COUNTERS ? counter_names[counter] : NULL;
}

/* One line of help text for counter 'counter', or NULL. */
const char *
vs_counter_help(int counter)
{
    return counter >= 0 && counter < VS_N_COUNTERS ? counter_helps[counter] : NULL;
}

/*
 * vs_qos.h: bandwidth limits, Hyper-V's MaximumBandwidth, as token-bucket
 * shapers with a bounded wait.
 *
 * A port may have a limit per direction ('max_bps_out' from the VM,
 * 'max_bps_in' toward it) with a bucket depth of 'max_burst_bytes'.  A
 * frame within the bucket leaves at once; a frame beyond it waits in its
 * worker until the rate allows it, at most VS_QOS_MAX_DELAY_NS; a frame
 * that would wait longer is dropped (qos_out / qos_in).  Waiting rather
 * than dropping is what lets TCP run at the limit: measured here, a pure
 * policer with a 10 ms bucket held a TCP stream to 5 % of a 100 Mbit/s
 * limit, because every drop takes a whole 64 KiB super-frame with it.
 *
 * One bucket per (port, direction), shared by every worker of the port
 * without a lock: GCRA's single word, the theoretical arrival time 'tat'
 * in ns (ITU-T I.371's virtual scheduling).  A frame of B bytes at time t
 * costs B * 8 / rate seconds and finishes at f = max(tat, t) + cost: it
 * leaves now if f <= t + depth, waits until f - depth if that is within
 * VS_QOS_MAX_DELAY_NS, and is dropped (tat unchanged) otherwise.  tat
 * becomes f with one compare-and-swap, retried on contention.  The
 * long-run rate never exceeds 'rate', and a 'depth'-byte burst passes at
 * line rate after an idle period.
 *
 * Waiting frames are copied (the rx buffers are reused) into per-worker
 * FIFOs, one per (port, direction), in the order their bucket admitted
 * them; a worker sends what is due before each burst it reads and sleeps
 * no longer than its next due frame (vs_worker.c).  They hold port ids,
 * not pointers, so they outlive config publications; a frame whose port
 * is gone or down when it is due is dropped (no_destination).  A worker
 * holds at most VS_QOS_QUEUE_BYTES of waiting frames.
 *
 * GSO super-frames are charged for every byte they become on the wire:
 * each segment repeats the headers (vs_qos_wire_bytes()).
 *
 * The buckets live in the switch, by port id, and outlast config
 * publications; a port id reused by another port inherits a bucket whose
 * tat is at most 'depth' + VS_QOS_MAX_DELAY_NS ahead.
 */
#ifndef VS_QOS_H
#define VS_QOS_H 1

#include <stdatomic.h>
#include <stdint.h>

#include "vs_frame.h"

#define VS_QOS_NS_PER_S 1000000000ull
#define VS_QOS_MAX_DELAY_NS (50ull * 1000000ull)
#define VS_QOS_QUEUE_BYTES (64u << 20)

/* What vs_qos_schedule() decided. */
enum vs_qos_verdict {
    VS_QOS_SEND = 0,            /* within the bucket: send now */
    VS_QOS_WAIT = 1,            /* send at the due time */
    VS_QOS_DROP = 2,            /* would wait too long */
};

/* Bytes the frame 'data' ('len' bytes, virtio-net header 'vh') puts on the
 * wire: a GSO super-frame once per segment, headers repeated. */
static inline uint64_t
vs_qos_wire_bytes(uint32_t len, const struct vs_vnet_hdr *vh)
{
    if (!vs_vnet_hdr_is_gso(vh) || !vh->gso_size) {
        return len;
    }
    /* hdr_len is a hint the sender may leave 0: then assume Ethernet,
     * IPv4 and TCP with timestamps. */
    uint32_t hdr = vh->hdr_len && vh->hdr_len < len ? vh->hdr_len : 66;
    if (hdr >= len) {
        return len;
    }
    uint64_t segs = (len - hdr + vh->gso_size - 1) / vh->gso_size;
    return len + (segs - 1) * hdr;
}

/* Charges 'bytes' to bucket 'tat' of rate 'bps' (bit/s) and depth
 * 'depth_bytes' at 'now_ns'.  Returns VS_QOS_SEND, VS_QOS_WAIT (and the
 * time to send it at in '*due_ns') or VS_QOS_DROP (nothing charged).
 * With 'charge' zero nothing is written (trace). */
static inline enum vs_qos_verdict
vs_qos_schedule(_Atomic uint64_t *tat, uint64_t now_ns, uint64_t bytes,
                uint64_t bps, uint64_t depth_bytes, int charge, uint64_t *due_ns)
{
    /* 128-bit intermediates: a GiB bucket at 8 kbit/s would overflow. */
    uint64_t cost = (uint64_t) ((unsigned __int128) bytes * 8 * VS_QOS_NS_PER_S / bps);
    uint64_t depth = (uint64_t) ((unsigned __int128) depth_bytes * 8 * VS_QOS_NS_PER_S / bps);
    uint64_t cur = atomic_load_explicit(tat, memory_order_relaxed);

    for (;;) {
        uint64_t finish = (cur > now_ns ? cur : now_ns) + cost;
        enum vs_qos_verdict v = finish <= now_ns + depth ? VS_QOS_SEND
                                : finish <= now_ns + depth + VS_QOS_MAX_DELAY_NS ? VS_QOS_WAIT
                                : VS_QOS_DROP;
        if (v == VS_QOS_DROP) {
            return v;
        }
        *due_ns = v == VS_QOS_WAIT ? finish - depth : now_ns;
        if (!charge
            || atomic_compare_exchange_weak_explicit(tat, &cur, finish,
                                                     memory_order_relaxed,
                                                     memory_order_relaxed)) {
            return v;
        }
    }
}

struct vs_ctx;
struct vs_config;
struct vs_port;
struct vs_pkt;
struct vs_qos_queues;

/* Per-worker waiting frames (vs_qos.c). */
struct vs_qos_queues *vs_qos_queues_new(void);
void vs_qos_queues_free(struct vs_qos_queues *);
int vs_qos_admit(struct vs_ctx *, const struct vs_port *, const struct vs_pkt *,
                 int slot, struct vs_port *const *dests, uint32_t n_dests);
int vs_qos_any_in_limit(struct vs_port **dests, uint32_t n);
uint32_t vs_qos_shape(struct vs_ctx *, const struct vs_port *in, struct vs_pkt *,
                      struct vs_port **dests, uint32_t n);
void vs_qos_flush_due(struct vs_ctx *, const struct vs_config *, uint64_t now_ns);
int vs_qos_wait_ms(const struct vs_ctx *, uint64_t now_ns, int idle_ms);

#endif /* vs_qos.h */

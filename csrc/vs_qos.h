/*
 * vs_qos.h: bandwidth limits, Hyper-V's MaximumBandwidth, as policers.
 *
 * A port may have a limit per direction ('max_bps_out' from the VM,
 * 'max_bps_in' toward it) with a bucket depth of 'max_burst_bytes'.  A
 * frame that exceeds it is dropped (qos_out / qos_in), never queued: the
 * switch holds no frames, and TCP finds the rate by itself.
 *
 * One bucket per (port, direction), shared by every worker of the port
 * without a lock: the bucket is GCRA's single word, the theoretical
 * arrival time 'tat' in ns (ITU-T I.371's virtual scheduling).  A frame of
 * B bytes at time t costs B * 8 / rate seconds; it conforms when
 * max(tat, t) + cost <= t + depth, and then tat becomes max(tat, t) + cost,
 * published with one compare-and-swap (retried on contention).  A depth of
 * D bytes lets a D-byte burst through at line rate after an idle period,
 * and the long-run rate never exceeds 'rate'.
 *
 * GSO super-frames are charged for every byte they become on the wire:
 * each segment repeats the headers (vs_qos_wire_bytes()).
 *
 * The buckets live in the switch, by port id, and outlast config
 * publications; a port id reused by another port inherits a bucket whose
 * tat is at most 'depth' ahead, which the new port pays off within one
 * bucket depth.
 */
#ifndef VS_QOS_H
#define VS_QOS_H 1

#include <stdatomic.h>
#include <stdint.h>

#include "vs_frame.h"

#define VS_QOS_NS_PER_S 1000000000ull

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
 * 'depth_bytes' at 'now_ns'.  Returns 1 if the frame conforms (and is
 * charged), 0 to drop it.  With 'charge' zero nothing is written (trace). */
static inline int
vs_qos_conform(_Atomic uint64_t *tat, uint64_t now_ns, uint64_t bytes,
               uint64_t bps, uint64_t depth_bytes, int charge)
{
    /* 128-bit intermediates: 64 KiB * 8 * 10^9 overflows nothing, but a
     * depth of GiB at a low rate would. */
    uint64_t cost = (uint64_t) ((unsigned __int128) bytes * 8 * VS_QOS_NS_PER_S / bps);
    uint64_t depth = (uint64_t) ((unsigned __int128) depth_bytes * 8 * VS_QOS_NS_PER_S / bps);
    uint64_t cur = atomic_load_explicit(tat, memory_order_relaxed);

    for (;;) {
        uint64_t start = cur > now_ns ? cur : now_ns;
        if (start + cost > now_ns + depth) {
            return 0;
        }
        if (!charge) {
            return 1;
        }
        if (atomic_compare_exchange_weak_explicit(tat, &cur, start + cost,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            return 1;
        }
    }
}

#endif /* vs_qos.h */

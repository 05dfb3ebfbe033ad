/*
 * vs_capture.h: live capture of a port's frames, filtered in the workers.
 *
 * What it is for: `vswitchctl capture PORT --filter EXPR -w FILE` without
 * a tap, a bridge or a second copy of the traffic on the host: the workers
 * that forward a port's frames run the capture's classic BPF program (from
 * libpcap's pcap_compile(), compiled by the control plane) on each frame of
 * the port and copy the ones it accepts into a ring the daemon drains.
 *
 * Where frames are taken: rx, as a frame arrived on the port, before any
 * check; tx, as it leaves through the port (its egress tagging applied),
 * just before it is handed to the port (a super-frame segmented in
 * software is taken once, whole); drops, a frame the switch dropped on its
 * ingress port, with the drop reason.  A frame refused on arrival (its
 * VLAN, a guard, an ACL) is in a capture once: as a drop when it captures
 * drops, else as received; one dropped later (no destination, filtered on
 * its own port) was received first, and is in it as both.
 *
 * Rings: one single-producer single-consumer byte ring per (capture,
 * context), so a worker never shares a cache line with another to capture.
 * The producer (one worker) writes whole records and publishes its head
 * with a release store; the consumer (the control thread, through
 * vs_capture_read()) reads up to the head with an acquire load and hands
 * the space back by storing its tail.  A full ring never waits: the copy is
 * dropped and counted (vs_capture_get_stats()), forwarding goes on.
 *
 * Lifetime: the control plane owns a capture.  It adds it to the configs it
 * publishes (vs_config_add_capture(), which does not take ownership) and
 * frees it only after publishing a config without it.
 *
 * Cost: with no capture in the config, nothing (the burst's one observe
 * test); with one, a bit test of the port per frame (vs_capture_on()).
 */
#ifndef VS_CAPTURE_H
#define VS_CAPTURE_H 1

#include <stddef.h>
#include <stdint.h>

#include "vs_switch.h"

#define VS_CAP_RX 1u
#define VS_CAP_TX 2u
#define VS_CAP_DROPS 4u
#define VS_CAP_RING_BYTES (1u << 20)   /* per context; a power of two */

/* One classic BPF instruction, as struct bpf_insn / struct sock_filter. */
struct vs_bpf_insn {
    uint16_t code;
    uint8_t jt;
    uint8_t jf;
    uint32_t k;
};

/* A captured frame, as vs_capture_read() returns it: this header, then
 * 'caplen' bytes of frame, the whole padded to 'rec_len' (a multiple of 8). */
struct vs_cap_record {
    uint32_t rec_len;
    uint32_t caplen;
    uint32_t wire_len;
    uint16_t port_id;
    uint8_t dir;                /* VS_CAP_RX, VS_CAP_TX or VS_CAP_DROPS */
    uint8_t pad;
    int32_t reason;             /* drops: the drop counter; else -1 */
    uint32_t pad2;
    uint64_t ts_ns;             /* CLOCK_REALTIME */
};

struct vs_capture_stats {
    uint64_t captured;          /* copies put in the rings */
    uint64_t dropped;           /* copies dropped: ring full */
    uint64_t filtered;          /* frames the filter refused */
};

struct vs_capture;

/* Basics (control thread). */
struct vs_capture *vs_capture_new(const struct vs_switch *, uint32_t port_id,
                                  uint32_t dirs, uint32_t snaplen,
                                  const struct vs_bpf_insn *prog, uint32_t n_insns);
void vs_capture_free(struct vs_capture *);
int vs_config_add_capture(struct vs_config *, struct vs_capture *);

/* Reading (one consumer thread at a time; stats from any thread). */
size_t vs_capture_read(struct vs_capture *, uint8_t *out, size_t out_len);
void vs_capture_get_stats(const struct vs_capture *, struct vs_capture_stats *);

/* Filtering: 'prog' accepts 'pkt' ('len' bytes): nonzero. */
uint32_t vs_bpf_run(const struct vs_bpf_insn *prog, uint32_t n_insns,
                    const uint8_t *pkt, uint32_t len);
int vs_bpf_check(const struct vs_bpf_insn *prog, uint32_t n_insns);

/* Inside the pipeline (only when the config has captures). */
struct vs_ctx;

/* Whether some capture of 'cfg' is on port 'id': one bit test per frame. */
#define vs_capture_on(CFG, ID) \
    (((CFG)->capture_ports[(ID) >> 6] >> ((ID) & 63)) & 1)
void vs_capture_frame(struct vs_ctx *, uint32_t port_id, uint32_t dir, int reason,
                      const uint8_t *a, uint32_t a_len,
                      const uint8_t *b, uint32_t b_len);

#endif /* vs_capture.h */

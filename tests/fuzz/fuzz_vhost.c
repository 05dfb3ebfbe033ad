/*
 * fuzz_vhost.c: libFuzzer target for the vhost-user rings (csrc/vs_virtq.c,
 * csrc/vs_vhost.c): a hostile guest's memory and virtqueues.
 *
 * Input: byte 0 picks the negotiated features (bit 0 MRG_RXBUF, 1
 * EVENT_IDX, 2 INDIRECT_DESC, 3 VERSION_1), byte 1 the ring size (2^(1 +
 * b % 8)), byte 2 how many frames to write into the guest RX queue; the
 * rest is the guest's memory, MEM_LEN bytes (zero-padded), which holds two
 * virtqueues at fixed offsets (guest RX: descriptors at 0, avail at 4 KiB,
 * used at 8 KiB; guest TX the same 16 KiB further) and whatever the
 * descriptors point at: every descriptor address, length, flag, next
 * index and ring index is the fuzzer's.  The memory is a malloc() of
 * exactly MEM_LEN bytes, so ASan sees any access outside guest memory.
 *
 * Each run dequeues from the TX queue until it stops giving frames (at most
 * 8 polls), writes frames into the RX queue, and flips notifications.
 *
 * Oracle (__builtin_trap() when broken):
 *   - a poll never consumes more chains than the ring holds, and never
 *     returns more frames than chains;
 *   - the used index the guest sees moves exactly by the chains consumed;
 *   - a queue reported broken stays broken and gives nothing more.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs_counters.h"
#include "vs_vhost.h"
#include "vs_virtq.h"

#define MEM_LEN (64u * 1024)
#define GPA 0x10000000ull
#define OUT_LEN (VS_BURST_FRAMES * 2100u)
#define VS_BURST_FRAMES 32

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "fuzz_vhost: invariant broken: %s\n", #cond);  \
            __builtin_trap();                                              \
        }                                                                  \
    } while (0)

static uint16_t
used_idx(const uint8_t *mem, uint32_t vring)
{
    uint16_t v;
    memcpy(&v, mem + vring * 16384 + 8192 + 2, 2);
    return v;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) {
        return 0;
    }
    uint8_t *mem = calloc(1, MEM_LEN);
    uint8_t *out = malloc(OUT_LEN);
    uint64_t drops[VS_N_COUNTERS] = { 0 };
    if (!mem || !out) {
        abort();
    }
    memcpy(mem, data + 3, size - 3 < MEM_LEN ? size - 3 : MEM_LEN);

    struct vs_vhost_params p;
    memset(&p, 0, sizeof p);
    p.features = ((data[0] & 1) ? 1ull << VS_VIRTIO_NET_F_MRG_RXBUF : 0)
                 | ((data[0] & 2) ? 1ull << VS_VIRTIO_RING_F_EVENT_IDX : 0)
                 | ((data[0] & 4) ? 1ull << VS_VIRTIO_RING_F_INDIRECT_DESC : 0)
                 | ((data[0] & 8) ? 1ull << VS_VIRTIO_F_VERSION_1 : 0);
    uint32_t num = 1u << (1 + data[1] % 8);
    p.n_regions = 1;
    p.regions[0].guest_phys_addr = GPA;
    p.regions[0].size = MEM_LEN;
    p.n_qp = 1;
    for (uint32_t v = 0; v < 2; v++) {
        p.vrings[v].num = num;
        p.vrings[v].desc_addr = GPA + v * 16384;
        p.vrings[v].avail_addr = GPA + v * 16384 + 4096;
        p.vrings[v].used_addr = GPA + v * 16384 + 8192;
        p.vrings[v].kick_fd = p.vrings[v].call_fd = -1;
    }
    int error;
    struct vs_vhost *vh = vs_vhost_new_unmapped(&p, mem, &error);
    CHECK(vh != NULL);

    int was_broken = 0;
    for (int poll = 0; poll < 8; poll++) {
        uint16_t before = used_idx(mem, 1);
        uint16_t avail_before = vs_vhost_last_avail(vh, 1);
        uint64_t d0 = drops[VS_C_DROP_VHOST_RING_BROKEN];
        uint32_t n = vs_vhost_test_dequeue(vh, 1, out, OUT_LEN, drops);
        uint16_t consumed = (uint16_t) (vs_vhost_last_avail(vh, 1) - avail_before);
        CHECK(consumed <= num && consumed <= VS_BURST_FRAMES);
        CHECK(n <= consumed);
        CHECK((uint16_t) (used_idx(mem, 1) - before) == consumed);
        if (was_broken) {
            CHECK(consumed == 0);
        }
        was_broken = drops[VS_C_DROP_VHOST_RING_BROKEN] > d0 || was_broken;
        if (!consumed) {
            break;
        }
    }

    uint8_t frame[1600];
    memset(frame, 0xab, sizeof frame);
    memset(frame, 0, 12);
    for (uint32_t i = 0; i < data[2] % 16; i++) {
        uint16_t before = used_idx(mem, 0);
        uint16_t avail_before = vs_vhost_last_avail(vh, 0);
        uint32_t len = 12 + 60 + (i * 97) % (sizeof frame - 72);
        int r = vs_vhost_test_enqueue(vh, 0, frame, len);
        uint16_t consumed = (uint16_t) (vs_vhost_last_avail(vh, 0) - avail_before);
        CHECK((uint16_t) (used_idx(mem, 0) - before) == consumed);
        CHECK(r ? consumed == 0 : consumed >= 1);
    }

    vs_vhost_free(vh);
    free(out);
    free(mem);
    return 0;
}

/*
 * vs_ring.h: PACKET_MMAP rx rings (TPACKET_V2 or V3) for packet-socket ports.
 *
 * A ring is an object the control plane owns, like the socket it is mapped
 * on.  The control plane sets one up on an AF_PACKET socket before binding
 * it (vs_ring_attach()) and hands the ring to the switch in the port's
 * parameters (struct vs_port_params 'rings', one per rx queue, NULL = no
 * ring): a worker reaches it through the published config, the same way it
 * reaches the queue's fd, so there is no process-wide table to keep in step
 * with fd numbers.  A port whose ring cannot be set up simply keeps
 * recvmmsg().  Before bind() matters: setting a ring purges the socket's
 * receive queue (af_packet.c packet_set_ring()), so frames queued by then
 * would be lost.
 *
 * The kernel fills blocks of frames and hands a whole block to us at once
 * (when it is full, or when the block retire timer fires); we walk its
 * frames without a syscall and hand the block back by writing its status.
 * Frames are forwarded straight out of the ring (no copy), so a block is
 * handed back only at the next read of the same ring, once the burst that
 * used it has been forwarded and sent.
 *
 * Threads and lifetime: one reader at a time per ring (a try-lock makes a
 * second reader, possible for a moment while an rx queue moves between
 * workers, read nothing).  vs_ring_attach(), vs_ring_detach() and
 * vs_ring_get_stats() are for the control thread.  The ring lives exactly
 * as long as its socket: detach it only once a config without it has been
 * published (vs_switch_publish() has then waited every worker out), right
 * before closing the socket.
 */
#ifndef VS_RING_H
#define VS_RING_H 1

#include <stdatomic.h>
#include <stdint.h>

/* Defaults: 256 KiB blocks hold at least three 64 KiB GSO super-frames or
 * ~2000 small frames; 32 of them make 8 MiB per socket, the same budget as
 * the socket buffers the recvmmsg path uses. */
#define VS_RING_BLOCK_SIZE (256u << 10)
#define VS_RING_BLOCK_NR 32u
#define VS_RING_TOV_MS 1u
/* TPACKET_V2 (per-frame slots, woken per frame: no retire timer): slots of
 * 68 KiB hold a GSO super-frame with its headers; 128 make 8.5 MiB. */
#define VS_RING_V2_FRAME_SIZE (17u * 4096u)
#define VS_RING_V2_FRAME_NR 128u
/* The version used when none is asked for (see docs/io.md: V3 costs the
 * least CPU per frame; V2 avoids V3's retire-timer latency but measured
 * dearer than recvmmsg() here). */
#define VS_RING_VERSION 3

struct vs_ring_stats {
    uint64_t blocks;            /* blocks consumed */
    uint64_t frames;            /* frames handed to the switch */
    uint64_t truncated;         /* frames the kernel clamped (snaplen < len) */
    uint64_t vlan_restored;     /* frames whose stripped 802.1Q tag we put back */
    uint64_t kernel_packets;    /* PACKET_STATISTICS: frames seen by the ring */
    uint64_t kernel_drops;      /* PACKET_STATISTICS: dropped, ring full */
    uint64_t kernel_freezes;    /* PACKET_STATISTICS: times the ring froze */
};

/* One frame of a block, as the parser hands it out. */
struct vs_ring_frame {
    uint8_t *data;              /* Ethernet header, inside the ring */
    uint32_t len;               /* bytes at 'data' (tp_snaplen) */
    uint32_t wire_len;          /* bytes on the wire (tp_len) */
    const uint8_t *vnet;        /* its virtio_net_hdr (= vnet_copy), or NULL */
    uint8_t vnet_copy[12];
    uint32_t status;            /* tp_status */
    uint16_t vlan_tci;          /* valid if status & TP_STATUS_VLAN_VALID */
    uint16_t vlan_tpid;         /* valid if status & TP_STATUS_VLAN_TPID_VALID */
};

struct vs_ring {
    uint8_t *map;
    uint64_t map_len;
    uint32_t block_size;
    uint32_t block_nr;
    uint32_t vnet_hdr_len;      /* 0 or 10: the header before each frame */
    int version;                /* 2 or 3 (TPACKET_V2: a "block" is a slot) */
    int fd;                     /* its socket (not owned), for PACKET_STATISTICS;
                                 * -1 for a wrapped ring */
    int owns_map;               /* munmap on free */

    /* Reader state. */
    _Atomic int busy;
    uint32_t cur;               /* block being read */
    uint32_t left;              /* frames left in it; 0 = not opened */
    uint8_t *next;              /* next frame in it */
    uint32_t n_done;            /* read blocks before 'cur' not yet returned */

    struct vs_ring_stats stats; /* written by the reader only */
};

/* Control plane. */

/* Sets up and maps a ring on AF_PACKET socket 'fd' (PACKET_VNET_HDR set
 * or not: 'vnet_hdr_len' 10 or 0), TPACKET_V'version' (2 or 3; 0 = the
 * default, VS_RING_VERSION), 'block_nr' blocks of 'block_size' bytes and,
 * for V3, a block retire timeout of 'tov_ms' milliseconds (0s: defaults).
 * The caller keeps owning 'fd'; the ring remembers it only to read the
 * kernel's statistics.  Returns 0 and the ring in '*ringp', or a positive
 * errno (then the socket is left without a ring and '*ringp' is NULL). */
int vs_ring_attach(int fd, uint32_t vnet_hdr_len, int version,
                   uint32_t block_size, uint32_t block_nr, uint32_t tov_ms,
                   struct vs_ring **ringp);
/* Unmaps and frees 'ring' (one from vs_ring_attach() or vs_ring_wrap());
 * NULL is a no-op.  Only once no published config names it. */
void vs_ring_detach(struct vs_ring *ring);
/* Copies the counters of 'ring' into '*out'.  The kernel_* ones are read
 * from the socket now (PACKET_STATISTICS resets the kernel's counts, so
 * they are accumulated in the ring): control thread only. */
void vs_ring_get_stats(struct vs_ring *ring, struct vs_ring_stats *out);
/* The TPACKET version 'ring' runs: 2 or 3 (what the kernel accepted, which
 * is what operators are shown, not what the config asked for).  Any
 * thread that holds the ring. */
int vs_ring_version(const struct vs_ring *ring);

/* Readers (workers). */

/* Returns the blocks read by the previous call to the kernel, then reads
 * up to 'max' frames into 'out'.  Returns the count, or -1 if another
 * thread is reading the ring.  '*released' is set to the number of blocks
 * handed back. */
int vs_ring_read(struct vs_ring *, struct vs_ring_frame *out, uint32_t max,
                 uint32_t *released);

/* Hands the blocks read so far back to the kernel now: for a reader that
 * copied every frame of its last burst out of the ring. */
void vs_ring_release(struct vs_ring *);

/* Frames up to this size are copied out of the ring by the worker (cheaper
 * than keeping their block until the next poll, which costs a wakeup);
 * larger ones, GSO super-frames, are forwarded in place. */
#define VS_RING_COPY_MAX 2048

/* Tests: a ring over caller-owned memory laid out as the kernel would
 * ('block_nr' blocks of 'block_size' bytes), without a socket; freed with
 * vs_ring_detach(), which leaves 'mem' alone.  NULL on bad arguments. */
struct vs_ring *vs_ring_wrap(void *mem, int version, uint32_t block_size,
                             uint32_t block_nr, uint32_t vnet_hdr_len);

#endif /* vs_ring.h */

/*
 * vs_ring.h: PACKET_MMAP rx rings (TPACKET_V2 or V3) for packet-socket ports.
 *
 * The control plane sets a ring up on an AF_PACKET socket before binding it
 * (vs_ring_attach()), and every worker finds it through the socket's fd:
 * the rx queue fds stay what they were, and a port whose ring cannot be set
 * up simply keeps recvmmsg().  Before bind() matters: setting a ring purges
 * the socket's receive queue (af_packet.c packet_set_ring()), so frames
 * queued by then would be lost.  (vs_ring_prepare() defers the setup to the
 * first worker poll instead, and therefore loses the frames queued before
 * it: only for sockets that cannot have any yet.)
 *
 * The kernel fills blocks of frames and hands a whole block to us at once
 * (when it is full, or when the block retire timer fires); we walk its
 * frames without a syscall and hand the block back by writing its status.
 * Frames are forwarded straight out of the ring (no copy), so a block is
 * handed back only at the next read of the same ring, once the burst that
 * used it has been forwarded and sent.
 *
 * Threads: one reader at a time per ring (a try-lock makes a second reader,
 * possible for a moment while an rx queue moves between workers, read
 * nothing).  attach/detach are for the control thread; detach only once no
 * published config names the fd.
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

/* Largest fd that can carry a ring; larger ones fall back to recvmmsg. */
#define VS_RING_MAX_FD 16384

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
    int fd;
    int owns_map;               /* munmap on free */

    /* Reader state. */
    _Atomic int busy;
    uint32_t cur;               /* block being read */
    uint32_t left;              /* frames left in it; 0 = not opened */
    uint8_t *next;              /* next frame in it */
    uint32_t n_done;            /* read blocks before 'cur' not yet returned */

    struct vs_ring_stats stats; /* written by the reader only */
};

/* Ring states of an fd, as vs_ring_state() reports them. */
#define VS_RING_NONE 0      /* no ring: recvmmsg() */
#define VS_RING_WANTED 1    /* set up at the first poll by a worker */
#define VS_RING_READY 2     /* in use */
#define VS_RING_FAILED 3    /* the kernel refused: recvmmsg() */

/* Control plane: mark AF_PACKET socket 'fd' (PACKET_VNET_HDR already set
 * or not: 'vnet_hdr_len' 0 or 10) as wanting a ring, set up (TPACKET_V3,
 * default sizes, retire timeout 'tov_ms', 0 = default) by the first worker
 * that polls it: until the switch polls the socket, it reads as any
 * socket.  Forgets what was known about an earlier fd of that number.
 * The setup purges the socket's receive queue: frames queued before it are
 * lost.  Returns 0 or a positive errno. */
int vs_ring_prepare(int fd, uint32_t vnet_hdr_len, int version,
                    uint32_t tov_ms);
/* Sets up, maps and registers a ring on 'fd' now (0s: defaults).  Returns
 * 0 or a positive errno; on error the socket is left without a ring. */
int vs_ring_attach(int fd, uint32_t vnet_hdr_len, int version,
                   uint32_t block_size, uint32_t block_nr, uint32_t tov_ms);
/* Unregisters and unmaps the ring of 'fd' (no-op without one), forgets
 * the fd.  Only once no published config names 'fd', before closing it. */
void vs_ring_detach(int fd);
/* VS_RING_*; '*error' is the errno of a VS_RING_FAILED setup. */
int vs_ring_state(int fd, int *error);
/* Nonzero if 'fd' has a ring. */
int vs_ring_attached(int fd);
/* Counters of the ring of 'fd' (kernel_* read now; PACKET_STATISTICS
 * resets the kernel's counts, so they are accumulated here).  Returns 0,
 * or ENOENT without a ring. */
int vs_ring_get_stats(int fd, struct vs_ring_stats *);

/* The worker's side: the ring of 'fd', NULL if none; vs_ring_get() sets
 * up a wanted one first. */
struct vs_ring *vs_ring_lookup(int fd);
struct vs_ring *vs_ring_get(int fd);
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
 * ('block_nr' blocks of 'block_size' bytes), and its reader. */
struct vs_ring *vs_ring_wrap(void *mem, int version, uint32_t block_size,
                             uint32_t block_nr, uint32_t vnet_hdr_len);
void vs_ring_unwrap(struct vs_ring *);

#endif /* vs_ring.h */

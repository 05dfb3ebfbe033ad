/*
 * vs_ring.c: PACKET_MMAP rx rings, TPACKET_V2 and TPACKET_V3 (see vs_ring.h).
 *
 * Layout the kernel gives a frame with PACKET_VNET_HDR (af_packet.c's
 * tpacket_rcv(), the same code for both versions; checked empirically by
 * tests/e2e/test_netdev_ring.py, see docs/io.md):
 *
 *   V3 block: struct tpacket_block_desc, then frames from
 *          offset_to_first_pkt, each tp_next_offset after the previous one,
 *          num_pkts of them; one status for the whole block;
 *   V2 slot: one frame, its own tp_status;
 *   frame: struct tpacket{2,3}_hdr | struct sockaddr_ll | pad |
 *          virtio_net_hdr (10 bytes) | Ethernet frame at tp_mac
 *
 * so the header sits right before the frame, at tp_mac - 10.  V3 hands a
 * block over only when it is full or its retire timer fires (a lone frame
 * waits up to tp_retire_blk_tov); V2 wakes the reader per frame.  A frame the
 * block cannot hold whole is clamped: tp_snaplen < tp_len.  The receive
 * path has moved an 802.1Q tag into skb metadata before packet sockets see
 * the frame: it comes back as tp_vlan_tci/tp_vlan_tpid with
 * TP_STATUS_VLAN_VALID, and we put it back in the frame.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/if_packet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vs_ring.h"

#ifndef SOL_PACKET
#define SOL_PACKET 263
#endif

#define VNET_LEN 10
#define ETH_P_8021Q_ 0x8100
#define VNET_F_NEEDS_CSUM 1

static struct tpacket_block_desc *
block(const struct vs_ring *r, uint32_t i)
{
    return (struct tpacket_block_desc *) (r->map + (size_t) i * r->block_size);
}

static void
stat_add(uint64_t *s, uint64_t n)
{
    __atomic_store_n(s, *s + n, __ATOMIC_RELAXED);
}

/* A ring over 'mem' (see vs_ring.h); also the ring vs_ring_attach() maps. */
struct vs_ring *
vs_ring_wrap(void *mem, int version, uint32_t block_size, uint32_t block_nr,
             uint32_t vnet_hdr_len)
{
    if (version != 2 && version != 3) {
        return NULL;
    }
    struct vs_ring *r = calloc(1, sizeof *r);
    if (!r) {
        return NULL;
    }
    r->version = version;
    r->map = mem;
    r->map_len = (uint64_t) block_size * block_nr;
    r->block_size = block_size;
    r->block_nr = block_nr;
    r->vnet_hdr_len = vnet_hdr_len;
    r->fd = -1;
    return r;
}

static void
teardown_ring(int fd)
{
    struct tpacket_req3 req;
    memset(&req, 0, sizeof req);
    setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req);
    int v = TPACKET_V1;
    setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v);
}

/* Sets up the ring itself; returns it or NULL with *error set. */
static struct vs_ring *
ring_setup(int fd, uint32_t vnet_hdr_len, int version, uint32_t block_size,
           uint32_t block_nr, uint32_t tov_ms, int *error)
{
    long page = sysconf(_SC_PAGESIZE);

    version = version ? version : VS_RING_VERSION;
    if (version == 2) {
        block_size = block_size ? block_size : VS_RING_V2_FRAME_SIZE;
        block_nr = block_nr ? block_nr : VS_RING_V2_FRAME_NR;
    } else {
        block_size = block_size ? block_size : VS_RING_BLOCK_SIZE;
        block_nr = block_nr ? block_nr : VS_RING_BLOCK_NR;
    }
    tov_ms = tov_ms ? tov_ms : VS_RING_TOV_MS;
    if ((vnet_hdr_len != 0 && vnet_hdr_len != VNET_LEN)
        || (version != 2 && version != 3)
        || page <= 0 || block_size % (uint32_t) page || block_nr == 0) {
        *error = EINVAL;
        return NULL;
    }

    int v = version == 2 ? TPACKET_V2 : TPACKET_V3;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) {
        *error = errno;
        return NULL;
    }
    struct tpacket_req3 req;
    memset(&req, 0, sizeof req);
    req.tp_block_size = block_size;
    req.tp_block_nr = block_nr;
    if (version == 2) {
        /* One fixed slot per block, each big enough for a GSO frame. */
        req.tp_frame_size = block_size;
        req.tp_frame_nr = block_nr;
    } else {
        req.tp_frame_size = 2048;   /* V3 packs frames; only the count matters */
        req.tp_frame_nr = block_size / req.tp_frame_size * block_nr;
        req.tp_retire_blk_tov = tov_ms;
    }
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
        *error = errno;
        v = TPACKET_V1;
        setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v);
        return NULL;
    }
    size_t len = (size_t) block_size * block_nr;
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        *error = errno;
        teardown_ring(fd);
        return NULL;
    }
    struct vs_ring *r = vs_ring_wrap(map, version, block_size, block_nr,
                                     vnet_hdr_len);
    if (!r) {
        munmap(map, len);
        teardown_ring(fd);
        *error = ENOMEM;
        return NULL;
    }
    r->fd = fd;
    r->owns_map = 1;
    return r;
}

/* Sets up a ring on socket 'fd'; see vs_ring.h for the arguments.
 * Returns 0 and the ring in '*ringp', or a positive errno. */
int
vs_ring_attach(int fd, uint32_t vnet_hdr_len, int version, uint32_t block_size,
               uint32_t block_nr, uint32_t tov_ms, struct vs_ring **ringp)
{
    *ringp = NULL;
    if (fd < 0) {
        return EBADF;
    }
    int error = 0;
    struct vs_ring *r = ring_setup(fd, vnet_hdr_len, version, block_size,
                                   block_nr, tov_ms, &error);
    if (!r) {
        return error;
    }
    *ringp = r;
    return 0;
}

/* Unmaps (if it mapped it) and frees 'r'.  The socket keeps its ring
 * setting: it is about to be closed, which tears the ring down anyway. */
void
vs_ring_detach(struct vs_ring *r)
{
    if (r && r->owns_map) {
        munmap(r->map, r->map_len);
    }
    free(r);
}

/* Copies the counters of 'r' into 'out', reading the kernel's first. */
void
vs_ring_get_stats(struct vs_ring *r, struct vs_ring_stats *out)
{
    struct tpacket_stats_v3 st;
    socklen_t sl = sizeof st;
    memset(&st, 0, sizeof st);
    if (r->fd >= 0
        && getsockopt(r->fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0) {
        /* Only the control thread writes these three. */
        stat_add(&r->stats.kernel_packets, st.tp_packets);
        stat_add(&r->stats.kernel_drops, st.tp_drops);
        stat_add(&r->stats.kernel_freezes, st.tp_freeze_q_cnt);
    }
    out->blocks = __atomic_load_n(&r->stats.blocks, __ATOMIC_RELAXED);
    out->frames = __atomic_load_n(&r->stats.frames, __ATOMIC_RELAXED);
    out->truncated = __atomic_load_n(&r->stats.truncated, __ATOMIC_RELAXED);
    out->vlan_restored = __atomic_load_n(&r->stats.vlan_restored,
                                         __ATOMIC_RELAXED);
    out->kernel_packets = r->stats.kernel_packets;
    out->kernel_drops = r->stats.kernel_drops;
    out->kernel_freezes = r->stats.kernel_freezes;
}

/* Returns the TPACKET version of 'r', 2 or 3. */
int
vs_ring_version(const struct vs_ring *r)
{
    return r->version;
}

/* Puts the tag the kernel stripped back between the MAC addresses and the
 * EtherType (the 4 bytes in front of the frame belong to the virtio-net
 * header, already copied out), and moves the header's offsets with it. */
static void
restore_vlan(struct vs_ring_frame *f, uint8_t *vnet_copy, uint32_t vnet_len)
{
    uint16_t tpid = (f->status & TP_STATUS_VLAN_TPID_VALID) && f->vlan_tpid
                    ? f->vlan_tpid : ETH_P_8021Q_;
    uint8_t *d = f->data - 4;
    memmove(d, f->data, 12);
    d[12] = (uint8_t) (tpid >> 8);
    d[13] = (uint8_t) tpid;
    d[14] = (uint8_t) (f->vlan_tci >> 8);
    d[15] = (uint8_t) f->vlan_tci;
    f->data = d;
    f->len += 4;
    f->wire_len += 4;
    if (vnet_len) {
        uint16_t v;
        if (vnet_copy[0] & VNET_F_NEEDS_CSUM) {
            memcpy(&v, vnet_copy + 6, 2);
            v = (uint16_t) (v + 4);
            memcpy(vnet_copy + 6, &v, 2);
        }
        if ((vnet_copy[1] & 0x7f) != 0) {
            memcpy(&v, vnet_copy + 2, 2);
            if (v) {
                v = (uint16_t) (v + 4);
                memcpy(vnet_copy + 2, &v, 2);
            }
        }
    }
}

/* Fills 'f' from the frame at 'base' (its tpacket header), 'hdr_len'
 * bytes of header; returns 0 if the frame's offsets do not fit 'room'. */
static int
fill_frame(struct vs_ring *r, struct vs_ring_frame *f, uint8_t *base,
           uint32_t room, uint32_t hdr_len, uint32_t mac, uint32_t snaplen,
           uint32_t len, uint32_t status, uint16_t tci, uint16_t tpid)
{
    if ((uint64_t) mac + snaplen > room
        || mac < hdr_len + r->vnet_hdr_len + 4) {
        return 0;
    }
    f->data = base + mac;
    f->len = snaplen;
    f->wire_len = len;
    f->status = status;
    f->vlan_tci = tci;
    f->vlan_tpid = tpid;
    f->vnet = NULL;
    if (r->vnet_hdr_len) {
        /* Copied: restoring a tag overwrites its last bytes. */
        memcpy(f->vnet_copy, f->data - r->vnet_hdr_len, r->vnet_hdr_len);
        f->vnet = f->vnet_copy;
    }
    if ((status & TP_STATUS_VLAN_VALID) && snaplen == len) {
        restore_vlan(f, f->vnet_copy, r->vnet_hdr_len);
        stat_add(&r->stats.vlan_restored, 1);
    }
    if (f->len < f->wire_len) {
        stat_add(&r->stats.truncated, 1);
    }
    stat_add(&r->stats.frames, 1);
    return 1;
}

/* TPACKET_V2: one frame per slot ("block"), each with its own status. */
static int
read_v2(struct vs_ring *r, struct vs_ring_frame *out, uint32_t max)
{
    uint32_t n = 0;
    while (n < max && r->n_done < r->block_nr) {
        struct tpacket2_hdr *h = (struct tpacket2_hdr *) block(r, r->cur);
        uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
        if (!(st & TP_STATUS_USER)) {
            break;
        }
        stat_add(&r->stats.blocks, 1);
        n += (uint32_t) fill_frame(r, &out[n], (uint8_t *) h, r->block_size,
                                   sizeof *h, h->tp_mac, h->tp_snaplen,
                                   h->tp_len, st, h->tp_vlan_tci,
                                   h->tp_vlan_tpid);
        r->n_done++;
        r->cur = (r->cur + 1) % r->block_nr;
    }
    return (int) n;
}

/* TPACKET_V3: blocks of packed frames, one status per block. */
static int
read_v3(struct vs_ring *r, struct vs_ring_frame *out, uint32_t max)
{
    uint32_t n = 0;
    while (n < max) {
        struct tpacket_block_desc *bd = block(r, r->cur);
        if (!r->left) {
            uint32_t st = __atomic_load_n(&bd->hdr.bh1.block_status,
                                          __ATOMIC_ACQUIRE);
            if (!(st & TP_STATUS_USER)) {
                break;
            }
            stat_add(&r->stats.blocks, 1);
            r->left = bd->hdr.bh1.num_pkts;
            r->next = (uint8_t *) bd + bd->hdr.bh1.offset_to_first_pkt;
            if (!r->left) {
                /* Nothing in it (never seen): straight back. */
                __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL,
                                 __ATOMIC_RELEASE);
                r->cur = (r->cur + 1) % r->block_nr;
                continue;
            }
        }

        struct tpacket3_hdr *h = (struct tpacket3_hdr *) r->next;
        uint8_t *end = (uint8_t *) bd + r->block_size;
        int ok = (uint8_t *) h + sizeof *h <= end
                 && fill_frame(r, &out[n], (uint8_t *) h,
                               (uint32_t) (end - (uint8_t *) h), sizeof *h,
                               h->tp_mac, h->tp_snaplen, h->tp_len,
                               h->tp_status, h->hv1.tp_vlan_tci,
                               h->hv1.tp_vlan_tpid);
        n += (uint32_t) ok;
        r->left--;
        if (!ok || !r->left || !h->tp_next_offset
            || h->tp_next_offset > (uint32_t) (end - (uint8_t *) h)) {
            /* Block finished (a corrupt frame ends it too): return it
             * with the next call, once this burst has been sent. */
            r->left = 0;
            r->n_done++;
            r->cur = (r->cur + 1) % r->block_nr;
            if (r->n_done == r->block_nr) {
                break;
            }
            continue;
        }
        r->next += h->tp_next_offset;
    }
    return (int) n;
}

/* Hands the read blocks (V2: slots) back to the kernel; the reader holds
 * the ring.  Returns how many. */
static uint32_t
release_done(struct vs_ring *r)
{
    uint32_t n_rel = r->n_done;
    while (r->n_done) {
        uint32_t b = (r->cur + r->block_nr - r->n_done) % r->block_nr;
        if (r->version == 2) {
            __atomic_store_n(&((struct tpacket2_hdr *) block(r, b))->tp_status,
                             TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        } else {
            __atomic_store_n(&block(r, b)->hdr.bh1.block_status,
                             TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        }
        r->n_done--;
    }
    return n_rel;
}

void
vs_ring_release(struct vs_ring *r)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&r->busy, &expected, 1)) {
        release_done(r);
        atomic_store(&r->busy, 0);
    }
}

int
vs_ring_read(struct vs_ring *r, struct vs_ring_frame *out, uint32_t max,
             uint32_t *released)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&r->busy, &expected, 1)) {
        *released = 0;
        return -1;
    }

    /* The previous burst has been forwarded: its blocks go back. */
    *released = release_done(r);

    int n = r->version == 2 ? read_v2(r, out, max) : read_v3(r, out, max);
    atomic_store(&r->busy, 0);
    return n;
}

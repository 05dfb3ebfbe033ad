/*
 * vs_vxlan_priv.h: what the vxlan port's two files share (vs_vxlan.c:
 * VTEP table, hashing, encapsulation; vs_vxlan_rx.c: receive and
 * decapsulation).  Nothing outside them includes it; the rules of
 * vs_vxlan.h (who may call what from which thread) hold for all of it.
 */
#ifndef VS_VXLAN_PRIV_H
#define VS_VXLAN_PRIV_H 1

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "vs_frame.h"
#include "vs_vxlan.h"

/* Segments of one super-frame, collected before any is sent. */
#define SEGS_MAX 128
#define SEG_AREA (2 * VS_FRAME_MAX)
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

struct vtep {
    struct sockaddr_storage sa;     /* for the raw socket */
    socklen_t sa_len;
    struct sockaddr_storage sa_udp; /* for the UDP pool: with dstport */
    uint8_t addr[16];
    _Atomic int flood;              /* in every VNI's flood list (a static peer) */
    /* Bit v: in the flood list of VLAN v's VNI only (an EVPN type-3 route,
     * which is per VNI).  VLANs and VNIs map one to one on a port. */
    _Atomic uint64_t flood_vlans[4096 / 64];
};

/* What one context owns: written by that context's thread only. */
struct vx_ctx {
    uint64_t counters[VS_VXLAN_VTEPS_MAX][VS_VTEP_N_COUNTERS];
    uint8_t *seg_area;
    uint32_t seg_off[SEGS_MAX];
    uint32_t seg_len[SEGS_MAX];
};

struct vni_vlan {
    uint32_t vni;
    uint16_t vlan;
};

struct vs_vxlan {
    struct vs_vxlan_params p;
    uint64_t seed;
    uint32_t n_vnis;
    struct vni_vlan vnis[4096];     /* sorted by VNI */
    pthread_mutex_t add_lock;       /* adding a VTEP; nothing else */
    _Atomic uint32_t n_vteps;       /* valid indexes are 1..n_vteps */
    struct vtep vteps[VS_VXLAN_VTEPS_MAX];
    struct vx_ctx *ctx;             /* p.n_ctx of them */
};

/* VTEPs (vs_vxlan.c). */
uint32_t vs_vx_find_vtep(const struct vs_vxlan *, const uint8_t *addr);
uint32_t vs_vx_add_vtep(struct vs_vxlan *, const uint8_t *addr, int flood);
int vs_vx_floods(const struct vtep *, uint16_t vlan);
uint16_t vs_vx_vni_to_vlan(const struct vs_vxlan *, uint32_t vni);
void vs_vx_vtep_count(struct vx_ctx *, uint32_t vtep, int which, uint64_t n);

/* The 'n' (<= 8) bytes at 'p' as a big-endian number. */
static inline uint64_t
vs_vx_load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

#endif /* vs_vxlan_priv.h */

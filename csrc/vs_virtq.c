/*
 * vs_virtq.c: walking split virtqueues in untrusted guest memory.
 *
 * Batch semantics: vs_virtq_dequeue() takes up to 'max' chains from the
 * avail ring, copies each out (header and frame apart), returns every
 * chain to the used ring at once (length 0: we wrote nothing) and
 * publishes the used index once for the batch.  vs_virtq_enqueue() writes
 * one frame over one chain (or, with MRG_RXBUF, as many chains as it
 * needs); the caller publishes the used index (vs_virtq_publish_used())
 * once for all the frames of a burst.
 *
 * Memory ordering (virtio 1.x 2.7.13): the avail index is loaded with
 * acquire before the entries it covers are read; used entries are written
 * before the used index is stored with release; a full fence separates
 * publishing from reading the guest's notification suppression fields,
 * and turning notifications on from looking at the avail index again.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "vs_counters.h"
#include "vs_frame.h"
#include "vs_virtq.h"

static inline uint16_t
load16(const uint16_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void
store16(uint16_t *p, uint16_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* The host address of guest physical range ['gpa', 'gpa' + 'len') if one
 * region holds all of it, else NULL. */
void *
vs_vmem_gpa(const struct vs_vmem *m, uint64_t gpa, uint64_t len)
{
    for (uint32_t i = 0; i < m->n; i++) {
        const struct vs_vmem_region *r = &m->r[i];
        if (gpa >= r->gpa && gpa - r->gpa < r->size
            && len <= r->size - (gpa - r->gpa)) {
            return r->host + (gpa - r->gpa);
        }
    }
    return NULL;
}

/* The same for an address in the front end's own address space (ring
 * addresses in VHOST_USER_SET_VRING_ADDR are those). */
void *
vs_vmem_ua(const struct vs_vmem *m, uint64_t ua, uint64_t len)
{
    for (uint32_t i = 0; i < m->n; i++) {
        const struct vs_vmem_region *r = &m->r[i];
        if (ua >= r->uaddr && ua - r->uaddr < r->size
            && len <= r->size - (ua - r->uaddr)) {
            return r->host + (ua - r->uaddr);
        }
    }
    return NULL;
}

/* Points 'vq' at the rings 'v' describes in 'm', with the negotiated
 * 'features'.  Returns 0, or EINVAL when the size is not a power of two
 * up to VS_VHOST_MAX_RING or a ring is not wholly inside one region. */
int
vs_virtq_setup(struct vs_virtq *vq, const struct vs_vmem *m,
               const struct vs_vhost_vring *v, uint64_t features)
{
    uint32_t num = v->num;
    memset(vq, 0, sizeof *vq);
    vq->kick_fd = vq->call_fd = -1;
    if (!num || num > VS_VHOST_MAX_RING || (num & (num - 1))) {
        return EINVAL;
    }
    vq->desc = vs_vmem_ua(m, v->desc_addr, 16ull * num);
    vq->avail = vs_vmem_ua(m, v->avail_addr, 6ull + 2ull * num);
    vq->used = vs_vmem_ua(m, v->used_addr, 6ull + 8ull * num);
    if (!vq->desc || !vq->avail || !vq->used
        || (v->desc_addr & 15) || (v->avail_addr & 1) || (v->used_addr & 3)) {
        return EINVAL;
    }
    vq->used_ring = (struct vs_vring_used_elem *) (vq->used + 2);
    vq->num = num;
    vq->mask = num - 1;
    vq->kick_fd = v->kick_fd;
    vq->call_fd = v->call_fd;
    vq->event_idx = !!(features & (1ull << VS_VIRTIO_RING_F_EVENT_IDX));
    vq->indirect = !!(features & (1ull << VS_VIRTIO_RING_F_INDIRECT_DESC));
    vq->mrg = !!(features & (1ull << VS_VIRTIO_NET_F_MRG_RXBUF));
    vq->hdr_len = (vq->mrg || (features & (1ull << VS_VIRTIO_F_VERSION_1)))
                  ? VS_VNET_HDR_MRG_LEN : VS_VNET_HDR_LEN;
    /* What the guest sees as used is where we go on.  We never hold a
     * chain (each is returned in the poll that took it), so the used index
     * is our last avail index too; a front end that says otherwise in
     * SET_VRING_BASE (DPDK's virtio_user says 0 when a backend reconnects,
     * its rings running on) is overruled, as DPDK's vhost library does. */
    vq->used_idx = vq->published = load16(&vq->used[1]);
    vq->last_avail = v->last_avail;
    if (vq->last_avail != vq->used_idx) {
        vq->last_avail = vq->used_idx;
    }
    return 0;
}

/* Stores in '*n' how many avail entries wait.  Returns 0, or
 * VS_C_DROP_VHOST_RING_BROKEN (and stops the queue) when the guest's index
 * is more than a ring ahead of ours: its ring is not a ring any more. */
int
vs_virtq_pending(struct vs_virtq *vq, uint16_t *n)
{
    *n = 0;
    if (atomic_load_explicit(&vq->broken, memory_order_relaxed)) {
        return VS_C_DROP_VHOST_RING_BROKEN;
    }
    uint16_t pending = (uint16_t) (load16(&vq->avail[1]) - vq->last_avail);
    if (pending > vq->num) {
        atomic_store(&vq->broken, 1);
        return VS_C_DROP_VHOST_RING_BROKEN;
    }
    *n = pending;
    return 0;
}

/* Maps the chain at 'head' into up to 'max_iov' pieces of host memory in
 * 'iov' ('*n_iov' of them, '*total' bytes).  'writable': the chain is a
 * receive buffer (every descriptor must be device-writable), else a frame
 * to send (none may be).  Returns 0 or the drop reason. */
int
vs_virtq_chain(const struct vs_vmem *m, const struct vs_virtq *vq,
               uint16_t head, int writable, struct iovec *iov,
               uint32_t max_iov, uint32_t *n_iov, uint32_t *total)
{
    const struct vs_vring_desc *table = vq->desc;
    uint32_t limit = vq->num;
    uint32_t idx = head;
    uint32_t seen = 0;
    int in_indirect = 0;
    uint64_t sum = 0;

    *n_iov = 0;
    *total = 0;
    for (;;) {
        if (idx >= limit || ++seen > limit) {
            return VS_C_DROP_VHOST_DESC_LOOP;
        }
        struct vs_vring_desc d;
        memcpy(&d, &table[idx], sizeof d);     /* read the guest's once */
        if (d.flags & VS_VRING_DESC_F_INDIRECT) {
            if (in_indirect || !vq->indirect || (d.flags & VS_VRING_DESC_F_NEXT)
                || !d.len || (d.len & 15) || d.len / 16 > VS_VHOST_MAX_RING) {
                return VS_C_DROP_VHOST_DESC_BAD;
            }
            table = vs_vmem_gpa(m, d.addr, d.len);
            if (!table || (d.addr & 7)) {
                return table ? VS_C_DROP_VHOST_DESC_BAD : VS_C_DROP_VHOST_DESC_OOB;
            }
            in_indirect = 1;
            limit = d.len / 16;
            idx = 0;
            seen = 0;
            continue;
        }
        if (!(d.flags & VS_VRING_DESC_F_WRITE) != !writable) {
            return VS_C_DROP_VHOST_DESC_BAD;
        }
        if (d.len) {
            void *p = vs_vmem_gpa(m, d.addr, d.len);
            if (!p) {
                return VS_C_DROP_VHOST_DESC_OOB;
            }
            if (*n_iov == max_iov) {
                return VS_C_DROP_VHOST_DESC_BAD;
            }
            iov[*n_iov].iov_base = p;
            iov[*n_iov].iov_len = d.len;
            (*n_iov)++;
            sum += d.len;
            if (sum > VS_FRAME_MAX + VS_VNET_HDR_MRG_LEN && !writable) {
                return VS_C_DROP_VHOST_DESC_TOO_LONG;
            }
        }
        if (!(d.flags & VS_VRING_DESC_F_NEXT)) {
            break;
        }
        idx = d.next;
    }
    *total = sum > UINT32_MAX ? UINT32_MAX : (uint32_t) sum;
    return 0;
}

/* Fills the next used entry (not yet visible to the guest). */
void
vs_virtq_push_used(struct vs_virtq *vq, uint16_t head, uint32_t len)
{
    struct vs_vring_used_elem e = { head, len };
    memcpy(&vq->used_ring[vq->used_idx & vq->mask], &e, sizeof e);
    vq->used_idx++;
}

/* Whether the guest wants an interrupt now that the used index moved from
 * 'old' to vq->used_idx (virtio 1.x 2.7.10, vring_need_event()). */
static int
need_call(const struct vs_virtq *vq, uint16_t old)
{
    if (vq->event_idx) {
        uint16_t event = load16(&vq->avail[2 + vq->num]);
        return (uint16_t) (vq->used_idx - event - 1) < (uint16_t) (vq->used_idx - old);
    }
    return !(load16(&vq->avail[0]) & VS_VRING_AVAIL_F_NO_INTERRUPT);
}

/* Makes the used entries since 'old' visible and interrupts the guest if
 * it asked. */
void
vs_virtq_publish_used(struct vs_virtq *vq, uint16_t old)
{
    if (vq->used_idx == old) {
        return;
    }
    vq->published = vq->used_idx;
    store16(&vq->used[1], vq->used_idx);
    atomic_thread_fence(memory_order_seq_cst);
    if (vq->call_fd >= 0 && need_call(vq, old)) {
        uint64_t one = 1;
        ssize_t r = write(vq->call_fd, &one, sizeof one);
        (void) r;
    }
}

/* Copies 'len' bytes at offset 'off' of the pieces 'iov' into 'out'. */
static void
gather(const struct iovec *iov, uint32_t n_iov, uint32_t off, uint8_t *out,
       uint32_t len)
{
    for (uint32_t i = 0; i < n_iov && len; i++) {
        uint32_t l = (uint32_t) iov[i].iov_len;
        if (off >= l) {
            off -= l;
            continue;
        }
        uint32_t take = l - off < len ? l - off : len;
        memcpy(out, (uint8_t *) iov[i].iov_base + off, take);
        out += take;
        len -= take;
        off = 0;
    }
}

/* Takes up to 'max' frames from guest TX queue 'vq': frame i's header to
 * 'hdrs'[i] (vq->hdr_len bytes), its Ethernet bytes to 'frames' + i *
 * 'stride' (at most 'frame_max'), its length to 'lens'[i], or there minus
 * the drop reason of a chain that could not be taken.  Returns how many
 * chains were consumed (0 on a broken ring: see vs_virtq_pending()). */
uint32_t
vs_virtq_dequeue(const struct vs_vmem *m, struct vs_virtq *vq, uint32_t max,
                 uint8_t (*hdrs)[12], uint8_t *frames, size_t stride,
                 uint32_t frame_max, int32_t *lens)
{
    uint16_t pending;
    if (vs_virtq_pending(vq, &pending)) {
        return 0;
    }
    uint32_t n = pending < max ? pending : max;
    uint16_t old_used = vq->used_idx;
    uint32_t done = 0;
    for (; done < n; done++) {
        uint16_t head = load16(&vq->avail[2 + ((vq->last_avail + done) & vq->mask)]);
        if (head >= vq->num) {
            atomic_store(&vq->broken, 1);
            break;
        }
        struct iovec iov[VS_VIRTQ_MAX_IOV];
        uint32_t n_iov, total;
        int r = vs_virtq_chain(m, vq, head, 0, iov, VS_VIRTQ_MAX_IOV, &n_iov, &total);
        if (!r && total < vq->hdr_len) {
            r = VS_C_DROP_RUNT;
        } else if (!r && total - vq->hdr_len > frame_max) {
            r = VS_C_DROP_VHOST_DESC_TOO_LONG;
        }
        if (r) {
            lens[done] = -r;
        } else {
            memset(hdrs[done], 0, 12);
            gather(iov, n_iov, 0, hdrs[done], vq->hdr_len);
            gather(iov, n_iov, vq->hdr_len, frames + done * stride,
                   total - vq->hdr_len);
            lens[done] = (int32_t) (total - vq->hdr_len);
        }
        vs_virtq_push_used(vq, head, 0);
    }
    vq->last_avail = (uint16_t) (vq->last_avail + done);
    vs_virtq_publish_used(vq, old_used);
    return done;
}

/* Copies the 'n_src' pieces of 'src' over the pieces 'dst' (at most
 * 'room' bytes), starting 'skip' bytes into 'src'.  Returns bytes written. */
static uint32_t
scatter(const struct iovec *dst, uint32_t n_dst, const struct iovec *src,
        int n_src, uint32_t *si, uint32_t *soff)
{
    uint32_t written = 0;
    for (uint32_t d = 0; d < n_dst && *si < (uint32_t) n_src; d++) {
        uint32_t doff = 0;
        uint32_t dl = (uint32_t) dst[d].iov_len;
        while (doff < dl && *si < (uint32_t) n_src) {
            uint32_t sl = (uint32_t) src[*si].iov_len - *soff;
            uint32_t take = sl < dl - doff ? sl : dl - doff;
            memcpy((uint8_t *) dst[d].iov_base + doff,
                   (const uint8_t *) src[*si].iov_base + *soff, take);
            doff += take;
            written += take;
            *soff += take;
            if (*soff == src[*si].iov_len) {
                (*si)++;
                *soff = 0;
            }
        }
    }
    return written;
}

/* Writes one frame, the pieces 'src' (the first the virtio-net header,
 * vq->hdr_len bytes, whose num_buffers this fills in), into guest RX
 * queue 'vq', not yet visible to the guest.  Returns 0 or the drop reason; a frame
 * that cannot be written whole leaves the rings as they were. */
int
vs_virtq_enqueue(const struct vs_vmem *m, struct vs_virtq *vq,
                 struct iovec *src, int n_src)
{
    uint64_t need = 0;
    for (int i = 0; i < n_src; i++) {
        need += src[i].iov_len;
    }
    uint16_t pending;
    int r = vs_virtq_pending(vq, &pending);
    if (r) {
        return r;
    }

    /* Reserve chains until they hold the frame. */
    struct iovec iov[VS_VIRTQ_MAX_IOV];
    uint32_t n_iov = 0;
    uint16_t heads[VS_VIRTQ_MAX_BUFS];
    uint32_t ends[VS_VIRTQ_MAX_BUFS];   /* iov index past each chain */
    uint32_t caps[VS_VIRTQ_MAX_BUFS];
    uint32_t n_bufs = 0;
    uint64_t room = 0;
    while (room < need) {
        if (n_bufs == pending || n_bufs == VS_VIRTQ_MAX_BUFS
            || (n_bufs && !vq->mrg)) {
            return VS_C_DROP_VHOST_NO_BUFFERS;
        }
        uint16_t head = load16(&vq->avail[2 + ((vq->last_avail + n_bufs) & vq->mask)]);
        if (head >= vq->num) {
            atomic_store(&vq->broken, 1);
            return VS_C_DROP_VHOST_RING_BROKEN;
        }
        uint32_t got, total;
        r = vs_virtq_chain(m, vq, head, 1, iov + n_iov, VS_VIRTQ_MAX_IOV - n_iov,
                           &got, &total);
        if (r) {
            return r;
        }
        if (!n_bufs && (got == 0 || iov[n_iov].iov_len < vq->hdr_len)) {
            /* The header must sit in one piece: it is patched below. */
            return VS_C_DROP_VHOST_DESC_BAD;
        }
        n_iov += got;
        heads[n_bufs] = head;
        ends[n_bufs] = n_iov;
        caps[n_bufs] = total;
        n_bufs++;
        room += total;
    }
    if (vq->mrg) {
        uint16_t nb = (uint16_t) n_bufs;
        memcpy((uint8_t *) src[0].iov_base + 10, &nb, 2);
    }

    uint16_t old_used = vq->used_idx;
    uint32_t si = 0, soff = 0, start = 0;
    for (uint32_t b = 0; b < n_bufs; b++) {
        uint32_t w = scatter(iov + start, ends[b] - start, src, n_src, &si, &soff);
        (void) caps;
        vs_virtq_push_used(vq, heads[b], w);
        start = ends[b];
    }
    vq->last_avail = (uint16_t) (vq->last_avail + n_bufs);
    (void) old_used;    /* published by the caller, once per burst */
    return 0;
}

/* Guest TX queue gone idle: asks for kicks again, then looks once more.
 * Returns nonzero when frames arrived meanwhile (the caller re-arms its
 * eventfd so that the queue is polled again). */
int
vs_virtq_kick_arm(struct vs_virtq *vq)
{
    if (vq->event_idx) {
        store16(&vq->used[2 + 4 * vq->num], vq->last_avail);
    } else {
        store16(&vq->used[0], 0);
    }
    vq->notify_on = 1;
    atomic_thread_fence(memory_order_seq_cst);
    return load16(&vq->avail[1]) != vq->last_avail;
}

/* Guest TX queue busy: no kicks needed, we poll. */
void
vs_virtq_kick_off(struct vs_virtq *vq)
{
    if (!vq->event_idx) {
        store16(&vq->used[0], VS_VRING_USED_F_NO_NOTIFY);
    }
    vq->notify_on = 0;
}

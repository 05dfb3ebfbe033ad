/*
 * vs_capture.c: capture rings and the classic BPF interpreter that filters
 * them (see vs_capture.h).
 *
 * Batch semantics: none of its own.  Frames are taken one at a time where
 * the pipeline sees them (vs_forward_burst() for rx, egress() for tx,
 * drop() for drops), in burst order, so a ring holds one context's frames
 * in the order that context handled them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vs_capture.h"
#include "vs_worker.h"

#define RING_MASK ((uint64_t) VS_CAP_RING_BYTES - 1)
#define PAD_MARK UINT32_MAX
#define BPF_MAX_INSNS 4096
#define BPF_MEMWORDS 16

struct cap_ring {
    _Atomic uint64_t head;      /* written by the producer */
    uint8_t pad1[56];
    _Atomic uint64_t tail;      /* written by the consumer */
    uint8_t pad2[56];
    uint64_t captured, dropped, filtered;   /* producer only, relaxed */
    uint8_t *buf;
};

struct vs_capture {
    uint32_t port_id;
    uint32_t dirs;
    uint32_t snaplen;
    uint32_t n_insns;           /* 0 = accept everything */
    struct vs_bpf_insn *prog;
    uint32_t n_rings;           /* one per context of the switch */
    struct cap_ring *rings;
};

_Static_assert(sizeof(struct vs_cap_record) == 32, "record header is 32 bytes");

/* --- classic BPF ------------------------------------------------------------- */

/* Checks 'prog' ('n' instructions) the way the kernel's sk_chk_filter()
 * does: every jump lands inside, memory slots exist, no division by a zero
 * constant, the last instruction returns.  Returns 0 or EINVAL. */
int
vs_bpf_check(const struct vs_bpf_insn *prog, uint32_t n)
{
    if (!n || n > BPF_MAX_INSNS) {
        return EINVAL;
    }
    for (uint32_t pc = 0; pc < n; pc++) {
        const struct vs_bpf_insn *i = &prog[pc];
        uint16_t cls = i->code & 0x07;
        switch (cls) {
        case 0x00: case 0x01:       /* LD, LDX */
            if ((i->code & 0xe0) == 0x60 && i->k >= BPF_MEMWORDS) {
                return EINVAL;
            }
            break;
        case 0x02: case 0x03:       /* ST, STX */
            if (i->k >= BPF_MEMWORDS) {
                return EINVAL;
            }
            break;
        case 0x04:                  /* ALU */
            if (((i->code & 0xf0) == 0x30 || (i->code & 0xf0) == 0x90)
                && !(i->code & 0x08) && i->k == 0) {
                return EINVAL;
            }
            break;
        case 0x05:                  /* JMP */
            if ((i->code & 0xf0) == 0x00) {
                if (i->k >= n - pc - 1) {
                    return EINVAL;
                }
            } else if (pc + 1u + i->jt >= n || pc + 1u + i->jf >= n) {
                return EINVAL;
            }
            break;
        default:
            break;
        }
    }
    return (prog[n - 1].code & 0x07) == 0x06 ? 0 : EINVAL;
}

static int
load(const uint8_t *p, uint32_t len, uint32_t off, uint32_t size, uint32_t *out)
{
    if (off > len || size > len - off) {
        return 0;
    }
    if (size == 4) {
        *out = (uint32_t) p[off] << 24 | (uint32_t) p[off + 1] << 16
               | (uint32_t) p[off + 2] << 8 | p[off + 3];
    } else if (size == 2) {
        *out = (uint32_t) p[off] << 8 | p[off + 1];
    } else {
        *out = p[off];
    }
    return 1;
}

/* Runs checked program 'prog' on frame 'pkt' ('len' bytes).  Returns what
 * it returns: 0 = refuse, else the number of bytes to keep.  A load past
 * the end refuses, as in the kernel. */
uint32_t
vs_bpf_run(const struct vs_bpf_insn *prog, uint32_t n, const uint8_t *pkt,
           uint32_t len)
{
    uint32_t a = 0, x = 0, v, mem[BPF_MEMWORDS] = { 0 };

    for (uint32_t pc = 0; pc < n; pc++) {
        const struct vs_bpf_insn *i = &prog[pc];
        uint32_t k = i->k;
        uint32_t size = (i->code & 0x18) == 0x00 ? 4 : (i->code & 0x18) == 0x08 ? 2 : 1;
        switch (i->code & 0x07) {
        case 0x00:                  /* LD */
            switch (i->code & 0xe0) {
            case 0x00: a = k; break;
            case 0x20: if (!load(pkt, len, k, size, &a)) return 0; break;
            case 0x40: if (!load(pkt, len, x + k, size, &a)) return 0; break;
            case 0x60: a = mem[k]; break;
            case 0x80: a = len; break;
            default: return 0;
            }
            break;
        case 0x01:                  /* LDX */
            switch (i->code & 0xe0) {
            case 0x00: x = k; break;
            case 0x60: x = mem[k]; break;
            case 0x80: x = len; break;
            case 0xa0:              /* MSH: 4 * (P[k:1] & 0xf) */
                if (!load(pkt, len, k, 1, &v)) return 0;
                x = (v & 0xf) << 2;
                break;
            default: return 0;
            }
            break;
        case 0x02: mem[k] = a; break;
        case 0x03: mem[k] = x; break;
        case 0x04: {                /* ALU */
            uint32_t s = (i->code & 0x08) ? x : k;
            switch (i->code & 0xf0) {
            case 0x00: a += s; break;
            case 0x10: a -= s; break;
            case 0x20: a *= s; break;
            case 0x30: if (!s) return 0; a /= s; break;
            case 0x40: a |= s; break;
            case 0x50: a &= s; break;
            case 0x60: a = s < 32 ? a << s : 0; break;
            case 0x70: a = s < 32 ? a >> s : 0; break;
            case 0x80: a = (uint32_t) -(int32_t) a; break;
            case 0x90: if (!s) return 0; a %= s; break;
            case 0xa0: a ^= s; break;
            default: return 0;
            }
            break;
        }
        case 0x05: {                /* JMP */
            uint32_t s = (i->code & 0x08) ? x : k;
            int t;
            switch (i->code & 0xf0) {
            case 0x00: pc += k; continue;
            case 0x10: t = a == s; break;
            case 0x20: t = a > s; break;
            case 0x30: t = a >= s; break;
            case 0x40: t = (a & s) != 0; break;
            default: return 0;
            }
            pc += t ? i->jt : i->jf;
            break;
        }
        case 0x06:                  /* RET */
            return (i->code & 0x18) == 0x10 ? a : (i->code & 0x18) == 0x08 ? x : k;
        case 0x07:                  /* MISC */
            if ((i->code & 0xf8) == 0x00) {
                x = a;
            } else {
                a = x;
            }
            break;
        }
    }
    return 0;
}

/* --- captures ------------------------------------------------------------------ */

/* Creates a capture of port 'port_id' for switch 'sw': directions 'dirs'
 * (VS_CAP_*), 'snaplen' bytes per frame (0 = whole frames), filter 'prog'
 * of 'n_insns' instructions (0 = none; checked here).  NULL on a bad
 * argument or ENOMEM. */
struct vs_capture *
vs_capture_new(const struct vs_switch *sw, uint32_t port_id, uint32_t dirs,
               uint32_t snaplen, const struct vs_bpf_insn *prog, uint32_t n_insns)
{
    if (port_id >= VS_MAX_PORTS || !dirs || (dirs & ~7u)
        || (n_insns && vs_bpf_check(prog, n_insns))) {
        return NULL;
    }
    struct vs_capture *c = calloc(1, sizeof *c);
    if (!c) {
        return NULL;
    }
    c->port_id = port_id;
    c->dirs = dirs;
    c->snaplen = snaplen && snaplen < VS_FRAME_MAX ? snaplen : VS_FRAME_MAX;
    c->n_insns = n_insns;
    c->n_rings = sw->n_workers + 1;
    c->rings = calloc(c->n_rings, sizeof *c->rings);
    if (n_insns) {
        c->prog = malloc(n_insns * sizeof *prog);
    }
    if (!c->rings || (n_insns && !c->prog)) {
        vs_capture_free(c);
        return NULL;
    }
    if (n_insns) {
        memcpy(c->prog, prog, n_insns * sizeof *prog);
    }
    for (uint32_t i = 0; i < c->n_rings; i++) {
        c->rings[i].buf = malloc(VS_CAP_RING_BYTES);
        if (!c->rings[i].buf) {
            vs_capture_free(c);
            return NULL;
        }
    }
    return c;
}

/* Frees 'c': only once a config without it has been published. */
void
vs_capture_free(struct vs_capture *c)
{
    if (!c) {
        return;
    }
    for (uint32_t i = 0; c->rings && i < c->n_rings; i++) {
        free(c->rings[i].buf);
    }
    free(c->rings);
    free(c->prog);
    free(c);
}

/* Makes unpublished config 'cfg' feed capture 'c' (not taken over).
 * Returns 0, ENOSPC or EEXIST. */
int
vs_config_add_capture(struct vs_config *cfg, struct vs_capture *c)
{
    for (uint32_t i = 0; i < cfg->n_captures; i++) {
        if (cfg->captures[i] == c) {
            return EEXIST;
        }
    }
    if (cfg->n_captures == VS_MAX_CAPTURES) {
        return ENOSPC;
    }
    cfg->captures[cfg->n_captures++] = c;
    cfg->capture_ports[c->port_id >> 6] |= 1ull << (c->port_id & 63);
    return 0;
}

static void
bump(uint64_t *c)
{
    __atomic_store_n(c, *c + 1, __ATOMIC_RELAXED);
}

/* Puts one record in 'r': header 'h' then 'caplen' bytes of 'data' (the
 * first 'a_len' of them from 'a', the rest from 'b').  0, or -1 if full. */
static int
ring_put(struct cap_ring *r, struct vs_cap_record *h, const uint8_t *a,
         uint32_t a_len, const uint8_t *b)
{
    uint32_t need = (uint32_t) ((sizeof *h + h->caplen + 7) & ~7u);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t off = head & RING_MASK;
    uint64_t contig = VS_CAP_RING_BYTES - off;
    uint64_t total = need <= contig ? need : contig + need;

    if (VS_CAP_RING_BYTES - (head - tail) < total) {
        return -1;
    }
    if (need > contig) {
        uint32_t pad[2] = { (uint32_t) contig, PAD_MARK };
        memcpy(r->buf + off, pad, sizeof pad);
        head += contig;
        off = 0;
    }
    h->rec_len = need;
    memcpy(r->buf + off, h, sizeof *h);
    uint32_t first = h->caplen < a_len ? h->caplen : a_len;
    memcpy(r->buf + off + sizeof *h, a, first);
    if (h->caplen > first) {
        memcpy(r->buf + off + sizeof *h + first, b, h->caplen - first);
    }
    atomic_store_explicit(&r->head, head + need, memory_order_release);
    return 0;
}

/* Offers frame ('a', 'a_len' bytes, then 'b', 'b_len') seen on port
 * 'port_id' in direction 'dir' ('reason': a drop counter or -1) to every
 * capture of the context's config that wants it.  An rx frame with a
 * reason was refused on arrival: captures of drops take it as a drop,
 * captures of rx only as received, so each has it once. */
void
vs_capture_frame(struct vs_ctx *ctx, uint32_t port_id, uint32_t dir, int reason,
                 const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
    const struct vs_config *cfg = ctx->cfg;
    if (ctx->trace) {
        return;
    }
    for (uint32_t i = 0; i < cfg->n_captures; i++) {
        struct vs_capture *c = cfg->captures[i];
        if (c->port_id != port_id || ctx->index >= c->n_rings) {
            continue;
        }
        /* A received frame refused on arrival ('reason' set): a capture of
         * drops has it as dropped, one of rx only as received. */
        uint32_t as = dir == VS_CAP_RX && reason >= 0 && (c->dirs & VS_CAP_DROPS)
                      ? VS_CAP_DROPS : dir;
        if (!(c->dirs & as)) {
            continue;
        }
        int why = as == VS_CAP_DROPS ? reason : -1;
        struct cap_ring *r = &c->rings[ctx->index];
        if (c->n_insns) {
            const uint8_t *frame = a;
            uint32_t len = a_len;
            if (b_len) {
                /* The filter wants the frame in one piece. */
                if (a_len + b_len > VS_FRAME_MAX) {
                    continue;
                }
                memcpy(ctx->stage_buf, a, a_len);
                memcpy(ctx->stage_buf + a_len, b, b_len);
                frame = ctx->stage_buf;
                len = a_len + b_len;
            }
            if (!vs_bpf_run(c->prog, c->n_insns, frame, len)) {
                bump(&r->filtered);
                continue;
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint32_t wire = a_len + b_len;
        struct vs_cap_record h = {
            .caplen = wire < c->snaplen ? wire : c->snaplen,
            .wire_len = wire,
            .port_id = (uint16_t) port_id,
            .dir = (uint8_t) as,
            .reason = why,
            .ts_ns = (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec,
        };
        bump(ring_put(r, &h, a, a_len, b) ? &r->dropped : &r->captured);
    }
}

/* Moves whole records from every ring of 'c' into 'out' ('out_len'
 * bytes) and frees their space.  Returns the bytes written.  One consumer
 * at a time. */
size_t
vs_capture_read(struct vs_capture *c, uint8_t *out, size_t out_len)
{
    size_t done = 0;
    for (uint32_t i = 0; i < c->n_rings; i++) {
        struct cap_ring *r = &c->rings[i];
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        while (tail != head) {
            const uint8_t *p = r->buf + (tail & RING_MASK);
            uint32_t hdr[2];
            memcpy(hdr, p, sizeof hdr);
            if (hdr[1] == PAD_MARK) {
                tail += hdr[0];
                continue;
            }
            if (hdr[0] > out_len - done) {
                break;
            }
            memcpy(out + done, p, hdr[0]);
            done += hdr[0];
            tail += hdr[0];
        }
        atomic_store_explicit(&r->tail, tail, memory_order_release);
    }
    return done;
}

/* Sums 'c''s counters over its rings into 'out'.  Any thread. */
void
vs_capture_get_stats(const struct vs_capture *c, struct vs_capture_stats *out)
{
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < c->n_rings; i++) {
        const struct cap_ring *r = &c->rings[i];
        out->captured += __atomic_load_n(&r->captured, __ATOMIC_RELAXED);
        out->dropped += __atomic_load_n(&r->dropped, __ATOMIC_RELAXED);
        out->filtered += __atomic_load_n(&r->filtered, __ATOMIC_RELAXED);
    }
}

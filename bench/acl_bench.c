/*
 * acl_bench.c: nanoseconds per classified frame in the port ACL classifier
 * (csrc/vs_acl.c, csrc/vs_acl_key.c), with no switch, no I/O, no Python.
 *
 * For each policy size (10, 100, 1,000 and 10,000 rules by default) it
 * builds a random but realistic rule set, compiles it with vs_acl_new(),
 * prepares a few hundred thousand 64-byte frames and times:
 *   parse+classify   vs_acl_parse() then vs_acl_classify() (counting on),
 *                    what a worker does per frame on a port with an ACL;
 *   classify         vs_acl_classify() alone on keys parsed beforehand,
 *                    every frame a new key (the decision cache misses);
 *   search           the same without counting, which bypasses the cache:
 *                    the classifier's own cost;
 *   64 flows         classify on keys drawn from 64 flows, as a port's
 *                    traffic is: after its first frame a flow hits the cache.
 * The frames are walked in order, a burst at a time, several passes;
 * the best pass of each is reported (the least disturbed by other load on
 * the machine), with the median beside it.
 *
 * What "realistic" means here (what real VM policies look like: a handful of
 * distinct masks, many rules per mask):
 *   remote_ip   /32 40 %, /24 30 %, /16 10 %, any 20 %;  local_ip /32 5 %
 *   protocol    tcp 60 %, udp 30 %, icmp 10 %
 *   remote_port one well-known or random port 50 %, any 40 %, 10 % one of
 *               the ranges policies write (1024-65535, 8000-8999, ...: a
 *               range becomes several prefixes, and so several masks)
 *   local_port  one port 15 %
 *   direction   in 45 %, out 45 %, both 10 %;  action deny 80 %, allow 20 %
 *   weights     distinct, random order; default action allow.
 * Frames: half are built to match a random rule's fields (in its
 * direction), half carry random addresses and ports (most fall through to
 * the default: the worst case for early exits).
 *
 * A second table uses the shape of the `make bench` policy rows
 * (bench/policy.py: N-1 /32+port denies that never match, then the allow
 * that passes the traffic), so the two can be read side by side.
 *
 * Build: cc -O2 -Wall -Wextra -Icsrc bench/acl_bench.c csrc/vs_acl.c \
 *            csrc/vs_acl_key.c -o acl_bench        (`make acl-bench`)
 * Usage: acl_bench [--frames N] [--passes P] [--seed S] [--shape mixed|bench|both]
 *                  [SIZE...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vs_acl.h"

#define FRAME_LEN 64
#define BURST 32
#define DEFAULT_FRAMES (128 * 1024)
#define DEFAULT_PASSES 5

/* splitmix64: a small, seedable, reproducible generator. */
struct rng {
    uint64_t s;
};

static uint64_t
rng_next(struct rng *r)
{
    uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A uniform value in 0..'n'-1. */
static uint32_t
rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t) (rng_next(r) % n);
}

static const uint16_t well_known[] = { 22, 25, 53, 80, 123, 443, 3306, 5432, 6379, 8080 };
/* Port ranges as policies write them (ephemeral ports, a service's block). */
static const uint16_t ranges[][2] = {
    { 1024, 65535 }, { 49152, 65535 }, { 32768, 60999 }, { 8000, 8999 },
    { 30000, 32767 }, { 6000, 6063 }, { 5900, 5999 }, { 137, 139 },
};

#define N_ELEMS(a) (sizeof (a) / sizeof (a)[0])

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void
put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t) (v >> 8);
    p[1] = (uint8_t) v;
}

static void
put_ip4(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) (v >> 24);
    p[1] = (uint8_t) (v >> 16);
    p[2] = (uint8_t) (v >> 8);
    p[3] = (uint8_t) v;
}

static uint32_t
get_ip4(const uint8_t *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

/* Puts the IPv4 prefix 'addr'/'len' into a rule's key and mask field. */
static void
rule_ip(uint8_t *key, uint8_t *mask, uint32_t addr, int len)
{
    uint32_t m = len ? UINT32_MAX << (32 - len) : 0;
    put_ip4(key, addr & m);
    put_ip4(mask, m);
}

/* Fills 'rules' with 'n' random rules (see the top of the file). */
static void
make_rules(struct vs_acl_rule *rules, uint32_t n, struct rng *r)
{
    /* Distinct weights in random order: a shuffled 1..n. */
    uint32_t *weights = malloc(n * sizeof *weights);
    if (!weights) {
        perror("malloc");
        exit(1);
    }
    for (uint32_t i = 0; i < n; i++) {
        weights[i] = i + 1;
    }
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = rng_below(r, i + 1);
        uint32_t t = weights[i];
        weights[i] = weights[j];
        weights[j] = t;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct vs_acl_rule *x = &rules[i];
        memset(x, 0, sizeof *x);
        x->id = i + 1;
        x->weight = weights[i];
        uint32_t d = rng_below(r, 100);
        x->dirs = d < 45 ? VS_ACL_IN : d < 90 ? VS_ACL_OUT : VS_ACL_IN | VS_ACL_OUT;
        x->action = rng_below(r, 100) < 80 ? VS_ACL_DENY : VS_ACL_ALLOW;
        x->local_port_lo = x->remote_port_lo = 0;
        x->local_port_hi = x->remote_port_hi = 65535;
        x->key.ethertype = 0x0800;
        x->mask.ethertype = 0xffff;
        x->key.flags = x->mask.flags = VS_ACL_F_IP;
        x->mask.flags |= VS_ACL_F_IP6;          /* IPv4 only: F_IP6 must be clear */

        uint32_t p = rng_below(r, 100);
        uint8_t proto = p < 60 ? 6 : p < 90 ? 17 : 1;
        x->key.proto = proto;
        x->mask.proto = 0xff;

        /* Remote addresses in 10.0.0.0/8, local ones in 10.199.0.0/16. */
        uint32_t remote = 0x0a000000u | rng_below(r, 1u << 24);
        uint32_t q = rng_below(r, 100);
        int len = q < 40 ? 32 : q < 70 ? 24 : q < 80 ? 16 : 0;
        if (len) {
            rule_ip(x->key.remote_ip, x->mask.remote_ip, remote, len);
        }
        if (rng_below(r, 100) < 5) {
            rule_ip(x->key.local_ip, x->mask.local_ip,
                    0x0ac70000u | rng_below(r, 1u << 16), 32);
        }
        if (proto != 1) {
            uint32_t s = rng_below(r, 100);
            if (s < 25) {
                x->remote_port_lo = x->remote_port_hi = well_known[rng_below(r, N_ELEMS(well_known))];
            } else if (s < 50) {
                x->remote_port_lo = x->remote_port_hi = (uint16_t) (1 + rng_below(r, 65535));
            } else if (s < 60) {
                const uint16_t *range = ranges[rng_below(r, N_ELEMS(ranges))];
                x->remote_port_lo = range[0];
                x->remote_port_hi = range[1];
            }
            if (rng_below(r, 100) < 15) {
                x->local_port_lo = x->local_port_hi = well_known[rng_below(r, N_ELEMS(well_known))];
            }
            if (x->remote_port_lo || x->remote_port_hi != 65535
                || x->local_port_lo || x->local_port_hi != 65535) {
                x->key.flags |= VS_ACL_F_L4;
                x->mask.flags |= VS_ACL_F_L4;
            }
        }
    }
    free(weights);
}

/* Writes a 64-byte Ethernet + IPv4 + TCP/UDP/ICMP frame into 'f'.  The
 * addresses and ports are the VM's (local) and the other side's (remote),
 * placed as source or destination by 'dir'. */
static void
make_frame(uint8_t *f, int dir, uint8_t proto, uint32_t local_ip, uint32_t remote_ip,
           uint16_t local_port, uint16_t remote_port)
{
    static const uint8_t vm_mac[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x01 };
    static const uint8_t gw_mac[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x02 };
    int out = dir == VS_ACL_OUT;

    memset(f, 0, FRAME_LEN);
    memcpy(f, out ? gw_mac : vm_mac, 6);
    memcpy(f + 6, out ? vm_mac : gw_mac, 6);
    put_be16(f + 12, 0x0800);
    uint8_t *ip = f + 14;
    ip[0] = 0x45;
    put_be16(ip + 2, FRAME_LEN - 14);
    ip[8] = 64;
    ip[9] = proto;
    put_ip4(ip + 12, out ? local_ip : remote_ip);
    put_ip4(ip + 16, out ? remote_ip : local_ip);
    uint8_t *l4 = ip + 20;
    if (proto == 1) {
        l4[0] = 8;      /* echo request */
    } else {
        put_be16(l4, out ? local_port : remote_port);
        put_be16(l4 + 2, out ? remote_port : local_port);
        if (proto == 6) {
            l4[12] = 5 << 4;
            l4[13] = 0x10;      /* ACK */
        }
    }
}

static uint16_t
port_in(struct rng *r, uint16_t lo, uint16_t hi)
{
    return (uint16_t) (lo + rng_below(r, (uint32_t) (hi - lo) + 1));
}

/* The shape of the `make bench` policy rows (bench/policy.py): 'n' - 1
 * denies of TCP to a distinct remote /32 and port, both directions, then
 * one allow of the bench subnet 10.199.0.0/24: two masks whatever 'n'. */
static void
make_rules_uniform(struct vs_acl_rule *rules, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct vs_acl_rule *x = &rules[i];
        memset(x, 0, sizeof *x);
        x->id = i + 1;
        x->dirs = VS_ACL_IN | VS_ACL_OUT;
        x->local_port_hi = x->remote_port_hi = 65535;
        x->key.ethertype = 0x0800;
        x->mask.ethertype = 0xffff;
        x->key.flags = VS_ACL_F_IP;
        x->mask.flags = VS_ACL_F_IP | VS_ACL_F_IP6;
        if (i + 1 < n) {
            x->weight = 10000 + n - i;
            x->action = VS_ACL_DENY;
            x->key.proto = 6;
            x->mask.proto = 0xff;
            rule_ip(x->key.remote_ip, x->mask.remote_ip, 0x0ac80000u + i + 1, 32);
            x->remote_port_lo = x->remote_port_hi = (uint16_t) (1024 + i % 60000);
            x->key.flags |= VS_ACL_F_L4;
            x->mask.flags |= VS_ACL_F_L4;
        } else {
            x->weight = 100;
            x->action = VS_ACL_ALLOW;
            rule_ip(x->key.remote_ip, x->mask.remote_ip, 0x0ac70000u, 24);
        }
    }
}

/* Frames of the bench rows: TCP and UDP between 10.199.0.1 and 10.199.0.2
 * (iperf3's and trafgen's), both directions: none matches a filler. */
static void
make_frames_uniform(uint8_t *frames, int *dirs, uint32_t n, struct rng *r)
{
    for (uint32_t i = 0; i < n; i++) {
        int dir = rng_below(r, 2) ? VS_ACL_IN : VS_ACL_OUT;
        uint8_t proto = rng_below(r, 2) ? 6 : 17;
        make_frame(frames + (size_t) i * FRAME_LEN, dir, proto, 0x0ac70001u, 0x0ac70002u,
                   proto == 6 ? (uint16_t) (40000 + rng_below(r, 8)) : 9,
                   proto == 6 ? 5201 : 9);
        dirs[i] = dir;
    }
}

/* Fills 'frames' ('n' of FRAME_LEN bytes) and their directions 'dirs'. */
static void
make_frames(uint8_t *frames, int *dirs, uint32_t n, const struct vs_acl_rule *rules,
            uint32_t n_rules, struct rng *r)
{
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *f = frames + (size_t) i * FRAME_LEN;
        uint32_t local = 0x0ac70000u | rng_below(r, 1u << 16);
        uint32_t remote = 0x0a000000u | rng_below(r, 1u << 24);
        uint16_t lport = (uint16_t) (1 + rng_below(r, 65535));
        uint16_t rport = (uint16_t) (1 + rng_below(r, 65535));
        uint8_t proto = rng_below(r, 10) < 6 ? 6 : 17;
        int dir = rng_below(r, 2) ? VS_ACL_IN : VS_ACL_OUT;
        if (rng_below(r, 2)) {
            /* Aim at a rule: take its fields, randomize what it leaves out. */
            const struct vs_acl_rule *x = &rules[rng_below(r, n_rules)];
            uint32_t rm = get_ip4(x->mask.remote_ip), lm = get_ip4(x->mask.local_ip);
            remote = (get_ip4(x->key.remote_ip) & rm) | (remote & ~rm);
            local = (get_ip4(x->key.local_ip) & lm) | (local & ~lm);
            proto = x->key.proto;
            rport = port_in(r, x->remote_port_lo, x->remote_port_hi);
            lport = port_in(r, x->local_port_lo, x->local_port_hi);
            dir = (x->dirs & VS_ACL_OUT) && (!(x->dirs & VS_ACL_IN) || rng_below(r, 2))
                  ? VS_ACL_OUT : VS_ACL_IN;
        }
        make_frame(f, dir, proto, local, remote, lport, rport);
        dirs[i] = dir;
    }
}

static int
cmp_u64(const void *a_, const void *b_)
{
    uint64_t a = *(const uint64_t *) a_, b = *(const uint64_t *) b_;
    return a < b ? -1 : a > b;
}

struct result {
    double best_ns, median_ns;
};

static struct result
summarize(uint64_t *pass_ns, int passes, uint32_t n_frames)
{
    qsort(pass_ns, (size_t) passes, sizeof *pass_ns, cmp_u64);
    struct result res = {
        .best_ns = (double) pass_ns[0] / n_frames,
        .median_ns = (double) pass_ns[passes / 2] / n_frames,
    };
    return res;
}

/* Times one policy of 'n_rules' rules; prints one line. */
static int
bench_size(uint32_t n_rules, int uniform, uint32_t n_frames, int passes, uint64_t seed)
{
    struct rng r = { seed ^ ((uint64_t) n_rules << 32) };
    struct vs_acl_rule *rules = calloc(n_rules, sizeof *rules);
    uint8_t *frames = malloc((size_t) n_frames * FRAME_LEN);
    int *dirs = malloc(n_frames * sizeof *dirs);
    struct vs_acl_key *keys = malloc(n_frames * sizeof *keys);
    uint64_t *pass_ns = malloc((size_t) passes * sizeof *pass_ns);
    if (!rules || !frames || !dirs || !keys || !pass_ns) {
        perror("malloc");
        return 1;
    }
    if (uniform) {
        make_rules_uniform(rules, n_rules);
        make_frames_uniform(frames, dirs, n_frames, &r);
    } else {
        make_rules(rules, n_rules, &r);
        make_frames(frames, dirs, n_frames, rules, n_rules, &r);
    }

    struct vs_acl *acl;
    uint64_t t0 = now_ns();
    int error = vs_acl_new(rules, n_rules, VS_ACL_ALLOW, 1, &acl);
    uint64_t compile_ns = now_ns() - t0;
    if (error) {
        fprintf(stderr, "acl_bench: vs_acl_new(%u rules): %s\n", n_rules, strerror(error));
        return 1;
    }

    /* parse + classify, a burst at a time as a worker would. */
    uint64_t matched = 0, denied = 0;
    struct result both, alone;
    for (int p = 0; p < passes; p++) {
        uint64_t m = 0, d = 0;
        t0 = now_ns();
        for (uint32_t b = 0; b < n_frames; b += BURST) {
            uint32_t end = b + BURST < n_frames ? b + BURST : n_frames;
            for (uint32_t i = b; i < end; i++) {
                struct vs_acl_key key;
                struct vs_acl_verdict v;
                vs_acl_parse(frames + (size_t) i * FRAME_LEN, FRAME_LEN, 12, 1, dirs[i], &key);
                vs_acl_classify(acl, dirs[i], &key, 0, FRAME_LEN, 1, &v);
                m += v.rule >= 0;
                d += v.action == VS_ACL_DENY;
            }
        }
        pass_ns[p] = now_ns() - t0;
        matched = m;
        denied = d;
    }
    both = summarize(pass_ns, passes, n_frames);

    /* classify alone, on keys parsed beforehand. */
    for (uint32_t i = 0; i < n_frames; i++) {
        vs_acl_parse(frames + (size_t) i * FRAME_LEN, FRAME_LEN, 12, 1, dirs[i], &keys[i]);
    }
    uint64_t check = 0;
    for (int p = 0; p < passes; p++) {
        uint64_t m = 0;
        t0 = now_ns();
        for (uint32_t i = 0; i < n_frames; i++) {
            struct vs_acl_verdict v;
            vs_acl_classify(acl, dirs[i], &keys[i], 0, FRAME_LEN, 1, &v);
            m += v.rule >= 0;
        }
        pass_ns[p] = now_ns() - t0;
        check = m;
    }
    alone = summarize(pass_ns, passes, n_frames);
    struct result search, flows;
    for (int p = 0; p < passes; p++) {
        t0 = now_ns();
        for (uint32_t i = 0; i < n_frames; i++) {
            struct vs_acl_verdict v;
            vs_acl_classify(acl, dirs[i], &keys[i], 0, FRAME_LEN, 0, &v);
        }
        pass_ns[p] = now_ns() - t0;
    }
    search = summarize(pass_ns, passes, n_frames);
    for (int p = 0; p < passes; p++) {
        t0 = now_ns();
        for (uint32_t i = 0; i < n_frames; i++) {
            struct vs_acl_verdict v;
            uint32_t f = (i * 2654435761u) % 64;
            vs_acl_classify(acl, dirs[f], &keys[f], 0, FRAME_LEN, 1, &v);
        }
        pass_ns[p] = now_ns() - t0;
    }
    flows = summarize(pass_ns, passes, n_frames);
    if (check != matched) {
        fprintf(stderr, "acl_bench: %u rules: parsed-ahead keys matched %llu, "
                "parsed in line %llu\n", n_rules, (unsigned long long) check,
                (unsigned long long) matched);
        return 1;
    }

    printf("%7u  %6u %6u  %10.1f  %8.1f %8.1f  %8.1f %8.1f  %8.1f  %8.1f  %5.1f %5.1f\n",
           n_rules, vs_acl_n_tables(acl, VS_ACL_IN), vs_acl_n_tables(acl, VS_ACL_OUT),
           compile_ns / 1e6, both.best_ns, both.median_ns, alone.best_ns, alone.median_ns,
           search.best_ns, flows.best_ns,
           100.0 * matched / n_frames, 100.0 * denied / n_frames);
    fflush(stdout);
    vs_acl_free(acl);
    free(pass_ns);
    free(keys);
    free(dirs);
    free(frames);
    free(rules);
    return 0;
}

static void
usage(void)
{
    fprintf(stderr, "usage: acl_bench [--frames N] [--passes P] [--seed S] "
            "[--shape mixed|bench|both] [SIZE...]\n"
            "  SIZE: rules per policy (default 10 100 1000 10000; at most %u)\n",
            VS_ACL_MAX_RULES);
    exit(2);
}

static void
header(const char *title)
{
    printf("\n%s\n", title);
    printf("  rules  tables(in out)  compile ms  parse+classify ns  classify ns       "
           "search ns  64 flows ns  match%% deny%%\n");
    printf("                                       best   median    best   median"
           "    best      best\n");
}

int
main(int argc, char **argv)
{
    uint32_t sizes[16] = { 10, 100, 1000, 10000 };
    int n_sizes = 4, given = 0;
    uint32_t n_frames = DEFAULT_FRAMES;
    int passes = DEFAULT_PASSES;
    uint64_t seed = 1;
    int mixed = 1, uniform = 1;

    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--frames") && i + 1 < argc) {
            n_frames = (uint32_t) strtoul(argv[++i], &end, 10);
        } else if (!strcmp(argv[i], "--passes") && i + 1 < argc) {
            passes = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], &end, 0);
        } else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            i++;
            mixed = !strcmp(argv[i], "mixed") || !strcmp(argv[i], "both");
            uniform = !strcmp(argv[i], "bench") || !strcmp(argv[i], "both");
            if (!mixed && !uniform) {
                usage();
            }
        } else if (argv[i][0] != '-' && given < 16) {
            unsigned long v = strtoul(argv[i], &end, 10);
            if (*end || v < 1 || v > VS_ACL_MAX_RULES) {
                usage();
            }
            sizes[given++] = (uint32_t) v;
        } else {
            usage();
        }
    }
    if (given) {
        n_sizes = given;
    }
    if (n_frames < BURST || passes < 1) {
        usage();
    }
    printf("acl_bench: ns per frame in csrc/vs_acl.c; %u frames of %d bytes per pass, "
           "best (median) of %d passes, seed %llu\n",
           n_frames, FRAME_LEN, passes, (unsigned long long) seed);
    if (mixed) {
        header("Mixed policy (random /32 /24 /16 any, tcp/udp/icmp, ports, ranges; "
               "default allow):");
        for (int i = 0; i < n_sizes; i++) {
            if (bench_size(sizes[i], 0, n_frames, passes, seed)) {
                return 1;
            }
        }
    }
    if (uniform) {
        header("Bench-row policy (N-1 tcp /32+port denies, then allow 10.199.0.0/24; "
               "bench/policy.py):");
        for (int i = 0; i < n_sizes; i++) {
            if (bench_size(sizes[i], 1, n_frames, passes, seed)) {
                return 1;
            }
        }
    }
    return 0;
}

/*
 * test_mac_table_threads.c: the MAC table under concurrent learners, lookups,
 * aging, flushing and dumping.  Meant to be built with ThreadSanitizer (or
 * ASan+UBSan) by tests/unit/test_mac_table_threads.py:
 *
 *     gcc -std=gnu11 -O1 -g -fsanitize=thread -pthread -Icsrc \
 *         tests/c/test_mac_table_threads.c csrc/vs_mac_table.c
 *     ./a.out [seconds]
 *
 * Each key 'i' is only ever learned on ports i * 16 + 0..15, so any port a
 * lookup or dump reports for it must satisfy port / 16 == i: a torn or
 * recycled slot that leaked another key's port is caught.  After the threads
 * stop, vs_mac_table_check() verifies count == live slots, no slot left
 * half-written and no key held twice.
 *
 * Three phases: a "wide" one (many keys, a table that fills up, aging and
 * flushes by VLAN and port), a "hot" one (a handful of keys hammered by
 * every thread in a one-bucket table while the control thread removes
 * entries as fast as it can) and a "race" one in lock step: each round the
 * table is emptied, all workers learn the same few new keys at once, and
 * once they are done the table is checked, so a duplicate left behind by
 * two racing learners is caught in the round that made it.
 *
 * Exit status 0 on success, 1 on a broken invariant (with a message).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "vs_mac_table.h"

#define N_WORKERS 3
#define PORTS_PER_KEY 16

struct phase {
    const char *name;
    uint32_t capacity;
    uint32_t n_keys;
    double seconds;

    struct vs_mac_table *table;
    _Atomic uint32_t now_s;     /* the fake clock, advanced by control */
    _Atomic int stop;
    _Atomic uint64_t errors;
    _Atomic uint64_t lookups_hit;
    _Atomic uint64_t learns;

    int lockstep;               /* "race" phase: rounds between barriers */
    pthread_barrier_t barrier;  /* workers + control */
    _Atomic uint64_t ready;     /* spin start line: workers arrived */
};

struct worker_arg {
    struct phase *ph;
    unsigned id;
};

/* Returns the VLAN of key 'i'. */
static uint16_t
key_vlan(uint32_t i)
{
    return (uint16_t) (1 + i % 3);
}

/* Fills 'mac' with the address of key 'i'. */
static void
key_mac(uint32_t i, uint8_t mac[6])
{
    mac[0] = 0x02;
    mac[1] = 0x00;
    mac[2] = (uint8_t) (i >> 24);
    mac[3] = (uint8_t) (i >> 16);
    mac[4] = (uint8_t) (i >> 8);
    mac[5] = (uint8_t) i;
}

/* Returns the key index encoded in 'mac'. */
static uint32_t
mac_key(const uint8_t mac[6])
{
    return ((uint32_t) mac[2] << 24) | ((uint32_t) mac[3] << 16)
           | ((uint32_t) mac[4] << 8) | mac[5];
}

/* Returns a pseudo-random number from the xorshift state '*s'. */
static uint64_t
rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Returns seconds on CLOCK_MONOTONIC (test pacing only). */
static double
mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Reports one broken invariant of 'ph' described by 'what' about key 'i'. */
static void
fail(struct phase *ph, const char *what, uint32_t i, uint32_t port)
{
    if (atomic_fetch_add(&ph->errors, 1) < 10) {
        fprintf(stderr, "%s: %s: key %u port %u\n", ph->name, what, i, port);
    }
}

/* A worker: learns keys on ports of its own, looks keys up and checks that
 * every port returned belongs to the key. */
static void *
worker(void *arg_)
{
    struct worker_arg *arg = arg_;
    struct phase *ph = arg->ph;
    uint64_t s = 0x9e3779b97f4a7c15ull * (arg->id + 1);
    uint64_t learns = 0, hits = 0;

    while (ph->lockstep) {
        pthread_barrier_wait(&ph->barrier);   /* table emptied */
        if (atomic_load(&ph->stop)) {
            break;
        }
        /* A barrier wakes threads microseconds apart, longer than a few
         * learns take; spinning on a shared start line makes them collide. */
        uint64_t go = (atomic_fetch_add(&ph->ready, 1) / N_WORKERS + 1)
                      * N_WORKERS;
        for (unsigned spin = 0; atomic_load(&ph->ready) < go; spin++) {
            if (spin % 64 == 63) {
                sched_yield();   /* 2 cores, 3 workers: let the late one in */
            }
        }
        for (uint32_t i = 0; i < ph->n_keys; i++) {
            uint8_t mac[6];
            key_mac(i, mac);
            vs_mac_learn(ph->table, key_vlan(i), mac,
                         i * PORTS_PER_KEY + arg->id, 1);
            learns++;
        }
        pthread_barrier_wait(&ph->barrier);   /* all learned */
    }

    while (!ph->lockstep
           && !atomic_load_explicit(&ph->stop, memory_order_relaxed)) {
        for (int n = 0; n < 256; n++) {
            uint64_t r = rnd(&s);
            uint32_t i = (uint32_t) (r % ph->n_keys);
            uint8_t mac[6];
            key_mac(i, mac);
            /* Two ports per worker, so moves happen both between workers
             * and within one. */
            uint32_t port = i * PORTS_PER_KEY + arg->id * 2 + ((r >> 32) & 1);
            uint32_t now = atomic_load_explicit(&ph->now_s,
                                                memory_order_relaxed);
            int res = vs_mac_learn(ph->table, key_vlan(i), mac, port, now);
            if (res < VS_LEARN_REFRESHED || res > VS_LEARN_FULL) {
                fail(ph, "bad learn result", i, (uint32_t) res);
            }
            learns++;

            uint32_t j = (uint32_t) ((r >> 40) % ph->n_keys);
            key_mac(j, mac);
            uint32_t got = vs_mac_lookup(ph->table, key_vlan(j), mac);
            if (got != VS_PORT_NONE) {
                hits++;
                if (got / PORTS_PER_KEY != j) {
                    fail(ph, "lookup returned a foreign port", j, got);
                }
            }
            /* Same MAC, VLAN never used: must never be found. */
            if (vs_mac_lookup(ph->table, 4000, mac) != VS_PORT_NONE) {
                fail(ph, "found in unused VLAN", j, 0);
            }
        }
    }
    atomic_fetch_add(&ph->learns, learns);
    atomic_fetch_add(&ph->lookups_hit, hits);
    return NULL;
}

/* Checks every entry of 'ph''s table that a dump reports. */
static void
check_dump(struct phase *ph, struct vs_mac_entry *buf, uint32_t max)
{
    uint32_t n = vs_mac_dump(ph->table, buf, max);
    if (n > ph->capacity) {
        fail(ph, "dump returned more than capacity", n, 0);
    }
    for (uint32_t e = 0; e < n; e++) {
        uint32_t i = mac_key(buf[e].mac);
        if (i >= ph->n_keys || buf[e].vlan != key_vlan(i)) {
            fail(ph, "dump returned an unknown key", i, buf[e].port);
        } else if (buf[e].port / PORTS_PER_KEY != i) {
            fail(ph, "dump returned a foreign port", i, buf[e].port);
        }
    }
}

/* The control thread: advances the clock, ages, flushes and dumps. */
static void
control(struct phase *ph, struct vs_mac_entry *buf, uint32_t max)
{
    uint64_t s = 12345;
    double end = mono_s() + ph->seconds;
    unsigned round = 0;
    while (mono_s() < end) {
        round++;
        atomic_fetch_add(&ph->now_s, 1);
        uint32_t now = atomic_load(&ph->now_s);
        uint32_t cap = vs_mac_table_count(ph->table);
        if (cap > ph->capacity) {
            fail(ph, "count above capacity", cap, 0);
        }
        switch (round % 5) {
        case 0:
            vs_mac_age(ph->table, now, 3);
            break;
        case 1: {
            uint32_t i = (uint32_t) (rnd(&s) % ph->n_keys);
            vs_mac_flush(ph->table, -1, i * PORTS_PER_KEY + (rnd(&s) & 7));
            break;
        }
        case 2:
            vs_mac_flush(ph->table, key_vlan((uint32_t) rnd(&s)), -1);
            break;
        case 3:
            check_dump(ph, buf, max);
            break;
        case 4:
            if (round % 50 == 4) {
                vs_mac_flush(ph->table, -1, -1);
            }
            break;
        }
        if (ph->n_keys > 64) {
            /* Let the workers fill the table between removals. */
            struct timespec ts = { 0, 200 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
}

/* The control thread of a lock-step phase: empties the table, lets the
 * workers learn the same keys at once, then checks the table. */
static void
control_lockstep(struct phase *ph)
{
    double end = mono_s() + ph->seconds;
    unsigned rounds = 0;
    while (mono_s() < end && !atomic_load(&ph->errors)) {
        vs_mac_flush(ph->table, -1, -1);
        pthread_barrier_wait(&ph->barrier);
        pthread_barrier_wait(&ph->barrier);
        int bad = vs_mac_table_check(ph->table);
        if (bad) {
            fail(ph, "vs_mac_table_check failed with code", (uint32_t) bad,
                 rounds);
        }
        if (vs_mac_table_count(ph->table) != ph->n_keys) {
            fail(ph, "a key was lost", vs_mac_table_count(ph->table), rounds);
        }
        rounds++;
    }
    atomic_store(&ph->stop, 1);
    pthread_barrier_wait(&ph->barrier);
    printf("%s: %u rounds\n", ph->name, rounds);
}

/* Runs phase 'ph'.  Returns 0 on success, 1 if an invariant broke. */
static int
run_phase(struct phase *ph)
{
    ph->table = vs_mac_table_new(ph->capacity);
    if (!ph->table) {
        perror("vs_mac_table_new");
        return 1;
    }
    uint32_t max = ph->capacity * 2;
    struct vs_mac_entry *buf = calloc(max, sizeof *buf);

    if (ph->lockstep) {
        pthread_barrier_init(&ph->barrier, NULL, N_WORKERS + 1);
    }
    pthread_t th[N_WORKERS];
    struct worker_arg args[N_WORKERS];
    for (unsigned w = 0; w < N_WORKERS; w++) {
        args[w] = (struct worker_arg) { ph, w };
        pthread_create(&th[w], NULL, worker, &args[w]);
    }
    if (ph->lockstep) {
        control_lockstep(ph);
    } else {
        control(ph, buf, max);
    }
    atomic_store(&ph->stop, 1);
    for (unsigned w = 0; w < N_WORKERS; w++) {
        pthread_join(th[w], NULL);
    }

    /* Quiescent: the table must be exactly consistent now. */
    int bad = vs_mac_table_check(ph->table);
    if (bad) {
        fail(ph, "vs_mac_table_check failed with code", (uint32_t) bad, 0);
    }
    uint32_t count = vs_mac_table_count(ph->table);
    uint32_t dumped = vs_mac_dump(ph->table, buf, max);
    if (dumped != count) {
        fail(ph, "dump size differs from count", dumped, count);
    }
    check_dump(ph, buf, max);
    for (uint32_t i = 0; i < ph->n_keys; i++) {
        uint8_t mac[6];
        key_mac(i, mac);
        uint32_t got = vs_mac_lookup(ph->table, key_vlan(i), mac);
        if (got != VS_PORT_NONE && got / PORTS_PER_KEY != i) {
            fail(ph, "quiescent lookup returned a foreign port", i, got);
        }
    }

    struct vs_mac_stats st;
    vs_mac_table_stats(ph->table, &st);
    /* Every entry present was counted as learned once; every one removed
     * was too (duplicate resolution removes some without counting them
     * aged or flushed, hence >=). */
    if (st.learned < (uint64_t) count + st.aged + st.flushed) {
        fail(ph, "learned below count + aged + flushed",
             (uint32_t) st.learned, count);
    }
    printf("%s: %.1fs learns=%llu hits=%llu count=%u learned=%llu "
           "moved=%llu aged=%llu flushed=%llu full=%llu\n",
           ph->name, ph->seconds, (unsigned long long) ph->learns,
           (unsigned long long) ph->lookups_hit, count,
           (unsigned long long) st.learned, (unsigned long long) st.moved,
           (unsigned long long) st.aged, (unsigned long long) st.flushed,
           (unsigned long long) st.full);

    if (ph->lockstep) {
        pthread_barrier_destroy(&ph->barrier);
    }
    vs_mac_table_free(ph->table);
    free(buf);
    return atomic_load(&ph->errors) ? 1 : 0;
}

int
main(int argc, char *argv[])
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.5;
    struct phase wide = {
        .name = "wide", .capacity = 300, .n_keys = 1000,
        .seconds = seconds * 0.4, .now_s = 1000,
    };
    struct phase hot = {
        .name = "hot", .capacity = 4, .n_keys = 6,
        .seconds = seconds * 0.3, .now_s = 1000,
    };
    struct phase race = {
        .name = "race", .capacity = 8, .n_keys = 4,
        .seconds = seconds * 0.3, .lockstep = 1,
    };
    int bad = run_phase(&wide);
    bad |= run_phase(&hot);
    bad |= run_phase(&race);
    puts(bad ? "FAIL" : "PASS");
    return bad;
}

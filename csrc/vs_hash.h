/*
 * vs_hash.h: the one hash the fast path uses for its tables.
 *
 * MurmurHash3's 64-bit finalizer over 'k' ^ 'seed': a bijection whose every
 * output bit depends on every input bit, so the low bits that pick a bucket
 * are as good as the high ones, and with a per-table random seed a VM
 * cannot aim its addresses at one bucket.
 */
#ifndef VS_HASH_H
#define VS_HASH_H 1

#include <stdint.h>

static inline uint64_t
vs_hash64(uint64_t k, uint64_t seed)
{
    k ^= seed;
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    k ^= k >> 33;
    return k;
}

#endif /* vs_hash.h */

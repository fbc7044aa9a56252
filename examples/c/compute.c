/*
 * compute.c - compute-bound example guest for Ferry.
 *
 * Usage: compute [ROUNDS] [EXIT_CODE]
 *   ROUNDS     number of rounds (default 40, each ~50 ms natively)
 *   EXIT_CODE  exit status to finish with (default 0, 0..125)
 *
 * Each round counts primes in a window of integers by trial division and
 * then runs several passes of iterated 64-bit hashing over a 64 KiB state
 * buffer that lives in linear memory (so the result depends on memory
 * surviving a migration). After every round it prints one progress line
 * with the round's prime count and a running checksum. A summary goes to
 * stderr at the end. All output is deterministic.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_WORDS 16384u  /* 64 KiB of uint32 state */
#define PRIME_SPAN 120000u  /* integers tested per round */
#define HASH_PASSES 256u    /* hashing passes over the state per round */

static uint32_t state[STATE_WORDS];

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int is_prime(uint32_t n) {
    if (n < 2) return 0;
    if ((n & 1u) == 0) return n == 2;
    for (uint32_t d = 3; d <= n / d; d += 2)
        if (n % d == 0) return 0;
    return 1;
}

/* Count primes in [base, base + PRIME_SPAN) and fold them into *acc. */
static uint32_t prime_window(uint32_t base, uint64_t *acc) {
    uint32_t count = 0;
    for (uint32_t n = base; n < base + PRIME_SPAN; n++) {
        if (is_prime(n)) {
            count++;
            *acc = mix64(*acc ^ n);
        }
    }
    return count;
}

/* Several dependent passes of hashing over the whole state buffer. */
static uint64_t hash_passes(uint32_t round, uint64_t h) {
    for (uint32_t pass = 0; pass < HASH_PASSES; pass++) {
        for (uint32_t i = 0; i < STATE_WORDS; i++) {
            uint32_t j = (i * 7919u + pass) & (STATE_WORDS - 1);
            h = mix64(h ^ state[i] ^ ((uint64_t)state[j] << 32) ^ round);
            state[i] = (uint32_t)h ^ (uint32_t)(h >> 32);
        }
    }
    return h;
}

static unsigned long parse_arg(const char *s, const char *what, unsigned long max) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v > max) {
        fprintf(stderr, "compute: bad %s '%s' (max %lu)\n", what, s, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    unsigned long rounds = 40, exit_code = 0;
    if (argc > 3) {
        fprintf(stderr, "usage: compute [ROUNDS] [EXIT_CODE]\n");
        return 2;
    }
    if (argc > 1) rounds = parse_arg(argv[1], "ROUNDS", 10000);
    if (argc > 2) exit_code = parse_arg(argv[2], "EXIT_CODE", 125);
    setvbuf(stdout, NULL, _IOLBF, 0);

    for (uint32_t i = 0; i < STATE_WORDS; i++)
        state[i] = (uint32_t)mix64(i + 1);

    printf("compute: %lu rounds\n", rounds);
    uint64_t checksum = 0x243f6a8885a308d3ULL;
    uint64_t total_primes = 0;
    for (uint32_t r = 1; r <= rounds; r++) {
        uint64_t acc = r;
        uint32_t base = 1000000u + (r - 1) * PRIME_SPAN;
        uint32_t primes = prime_window(base, &acc);
        total_primes += primes;
        uint64_t h = hash_passes(r, acc);
        checksum = mix64(checksum ^ h) + primes;
        printf("round %u/%lu primes=%u hash=%016llx checksum=%016llx\n", r, rounds,
               primes, (unsigned long long)h, (unsigned long long)checksum);
    }
    printf("done rounds=%lu primes=%llu checksum=%016llx\n", rounds,
           (unsigned long long)total_primes, (unsigned long long)checksum);
    fprintf(stderr, "compute: summary rounds=%lu primes=%llu checksum=%016llx exit=%lu\n",
            rounds, (unsigned long long)total_primes, (unsigned long long)checksum, exit_code);
    return (int)exit_code;
}

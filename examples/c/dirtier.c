/*
 * dirtier.c - a fixed amount of work that dirties memory as it goes, for
 * measuring what checkpoints cost a running program.
 *
 * Usage: dirtier [SIZE_MIB] [WRITE_MIB] [WORK]
 *   SIZE_MIB   buffer size in MiB, 1..1024 (default 64)
 *   WRITE_MIB  MiB of 4 KiB blocks to rewrite in all, 0..1048576 (default 64)
 *   WORK       rounds of integer mixing after each block, 0..10000000
 *              (default 2000): sets how fast it dirties memory
 *
 * The buffer is split into 4 KiB blocks. Block b of generation g holds 1024
 * 32-bit words fully determined by (b, g). At start every block is written
 * with generation 0 ("touch"). Then a cursor walks the buffer cyclically and
 * rewrites WRITE_MIB * 256 blocks, each with the next generation of its
 * block, reading the old content first, then mixes WORK rounds. It never
 * looks at a clock: the work is the same on every run, and the time it takes
 * is what a benchmark measures. Finally every block is verified.
 *
 * stdout: one line after touching, one per 16 MiB rewritten, one verify line.
 * stderr: one summary line. Exit status 0 (verify OK), 1 (verify FAIL),
 * 2 (usage error), 3 (out of memory).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BLOCK_WORDS 1024u

static uint32_t *buf;
static uint32_t *gen;
static uint32_t nblocks;

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t seed_of(uint32_t b, uint32_t g) {
    return (uint32_t)mix64(((uint64_t)g << 32) | b) | 1u;
}

/* Rewrite block b with generation g; returns a checksum of old and new data. */
static uint64_t write_block(uint32_t b, uint32_t g) {
    uint32_t *w = buf + (size_t)b * BLOCK_WORDS;
    uint32_t v = seed_of(b, g);
    uint32_t old = 0;
    for (uint32_t j = 0; j < BLOCK_WORDS; j++) {
        old = old * 31u + w[j];
        w[j] = v + j * 0x9e3779b9u;
    }
    gen[b] = g;
    return ((uint64_t)old << 32) ^ v;
}

static int parse(const char *s, unsigned long max, unsigned long *out) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v > max) return 0;
    *out = v;
    return 1;
}

int main(int argc, char **argv) {
    unsigned long size_mib = 64, write_mib = 64, work = 2000;
    if (argc > 4 || (argc > 1 && !parse(argv[1], 1024, &size_mib)) || (argc > 2 && !parse(argv[2], 1048576, &write_mib)) ||
        (argc > 3 && !parse(argv[3], 10000000, &work)) || size_mib == 0) {
        fprintf(stderr, "usage: dirtier [SIZE_MIB 1..1024] [WRITE_MIB] [WORK]\n");
        return 2;
    }
    nblocks = (uint32_t)(size_mib * 256u);
    buf = malloc((size_t)nblocks * BLOCK_WORDS * 4u);
    gen = calloc(nblocks, sizeof *gen);
    if (buf == NULL || gen == NULL) {
        fprintf(stderr, "dirtier: out of memory for %lu MiB\n", size_mib);
        return 3;
    }
    uint64_t sum = 0;
    for (uint32_t b = 0; b < nblocks; b++) sum += write_block(b, 0);
    printf("dirtier: %lu MiB touched checksum=%016llx\n", size_mib, (unsigned long long)sum);
    fflush(stdout);
    uint64_t blocks = (uint64_t)write_mib * 256u;
    uint64_t mixed = 0x243f6a8885a308d3ULL;
    uint32_t cursor = 0;
    for (uint64_t i = 1; i <= blocks; i++) {
        sum += write_block(cursor, gen[cursor] + 1u);
        cursor = (cursor + 1u) % nblocks;
        for (unsigned long k = 0; k < work; k++) mixed = mix64(mixed + k);
        if (i % (16u * 256u) == 0) {
            printf("written %llu MiB checksum=%016llx mixed=%016llx\n", (unsigned long long)(i / 256u), (unsigned long long)sum, (unsigned long long)mixed);
            fflush(stdout);
        }
    }
    uint32_t bad = 0;
    for (uint32_t b = 0; b < nblocks; b++) {
        const uint32_t *w = buf + (size_t)b * BLOCK_WORDS;
        uint32_t v = seed_of(b, gen[b]);
        for (uint32_t j = 0; j < BLOCK_WORDS; j++) bad += (w[j] != v + j * 0x9e3779b9u);
    }
    printf("verify %s checksum=%016llx mixed=%016llx\n", bad == 0 ? "OK" : "FAIL", (unsigned long long)sum, (unsigned long long)mixed);
    fprintf(stderr, "dirtier: summary size=%luMiB written=%luMiB work=%lu bad_words=%u\n", size_mib, write_mib, work, bad);
    return bad == 0 ? 0 : 1;
}

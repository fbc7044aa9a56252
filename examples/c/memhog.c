/*
 * memhog.c - memory-heavy example guest for Ferry.
 *
 * Usage: memhog [--hold] [SIZE_MIB] [WRITE_MIB_PER_S] [SECONDS] [FILL]
 *   --hold           after the last second, wait for a message "release"
 *                    before verifying (hold.h: a test that moves it needs
 *                    it alive until its last move, however slow the host)
 *   SIZE_MIB         buffer size in MiB, 1..3072 (default 64)
 *   WRITE_MIB_PER_S  rewrite rate in MiB per second, 0..65536 (default 32);
 *                    0 means idle: the program only sleeps
 *   SECONDS          number of (logical) seconds to run, 0..86400 (default 2)
 *   FILL             what blocks hold: "mixed" (default; no byte sequence
 *                    repeats, so they do not compress) or "text" (half of
 *                    each block is 32-byte phrases from a small table, the
 *                    rest as "mixed": compresses about 2:1 with LZ4, as a
 *                    program's heap of strings and records might)
 *
 * The buffer is split into 4 KiB blocks. Block b of generation g holds 1024
 * 32-bit words fully determined by (b, g) and never all zero. At start every
 * block is written with generation 0 ("touch"). Then, for each second
 * k = 1..SECONDS, a cursor walks the buffer cyclically and rewrites
 * WRITE_MIB_PER_S * 256 blocks with generation k, paced in 50 slices of
 * 20 ms with clock_gettime(CLOCK_MONOTONIC) + nanosleep. Each rewrite reads
 * the old content (folding it into the checksum) before overwriting, so the
 * per-second checksum depends on memory having survived intact. If the host
 * is too slow for the rate, the program simply falls behind; the amount of
 * data written per logical second is always exactly the same, so the output
 * never depends on timing. Finally, every block is verified against the
 * generation it was last written with.
 *
 * stdout: one line after touching, one line per second, one verify line.
 * stderr: one summary line. Exit status 0 (verify OK), 1 (verify FAIL),
 * 2 (usage error), 3 (out of memory).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hold.h"

#define BLOCK_BYTES 4096u
#define BLOCK_WORDS (BLOCK_BYTES / 4u)
#define SLICES 50u
#define CHUNK_SHIFT 14u   /* blocks per allocation chunk: 2^14 x 4 KiB = 64 MiB */
#define MAX_CHUNKS 64u    /* up to 4 GiB */

/* The buffer is allocated as 64 MiB chunks: wasi-libc's malloc cannot hand
   out a single region of 2 GiB or more, chunks let SIZE_MIB go up to 3072. */
static uint32_t *chunks[MAX_CHUNKS];
static uint32_t *gen;      /* generation each block was last written with */
static uint32_t nblocks;
static uint32_t cursor;    /* next block to rewrite */

static uint32_t *block_ptr(uint32_t b) {
    return chunks[b >> CHUNK_SHIFT] + (size_t)(b & ((1u << CHUNK_SHIFT) - 1)) * BLOCK_WORDS;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t block_seed(uint32_t b, uint32_t g) {
    return (uint32_t)mix64(((uint64_t)g << 32) | b) | 1u;
}

static int fill_text;      /* FILL is "text" */

/* Eight 32-byte phrases, as little-endian words, for FILL=text. */
static const char phrases[8][33] = {
    "the process moved to other nodes", "pages were copied while it ran  ",
    "a checkpoint is stored elsewhere", "output reaches its reader once  ",
    "links deliver messages in order ", "the node daemon keeps its table ",
    "memory is tracked page by page  ", "nothing is lost when nodes die  ",
};

/* Word j of a block whose seed is v: fully determined by (v, j). */
static uint32_t block_word(uint32_t v, uint32_t j) {
    if (fill_text && ((v >> ((j >> 3) & 15)) & 1u)) {
        const char *p = phrases[(v + (j >> 3)) & 7u] + (j & 7u) * 4u;
        return (uint32_t)(uint8_t)p[0] | (uint32_t)(uint8_t)p[1] << 8 | (uint32_t)(uint8_t)p[2] << 16 | (uint32_t)(uint8_t)p[3] << 24;
    }
    return v + j * 0x9e3779b9u;
}

/* Rewrite block b with generation g; returns a checksum of old and new data. */
static uint64_t write_block(uint32_t b, uint32_t g) {
    uint32_t *w = block_ptr(b);
    uint32_t v = block_seed(b, g);
    uint32_t old_sum = 0;
    for (uint32_t j = 0; j < BLOCK_WORDS; j++) {
        old_sum = old_sum * 31u + w[j];
        w[j] = block_word(v, j);
    }
    gen[b] = g;
    return ((uint64_t)old_sum << 32) ^ v;
}

static int check_block(uint32_t b) {
    const uint32_t *w = block_ptr(b);
    uint32_t v = block_seed(b, gen[b]);
    uint32_t bad = 0;
    for (uint32_t j = 0; j < BLOCK_WORDS; j++) bad |= w[j] ^ block_word(v, j);
    return bad == 0;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until(int64_t deadline) {
    int64_t d = deadline - now_ns();
    if (d <= 0) return;
    struct timespec ts = {(time_t)(d / 1000000000), (long)(d % 1000000000)};
    nanosleep(&ts, NULL);
}

static unsigned long parse_arg(const char *s, const char *what, unsigned long min,
                               unsigned long max) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "memhog: bad %s '%s' (%lu..%lu)\n", what, s, min, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    unsigned long size_mib = 64, rate = 32, seconds = 2;
    hold_parse(&argc, &argv);
    if (argc > 5) {
        fprintf(stderr, "usage: memhog [--hold] [SIZE_MIB] [WRITE_MIB_PER_S] [SECONDS] [mixed|text]\n");
        return 2;
    }
    if (argc > 1) size_mib = parse_arg(argv[1], "SIZE_MIB", 1, 3072);
    if (argc > 2) rate = parse_arg(argv[2], "WRITE_MIB_PER_S", 0, 65536);
    if (argc > 3) seconds = parse_arg(argv[3], "SECONDS", 0, 86400);
    if (argc > 4) {
        if (strcmp(argv[4], "text") == 0) fill_text = 1;
        else if (strcmp(argv[4], "mixed") != 0) {
            fprintf(stderr, "memhog: bad FILL '%s' (mixed or text)\n", argv[4]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    nblocks = (uint32_t)(size_mib * (1048576u / BLOCK_BYTES));
    gen = malloc((size_t)nblocks * sizeof *gen);
    int ok = gen != NULL;
    for (uint32_t c = 0; ok && c < (nblocks + (1u << CHUNK_SHIFT) - 1) >> CHUNK_SHIFT; c++) {
        uint32_t n = nblocks - (c << CHUNK_SHIFT);
        if (n > (1u << CHUNK_SHIFT)) n = 1u << CHUNK_SHIFT;
        chunks[c] = malloc((size_t)n * BLOCK_BYTES);
        ok = chunks[c] != NULL;
    }
    if (!ok) {
        fprintf(stderr, "memhog: cannot allocate %lu MiB\n", size_mib);
        return 3;
    }

    uint64_t cs = 0;
    /* Fresh malloc memory need not be zero (allocator headers), so the touch
       checksum folds in only the new data (the low 32 bits). */
    for (uint32_t b = 0; b < nblocks; b++) cs = mix64(cs ^ (uint32_t)write_block(b, 0));
    printf("memhog: %lu MiB touched (%u blocks) rate=%lu MiB/s seconds=%lu checksum=%016llx\n",
           size_mib, nblocks, rate, seconds, (unsigned long long)cs);

    uint64_t per_sec = (uint64_t)rate * (1048576u / BLOCK_BYTES);
    uint64_t total_blocks = 0, run_cs = cs;
    int64_t t0 = now_ns();
    for (uint32_t k = 1; k <= seconds; k++) {
        uint64_t done = 0;
        cs = 0;
        int64_t sec_start = t0 + (int64_t)(k - 1) * 1000000000;
        for (uint32_t s = 0; s < SLICES; s++) {
            uint64_t target = per_sec * (s + 1) / SLICES;
            for (; done < target; done++) {
                cs = mix64(cs ^ write_block(cursor, k));
                if (++cursor == nblocks) cursor = 0;
            }
            sleep_until(sec_start + (int64_t)(s + 1) * (1000000000 / SLICES));
        }
        total_blocks += done;
        run_cs = mix64(run_cs ^ cs);
        printf("second %u/%lu blocks=%llu bytes=%llu cursor=%u checksum=%016llx\n", k, seconds,
               (unsigned long long)done, (unsigned long long)done * BLOCK_BYTES, cursor,
               (unsigned long long)cs);
    }

    hold_here();
    uint32_t bad = 0, first_bad = 0;
    for (uint32_t b = 0; b < nblocks; b++) {
        if (!check_block(b)) {
            if (bad++ == 0) first_bad = b;
        }
    }
    if (bad == 0)
        printf("verify OK blocks=%u checksum=%016llx\n", nblocks, (unsigned long long)run_cs);
    else
        printf("verify FAIL bad_blocks=%u first_bad=%u\n", bad, first_bad);
    fprintf(stderr, "memhog: summary size=%luMiB rate=%luMiB/s seconds=%lu rewritten_blocks=%llu %s\n",
            size_mib, rate, seconds, (unsigned long long)total_blocks, bad == 0 ? "OK" : "FAIL");
    return bad == 0 ? 0 : 1;
}

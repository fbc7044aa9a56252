/*
 * lookup.c - example guest whose hot code only reads memory.
 *
 * Usage: lookup [ROUNDS] [MIB]
 *   ROUNDS  rounds, 1..100000 (default 20)
 *   MIB     size of the buffer checksummed each round, 1..1024 (default 8)
 *
 * Each round looks up 2,000 keys in a table of 512 strings with find(),
 * which compares them with strcmp(), and checksums the whole buffer with
 * checksum(). Neither writes anything outside its frame, so the
 * instrumenter gives each a fast copy with no safe point, left when a safe
 * point is wanted and run again in its instrumented copy (docs/runtime.md,
 * "Functions that can run again"). A run suspended and moved at any moment
 * must print what an uninterrupted one prints. Between rounds the buffer
 * changes by one byte, so every checksum differs.
 *
 * stdout: "round R: found F checksum H" per round (flushed), then "total T".
 * Exit status 0 (2 on usage errors).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORDS 512
#define KEYS 2000

static char *words[WORDS];

/* Where `key` is in the table, or -1. Reads only. */
__attribute__((noinline)) static int find(const char *key) {
    for (int i = 0; i < WORDS; i++)
        if (strcmp(words[i], key) == 0) return i;
    return -1;
}

/* FNV-1a of `n` bytes. Reads only; the long call of a round. */
__attribute__((noinline)) static uint64_t checksum(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void name(char *buf, size_t cap, unsigned i) {
    snprintf(buf, cap, "word-%u-%x", i, i * 2654435761u);
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 20;
    long mib = argc > 2 ? strtol(argv[2], NULL, 10) : 8;
    if (rounds < 1 || rounds > 100000 || mib < 1 || mib > 1024) {
        fprintf(stderr, "usage: lookup [ROUNDS 1..100000] [MIB 1..1024]\n");
        return 2;
    }
    char buf[32];
    for (unsigned i = 0; i < WORDS; i++) {
        name(buf, sizeof buf, i);
        words[i] = strdup(buf);
    }
    size_t bytes = (size_t)mib << 20;
    uint8_t *data = malloc(bytes);
    if (words[WORDS - 1] == NULL || data == NULL) {
        fprintf(stderr, "lookup: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < bytes; i++) data[i] = (uint8_t)(i * 31 + (i >> 9));
    uint64_t total = 0;
    for (long r = 0; r < rounds; r++) {
        long found = 0;
        for (unsigned k = 0; k < KEYS; k++) {
            /* Some keys are past the table: not found. */
            name(buf, sizeof buf, (unsigned)((k * 7 + r) % (WORDS + 50)));
            found += find(buf);
        }
        uint64_t h = checksum(data, bytes);
        data[(size_t)r % bytes] ^= (uint8_t)(h | 1);
        total ^= h + (uint64_t)found;
        printf("round %ld: found %ld checksum %016llx\n", r, found, (unsigned long long)h);
        fflush(stdout);
    }
    printf("total %016llx\n", (unsigned long long)total);
    return 0;
}

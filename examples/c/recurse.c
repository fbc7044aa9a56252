/*
 * recurse.c - deeply recursive example guest for Ferry.
 *
 * Usage: recurse [DEPTH] [REPEATS]
 *   DEPTH    recursion depth, 1..400000 (default 20000)
 *   REPEATS  how many times to recurse to DEPTH and back, 1..1000000 (default 150)
 *
 * descend() is a non-tail recursive function: each level fills a small
 * array in its own frame (on the C shadow stack in linear memory, since its
 * address escapes), does some hashing on the way down, recurses, and on the
 * way back up folds the array contents into the result. So a suspended run
 * spends most of its time DEPTH wasm frames deep, and both the wasm call
 * stack and the shadow stack must survive a migration intact.
 * The linear-memory stack is 16 MiB (enough for 400000 levels). The host's
 * native stack must also hold DEPTH wasm frames; see examples/README.md.
 *
 * stdout: one line per repeat with a deterministic result, then a final line.
 * stderr: one summary line. Exit status 0 (2 on usage errors).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FRAME_WORDS 8
#define WORK 48 /* hashing rounds per level, each way */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* noinline + escaping pointer keeps buf in the frame on the shadow stack. */
static __attribute__((noinline)) uint64_t fill(uint32_t *buf, uint32_t level, uint64_t seed) {
    uint64_t h = seed ^ level;
    for (int r = 0; r < WORK; r++) h = mix64(h + (uint64_t)r);
    for (int i = 0; i < FRAME_WORDS; i++) {
        h = mix64(h + (uint64_t)i);
        buf[i] = (uint32_t)h;
    }
    return h;
}

static __attribute__((noinline)) uint64_t fold(const uint32_t *buf, uint64_t acc) {
    for (int i = 0; i < FRAME_WORDS; i++) acc = mix64(acc ^ buf[i]);
    for (int r = 0; r < WORK; r++) acc = mix64(acc + (uint64_t)r);
    return acc;
}

static uint32_t max_level; /* deepest level reached, as a sanity check */

static uint64_t descend(uint32_t level, uint32_t depth, uint64_t seed) {
    uint32_t buf[FRAME_WORDS];
    uint64_t h = fill(buf, level, seed);
    if (level > max_level) max_level = level;
    uint64_t below = level + 1 < depth ? descend(level + 1, depth, h) : h;
    return fold(buf, below) + level;
}

static unsigned long parse_arg(const char *s, const char *what, unsigned long max) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > max) {
        fprintf(stderr, "recurse: bad %s '%s' (1..%lu)\n", what, s, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    unsigned long depth = 20000, repeats = 150;
    if (argc > 3) {
        fprintf(stderr, "usage: recurse [DEPTH] [REPEATS]\n");
        return 2;
    }
    if (argc > 1) depth = parse_arg(argv[1], "DEPTH", 400000);
    if (argc > 2) repeats = parse_arg(argv[2], "REPEATS", 1000000);
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("recurse: depth=%lu repeats=%lu\n", depth, repeats);
    uint64_t total = 0;
    for (uint32_t r = 1; r <= repeats; r++) {
        max_level = 0;
        uint64_t res = descend(0, (uint32_t)depth, r);
        total = mix64(total ^ res);
        printf("repeat %u/%lu depth=%u result=%016llx total=%016llx\n", r, repeats, max_level + 1,
               (unsigned long long)res, (unsigned long long)total);
    }
    printf("done total=%016llx\n", (unsigned long long)total);
    fprintf(stderr, "recurse: summary depth=%lu repeats=%lu total=%016llx\n", depth, repeats,
            (unsigned long long)total);
    return 0;
}

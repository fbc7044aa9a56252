/*
 * pause.c - what a running program sees of a move: the gaps in its time.
 *
 * Usage: pause [SIZE_MIB] [THRESHOLD_US] [MODE] [SECONDS]
 *   SIZE_MIB      memory it walks, 1..3072 (default 64)
 *   THRESHOLD_US  a gap longer than this is recorded, 1..1000000 (default 1000)
 *   MODE          "touch" (default): reads and rewrites one word of every
 *                 4 KiB block, block after block, over and over, so every
 *                 page is wanted all the time; "still": touches no memory
 *                 after the start (only the clock)
 *   SECONDS       it ends after this many seconds, 1..86400 (default 60)
 *
 * After each block it reads CLOCK_REALTIME. Where two readings are further
 * apart than THRESHOLD_US it records the gap: the program stood still in
 * between (stopped for a move, waiting for a page, or off its CPU). The wall
 * clock, not the monotonic one, because Ferry carries a process's monotonic
 * clock across a move without the time in transit; on one machine both
 * nodes read the same wall clock. Gaps are printed every 2 s, outside the
 * timed loop (the printing itself is never counted as a gap), and at the end.
 *
 * Unlike the other examples its output is not deterministic: it is a
 * measurement. stdout: "pause: SIZE MiB touched mode=MODE", then every 2 s
 * one line per gap, "gap START_NS END_NS" (ns since the Unix epoch), and
 * "until T_NS": every gap that ended by T_NS is printed; "pause: done" last.
 * Exit 0, 2 on a usage error, 3 out of memory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BLOCK_WORDS 1024u /* 4 KiB */
#define GAPS_MAX 4096
#define PRINT_EVERY_NS 2000000000LL

static int64_t gaps[GAPS_MAX][2];
static int count;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static unsigned long parse_arg(const char *s, const char *what, unsigned long min, unsigned long max) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "pause: bad %s '%s' (%lu..%lu)\n", what, s, min, max);
        exit(2);
    }
    return v;
}

/* Prints the gaps recorded so far, then "until T": every gap that ended by T is printed. */
static void print_gaps(int64_t until) {
    for (int g = 0; g < count; g++) printf("gap %lld %lld\n", (long long)gaps[g][0], (long long)gaps[g][1]);
    count = 0;
    printf("until %lld\n", (long long)until);
    fflush(stdout);
}

int main(int argc, char **argv) {
    unsigned long size_mib = 64, threshold_us = 1000, seconds = 60;
    int touch = 1;
    if (argc > 5) {
        fprintf(stderr, "usage: pause [SIZE_MIB] [THRESHOLD_US] [touch|still] [SECONDS]\n");
        return 2;
    }
    if (argc > 1) size_mib = parse_arg(argv[1], "SIZE_MIB", 1, 3072);
    if (argc > 2) threshold_us = parse_arg(argv[2], "THRESHOLD_US", 1, 1000000);
    if (argc > 3) {
        if (strcmp(argv[3], "still") == 0) touch = 0;
        else if (strcmp(argv[3], "touch") != 0) {
            fprintf(stderr, "pause: bad MODE '%s' (touch or still)\n", argv[3]);
            return 2;
        }
    }
    if (argc > 4) seconds = parse_arg(argv[4], "SECONDS", 1, 86400);
    size_t words = (size_t)size_mib * 1048576u / 4u;
    /* In 64 MiB pieces: wasi-libc's malloc cannot hand out 2 GiB or more at once. */
    size_t piece_words = 64u * 1048576u / 4u, pieces = (words + piece_words - 1) / piece_words;
    uint32_t *piece[48];
    size_t length[48];
    for (size_t p = 0; p < pieces; p++) {
        length[p] = words - p * piece_words < piece_words ? words - p * piece_words : piece_words;
        piece[p] = malloc(length[p] * 4u);
        if (piece[p] == NULL) {
            fprintf(stderr, "pause: cannot allocate %lu MiB\n", size_mib);
            return 3;
        }
        for (size_t i = 0; i < length[p]; i += BLOCK_WORDS) piece[p][i] = (uint32_t)(p * piece_words + i) | 1u;
    }
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    printf("pause: %lu MiB touched mode=%s\n", size_mib, touch ? "touch" : "still");
    fflush(stdout);
    int64_t start = now_ns(), last = start, printed = start;
    int64_t end = start + (int64_t)seconds * 1000000000;
    uint32_t sum = 0;
    for (;;) {
        for (size_t p = 0; p < pieces; p++) {
            for (size_t i = 0; i < length[p]; i += BLOCK_WORDS) {
                if (touch) {
                    sum += piece[p][i];
                    piece[p][i] = sum | 1u;
                }
                int64_t t = now_ns();
                if (t - last > (int64_t)threshold_us * 1000 && count < GAPS_MAX) {
                    gaps[count][0] = last;
                    gaps[count][1] = t;
                    count++;
                }
                last = t;
                if (t - printed >= PRINT_EVERY_NS) {
                    print_gaps(t);
                    if (t >= end) {
                        printf("pause: done\n");
                        return 0;
                    }
                    last = printed = now_ns();
                }
            }
        }
    }
}

/*
 * pipeline.c - one stage of a pipeline of processes linked by Ferry messages.
 *
 * Usage: pipeline [--hold] STAGE NEXT N
 *   STAGE  0 for the source, 1, 2, ... for the stages after it
 *   NEXT   pid of the next stage, or "-" for the last stage (the sink)
 *   N      number of items that flow through
 *
 * The source sends items "K V" for K = 1..N with V = K. Every later stage
 * receives items in order, replaces V with a hash of V and its stage number,
 * and passes the item on; the sink checks that K runs 1..N with no gap or
 * repeat and prints a checksum of every V. The same N and the same number
 * of stages always give the same output, however the stages are moved.
 *
 * With --hold (hold.h) a stage stops before its last item until it is sent
 * "release": the source before it sends item N, a later stage once item N
 * is in, before it passes it on or ends. The stages after it wait for that
 * item, so the whole pipeline stays alive for a test to move its stages.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ferry.h"
#include "hold.h"

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

static void send_item(const char *next, long k, uint64_t v) {
    char msg[64];
    int len = snprintf(msg, sizeof msg, "%ld %" PRIu64, k, v);
    int rc = ferry_send(next, msg, (uint32_t)len);
    if (rc != 0) {
        fprintf(stderr, "pipeline: send failed: errno %d\n", rc);
        exit(3);
    }
}

int main(int argc, char **argv) {
    hold_parse(&argc, &argv);
    if (argc != 4) {
        fprintf(stderr, "usage: pipeline [--hold] STAGE NEXT N\n");
        return 2;
    }
    long stage = strtol(argv[1], NULL, 10);
    const char *next = argv[2];
    long n = strtol(argv[3], NULL, 10);
    int sink = strcmp(next, "-") == 0;
    if (stage == 0) {
        for (long k = 1; k <= n; k++) {
            if (k == n) hold_here(); /* a source takes no messages but the release */
            send_item(next, k, (uint64_t)k);
        }
        printf("source sent %ld items\n", n);
        return 0;
    }
    char from[FERRY_PID_MAX + 1], buf[64];
    uint64_t sum = 0;
    for (long k = 1; k <= n; k++) {
        uint32_t len = 0;
        do {
            int rc = ferry_recv(from, buf, sizeof buf - 1, &len, -1);
            if (rc != 0) {
                fprintf(stderr, "pipeline: recv failed: errno %d\n", rc);
                return 3;
            }
        } while (hold_noted(buf, len));
        buf[len] = 0;
        char *end = NULL;
        long got = strtol(buf, &end, 10);
        uint64_t v = strtoull(end, NULL, 10);
        if (got != k) {
            fprintf(stderr, "pipeline: stage %ld expected item %ld, got %ld\n", stage, k, got);
            return 1;
        }
        v = mix(v, (uint64_t)stage);
        if (k == n) hold_here(); /* item N was the stage before's last */
        if (sink) {
            sum = mix(sum, v);
            if (k % 5000 == 0) printf("sink %ld items checksum=%016" PRIx64 "\n", k, sum);
        } else {
            send_item(next, k, v);
        }
    }
    if (sink) printf("sink done items=%ld checksum=%016" PRIx64 "\n", n, sum);
    else printf("stage %ld passed %ld items\n", stage, n);
    return 0;
}

/*
 * pingpong.c - two processes exchanging numbered messages over Ferry links.
 *
 * Usage: pingpong [--hold] pong N
 *        pingpong [--hold] ping PEER N [WINDOW]
 *
 * "ping" sends "ping K" for K = 1..N to PEER, keeping at most WINDOW
 * (default 16) unanswered; "pong" answers each "ping K" from whoever sent it
 * with "pong K". Each side checks that the numbers arrive exactly in order,
 * with no gap and no repeat, and exits 1 with a message at the first one that
 * does not. Both print a checksum of what they received, so two runs can be
 * compared byte for byte, and a line every 10000 messages.
 *
 * With --hold (hold.h) a side stops before its last message until it is
 * sent "release": ping once every pong but the last is in, before it sends
 * "ping N"; pong before it answers "ping N". Either way both stay alive, so
 * a test can move them as often as it wants before letting them end.
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
    return h * 0xff51afd7ed558ccdULL;
}

static int usage(void) {
    fprintf(stderr, "usage: pingpong [--hold] pong N | pingpong [--hold] ping PEER N [WINDOW]\n");
    return 2;
}

/* Receives one "WORD K" message (past an early release); returns K, or exits on a malformed one. */
static long expect(const char *word, char *from) {
    char buf[64];
    uint32_t len = 0;
    do {
        int rc = ferry_recv(from, buf, sizeof buf - 1, &len, -1);
        if (rc != 0) {
            fprintf(stderr, "pingpong: recv failed: errno %d\n", rc);
            exit(3);
        }
    } while (hold_noted(buf, len));
    buf[len] = 0;
    size_t w = strlen(word);
    if (strncmp(buf, word, w) != 0 || buf[w] != ' ') {
        fprintf(stderr, "pingpong: unexpected message \"%s\"\n", buf);
        exit(1);
    }
    return strtol(buf + w + 1, NULL, 10);
}

int main(int argc, char **argv) {
    char me[FERRY_PID_MAX + 1], from[FERRY_PID_MAX + 1], msg[64];
    hold_parse(&argc, &argv);
    if (argc < 3) return usage();
    ferry_pid(me);
    uint64_t sum = 0;
    if (strcmp(argv[1], "pong") == 0) {
        long n = strtol(argv[2], NULL, 10);
        for (long k = 1; k <= n; k++) {
            long got = expect("ping", from);
            if (got != k) {
                fprintf(stderr, "pingpong: pong expected ping %ld, got %ld\n", k, got);
                return 1;
            }
            sum = mix(sum, (uint64_t)got);
            if (k == n) hold_here(); /* ping waits for this answer: nothing else comes */
            int len = snprintf(msg, sizeof msg, "pong %ld", k);
            int rc = ferry_send(from, msg, (uint32_t)len);
            if (rc != 0) {
                fprintf(stderr, "pingpong: send failed: errno %d\n", rc);
                return 3;
            }
            if (k % 10000 == 0) printf("pong %ld\n", k);
        }
        printf("pong done n=%ld checksum=%016" PRIx64 "\n", n, sum);
        return 0;
    }
    if (strcmp(argv[1], "ping") != 0 || argc < 4) return usage();
    const char *peer = argv[2];
    long n = strtol(argv[3], NULL, 10);
    long window = argc > 4 ? strtol(argv[4], NULL, 10) : 16;
    if (n < 1 || window < 1) return usage();
    long sent = 0, answered = 0;
    while (answered < n) {
        while (sent < n && sent - answered < window) {
            if (sent == n - 1 && hold_wanted && !hold_released) {
                if (answered < sent) break; /* every answer in first: then only the release can come */
                hold_here();
            }
            sent++;
            int len = snprintf(msg, sizeof msg, "ping %ld", sent);
            int rc = ferry_send(peer, msg, (uint32_t)len);
            if (rc != 0) {
                fprintf(stderr, "pingpong: send failed: errno %d\n", rc);
                return 3;
            }
        }
        long got = expect("pong", from);
        if (got != answered + 1) {
            fprintf(stderr, "pingpong: ping expected pong %ld, got %ld\n", answered + 1, got);
            return 1;
        }
        answered = got;
        sum = mix(sum, (uint64_t)got);
        if (answered % 10000 == 0) printf("ping %ld\n", answered);
    }
    printf("ping done n=%ld checksum=%016" PRIx64 "\n", n, sum);
    return 0;
}

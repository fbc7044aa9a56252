/*
 * selfmove.c - a process that moves itself from node to node.
 *
 * Usage: selfmove NODE...
 *
 * For each NODE in turn it does some work, asks Ferry to move it there
 * (ferry_migrate returns on the new node) and prints the result; the work's
 * running checksum shows its state survived each move. Exit status: 0 if
 * every move succeeded, 1 otherwise.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "ferry.h"

int main(int argc, char **argv) {
    uint64_t h = 1469598103934665603ULL;
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        for (uint32_t j = 0; j < 2000000; j++) h = (h ^ j) * 1099511628211ULL;
        int rc = ferry_migrate(argv[i]);
        printf("move %d to %s: %s (errno %d) checksum=%016" PRIx64 "\n", i, argv[i], rc == 0 ? "arrived" : "failed", rc, h);
        fflush(stdout);
        if (rc != 0) failed = 1;
    }
    return failed;
}

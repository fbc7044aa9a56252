/*
 * hold.h - lets whoever drives a guest decide when it ends.
 *
 * A test that moves a process, or acts on it otherwise, needs it alive until
 * its last action. A guest that ends after a fixed amount of work or time
 * races the test, and loses on a busy machine. A guest started with "--hold"
 * as its first argument instead stops at a point of its own choosing (for
 * the link examples: before its last message, so its peers wait too) until
 * a message "release" comes from anyone (`ferry send PID release`).
 *
 * A release that arrives early, between the guest's own messages, is noted
 * (hold_noted) and lets it pass the hold without waiting. Outside a cluster
 * (`ferry exec`) recv answers ENOSYS: nobody could release it, so it does
 * not wait. What the guest prints is the same, held or not.
 */
#ifndef HOLD_H
#define HOLD_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ferry.h"

#define HOLD_RELEASE "release"

static int hold_wanted;   /* started with --hold */
static int hold_released; /* the release came */

/* Takes a leading "--hold" off the arguments. */
static void hold_parse(int *argc, char ***argv) {
    if (*argc > 1 && strcmp((*argv)[1], "--hold") == 0) {
        hold_wanted = 1;
        (*argv)[1] = (*argv)[0];
        (*argv)++;
        (*argc)--;
    }
}

/* Whether a received message is the release (then noted): the caller skips it. */
static int hold_noted(const char *msg, uint32_t len) {
    if (!hold_wanted || len != sizeof HOLD_RELEASE - 1 || memcmp(msg, HOLD_RELEASE, len) != 0) return 0;
    hold_released = 1;
    return 1;
}

/*
 * Waits here for the release, unless it came already or the guest was not
 * held. Only call it where no other message can come: any other is an
 * error (exit 1).
 */
static void hold_here(void) {
    char from[FERRY_PID_MAX + 1], buf[64];
    while (hold_wanted && !hold_released) {
        uint32_t len = 0;
        int rc = ferry_recv(from, buf, sizeof buf, &len, -1);
        if (rc == ENOSYS) return;
        if (rc != 0) {
            fprintf(stderr, "hold: recv failed: errno %d\n", rc);
            exit(3);
        }
        if (!hold_noted(buf, len)) {
            fprintf(stderr, "hold: unexpected message of %u bytes from %s while held\n", len, from);
            exit(1);
        }
    }
}

#endif

/*
 * sleeper.c - sleeping / stdin-reading example guest for Ferry.
 *
 * Usage: sleeper [SLEEP_MS] [STEPS]
 *   SLEEP_MS  milliseconds to sleep before each step, 0..60000 (default 100)
 *   STEPS     number of steps, 0..1000000 (default 20)
 *
 * Each step first sleeps SLEEP_MS (nanosleep, i.e. poll_oneoff), then, as
 * long as stdin has not hit end of file, reads one line from stdin (fgets,
 * blocking) and prints it transformed:
 *     "line N: UPPERCASED TEXT (len L)"
 * where N counts lines from 1 and L is the length without the newline
 * (lines longer than 1023 bytes are processed in 1023-byte pieces). Once
 * stdin is at end of file, every remaining step prints "tick S" (S = step
 * number from 1). Output depends only on stdin content and the arguments,
 * never on timing.
 *
 * stdout: "sleeper: ..." header, one line per step, "done ..." line.
 * stderr: one summary line. Exit status 0 (2 on usage errors).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned long parse_arg(const char *s, const char *what, unsigned long max) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v > max) {
        fprintf(stderr, "sleeper: bad %s '%s' (0..%lu)\n", what, s, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    unsigned long sleep_ms = 100, steps = 20;
    if (argc > 3) {
        fprintf(stderr, "usage: sleeper [SLEEP_MS] [STEPS]\n");
        return 2;
    }
    if (argc > 1) sleep_ms = parse_arg(argv[1], "SLEEP_MS", 60000);
    if (argc > 2) steps = parse_arg(argv[2], "STEPS", 1000000);
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("sleeper: sleep_ms=%lu steps=%lu\n", sleep_ms, steps);
    static char line[1024];
    unsigned long lines = 0, ticks = 0, bytes = 0;
    int eof = 0;
    for (unsigned long step = 1; step <= steps; step++) {
        struct timespec ts = {(time_t)(sleep_ms / 1000), (long)(sleep_ms % 1000) * 1000000L};
        if (sleep_ms > 0) nanosleep(&ts, NULL);
        if (!eof && fgets(line, sizeof line, stdin) != NULL) {
            size_t len = strlen(line);
            if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
            for (size_t i = 0; i < len; i++) line[i] = (char)toupper((unsigned char)line[i]);
            lines++;
            bytes += len;
            printf("line %lu: %s (len %zu)\n", lines, line, len);
        } else {
            if (!eof) {
                eof = 1;
                printf("eof after %lu lines\n", lines);
            }
            ticks++;
            printf("tick %lu\n", step);
        }
    }
    printf("done lines=%lu ticks=%lu\n", lines, ticks);
    fprintf(stderr, "sleeper: summary lines=%lu bytes=%lu ticks=%lu\n", lines, bytes, ticks);
    return 0;
}

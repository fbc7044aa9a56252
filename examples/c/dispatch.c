/*
 * dispatch.c - example guest whose safe points are reached only through
 * indirect calls.
 *
 * Usage: dispatch [ROUNDS] [WORK]
 *   ROUNDS  how many rounds, 1..1000 (default 3)
 *   WORK    iterations of the compute operation per round, 0..2000000000
 *           (default 2000000)
 *
 * Each round runs four operations on an accumulator through one dispatcher,
 * dispatch(), which holds no loop and calls no blocking import itself: all
 * it does is call through a table of function pointers of one signature.
 * Two of the four (add_one, rotate) never poll; churn() loops WORK times (so
 * it polls); ask() prints "? N" and reads a number from stdin (so it
 * blocks). A suspended run is thus, at its safe points, inside an indirect
 * call whose signature it shares with functions that never reach one: the
 * instrumenter must still make dispatch() unwindable. compare() calls
 * through a second table whose functions never poll, so it need not be.
 *
 * stdout: "? ACC" before each read, then "round R: ACC" (hex) per round.
 * Exit status 0 (2 on usage errors). At end of input, ask() reads nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef uint64_t (*op_fn)(uint64_t);
typedef int (*cmp_fn)(int, int);

static uint64_t work = 2000000;

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t add_one(uint64_t x) { return x + 1; }

static uint64_t rotate(uint64_t x) { return (x << 13) | (x >> 51); }

static uint64_t churn(uint64_t x) {
    for (uint64_t i = 0; i < work; i++) x = mix64(x + i);
    return x;
}

static uint64_t ask(uint64_t x) {
    char line[64];
    printf("? %016llx\n", (unsigned long long)x);
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL) return x;
    return x ^ strtoull(line, NULL, 10);
}

/* Not const: the compiler must call through the table. */
static op_fn ops[4] = {add_one, rotate, churn, ask};

static int less(int a, int b) { return a < b; }

static int more(int a, int b) { return a > b; }

static cmp_fn cmps[2] = {less, more};

static __attribute__((noinline)) uint64_t dispatch(unsigned k, uint64_t x) { return ops[k & 3](x); }

static __attribute__((noinline)) int compare(unsigned k, int a, int b) { return cmps[k & 1](a, b); }

static unsigned long parse_arg(const char *s, const char *what, unsigned long max) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v > max) {
        fprintf(stderr, "dispatch: bad %s '%s' (0..%lu)\n", what, s, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    unsigned long rounds = argc > 1 ? parse_arg(argv[1], "ROUNDS", 1000) : 3;
    if (argc > 2) work = parse_arg(argv[2], "WORK", 2000000000UL);
    if (rounds == 0) rounds = 1;
    uint64_t acc = 0x243f6a8885a308d3ULL;
    for (unsigned r = 0; r < rounds; r++) {
        for (unsigned k = 0; k < 4; k++) acc = dispatch(k, acc);
        acc += (uint64_t)compare(r, (int)acc, (int)(acc >> 32));
        printf("round %u: %016llx\n", r, (unsigned long long)acc);
    }
    return 0;
}

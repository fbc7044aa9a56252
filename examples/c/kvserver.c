/*
 * kvserver.c - a TCP key-value and echo server on WASI preview1 sockets.
 *
 * Usage: kvserver [--quiet]
 *
 * WASI preview1 has no bind, listen or connect, so the runtime hands over a
 * socket that already listens: the first fd in FERRY_LISTEN_FDS (a
 * comma-separated list), or when that is unset the first stream socket among
 * fds 3..1023. One poll() loop serves up to 64 clients at once; beyond that
 * the listener rests until one leaves. Sockets are non-blocking and every
 * client has its own input and output buffer, so a slow client only ever
 * waits for itself. Each command is one line ending in "\n" (a "\r" just
 * before it is ignored); each reply is one line:
 *
 *   SET key value  -> OK               value: the rest of the line, may be empty
 *   GET key        -> VALUE value | NOTFOUND
 *   DEL key        -> DELETED | NOTFOUND
 *   ECHO text      -> text
 *   COUNT          -> COUNT n          keys stored
 *   QUIT           -> BYE, then this connection closes
 *   SHUTDOWN       -> BYE, then every client gets the replies it is owed (for
 *                     at most 5 s), all connections close, and the server exits
 *   anything else  -> ERR unknown command
 *
 * A known command with missing or extra arguments gets "ERR usage: ...";
 * keys are 1..256 bytes without spaces ("ERR key too long"), values at most
 * 3800 bytes ("ERR value too long"); "ERR store full" past 1048576 keys and
 * "ERR out of memory" when malloc fails. A line over 4096 bytes gets
 * "ERR line too long" and its connection is closed.
 *
 * stdout: "kvserver: connection N open" and "kvserver: connection N closed"
 * (N from 1; not with --quiet), and after SHUTDOWN "kvserver: served N
 * connections, M commands" (M counts every line answered). stderr: one line
 * per connection that failed. Exit 0 after SHUTDOWN; 2 on bad arguments or no
 * listening socket; 3 if the listening socket or poll() fails, or no memory.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <wasi/api.h>

/* Limits: each bounds what one client can make the server hold or do. */
#define CONNS_MAX 64
#define LINE_BYTES_MAX 4096                    /* one command, without its "\n" */
#define KEY_BYTES_MAX 256
#define VALUE_BYTES_MAX 3800
#define KEYS_MAX (1u << 20)                    /* keeps the slot table at 24 MiB */
#define IN_BYTES (LINE_BYTES_MAX + 2)          /* a whole line and its "\r\n" */
#define REPLY_BYTES_MAX (LINE_BYTES_MAX + 16)  /* the longest reply: ECHO of a whole line */
/* Unsent replies per client: one that stops reading stalls here (we stop
 * reading its commands) instead of making the server buffer without end. */
#define OUT_BYTES (4 * REPLY_BYTES_MAX)
#define SHUTDOWN_WAIT_MS 5000                  /* how long SHUTDOWN waits for slow readers */
#define SCAN_FD_MAX 1023

_Static_assert(sizeof "VALUE " + VALUE_BYTES_MAX <= REPLY_BYTES_MAX, "a VALUE reply fits a reply");

/* ---- the store: open addressing, linear probing, at most 70% full ---- */

/* One key and its value in one allocation: the key's bytes, then the value's. */
struct slot {
    char *blob; /* NULL: empty */
    uint32_t hash;
    uint16_t key_len;
    uint16_t value_len;
};

static struct slot *slots;
static size_t slots_cap; /* a power of two */
static size_t keys_count;

static uint32_t hash_bytes(const char *p, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

/* The slot holding the key, or the empty slot where it would go. */
static size_t slot_find(const char *key, size_t key_len, uint32_t hash) {
    size_t mask = slots_cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const struct slot *s = &slots[i];
        if (s->blob == NULL) return i;
        if (s->hash == hash && s->key_len == key_len && memcmp(s->blob, key, key_len) == 0) return i;
    }
}

static bool store_grow(void) {
    size_t cap = slots_cap * 2, mask = cap - 1;
    struct slot *grown = calloc(cap, sizeof *grown);
    if (grown == NULL) return false;
    for (size_t i = 0; i < slots_cap; i++) {
        if (slots[i].blob == NULL) continue;
        size_t j = slots[i].hash & mask;
        while (grown[j].blob != NULL) j = (j + 1) & mask;
        grown[j] = slots[i];
    }
    free(slots);
    slots = grown;
    slots_cap = cap;
    return true;
}

/* Stores the value; returns the reply. A failed SET leaves the old value. */
static const char *store_set(const char *key, size_t key_len, const char *value, size_t value_len) {
    uint32_t hash = hash_bytes(key, key_len);
    struct slot *s = &slots[slot_find(key, key_len, hash)];
    if (s->blob != NULL) {
        char *blob = realloc(s->blob, key_len + value_len);
        if (blob == NULL) return "ERR out of memory";
        memcpy(blob + key_len, value, value_len);
        s->blob = blob;
        s->value_len = (uint16_t)value_len;
        return "OK";
    }
    if (keys_count >= KEYS_MAX) return "ERR store full";
    if ((keys_count + 1) * 10 > slots_cap * 7) {
        if (!store_grow()) return "ERR out of memory";
        s = &slots[slot_find(key, key_len, hash)];
    }
    char *blob = malloc(key_len + value_len);
    if (blob == NULL) return "ERR out of memory";
    memcpy(blob, key, key_len);
    memcpy(blob + key_len, value, value_len);
    *s = (struct slot){ blob, hash, (uint16_t)key_len, (uint16_t)value_len };
    keys_count++;
    return "OK";
}

static bool store_del(const char *key, size_t key_len) {
    size_t mask = slots_cap - 1;
    size_t hole = slot_find(key, key_len, hash_bytes(key, key_len));
    if (slots[hole].blob == NULL) return false;
    free(slots[hole].blob);
    /* Backward-shift deletion (no tombstones): move later entries of the probe
     * run into the hole, except those whose home lies cyclically in
     * (hole, j], so that no lookup stops early at the hole. */
    for (size_t j = (hole + 1) & mask; slots[j].blob != NULL; j = (j + 1) & mask) {
        size_t home = slots[j].hash & mask;
        bool stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
        if (!stays) {
            slots[hole] = slots[j];
            hole = j;
        }
    }
    slots[hole].blob = NULL;
    keys_count--;
    return true;
}

/* ---- connections ---- */

struct conn {
    int fd; /* -1: free */
    unsigned long id;
    bool draining;              /* reads nothing more; closes once out is sent */
    size_t in_len;              /* bytes received, not yet answered */
    size_t out_start, out_end;  /* unsent replies: out[out_start..out_end) */
    char in[IN_BYTES];
    char out[OUT_BYTES];
};

static struct conn conns[CONNS_MAX];
static size_t conns_open;
static int listen_fd = -1;
static bool quiet;
static bool shutting_down;
static int64_t shutdown_deadline_ms;
static unsigned long conns_total, commands_total;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t out_pending(const struct conn *c) {
    return c->out_end - c->out_start;
}

/* Room left for replies; moves the unsent bytes to the front when the tail is short. */
static size_t out_room(struct conn *c) {
    if (OUT_BYTES - c->out_end < REPLY_BYTES_MAX && c->out_start > 0) {
        memmove(c->out, c->out + c->out_start, out_pending(c));
        c->out_end -= c->out_start;
        c->out_start = 0;
    }
    return OUT_BYTES - c->out_end;
}

/* Whether to read more: not once closing, nor while replies are backed up. */
static bool wants_input(struct conn *c) {
    return !c->draining && out_room(c) >= REPLY_BYTES_MAX;
}

/* Appends head, tail and "\n"; the caller checked that REPLY_BYTES_MAX fits. */
static void reply(struct conn *c, const char *head, const char *tail, size_t tail_len) {
    size_t head_len = strlen(head);
    assert(head_len + tail_len + 1 <= REPLY_BYTES_MAX && c->out_end + REPLY_BYTES_MAX <= OUT_BYTES);
    memcpy(c->out + c->out_end, head, head_len);
    memcpy(c->out + c->out_end + head_len, tail, tail_len);
    c->out_end += head_len + tail_len;
    c->out[c->out_end++] = '\n';
}

static void say(struct conn *c, const char *text) {
    reply(c, text, "", 0);
}

/* "graceful": end our side first, so the client reads every reply and then a clean end of stream. */
static void conn_close(struct conn *c, bool graceful) {
    if (graceful) (void)shutdown(c->fd, SHUT_WR); /* the client may be gone already: nothing to do then */
    (void)close(c->fd);
    c->fd = -1;
    conns_open--;
    if (!quiet) {
        printf("kvserver: connection %lu closed\n", c->id);
        fflush(stdout);
    }
}

static void conn_fail(struct conn *c, const char *what, int err) {
    fprintf(stderr, "kvserver: connection %lu: %s: %s\n", c->id, what, strerror(err));
    conn_close(c, false);
}

static void begin_shutdown(void) {
    shutting_down = true;
    shutdown_deadline_ms = now_ms() + SHUTDOWN_WAIT_MS;
    (void)close(listen_fd); /* new clients are refused rather than left waiting */
    listen_fd = -1;
    for (size_t i = 0; i < CONNS_MAX; i++) conns[i].draining = true;
}

static bool word_is(const char *word, size_t len, const char *name) {
    return len == strlen(name) && memcmp(word, name, len) == 0;
}

/* A key argument: non-empty, no spaces; replies and returns false if not. */
static bool check_key(struct conn *c, const char *key, size_t len, const char *usage) {
    if (key == NULL || len == 0 || memchr(key, ' ', len) != NULL) {
        say(c, usage);
        return false;
    }
    if (len > KEY_BYTES_MAX) {
        say(c, "ERR key too long");
        return false;
    }
    return true;
}

/* Answers one command; `line` has no "\n" or "\r\n". */
static void handle_line(struct conn *c, const char *line, size_t len) {
    commands_total++;
    const char *space = memchr(line, ' ', len);
    size_t word_len = space != NULL ? (size_t)(space - line) : len;
    const char *arg = space != NULL ? space + 1 : NULL; /* NULL: no argument at all */
    size_t arg_len = space != NULL ? len - word_len - 1 : 0;

    if (word_is(line, word_len, "ECHO")) {
        reply(c, "", arg != NULL ? arg : "", arg_len);
    } else if (word_is(line, word_len, "SET")) {
        const char *sep = arg != NULL ? memchr(arg, ' ', arg_len) : NULL;
        size_t key_len = sep != NULL ? (size_t)(sep - arg) : 0;
        if (!check_key(c, arg, key_len, "ERR usage: SET key value")) return;
        size_t value_len = arg_len - key_len - 1;
        if (value_len > VALUE_BYTES_MAX) say(c, "ERR value too long");
        else say(c, store_set(arg, key_len, sep + 1, value_len));
    } else if (word_is(line, word_len, "GET")) {
        if (!check_key(c, arg, arg_len, "ERR usage: GET key")) return;
        const struct slot *s = &slots[slot_find(arg, arg_len, hash_bytes(arg, arg_len))];
        if (s->blob == NULL) say(c, "NOTFOUND");
        else reply(c, "VALUE ", s->blob + s->key_len, s->value_len);
    } else if (word_is(line, word_len, "DEL")) {
        if (!check_key(c, arg, arg_len, "ERR usage: DEL key")) return;
        say(c, store_del(arg, arg_len) ? "DELETED" : "NOTFOUND");
    } else if (word_is(line, word_len, "COUNT")) {
        char text[32];
        snprintf(text, sizeof text, "COUNT %zu", keys_count);
        say(c, arg != NULL ? "ERR usage: COUNT" : text);
    } else if (word_is(line, word_len, "QUIT")) {
        say(c, arg != NULL ? "ERR usage: QUIT" : "BYE");
        if (arg == NULL) c->draining = true;
    } else if (word_is(line, word_len, "SHUTDOWN")) {
        say(c, arg != NULL ? "ERR usage: SHUTDOWN" : "BYE");
        if (arg == NULL) begin_shutdown();
    } else {
        say(c, "ERR unknown command");
    }
}

/* Answers every whole line received, while there is room for the replies. */
static void conn_process(struct conn *c) {
    size_t pos = 0;
    while (!c->draining && out_room(c) >= REPLY_BYTES_MAX) {
        char *line = c->in + pos;
        size_t avail = c->in_len - pos;
        char *nl = memchr(line, '\n', avail);
        if (nl == NULL) {
            if (avail == IN_BYTES) { /* a full buffer and still no end of line */
                say(c, "ERR line too long");
                c->draining = true;
            }
            break;
        }
        size_t len = (size_t)(nl - line);
        pos += len + 1;
        if (len > 0 && line[len - 1] == '\r') len--;
        if (len > LINE_BYTES_MAX) { /* fits the buffer only because it lacks the "\r" */
            say(c, "ERR line too long");
            c->draining = true;
            break;
        }
        handle_line(c, line, len);
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
}

enum io { IO_IDLE, IO_PROGRESS, IO_CLOSED };

/* One send of the unsent replies; send may take only part of them. */
static enum io conn_flush(struct conn *c) {
    ssize_t n = send(c->fd, c->out + c->out_start, out_pending(c), 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return IO_IDLE;
        conn_fail(c, "send failed", errno);
        return IO_CLOSED;
    }
    c->out_start += (size_t)n;
    if (c->out_start == c->out_end) c->out_start = c->out_end = 0;
    if (n == 0) return IO_IDLE;
    conn_process(c); /* there is room again: answer lines held back for lack of it */
    return IO_PROGRESS;
}

/* One recv into the input buffer, then the answers to the lines it completed. */
static enum io conn_read(struct conn *c) {
    /* conn_process leaves no room only when it also stops reading (draining). */
    assert(c->in_len < IN_BYTES);
    ssize_t n = recv(c->fd, c->in + c->in_len, IN_BYTES - c->in_len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return IO_IDLE;
        conn_fail(c, "recv failed", errno);
        return IO_CLOSED;
    }
    if (n == 0) {
        c->draining = true; /* the client is done: send what it is owed, then close */
        return IO_PROGRESS;
    }
    c->in_len += (size_t)n;
    conn_process(c);
    return IO_PROGRESS;
}

/* Acts on what poll() reported for one connection. */
static void conn_event(struct conn *c, short events, short revents) {
    if (revents & POLLNVAL) {
        fprintf(stderr, "kvserver: connection %lu: poll says fd %d is not open\n", c->id, c->fd);
        conn_close(c, false);
        return;
    }
    enum io out = IO_IDLE, in = IO_IDLE;
    /* POLLERR/POLLHUP: the send or recv says what happened. */
    if ((events & POLLOUT) && (revents & (POLLOUT | POLLERR | POLLHUP)) && out_pending(c) > 0) {
        out = conn_flush(c);
        if (out == IO_CLOSED) return;
    }
    if ((events & POLLIN) && (revents & (POLLIN | POLLERR | POLLHUP)) && wants_input(c)) {
        in = conn_read(c);
        if (in == IO_CLOSED) return;
    }
    /* An error without readiness that send and recv did not report: drop the
     * connection rather than poll it again and again. */
    if ((revents & (POLLERR | POLLHUP)) && !(revents & (POLLIN | POLLOUT)) && out != IO_PROGRESS && in != IO_PROGRESS) {
        fprintf(stderr, "kvserver: connection %lu: poll reports %s\n", c->id, (revents & POLLERR) ? "an error" : "a hangup");
        conn_close(c, false);
    }
}

static void accept_one(void) {
    __wasi_fd_t fd;
    /* NONBLOCK: recv and send answer EAGAIN instead of waiting, so no client holds up the rest. */
    __wasi_errno_t err = __wasi_sock_accept((__wasi_fd_t)listen_fd, __WASI_FDFLAGS_NONBLOCK, &fd);
    if (err == EAGAIN || err == EINTR || err == ECONNABORTED) return;
    if (err != 0) {
        fprintf(stderr, "kvserver: accept on fd %d failed: %s\n", listen_fd, strerror(err));
        exit(3);
    }
    assert(conns_open < CONNS_MAX);
    struct conn *c = conns;
    while (c->fd >= 0) c++;
    c->fd = (int)fd;
    c->id = ++conns_total;
    c->draining = false;
    c->in_len = c->out_start = c->out_end = 0;
    conns_open++;
    if (!quiet) {
        printf("kvserver: connection %lu open\n", c->id);
        fflush(stdout);
    }
}

static bool is_stream_socket(int fd) {
    __wasi_fdstat_t st;
    return __wasi_fd_fdstat_get((__wasi_fd_t)fd, &st) == 0 && st.fs_filetype == __WASI_FILETYPE_SOCKET_STREAM;
}

static int find_listener(void) {
    const char *list = getenv("FERRY_LISTEN_FDS");
    if (list == NULL) {
        for (int fd = 3; fd <= SCAN_FD_MAX; fd++)
            if (is_stream_socket(fd)) return fd;
        fprintf(stderr, "kvserver: no listening socket (run it with ferry run --listen HOST:PORT)\n");
        exit(2);
    }
    char *end;
    errno = 0;
    long fd = strtol(list, &end, 10);
    if (end == list || (*end != ',' && *end != '\0') || errno != 0 || fd < 0 || fd > INT_MAX) {
        fprintf(stderr, "kvserver: FERRY_LISTEN_FDS=\"%s\" does not start with an fd number\n", list);
        exit(2);
    }
    if (!is_stream_socket((int)fd)) {
        fprintf(stderr, "kvserver: FERRY_LISTEN_FDS names fd %ld, which is not a stream socket\n", fd);
        exit(2);
    }
    return (int)fd;
}

int main(int argc, char **argv) {
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "--quiet") != 0)) {
        fprintf(stderr, "usage: kvserver [--quiet]\n");
        return 2;
    }
    quiet = argc == 2;
    listen_fd = find_listener();
    slots_cap = 1024;
    slots = calloc(slots_cap, sizeof *slots);
    if (slots == NULL) {
        fprintf(stderr, "kvserver: out of memory\n");
        return 3;
    }
    for (size_t i = 0; i < CONNS_MAX; i++) conns[i].fd = -1;

    struct pollfd fds[CONNS_MAX + 1];
    struct conn *owner[CONNS_MAX + 1]; /* NULL: the listener */
    for (;;) {
        for (size_t i = 0; i < CONNS_MAX; i++) {
            struct conn *c = &conns[i];
            if (c->fd >= 0 && c->draining && out_pending(c) == 0) conn_close(c, true);
        }
        if (shutting_down && conns_open == 0) break;

        nfds_t nfds = 0;
        if (listen_fd >= 0 && conns_open < CONNS_MAX) {
            fds[nfds] = (struct pollfd){ .fd = listen_fd, .events = POLLIN };
            owner[nfds++] = NULL;
        }
        for (size_t i = 0; i < CONNS_MAX; i++) {
            struct conn *c = &conns[i];
            if (c->fd < 0) continue;
            short events = (short)((wants_input(c) ? POLLIN : 0) | (out_pending(c) > 0 ? POLLOUT : 0));
            /* wasi-libc's poll() rejects an fd with no events (ENOSYS); a
             * connection wanting neither was closed just above. */
            assert(events != 0);
            fds[nfds] = (struct pollfd){ .fd = c->fd, .events = events };
            owner[nfds++] = c;
        }
        assert(nfds > 0);

        int timeout_ms = -1;
        if (shutting_down) {
            int64_t left_ms = shutdown_deadline_ms - now_ms();
            if (left_ms <= 0) {
                for (size_t i = 0; i < CONNS_MAX; i++) {
                    struct conn *c = &conns[i];
                    if (c->fd < 0) continue;
                    fprintf(stderr, "kvserver: connection %lu: %zu bytes unsent at shutdown\n", c->id, out_pending(c));
                    conn_close(c, false);
                }
                break;
            }
            timeout_ms = (int)left_ms;
        }
        if (poll(fds, nfds, timeout_ms) < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "kvserver: poll failed: %s\n", strerror(errno));
            return 3;
        }
        for (nfds_t i = 0; i < nfds; i++) {
            short revents = fds[i].revents;
            if (revents == 0) continue;
            if (owner[i] != NULL) {
                if (owner[i]->fd >= 0) conn_event(owner[i], fds[i].events, revents);
                continue;
            }
            if (revents & POLLIN) {
                accept_one();
            } else {
                fprintf(stderr, "kvserver: listening socket fd %d: poll reports %s\n", listen_fd,
                        (revents & POLLNVAL) ? "it is not open" : "an error");
                return 3;
            }
        }
    }
    printf("kvserver: served %lu connections, %lu commands\n", conns_total, commands_total);
    return 0;
}

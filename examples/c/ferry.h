/*
 * ferry.h - the guest API beyond WASI (docs/links.md): a process's pid,
 * messages to other processes by pid, and moving itself to another node.
 *
 * Messages are delivered exactly once and in the order each sender sent
 * them, wherever the sender and the receiver run or move. A blocked send or
 * receive is a safe point: a waiting process can be migrated.
 *
 * Every call returns 0 or a WASI errno (as <errno.h> numbers them under
 * wasi-libc): ENOSYS outside a cluster (`ferry exec`), EINVAL, EMSGSIZE
 * (a message is at most FERRY_MESSAGE_MAX bytes; a receive buffer too small
 * for the next message leaves it queued), ETIMEDOUT, EAGAIN, ENOENT (no such
 * node), EIO (the move failed; the process goes on where it was).
 */
#ifndef FERRY_H
#define FERRY_H

#include <stdint.h>
#include <string.h>

#define FERRY_MESSAGE_MAX 65536u
#define FERRY_PID_MAX 255u

#define FERRY_IMPORT(name) __attribute__((import_module("ferry"), import_name(name)))

/* Writes the pid (not NUL-terminated) into buf, up to cap bytes; returns its length. */
FERRY_IMPORT("pid") uint32_t ferry_pid_raw(char *buf, uint32_t cap);
FERRY_IMPORT("send") int32_t ferry_send_raw(const char *to, uint32_t to_len, const void *data, uint32_t len);
FERRY_IMPORT("recv")
int32_t ferry_recv_raw(char *from, uint32_t from_cap, uint32_t *from_len, void *data, uint32_t cap, uint32_t *len, int64_t timeout_ms);
FERRY_IMPORT("migrate") int32_t ferry_migrate_raw(const char *node, uint32_t len);

/* The process's pid as a C string (buf of FERRY_PID_MAX + 1 bytes); "" outside a cluster. */
static inline const char *ferry_pid(char *buf) {
    uint32_t n = ferry_pid_raw(buf, FERRY_PID_MAX);
    buf[n < FERRY_PID_MAX ? n : FERRY_PID_MAX] = 0;
    return buf;
}

/* Sends len bytes to process `to`. Blocks while too many of this process's messages are undelivered. */
static inline int ferry_send(const char *to, const void *data, uint32_t len) {
    return ferry_send_raw(to, (uint32_t)strlen(to), data, len);
}

/*
 * Receives the next message: its sender's pid into from (FERRY_PID_MAX + 1
 * bytes, NUL-terminated), its bytes into data (cap bytes), its length into
 * *len. timeout_ms < 0 waits for ever, 0 does not wait.
 */
static inline int ferry_recv(char *from, void *data, uint32_t cap, uint32_t *len, int64_t timeout_ms) {
    uint32_t from_len = 0;
    int rc = ferry_recv_raw(from, FERRY_PID_MAX, &from_len, data, cap, len, timeout_ms);
    from[rc == 0 && from_len <= FERRY_PID_MAX ? from_len : 0] = 0;
    return rc;
}

/* Moves this process to node `node`; returns 0 there, or an errno here if it could not go. */
static inline int ferry_migrate(const char *node) {
    return ferry_migrate_raw(node, (uint32_t)strlen(node));
}

#endif

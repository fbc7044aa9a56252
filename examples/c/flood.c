/*
 * flood.c - writes a long byte stream to one TCP client with blocking write(),
 * for testing that a server blocked on a client that does not read can still
 * be migrated, and that the client gets every byte exactly once, in order.
 *
 * Usage: flood BYTES
 *
 * Takes the first listening socket ($FERRY_LISTEN_FDS, as `ferry run --listen`
 * sets it), accepts one connection, writes BYTES bytes with write() in
 * 64 KiB pieces (byte i is (i * 7 + i / 65536) mod 251), shuts down its
 * write side, then reads what the client sends back until its end and
 * prints it (the client's verdict) with the byte count. Exit 0; 2 usage or
 * no socket; 3 I/O error.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wasi/api.h>

#define PIECE (64 * 1024)

static unsigned char pattern(uint64_t i) { return (unsigned char)((i * 7 + i / 65536) % 251); }

int main(int argc, char **argv) {
    char *end = NULL;
    unsigned long long total = argc == 2 ? strtoull(argv[1], &end, 10) : 0;
    if (argc != 2 || end == argv[1] || *end != '\0') {
        fprintf(stderr, "usage: flood BYTES\n");
        return 2;
    }
    const char *fds = getenv("FERRY_LISTEN_FDS");
    if (fds == NULL || *fds == '\0') {
        fprintf(stderr, "flood: no listening socket (run it with ferry run --listen HOST:PORT)\n");
        return 2;
    }
    int listener = atoi(fds);
    __wasi_fd_t conn;
    if (__wasi_sock_accept((__wasi_fd_t)listener, 0, &conn) != 0) {
        fprintf(stderr, "flood: accept failed\n");
        return 3;
    }
    static unsigned char piece[PIECE];
    uint64_t sent = 0;
    while (sent < total) {
        size_t n = total - sent < PIECE ? (size_t)(total - sent) : PIECE;
        for (size_t k = 0; k < n; k++) piece[k] = pattern(sent + k);
        size_t done = 0;
        while (done < n) {
            ssize_t w = write((int)conn, piece + done, n - done);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                fprintf(stderr, "flood: write failed after %llu bytes: %s\n", (unsigned long long)(sent + done), strerror(errno));
                return 3;
            }
            done += (size_t)w;
        }
        sent += n;
    }
    shutdown((int)conn, SHUT_WR);
    char verdict[256];
    size_t got = 0;
    for (;;) {
        ssize_t r = read((int)conn, verdict + got, sizeof verdict - 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            fprintf(stderr, "flood: read failed: %s\n", strerror(errno));
            return 3;
        }
        if (r == 0 || got + (size_t)r >= sizeof verdict - 1) {
            got += r > 0 ? (size_t)r : 0;
            break;
        }
        got += (size_t)r;
    }
    verdict[got] = '\0';
    close((int)conn);
    printf("flood: wrote %llu bytes; client says: %s\n", (unsigned long long)sent, verdict);
    return 0;
}

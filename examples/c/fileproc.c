/*
 * fileproc.c - file processor example guest for Ferry.
 *
 * Usage: fileproc [--hold] INPUT OUTPUT [CHUNK_BYTES]
 *   --hold       once the input is read, wait for a message "release" before
 *                step 5, both files still open (hold.h: for tests that move
 *                it, so that it cannot end before their last move)
 *   INPUT        file to read, e.g. /data/in.bin (host dir preopened as /data)
 *   OUTPUT       file to create/truncate, e.g. /data/out.bin
 *   CHUNK_BYTES  read/write chunk size, 1..1048576 (default 4096)
 *
 * What it does, in order:
 *  1. opens INPUT, seeks to its end to learn the size, reads the last
 *     (up to) 16 bytes as a "trailer" and hashes them, seeks back to 0;
 *  2. creates OUTPUT and writes a 32-byte header placeholder;
 *  3. reads INPUT chunk by chunk, checking with lseek(fd, 0, SEEK_CUR) that
 *     the input offset is exactly where it should be (exit 4 if not), runs a
 *     rolling checksum over every byte (a few rounds of 64-bit mixing per
 *     byte, so 2 MiB take on the order of a second), XORs every byte with a
 *     keystream derived from the position and the checksum of the preceding
 *     bytes (reversible), and writes the chunk to OUTPUT straight away;
 *  4. prints a progress line every 128 KiB of input;
 *  5. seeks OUTPUT back to 0 and fills in the header:
 *       "FERRYFP1" | size (u64 LE) | checksum (u64 LE) | trailer hash (u64 LE)
 *     then checks with lseek(out, 0, SEEK_END) that OUTPUT is 32 + size bytes.
 * Output file: 32-byte header followed by the transformed input.
 * stdout: progress lines and the final checksum; stderr: one summary line.
 * Exit status 0, 2 on usage errors, 3 on I/O errors, 4 on offset mismatch.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "hold.h"

#define HEADER_BYTES 32
#define PROGRESS_BYTES (128u * 1024u)
#define MIX_ROUNDS 150 /* per-byte work factor */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void die(const char *what, const char *path) {
    fprintf(stderr, "fileproc: %s %s: %s\n", what, path, strerror(errno));
    exit(3);
}

static void put_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void write_all(int fd, const unsigned char *buf, size_t n, const char *path) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("write", path);
        }
        buf += w;
        n -= (size_t)w;
    }
}

/* Read up to n bytes; returns the count (short only at end of file). */
static size_t read_full(int fd, unsigned char *buf, size_t n, const char *path) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("read", path);
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return got;
}

static uint64_t sum; /* rolling checksum over plaintext, kept in a global */

/* Checksum and transform one chunk in place; pos is the input offset of buf[0]. */
static void process_chunk(unsigned char *buf, size_t n, uint64_t pos) {
    uint64_t s = sum;
    for (size_t i = 0; i < n; i++) {
        unsigned char in = buf[i];
        uint64_t ks = mix64(s + pos + i);
        buf[i] = in ^ (unsigned char)(ks >> 56);
        uint64_t x = s ^ ((uint64_t)in << ((i & 7) * 8));
        for (int r = 0; r < MIX_ROUNDS; r++) x = mix64(x + (uint64_t)r);
        s = x;
    }
    sum = s;
}

int main(int argc, char **argv) {
    hold_parse(&argc, &argv);
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: fileproc [--hold] INPUT OUTPUT [CHUNK_BYTES]\n");
        return 2;
    }
    const char *in_path = argv[1], *out_path = argv[2];
    size_t chunk = 4096;
    if (argc == 4) {
        char *end;
        unsigned long v = strtoul(argv[3], &end, 10);
        if (argv[3][0] == '\0' || *end != '\0' || v < 1 || v > 1048576) {
            fprintf(stderr, "fileproc: bad CHUNK_BYTES '%s' (1..1048576)\n", argv[3]);
            return 2;
        }
        chunk = v;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    int in = open(in_path, O_RDONLY);
    if (in < 0) die("open", in_path);

    /* Size via seek to end, then read the trailer, then seek back. */
    off_t size = lseek(in, 0, SEEK_END);
    if (size < 0) die("lseek", in_path);
    unsigned char trailer[16];
    size_t tlen = size < 16 ? (size_t)size : 16;
    if (lseek(in, -(off_t)tlen, SEEK_END) != size - (off_t)tlen) die("lseek", in_path);
    if (read_full(in, trailer, tlen, in_path) != tlen) {
        fprintf(stderr, "fileproc: short trailer read\n");
        return 3;
    }
    uint64_t trailer_hash = 0x5bd1e995u;
    for (size_t i = 0; i < tlen; i++) trailer_hash = mix64(trailer_hash ^ trailer[i]);
    if (lseek(in, 0, SEEK_SET) != 0) die("lseek", in_path);
    printf("fileproc: input %lld bytes, chunk %zu, trailer %016llx\n", (long long)size, chunk,
           (unsigned long long)trailer_hash);

    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) die("open", out_path);
    unsigned char header[HEADER_BYTES];
    memset(header, 0, sizeof header);
    memcpy(header, "FERRYFP0", 8); /* placeholder, rewritten at the end */
    write_all(out, header, sizeof header, out_path);

    unsigned char *buf = malloc(chunk);
    if (buf == NULL) {
        fprintf(stderr, "fileproc: out of memory\n");
        return 3;
    }
    sum = 0xcbf29ce484222325ULL;
    uint64_t pos = 0, chunks = 0, next_progress = PROGRESS_BYTES;
    for (;;) {
        off_t cur = lseek(in, 0, SEEK_CUR);
        if (cur != (off_t)pos) {
            fprintf(stderr, "fileproc: input offset %lld, expected %llu\n", (long long)cur,
                    (unsigned long long)pos);
            return 4;
        }
        size_t n = read_full(in, buf, chunk, in_path);
        if (n == 0) break;
        process_chunk(buf, n, pos);
        write_all(out, buf, n, out_path);
        pos += n;
        chunks++;
        if (pos >= next_progress) {
            printf("progress chunks=%llu bytes=%llu checksum=%016llx\n", (unsigned long long)chunks,
                   (unsigned long long)pos, (unsigned long long)sum);
            while (next_progress <= pos) next_progress += PROGRESS_BYTES;
        }
        if (n < chunk) break;
    }
    if ((off_t)pos != size) {
        fprintf(stderr, "fileproc: read %llu bytes, expected %lld\n", (unsigned long long)pos,
                (long long)size);
        return 3;
    }
    free(buf);
    hold_here();

    /* Patch the header in place, then confirm the output length. */
    memcpy(header, "FERRYFP1", 8);
    put_le64(header + 8, pos);
    put_le64(header + 16, sum);
    put_le64(header + 24, trailer_hash);
    if (lseek(out, 0, SEEK_SET) != 0) die("lseek", out_path);
    write_all(out, header, sizeof header, out_path);
    off_t out_size = lseek(out, 0, SEEK_END);
    if (out_size != (off_t)(pos + HEADER_BYTES)) {
        fprintf(stderr, "fileproc: output is %lld bytes, expected %llu\n", (long long)out_size,
                (unsigned long long)(pos + HEADER_BYTES));
        return 4;
    }
    if (close(out) != 0) die("close", out_path);
    close(in);

    printf("done bytes=%llu chunks=%llu checksum=%016llx\n", (unsigned long long)pos,
           (unsigned long long)chunks, (unsigned long long)sum);
    fprintf(stderr, "fileproc: summary bytes=%llu chunks=%llu checksum=%016llx trailer=%016llx\n",
            (unsigned long long)pos, (unsigned long long)chunks, (unsigned long long)sum,
            (unsigned long long)trailer_hash);
    return 0;
}

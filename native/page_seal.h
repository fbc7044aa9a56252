/*
 * Sealed records of the post-copy page channel (docs/cluster.md, "Sealed
 * records"): AES-256-GCM with OpenSSL's EVP API, from the OpenSSL that Node
 * itself carries (its symbols are exported by the node binary; nothing else
 * is linked). No I/O here: bytes in, bytes out.
 *
 * A record on the wire: u32 length (little-endian, bytes of plaintext, at
 * most SEAL_RECORD_BYTES_MAX), the ciphertext (as long as the plaintext),
 * the 16-byte tag. The nonce is the direction (u32 LE) and the record's
 * number on this connection (u64 LE, from 0); the 4 length bytes are the
 * additional data. Each connection has fresh keys, one per direction, so a
 * nonce is never used twice under one key.
 */
#ifndef FERRY_NATIVE_PAGE_SEAL_H
#define FERRY_NATIVE_PAGE_SEAL_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_BYTES 32u
#define SEAL_HEAD_BYTES 4u
#define SEAL_TAG_BYTES 16u
#define SEAL_NONCE_BYTES 12u
/* Plaintext bytes of one record at most: a PAGES frame of 16 chunks (1 MiB + 16) and room for small frames beside it. */
#define SEAL_RECORD_BYTES_MAX (1048576u + 4096u)
/* Direction constants, the nonce's first 4 bytes. */
#define SEAL_TO_DESTINATION 1u
#define SEAL_TO_SOURCE 2u

/* One direction of one connection: the key (held by the context), the direction, and the next record's number. */
typedef struct {
  EVP_CIPHER_CTX *ctx;
  uint32_t direction;
  uint64_t seq;
  int encrypt;
} sealer_t;

/* Sets up a direction with `key` (the caller wipes its copy); 0, or -1 when OpenSSL refused. */
int sealer_init(sealer_t *s, const uint8_t key[SEAL_KEY_BYTES], uint32_t direction, int encrypt);
void sealer_free(sealer_t *s);

/* A piece of a record's plaintext. */
typedef struct {
  const uint8_t *data;
  uint32_t len;
} seal_part_t;

/*
 * Seals the `count` parts, in order, as one record at `record` (which must
 * hold SEAL_HEAD_BYTES, their sum and SEAL_TAG_BYTES; a part may lie inside
 * it, in place, but no part may overlap another part's output): the head,
 * the ciphertext and the tag. 0, or -1 (nothing counted; the record
 * number is spent only by a record that was sealed).
 */
int seal_record_parts(sealer_t *s, uint8_t *record, const seal_part_t *parts, size_t count);

/*
 * Seals `len` bytes at record + SEAL_HEAD_BYTES in place: writes the head
 * before them and the tag after (the caller leaves room for both). 0, or -1.
 */
int seal_record(sealer_t *s, uint8_t *record, uint32_t len);

/*
 * Opens a record in place: `head` is its 4 bytes as read, `body` its `len`
 * bytes of ciphertext followed by the tag. 0 when authentic (body now holds
 * the plaintext), -1 when not: the caller treats it as a broken link.
 */
int open_record(sealer_t *s, const uint8_t head[SEAL_HEAD_BYTES], uint8_t *body, uint32_t len);

/*
 * Opening a record in pieces (stop-copy's sealed BULK connection,
 * src/migration/_sealed_bulk.ts): begin with its 4 head bytes, decrypt its
 * ciphertext piece by piece to wherever each piece belongs (`out` may be
 * guest memory; it may equal `in`), then check the tag. Until open_finish
 * returns 0, nothing decrypted may be trusted. Each returns 0, or -1 (for
 * open_finish: not authentic; the record number is spent only by a record
 * that passed).
 */
int open_begin(sealer_t *s, const uint8_t head[SEAL_HEAD_BYTES]);
int open_update(sealer_t *s, const uint8_t *in, uint8_t *out, uint32_t len);
int open_finish(sealer_t *s, const uint8_t tag[SEAL_TAG_BYTES]);

/*
 * Authenticated cleartext records (stop-copy between nodes without TLS,
 * src/migration/_native_bulk.ts): the same record layout and nonce, but
 * every byte is GCM's additional data and nothing is encrypted, so the
 * plaintext travels as it is and the tag (GMAC) covers the 4 head bytes and
 * the plaintext. mac_record_parts: the tag of `head` and the parts (for a
 * sealer: encrypt = 1). mac_begin / mac_update / open_finish: the same in
 * pieces for an opener. Each returns 0, or -1 (the record number is spent
 * only by a record that was tagged, or that passed).
 */
int mac_record_parts(sealer_t *s, const uint8_t head[SEAL_HEAD_BYTES], const seal_part_t *parts, size_t count, uint8_t tag[SEAL_TAG_BYTES]);
int mac_begin(sealer_t *s, const uint8_t head[SEAL_HEAD_BYTES]);
int mac_update(sealer_t *s, const uint8_t *data, uint32_t len);

#endif

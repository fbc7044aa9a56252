/* Sealed records of the page channel: see page_seal.h and docs/cluster.md. */
#include "page_seal.h"

#include <endian.h>
#include <openssl/crypto.h>
#include <string.h>

static void nonce_of(const sealer_t *s, uint8_t out[SEAL_NONCE_BYTES]) {
  uint32_t d = htole32(s->direction);
  uint64_t n = htole64(s->seq);
  memcpy(out, &d, 4);
  memcpy(out + 4, &n, 8);
}

int sealer_init(sealer_t *s, const uint8_t key[SEAL_KEY_BYTES], uint32_t direction, int encrypt) {
  memset(s, 0, sizeof *s);
  s->direction = direction;
  s->encrypt = encrypt;
  s->ctx = EVP_CIPHER_CTX_new();
  if (s->ctx == NULL) return -1;
  /* The key is set once; each record sets only its nonce (the key schedule is not redone per record). */
  int ok = encrypt ? EVP_EncryptInit_ex(s->ctx, EVP_aes_256_gcm(), NULL, key, NULL) : EVP_DecryptInit_ex(s->ctx, EVP_aes_256_gcm(), NULL, key, NULL);
  if (ok != 1 || EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_BYTES, NULL) != 1) {
    sealer_free(s);
    return -1;
  }
  return 0;
}

void sealer_free(sealer_t *s) {
  if (s->ctx != NULL) EVP_CIPHER_CTX_free(s->ctx);
  s->ctx = NULL;
}

int seal_record_parts(sealer_t *s, uint8_t *record, const seal_part_t *parts, size_t count) {
  uint64_t len = 0;
  for (size_t i = 0; i < count; i += 1) len += parts[i].len;
  if (!s->encrypt || len == 0 || len > SEAL_RECORD_BYTES_MAX || s->seq == UINT64_MAX) return -1;
  uint8_t nonce[SEAL_NONCE_BYTES];
  nonce_of(s, nonce);
  uint32_t le = htole32((uint32_t)len);
  memcpy(record, &le, SEAL_HEAD_BYTES);
  uint8_t *out = record + SEAL_HEAD_BYTES;
  int n = 0;
  if (EVP_EncryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) != 1 || EVP_EncryptUpdate(s->ctx, NULL, &n, record, SEAL_HEAD_BYTES) != 1) return -1;
  for (size_t i = 0; i < count; i += 1) {
    if (parts[i].len == 0) continue;
    if (EVP_EncryptUpdate(s->ctx, out, &n, parts[i].data, (int)parts[i].len) != 1) return -1;
    out += n;
  }
  if (EVP_EncryptFinal_ex(s->ctx, out, &n) != 1 || EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_BYTES, record + SEAL_HEAD_BYTES + len) != 1) {
    return -1;
  }
  /* Advanced only once sealed: a record number is spent exactly when a record went out under it. */
  s->seq += 1;
  return 0;
}

int seal_record(sealer_t *s, uint8_t *record, uint32_t len) {
  seal_part_t part = {.data = record + SEAL_HEAD_BYTES, .len = len};
  return seal_record_parts(s, record, &part, 1);
}

int open_record(sealer_t *s, const uint8_t head[SEAL_HEAD_BYTES], uint8_t *body, uint32_t len) {
  if (s->encrypt || len == 0 || len > SEAL_RECORD_BYTES_MAX) return -1;
  uint8_t nonce[SEAL_NONCE_BYTES];
  nonce_of(s, nonce);
  int n = 0;
  if (EVP_DecryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) != 1 || EVP_DecryptUpdate(s->ctx, NULL, &n, head, SEAL_HEAD_BYTES) != 1 ||
      EVP_DecryptUpdate(s->ctx, body, &n, body, (int)len) != 1 ||
      EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_BYTES, body + len) != 1 || EVP_DecryptFinal_ex(s->ctx, body + len, &n) != 1) {
    /* Whatever was decrypted is not to be trusted: wipe it. */
    OPENSSL_cleanse(body, len);
    return -1;
  }
  s->seq += 1;
  return 0;
}

int open_begin(sealer_t *s, const uint8_t head[SEAL_HEAD_BYTES]) {
  if (s->encrypt || s->seq == UINT64_MAX) return -1;
  uint8_t nonce[SEAL_NONCE_BYTES];
  nonce_of(s, nonce);
  int n = 0;
  if (EVP_DecryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) != 1 || EVP_DecryptUpdate(s->ctx, NULL, &n, head, SEAL_HEAD_BYTES) != 1) return -1;
  return 0;
}

int open_update(sealer_t *s, const uint8_t *in, uint8_t *out, uint32_t len) {
  if (s->encrypt || len > SEAL_RECORD_BYTES_MAX) return -1;
  int n = 0;
  return len == 0 || EVP_DecryptUpdate(s->ctx, out, &n, in, (int)len) == 1 ? 0 : -1;
}

int open_finish(sealer_t *s, const uint8_t tag[SEAL_TAG_BYTES]) {
  if (s->encrypt) return -1;
  uint8_t last[16];
  int n = 0;
  /* The tag is only read by OpenSSL, whatever the cast says. */
  if (EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_BYTES, (void *)tag) != 1 || EVP_DecryptFinal_ex(s->ctx, last, &n) != 1) return -1;
  s->seq += 1;
  return 0;
}

int mac_record_parts(sealer_t *s, const uint8_t head[SEAL_HEAD_BYTES], const seal_part_t *parts, size_t count, uint8_t tag[SEAL_TAG_BYTES]) {
  uint64_t len = 0;
  for (size_t i = 0; i < count; i += 1) len += parts[i].len;
  if (!s->encrypt || len == 0 || len > SEAL_RECORD_BYTES_MAX || s->seq == UINT64_MAX) return -1;
  uint8_t nonce[SEAL_NONCE_BYTES];
  nonce_of(s, nonce);
  uint8_t last[16];
  int n = 0;
  if (EVP_EncryptInit_ex(s->ctx, NULL, NULL, NULL, nonce) != 1 || EVP_EncryptUpdate(s->ctx, NULL, &n, head, SEAL_HEAD_BYTES) != 1) return -1;
  for (size_t i = 0; i < count; i += 1) {
    if (parts[i].len != 0 && EVP_EncryptUpdate(s->ctx, NULL, &n, parts[i].data, (int)parts[i].len) != 1) return -1;
  }
  if (EVP_EncryptFinal_ex(s->ctx, last, &n) != 1 || EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_BYTES, tag) != 1) return -1;
  s->seq += 1;
  return 0;
}

int mac_begin(sealer_t *s, const uint8_t head[SEAL_HEAD_BYTES]) {
  return open_begin(s, head);
}

int mac_update(sealer_t *s, const uint8_t *data, uint32_t len) {
  if (s->encrypt || len > SEAL_RECORD_BYTES_MAX) return -1;
  int n = 0;
  /* No output: the bytes are additional data, authenticated and left as they are. */
  return len == 0 || EVP_DecryptUpdate(s->ctx, NULL, &n, data, (int)len) == 1 ? 0 : -1;
}

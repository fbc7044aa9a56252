/*
 * The source's sealer of post-copy page records, for JavaScript
 * (docs/cluster.md, "Sealed records"; src/memory/native_seal.ts). The
 * destination's threads seal and open in C already (uffd_postcopy.c); the
 * source's page server runs on the node's main thread and seals each frame
 * here, reading the pages straight from guest memory (a SharedArrayBuffer)
 * and writing the record into a buffer the caller reuses: no allocation and
 * no copy beyond the encryption itself.
 *
 *   sealerCreate(key: 32 bytes, direction: 1 | 2): handle
 *   sealerSeal(handle, head, body | null, out): bytes of the record in `out`
 *   sealerFree(handle): the key schedule is wiped now, not at collection
 */
#include <node_api.h>

#include "common.h"
#include "page_seal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

typedef struct {
  sealer_t s;
  int live;
} js_sealer_t;

static void sealer_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  js_sealer_t *j = data;
  if (j->live) sealer_free(&j->s);
  free(j);
}

static js_sealer_t *sealer_of(napi_env env, napi_value value) {
  js_sealer_t *j = NULL;
  if (napi_get_value_external(env, value, (void **)&j) != napi_ok || j == NULL || !j->live) return NULL;
  return j;
}

/* A sealer (encrypt) or an opener (not): the handle of sealerCreate and openerCreate, whose usage `usage` names. */
static napi_value create_handle(napi_env env, napi_callback_info info, int encrypt, const char *usage) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *key = NULL;
  size_t key_bytes = 0;
  uint32_t direction = 0;
  if (argc < 2 || !view_of(env, argv[0], &key, &key_bytes) || key_bytes != SEAL_KEY_BYTES || napi_get_value_uint32(env, argv[1], &direction) != napi_ok ||
      (direction != SEAL_TO_DESTINATION && direction != SEAL_TO_SOURCE)) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", usage);
    return NULL;
  }
  js_sealer_t *j = calloc(1, sizeof *j);
  if (j == NULL || sealer_init(&j->s, key, direction, encrypt) != 0) {
    free(j);
    napi_throw_error(env, "ERR_SEAL", "cannot set up a page-record sealer or opener (out of memory, or OpenSSL refused the key)");
    return NULL;
  }
  j->live = 1;
  napi_value handle;
  if (napi_create_external(env, j, sealer_finalize, NULL, &handle) != napi_ok) {
    sealer_finalize(env, j, NULL);
    napi_throw_error(env, "ERR_SEAL", "cannot make a sealer or opener handle");
    return NULL;
  }
  return handle;
}

static napi_value sealer_create(napi_env env, napi_callback_info info) {
  return create_handle(env, info, 1, "sealerCreate(key: 32 bytes, direction: 1 | 2)");
}

static napi_value sealer_seal(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  js_sealer_t *j = argc >= 4 ? sealer_of(env, argv[0]) : NULL;
  seal_part_t parts[2] = {{0}};
  void *data = NULL;
  size_t length = 0;
  size_t count = 0;
  bool ok = j != NULL && view_of(env, argv[1], &data, &length);
  if (ok) parts[count++] = (seal_part_t){.data = data, .len = (uint32_t)length};
  napi_valuetype body_type = napi_undefined;
  if (ok) napi_typeof(env, argv[2], &body_type);
  if (ok && body_type != napi_null && body_type != napi_undefined) {
    ok = view_of(env, argv[2], &data, &length) && length <= SEAL_RECORD_BYTES_MAX;
    if (ok) parts[count++] = (seal_part_t){.data = data, .len = (uint32_t)length};
  }
  void *out = NULL;
  size_t out_bytes = 0;
  if (ok) ok = view_of(env, argv[3], &out, &out_bytes);
  uint64_t len = 0;
  for (size_t i = 0; i < count; i += 1) len += parts[i].len;
  if (!ok || len == 0 || len > SEAL_RECORD_BYTES_MAX) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "sealerSeal(live handle, head, body | null, out): 1 to 1052672 bytes of plaintext");
    return NULL;
  }
  uint64_t record_bytes = SEAL_HEAD_BYTES + len + SEAL_TAG_BYTES;
  /* The output may not overlap the plaintext: it is written while the plaintext is still being read. */
  uint8_t *o = out;
  for (size_t i = 0; i < count; i += 1) {
    if (o < parts[i].data + parts[i].len && parts[i].data < o + record_bytes) ok = false;
  }
  if (!ok || out_bytes < record_bytes) {
    napi_throw_range_error(env, "ERR_SEAL_ARGS", "sealerSeal: `out` must hold the record (plaintext + 20 bytes) and not overlap the plaintext");
    return NULL;
  }
  if (seal_record_parts(&j->s, out, parts, count) != 0) {
    napi_throw_error(env, "ERR_SEAL", "OpenSSL could not seal a page record");
    return NULL;
  }
  napi_value result;
  napi_create_uint32(env, (uint32_t)record_bytes, &result);
  return result;
}

/*
 * sealerSend(handle, fd, parts: Uint8Array[] (1 to 6), wait_ms): seals the
 * parts, in order, as one record and writes all of it to socket `fd`
 * (non-blocking: waits in poll() for room, at most wait_ms in all). 0 when
 * written; else a positive errno (EAGAIN when the wait ran out), after which
 * the connection's stream may hold part of the record and is given up. A
 * link lane's worker (src/runtime/_lane_writer.ts): one call per message,
 * no JavaScript between the message's bytes and the socket.
 */
static napi_value sealer_send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  js_sealer_t *j = argc >= 4 ? sealer_of(env, argv[0]) : NULL;
  int32_t fd = -1;
  uint32_t count = 0;
  int32_t wait_ms = 0;
  bool is_array = false;
  bool ok = j != NULL && j->s.encrypt && napi_get_value_int32(env, argv[1], &fd) == napi_ok && fd >= 0 && napi_is_array(env, argv[2], &is_array) == napi_ok && is_array &&
            napi_get_array_length(env, argv[2], &count) == napi_ok && count >= 1 && count <= 6 && napi_get_value_int32(env, argv[3], &wait_ms) == napi_ok && wait_ms >= 0;
  seal_part_t parts[6] = {{0}};
  uint64_t len = 0;
  for (uint32_t i = 0; ok && i < count; i += 1) {
    napi_value part;
    void *data = NULL;
    size_t bytes = 0;
    ok = napi_get_element(env, argv[2], i, &part) == napi_ok && view_of(env, part, &data, &bytes);
    if (ok) {
      parts[i] = (seal_part_t){.data = data, .len = (uint32_t)bytes};
      len += bytes;
    }
  }
  if (!ok || len == 0 || len > SEAL_RECORD_BYTES_MAX) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "sealerSend(live sealer, fd, parts: 1 to 6 views, wait_ms): 1 to 1052672 bytes of plaintext");
    return NULL;
  }
  size_t record_bytes = SEAL_HEAD_BYTES + (size_t)len + SEAL_TAG_BYTES;
  uint8_t small[4096];
  uint8_t *record = record_bytes <= sizeof small ? small : malloc(record_bytes);
  if (record == NULL) {
    napi_throw_error(env, "ERR_SEAL", "out of memory for a record");
    return NULL;
  }
  if (seal_record_parts(&j->s, record, parts, count) != 0) {
    if (record != small) free(record);
    napi_throw_error(env, "ERR_SEAL", "OpenSSL could not seal a record");
    return NULL;
  }
  int err = 0;
  size_t at = 0;
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (at < record_bytes) {
    ssize_t n = send(fd, record + at, record_bytes - at, MSG_NOSIGNAL);
    if (n > 0) {
      at += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      int64_t spent_ms = (int64_t)(now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
      if (spent_ms >= wait_ms) {
        err = EAGAIN;
        break;
      }
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      poll(&p, 1, (int)(wait_ms - spent_ms));
      continue;
    }
    err = n < 0 ? errno : EPIPE;
    break;
  }
  if (record != small) free(record);
  napi_value result;
  napi_create_int32(env, err, &result);
  return result;
}

static napi_value sealer_release(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  js_sealer_t *j = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&j) != napi_ok || j == NULL) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "sealerFree(handle)");
    return NULL;
  }
  if (j->live) sealer_free(&j->s);
  j->live = 0;
  return NULL;
}

/*
 * Openers of sealed records in pieces, for stop-copy's sealed BULK
 * connection (src/migration/_sealed_bulk.ts): the destination decrypts each
 * piece of a record straight into the standby's memory, then checks the tag.
 *
 *   openerCreate(key: 32 bytes, direction: 1 | 2): handle
 *   openerBegin(handle, head: 4 bytes)
 *   openerUpdate(handle, input, output): decrypts input into output (as long; may be the same bytes)
 *   openerFinish(handle, tag: 16 bytes): true when the record is authentic
 *   openerFree(handle)
 */
static napi_value opener_create(napi_env env, napi_callback_info info) {
  return create_handle(env, info, 0, "openerCreate(key: 32 bytes, direction: 1 | 2)");
}

static napi_value opener_begin(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  js_sealer_t *j = argc >= 2 ? sealer_of(env, argv[0]) : NULL;
  void *head = NULL;
  size_t head_bytes = 0;
  if (j == NULL || j->s.encrypt || !view_of(env, argv[1], &head, &head_bytes) || head_bytes != SEAL_HEAD_BYTES) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "openerBegin(live opener, head: 4 bytes)");
    return NULL;
  }
  if (open_begin(&j->s, head) != 0) napi_throw_error(env, "ERR_SEAL", "OpenSSL could not begin opening a record");
  return NULL;
}

static napi_value opener_update(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  js_sealer_t *j = argc >= 3 ? sealer_of(env, argv[0]) : NULL;
  void *in = NULL, *out = NULL;
  size_t in_bytes = 0, out_bytes = 0;
  if (j == NULL || j->s.encrypt || !view_of(env, argv[1], &in, &in_bytes) || !view_of(env, argv[2], &out, &out_bytes) || in_bytes != out_bytes ||
      in_bytes > SEAL_RECORD_BYTES_MAX) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "openerUpdate(live opener, input, output): output as long as input, at most a record");
    return NULL;
  }
  /* Either the very same bytes (in place) or apart: a partial overlap would read what was just written. */
  const uint8_t *i = in;
  uint8_t *o = out;
  if (i != o && o < i + in_bytes && i < o + out_bytes) {
    napi_throw_range_error(env, "ERR_SEAL_ARGS", "openerUpdate: input and output overlap");
    return NULL;
  }
  if (open_update(&j->s, in, out, (uint32_t)in_bytes) != 0) napi_throw_error(env, "ERR_SEAL", "OpenSSL could not decrypt a record piece");
  return NULL;
}

static napi_value opener_finish(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  js_sealer_t *j = argc >= 2 ? sealer_of(env, argv[0]) : NULL;
  void *tag = NULL;
  size_t tag_bytes = 0;
  if (j == NULL || j->s.encrypt || !view_of(env, argv[1], &tag, &tag_bytes) || tag_bytes != SEAL_TAG_BYTES) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "openerFinish(live opener, tag: 16 bytes)");
    return NULL;
  }
  napi_value result;
  napi_get_boolean(env, open_finish(&j->s, tag) == 0, &result);
  return result;
}

/* Adds the sealer's functions to the addon's exports. */
void seal_exports(napi_env env, napi_value exports) {
  const struct {
    const char *name;
    napi_callback fn;
  } functions[] = {{"sealerCreate", sealer_create}, {"sealerSeal", sealer_seal}, {"sealerSend", sealer_send}, {"sealerFree", sealer_release},
                   {"openerCreate", opener_create}, {"openerBegin", opener_begin}, {"openerUpdate", opener_update}, {"openerFinish", opener_finish}, {"openerFree", sealer_release}};
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value f;
    napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &f);
    napi_set_named_property(env, exports, functions[i].name, f);
  }
}

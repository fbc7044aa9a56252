/*
 * Stop-copy's record stream in native threads (docs/cluster.md, "Sealed
 * BULK"; src/migration/_native_bulk.ts). The source's thread scans the
 * suspended guest's memory for non-zero pages and writes each run as one
 * record straight to the socket; the destination's thread reads the socket
 * itself and puts each run's pages straight into the standby's memory. No
 * JavaScript thread touches a page on either side, and the source's send
 * overlaps the destination's receive.
 *
 * Two kinds of record, one layout (u32 length, plaintext or ciphertext of
 * the run, 16-byte tag; page_seal.h):
 *   - sealed (nodes with TLS): AES-256-GCM;
 *   - authenticated (nodes without TLS): the run in the clear, its tag a
 *     GMAC over it.
 * Neither side hands guest memory to the kernel: the source copies (or
 * seals) each run into a buffer it reuses and writes that; the destination
 * receives into a buffer it reuses, as much as the socket holds a call
 * (heads and tags are taken from it too), and copies (or decrypts) from there into
 * guest memory. Guest memory is then touched only from user space, where
 * the guest itself touched it (the source) or will (the destination). A
 * page the kernel reads or writes through its user address for the first
 * time is what costs here: measured on a virtual machine with shadow page
 * tables (PVM), the kernel's first touch of a guest page cost about 8 us,
 * 120-160 ms of system time per 64 MiB on each side, while a copy in user
 * space costs about 0.2 ms per MiB. The kernel's own copies come from, and
 * go to, a buffer it has touched before.
 * Both sides take the SHA-256 of the tags in order: the signed image names
 * it, so a record left out, added or changed cannot pass.
 *
 *   bulkSend(fd, memory, key, sealed, done(err, result)): handle
 *   bulkSendStop(handle)
 *   bulkRecvOpen(fd, key, sealed, memory_bytes_max): handle
 *   bulkRecvRun(handle, memory, done(result))   (again after a "grow")
 *   bulkRecvStop(handle)
 *   bulkRecvClose(handle)
 *
 * Each takes its own duplicate of the socket: the caller destroys its
 * socket object at once. Counters (syscalls, bytes) come back in the
 * results, for the benchmark's per-MiB figures.
 */
#include <node_api.h>

#include "common.h"
#include "page_seal.h"

#include <endian.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* A run of the BULK stream: first page (u32), count (u32), the pages. */
#define RUN_HEAD_BYTES 8u
#define RUN_PAGES_MAX 256u
/* One write of the authenticated stream: whole records copied together up to about this many bytes (a cache's worth, written at once). */
#define SEND_BATCH_BYTES (1u * 1024u * 1024u)
/* The source's buffer: a batch, plus the record that crosses its end. */
#define SEND_BUFFER_BYTES (SEND_BATCH_BYTES + SEAL_HEAD_BYTES + SEAL_RECORD_BYTES_MAX + SEAL_TAG_BYTES)
/* Largest single recv: into the destination's buffer, from where pieces go to guest memory (or, a refused run's, nowhere). */
#define RECV_PIECE_BYTES (1u * 1024u * 1024u)

typedef struct {
  uint64_t records, pages, bytes, syscalls;
} counts_t;

static napi_value counts_object(napi_env env, const counts_t *c, const uint8_t *tags_sha, bool have_tags) {
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_double(env, (double)c->records, &v);
  napi_set_named_property(env, o, "records", v);
  napi_create_double(env, (double)c->pages, &v);
  napi_set_named_property(env, o, "pages", v);
  napi_create_double(env, (double)c->bytes, &v);
  napi_set_named_property(env, o, "bytes", v);
  napi_create_double(env, (double)c->syscalls, &v);
  napi_set_named_property(env, o, "syscalls", v);
  if (have_tags) {
    void *data;
    napi_create_buffer_copy(env, 32, tags_sha, &data, &v);
  } else {
    napi_get_null(env, &v);
  }
  napi_set_named_property(env, o, "tags_sha256", v);
  return o;
}

/* A dup of `fd`, blocking (the description is this thread's alone once the caller destroys its socket). */
static int own_fd(int fd) {
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return -1;
  int flags = fcntl(d, F_GETFL);
  if (flags < 0 || fcntl(d, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    close(d);
    return -1;
  }
  return d;
}

static bool page_zero(const uint8_t *p) {
  const uint64_t *w = (const uint64_t *)p;
  uint64_t acc = 0;
  for (size_t i = 0; i < PAGE_BYTES / 8; i += 8) acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
  return acc == 0;
}

/* ---------------- the source ---------------- */

typedef struct {
  napi_async_work work;
  napi_ref memory_ref;
  napi_ref done_ref;
  /* The handle itself, held while the thread runs: a handle dropped meanwhile is not freed under it. */
  napi_ref self_ref;
  const uint8_t *memory;
  size_t memory_bytes;
  int fd;
  bool sealed;
  sealer_t sealer;
  atomic_bool stop;
  /* Filled by the thread. */
  counts_t counts;
  uint8_t tags_sha[32];
  int err;
  const char *what;
  bool stopped;
  bool finished;
} sender_t;

/* Writes every byte of `iov` (advancing it); -1 with errno. */
static int write_all(sender_t *s, struct iovec *iov, int n) {
  while (n > 0) {
    if (atomic_load(&s->stop)) {
      errno = ECANCELED;
      return -1;
    }
    ssize_t w = writev(s->fd, iov, n > IOV_MAX ? IOV_MAX : n);
    s->counts.syscalls += 1;
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    s->counts.bytes += (uint64_t)w;
    size_t left = (size_t)w;
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov += 1;
      n -= 1;
    }
    if (n > 0) {
      iov->iov_base = (uint8_t *)iov->iov_base + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

static void send_execute(napi_env env, void *data) {
  (void)env;
  sender_t *s = data;
  EVP_MD_CTX *tags = EVP_MD_CTX_new();
  /* Sealed: one record at a time; authenticated: records copied together, a batch per write. */
  size_t buffer_bytes = s->sealed ? SEAL_HEAD_BYTES + SEAL_RECORD_BYTES_MAX + SEAL_TAG_BYTES : SEND_BUFFER_BYTES;
  uint8_t *buffer = malloc(buffer_bytes);
  if (tags == NULL || buffer == NULL || EVP_DigestInit_ex(tags, EVP_sha256(), NULL) != 1) {
    s->err = ENOMEM;
    s->what = "cannot set up the record stream";
    goto out;
  }
  size_t pages = s->memory_bytes / PAGE_BYTES;
  size_t filled = 0;
  for (size_t p = 0; p < pages;) {
    if (page_zero(s->memory + p * PAGE_BYTES)) {
      p += 1;
      continue;
    }
    size_t first = p;
    while (p < pages && p - first < RUN_PAGES_MAX && !page_zero(s->memory + p * PAGE_BYTES)) p += 1;
    uint32_t count = (uint32_t)(p - first);
    uint32_t len = RUN_HEAD_BYTES + count * PAGE_BYTES;
    uint8_t *record = buffer + filled;
    uint32_t le = htole32(len), f = htole32((uint32_t)first), c = htole32(count);
    uint8_t h[SEAL_HEAD_BYTES + RUN_HEAD_BYTES];
    memcpy(h, &le, 4);
    memcpy(h + 4, &f, 4);
    memcpy(h + 8, &c, 4);
    const uint8_t *run = s->memory + first * PAGE_BYTES;
    if (s->sealed) {
      seal_part_t parts[2] = {{.data = h + 4, .len = RUN_HEAD_BYTES}, {.data = run, .len = count * PAGE_BYTES}};
      if (seal_record_parts(&s->sealer, record, parts, 2) != 0) {
        s->err = EPROTO;
        s->what = "OpenSSL could not seal a record";
        goto out;
      }
    } else {
      /* Copied first, then tagged where it lies now (in cache): the tag covers exactly the bytes that go out. */
      memcpy(record, h, sizeof h);
      memcpy(record + sizeof h, run, (size_t)count * PAGE_BYTES);
      seal_part_t parts[1] = {{.data = record + SEAL_HEAD_BYTES, .len = len}};
      if (mac_record_parts(&s->sealer, record, parts, 1, record + SEAL_HEAD_BYTES + len) != 0) {
        s->err = EPROTO;
        s->what = "OpenSSL could not tag a record";
        goto out;
      }
    }
    EVP_DigestUpdate(tags, record + SEAL_HEAD_BYTES + len, SEAL_TAG_BYTES);
    filled += SEAL_HEAD_BYTES + len + SEAL_TAG_BYTES;
    if (s->sealed || filled >= SEND_BATCH_BYTES) {
      struct iovec one = {.iov_base = buffer, .iov_len = filled};
      if (write_all(s, &one, 1) != 0) goto fail_write;
      filled = 0;
    }
    s->counts.records += 1;
    s->counts.pages += count;
    if (atomic_load(&s->stop)) {
      s->stopped = true;
      goto out;
    }
  }
  if (filled > 0) {
    struct iovec one = {.iov_base = buffer, .iov_len = filled};
    if (write_all(s, &one, 1) != 0) goto fail_write;
  }
  /* The end of the stream: the destination takes a close between records as "no more". */
  shutdown(s->fd, SHUT_WR);
  s->counts.syscalls += 1;
  {
    unsigned int n = 0;
    EVP_DigestFinal_ex(tags, s->tags_sha, &n);
  }
  s->finished = true;
  goto out;
fail_write:
  if (errno == ECANCELED) {
    s->stopped = true;
  } else {
    s->err = errno;
    s->what = "the record connection broke";
  }
out:
  if (buffer != NULL) {
    OPENSSL_cleanse(buffer, buffer_bytes);
    free(buffer);
  }
  if (tags != NULL) EVP_MD_CTX_free(tags);
  sealer_free(&s->sealer);
  /* The socket is closed on the node's thread (send_complete), the one bulkSendStop runs on: never a number reused under it. */
}

static void send_complete(napi_env env, napi_status status, void *data) {
  sender_t *s = data;
  napi_value done, undefined, args[2];
  napi_get_reference_value(env, s->done_ref, &done);
  napi_get_undefined(env, &undefined);
  if (status != napi_ok && s->err == 0 && !s->finished) {
    s->err = ECANCELED;
    s->what = "the record stream was not run";
  }
  if (s->err != 0) {
    char message[256];
    snprintf(message, sizeof message, "%s: %s", s->what, strerror(s->err));
    napi_value code, msg;
    napi_create_string_utf8(env, s->err == EPIPE || s->err == ECONNRESET ? "ERR_CONNECTION_CLOSED" : "ERR_BULK_SEND", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &args[0]);
    napi_get_null(env, &args[1]);
  } else {
    napi_get_null(env, &args[0]);
    args[1] = counts_object(env, &s->counts, s->tags_sha, s->finished && s->counts.records > 0);
    napi_value stopped;
    napi_get_boolean(env, s->stopped, &stopped);
    napi_set_named_property(env, args[1], "stopped", stopped);
  }
  close(s->fd);
  s->fd = -1;
  napi_delete_reference(env, s->memory_ref);
  napi_delete_reference(env, s->done_ref);
  napi_delete_reference(env, s->self_ref);
  napi_delete_async_work(env, s->work);
  s->work = NULL;
  napi_call_function(env, undefined, done, 2, args, NULL);
}

static void sender_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  /* Never while its thread runs: the work holds a reference to the handle until send_complete. */
  free(data);
}

static napi_value bulk_send(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  void *memory = NULL, *key = NULL;
  size_t memory_bytes = 0, key_bytes = 0;
  bool sealed = false;
  napi_valuetype done_type = napi_undefined;
  if (argc >= 5) napi_typeof(env, argv[4], &done_type);
  if (argc < 5 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 || !view_of(env, argv[1], &memory, &memory_bytes) ||
      !view_of(env, argv[2], &key, &key_bytes) || key_bytes != SEAL_KEY_BYTES || napi_get_value_bool(env, argv[3], &sealed) != napi_ok || done_type != napi_function) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "bulkSend(fd, memory, key: 32 bytes, sealed: boolean, done)");
    return NULL;
  }
  sender_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    napi_throw_error(env, "ERR_BULK_SEND", "out of memory");
    return NULL;
  }
  s->memory = memory;
  s->memory_bytes = memory_bytes - memory_bytes % PAGE_BYTES;
  s->sealed = sealed;
  atomic_init(&s->stop, false);
  if (sealer_init(&s->sealer, key, SEAL_TO_DESTINATION, 1) != 0) {
    free(s);
    napi_throw_error(env, "ERR_SEAL", "cannot set up a record sealer (OpenSSL refused the key)");
    return NULL;
  }
  s->fd = own_fd(fd);
  if (s->fd < 0) {
    sealer_free(&s->sealer);
    free(s);
    return fail_errno(env, "ERR_BULK_SEND", "cannot take over the record connection's socket");
  }
  napi_value name, handle;
  napi_create_string_utf8(env, "ferry:bulk-send", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[1], 1, &s->memory_ref);
  napi_create_reference(env, argv[4], 1, &s->done_ref);
  napi_create_async_work(env, NULL, name, send_execute, send_complete, s, &s->work);
  napi_create_external(env, s, sender_finalize, NULL, &handle);
  napi_create_reference(env, handle, 1, &s->self_ref);
  napi_queue_async_work(env, s->work);
  return handle;
}

static napi_value bulk_send_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  sender_t *s = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&s) != napi_ok || s == NULL) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "bulkSendStop(handle)");
    return NULL;
  }
  if (s->work == NULL) return NULL;
  atomic_store(&s->stop, true);
  /* A write the destination does not take any more returns at once. */
  if (s->fd >= 0) shutdown(s->fd, SHUT_RDWR);
  return NULL;
}

/* ---------------- the destination ---------------- */

enum stage { STAGE_HEAD, STAGE_RUN, STAGE_PAGES, STAGE_TAG };
enum outcome { OUT_END, OUT_GROW, OUT_ERROR, OUT_STOPPED };

typedef struct {
  napi_async_work work;
  napi_ref memory_ref;
  napi_ref done_ref;
  napi_ref self_ref;
  int fd;
  bool sealed;
  sealer_t opener;
  EVP_MD_CTX *tags;
  uint64_t memory_bytes_max;
  atomic_bool stop;
  /* Where the stream is; it survives a "grow", whose next run goes on from here. */
  enum stage stage;
  uint8_t small[SEAL_TAG_BYTES];
  uint32_t fill;
  uint8_t head[SEAL_HEAD_BYTES];
  uint8_t run[RUN_HEAD_BYTES];
  uint64_t at, left, next_page_min;
  uint32_t count;
  counts_t counts;
  /* The current run's memory. */
  uint8_t *memory;
  size_t memory_bytes;
  /* The outcome of the last run. */
  enum outcome outcome;
  uint64_t need_bytes;
  const char *code;
  char message[256];
  /* A run header that failed its check: its record is read on only to check its tag, which decides the error. */
  bool bad;
  const char *bad_code;
  char bad_message[256];
  /* Where everything is received first (RECV_PIECE_BYTES, as much as the socket holds a call): heads and tags are
     taken from here, pages go on to guest memory. Bytes [pos, have) are received and not yet taken; they survive a "grow". */
  uint8_t *buffer;
  size_t pos, have;
  uint8_t tags_sha[32];
  bool closed;
} receiver_t;

static void recv_fail(receiver_t *r, const char *code, const char *message) {
  r->outcome = OUT_ERROR;
  r->code = code;
  snprintf(r->message, sizeof r->message, "%s", message);
}

/* Not yet authenticated, so maybe not the source's: its pages go nowhere, and the tag decides which error it is. */
static void recv_bad(receiver_t *r, const char *code, const char *message) {
  r->bad = true;
  r->bad_code = code;
  snprintf(r->bad_message, sizeof r->bad_message, "%s", message);
}

/* Reads up to `len` bytes into `out`: > 0 bytes, 0 at the end, -1 with the outcome set. */
static ssize_t recv_some(receiver_t *r, uint8_t *out, size_t len) {
  for (;;) {
    if (atomic_load(&r->stop)) {
      r->outcome = OUT_STOPPED;
      return -1;
    }
    ssize_t n = recv(r->fd, out, len, 0);
    r->counts.syscalls += 1;
    if (n >= 0) {
      if (n == 0 && atomic_load(&r->stop)) {
        r->outcome = OUT_STOPPED;
        return -1;
      }
      r->counts.bytes += (uint64_t)n;
      return n;
    }
    if (errno == EINTR) continue;
    char m[200];
    snprintf(m, sizeof m, "the record connection broke: %s", strerror(errno));
    recv_fail(r, "ERR_CONNECTION_CLOSED", m);
    return -1;
  }
}

/* Bytes received and not yet taken, receiving more when there are none: > 0, 0 at the end, -1 with the outcome set. */
static ssize_t buffered(receiver_t *r) {
  if (r->pos < r->have) return (ssize_t)(r->have - r->pos);
  r->pos = 0;
  r->have = 0;
  ssize_t n = recv_some(r, r->buffer, RECV_PIECE_BYTES);
  if (n > 0) r->have = (size_t)n;
  return n;
}

/* Checks a record's length and its run's header, before a byte of its pages is read. false when it failed (recv_bad). */
static bool check_run(receiver_t *r) {
  uint32_t len, first, count;
  memcpy(&len, r->head, 4);
  memcpy(&first, r->run, 4);
  memcpy(&count, r->run + 4, 4);
  len = le32toh(len);
  first = le32toh(first);
  count = le32toh(count);
  char m[200];
  if (count < 1 || count > RUN_PAGES_MAX || len != RUN_HEAD_BYTES + count * PAGE_BYTES) {
    snprintf(m, sizeof m, "record %llu of %u bytes holds a run of %u pages (1 to %u, filling the record)", (unsigned long long)r->counts.records, len, count, RUN_PAGES_MAX);
    recv_bad(r, "ERR_MIGRATION_PROTOCOL", m);
    return false;
  }
  if (first < r->next_page_min) {
    snprintf(m, sizeof m, "record %llu: run at page %u after page %llu: runs must increase", (unsigned long long)r->counts.records, first, (unsigned long long)(r->next_page_min - 1));
    recv_bad(r, "ERR_MIGRATION_PROTOCOL", m);
    return false;
  }
  uint64_t end = ((uint64_t)first + count) * PAGE_BYTES;
  if (end > r->memory_bytes_max) {
    snprintf(m, sizeof m, "record %llu: run up to byte %llu is past the process's memory cap of %llu", (unsigned long long)r->counts.records, (unsigned long long)end,
             (unsigned long long)r->memory_bytes_max);
    recv_bad(r, "ERR_MIGRATION_PROTOCOL", m);
    return false;
  }
  r->count = count;
  r->at = (uint64_t)first * PAGE_BYTES;
  r->left = (uint64_t)count * PAGE_BYTES;
  r->next_page_min = (uint64_t)first + count;
  return true;
}

static void recv_execute(napi_env env, void *data) {
  (void)env;
  receiver_t *r = data;
  for (;;) {
    if (r->stage == STAGE_PAGES && !r->bad && r->at + r->left > r->memory_bytes) {
      r->outcome = OUT_GROW;
      r->need_bytes = r->at + r->left;
      return;
    }
    if (r->stage == STAGE_PAGES) {
      while (r->left > 0) {
        ssize_t n = buffered(r);
        if (n < 0) return;
        if (n == 0) {
          recv_fail(r, "ERR_CONNECTION_CLOSED", "the record connection ended inside a record");
          return;
        }
        size_t take = (uint64_t)n < r->left ? (size_t)n : (size_t)r->left;
        uint8_t *from = r->buffer + r->pos;
        /* A refused run's pieces go nowhere: they are read only so that its tag can be checked. */
        uint8_t *to = r->bad ? from : r->memory + r->at;
        int ok = r->sealed ? open_update(&r->opener, from, to, (uint32_t)take) : mac_update(&r->opener, from, (uint32_t)take);
        if (ok != 0) {
          recv_fail(r, "ERR_SEAL", "OpenSSL could not open a record piece");
          return;
        }
        if (!r->sealed && !r->bad) memcpy(to, from, take);
        r->pos += take;
        r->at += (uint64_t)take;
        r->left -= (uint64_t)take;
      }
      r->stage = STAGE_TAG;
      r->fill = 0;
      continue;
    }
    /* The head (4), the run header (8) or the tag (16): taken from the buffer into the handle. */
    uint32_t need = r->stage == STAGE_HEAD ? SEAL_HEAD_BYTES : r->stage == STAGE_RUN ? RUN_HEAD_BYTES : SEAL_TAG_BYTES;
    ssize_t n = buffered(r);
    if (n < 0) return;
    if (n > 0) {
      n = (size_t)n < need - r->fill ? n : (ssize_t)(need - r->fill);
      memcpy(r->small + r->fill, r->buffer + r->pos, (size_t)n);
      r->pos += (size_t)n;
    }
    if (n == 0) {
      if (r->stage == STAGE_HEAD && r->fill == 0) {
        r->outcome = OUT_END;
        unsigned int len = 0;
        EVP_DigestFinal_ex(r->tags, r->tags_sha, &len);
        return;
      }
      recv_fail(r, "ERR_CONNECTION_CLOSED", "the record connection ended inside a record");
      return;
    }
    r->fill += (uint32_t)n;
    if (r->fill < need) continue;
    r->fill = 0;
    if (r->stage == STAGE_HEAD) {
      memcpy(r->head, r->small, SEAL_HEAD_BYTES);
      uint32_t len;
      memcpy(&len, r->head, 4);
      len = le32toh(len);
      if (len < RUN_HEAD_BYTES + PAGE_BYTES || len > SEAL_RECORD_BYTES_MAX) {
        char m[160];
        snprintf(m, sizeof m, "record %llu says it holds %u bytes: not one run of whole pages of at most %u bytes", (unsigned long long)r->counts.records, len, SEAL_RECORD_BYTES_MAX);
        recv_fail(r, "ERR_PAGE_RECORD_LIMIT", m);
        return;
      }
      if ((r->sealed ? open_begin(&r->opener, r->head) : mac_begin(&r->opener, r->head)) != 0) {
        recv_fail(r, "ERR_SEAL", "OpenSSL could not begin a record");
        return;
      }
      r->stage = STAGE_RUN;
    } else if (r->stage == STAGE_RUN) {
      int ok = r->sealed ? open_update(&r->opener, r->small, r->run, RUN_HEAD_BYTES) : mac_update(&r->opener, r->small, RUN_HEAD_BYTES);
      if (!r->sealed) memcpy(r->run, r->small, RUN_HEAD_BYTES);
      if (ok != 0) {
        recv_fail(r, "ERR_SEAL", "OpenSSL could not open a record piece");
        return;
      }
      if (!check_run(r)) {
        uint32_t len;
        memcpy(&len, r->head, 4);
        r->left = le32toh(len) - RUN_HEAD_BYTES;
      }
      r->stage = STAGE_PAGES;
    } else {
      if (open_finish(&r->opener, r->small) != 0) {
        char m[200];
        snprintf(m, sizeof m, "record %llu is not authentic (changed, replayed, reordered, or under another key): the migration fails", (unsigned long long)r->counts.records);
        recv_fail(r, "ERR_PAGE_RECORD_AUTH", m);
        return;
      }
      /* Authentic, and still wrong: the source itself sent a bad run. */
      if (r->bad) {
        recv_fail(r, r->bad_code, r->bad_message);
        return;
      }
      EVP_DigestUpdate(r->tags, r->small, SEAL_TAG_BYTES);
      r->counts.records += 1;
      r->counts.pages += r->count;
      r->stage = STAGE_HEAD;
    }
  }
}

static void recv_complete(napi_env env, napi_status status, void *data) {
  receiver_t *r = data;
  if (status != napi_ok && r->outcome == OUT_END) recv_fail(r, "ERR_BULK_RECV", "the record stream was not run");
  napi_value done, undefined, result, v;
  napi_get_reference_value(env, r->done_ref, &done);
  napi_get_undefined(env, &undefined);
  result = counts_object(env, &r->counts, r->tags_sha, r->outcome == OUT_END && r->counts.records > 0);
  static const char *const kinds[] = {"end", "grow", "error", "stopped"};
  napi_create_string_utf8(env, kinds[r->outcome], NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "kind", v);
  napi_create_double(env, (double)r->need_bytes, &v);
  napi_set_named_property(env, result, "need_bytes", v);
  if (r->outcome == OUT_ERROR) {
    napi_create_string_utf8(env, r->code, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, result, "code", v);
    napi_create_string_utf8(env, r->message, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, result, "message", v);
  }
  napi_delete_reference(env, r->memory_ref);
  napi_delete_reference(env, r->done_ref);
  napi_delete_reference(env, r->self_ref);
  napi_delete_async_work(env, r->work);
  r->work = NULL;
  r->memory = NULL;
  napi_call_function(env, undefined, done, 1, &result, NULL);
}

static void receiver_release(receiver_t *r) {
  if (r->closed) return;
  r->closed = true;
  if (r->buffer != NULL) OPENSSL_cleanse(r->buffer, RECV_PIECE_BYTES);
  free(r->buffer);
  r->buffer = NULL;
  sealer_free(&r->opener);
  if (r->tags != NULL) EVP_MD_CTX_free(r->tags);
  r->tags = NULL;
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
}

static void receiver_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  receiver_t *r = data;
  receiver_release(r);
  free(r);
}

static receiver_t *receiver_of(napi_env env, napi_value value) {
  receiver_t *r = NULL;
  if (napi_get_value_external(env, value, (void **)&r) != napi_ok || r == NULL) return NULL;
  return r;
}

static napi_value bulk_recv_open(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  void *key = NULL;
  size_t key_bytes = 0;
  bool sealed = false;
  double max = 0;
  if (argc < 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 || !view_of(env, argv[1], &key, &key_bytes) || key_bytes != SEAL_KEY_BYTES ||
      napi_get_value_bool(env, argv[2], &sealed) != napi_ok || napi_get_value_double(env, argv[3], &max) != napi_ok || !(max >= 0)) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "bulkRecvOpen(fd, key: 32 bytes, sealed: boolean, memory_bytes_max)");
    return NULL;
  }
  receiver_t *r = calloc(1, sizeof *r);
  if (r == NULL) {
    napi_throw_error(env, "ERR_BULK_RECV", "out of memory");
    return NULL;
  }
  r->fd = -1;
  r->sealed = sealed;
  r->memory_bytes_max = (uint64_t)max;
  atomic_init(&r->stop, false);
  r->tags = EVP_MD_CTX_new();
  r->buffer = malloc(RECV_PIECE_BYTES);
  if (r->buffer == NULL || r->tags == NULL || EVP_DigestInit_ex(r->tags, EVP_sha256(), NULL) != 1 || sealer_init(&r->opener, key, SEAL_TO_DESTINATION, 0) != 0) {
    if (r->tags != NULL) EVP_MD_CTX_free(r->tags);
    free(r->buffer);
    free(r);
    napi_throw_error(env, "ERR_SEAL", "cannot set up a record opener");
    return NULL;
  }
  r->fd = own_fd(fd);
  if (r->fd < 0) {
    receiver_release(r);
    free(r);
    return fail_errno(env, "ERR_BULK_RECV", "cannot take over the record connection's socket");
  }
  napi_value handle;
  napi_create_external(env, r, receiver_finalize, NULL, &handle);
  return handle;
}

static napi_value bulk_recv_run(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  receiver_t *r = argc >= 3 ? receiver_of(env, argv[0]) : NULL;
  void *memory = NULL;
  size_t memory_bytes = 0;
  napi_valuetype done_type = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &done_type);
  if (r == NULL || r->closed || r->work != NULL || !view_of(env, argv[1], &memory, &memory_bytes) || done_type != napi_function) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "bulkRecvRun(open and idle receiver, memory, done)");
    return NULL;
  }
  r->memory = memory;
  r->memory_bytes = memory_bytes;
  r->outcome = OUT_END;
  r->need_bytes = 0;
  napi_value name;
  napi_create_string_utf8(env, "ferry:bulk-recv", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[1], 1, &r->memory_ref);
  napi_create_reference(env, argv[2], 1, &r->done_ref);
  /* The handle is held while the thread runs: dropped meanwhile, it is not freed under it. */
  napi_create_reference(env, argv[0], 1, &r->self_ref);
  napi_create_async_work(env, NULL, name, recv_execute, recv_complete, r, &r->work);
  napi_queue_async_work(env, r->work);
  return NULL;
}

static napi_value bulk_recv_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  receiver_t *r = argc >= 1 ? receiver_of(env, argv[0]) : NULL;
  if (r == NULL) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "bulkRecvStop(handle)");
    return NULL;
  }
  atomic_store(&r->stop, true);
  /* A thread waiting in recv returns at once, and sees the flag. */
  if (!r->closed && r->fd >= 0) shutdown(r->fd, SHUT_RDWR);
  return NULL;
}

static napi_value bulk_recv_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  receiver_t *r = argc >= 1 ? receiver_of(env, argv[0]) : NULL;
  if (r == NULL || r->work != NULL) {
    napi_throw_type_error(env, "ERR_SEAL_ARGS", "bulkRecvClose(idle receiver): stop it and wait for its run first");
    return NULL;
  }
  receiver_release(r);
  return NULL;
}

/* Adds the record stream's functions to the addon's exports. */
void bulk_exports(napi_env env, napi_value exports) {
  const struct {
    const char *name;
    napi_callback fn;
  } functions[] = {{"bulkSend", bulk_send}, {"bulkSendStop", bulk_send_stop}, {"bulkRecvOpen", bulk_recv_open},
                   {"bulkRecvRun", bulk_recv_run}, {"bulkRecvStop", bulk_recv_stop}, {"bulkRecvClose", bulk_recv_close}};
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value f;
    napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &f);
    napi_set_named_property(env, exports, functions[i].name, f);
  }
}

/*
 * Page placement measured alone (bench/pages.ts; issue 15: "placing pages
 * without the last copy"). Post-copy's destination receives a chunk into a
 * buffer (the socket's copy) and then places it with UFFDIO_COPY (a second
 * copy, into a page the kernel allocates). With a shared-memory backing the
 * second copy can go: the chunk is received straight into the memfd's page
 * cache through a second mapping, and UFFDIO_CONTINUE (a minor fault)
 * maps that page into the guest's view without copying.
 *
 * placeCompare(bytes) times, over `bytes` of fresh memory in 64 KiB chunks
 * (each chunk's bytes first written into the receive side, as recv would):
 *   copy      write into a reused buffer, then UFFDIO_COPY into an anonymous
 *             mapping registered in MISSING mode (what post-copy does);
 *   continue  write into the memfd through its second mapping, then
 *             UFFDIO_CONTINUE on the view registered in MINOR mode; once
 *             cold (each page of the memfd allocated by the write, a fault
 *             per 4 KiB), once warm (allocated before the clock starts, as
 *             a standby's memory is populated while the source still runs);
 *   memcpy    write into fresh anonymous memory, no userfaultfd (the floor).
 * Each is checked byte for byte through the view afterwards. Returns
 * {copy_ms, continue_ms, memcpy_ms}, or throws ERR_UFFD_UNAVAILABLE saying
 * which step this kernel refused.
 *
 * Not used by post-copy itself: a guest's memory is V8's private anonymous
 * mapping, and using CONTINUE for it means mapping a memfd over V8's
 * reservation (MAP_FIXED) before the standby runs.
 */
#define _GNU_SOURCE
#include <linux/userfaultfd.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "common.h"

#define CHUNK (64u * 1024u)

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A chunk's pattern: differs per chunk and per page, so a misplaced page is seen. */
static void fill(uint8_t *dst, uint64_t chunk) {
  for (uint32_t at = 0; at < CHUNK; at += 8) {
    uint64_t v = (chunk << 20) ^ at ^ 0x9e3779b97f4a7c15ull;
    memcpy(dst + at, &v, 8);
  }
}

static int check(const uint8_t *view, uint64_t bytes) {
  uint8_t *want = malloc(CHUNK);
  if (want == NULL) return -1;
  int ok = 0;
  for (uint64_t c = 0; c < bytes / CHUNK && ok == 0; c += 1) {
    fill(want, c);
    if (memcmp(want, view + c * CHUNK, CHUNK) != 0) ok = -1;
  }
  free(want);
  return ok;
}

static napi_value refuse(napi_env env, const char *what) { return fail_errno(env, "ERR_UFFD_UNAVAILABLE", what); }

static void set_ms(napi_env env, napi_value obj, const char *key, double ms) {
  napi_value v;
  napi_create_double(env, ms, &v);
  napi_set_named_property(env, obj, key, v);
}

static int uffd_for(uint64_t features, void *at, uint64_t bytes, uint64_t mode) {
  int fd = open_uffd();
  if (fd < 0) return -1;
  struct uffdio_api api = {.api = UFFD_API, .features = features};
  struct uffdio_register reg = {.range = {.start = (uintptr_t)at, .len = bytes}, .mode = mode};
  if (ioctl(fd, UFFDIO_API, &api) != 0 || ioctl(fd, UFFDIO_REGISTER, &reg) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* One continue run into `out` (`warm`: the memfd's pages allocated before the clock starts, as a standby's would be while the source runs). NULL after throwing. */
static napi_value place_continue(napi_env env, napi_value out, uint64_t bytes, uint64_t chunks, int warm) {
  double t0;
  int fd, ok;
  int mfd = memfd_create("ferry-place", MFD_CLOEXEC);
  if (mfd < 0) return refuse(env, "memfd_create");
  if (ftruncate(mfd, (off_t)bytes) != 0) {
    close(mfd);
    return refuse(env, "ftruncate(memfd)");
  }
  uint8_t *view = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  uint8_t *alias = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  close(mfd);
  if (view == MAP_FAILED || alias == MAP_FAILED) return refuse(env, "mmap(memfd)");
  if (warm && madvise(alias, bytes, MADV_POPULATE_WRITE) != 0) {
    munmap(view, bytes);
    munmap(alias, bytes);
    return refuse(env, "madvise(MADV_POPULATE_WRITE) on the memfd");
  }
  fd = uffd_for(UFFD_FEATURE_MINOR_SHMEM, view, bytes, UFFDIO_REGISTER_MODE_MINOR);
  if (fd < 0) {
    munmap(view, bytes);
    munmap(alias, bytes);
    return refuse(env, "userfaultfd minor mode on shared memory (UFFD_FEATURE_MINOR_SHMEM)");
  }
  t0 = now_ms();
  for (uint64_t c = 0; c < chunks; c += 1) {
    fill(alias + c * CHUNK, c);
    struct uffdio_continue ct = {.range = {.start = (uintptr_t)view + c * CHUNK, .len = CHUNK}, .mode = 0};
    if (ioctl(fd, UFFDIO_CONTINUE, &ct) != 0) {
      close(fd);
      munmap(view, bytes);
      munmap(alias, bytes);
      return refuse(env, "UFFDIO_CONTINUE");
    }
  }
  set_ms(env, out, warm ? "continue_warm_ms" : "continue_ms", now_ms() - t0);
  ok = check(view, bytes);
  close(fd);
  munmap(view, bytes);
  munmap(alias, bytes);
  if (ok != 0) {
    napi_throw_error(env, "ERR_UFFD", "UFFDIO_CONTINUE mapped the wrong bytes");
    return NULL;
  }
  return out;
}

napi_value place_compare(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  double arg = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_double(env, argv[0], &arg) != napi_ok || arg <= 0 || (uint64_t)arg % CHUNK != 0) {
    napi_throw_type_error(env, "ERR_UFFD_ARGS", "placeCompare(bytes: whole 64 KiB chunks)");
    return NULL;
  }
  uint64_t bytes = (uint64_t)arg, chunks = bytes / CHUNK;
  napi_value out;
  napi_create_object(env, &out);
  uint8_t *buf = NULL;
  if (posix_memalign((void **)&buf, PAGE_BYTES, CHUNK) != 0) return refuse(env, "posix_memalign");

  /* copy: a reused receive buffer, then UFFDIO_COPY. */
  uint8_t *anon = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  int fd = anon == MAP_FAILED ? -1 : uffd_for(0, anon, bytes, UFFDIO_REGISTER_MODE_MISSING);
  if (fd < 0) {
    free(buf);
    return refuse(env, "userfaultfd (missing mode)");
  }
  double t0 = now_ms();
  for (uint64_t c = 0; c < chunks; c += 1) {
    fill(buf, c);
    struct uffdio_copy cp = {.dst = (uintptr_t)anon + c * CHUNK, .src = (uintptr_t)buf, .len = CHUNK, .mode = 0};
    if (ioctl(fd, UFFDIO_COPY, &cp) != 0) {
      close(fd);
      munmap(anon, bytes);
      free(buf);
      return refuse(env, "UFFDIO_COPY");
    }
  }
  set_ms(env, out, "copy_ms", now_ms() - t0);
  int ok = check(anon, bytes);
  close(fd);
  munmap(anon, bytes);
  free(buf);
  if (ok != 0) {
    napi_throw_error(env, "ERR_UFFD", "UFFDIO_COPY placed the wrong bytes");
    return NULL;
  }

  /* memcpy: the floor, fresh anonymous memory. */
  anon = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (anon == MAP_FAILED) return refuse(env, "mmap");
  t0 = now_ms();
  for (uint64_t c = 0; c < chunks; c += 1) fill(anon + c * CHUNK, c);
  set_ms(env, out, "memcpy_ms", now_ms() - t0);
  munmap(anon, bytes);

  /* continue: the memfd's page cache written through a second mapping, then mapped into the view; cold, then with the page cache allocated in advance. */
  for (int warm = 0; warm <= 1; warm += 1) {
    if (place_continue(env, out, bytes, chunks, warm) == NULL) return NULL;
  }
  return out;
}

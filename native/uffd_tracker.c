/*
 * Kernel-assisted dirty-page tracking for Ferry's pre-copy migration
 * (DESIGN.md layer 4): userfaultfd in asynchronous write-protect mode
 * (UFFD_FEATURE_WP_ASYNC) arms a memory range; the kernel resolves each first
 * write itself and marks the page written; the PAGEMAP_SCAN ioctl reads the
 * written pages and re-arms them in one call. No thread serves faults, and
 * the guest pays about a microsecond on the first write to a page per round.
 *
 * Linux >= 6.7. The constants below are missing from older uapi headers
 * (Debian 12 ships 6.1's), so they are defined here from the kernel ABI.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <node_api.h>
#include <pthread.h>
#include "common.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#ifndef PAGEMAP_SCAN
struct page_region {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};
struct pm_scan_arg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WRITTEN (1 << 1)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Regions returned per PAGEMAP_SCAN call; the scan resumes from walk_end. */
#define SCAN_REGIONS_MAX 4096u

typedef struct {
  int uffd;
  int pagemap;
  uint8_t *base;
  uint64_t registered_bytes;
} tracker_t;

/*
 * Closing a tracker takes write-protection off every page it armed: the
 * kernel walks each page-table entry of the range and flushes the TLB,
 * 117-135 ms for 1 GiB here, all of it on the thread that closes (a node's,
 * after every pre-copy or hybrid move: every connection it relays and every
 * link it carries waited as long). So a close only hands the descriptors to
 * a thread of its own, which unregisters the range CLOSE_STEP_BYTES at a
 * time (the memory map's lock is let go between steps, so a thread of the
 * process that maps memory meanwhile waits for one step at most) and then
 * closes them. A tracker created meanwhile over any part of that range
 * waits for it first: the kernel lets one userfaultfd at a time register a
 * range.
 */
#define CLOSE_STEP_BYTES (16u << 20)

typedef struct close_job {
  int uffd;
  int pagemap;
  uint8_t *base;
  uint64_t bytes;
  struct close_job *next;
} close_job_t;

static pthread_mutex_t closing_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t closing_done = PTHREAD_COND_INITIALIZER;
static close_job_t *closing = NULL;

static void close_now(close_job_t *j) {
  for (uint64_t at = 0; at < j->bytes; at += CLOSE_STEP_BYTES) {
    uint64_t len = j->bytes - at < CLOSE_STEP_BYTES ? j->bytes - at : CLOSE_STEP_BYTES;
    struct uffdio_range r = {.start = (uintptr_t)(j->base + at), .len = len};
    /* A step the kernel refuses (the memory unmapped meanwhile) is left to the close, which unregisters what is left. */
    if (ioctl(j->uffd, UFFDIO_UNREGISTER, &r) != 0 && errno != EINTR) break;
  }
  close(j->uffd);
  if (j->pagemap >= 0) close(j->pagemap);
}

static void *close_thread(void *arg) {
  close_job_t *j = arg;
  close_now(j);
  pthread_mutex_lock(&closing_lock);
  for (close_job_t **p = &closing; *p != NULL; p = &(*p)->next) {
    if (*p == j) {
      *p = j->next;
      break;
    }
  }
  pthread_cond_broadcast(&closing_done);
  pthread_mutex_unlock(&closing_lock);
  free(j);
  return NULL;
}

/*
 * Threads of this library run after the call that started them returns (a
 * tracker's close here; post-copy's freeing of set-aside pages), and Node
 * unloads an addon when the last thread (a worker) that loaded it ends: so
 * the library, once loaded, stays loaded for the process's life.
 */
static pthread_once_t pinned = PTHREAD_ONCE_INIT;
static void pin_library(void) {
  Dl_info info;
  if (dladdr((void *)&close_thread, &info) != 0 && info.dli_fname != NULL) (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
}

/* Hands a tracker's descriptors to a closing thread (or, if none can start, closes them here); the tracker has none after. */
static void close_soon(tracker_t *t) {
  if (t->uffd < 0) {
    if (t->pagemap >= 0) close(t->pagemap);
    t->pagemap = -1;
    return;
  }
  close_job_t *j = malloc(sizeof *j);
  if (j != NULL) {
    *j = (close_job_t){.uffd = t->uffd, .pagemap = t->pagemap, .base = t->base, .bytes = t->registered_bytes, .next = NULL};
    t->uffd = -1;
    t->pagemap = -1;
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&closing_lock);
    j->next = closing;
    closing = j;
    int started = pthread_create(&thread, &attr, close_thread, j) == 0;
    if (!started) closing = j->next;
    pthread_mutex_unlock(&closing_lock);
    pthread_attr_destroy(&attr);
    if (started) return;
    close_now(j);
    free(j);
    return;
  }
  close(t->uffd);
  if (t->pagemap >= 0) close(t->pagemap);
  t->uffd = -1;
  t->pagemap = -1;
}

/* Waits until no close under way covers any of [base, base + bytes). */
void wait_for_closes(const uint8_t *base, uint64_t bytes) {
  pthread_mutex_lock(&closing_lock);
  for (;;) {
    int overlaps = 0;
    for (close_job_t *j = closing; j != NULL && !overlaps; j = j->next) overlaps = j->base < base + bytes && base < j->base + j->bytes;
    if (!overlaps) break;
    pthread_cond_wait(&closing_done, &closing_lock);
  }
  pthread_mutex_unlock(&closing_lock);
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  tracker_t *t = data;
  close_soon(t);
  free(t);
}

/* create(view: Uint8Array over the memory, registered_bytes): tracker. Arms every page. */
static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  size_t length = 0;
  if (argc < 2 || !view_of(env, argv[0], &data, &length)) {
    napi_throw_type_error(env, "ERR_TRACKER_ARGS", "create(view: Uint8Array, registered_bytes: number)");
    return NULL;
  }
  double registered;
  napi_get_value_double(env, argv[1], &registered);
  if (((uintptr_t)data % PAGE_BYTES) != 0 || registered < (double)length || (uint64_t)registered % PAGE_BYTES != 0) {
    napi_throw_range_error(env, "ERR_TRACKER_ARGS", "the view must start on a page and lie inside the registered range");
    return NULL;
  }
  tracker_t *t = calloc(1, sizeof *t);
  t->uffd = -1;
  t->pagemap = -1;
  t->base = data;
  t->registered_bytes = (uint64_t)registered;

  t->uffd = open_uffd();
  if (t->uffd < 0) {
    finalize(env, t, NULL);
    return fail_errno(env, "ERR_TRACKER_UNAVAILABLE", "userfaultfd");
  }
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};
  if (ioctl(t->uffd, UFFDIO_API, &api) != 0 || (api.features & UFFD_FEATURE_WP_ASYNC) == 0) {
    finalize(env, t, NULL);
    return fail_errno(env, "ERR_TRACKER_UNAVAILABLE", "userfaultfd without asynchronous write-protect (Linux >= 6.7 needed)");
  }
  /* The whole reservation: pages a later memory.grow makes accessible are covered too. A tracker of it closed a moment ago may still be letting it go. */
  wait_for_closes(t->base, t->registered_bytes);
  struct uffdio_register reg = {
      .range = {.start = (uintptr_t)t->base, .len = t->registered_bytes},
      .mode = UFFDIO_REGISTER_MODE_WP,
  };
  if (ioctl(t->uffd, UFFDIO_REGISTER, &reg) != 0) {
    finalize(env, t, NULL);
    return fail_errno(env, "ERR_TRACKER_UNAVAILABLE", "userfaultfd register");
  }
  struct uffdio_writeprotect wp = {
      .range = {.start = (uintptr_t)t->base, .len = length},
      .mode = UFFDIO_WRITEPROTECT_MODE_WP,
  };
  if (length > 0 && ioctl(t->uffd, UFFDIO_WRITEPROTECT, &wp) != 0) {
    finalize(env, t, NULL);
    return fail_errno(env, "ERR_TRACKER_UNAVAILABLE", "userfaultfd write-protect");
  }
  t->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (t->pagemap < 0) {
    finalize(env, t, NULL);
    return fail_errno(env, "ERR_TRACKER_UNAVAILABLE", "/proc/self/pagemap");
  }
  napi_value handle;
  napi_create_external(env, t, finalize, NULL, &handle);
  return handle;
}

/*
 * scan(tracker, size_bytes, rearm = true): Uint32Array of [first_page,
 * end_page) pairs, the pages written since the last scan (or since create),
 * re-armed. With rearm false they are only read, left written: the last look
 * of a migration (the process is stopped, the tracker closed next), where
 * write-protecting every page it wrote would be downtime spent on nothing.
 */
static napi_value scan(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  tracker_t *t = NULL;
  double size;
  if (argc < 2 || napi_get_value_external(env, argv[0], (void **)&t) != napi_ok || t == NULL || t->pagemap < 0) {
    napi_throw_type_error(env, "ERR_TRACKER_ARGS", "scan(tracker, size_bytes, rearm) on an open tracker");
    return NULL;
  }
  bool rearm = true;
  if (argc >= 3) {
    napi_valuetype type;
    napi_typeof(env, argv[2], &type);
    if (type == napi_boolean) napi_get_value_bool(env, argv[2], &rearm);
  }
  napi_get_value_double(env, argv[1], &size);
  uint64_t end = (uintptr_t)t->base + (uint64_t)size;
  if ((uint64_t)size > t->registered_bytes) {
    napi_throw_range_error(env, "ERR_TRACKER_ARGS", "memory grew past the registered range");
    return NULL;
  }
  struct page_region *regions = malloc(sizeof(struct page_region) * SCAN_REGIONS_MAX);
  uint32_t *pairs = NULL;
  size_t count = 0, capacity = 0;
  uint64_t start = (uintptr_t)t->base;
  while (start < end) {
    struct pm_scan_arg arg = {
        .size = sizeof arg,
        .flags = rearm ? PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC : PM_SCAN_CHECK_WPASYNC,
        .start = start,
        .end = end,
        .vec = (uintptr_t)regions,
        .vec_len = SCAN_REGIONS_MAX,
        .category_mask = PAGE_IS_WRITTEN,
        .return_mask = PAGE_IS_WRITTEN,
    };
    long n = ioctl(t->pagemap, PAGEMAP_SCAN, &arg);
    if (n < 0) {
      free(regions);
      free(pairs);
      return fail_errno(env, "ERR_TRACKER_SCAN", "PAGEMAP_SCAN");
    }
    for (long i = 0; i < n; i++) {
      if (count + 2 > capacity) {
        capacity = capacity ? capacity * 2 : 1024;
        pairs = realloc(pairs, capacity * sizeof *pairs);
      }
      pairs[count++] = (uint32_t)((regions[i].start - (uintptr_t)t->base) / PAGE_BYTES);
      pairs[count++] = (uint32_t)((regions[i].end - (uintptr_t)t->base) / PAGE_BYTES);
    }
    if (arg.walk_end <= start) break; /* no progress: never loop forever */
    start = arg.walk_end;
  }
  free(regions);
  napi_value array_buffer, out;
  void *dest;
  napi_create_arraybuffer(env, count * sizeof(uint32_t), &dest, &array_buffer);
  if (count > 0) memcpy(dest, pairs, count * sizeof(uint32_t));
  free(pairs);
  napi_create_typedarray(env, napi_uint32_array, count, array_buffer, 0, &out);
  return out;
}

/* close(tracker): unregisters and releases, on a thread of its own (close_soon). */
static napi_value close_tracker(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  tracker_t *t = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&t) != napi_ok || t == NULL) return NULL;
  close_soon(t);
  return NULL;
}

/*
 * Reads the arguments populate() and discard() take: a view, a byte count
 * within it, and (where `flag` is not NULL) an optional boolean. False, with
 * a TypeError thrown that shows `usage`, when they are not that.
 */
static bool view_and_bytes(napi_env env, napi_callback_info info, void **data, double *bytes, bool *flag, const char *usage) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  size_t length = 0;
  if (argc < 2 || !view_of(env, argv[0], data, &length) ||
      napi_get_value_double(env, argv[1], bytes) != napi_ok || *bytes < 0 || *bytes > (double)length ||
      (flag != NULL && argc >= 3 && napi_get_value_bool(env, argv[2], flag) != napi_ok)) {
    napi_throw_type_error(env, "ERR_TRACKER_ARGS", usage);
    return false;
  }
  return true;
}

/*
 * Bytes populate() asks the kernel for per call: one huge page. The kernel
 * holds the process's mmap lock for reading through a whole
 * MADV_POPULATE_WRITE, and every thread that maps or unmaps memory meanwhile
 * (V8 growing or shrinking a heap, a thread starting, malloc of a large
 * block) waits for it. In one call, 1 GiB took 3.1 s on a virtual machine
 * with shadow page tables, and the node's own thread stood still all that
 * time while a worker backed a standby's memory (a destination of every
 * strategy but post-copy, docs/cluster.md). One huge page at a time, a
 * thread that maps waits for one call at most: the lock lets a waiting
 * writer in before the next reader.
 */
#define POPULATE_CHUNK_BYTES (2u * 1024u * 1024u)

/*
 * populate(view, bytes, huge?): backs the first `bytes` of the view's memory
 * with pages now (MADV_POPULATE_WRITE, Linux >= 5.14), in bulk in the kernel
 * — far faster than touching each page from JavaScript — one
 * POPULATE_CHUNK_BYTES at a time. Contents are unchanged. With `huge`, the
 * range asks for transparent huge pages first (MADV_HUGEPAGE; a no-op where
 * THP is off), and the advice is taken back after (MADV_NOHUGEPAGE: pages
 * populated stay huge, nothing is collapsed later). Where the first write to
 * each small page traps to the hypervisor, 2 MiB pages make that trap one
 * per 2 MiB. Dirty tracking keeps its 4 KiB grain: a write-protected huge
 * page is split at its first write. Returns how many calls it made to the
 * kernel (a test checks that the lock is let go between huge pages).
 */
static napi_value populate(napi_env env, napi_callback_info info) {
  void *data = NULL;
  double bytes;
  bool huge = false;
  if (!view_and_bytes(env, info, &data, &bytes, &huge, "populate(view: Uint8Array, bytes: number <= view.length, huge?: boolean)")) return NULL;
  uintptr_t start = (uintptr_t)data & ~(uintptr_t)(PAGE_BYTES - 1);
  size_t len = ((uintptr_t)data + (size_t)bytes) - start;
  napi_value calls_made = NULL;
  if (len == 0) {
    napi_create_uint32(env, 0, &calls_made);
    return calls_made;
  }
  // Only advice: a kernel without THP (EINVAL) populates small pages as before.
  if (huge) (void)madvise((void *)start, len, MADV_HUGEPAGE);
  int rc = 0;
  uint32_t calls = 0;
  uintptr_t end = start + len;
  for (uintptr_t at = start; at < end && rc == 0;) {
    // Chunks end on huge page boundaries, so each covers whole huge pages where the range does.
    uintptr_t next = (at + POPULATE_CHUNK_BYTES) & ~(uintptr_t)(POPULATE_CHUNK_BYTES - 1);
    if (next > end) next = end;
    rc = madvise((void *)at, next - at, MADV_POPULATE_WRITE);
    calls += 1;
    at = next;
  }
  int saved = errno;
  if (huge) (void)madvise((void *)start, len, MADV_NOHUGEPAGE);
  if (rc != 0) {
    errno = saved;
    return fail_errno(env, "ERR_POPULATE", "madvise(MADV_POPULATE_WRITE)");
  }
  napi_create_uint32(env, calls, &calls_made);
  return calls_made;
}

/*
 * discard(view, bytes): gives the pages of the view's first `bytes` back to
 * the kernel now (MADV_DONTNEED: they read as zeros after, and a write backs
 * a fresh page). For a memory whose contents nobody needs any more (a
 * process that moved away): its pages stay mapped otherwise until V8
 * collects the last WebAssembly.Memory that holds them, on every isolate.
 * Freed pages are what the kernel hands out first, and on a virtual machine
 * pages the guest has used before cost far less to back than pages it never
 * touched (docs/cluster.md, "Where the time goes"). Only whole pages inside
 * the range are given back.
 */
static napi_value discard(napi_env env, napi_callback_info info) {
  void *data = NULL;
  double bytes;
  if (!view_and_bytes(env, info, &data, &bytes, NULL, "discard(view: Uint8Array, bytes: number <= view.length)")) return NULL;
  uintptr_t start = ((uintptr_t)data + PAGE_BYTES - 1) & ~(uintptr_t)(PAGE_BYTES - 1);
  uintptr_t end = ((uintptr_t)data + (size_t)bytes) & ~(uintptr_t)(PAGE_BYTES - 1);
  if (end <= start) return NULL;
  if (madvise((void *)start, end - start, MADV_DONTNEED) != 0) return fail_errno(env, "ERR_DISCARD", "madvise(MADV_DONTNEED)");
  return NULL;
}

/*
 * copyOut(src, dst): copies src's bytes to the start of dst (dst.length >=
 * src.length), choosing how it reads them. On a virtual CPU with shadow page
 * tables, the process's first access to a page mapped since it was last
 * touched traps to the hypervisor, 4 KiB at a time: every page post-copy
 * placed with UFFDIO_COPY, in a guest that has not read it since. Through
 * /proc/self/mem the kernel walks the page tables and copies through its
 * own mapping instead. Here: untouched pages 780 MB/s by memcpy against 5.3
 * GB/s through /proc/self/mem; touched pages the other way round, memcpy
 * about three times faster. So the first 64 KiB is copied by memcpy and
 * timed: slower than COPY_PROBE_NS, the rest goes through /proc/self/mem
 * (docs/cluster.md, "Page channel"). Where /proc/self/mem cannot be opened
 * or read, all by memcpy. `mode`: COPY_ALL (the default) copies everything
 * and returns true; COPY_KERNEL reads all of it through /proc/self/mem
 * (tests: the probe cannot be made slow on purpose); COPY_IF_SLOW stops after
 * the probe when it was fast and returns false (the caller reads src in
 * place), else copies the rest as above and returns true.
 */
enum { COPY_ALL = 0, COPY_KERNEL = 1, COPY_IF_SLOW = 2 };
#define COPY_PROBE_BYTES (64u * 1024u)
/* 64 KiB in 25 us is 2.6 GB/s: a copy of touched pages takes 4-8 us here, of untouched ones about 85. */
#define COPY_PROBE_NS 25000
static int self_mem = -2; /* -2: not opened yet; -1: cannot be */

static int64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int self_mem_fd(void) {
  int fd = __atomic_load_n(&self_mem, __ATOMIC_ACQUIRE);
  if (fd != -2) return fd;
  int opened = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
  int expected = -2;
  if (!__atomic_compare_exchange_n(&self_mem, &expected, opened < 0 ? -1 : opened, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) && opened >= 0) close(opened); /* another thread opened it first */
  return __atomic_load_n(&self_mem, __ATOMIC_ACQUIRE);
}

static napi_value copy_out(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *src_data = NULL, *dst_data = NULL;
  size_t len = 0, dst_len = 0;
  int32_t mode = COPY_ALL;
  if (argc < 2 || !view_of(env, argv[0], &src_data, &len) || !view_of(env, argv[1], &dst_data, &dst_len) || dst_len < len ||
      (argc >= 3 && (napi_get_value_int32(env, argv[2], &mode) != napi_ok || mode < COPY_ALL || mode > COPY_IF_SLOW))) {
    napi_throw_type_error(env, "ERR_COPY_ARGS", "copyOut(src: Uint8Array, dst: Uint8Array with dst.length >= src.length, mode?: 0 | 1 | 2)");
    return NULL;
  }
  const uint8_t *src = src_data;
  uint8_t *dst = dst_data;
  size_t done = 0;
  bool kernel = mode == COPY_KERNEL;
  if (!kernel) {
    done = len < COPY_PROBE_BYTES ? len : COPY_PROBE_BYTES;
    int64_t t0 = monotonic_ns();
    memcpy(dst, src, done);
    kernel = done < len && monotonic_ns() - t0 > COPY_PROBE_NS;
  }
  napi_value result;
  if (!kernel && mode == COPY_IF_SLOW && done < len) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  int fd = kernel ? self_mem_fd() : -1;
  while (fd >= 0 && done < len) {
    ssize_t n = pread(fd, dst + done, len - done, (off_t)((uintptr_t)src + done));
    if (n > 0) done += (size_t)n;
    else if (n < 0 && errno == EINTR) continue;
    else break; /* refused (a sandbox, a kernel without it): the rest by memcpy */
  }
  if (done < len) memcpy(dst + done, src + done, len - done);
  napi_get_boolean(env, true, &result);
  return result;
}

/*
 * peek(fd, max_bytes): the bytes waiting on a socket, left in place
 * (MSG_PEEK), at most max_bytes (64 at most). An empty Buffer: nothing yet;
 * null: the peer closed. A node's front tells TLS from post-copy page data by
 * the first bytes without reading them, so the TLS layer takes the socket
 * untouched (bytes read in JavaScript and put back make Node's TLS layer
 * read in small pieces from then on).
 */
static napi_value peek_socket(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, max;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &max) != napi_ok || fd < 0 || max < 1 || max > 64) {
    napi_throw_type_error(env, "ERR_PEEK_ARGS", "peek(fd, max_bytes 1..64)");
    return NULL;
  }
  uint8_t buf[64];
  ssize_t n;
  do n = recv(fd, buf, (size_t)max, MSG_PEEK | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  napi_value out;
  if (n == 0) {
    napi_get_null(env, &out);
    return out;
  }
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) return fail_errno(env, "ERR_PEEK", "recv(MSG_PEEK)");
    n = 0;
  }
  void *data;
  napi_create_buffer_copy(env, (size_t)n, buf, &data, &out);
  return out;
}

/*
 * dupFd(fd): a duplicate of socket `fd` (close-on-exec), sharing its open
 * description. A link lane (src/node/_link_lanes.ts) hands it to the
 * process's worker, which writes its records there: the node's own socket
 * may be closed by Node at any time (a reset), the duplicate only by the
 * node once the worker can no longer write to it.
 */
static napi_value dup_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_DUP_ARGS", "dupFd(fd)");
    return NULL;
  }
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return fail_errno(env, "ERR_DUP", "fcntl(F_DUPFD_CLOEXEC)");
  napi_value out;
  napi_create_int32(env, d, &out);
  return out;
}

napi_value postcopy_open(napi_env env, napi_callback_info info);
napi_value postcopy_drop(napi_env env, napi_callback_info info);
napi_value postcopy_resize(napi_env env, napi_callback_info info);
napi_value postcopy_settle(napi_env env, napi_callback_info info);
napi_value postcopy_write(napi_env env, napi_callback_info info);
napi_value place_compare(napi_env env, napi_callback_info info);
napi_value postcopy_attach(napi_env env, napi_callback_info info);
napi_value postcopy_fail(napi_env env, napi_callback_info info);
napi_value postcopy_stats(napi_env env, napi_callback_info info);
napi_value postcopy_close(napi_env env, napi_callback_info info);
napi_value set_times(napi_env env, napi_callback_info info);
void seal_exports(napi_env env, napi_value exports);
void bulk_exports(napi_env env, napi_value exports);

NAPI_MODULE_INIT() {
  pthread_once(&pinned, pin_library);
  const struct { const char *name; napi_callback fn; } functions[] = {
      {"populate", populate},           {"discard", discard},
      {"copyOut", copy_out},
      {"create", create},
      {"scan", scan},                   {"close", close_tracker},
      {"postcopyOpen", postcopy_open},  {"postcopyDrop", postcopy_drop},
      {"postcopyAttach", postcopy_attach}, {"postcopyFail", postcopy_fail},
      {"postcopyStats", postcopy_stats}, {"postcopyClose", postcopy_close},
      {"postcopyResize", postcopy_resize}, {"postcopySettle", postcopy_settle},
      {"postcopyWrite", postcopy_write},
      {"placeCompare", place_compare},
      {"peek", peek_socket},           {"setTimes", set_times},
      {"dupFd", dup_fd}};
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value f;
    napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &f);
    napi_set_named_property(env, exports, functions[i].name, f);
  }
  seal_exports(env, exports);
  bulk_exports(env, exports);
  return exports;
}

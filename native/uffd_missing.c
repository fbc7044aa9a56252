/*
 * Missing-page mode for post-copy migration (DESIGN.md, "A migration":
 * post-copy). The destination's memory is registered with userfaultfd in
 * MISSING mode and dropped; the guest runs at once, and each first touch of a
 * page blocks its thread until the page is copied in (UFFDIO_COPY), which
 * also wakes it. A native thread reads the fault events, so the faulting
 * thread (the guest's worker) is never the one that serves.
 *
 * This first step hands each fault to JavaScript (a thread-safe function);
 * the page comes from wherever the caller fetches it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <node_api.h>
#include "common.h"
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>


typedef struct {
  int uffd;
  int stop;
  uint8_t *base;
  uint64_t registered_bytes;
  pthread_t thread;
  int thread_started;
  napi_threadsafe_function on_fault;
} missing_t;

/* Runs on the JS thread: calls onFault(page_index). */
static void call_js(napi_env env, napi_value js_callback, void *context, void *data) {
  (void)context;
  uint32_t page = (uint32_t)(uintptr_t)data;
  if (env == NULL || js_callback == NULL) return;
  napi_value undefined, arg;
  napi_get_undefined(env, &undefined);
  napi_create_uint32(env, page, &arg);
  napi_call_function(env, undefined, js_callback, 1, &arg, NULL);
}

static void *reader(void *arg) {
  missing_t *m = arg;
  struct pollfd fds[2] = {{.fd = m->uffd, .events = POLLIN}, {.fd = m->stop, .events = POLLIN}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    struct uffd_msg msg;
    ssize_t n = read(m->uffd, &msg, sizeof msg);
    if (n != (ssize_t)sizeof msg) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      break;
    }
    if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
    uint64_t page = (msg.arg.pagefault.address - (uintptr_t)m->base) / PAGE_BYTES;
    napi_call_threadsafe_function(m->on_fault, (void *)(uintptr_t)page, napi_tsfn_blocking);
  }
  return NULL;
}

static void stop_and_free(missing_t *m) {
  if (m->thread_started) {
    uint64_t one = 1;
    if (write(m->stop, &one, sizeof one) < 0) { /* the thread also stops when the uffd closes */ }
    pthread_join(m->thread, NULL);
    m->thread_started = 0;
  }
  if (m->uffd >= 0) close(m->uffd);
  if (m->stop >= 0) close(m->stop);
  m->uffd = -1;
  m->stop = -1;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  missing_t *m = data;
  stop_and_free(m);
  free(m);
}

/* missingOpen(view, registered_bytes, onFault(page)): handle. Registers MISSING mode. */
napi_value missing_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  size_t length = 0;
  double registered;
  if (argc < 3 || !view_of(env, argv[0], &data, &length) ||
      napi_get_value_double(env, argv[1], &registered) != napi_ok || ((uintptr_t)data % PAGE_BYTES) != 0 ||
      (uint64_t)registered % PAGE_BYTES != 0) {
    napi_throw_type_error(env, "ERR_UFFD_ARGS", "missingOpen(view: page-aligned Uint8Array, registered_bytes, onFault)");
    return NULL;
  }
  missing_t *m = calloc(1, sizeof *m);
  m->uffd = -1;
  m->stop = -1;
  m->base = data;
  m->registered_bytes = (uint64_t)registered;
  m->uffd = open_uffd();
  if (m->uffd < 0) {
    finalize(env, m, NULL);
    return fail_errno(env, "ERR_UFFD_UNAVAILABLE", "userfaultfd");
  }
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  struct uffdio_register reg = {.range = {.start = (uintptr_t)m->base, .len = m->registered_bytes}, .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (ioctl(m->uffd, UFFDIO_API, &api) != 0 || ioctl(m->uffd, UFFDIO_REGISTER, &reg) != 0) {
    finalize(env, m, NULL);
    return fail_errno(env, "ERR_UFFD_UNAVAILABLE", "userfaultfd register (missing mode)");
  }
  m->stop = eventfd(0, EFD_CLOEXEC);
  napi_value name;
  napi_create_string_utf8(env, "ferry-uffd-faults", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &m->on_fault) != napi_ok) {
    finalize(env, m, NULL);
    napi_throw_error(env, "ERR_UFFD_UNAVAILABLE", "cannot create the fault callback");
    return NULL;
  }
  /* The reader thread must not keep the event loop alive by itself. */
  napi_unref_threadsafe_function(env, m->on_fault);
  if (pthread_create(&m->thread, NULL, reader, m) != 0) {
    napi_release_threadsafe_function(m->on_fault, napi_tsfn_abort);
    finalize(env, m, NULL);
    return fail_errno(env, "ERR_UFFD_UNAVAILABLE", "pthread_create");
  }
  m->thread_started = 1;
  napi_value handle;
  napi_create_external(env, m, finalize, NULL, &handle);
  return handle;
}

static missing_t *handle_of(napi_env env, napi_value value) {
  missing_t *m = NULL;
  if (napi_get_value_external(env, value, (void **)&m) != napi_ok || m == NULL || m->uffd < 0) return NULL;
  return m;
}

/* missingDrop(handle, bytes): makes the first `bytes` missing (MADV_DONTNEED). */
napi_value missing_drop(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  missing_t *m = argc >= 2 ? handle_of(env, argv[0]) : NULL;
  double bytes;
  if (m == NULL || napi_get_value_double(env, argv[1], &bytes) != napi_ok || (uint64_t)bytes > m->registered_bytes) {
    napi_throw_type_error(env, "ERR_UFFD_ARGS", "missingDrop(open handle, bytes within the registered range)");
    return NULL;
  }
  if (madvise(m->base, (size_t)bytes, MADV_DONTNEED) != 0) return fail_errno(env, "ERR_UFFD", "madvise(MADV_DONTNEED)");
  return NULL;
}

/*
 * missingCopy(handle, byte_offset, data): puts pages in place and wakes whoever
 * waits on them. Pages already present are left as they are. Returns how many
 * pages this call placed.
 */
napi_value missing_copy(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  missing_t *m = argc >= 3 ? handle_of(env, argv[0]) : NULL;
  double at;
  void *data = NULL;
  size_t length = 0;
  if (m == NULL || napi_get_value_double(env, argv[1], &at) != napi_ok || !view_of(env, argv[2], &data, &length) || (uint64_t)at % PAGE_BYTES != 0 ||
      length % PAGE_BYTES != 0 || (uint64_t)at + length > m->registered_bytes) {
    napi_throw_type_error(env, "ERR_UFFD_ARGS", "missingCopy(open handle, page-aligned offset, whole pages inside the range)");
    return NULL;
  }
  uint32_t placed = 0;
  for (size_t done = 0; done < length;) {
    struct uffdio_copy copy = {.dst = (uintptr_t)m->base + (uint64_t)at + done, .src = (uintptr_t)data + done, .len = length - done, .mode = 0};
    if (ioctl(m->uffd, UFFDIO_COPY, &copy) == 0) {
      placed += (uint32_t)((length - done) / PAGE_BYTES);
      break;
    }
    if (copy.copy > 0) {
      /* Partial: some pages went in before a present one stopped it. */
      placed += (uint32_t)(copy.copy / PAGE_BYTES);
      done += (size_t)copy.copy;
      continue;
    }
    if (errno == EEXIST) {
      /* This page is there already: wake anyone waiting on it and move on. */
      struct uffdio_range wake = {.start = copy.dst, .len = PAGE_BYTES};
      ioctl(m->uffd, UFFDIO_WAKE, &wake);
      done += PAGE_BYTES;
      continue;
    }
    if (errno == EAGAIN) continue;
    return fail_errno(env, "ERR_UFFD", "UFFDIO_COPY");
  }
  napi_value out;
  napi_create_uint32(env, placed, &out);
  return out;
}

/* missingClose(handle): stops the reader, unregisters. Call only once every page is in place. */
napi_value missing_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  missing_t *m = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&m) != napi_ok || m == NULL) return NULL;
  stop_and_free(m);
  if (m->on_fault != NULL) {
    napi_release_threadsafe_function(m->on_fault, napi_tsfn_release);
    m->on_fault = NULL;
  }
  return NULL;
}

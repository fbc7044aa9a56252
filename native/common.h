/* Helpers shared by the addon's C files: errors, typed-array views, opening a userfaultfd. */
#ifndef FERRY_NATIVE_COMMON_H
#define FERRY_NATIVE_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE_BYTES 4096u

/* Throws an Error with `code` saying what failed and errno's text; returns NULL for the caller to return. */
static inline napi_value fail_errno(napi_env env, const char *code, const char *what) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, strerror(errno));
  napi_throw_error(env, code, message);
  return NULL;
}

/* The bytes behind a typed array (SharedArrayBuffer-backed ones included). */
static inline bool view_of(napi_env env, napi_value value, void **data, size_t *length) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  return napi_get_typedarray_info(env, value, &type, length, data, &buffer, &offset) == napi_ok;
}

/* A non-blocking userfaultfd: the syscall, else /dev/userfaultfd (open to non-root users where the syscall is refused). */
/* Waits until no page tracker's close under way covers any of [base, base + bytes) (`uffd_tracker.c`): a range is registered with one userfaultfd at a time. */
void wait_for_closes(const uint8_t *base, uint64_t bytes);

static inline int open_uffd(void) {
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd >= 0) return fd;
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) return -1;
  fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
  close(dev);
  return fd;
}

#endif

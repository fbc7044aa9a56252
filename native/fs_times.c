/*
 * File timestamps to the nanosecond. Node's utimes family takes seconds as a
 * double, which loses the last digits of a nanosecond time; WASI's
 * fd_filestat_set_times and path_filestat_set_times promise nanoseconds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

/* What to do with one timestamp: keep it, or set it to a value ("now" is the caller's clock, injected). */
enum { TIME_OMIT = 0, TIME_SET = 1 };

/* Throws an error shaped like Node's system errors (code "ENOENT", syscall), so callers map it as they map fs's. */
static napi_value throw_system(napi_env env, int err, const char *syscall_name) {
  const char *name = strerrorname_np(err);
  napi_value code, message, error, syscall_value, errno_value;
  napi_create_string_utf8(env, name != NULL ? name : "EIO", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  napi_create_int32(env, -err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
  return NULL;
}

static bool read_time(napi_env env, napi_value mode_value, napi_value ns_value, struct timespec *out) {
  int32_t mode;
  if (napi_get_value_int32(env, mode_value, &mode) != napi_ok) return false;
  if (mode == TIME_OMIT) {
    out->tv_sec = 0;
    out->tv_nsec = UTIME_OMIT;
    return true;
  }
  if (mode != TIME_SET) return false;
  uint64_t ns;
  bool lossless;
  if (napi_get_value_bigint_uint64(env, ns_value, &ns, &lossless) != napi_ok || !lossless) return false;
  out->tv_sec = (time_t)(ns / 1000000000u);
  out->tv_nsec = (long)(ns % 1000000000u);
  return true;
}

/*
 * setTimes(fd, path, follow, atime_mode, atime_ns, mtime_mode, mtime_ns):
 * futimens(fd) when path is null, else utimensat(AT_FDCWD, path), on the link
 * itself unless follow.
 */
napi_value set_times(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 7) {
    napi_throw_type_error(env, "ERR_TIMES_ARGS", "setTimes takes 7 arguments");
    return NULL;
  }
  struct timespec times[2];
  if (!read_time(env, argv[3], argv[4], &times[0]) || !read_time(env, argv[5], argv[6], &times[1])) {
    napi_throw_type_error(env, "ERR_TIMES_ARGS", "setTimes: a time is a mode 0 or 1 and a non-negative bigint of nanoseconds");
    return NULL;
  }
  napi_valuetype path_type;
  napi_typeof(env, argv[1], &path_type);
  if (path_type == napi_null) {
    int32_t fd;
    if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
      napi_throw_type_error(env, "ERR_TIMES_ARGS", "setTimes: fd is not a number");
      return NULL;
    }
    if (futimens(fd, times) != 0) return throw_system(env, errno, "futimens");
    return NULL;
  }
  char path[4097];
  size_t length;
  if (napi_get_value_string_utf8(env, argv[1], path, sizeof path, &length) != napi_ok) {
    napi_throw_type_error(env, "ERR_TIMES_ARGS", "setTimes: path is not a string");
    return NULL;
  }
  if (length >= sizeof path - 1) return throw_system(env, ENAMETOOLONG, "utimensat");
  bool follow;
  if (napi_get_value_bool(env, argv[2], &follow) != napi_ok) follow = true;
  if (utimensat(AT_FDCWD, path, times, follow ? 0 : AT_SYMLINK_NOFOLLOW) != 0) return throw_system(env, errno, "utimensat");
  return NULL;
}

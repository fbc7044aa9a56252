/*
 * Reports what the three standard streams are, as the program sees them:
 * isatty(), the file type fstat() gives, and whether the stream tells its
 * position. Usage: streams [--hold] [REPORT_FD [SLEEP_MS]]: the report goes
 * to fd REPORT_FD (default 2), after sleeping SLEEP_MS (default 0) and,
 * with --hold, once a message "release" came (hold.h: a test moves it
 * first, however long that takes), one line a stream:
 *   fd0 tty=0 type=regular seek=1
 * Under WASI, isatty() is true for a character device without seek rights,
 * and the type comes from fd_filestat_get: what a host says here is what
 * programs such as the SQLite shell decide on (prompts, buffering).
 * wasi-libc gives pipes and sockets one st_mode (S_IFIFO == S_IFSOCK), so
 * both print as "pipe".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "hold.h"

static const char *type_name(mode_t mode) {
  if (S_ISREG(mode)) return "regular";
  if (S_ISDIR(mode)) return "directory";
  if (S_ISCHR(mode)) return "chardev";
  if (S_ISBLK(mode)) return "blockdev";
  if (S_ISFIFO(mode) || S_ISSOCK(mode)) return "pipe";
  if (S_ISLNK(mode)) return "symlink";
  return "unknown";
}

int main(int argc, char **argv) {
  hold_parse(&argc, &argv);
  int report = argc > 1 ? atoi(argv[1]) : 2;
  long sleep_ms = argc > 2 ? atol(argv[2]) : 0;
  if (sleep_ms > 0) {
    struct timespec t = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
  }
  hold_here();
  char line[256];
  for (int fd = 0; fd <= 2; fd++) {
    struct stat st;
    const char *type = fstat(fd, &st) == 0 ? type_name(st.st_mode) : strerror(errno);
    int tty = isatty(fd);
    int seek = lseek(fd, 0, SEEK_CUR) >= 0;
    int n = snprintf(line, sizeof line, "fd%d tty=%d type=%s seek=%d\n", fd, tty, type, seek);
    if (write(report, line, (size_t)n) != n) return 1;
  }
  return 0;
}

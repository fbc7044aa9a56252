/**
 * Wire layout of preview1 structs and the values of its enums and flag sets,
 * as `legacy/preview1/docs.md` of WebAssembly/WASI lists them (sizes and
 * offsets are for wasm32; all little-endian).
 */

/** `iovec` / `ciovec`: buf (u32 pointer) @0, buf_len (u32) @4. */
export const Iovec = { size: 8, buf: 0, buf_len: 4 } as const;

/** `fdstat`: filetype u8 @0, flags u16 @2, rights_base u64 @8, rights_inheriting u64 @16. */
export const Fdstat = { size: 24, filetype: 0, flags: 2, rights_base: 8, rights_inheriting: 16 } as const;

/** `filestat`: dev, ino, filetype (u8), nlink, size, atim, mtim, ctim. */
export const Filestat = {
  size: 64,
  dev: 0,
  ino: 8,
  filetype: 16,
  nlink: 24,
  filesize: 32,
  atim: 40,
  mtim: 48,
  ctim: 56,
} as const;

/** `prestat`: tag u8 @0 (only `dir` = 0), pr_name_len u32 @4. */
export const Prestat = { size: 8, tag: 0, name_len: 4 } as const;

/** `dirent` header; the name's bytes follow it, unterminated. */
export const Dirent = { size: 24, d_next: 0, d_ino: 8, d_namlen: 16, d_type: 20 } as const;

/**
 * `subscription`: userdata u64 @0, then the `subscription_u` variant @8 whose
 * u8 tag sits @8 and whose payload (8-aligned) starts @16.
 */
export const Subscription = {
  size: 48,
  userdata: 0,
  tag: 8,
  clock_id: 16,
  clock_timeout: 24,
  clock_precision: 32,
  clock_flags: 40,
  fd: 16,
} as const;

/** `event`: userdata u64 @0, error u16 @8, type u8 @10, fd_readwrite {nbytes u64 @16, flags u16 @24}. */
export const Event = { size: 32, userdata: 0, error: 8, type: 10, nbytes: 16, flags: 24 } as const;

/** `filetype` enum. */
export const Filetype = {
  unknown: 0,
  block_device: 1,
  character_device: 2,
  directory: 3,
  regular_file: 4,
  socket_dgram: 5,
  socket_stream: 6,
  symbolic_link: 7,
} as const;

/** `clockid` enum. */
export const ClockId = { realtime: 0, monotonic: 1, process_cputime: 2, thread_cputime: 3 } as const;

/** `whence` enum. */
export const Whence = { set: 0, cur: 1, end: 2 } as const;

/** `eventtype` enum. */
export const EventType = { clock: 0, fd_read: 1, fd_write: 2 } as const;

/** `subclockflags`: bit 0 = absolute timeout. */
export const SUBSCRIPTION_CLOCK_ABSTIME = 1;

/** `lookupflags`: bit 0 = follow a symlink in the final component. */
export const LOOKUP_SYMLINK_FOLLOW = 1;

/** `fdflags` bits. */
export const FdFlags = { append: 1, dsync: 2, nonblock: 4, rsync: 8, sync: 16 } as const;

/** `oflags` bits. */
export const OFlags = { creat: 1, directory: 2, excl: 4, trunc: 8 } as const;

/** `fstflags` bits. */
export const FstFlags = { atim: 1, atim_now: 2, mtim: 4, mtim_now: 8 } as const;

/** Largest `advice` value (`noreuse`). */
export const ADVICE_MAX = 5;

/** `rights` bits (u64, carried as bigint). */
export const Rights = {
  fd_datasync: 1n << 0n,
  fd_read: 1n << 1n,
  fd_seek: 1n << 2n,
  fd_fdstat_set_flags: 1n << 3n,
  fd_sync: 1n << 4n,
  fd_tell: 1n << 5n,
  fd_write: 1n << 6n,
  fd_advise: 1n << 7n,
  fd_allocate: 1n << 8n,
  path_create_directory: 1n << 9n,
  path_create_file: 1n << 10n,
  path_link_source: 1n << 11n,
  path_link_target: 1n << 12n,
  path_open: 1n << 13n,
  fd_readdir: 1n << 14n,
  path_readlink: 1n << 15n,
  path_rename_source: 1n << 16n,
  path_rename_target: 1n << 17n,
  path_filestat_get: 1n << 18n,
  path_filestat_set_size: 1n << 19n,
  path_filestat_set_times: 1n << 20n,
  fd_filestat_get: 1n << 21n,
  fd_filestat_set_size: 1n << 22n,
  fd_filestat_set_times: 1n << 23n,
  path_symlink: 1n << 24n,
  path_remove_directory: 1n << 25n,
  path_unlink_file: 1n << 26n,
  poll_fd_readwrite: 1n << 27n,
  sock_shutdown: 1n << 28n,
  sock_accept: 1n << 29n,
} as const;

const r = Rights;

/** Every right that means something on a regular file. */
export const RIGHTS_FILE =
  r.fd_datasync | r.fd_read | r.fd_seek | r.fd_fdstat_set_flags | r.fd_sync | r.fd_tell | r.fd_write |
  r.fd_advise | r.fd_allocate | r.fd_filestat_get | r.fd_filestat_set_size | r.fd_filestat_set_times |
  r.poll_fd_readwrite;

/** Every right that means something on a directory. */
export const RIGHTS_DIR =
  r.fd_datasync | r.fd_fdstat_set_flags | r.fd_sync | r.path_create_directory | r.path_create_file |
  r.path_link_source | r.path_link_target | r.path_open | r.fd_readdir | r.path_readlink |
  r.path_rename_source | r.path_rename_target | r.path_filestat_get | r.path_filestat_set_size |
  r.path_filestat_set_times | r.fd_filestat_get | r.fd_filestat_set_times | r.path_symlink |
  r.path_remove_directory | r.path_unlink_file;

/**
 * Rights of stdio. No seek/tell: wasi-libc's `isatty` is "character device
 * without seek rights", so C programs line-buffer stdout, which is what a
 * client watching a migrating process wants to see.
 */
export const RIGHTS_STDIO = r.fd_read | r.fd_write | r.fd_fdstat_set_flags | r.fd_filestat_get | r.poll_fd_readwrite;

/** Rights of a listening socket. */
export const RIGHTS_SOCKET_LISTEN = r.fd_read | r.fd_fdstat_set_flags | r.fd_filestat_get | r.poll_fd_readwrite | r.sock_accept;

/** Rights of an accepted connection. */
export const RIGHTS_SOCKET_CONN = r.fd_read | r.fd_write | r.fd_fdstat_set_flags | r.fd_filestat_get | r.poll_fd_readwrite | r.sock_shutdown;

/** Every defined right; a guest's u64 is masked with it. */
export const RIGHTS_ALL = (1n << 30n) - 1n;

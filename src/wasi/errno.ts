/**
 * WASI preview1 errno values (witx `$errno`, an `enum u16`) and the mapping
 * from Node's error codes to them.
 *
 * The numbers are the enum's case indices in `wasi_snapshot_preview1.witx`
 * (`typenames.witx`), which wasi-libc's `<__errno_values.h>` mirrors; a guest
 * compiled against wasi-libc matches on these exact values.
 */

/** Every preview1 errno, by its witx name, with its wire value. */
export const Errno = {
  success: 0,
  "2big": 1,
  acces: 2,
  addrinuse: 3,
  addrnotavail: 4,
  afnosupport: 5,
  again: 6,
  already: 7,
  badf: 8,
  badmsg: 9,
  busy: 10,
  canceled: 11,
  child: 12,
  connaborted: 13,
  connrefused: 14,
  connreset: 15,
  deadlk: 16,
  destaddrreq: 17,
  dom: 18,
  dquot: 19,
  exist: 20,
  fault: 21,
  fbig: 22,
  hostunreach: 23,
  idrm: 24,
  ilseq: 25,
  inprogress: 26,
  intr: 27,
  inval: 28,
  io: 29,
  isconn: 30,
  isdir: 31,
  loop: 32,
  mfile: 33,
  mlink: 34,
  msgsize: 35,
  multihop: 36,
  nametoolong: 37,
  netdown: 38,
  netreset: 39,
  netunreach: 40,
  nfile: 41,
  nobufs: 42,
  nodev: 43,
  noent: 44,
  noexec: 45,
  nolck: 46,
  nolink: 47,
  nomem: 48,
  nomsg: 49,
  noprotoopt: 50,
  nospc: 51,
  nosys: 52,
  notconn: 53,
  notdir: 54,
  notempty: 55,
  notrecoverable: 56,
  notsock: 57,
  notsup: 58,
  notty: 59,
  nxio: 60,
  overflow: 61,
  ownerdead: 62,
  perm: 63,
  pipe: 64,
  proto: 65,
  protonosupport: 66,
  prototype: 67,
  range: 68,
  rofs: 69,
  spipe: 70,
  srch: 71,
  stale: 72,
  timedout: 73,
  txtbsy: 74,
  xdev: 75,
  notcapable: 76,
} as const;

/** One errno wire value. */
export type ErrnoValue = (typeof Errno)[keyof typeof Errno];

/**
 * Thrown inside the host to abandon a call with an errno; the import wrapper
 * turns it into the return value. Never escapes to the guest or the runtime.
 * It holds no stack trace, which nobody reads: capturing one through the
 * guest's frames made a call that fails (a stat of a missing file, the end
 * of the preopen scan) cost 3.9–7 µs more than one that succeeds, against
 * 1.0–1.3 µs without (a scratch module calling an import that throws).
 */
export class ErrnoError extends Error {
  /** The errno the import returns. */
  readonly errno: ErrnoValue;

  constructor(errno: ErrnoValue, message?: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(message ?? `wasi errno ${errno}`);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.errno = errno;
    this.name = "ErrnoError";
  }
}

/** Throws {@link ErrnoError} with `errno`; reads well in guard clauses. */
export function fail(errno: ErrnoValue, message?: string): never {
  throw new ErrnoError(errno, message);
}

/**
 * Node's (libuv's) POSIX error codes → preview1 errno. Codes absent here map
 * to `io`: the guest learns that something failed without a wrong reason.
 */
const node_code_errno: Readonly<Record<string, ErrnoValue>> = {
  E2BIG: Errno["2big"],
  EACCES: Errno.acces,
  EADDRINUSE: Errno.addrinuse,
  EADDRNOTAVAIL: Errno.addrnotavail,
  EAFNOSUPPORT: Errno.afnosupport,
  EAGAIN: Errno.again,
  EWOULDBLOCK: Errno.again,
  EALREADY: Errno.already,
  EBADF: Errno.badf,
  EBUSY: Errno.busy,
  ECANCELED: Errno.canceled,
  ECONNABORTED: Errno.connaborted,
  ECONNREFUSED: Errno.connrefused,
  ECONNRESET: Errno.connreset,
  EDQUOT: Errno.dquot,
  EEXIST: Errno.exist,
  EFAULT: Errno.fault,
  EFBIG: Errno.fbig,
  EHOSTUNREACH: Errno.hostunreach,
  EILSEQ: Errno.ilseq,
  EINTR: Errno.intr,
  EINVAL: Errno.inval,
  EIO: Errno.io,
  EISCONN: Errno.isconn,
  EISDIR: Errno.isdir,
  ELOOP: Errno.loop,
  EMFILE: Errno.mfile,
  EMLINK: Errno.mlink,
  EMSGSIZE: Errno.msgsize,
  ENAMETOOLONG: Errno.nametoolong,
  ENETDOWN: Errno.netdown,
  ENETUNREACH: Errno.netunreach,
  ENFILE: Errno.nfile,
  ENOBUFS: Errno.nobufs,
  ENODEV: Errno.nodev,
  ENOENT: Errno.noent,
  ENOMEM: Errno.nomem,
  ENOSPC: Errno.nospc,
  ENOSYS: Errno.nosys,
  ENOTCONN: Errno.notconn,
  ENOTDIR: Errno.notdir,
  ENOTEMPTY: Errno.notempty,
  ENOTSOCK: Errno.notsock,
  ENOTSUP: Errno.notsup,
  EOPNOTSUPP: Errno.notsup,
  ENOTTY: Errno.notty,
  ENXIO: Errno.nxio,
  EOVERFLOW: Errno.overflow,
  EPERM: Errno.perm,
  EPIPE: Errno.pipe,
  EPROTO: Errno.proto,
  EPROTONOSUPPORT: Errno.protonosupport,
  EPROTOTYPE: Errno.prototype,
  ERANGE: Errno.range,
  EROFS: Errno.rofs,
  ESPIPE: Errno.spipe,
  ESRCH: Errno.srch,
  ESTALE: Errno.stale,
  ETIMEDOUT: Errno.timedout,
  ETXTBSY: Errno.txtbsy,
  EXDEV: Errno.xdev,
};

/**
 * The errno for an error a host call raised: {@link ErrnoError}'s own value,
 * the table entry for a Node system error (unknown codes → `io`), or
 * `undefined` for anything else (a bug, or `ProcExit`), which the caller
 * rethrows rather than hide from the runtime.
 */
export function errno_of(error: unknown): ErrnoValue | undefined {
  if (error instanceof ErrnoError) return error.errno;
  if (!(error instanceof Error)) return undefined;
  // Node system errors carry `code` ("ENOENT") and `syscall`; validation
  // errors carry `code` "ERR_*" and are our bugs, so they are not mapped.
  const { code, syscall } = error as { code?: unknown; syscall?: unknown };
  if (typeof code !== "string" || typeof syscall !== "string") return undefined;
  return node_code_errno[code] ?? Errno.io;
}

/** The witx name of an errno value ("noent"), for messages. */
export function errno_name(errno: number): string {
  for (const [name, value] of Object.entries(Errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

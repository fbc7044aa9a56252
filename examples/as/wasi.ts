// Minimal WASI preview1 glue for the AssemblyScript examples: the imports we
// use, a small line buffer for formatted output, argument parsing and a custom
// abort (installed with `--use abort=wasi/ferryAbort`) so that the module
// imports nothing but wasi_snapshot_preview1.

@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovsLen: u32, nwritten: usize): u16;
@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(code: u32): void;
@external("wasi_snapshot_preview1", "args_sizes_get")
declare function args_sizes_get(argc: usize, argvBufSize: usize): u16;
@external("wasi_snapshot_preview1", "args_get")
declare function args_get(argv: usize, argvBuf: usize): u16;

export const STDOUT: u32 = 1;
export const STDERR: u32 = 2;

const BUF_SIZE: i32 = 4096; // longer lines are truncated
const buf = memory.data(BUF_SIZE);
const iov = memory.data(16);
let len: i32 = 0;

/** Write the buffered text to fd and empty the buffer. */
export function flush(fd: u32): void {
  let off: i32 = 0;
  while (off < len) {
    store<u32>(iov, buf + <usize>off);
    store<u32>(iov, <u32>(len - off), 4);
    const err = fd_write(fd, iov, 1, iov + 8);
    if (err != 0) break;
    off += <i32>load<u32>(iov + 8);
  }
  len = 0;
}

function putByte(b: i32): void {
  if (len >= BUF_SIZE - (b == 10 ? 0 : 1)) return; // keep room for the newline
  store<u8>(buf + <usize>len, <u8>b);
  len++;
}

/** Append an ASCII string (code units are truncated to 8 bits). */
export function put(s: string): void {
  for (let i = 0; i < s.length; i++) putByte(s.charCodeAt(i));
}

export function putU64(v: u64): void {
  const digits = memory.data(24);
  let n = 0;
  do {
    store<u8>(digits + <usize>n, <u8>(48 + <i32>(v % 10)));
    v /= 10;
    n++;
  } while (v != 0);
  while (n > 0) {
    n--;
    putByte(load<u8>(digits + <usize>n));
  }
}

export function putHex64(v: u64): void {
  for (let shift = 60; shift >= 0; shift -= 4) {
    const d = <i32>((v >> <u64>shift) & 15);
    putByte(d < 10 ? 48 + d : 87 + d);
  }
}

/** Write the buffered line to fd (stdout or stderr). */
export function endLine(fd: u32): void {
  putByte(10);
  flush(fd);
}

export function exit(code: u32): void {
  flush(STDOUT);
  proc_exit(code);
}

/**
 * Parse argument `index` (0 = program name) as an unsigned decimal, or return
 * `dflt` if absent. Exits with status 2 on a malformed argument or one > max.
 */
export function argU64(index: u32, dflt: u64, max: u64): u64 {
  const sizes = memory.data(8);
  if (args_sizes_get(sizes, sizes + 4) != 0) return dflt;
  const argc = load<u32>(sizes);
  if (index >= argc) return dflt;
  const argv = heap.alloc(<usize>argc * 4);
  const argvBuf = heap.alloc(<usize>load<u32>(sizes, 4));
  if (args_get(argv, argvBuf) != 0) return dflt;
  let p = load<u32>(argv + <usize>index * 4);
  let v: u64 = 0;
  let ok = load<u8>(p) != 0;
  for (; load<u8>(p) != 0; p++) {
    const c = <i32>load<u8>(p);
    if (c < 48 || c > 57 || v > (max - <u64>(c - 48)) / 10) {
      ok = false;
      break;
    }
    v = v * 10 + <u64>(c - 48);
  }
  heap.free(argvBuf);
  heap.free(argv);
  if (!ok) {
    put("bad argument ");
    putU64(index);
    put(" (max ");
    putU64(max);
    put(")");
    endLine(STDERR);
    proc_exit(2);
  }
  return v;
}

/** 64-bit mixer (splitmix64 finaliser), same as the C examples use. */
export function mix64(z: u64): u64 {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  return z ^ (z >> 31);
}

/** Custom abort: message to stderr, exit status 134. */
export function ferryAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  len = 0;
  put("abort: ");
  if (message !== null) put(message);
  put(" at ");
  if (fileName !== null) put(fileName);
  put(":");
  putU64(line);
  put(":");
  putU64(column);
  endLine(STDERR);
  proc_exit(134);
}

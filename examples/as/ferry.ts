// The Ferry guest API for AssemblyScript (docs/links.md; the C side is
// examples/c/ferry.h): the process's pid, messages to other processes by pid,
// and moving itself. Messages are delivered exactly once and in each sender's
// order, wherever the processes run; a blocked send or receive is a safe
// point. Calls return 0 or a WASI errno (ENOSYS outside a cluster).

@external("ferry", "pid")
declare function ferry_pid(buf: usize, cap: u32): u32;
@external("ferry", "send")
declare function ferry_send(to: usize, toLen: u32, data: usize, len: u32): i32;
@external("ferry", "recv")
declare function ferry_recv(from: usize, fromCap: u32, fromLen: usize, data: usize, cap: u32, len: usize, timeoutMs: i64): i32;
@external("ferry", "migrate")
declare function ferry_migrate(node: usize, len: u32): i32;

export const MESSAGE_MAX: u32 = 65536;
export const PID_MAX: u32 = 255;
export const ETIMEDOUT: i32 = 73;

const pidBuf = memory.data(256);
const fromBuf = memory.data(256);
const lens = memory.data(8);
const dataBuf = memory.data(65536);

/** This process's pid ("" outside a cluster). */
export function pid(): string {
  const n = ferry_pid(pidBuf, PID_MAX);
  return String.UTF8.decodeUnsafe(pidBuf, min(n, PID_MAX));
}

/** Sends `data` to process `to`; blocks while too many of this process's messages are undelivered. */
export function send(to: string, data: ArrayBuffer): i32 {
  const t = String.UTF8.encode(to);
  return ferry_send(changetype<usize>(t), <u32>t.byteLength, changetype<usize>(data), <u32>data.byteLength);
}

/** Sends a string (UTF-8). */
export function sendString(to: string, text: string): i32 {
  return send(to, String.UTF8.encode(text));
}

/** The last received message: its sender and bytes (valid until the next receive). */
export let lastFrom: string = "";
export let lastLength: u32 = 0;

/** Receives the next message (timeoutMs < 0: wait for ever); 0, or an errno such as ETIMEDOUT. */
export function recv(timeoutMs: i64): i32 {
  const rc = ferry_recv(fromBuf, PID_MAX, lens, dataBuf, MESSAGE_MAX, lens + 4, timeoutMs);
  if (rc != 0) return rc;
  lastFrom = String.UTF8.decodeUnsafe(fromBuf, load<u32>(lens));
  lastLength = load<u32>(lens + 4);
  return 0;
}

/** The last received message as a string. */
export function lastString(): string {
  return String.UTF8.decodeUnsafe(dataBuf, lastLength);
}

/** Moves this process to `node`: 0 there, or an errno here if it could not go. */
export function migrate(node: string): i32 {
  const n = String.UTF8.encode(node);
  return ferry_migrate(changetype<usize>(n), <u32>n.byteLength);
}

/**
 * Process-level calls: argv and environment, randomness, exit, signals and
 * yielding.
 */

import { Errno, type ErrnoValue } from "./errno.js";
import { ProcExit } from "./deps.js";
import type { HostContext } from "./_context.js";
import { u32_arg, utf8 } from "./_memory.js";

/**
 * Bytes handed to the random source per call: Web Crypto's getRandomValues
 * refuses more than 65536 at once, and a runtime may well plug that in.
 */
const RANDOM_CHUNK_BYTES = 65_536;

/** `args_sizes_get(argc_ptr, argv_buf_size_ptr)`. */
export function args_sizes_get(ctx: HostContext, argc_ptr: number, buf_size_ptr: number): ErrnoValue {
  return sizes_get(ctx, ctx.args, argc_ptr, buf_size_ptr);
}

/** `args_get(argv_ptr, argv_buf_ptr)`: pointers, then NUL-terminated strings. */
export function args_get(ctx: HostContext, argv_ptr: number, buf_ptr: number): ErrnoValue {
  return strings_get(ctx, ctx.args, argv_ptr, buf_ptr);
}

/** `environ_sizes_get(count_ptr, buf_size_ptr)`. */
export function environ_sizes_get(ctx: HostContext, count_ptr: number, buf_size_ptr: number): ErrnoValue {
  return sizes_get(ctx, ctx.env, count_ptr, buf_size_ptr);
}

/** `environ_get(environ_ptr, environ_buf_ptr)`. */
export function environ_get(ctx: HostContext, environ_ptr: number, buf_ptr: number): ErrnoValue {
  return strings_get(ctx, ctx.env, environ_ptr, buf_ptr);
}

/** `random_get(buf, buf_len)`. */
export function random_get(ctx: HostContext, buf_ptr: number, buf_len: number): ErrnoValue {
  const ptr = u32_arg(buf_ptr);
  const len = u32_arg(buf_len);
  ctx.mem.check(ptr, len);
  // Filled privately, then copied: random sources may refuse shared memory.
  for (let done = 0; done < len; done += RANDOM_CHUNK_BYTES) {
    const chunk = new Uint8Array(Math.min(RANDOM_CHUNK_BYTES, len - done));
    ctx.deps.random(chunk);
    ctx.mem.write(ptr + done, chunk);
  }
  return Errno.success;
}

/** `proc_exit(code)`: throws {@link ProcExit}, which the runtime turns into the exit status. */
export function proc_exit(_ctx: HostContext, code: number): never {
  throw new ProcExit(u32_arg(code));
}

/** `proc_raise(signal)`: there are no signals in this host. */
export function proc_raise(_ctx: HostContext, _signal: number): ErrnoValue {
  return Errno.nosys;
}

/**
 * `sched_yield()`: returns at once. It is a blocking import all the same, so
 * the runtime may suspend a process there (a spin-wait loop yields often).
 */
export function sched_yield(_ctx: HostContext): ErrnoValue {
  return Errno.success;
}

function sizes_get(ctx: HostContext, strings: readonly string[], count_ptr: number, size_ptr: number): ErrnoValue {
  const bytes = strings.reduce((sum, s) => sum + utf8(s).length + 1, 0);
  ctx.mem.check(u32_arg(count_ptr), 4);
  ctx.mem.check(u32_arg(size_ptr), 4);
  ctx.mem.set_u32(u32_arg(count_ptr), strings.length);
  ctx.mem.set_u32(u32_arg(size_ptr), bytes);
  return Errno.success;
}

function strings_get(ctx: HostContext, strings: readonly string[], ptrs_ptr: number, buf_ptr: number): ErrnoValue {
  const ptrs = u32_arg(ptrs_ptr);
  let at = u32_arg(buf_ptr);
  const encoded = strings.map((s) => utf8(s));
  ctx.mem.check(ptrs, strings.length * 4);
  ctx.mem.check(at, encoded.reduce((sum, b) => sum + b.length + 1, 0));
  encoded.forEach((bytes, i) => {
    ctx.mem.set_u32(ptrs + i * 4, at);
    ctx.mem.write(at, bytes);
    ctx.mem.set_u8(at + bytes.length, 0);
    at += bytes.length + 1;
  });
  return Errno.success;
}

/**
 * Test support for the wasi folder: fake deps (clock, stdin, sinks, blocker),
 * temp directories, and a `Guest` that drives imports against a real
 * WebAssembly.Memory the way a compiled program would.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { Blocker, Clock, InputSource, OutputSink, StdinRead, WaitResult, WasiConfig, WasiDeps } from "./deps.js";
import { WasiHost } from "./host.js";
import { OFlags, RIGHTS_ALL, Rights } from "./_layout.js";

/** A clock the test moves by hand. */
export class FakeClock implements Clock {
  mono_ns = 5_000_000_000n;
  real_ns = 1_700_000_000_000_000_000n;
  monotonic_ns(): bigint {
    return this.mono_ns;
  }
  realtime_ns(): bigint {
    return this.real_ns;
  }
  advance(ns: bigint): void {
    this.mono_ns += ns;
    this.real_ns += ns;
  }
}

/** Keeps what was written. */
export class CollectSink implements OutputSink {
  readonly chunks: Uint8Array[] = [];
  write(bytes: Uint8Array): void {
    this.chunks.push(bytes);
  }
  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}

/** stdin fed by the test. */
export class FakeStdin implements InputSource {
  readonly queue: Uint8Array[] = [];
  eof = false;
  reads = 0;
  push(text: string): void {
    this.queue.push(Buffer.from(text));
  }
  tryRead(max_bytes: number): StdinRead {
    this.reads += 1;
    const head = this.queue[0];
    if (head === undefined) return this.eof ? "eof" : "empty";
    if (head.length <= max_bytes) {
      this.queue.shift();
      return head;
    }
    this.queue[0] = head.subarray(max_bytes);
    return head.subarray(0, max_bytes);
  }
  readable(): boolean {
    return this.queue.length > 0 || this.eof;
  }
}

/** Options a Blocker was called with. */
export type WaitCall = { deadline_ns?: bigint; stdin?: boolean };

/**
 * Answers waits from `script` first (a result, or a function run at the
 * wait), then by jumping the fake clock to the deadline ("timeout").
 */
export class FakeBlocker implements Blocker {
  readonly calls: WaitCall[] = [];
  readonly script: Array<WaitResult | (() => WaitResult)> = [];
  host: WasiHost | undefined;
  constructor(readonly clock: FakeClock) {}
  wait(options: WaitCall): WaitResult {
    this.calls.push({ ...options });
    if (this.calls.length > 1000) throw new Error("FakeBlocker: runaway wait loop");
    const next = this.script.shift();
    if (next !== undefined) return typeof next === "function" ? next() : next;
    if (options.deadline_ns === undefined) throw new Error("FakeBlocker: would block forever");
    const host = this.host ?? raise("FakeBlocker.host not set");
    const remaining = options.deadline_ns - host.monotonic_ns();
    if (remaining > 0n) this.clock.advance(remaining);
    return "timeout";
  }
}

/** Fresh fakes, bundled with the deps object made of them. */
export function fake_deps(): {
  deps: WasiDeps;
  clock: FakeClock;
  stdin: FakeStdin;
  stdout: CollectSink;
  stderr: CollectSink;
  blocker: FakeBlocker;
} {
  const clock = new FakeClock();
  const stdin = new FakeStdin();
  const stdout = new CollectSink();
  const stderr = new CollectSink();
  const blocker = new FakeBlocker(clock);
  let counter = 0;
  const random = (buf: Uint8Array): void => {
    for (let i = 0; i < buf.length; i++) buf[i] = (counter++ * 7 + 3) & 0xff;
  };
  return { deps: { stdin, stdout, stderr, clock, random, blocker }, clock, stdin, stdout, stderr, blocker };
}

const temp_dirs: string[] = [];

/** A new empty directory, removed by {@link remove_temp_dirs}. */
export function temp_dir(): string {
  const dir = mkdtempSync(join(tmpdir(), "ferry-wasi-"));
  temp_dirs.push(dir);
  return dir;
}

/** Removes every directory {@link temp_dir} made; call from `after`. */
export function remove_temp_dirs(): void {
  for (const dir of temp_dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Every right; path_open narrows it to what the directory allows. */
export const ALL_RIGHTS = RIGHTS_ALL;

/** What wasi-libc asks for when opening O_RDONLY|O_DIRECTORY: everything but the write rights. */
export const DIR_OPEN_RIGHTS =
  RIGHTS_ALL & ~(Rights.fd_write | Rights.fd_datasync | Rights.fd_allocate | Rights.fd_filestat_set_size);

/** Options of {@link Guest.open}. */
export type OpenOptions = { oflags?: number; fdflags?: number; follow?: boolean; rights?: bigint; inheriting?: bigint };

/** A pretend guest: memory, a bump allocator, and typed import calls. */
export class Guest {
  readonly fns: Record<string, (...args: never[]) => unknown>;
  #next = 1024;

  constructor(
    readonly host: WasiHost,
    readonly memory: WebAssembly.Memory = new WebAssembly.Memory({ initial: 2 }),
  ) {
    host.bindMemory(memory);
    this.fns = host.imports();
  }

  /** A host + guest for `config` with fresh fakes. */
  static start(config: Partial<WasiConfig> & { memory?: WebAssembly.Memory } = {}): { guest: Guest } & ReturnType<typeof fake_deps> {
    const fakes = fake_deps();
    const host = new WasiHost({ args: config.args ?? [], env: config.env ?? [], preopens: config.preopens ?? [], ...(config.stdio === undefined ? {} : { stdio: config.stdio }) }, fakes.deps);
    fakes.blocker.host = host;
    return { guest: new Guest(host, config.memory), ...fakes };
  }

  /** Calls an import by name. */
  call(name: string, ...args: Array<number | bigint>): number {
    const fn = this.fns[name] ?? raise(`no import ${name}`);
    return (fn as unknown as (...a: Array<number | bigint>) => number)(...args);
  }

  /** `n` bytes of zeroed guest memory. */
  alloc(n: number, align = 8): number {
    const ptr = Math.ceil(this.#next / align) * align;
    this.#next = ptr + n;
    if (this.#next > this.memory.buffer.byteLength) throw new Error("test guest out of memory");
    new Uint8Array(this.memory.buffer).fill(0, ptr, ptr + n);
    return ptr;
  }

  /** Copies `text` (UTF-8) into memory. */
  str(text: string): [number, number] {
    const bytes = Buffer.from(text);
    const ptr = this.alloc(bytes.length + 1, 1);
    new Uint8Array(this.memory.buffer).set(bytes, ptr);
    return [ptr, bytes.length];
  }

  bytes(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.memory.buffer).slice(ptr, ptr + len);
  }

  text(ptr: number, len: number): string {
    return Buffer.from(this.bytes(ptr, len)).toString("utf8");
  }

  u8(ptr: number): number {
    return new DataView(this.memory.buffer).getUint8(ptr);
  }

  u16(ptr: number): number {
    return new DataView(this.memory.buffer).getUint16(ptr, true);
  }

  u32(ptr: number): number {
    return new DataView(this.memory.buffer).getUint32(ptr, true);
  }

  u64(ptr: number): bigint {
    return new DataView(this.memory.buffer).getBigUint64(ptr, true);
  }

  set_u32(ptr: number, value: number): void {
    new DataView(this.memory.buffer).setUint32(ptr, value, true);
  }

  set_u64(ptr: number, value: bigint): void {
    new DataView(this.memory.buffer).setBigUint64(ptr, value, true);
  }

  /** An iovec array over fresh buffers of the given sizes; returns [iovs_ptr, count, buffer ptrs]. */
  iovecs(sizes: number[]): [number, number, number[]] {
    const iovs = this.alloc(sizes.length * 8, 4);
    const bufs = sizes.map((size, i) => {
      const buf = this.alloc(size, 1);
      this.set_u32(iovs + i * 8, buf);
      this.set_u32(iovs + i * 8 + 4, size);
      return buf;
    });
    return [iovs, sizes.length, bufs];
  }

  /** path_open; returns [errno, fd]. */
  open(dirfd: number, path: string, options: OpenOptions = {}): [number, number] {
    const [p, len] = this.str(path);
    const out = this.alloc(4, 4);
    const errno = this.call(
      "path_open",
      dirfd,
      options.follow === false ? 0 : 1,
      p,
      len,
      options.oflags ?? 0,
      options.rights ?? ((options.oflags ?? 0) & OFlags.directory ? DIR_OPEN_RIGHTS : ALL_RIGHTS),
      options.inheriting ?? ALL_RIGHTS,
      options.fdflags ?? 0,
      out,
    );
    return [errno, this.u32(out)];
  }

  /** fd_write of one buffer; returns [errno, nwritten]. */
  write(fd: number, text: string): [number, number] {
    const [ptr, len] = this.str(text);
    const iovs = this.alloc(8, 4);
    this.set_u32(iovs, ptr);
    this.set_u32(iovs + 4, len);
    const out = this.alloc(4, 4);
    const errno = this.call("fd_write", fd, iovs, 1, out);
    return [errno, this.u32(out)];
  }

  /** fd_read into one buffer of `max` bytes; returns [errno, text]. */
  read(fd: number, max: number): [number, string] {
    const [iovs, count, [buf]] = this.iovecs([max]);
    const out = this.alloc(4, 4);
    const errno = this.call("fd_read", fd, iovs, count, out);
    return [errno, errno === 0 ? this.text(buf as number, this.u32(out)) : ""];
  }

  /** fd_seek; returns [errno, new offset]. */
  seek(fd: number, delta: bigint, whence: number): [number, bigint] {
    const out = this.alloc(8);
    const errno = this.call("fd_seek", fd, delta, whence, out);
    return [errno, this.u64(out)];
  }

  /** A path-taking call `name(fd, path, path_len, ...rest)`. */
  path_call(name: string, fd: number, path: string, ...rest: Array<number | bigint>): number {
    const [p, len] = this.str(path);
    return this.call(name, fd, p, len, ...rest);
  }
}

function raise(message: string): never {
  throw new Error(message);
}

/** A two-path call `name(fd, old, old_len, new_fd, new, new_len)`. */
export function two_paths(guest: Guest, name: string, fd: number, from: string, new_fd: number, to: string): number {
  const [a, a_len] = guest.str(from);
  const [b, b_len] = guest.str(to);
  return guest.call(name, fd, a, a_len, new_fd, b, b_len);
}

/** `path_symlink(contents, fd, path)`. */
export function symlink(guest: Guest, contents: string, fd: number, path: string): number {
  const [a, a_len] = guest.str(contents);
  const [b, b_len] = guest.str(path);
  return guest.call("path_symlink", a, a_len, fd, b, b_len);
}

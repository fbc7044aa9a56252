/**
 * Entry of a process worker: runs one guest, synchronously, and suspends it
 * on request by unwinding its stack with Asyncify. Controlled by messages and
 * by the shared control block (see _control.ts, _protocol.ts).
 */
import fs from "node:fs";
import { randomFillSync } from "node:crypto";
import { parentPort, workerData } from "node:worker_threads";
import { knownCode } from "../errors.js";
import { POLL_IMPORT, RESTART_POLL_IMPORT } from "../instrument/mod.js";
import { idleDeps, ProcExit, WasiHost, type Blocker, type OutputSink, type Preopen, type WaitResult, type WasiDeps } from "../wasi/mod.js";
import { Gate, Request, SLOT_GATE, SLOT_HIBERNATE_MS, SLOT_REQUEST, SLOT_THROTTLE, SLOT_WAKE, THROTTLE_PCT_MAX, THROTTLE_SLICE_MS } from "./_control.js";
import { WORKER_SCRIPT_KEY, type FromWorker, type GlobalBits, type IdleWait, type OutputWire, type SuspendedState, type ToWorker, type WorkerBoot, type WorkerInit, type WorkerScriptState } from "./_protocol.js";
import { PollBudget } from "./_budget.js";
import type { HeldData } from "./_compiled.js";
import { AsyncifyState, borrowTop, dropSaveArea, giveBack, keptCopy, prepareRewind, prepareUnwind, unwindBoundBytes, unwindBoundFromCounters, unwoundBytes, type BorrowedRegion } from "./_stack.js";
import { backPages, backStandby, discardPages, loadBacking } from "./_backing.js";
import { collectNow } from "./_reclaim.js";
import { StdinMailbox } from "./stdin.js";
import { FERRY_BLOCKING, ferryImports } from "./_ferry_imports.js";
import { inboxRing, outboxRing } from "./_inbox.js";
import { LaneWriter } from "./_lane_writer.js";
import { wallClock } from "./_wall_clock.js";
import { NetArea } from "./_net_area.js";
import { GuestNet } from "./_guest_net.js";
import { NetLaneWriter } from "./_net_lane_writer.js";
import { UsageCounter } from "./_usage.js";

/** Import module of the guest API beyond WASI (links, migrating itself); the instrumenter's poll lives there too. */
const FERRY_MODULE = POLL_IMPORT.module;

/** How long an output write waits for a full non-blocking pipe to drain. */
const OUTPUT_RETRY_MS = 1;

if (parentPort === null) throw new Error("process worker started outside a worker thread");
const port = parentPort;
const boot = workerData as WorkerBoot;
// Set once, before anything below runs a guest: from workerData, or for a warm worker from its first message (`_warm.ts`).
let init!: WorkerInit;
let control!: Int32Array;
const post = (msg: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(msg, transfer);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
// Set with init (start()): the guest's CPU counters and pause flag (`_usage.ts`).
let usage!: UsageCounter;
/** Longest single wait of a held guest before it looks again. */
const HOLD_WAIT_MS = 20;

/**
 * Waits until the controller opens the gate of a gated activation; false if
 * it dropped the move instead (it stops this worker). Bounded waits, so a
 * terminate() reaches the worker even where an engine cannot interrupt one.
 */
function gateOpened(): boolean {
  // Says it waits (unless the controller was quicker): the controller may tell.
  Atomics.compareExchange(control, SLOT_GATE, Gate.closed, Gate.waiting);
  for (;;) {
    const gate = Atomics.load(control, SLOT_GATE);
    if (gate === Gate.open || gate === Gate.dropped) return gate === Gate.open;
    Atomics.wait(control, SLOT_GATE, gate, HOLD_WAIT_MS);
  }
}

/**
 * Holds the guest while its controller asks (the node's scheduler), at a
 * poll crossing. Returns early for a suspend or a halt request: those are
 * acted on by the caller, so a held guest can still be moved or ended.
 */
function holdWhileAsked(now_ms: number): number {
  if (!usage.pause_requested) return now_ms;
  usage.stopped(now_ms);
  let last_ms = now_ms;
  for (;;) {
    const seen = Atomics.load(control, SLOT_WAKE);
    if (!usage.pause_requested || Atomics.load(control, SLOT_REQUEST) !== Request.none) break;
    // Bounded, so a terminate() reaches a held worker even where an engine cannot interrupt a wait,
    // and the held time is counted as it passes (the scheduler reads it every slice).
    Atomics.wait(control, SLOT_WAKE, seen, HOLD_WAIT_MS);
    const t = performance.now();
    usage.paused(t - last_ms);
    last_ms = t;
  }
  const after_ms = performance.now();
  usage.paused(after_ms - last_ms);
  usage.running(after_ms);
  return after_ms;
}

function outputSink(wire: OutputWire, stream: 1 | 2): OutputSink {
  if (wire.kind === "port") {
    return { write: (bytes) => post({ type: "output", stream, bytes: bytes.slice() }) };
  }
  const fd = wire.fd;
  return {
    write(bytes) {
      let done = 0;
      while (done < bytes.length) {
        try {
          done += fs.writeSync(fd, bytes, done, bytes.length - done);
        } catch (err: unknown) {
          // The other end may be a non-blocking pipe shared with Node.
          if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
          Atomics.wait(sleeper, 0, 0, OUTPUT_RETRY_MS);
        }
      }
    },
  };
}

/** Thrown into the guest when the controller asked it to halt: it unwinds without another host call. */
class Halted extends Error {
  constructor() {
    super("halted by its controller");
  }
}

function haltIfAsked(): void {
  if (Atomics.load(control, SLOT_REQUEST) === Request.halt) throw new Halted();
}

interface AsyncifyExports {
  asyncify_start_unwind(ptr: number): void;
  asyncify_stop_unwind(): void;
  asyncify_start_rewind(ptr: number): void;
  asyncify_stop_rewind(): void;
  asyncify_get_state(): number;
}

/**
 * Nanoseconds the guest has been held by its throttle, taken off the
 * monotonic clock it sees: a throttled guest runs as on a slower machine, so
 * a program that paces its writes by the clock (as many do) writes slower
 * too, and a migration's rounds catch up with it; holding it alone would not
 * help, since it would write the held time's share in a burst after. Its
 * output cannot change: only how fast time seems to pass. The realtime clock
 * stays the wall clock.
 */
let throttled_ns = 0n;

/**
 * Auto-converge at the guest's polls (safe points): after each slice of
 * running, hold it for as long as its throttle share asks. A hold waits on
 * the wake counter, so a request (a suspend) ends it at once.
 */
class Throttle {
  #since_ms: number;

  constructor(now_ms: number) {
    this.#since_ms = now_ms;
  }

  hold(now_ms: number): void {
    const pct = Math.min(THROTTLE_PCT_MAX, Atomics.load(control, SLOT_THROTTLE));
    if (pct <= 0) {
      this.#since_ms = now_ms;
      return;
    }
    const ran_ms = now_ms - this.#since_ms;
    if (ran_ms < THROTTLE_SLICE_MS) return;
    if (Atomics.load(control, SLOT_REQUEST) === Request.none) {
      const held_from = process.hrtime.bigint();
      Atomics.wait(control, SLOT_WAKE, Atomics.load(control, SLOT_WAKE), (ran_ms * pct) / (100 - pct));
      throttled_ns += process.hrtime.bigint() - held_from;
    }
    this.#since_ms = performance.now();
  }
}

class Guest {
  readonly stdin: StdinMailbox;
  readonly #deps: WasiDeps;
  #host: WasiHost | null = null;
  /** The host's import functions; the instance calls through to them (a standby gets them later). */
  #wasi: Record<string, (...args: never[]) => unknown> = {};
  instance!: WebAssembly.Instance;
  memory!: WebAssembly.Memory;
  #asyncify!: AsyncifyExports;
  #suspending = false;
  #rewinding = false;
  #region: BorrowedRegion | null = null;
  /** Set when the guest unwinds to hibernate: what it waits for (its host time is filled in at the capture). */
  #idle: Omit<IdleWait, "host_ns"> | null = null;
  #last: { globals: GlobalBits[]; asyncify: Uint8Array; stdin: { pending: Uint8Array; eof: boolean } } | null = null;
  /**
   * Whether the guest opened or closed a file since the controller was last
   * told ({@link #tellFiles}), and what it was told: at first no file, as the
   * controller starts out believing, so a guest restored (or started) with
   * none sends nothing (that message was a second wake of the node's thread
   * inside a migration's downtime, before RUNNING).
   */
  #files_changed = false;
  #files_told = "";

  constructor() {
    this.stdin = new StdinMailbox(control, init.stdin, () => post({ type: "stdin-drained" }));
    this.#deps = {
      stdin: this.stdin,
      stdout: this.#toldFirst(outputSink(init.stdout, 1)),
      stderr: this.#toldFirst(outputSink(init.stderr, 2)),
      clock: { monotonic_ns: () => process.hrtime.bigint() - throttled_ns, realtime_ns: wallClock() },
      random: (buf) => {
        randomFillSync(buf);
      },
      blocker: this.#blocker(),
      on_files_changed: () => this.#filesChanged(),
      ...(init.net === null ? {} : { net: new GuestNet(new NetArea(init.net), post, new NetLaneWriter(init.control)) }),
    };
    if (init.start.kind === "fresh") this.#setHost(new WasiHost(init.start.config, this.#deps));
  }

  /** Closes the host's files, if it has any (a standby has none yet; again is a no-op). */
  closeHost(): void {
    this.#host?.close();
  }

  get host(): WasiHost {
    if (this.#host === null) throw new Error("the process has no WASI state yet (standby)");
    return this.#host;
  }

  #setHost(host: WasiHost): void {
    this.#host = host;
    this.#wasi = host.imports() as Record<string, (...args: never[]) => unknown>;
    if (this.memory !== undefined) host.bindMemory(this.memory);
    this.#filesChanged();
    this.#tellFiles();
  }

  /**
   * Gives a standby its WASI state, with `preopens` for the directories it
   * recorded (reopening its files inside them); throws RestoreError if one is
   * not granted, or a file is missing or would lie outside.
   */
  activate(wasi: unknown, preopens: Preopen[], clock_host_ns?: bigint, net?: SharedArrayBuffer): void {
    if (net !== undefined && this.#deps.net === undefined) this.#deps.net = new GuestNet(new NetArea(net), post, new NetLaneWriter(init.control));
    let state = wasi as Parameters<typeof WasiHost.restore>[0];
    if (clock_host_ns !== undefined) {
      // Woken from hibernation on this host: the time it slept passed for it too (a migration hides its transit instead).
      const slept_ns = process.hrtime.bigint() - clock_host_ns;
      state = { ...state, monotonic_ns: (BigInt(state.monotonic_ns) + (slept_ns > 0n ? slept_ns : 0n)).toString() };
    }
    this.#setHost(WasiHost.restore(state, this.#deps, { preopens }));
  }

  /** The guest opened or closed a file: told at the next {@link #tellFiles}. */
  #filesChanged(): void {
    this.#files_changed = true;
  }

  /**
   * `sink`, telling the open files first if they changed: whoever reads the
   * guest's output (a client, a test waiting for a line printed after an
   * open) then finds the controller told of every file opened before it.
   */
  #toldFirst(sink: OutputSink): OutputSink {
    return {
      write: (bytes) => {
        this.#tellFiles();
        sink.write(bytes);
      },
    };
  }

  /**
   * Tells the controller which files the guest has open (a migration's offer
   * names them, and the destination checks them first), if that changed
   * since it was last told. Not at each open and close: a message wakes the
   * node's thread, and a guest that opens, writes and closes a file in a loop
   * paid about 40 µs a round for two of them (260 against 220 µs a round).
   * Told at the next poll (a quarter of a millisecond of running at most),
   * before a wait, before output, and when the guest stops running: the
   * list may be that much behind, as it always could be behind a guest that
   * runs on after it is read (a file opened after the offer fails the
   * restore, and the process stays where it ran).
   */
  #tellFiles(): void {
    // Changed while the host is being built, too: nothing to tell yet.
    if (!this.#files_changed || this.#host === null) return;
    this.#files_changed = false;
    const files = this.#host.open_files();
    const told = files.join("\0");
    if (told === this.#files_told) return;
    this.#files_told = told;
    post({ type: "files", files });
  }

  #blocker(): Blocker {
    return {
      wait: (options): WaitResult => {
        this.#tellFiles();
        usage.stopped(performance.now());
        try {
          return this.#waitFor(options);
        } finally {
          usage.running(performance.now());
        }
      },
    };
  }

  /**
   * Waits for what a blocking call needs, a request, or its deadline. A wait
   * that has lasted the hibernation threshold, with at least as long again
   * to its deadline (or none), unwinds the guest as a suspend does, telling
   * the controller what it waits for (`_hibernate.ts`).
   */
  #waitFor(options: Parameters<Blocker["wait"]>[0]): WaitResult {
    const since_ms = performance.now();
    for (;;) {
      const seen = Atomics.load(control, SLOT_WAKE);
      haltIfAsked();
      if (Atomics.load(control, SLOT_REQUEST) === Request.suspend) {
        this.#suspending = true;
        return "suspend";
      }
      if (options.stdin === true && this.stdin.readable()) return "ready";
      if (options.until?.() === true) return "ready";
      let timeout_ms = Infinity;
      let left_ns: bigint | null = null;
      if (options.deadline_ns !== undefined) {
        left_ns = options.deadline_ns - this.host.monotonic_ns();
        if (left_ns <= 0n) return "timeout";
        timeout_ms = Number(left_ns) / 1e6;
      }
      const hibernate_ms = Atomics.load(control, SLOT_HIBERNATE_MS);
      if (hibernate_ms > 0 && (left_ns === null || left_ns >= BigInt(hibernate_ms) * 1_000_000n)) {
        const waited_ms = performance.now() - since_ms;
        if (waited_ms >= hibernate_ms) {
          const now_ns = process.hrtime.bigint();
          this.#idle = { due_host_ns: left_ns === null ? null : now_ns + left_ns, stdin: options.stdin === true, other: options.until !== undefined };
          this.#suspending = true;
          return "suspend";
        }
        timeout_ms = Math.min(timeout_ms, hibernate_ms - waited_ms);
      }
      Atomics.wait(control, SLOT_WAKE, seen, timeout_ms);
    }
  }

  instantiate(): void {
    const module = init.module ?? new WebAssembly.Module(init.wasm);
    const wrapped: Record<string, unknown> = {};
    for (const { module: from, name } of WebAssembly.Module.imports(module)) {
      if (from !== "wasi_snapshot_preview1") continue;
      // Through the current host's table: a standby's host arrives later.
      const call = ((...args: never[]) => {
        haltIfAsked();
        const fn = this.#wasi[name];
        if (fn === undefined) throw new WebAssembly.RuntimeError(`unknown WASI import ${name}`);
        return fn(...args);
      }) as (...args: never[]) => unknown;
      wrapped[name] = WasiHost.blocking_imports.has(name) ? this.#wrap(call) : call;
    }
    const ferry: Record<string, unknown> = {};
    const ferry_calls = ferryImports({
      memory: () => this.memory,
      control,
      inbox: inboxRing(init.inbox, control),
      outbox: outboxRing(init.inbox, control),
      lane: init.pid === null ? null : new LaneWriter(init.control, new TextEncoder().encode(init.pid)),
      pid: init.pid,
      blocker: this.#deps.blocker,
      monotonic_ns: () => this.host.monotonic_ns(),
      post,
    });
    for (const { module: from, name } of WebAssembly.Module.imports(module)) {
      if (from !== FERRY_MODULE || name === POLL_IMPORT.name || name === RESTART_POLL_IMPORT.name) continue;
      const fn = ferry_calls[name];
      if (fn === undefined) throw new WebAssembly.LinkError(`unknown ferry import ${name}`);
      const call = ((...args: never[]) => {
        haltIfAsked();
        return fn(...args);
      }) as (...args: never[]) => unknown;
      ferry[name] = (FERRY_BLOCKING as readonly string[]).includes(name) ? this.#wrap(call) : call;
    }
    const budget = new PollBudget(performance.now());
    const throttle = new Throttle(performance.now());
    // What every countdown's end does first: count the CPU, serve a throttle or a pause; the time after.
    const pace = (): number => {
      this.#tellFiles();
      const now_ms = performance.now();
      usage.tick(now_ms);
      throttle.hold(now_ms);
      return Atomics.load(control, SLOT_REQUEST) === Request.none ? holdWhileAsked(performance.now()) : now_ms;
    };
    const poll = this.#wrap((() => {
      const now_ms = pace();
      const request = Atomics.load(control, SLOT_REQUEST);
      if (request === Request.suspend) this.#suspending = true;
      else if (request === Request.halt) throw new Halted();
      return budget.next(now_ms);
    }) as (...args: never[]) => unknown);
    // The countdown of a function that can run again from its start (instrument/_restart.ts): never unwinds.
    // 0 when a safe point is wanted: the function leaves, and its instrumented copy runs instead, up to its first poll.
    const poll_restartable = (): number => {
      const now_ms = pace();
      return Atomics.load(control, SLOT_REQUEST) === Request.none ? budget.next(now_ms) : 0;
    };
    this.instance = new WebAssembly.Instance(module, {
      wasi_snapshot_preview1: wrapped as WebAssembly.ModuleImports,
      [FERRY_MODULE]: { ...ferry, [POLL_IMPORT.name]: poll, [RESTART_POLL_IMPORT.name]: poll_restartable } as WebAssembly.ModuleImports,
    });
    this.memory = this.instance.exports["memory"] as WebAssembly.Memory;
    // A standby's memory stays zero: its image says what is there.
    if (init.data !== undefined && init.start.kind === "fresh") writeData(this.memory, init.data);
    this.#asyncify = this.instance.exports as unknown as AsyncifyExports;
    this.#host?.bindMemory(this.memory);
  }

  /**
   * Every import that can suspend goes through here: on the way back in after
   * a rewind it ends the rewind first; on the way out it starts the unwind.
   */
  #wrap(fn: (...args: never[]) => unknown): (...args: never[]) => unknown {
    return (...args: never[]) => {
      if (this.#rewinding) this.#finishRewind();
      const result = fn(...args);
      if (this.#suspending) this.#startUnwind();
      return result;
    };
  }

  #startUnwind(): void {
    const bound = unwindBoundFromCounters(init.info.unwind, this.instance.exports) ?? unwindBoundBytes(init.info.frame_bytes, init.info.layout);
    this.#region = borrowTop(this.memory, bound);
    this.#asyncify.asyncify_start_unwind(prepareUnwind(this.memory, this.#region));
  }

  #finishRewind(): void {
    this.#asyncify.asyncify_stop_rewind();
    this.#rewinding = false;
    if (this.#region !== null) giveBack(this.memory, this.#region);
    this.#region = null;
    post({ type: "running", at_ms: performance.timeOrigin + performance.now() });
  }

  /** Runs (or continues) the guest until it exits, traps or unwinds. */
  run(): void {
    let outcome: FromWorker;
    usage.running(performance.now());
    try {
      (this.instance.exports[init.entry] as () => void)();
      if (this.#asyncify.asyncify_get_state() === AsyncifyState.unwinding) {
        const idle = this.#idle;
        this.#idle = null;
        const state = this.#capture();
        // Its host time is taken after the capture read the guest's clock: a wake continues the clock from here, at the host's pace.
        outcome = idle === null ? { type: "suspended", state } : { type: "suspended", state, idle: { ...idle, host_ns: process.hrtime.bigint() } };
      } else {
        outcome = { type: "exit", code: 0 };
      }
    } catch (err: unknown) {
      if (err instanceof ProcExit) outcome = { type: "exit", code: err.code };
      else outcome = { type: "trap", message: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
    }
    if (this.#rewinding && outcome.type !== "suspended") {
      // A rewind ends in the import the guest was suspended in; a guest that
      // ends or traps before reaching it was given a stack that does not fit
      // its code. That is the image's fault, not the program's.
      const how = outcome.type === "exit" ? `returned with status ${outcome.code}` : `trapped (${outcome.message})`;
      outcome = { type: "error", code: "ERR_RESTORE_STATE", message: `the image's stack does not fit the module: the guest ${how} while its stack was rewound` };
    }
    usage.stopped(performance.now());
    if (outcome.type !== "suspended") {
      this.host.close();
      offerCodeCache();
    }
    this.#tellFiles();
    // A suspended stack's bytes (megabytes for a deep one) move to the
    // controller instead of being copied (the worker keeps its own copy).
    post(outcome, outcome.type === "suspended" ? [outcome.state.asyncify.buffer as ArrayBuffer] : []);
  }

  #capture(): SuspendedState {
    this.#asyncify.asyncify_stop_unwind();
    const region = this.#region as BorrowedRegion;
    const asyncify = unwoundBytes(this.memory, region);
    giveBack(this.memory, region);
    this.#region = null;
    this.#suspending = false;
    Atomics.store(control, SLOT_REQUEST, Request.none);
    const globals = readGlobals(this.instance, init.info.globals);
    const stdin = this.stdin.capture();
    this.#last = { globals, asyncify: keptCopy(asyncify), stdin };
    return {
      globals,
      asyncify,
      wasi: this.host.capture(),
      stdout_bytes: this.host.stdout_bytes,
      stderr_bytes: this.host.stderr_bytes,
      stdin_pending: stdin.pending,
      stdin_eof: stdin.eof,
    };
  }

  /** Continues from a captured stack (after a restore, or in place after a suspend). */
  rewind(globals: GlobalBits[], asyncify: Uint8Array): void {
    try {
      writeGlobals(this.instance, globals);
      this.#region = borrowTop(this.memory, asyncify.length);
      this.#rewinding = true;
      this.#asyncify.asyncify_start_rewind(prepareRewind(this.memory, this.#region, asyncify));
    } catch (err: unknown) {
      // The controller checks globals and sizes first; this catches what only the engine can tell.
      this.host.close();
      post({ type: "error", code: "ERR_RESTORE_STATE", message: `cannot take up the image's globals and stack: ${err instanceof Error ? err.message : String(err)}` });
      return;
    }
    this.run();
  }

  resumeInPlace(): void {
    const last = this.#last;
    if (last === null) throw new Error("resume without a suspend");
    this.stdin.reopen(last.stdin.pending, last.stdin.eof);
    this.rewind(last.globals, last.asyncify);
  }
}

/**
 * Writes the data segments held back from the module (`_compiled.ts`) as
 * its instantiation would have, its pages backed in bulk first: V8's own
 * copy faulted them in one 4 KiB page at a time (flite's 15 MB: 44–53 ms
 * here, 31 ms so). A segment past the end of memory fails the start as it
 * would have failed the instantiation.
 */
function writeData(memory: WebAssembly.Memory, data: HeldData): void {
  const bytes = new Uint8Array(data.bytes);
  for (const { offset, at, length } of data.segments) {
    if (offset + length > memory.buffer.byteLength) throw new WebAssembly.RuntimeError(`data segment at ${offset} (${length} bytes) is out of bounds of memory (${memory.buffer.byteLength} bytes)`);
    const into = new Uint8Array(memory.buffer, offset, length);
    backPages(into);
    into.set(bytes.subarray(at, at + length));
  }
}

function readGlobals(instance: WebAssembly.Instance, list: WorkerInit["info"]["globals"]): GlobalBits[] {
  const scratch = new DataView(new ArrayBuffer(8));
  return list.map(({ export_name, type }) => {
    const value = (instance.exports[export_name] as WebAssembly.Global).value as number | bigint;
    let bits: bigint;
    if (type === "i32") bits = BigInt((value as number) >>> 0);
    else if (type === "i64") bits = BigInt.asUintN(64, value as bigint);
    else if (type === "f32") {
      scratch.setFloat32(0, value as number, true);
      bits = BigInt(scratch.getUint32(0, true));
    } else {
      scratch.setFloat64(0, value as number, true);
      bits = scratch.getBigUint64(0, true);
    }
    return { name: export_name, type, bits };
  });
}

/**
 * Gives the controller V8's code cache of this worker's script, once, when
 * it had none that V8 took (`_worker_code.ts`): made after a guest ran, it
 * holds what the guest's run compiled. Before the guest's end is posted, so
 * that a controller that ends now (`ferry exec`) still gets it; it costs
 * that end about a millisecond, once per controller.
 */
function offerCodeCache(): void {
  const state = (globalThis as Record<symbol, unknown>)[WORKER_SCRIPT_KEY] as WorkerScriptState | undefined;
  if (state === undefined || !state.cache_wanted) return;
  state.cache_wanted = false;
  post({ type: "code-cache", bytes: state.script.createCachedData() });
}

function writeGlobals(instance: WebAssembly.Instance, globals: GlobalBits[]): void {
  const scratch = new DataView(new ArrayBuffer(8));
  for (const { name, type, bits } of globals) {
    const global = instance.exports[name] as WebAssembly.Global | undefined;
    if (global === undefined) throw new Error(`image names global ${name}, which the module lacks`);
    if (type === "i32") global.value = Number(BigInt.asIntN(32, bits));
    else if (type === "i64") global.value = BigInt.asIntN(64, bits);
    else if (type === "f32") {
      scratch.setUint32(0, Number(bits), true);
      global.value = scratch.getFloat32(0, true);
    } else {
      scratch.setBigUint64(0, bits, true);
      global.value = scratch.getFloat64(0, true);
    }
  }
}

function start(given: WorkerInit): void {
  // Every guest's state in this module is set here: a worker from the pool ran another guest before.
  init = given;
  control = new Int32Array(init.control);
  usage = new UsageCounter(init.usage);
  throttled_ns = 0n;
  let guest: Guest;
  try {
    guest = new Guest();
    guest.instantiate();
  } catch (err: unknown) {
    const code = (err as { code?: unknown }).code;
    post({ type: "error", code: knownCode(code, "ERR_WORKER"), message: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  }
  post({ type: "ready", memory: guest.memory });
  const listener = (msg: ToWorker): void => {
    if (msg.type === "recycle") {
      port.off("message", listener);
      recycle(guest, msg.discard === true, msg.ending === true);
      return;
    }
    if (msg.type === "run") guest.run();
    else if (msg.type === "activate") {
      try {
        guest.activate(msg.wasi, msg.preopens, msg.clock_host_ns, msg.net);
      } catch (err: unknown) {
        const code = (err as { code?: unknown }).code;
        post({ type: "error", code: knownCode(code, "ERR_WORKER"), message: err instanceof Error ? err.message : String(err) });
        return;
      }
      // Gated: the controller readies what the guest needs once it runs (a destination's relay, links, post-copy's drops)
      // and opens the gate; a move dropped stops this worker.
      if (msg.gated === true && !gateOpened()) return;
      // At once, without a word to the controller in between: it waits for `running` only.
      guest.rewind(msg.globals, msg.asyncify);
    } else if (msg.type === "touch") {
      backStandby(new Uint8Array(guest.memory.buffer, 0, Math.min(msg.bytes, guest.memory.buffer.byteLength)));
      post({ type: "touched" });
    } else guest.resumeInPlace();
  };
  port.on("message", listener);
}

/**
 * A guest's memory at least this large is collected from this isolate as
 * soon as the worker drops it: its pages stay mapped while any isolate holds
 * the memory, and an idle worker allocates nothing that would make V8
 * collect. Smaller ones go at the next guest's first collection.
 */
const RECYCLE_COLLECT_BYTES_MIN = 4 * 1024 * 1024;

/**
 * Drops `guest` (it ended, or hibernated and its state is with the
 * controller): its host files are closed, the stack save area that held
 * its bytes is freed, and the worker waits for its next init as a warm one
 * does (start() sets the rest of this module's state anew). `discard`: its
 * memory's pages are given back to the kernel first, here rather than on
 * the node's thread (a memory whose huge pages dirty tracking split takes
 * tens of ms for a GiB). `ending`: the pool has no room, and the worker is
 * ended once it answers.
 */
function recycle(guest: Guest, discard: boolean, ending: boolean): void {
  const bytes = guest.memory.buffer.byteLength;
  if (discard) discardPages(new Uint8Array(guest.memory.buffer));
  // Closed already after an exit or a trap; after a hibernation they are reopened from the captured state by the next worker.
  guest.closeHost();
  dropSaveArea();
  // After this function returns nothing holds the guest: collect then, not with it still on the stack.
  setImmediate(() => {
    // A worker about to be ended gives its isolate back whole: a collection first would be 7-19 ms of CPU for nothing.
    if (bytes >= RECYCLE_COLLECT_BYTES_MIN && !ending) collectNow();
    post({ type: "recycled" });
    port.once("message", (given: WorkerInit) => start(given));
  });
}

/**
 * Runs the WASI state's capture and restore {@link REHEARSALS} times on a
 * host of its own that does nothing, so that the real one in this isolate
 * does not run cold: a restore of a migration's destination (parsing the
 * state, building the host and its imports) took 0.36-0.50 ms the first
 * time in an isolate with a node's V8 flags (1.5 ms without) and 0.09-0.13
 * ms the second (`WasiHost.restore` of a memhog's state, timed alone), and
 * it is part of the downtime. In a warm worker waiting in the pool.
 */
function rehearse(): void {
  const deps = idleDeps();
  const host = new WasiHost({ args: ["rehearsal"], env: ["A=B"], preopens: [] }, deps);
  const state = host.capture();
  for (let i = 0; i < REHEARSALS; i += 1) WasiHost.restore(state, deps, { preopens: [] }).imports();
}

/**
 * Rehearsed once, a standby still took 0.37-0.90 ms from the activation to
 * its WASI state taken up (medians 0.56 and 0.58 ms over two runs of 12
 * post-copy moves of 1 GiB, traced); rehearsed 10 times, 0.29-0.61 (medians
 * 0.41 and 0.48), as 60 times did (0.41, 0.46). The nine more took 1.0-2.0
 * ms of a new worker's start (timed in eight fresh workers), off any move's
 * path.
 */
const REHEARSALS = 10;

// Before any guest: not in an unwind or a rewind, which may be a migration's downtime.
loadBacking();
if (boot.kind === "init") start(boot.init);
else {
  rehearse();
  port.once("message", (given: WorkerInit) => start(given));
}

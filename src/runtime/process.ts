/**
 * Controller side of one guest process: starts or restores it in a worker,
 * relays its I/O, suspends it on request and exposes its memory in place.
 */
import path from "node:path";
import type { Worker } from "node:worker_threads";
import type { Readable } from "node:stream";
import { WASM_MEMORY_BYTES_MAX, WASM_PAGE_BYTES } from "../process_spec.js";
import { FerryError, ImageError, ImageErrorCodes, RestoreError, RuntimeError } from "../errors.js";
import { instantiationWrites } from "../instrument/_binary.js";
import { loadInstrumented, moduleHash, type CacheOptions, type InstrumentInfo, type InstrumentThread, type StageListener } from "../instrument/mod.js";
import { sparsePages, writeMemory, type DecodedImage, type ProcessImage } from "../image/mod.js";
import type { ConnRef, Preopen, RestoreGrant, StdioKinds } from "../wasi/mod.js";
import {
  allocateControl,
  allocateRings,
  Gate,
  LANE_AREA_BYTES,
  LANE_AREA_OFFSET,
  LANE_KEY_BYTES,
  LaneState,
  MigrateSlot,
  NET_LANE_KEY_OFFSET,
  Request,
  SLOT_GATE,
  SLOT_HIBERNATE_MS,
  SLOT_INBOX_BACKLOG,
  SLOT_LANE_BASE_HI,
  SLOT_LANE_BASE_LO,
  SLOT_LANE_BROKEN,
  SLOT_LANE_BUSY,
  SLOT_LANE_FD,
  SLOT_LANE_GEN,
  SLOT_LANE_IN_FLIGHT,
  SLOT_LANE_MARK,
  SLOT_LANE_PID_LEN,
  SLOT_LANE_STATE,
  SLOT_MIGRATE,
  SLOT_NET_LANE_BROKEN,
  SLOT_NET_LANE_BUSY,
  SLOT_NET_LANE_FD,
  SLOT_NET_LANE_GEN,
  SLOT_NET_LANE_STATE,
  OUTBOX_MAX,
  SLOT_OUT_PENDING,
  SLOT_OUTBOX_SIGNALLED,
  SLOT_OUTBOX_TAIL,
  SLOT_OUTBOX_WAITING,
  SLOT_REQUEST,
  SLOT_STDIN_LEN,
  SLOT_THROTTLE,
  THROTTLE_PCT_MAX,
  wake,
  type ControlBuffers,
} from "./_control.js";
import { inboxRing, outboxRing, PID_BYTES_MAX, type InboxMessage, type MessageRing } from "./_inbox.js";
import { NET_AREA_BYTES, NetArea } from "./_net_area.js";
import type { FromWorker, GlobalBits, IdleWait, OutputTarget, OutputWire, SuspendedState, ToWorker, WorkerInit } from "./_protocol.js";
import { HIBERNATE_AFTER_MS_MAX, recordWake, SleepingMemory, WakeWatch, worthHibernating } from "./_hibernate.js";
import { StdinPump } from "./stdin.js";
import { imageMisfit } from "./_restore_checks.js";
import { reclaimSoon } from "./_reclaim.js";
import { canDiscard } from "./_backing.js";
import { UsageView, type GuestUsage } from "./_usage.js";
import { recycleWorker, takeWorker } from "./_warm.js";
import { keepCodeCache } from "./_worker_code.js";
import { compiledModule, type CompiledModule } from "./_compiled.js";

/** The export a WASI command starts through. */
const ENTRY_EXPORT = "_start";

const utf8 = new TextEncoder();

/** Senders' pids as the inbox stores them, encoded once: a batch from the network holds one sender's messages, each of which needed its pid's bytes (5% of a node's busy time streaming small messages). */
const pid_bytes = new Map<string, Uint8Array>();
/** Pids kept encoded at most; past it the cache starts again (a node's guests hear from few senders at a time). */
const PID_BYTES_CACHED_MAX = 256;

function pidBytes(pid: string): Uint8Array {
  let bytes = pid_bytes.get(pid);
  if (bytes === undefined) {
    if (pid_bytes.size >= PID_BYTES_CACHED_MAX) pid_bytes.clear();
    bytes = utf8.encode(pid);
    pid_bytes.set(pid, bytes);
  }
  return bytes;
}

// wasm32 addresses 4 GiB at most (WASM_MEMORY_BYTES_MAX): the cap of a process that is given none.

/** What to run. */
export interface ProcessSpec {
  /** The original (uninstrumented) module. */
  wasm: Uint8Array;
  /** Where the module was found; recorded in images so `resume` can find it. */
  module_path: string;
  args: string[];
  env: string[];
  preopens: Preopen[];
  /** Listening sockets (addresses, for the record); they need {@link ProcessIo.net}. */
  listeners?: string[];
  /** Most bytes its memory may grow to, whole wasm pages (default and most: 4 GiB); see {@link GuestProcess.memory_max_bytes}. */
  memory_max_bytes?: number;
  /** What its standard streams are, as the guest will see them (default: three pipes); they travel with its image. */
  stdio?: StdioKinds;
}

/** Options of {@link GuestProcess.standby}. */
export interface StandbyOptions {
  /** Where the module was found (recorded in images). */
  module_path?: string;
  /** As {@link ProcessSpec.memory_max_bytes}. */
  memory_max_bytes?: number;
}

/** Where a process's I/O goes. */
export interface ProcessIo {
  /** Input stream; `null` (default) means input is at its end. */
  stdin?: Readable | null;
  stdout: OutputTarget;
  stderr: OutputTarget;
  /** Instrumentation cache folder; `null` disables it. */
  cache_dir?: string | null;
  /** Told when each step of instrumenting the module starts (nothing on a cache hit): a CLI shows progress with it. */
  on_instrument_stage?: StageListener;
  /** Where the module is instrumented when not cached (see {@link CacheOptions.thread}); "auto" unless told. */
  instrument_thread?: InstrumentThread;
  /** Links to other processes (a node gives them); without, the guest's `ferry` imports answer ENOSYS. */
  links?: LinkHooks;
  /** Relays the guest's TCP connections (a node gives it); without, the guest has no sockets. */
  net?: NetHooks;
  /**
   * Hibernates the guest after this many milliseconds of one blocking wait
   * (see `_hibernate.ts`): its worker ends and its pages are kept, until
   * the wait ends. 0 or absent: never.
   */
  hibernate_after_ms?: number;
}

/**
 * Where the guest's TCP traffic goes (called on the controlling thread, in
 * the order the guest acted). Incoming bytes go the other way, through
 * {@link GuestProcess.net}.
 */
export interface NetHooks {
  /** Called once with the process, before its guest runs. */
  bind(proc: GuestProcess): void;
  /**
   * Outgoing bytes of a connection, starting at stream offset `offset`;
   * `lane`, the generation of the net lane the worker wrote them on too (0:
   * none, see {@link GuestProcess.offerNetLane}).
   */
  send(conn: ConnRef, offset: number, bytes: Uint8Array, lane: number): void;
  /** The guest shut its write side after `offset` bytes. */
  shutdown(conn: ConnRef, offset: number): void;
  /** The guest closed the connection; its outgoing stream ends at `offset`. */
  close(conn: ConnRef, offset: number): void;
  /** The guest closed a listening socket. */
  unlisten(listener: number): void;
  /** The guest read from a connection (its ring has room; its read position moved). */
  read(conn: ConnRef): void;
}

/** How a process's messages and its own migration requests reach its node (called on the controlling thread). */
export interface LinkHooks {
  /** The process's pid, as the guest reads it. */
  pid: string;
  /** Called once with the process, before its guest runs. */
  bind(proc: GuestProcess): void;
  /**
   * The guest sent a message (calls come in the order it sent them). `seq`:
   * the number its worker gave it under a lane's lease (0: none, the links
   * number it); `lane`: its delivery id on that lane (0: not sent there).
   */
  send(to: string, data: Uint8Array, seq?: number, lane?: number): void;
  /** The guest asks to be moved to `node`; answer with {@link GuestProcess.migrateAnswer}. */
  migrate(node: string): void;
  /** The guest read a message while a backlog was flagged: there may be room in its inbox. */
  room(): void;
}

/**
 * How a process ended. A guest's exit is a value; `killed` is a process its
 * controller terminated.
 */
export type ExitStatus =
  | { kind: "exit"; code: number }
  | { kind: "trap"; message: string }
  | { kind: "killed" }
  /** Its state could not be kept (a post-copy source died with pages still there); `message` says what was lost. */
  | { kind: "lost"; message: string };

/** A suspended process's state, as the worker handed it over. */
export interface Suspension {
  state: SuspendedState;
  /** Milliseconds from the request to the stack being unwound. */
  suspend_ms: number;
}

/** Timings of a start or restore. */
export interface StartTimings {
  instrument_ms: number;
  instrument_cached: boolean;
  /** From the call to the guest running (rewound, for a restore). */
  start_ms: number;
}

/**
 * `hibernated`: running as far as anyone outside can tell, but with no
 * worker, its state kept here until its wait ends; `waking`: a worker is
 * taking that state up again.
 */
type Phase = "starting" | "standby" | "running" | "suspending" | "suspended" | "hibernated" | "waking" | "ended";

/** A process's message rings: one shared buffer, both ends' views of it. */
interface Rings {
  buffer: SharedArrayBuffer;
  inbox: MessageRing;
  outbox: MessageRing;
}

/** A hibernated guest: what its worker handed over, its pages, and what wakes it. */
interface Sleep {
  state: SuspendedState;
  memory: SleepingMemory;
  idle: IdleWait;
  watch: WakeWatch;
}

/** How to instrument a process's module: its cache, its name for messages, who hears of progress. */
function instrumentOptions(io: ProcessIo, module_path: string): CacheOptions {
  return {
    ...(io.cache_dir !== undefined ? { cache_dir: io.cache_dir } : {}),
    name: path.basename(module_path),
    ...(io.on_instrument_stage !== undefined ? { on_stage: io.on_instrument_stage } : {}),
    ...(io.instrument_thread !== undefined ? { thread: io.instrument_thread } : {}),
  };
}

/** A guest process under this thread's control. */
export class GuestProcess {
  readonly info: InstrumentInfo;
  readonly module_path: string;
  /**
   * Most bytes its memory may grow to. A real limit: the engine refuses the
   * guest's `memory.grow` past it (the guest sees -1, as when a machine is
   * out of memory), and {@link growTo} refuses it too.
   */
  readonly memory_max_bytes: number;
  readonly exited: Promise<ExitStatus>;
  readonly timings: StartTimings;
  #worker: Worker;
  /** Set by the worker's `ready`; none while hibernated (a worker's memory must not outlive it, or hibernating saves nothing). */
  #memory: WebAssembly.Memory | undefined;
  #buffers: ControlBuffers;
  #control: Int32Array;
  #pump: StdinPump;
  #io: ProcessIo;
  #phase: Phase = "starting";
  #resolveExit!: (status: ExitStatus) => void;
  #waiters: ((msg: FromWorker) => boolean)[] = [];
  #open_files: string[] = [];
  #before_terminate: (() => void) | null = null;
  /** Dropped while the guest hibernates with both rings empty; made again by the first message or the wake ({@link #ringsNow}). */
  #rings: Rings | null;
  /** A wake for messages put in the inbox is due at the end of this turn. */
  #inbox_wake = false;
  /** The pid of the last lane lease offered (see {@link lanePid}). */
  #lane_pid = "";
  readonly #usage: UsageView;
  /** Held by the --cpus scheduler ({@link hold}), and by fencing ({@link fence}). */
  #scheduler_hold = false;
  #fenced = false;
  /**
   * The connection slots (4 MiB): made when the guest has sockets (listeners
   * at its start, a state with sockets, the relay's first use), never for
   * one without, and then kept.
   */
  #net: { buffer: SharedArrayBuffer; area: NetArea } | null = null;
  /** What every worker of the process is started with; see {@link #workerInit}. */
  readonly #init: Omit<WorkerInit, "inbox" | "net" | "start">;
  readonly #hibernate_after_ms: number;
  /** Holders of {@link stayAwake}: while any, the guest does not hibernate. */
  #pins = 0;
  #sleep: Sleep | null = null;
  #hibernations = 0;
  #waking: Promise<void> | null = null;
  /** Told when the guest hibernates (true) and when it starts waking (false); see {@link onSleep}. */
  #on_sleep: ((asleep: boolean) => void) | null = null;

  private constructor(
    instrumented: { wasm: Uint8Array; info: InstrumentInfo; cached: boolean },
    code: CompiledModule,
    options: { module_path: string; memory_max_bytes: number },
    start: WorkerInit["start"],
    io: ProcessIo,
    stdin: { pending: Uint8Array; ended: boolean },
  ) {
    this.info = instrumented.info;
    this.module_path = options.module_path;
    this.memory_max_bytes = options.memory_max_bytes;
    this.timings = { instrument_ms: instrumented.info.instrument_ms, instrument_cached: instrumented.cached, start_ms: 0 };
    this.#io = io;
    this.#buffers = allocateControl();
    this.#control = new Int32Array(this.#buffers.control);
    this.#pump = new StdinPump(this.#control, this.#buffers.stdin, stdin.pending, stdin.ended);
    this.exited = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
    this.#rings = null;
    this.#usage = new UsageView(this.#buffers.usage);
    if (start.kind === "fresh" && (start.config.listeners ?? []).length > 0 && io.net !== undefined) this.#netArea();
    io.links?.bind(this);
    io.net?.bind(this);
    this.#init = {
      // Compiled already: the worker only instantiates it (`_compiled.ts`), and needs no bytes.
      ...(code.module !== null ? { module: code.module, wasm: new Uint8Array(0) } : { wasm: code.wasm }),
      ...(code.data !== null ? { data: code.data } : {}),
      info: instrumented.info,
      entry: ENTRY_EXPORT,
      control: this.#buffers.control,
      stdin: this.#buffers.stdin,
      usage: this.#buffers.usage,
      pid: io.links?.pid ?? null,
      stdout: wire(io.stdout),
      stderr: wire(io.stderr),
    };
    const hibernate_after_ms = io.hibernate_after_ms ?? 0;
    if (!Number.isSafeInteger(hibernate_after_ms) || hibernate_after_ms < 0 || hibernate_after_ms > HIBERNATE_AFTER_MS_MAX) {
      throw new RangeError(`hibernation is after 0 (never) to ${HIBERNATE_AFTER_MS_MAX} ms, not ${hibernate_after_ms}`);
    }
    this.#hibernate_after_ms = hibernate_after_ms;
    Atomics.store(this.#control, SLOT_HIBERNATE_MS, hibernate_after_ms);
    this.#worker = this.#startWorker(this.#workerInit(start));
  }

  /** A worker's init: the buffers the process has now (its rings made if dropped). */
  #workerInit(start: WorkerInit["start"]): WorkerInit {
    return { ...this.#init, inbox: this.#ringsNow().buffer, net: this.#net?.buffer ?? null, start };
  }

  #ringsNow(): Rings {
    if (this.#rings === null) {
      const buffer = allocateRings();
      this.#rings = { buffer, inbox: inboxRing(buffer, this.#control), outbox: outboxRing(buffer, this.#control) };
    }
    return this.#rings;
  }

  #netArea(): NetArea {
    if (this.#net === null) {
      const buffer = new SharedArrayBuffer(NET_AREA_BYTES);
      this.#net = { buffer, area: new NetArea(buffer) };
    }
    return this.#net.area;
  }

  #startWorker(init: WorkerInit): Worker {
    const worker = takeWorker(init);
    worker.on("message", (msg: FromWorker) => this.#onMessage(msg));
    worker.on("error", (err) => this.#end({ kind: "trap", message: `worker failed: ${err.message}` }));
    worker.on("exit", () => this.#end({ kind: "trap", message: "worker exited unexpectedly" }));
    return worker;
  }

  /** Starts a fresh process. Resolves once the guest runs. */
  static async start(spec: ProcessSpec, io: ProcessIo): Promise<GuestProcess> {
    const t0 = performance.now();
    const instrumented = await loadInstrumented(spec.wasm, instrumentOptions(io, spec.module_path));
    const memory_max_bytes = checkCap(instrumented.info, spec.memory_max_bytes);
    const code = await compiledModule(instrumented, memory_max_bytes);
    const config = { args: spec.args, env: spec.env, preopens: spec.preopens, listeners: spec.listeners ?? [], ...(spec.stdio === undefined ? {} : { stdio: spec.stdio }) };
    const start = { kind: "fresh", config } as const;
    const proc = new GuestProcess(instrumented, code, { module_path: spec.module_path, memory_max_bytes }, start, io, { pending: new Uint8Array(0), ended: false });
    await proc.#ready();
    proc.#pump.attach(io.stdin ?? null);
    proc.#send({ type: "run" });
    proc.#phase = "running";
    proc.timings.start_ms = performance.now() - t0;
    return proc;
  }

  /**
   * Restores a process from a checked image and the module it names, and
   * resumes it. Resolves once the guest runs again. `grant.preopens` are the
   * directories this side gives it, matched to the image's by guest path: the
   * host paths an image records are never opened (see {@link activate}).
   */
  static async restore(image: DecodedImage, wasm: Uint8Array, io: ProcessIo, grant: RestoreGrant): Promise<GuestProcess> {
    const t0 = performance.now();
    const hash = moduleHash(wasm);
    if (hash !== Buffer.from(image.module_sha256).toString("hex")) {
      throw new ImageError(ImageErrorCodes.moduleMismatch, `image was taken from module ${Buffer.from(image.module_sha256).toString("hex")}, not ${hash}`);
    }
    const proc = await GuestProcess.standby(wasm, io, { module_path: image.meta.module_path });
    try {
      proc.growTo(image.memory.size_bytes);
      writeMemory(image, new Uint8Array(proc.memory.buffer));
      await proc.activate(image, grant);
    } catch (err: unknown) {
      await proc.terminate();
      throw err;
    }
    proc.timings.start_ms = performance.now() - t0;
    return proc;
  }

  /**
   * A process instantiated but not yet given its state: a migration's
   * destination prepares one while the source still runs, writes pages into
   * its memory as they arrive, and activates it with the rest of the image.
   * Its memory starts all zero.
   */
  static async standby(wasm: Uint8Array, io: ProcessIo, options: StandbyOptions = {}): Promise<GuestProcess> {
    const instrumented = await loadInstrumented(wasm, instrumentOptions(io, options.module_path ?? "module.wasm"));
    const memory_max_bytes = checkCap(instrumented.info, options.memory_max_bytes);
    const code = await compiledModule(instrumented, memory_max_bytes);
    const proc = new GuestProcess(instrumented, code, { module_path: options.module_path ?? "module.wasm", memory_max_bytes }, { kind: "standby" }, io, {
      pending: new Uint8Array(0),
      ended: false,
    });
    const memory = await proc.#ready();
    // Wipe what instantiation wrote (data segments): the image says what is there. Held back, they were not written.
    if (code.data === null) wipeInstantiation(new Uint8Array(memory.buffer), instrumented.wasm);
    proc.#phase = "standby";
    return proc;
  }

  /**
   * Grows a standby's memory to `size_bytes` and has every page of it backed
   * now, in the worker's thread (`backStandby`): the writes that fill it
   * later then cost a copy, not a page fault each. Only for a standby with
   * nothing in it yet.
   */
  async reserve(size_bytes: number): Promise<void> {
    if (this.#phase !== "standby") throw new RuntimeError("ERR_PROCESS_STATE", `cannot reserve memory for a process that is ${this.#phase}`);
    this.growTo(size_bytes);
    const touched = this.#expect((m) => m.type === "touched");
    this.#send({ type: "touch", bytes: size_bytes });
    await touched;
  }

  /**
   * Grows a standby's memory to `size_bytes` (never shrinks). A size the
   * module's memory cannot reach is ERR_RESTORE_STATE.
   */
  growTo(size_bytes: number): void {
    const current = this.#live().buffer.byteLength;
    if (!Number.isSafeInteger(size_bytes) || size_bytes % WASM_PAGE_BYTES !== 0 || size_bytes > WASM_MEMORY_BYTES_MAX) {
      throw new ImageError(ImageErrorCodes.malformed, `memory of ${size_bytes} bytes is not a whole number of wasm pages up to 4 GiB`);
    }
    if (size_bytes > this.memory_max_bytes) {
      throw new RuntimeError("ERR_MEMORY_LIMIT", `memory of ${size_bytes} bytes is over the process's cap of ${this.memory_max_bytes}`);
    }
    if (size_bytes <= current) return;
    const maximum_bytes = this.info.memory.maximum_pages * WASM_PAGE_BYTES;
    if (size_bytes > maximum_bytes) {
      throw new RestoreError("ERR_RESTORE_STATE", `a memory of ${size_bytes} bytes does not fit this module, whose memory is at most ${maximum_bytes} bytes`);
    }
    try {
      this.#live().grow((size_bytes - current) / WASM_PAGE_BYTES);
    } catch (cause: unknown) {
      // The engine refuses what the module allows when the machine is short of address space.
      throw new RestoreError("ERR_RESTORE_STATE", `cannot grow the memory to ${size_bytes} bytes: ${(cause as Error).message}`, { cause });
    }
  }

  /**
   * Gives a standby the rest of its state (its memory already written) and
   * resumes it, with the directories `grant` names for the preopens the
   * image recorded (matched by guest path; every one must be granted, and
   * nothing else). Each file or directory the process had open is opened
   * again inside them, through the same resolution as a guest's own paths.
   * Throws RestoreError: ERR_RESTORE_PREOPEN for a directory not granted or
   * missing here, ERR_RESTORE_FILE for a file missing or leading outside,
   * ERR_RESTORE_STATE if its state does not fit the module or cannot be
   * taken up (globals, stack, instrumenter, or a guest that fails before its
   * stack is rewound); the process has then ended.
   *
   * The whole state goes to the worker in one message, which takes up the
   * WASI state and rewinds the stack at once: one round trip to the worker
   * (a migration's downtime pays for each). The message is posted before
   * this returns its promise, so the caller may work on this thread while
   * the worker restores.
   *
   * `gated`: the worker takes up the WASI state, then rewinds only once
   * {@link openGate} is called, so the caller may ready what the guest
   * needs once it runs (a migration's destination: the output relay,
   * links, connection slots, post-copy's drops) while the worker restores
   * rather than before; until then nothing of the guest runs and its
   * memory is not read. A terminate() meanwhile stops the worker before it
   * rewinds.
   *
   * Resolves with the moment the guest ran again, as
   * `performance.timeOrigin + performance.now()` (ms): the other threads of
   * this process read that clock on the same scale.
   */
  async activate(image: Pick<ProcessImage, "instrumenter" | "wasi" | "globals" | "stack" | "streams" | "memory">, grant: RestoreGrant, options: { gated?: boolean } = {}): Promise<number> {
    if (this.#phase !== "standby") throw new RuntimeError("ERR_PROCESS_STATE", `cannot activate a process that is ${this.#phase}`);
    if (this.#live().buffer.byteLength !== image.memory.size_bytes) {
      throw new ImageError(ImageErrorCodes.malformed, `image memory of ${image.memory.size_bytes} bytes does not fit a module whose memory is ${this.#live().buffer.byteLength}`);
    }
    const problem = imageMisfit(image, this.info, ENTRY_EXPORT);
    if (problem !== null) throw new RestoreError("ERR_RESTORE_STATE", `the image does not fit this module: ${problem}`);
    // Its worker started as a standby, without connection slots: a state with sockets takes them along.
    if (this.#io.net !== undefined && hasSockets(image.wasi)) this.#netArea();
    this.#pump.preload(image.streams.stdin_pending, image.streams.stdin_eof);
    const running = this.#expect((m) => m.type === "running");
    this.#pump.attach(this.#io.stdin ?? null);
    this.#send({
      type: "activate",
      wasi: image.wasi,
      preopens: grant.preopens.map((p) => ({ host_path: p.host_path, guest_path: p.guest_path })),
      globals: image.globals as GlobalBits[],
      asyncify: image.stack.asyncify,
      ...(this.#net === null ? {} : { net: this.#net.buffer }),
      ...(options.gated === true ? { gated: true } : {}),
    });
    this.#phase = "running";
    try {
      return ((await running) as Extract<FromWorker, { type: "running" }>).at_ms;
    } catch (cause: unknown) {
      // What the worker reported (a preopen or file not there, a stack that does not fit) goes as it is; a guest that ended first is the image's fault.
      if (cause instanceof FerryError && !(cause instanceof RuntimeError)) throw cause;
      throw new RestoreError("ERR_RESTORE_STATE", `the process could not be resumed from its image: ${(cause as Error).message}`, { cause });
    }
  }

  /** Whether a worker activated with `gated` has taken up the state and waits for {@link openGate}. */
  get atGate(): boolean {
    return Atomics.load(this.#control, SLOT_GATE) === Gate.waiting;
  }

  /** Lets a worker activated with `gated` rewind its guest (see {@link activate}). */
  openGate(): void {
    Atomics.store(this.#control, SLOT_GATE, Gate.open);
    Atomics.notify(this.#control, SLOT_GATE);
  }

  /** Hands what the guest sent to its links, and wakes a `send` that waits for room. */
  #drainOutbox(): void {
    // No rings: no worker has written to them since they were dropped empty.
    const rings = this.#rings;
    if (rings === null) return;
    if (Atomics.load(this.#control, SLOT_OUTBOX_SIGNALLED) === 0 && rings.outbox.empty) return;
    // Cleared before the drain: a send after it signals again, so nothing written is left unseen.
    Atomics.store(this.#control, SLOT_OUTBOX_SIGNALLED, 0);
    const sent = rings.outbox.drain();
    for (const m of sent) this.#io.links?.send(m.from, m.data, m.seq, m.lane);
    if (sent.length > 0 && Atomics.exchange(this.#control, SLOT_OUTBOX_WAITING, 0) === 1) wake(this.#control);
  }

  /** Takes what the guest sent out of its outbox now, in order (a lane's answer needs the delivery it answers known first). */
  takeSent(): void {
    this.#drainOutbox();
  }

  /**
   * Offers the worker a lane's lease for its messages to `lease.to`
   * (`_lane_writer.ts`): `fd`, a socket to that pid's node the worker may
   * write to until the lease is revoked and {@link revokeLane} said so;
   * `key`, its records' key; `base()`, the number of the last message to
   * `to` the links took, asked once what the outbox held is taken (null:
   * messages to `to` are on their way, no lease now). False if no lease was
   * offered: one is in place already, the guest is not running in a
   * worker, or `base` said no.
   */
  offerLane(lease: { gen: number; fd: number; key: Uint8Array; to: string; base: () => number | null }): boolean {
    const c = this.#control;
    if (this.#phase !== "running" || Atomics.load(c, SLOT_LANE_STATE) !== LaneState.none) return false;
    const pid = new TextEncoder().encode(lease.to);
    if (pid.length === 0 || pid.length > PID_BYTES_MAX || lease.key.length !== LANE_KEY_BYTES) throw new RangeError("a lane's lease needs a pid of 1 to 255 bytes and a 32-byte key");
    this.#drainOutbox();
    const base = lease.base();
    if (base === null) return false;
    const area = new Uint8Array(this.#buffers.control, LANE_AREA_OFFSET, LANE_AREA_BYTES);
    area.set(lease.key, 0);
    area.set(pid, LANE_KEY_BYTES);
    Atomics.store(c, SLOT_LANE_PID_LEN, pid.length);
    this.#lane_pid = lease.to;
    Atomics.store(c, SLOT_LANE_GEN, lease.gen);
    Atomics.store(c, SLOT_LANE_FD, lease.fd);
    // The outbox's position lives in the control block, whether its ring is there now or not.
    Atomics.store(c, SLOT_LANE_MARK, Atomics.load(c, SLOT_OUTBOX_TAIL));
    Atomics.store(c, SLOT_LANE_BASE_LO, (base % 2 ** 32) | 0);
    Atomics.store(c, SLOT_LANE_BASE_HI, Math.floor(base / 2 ** 32) | 0);
    Atomics.store(c, SLOT_LANE_STATE, LaneState.offered);
    return true;
  }

  /**
   * The pid the worker holds a lane's lease for, or was offered one for;
   * null if none. Read after every answer a link gets: the pid of the last
   * offer, kept here, not decoded from the control block each time.
   */
  get lanePid(): string | null {
    return Atomics.load(this.#control, SLOT_LANE_STATE) === LaneState.none ? null : this.#lane_pid;
  }

  /**
   * Takes a lane's lease back: the worker's next `send` goes through the
   * links again. True once the worker cannot be writing to the lane's
   * socket any more (call again until then before closing it).
   */
  revokeLane(gen?: number): boolean {
    if (gen === undefined || Atomics.load(this.#control, SLOT_LANE_GEN) === gen) Atomics.store(this.#control, SLOT_LANE_STATE, LaneState.none);
    return this.laneIdle;
  }

  /** Whether the worker is outside any look at its lane now: after a revoke, it never writes to the revoked lane's socket again. */
  get laneIdle(): boolean {
    return this.#outOf(SLOT_LANE_BUSY);
  }

  /** Whether the worker is out of what busy slot `slot` marks (a lane's `send`, a net lane's `write`), or has no worker at all. */
  #outOf(slot: number): boolean {
    return Atomics.load(this.#control, slot) === 0 || this.#phase === "ended" || this.#phase === "hibernated";
  }

  /** `count` of the worker's deliveries on its lane were answered (or given up): room for more. */
  laneAnswered(count: number): void {
    Atomics.sub(this.#control, SLOT_LANE_IN_FLIGHT, count);
  }

  /** The generation of a lane the worker could not write to (0: none). */
  get laneBroken(): number {
    return Atomics.load(this.#control, SLOT_LANE_BROKEN);
  }

  /**
   * Offers the worker a net lane (`_net_lane_writer.ts`): `fd`, a socket to
   * the process's home the worker may write to until the lane is revoked
   * and {@link revokeNetLane} said so; `key`, its records' key. Replaces
   * the lane offered before, which the caller revoked and saw idle first.
   * False if the process ended.
   */
  offerNetLane(lane: { gen: number; fd: number; key: Uint8Array }): boolean {
    const c = this.#control;
    if (this.#phase === "ended") return false;
    if (lane.key.length !== LANE_KEY_BYTES || lane.gen <= 0) throw new RangeError("a net lane needs a 32-byte key and a positive generation");
    new Uint8Array(this.#buffers.control, NET_LANE_KEY_OFFSET, LANE_KEY_BYTES).set(lane.key);
    Atomics.store(c, SLOT_NET_LANE_GEN, lane.gen);
    Atomics.store(c, SLOT_NET_LANE_FD, lane.fd);
    Atomics.store(c, SLOT_NET_LANE_STATE, LaneState.offered);
    return true;
  }

  /** Takes net lane `gen` back; true once the worker cannot be writing to its socket any more (call again until then before closing it). */
  revokeNetLane(gen: number): boolean {
    if (Atomics.load(this.#control, SLOT_NET_LANE_GEN) === gen) Atomics.store(this.#control, SLOT_NET_LANE_STATE, LaneState.none);
    return this.#outOf(SLOT_NET_LANE_BUSY);
  }

  /** The generation of a net lane the worker could not write to, or would not take (0: none). */
  get netLaneBroken(): number {
    return Atomics.load(this.#control, SLOT_NET_LANE_BROKEN);
  }

  /** Puts a message in the guest's inbox; false if it does not fit now (try again after `room`). */
  deliver(from: string, data: Uint8Array): boolean {
    if (!this.#ringsNow().inbox.write(pidBytes(from), data)) return false;
    // One wake for all the messages put in this turn (a batch from the network is many).
    if (!this.#inbox_wake) {
      this.#inbox_wake = true;
      queueMicrotask(() => {
        this.#inbox_wake = false;
        wake(this.#control);
      });
    }
    return true;
  }

  /** Says whether messages wait outside the inbox (the guest then reports each read). */
  setBacklog(backlog: boolean): void {
    Atomics.store(this.#control, SLOT_INBOX_BACKLOG, backlog ? 1 : 0);
  }

  /** Messages in the inbox the guest has not read: for an image, with the guest stopped. */
  unreadMessages(): InboxMessage[] {
    // Its links are being captured: what it sent goes to them first, so it is in the image too.
    this.#drainOutbox();
    return this.#rings?.inbox.unread() ?? [];
  }

  /**
   * Holds the guest for `pct` percent of its time (0 to 95), at its safe
   * points: a migration's auto-converge, when it writes memory faster than
   * the link carries it. Its output is the same, only later. 0 ends it.
   */
  throttle(pct: number): void {
    if (!Number.isInteger(pct) || pct < 0 || pct > THROTTLE_PCT_MAX) throw new RangeError(`a throttle is 0 to ${THROTTLE_PCT_MAX} percent, not ${pct}`);
    Atomics.store(this.#control, SLOT_THROTTLE, pct);
    wake(this.#control);
  }

  /** Sets how many of the guest's sent messages are not delivered yet (its `send` blocks at a limit). */
  setUndelivered(count: number): void {
    Atomics.store(this.#control, SLOT_OUT_PENDING, count);
    wake(this.#control);
  }

  /** `count` more of the guest's messages were delivered. */
  delivered(count: number): void {
    // Only a guest whose outbox was full can be waiting for this: waking one that waits for a message costs a context switch per message.
    if (Atomics.sub(this.#control, SLOT_OUT_PENDING, count) >= OUTBOX_MAX) wake(this.#control);
  }

  /**
   * Answers the guest's own migration request: 0 once it runs on the node it
   * asked for, else a WASI errno; `pending` re-arms a request carried in an image.
   */
  migrateAnswer(errno: number | "pending"): void {
    Atomics.store(this.#control, SLOT_MIGRATE, errno === "pending" ? MigrateSlot.requested : errno === 0 ? MigrateSlot.done : -errno);
    wake(this.#control);
  }

  /**
   * The guest's connection slots, for its relay to fill (made on first use:
   * a standby's, before it is activated with its state); throws if the
   * process has no relay.
   */
  get net(): NetArea {
    if (this.#io.net === undefined) throw new RuntimeError("ERR_PROCESS_STATE", "this process relays no connections");
    return this.#netArea();
  }

  /** Wakes the guest after its connection slots changed. */
  wake(): void {
    wake(this.#control);
  }

  /** Host paths of the files the guest has open, as its worker last told: at its last poll, wait, output or stop after an open or close (up to about a quarter of a millisecond of running behind; never behind output that followed the open). */
  get open_files(): readonly string[] {
    return this.#open_files;
  }

  /** CPU the guest has used and wanted, and whether it waits now, as its worker counted them. */
  usage(): GuestUsage {
    return this.#usage.read();
  }

  /**
   * Holds the guest (true) at its next safe point without unwinding it, or
   * lets it go on (false): how a node shares its cores among more guests
   * than it has (`--cpus`). A held guest uses no CPU and still answers a
   * suspend (a migration) or a halt; its clocks go on.
   */
  hold(paused: boolean): void {
    this.#scheduler_hold = paused;
    this.#applyHolds();
  }

  /**
   * Holds the guest as {@link hold} does, but whatever the scheduler says,
   * until unfenced: a node whose lease may have run out must not let it go
   * on until the directory says it still runs here (src/node/_fence.ts).
   */
  fence(fenced: boolean): void {
    this.#fenced = fenced;
    this.#applyHolds();
  }

  #applyHolds(): void {
    const paused = this.#scheduler_hold || this.#fenced;
    if (this.#usage.paused === paused) return;
    this.#usage.setPaused(paused);
    if (!paused) wake(this.#control);
  }

  /** Whether the guest is held by {@link hold} or {@link fence}. */
  get held(): boolean {
    return this.#usage.paused;
  }

  /**
   * The guest's memory, shared with the worker: read it in place. A
   * hibernated guest has none (ERR_PROCESS_STATE): take {@link stayAwake}
   * first, and hold it while the memory is read.
   */
  get memory(): WebAssembly.Memory {
    if (this.#phase === "hibernated" || this.#phase === "waking") {
      throw new RuntimeError("ERR_PROCESS_STATE", "the process is hibernated: its memory is not in place until it is kept awake");
    }
    return this.#live();
  }

  /** The worker's memory; only asked for where there is a worker. */
  #live(): WebAssembly.Memory {
    if (this.#memory === undefined) throw new RuntimeError("ERR_PROCESS_STATE", `the process has no memory in place (it is ${this.#phase})`);
    return this.#memory;
  }

  /** Size of the guest's memory, bytes, hibernated or not. */
  get memory_bytes(): number {
    if (this.#sleep !== null) return this.#sleep.memory.size_bytes;
    return this.#memory === undefined ? 0 : this.#memory.buffer.byteLength;
  }

  /** Whether the guest is hibernated now: it waits with no worker, its pages kept here (`_hibernate.ts`). */
  get hibernated(): boolean {
    return this.#phase === "hibernated" || this.#phase === "waking";
  }

  /**
   * Calls `fn` when the guest hibernates (true) and when it begins to wake
   * (false): its node then leaves it out of what it looks at every slice, so
   * an idle process costs the node nothing between its wakes.
   */
  onSleep(fn: ((asleep: boolean) => void) | null): void {
    this.#on_sleep = fn;
  }

  /** How many times the guest hibernated so far. */
  get hibernations(): number {
    return this.#hibernations;
  }

  /**
   * Bytes of the shared buffers the process holds now: control block,
   * input mailbox, usage counters, message rings (not while it hibernates
   * with them empty) and connection slots (only once it has sockets).
   */
  get shared_bytes(): number {
    const b = this.#buffers;
    return b.control.byteLength + b.stdin.byteLength + b.usage.byteLength + (this.#rings?.buffer.byteLength ?? 0) + (this.#net?.buffer.byteLength ?? 0);
  }

  /** Bytes kept for a hibernated guest (its non-zero pages); 0 when it is not hibernated. */
  get hibernated_bytes(): number {
    return this.#sleep?.memory.stored_bytes ?? 0;
  }

  /**
   * Wakes the guest if it is hibernated and keeps it from hibernating until
   * the returned function is called: for whatever reads its memory in place
   * while it runs (a migration's rounds, a checkpoint). Its guest sees
   * nothing of it; it goes on waiting in its worker.
   */
  async stayAwake(): Promise<() => void> {
    const release = this.pin();
    try {
      if (this.hibernated) await this.#wakeUp();
    } catch (err: unknown) {
      release();
      throw err;
    }
    return release;
  }

  /**
   * Keeps the guest from hibernating until the returned function is called,
   * without waking it: for a process that is not hibernated (a post-copy
   * destination, whose memory no JavaScript thread may read while pages
   * are missing). See {@link stayAwake}.
   */
  pin(): () => void {
    this.#pins += 1;
    Atomics.store(this.#control, SLOT_HIBERNATE_MS, 0);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.#pins -= 1;
      if (this.#pins === 0) {
        Atomics.store(this.#control, SLOT_HIBERNATE_MS, this.#hibernate_after_ms);
        // A wait that began while held waits out its whole timeout: woken, it counts again from the threshold.
        if (this.#hibernate_after_ms > 0) wake(this.#control);
      }
    };
    return release;
  }

  /**
   * Asks the guest to stop at its next safe point and unwinds its stack.
   * Resolves with its state, or with `null` if it ended first. A hibernated
   * guest is woken first.
   */
  async suspend(): Promise<Suspension | null> {
    // Ended already: the same answer as ending while the request was on its way.
    if (this.#phase === "ended") return null;
    if (this.hibernated) {
      const release = await this.stayAwake().catch((err: unknown) => {
        // It could not be woken: it has ended (with a trap that says why), as a guest that ends before a suspend.
        if (this.#phase === "ended") return null;
        throw err;
      });
      if (release === null) return null;
      try {
        return await this.suspend();
      } finally {
        release();
      }
    }
    if (this.#phase !== "running") throw new RuntimeError("ERR_PROCESS_STATE", `cannot suspend a process that is ${this.#phase}`);
    this.#phase = "suspending";
    const t0 = performance.now();
    const answer = this.#expect((m) => m.type === "suspended" || m.type === "exit" || m.type === "trap" || m.type === "suspend-failed");
    Atomics.store(this.#control, SLOT_REQUEST, Request.suspend);
    wake(this.#control);
    const msg = await answer;
    // A guest that unwound to hibernate just as this was asked answers it with that state: the request is spent.
    Atomics.compareExchange(this.#control, SLOT_REQUEST, Request.suspend, Request.none);
    if (msg.type !== "suspended") {
      if (msg.type === "suspend-failed") {
        this.#phase = "running";
        throw new RuntimeError("ERR_SUSPEND_FAILED", msg.message);
      }
      return null;
    }
    this.#phase = "suspended";
    const held = this.#pump.hold();
    const state = msg.state;
    const pending = new Uint8Array(state.stdin_pending.length + held.pending.length);
    pending.set(state.stdin_pending);
    pending.set(held.pending, state.stdin_pending.length);
    return {
      state: { ...state, stdin_pending: pending, stdin_eof: state.stdin_eof || held.ended },
      suspend_ms: performance.now() - t0,
    };
  }

  /** Continues a suspended process where it stopped, in this worker. */
  async resume(): Promise<void> {
    if (this.#phase !== "suspended") throw new RuntimeError("ERR_PROCESS_STATE", `cannot resume a process that is ${this.#phase}`);
    const running = this.#expect((m) => m.type === "running");
    this.#pump.release();
    this.#send({ type: "resume" });
    this.#phase = "running";
    await running;
  }

  /** The image of a suspended process; memory pages are read in place. */
  image(suspension: Suspension): ProcessImage {
    const s = suspension.state;
    return {
      module_sha256: Buffer.from(this.info.module_sha256, "hex"),
      instrumenter: this.info.instrumenter,
      memory: sparsePages(new Uint8Array(this.#live().buffer)),
      globals: s.globals,
      stack: { entry: ENTRY_EXPORT, asyncify: s.asyncify },
      wasi: s.wasi,
      streams: { stdout_bytes: s.stdout_bytes, stderr_bytes: s.stderr_bytes, stdin_pending: s.stdin_pending, stdin_eof: s.stdin_eof },
      meta: { module_path: this.module_path, created_unix_ms: Date.now() },
    };
  }

  /**
   * Tells the guest to stop at its next host call or poll without acting on
   * anything; for a guest whose memory may be wrong, before it is ended.
   */
  halt(): void {
    Atomics.store(this.#control, SLOT_REQUEST, Request.halt);
    wake(this.#control);
  }

  /**
   * Sets what must happen after the guest was told to halt and before its
   * worker is terminated (post-copy wakes threads waiting on pages: a worker
   * waiting on one cannot be terminated).
   */
  beforeTerminate(fn: (() => void) | null): void {
    this.#before_terminate = fn;
  }

  /**
   * Stops the worker at once (the guest's state is lost unless captured);
   * ends with `status`. A suspended guest's worker (the process moved away,
   * or was stopped for good) goes back to the pool instead. `discard`: its
   * memory is not needed any more (the process moved away and its
   * destination has all of it), so a suspended guest's worker gives its
   * pages back to the kernel at once (`discardPages`).
   */
  async terminate(status: ExitStatus = { kind: "killed" }, options: { discard?: boolean } = {}): Promise<void> {
    // Ended already: its worker went back to the pool (another process's now) or was stopped.
    if (this.#phase === "ended") return;
    if (this.#phase === "hibernated") {
      // No worker to stop: the guest ends where it sleeps.
      this.#end(status);
      return;
    }
    if (this.#phase === "suspended" && this.#before_terminate === null) {
      // Unwound at a safe point, its worker waits idle for a message, as a
      // hibernated guest's does: recycled, not torn down. Tearing a worker
      // down took 7-15 ms after a move here, up to 4 ms of it on this
      // thread, when the node relays the moved process's clients; and the
      // next start or arrival would pay a cold boot for the worker lost.
      // Without the addon to give pages back, the node's collection must (discard: false).
      this.#end(status, true, options.discard === true && canDiscard());
      return;
    }
    if (this.#before_terminate !== null) {
      this.halt();
      const fn = this.#before_terminate;
      this.#before_terminate = null;
      fn();
    }
    // A gated activation not yet let go rewinds nothing (a no-op otherwise: the gate is read only then).
    const gate = Atomics.load(this.#control, SLOT_GATE);
    if (gate === Gate.closed || gate === Gate.waiting) {
      Atomics.store(this.#control, SLOT_GATE, Gate.dropped);
      Atomics.notify(this.#control, SLOT_GATE);
    }
    this.#end(status);
    await this.#worker.terminate();
  }

  #send(msg: ToWorker): void {
    // An ended or hibernated process's worker is another's now, or gone.
    if (this.#phase === "ended" || this.#phase === "hibernated") return;
    this.#worker.postMessage(msg);
  }

  /**
   * The next message `match` accepts. Rejects if the worker reports an error,
   * and if the process ends first (an exit or trap `match` does not accept):
   * a waiter must never outlive the worker that would have answered it.
   */
  #expect(match: (msg: FromWorker) => boolean): Promise<FromWorker> {
    return new Promise((resolve, reject) => {
      this.#waiters.push((msg) => {
        if (msg.type === "error") {
          reject(new FerryError(msg.code, msg.message));
          return true;
        }
        if (match(msg)) {
          resolve(msg);
          return true;
        }
        if (msg.type === "exit" || msg.type === "trap") {
          const how = msg.type === "exit" ? `exited with status ${msg.code}` : `trapped: ${msg.message}`;
          reject(new RuntimeError("ERR_WORKER", `the process ${how}`));
          return true;
        }
        return false;
      });
    });
  }

  async #ready(): Promise<WebAssembly.Memory> {
    const msg = await this.#expect((m) => m.type === "ready");
    if (msg.type !== "ready") throw new Error("unreachable");
    this.#memory = msg.memory;
    return msg.memory;
  }

  #onMessage(msg: FromWorker): void {
    // Before anything the worker said after them (a suspend, an exit, a move request): its sends, in order.
    this.#drainOutbox();
    if (msg.type === "output") {
      // Posted just before a terminate() and delivered as the worker exits (Node drains its port then): the
      // process has ended for everyone already (its home may have closed its log), so this is dropped.
      if (this.#phase === "ended") return;
      const target = msg.stream === 1 ? this.#io.stdout : this.#io.stderr;
      if (target.kind === "callback") target.write(msg.bytes);
      return;
    }
    if (msg.type === "stdin-drained") {
      this.#pump.pump();
      return;
    }
    if (msg.type === "code-cache") {
      keepCodeCache(msg.bytes);
      return;
    }
    if (msg.type === "files") {
      this.#open_files = msg.files;
      return;
    }
    if (msg.type === "sent") return; // drained above
    if (msg.type === "inbox-read") {
      this.#io.links?.room();
      return;
    }
    if (msg.type === "migrate") {
      this.#io.links?.migrate(msg.node);
      return;
    }
    if (msg.type.startsWith("net-")) {
      this.#netMessage(msg);
      return;
    }
    if (msg.type === "suspended" && msg.idle !== undefined && this.#phase === "running") {
      // Unwound by itself to hibernate (a suspend asked meanwhile takes the state as its answer instead, below).
      if (this.#pins > 0 || !worthHibernating(msg.idle)) this.#resumeAfterIdle();
      else this.#hibernate(msg.state, msg.idle);
      return;
    }
    this.#waiters = this.#waiters.filter((w) => !w(msg));
    // An exit or a trap is the worker's last word about its guest: it waits for a message then, and goes back to the pool.
    // Nothing reads its memory again: its worker gives the pages back to the kernel (with the addon), and this thread need not collect for them.
    if (msg.type === "exit") this.#end({ kind: "exit", code: msg.code }, true, canDiscard());
    else if (msg.type === "trap") this.#end({ kind: "trap", message: msg.message }, true, canDiscard());
    else if (msg.type === "error") this.#end({ kind: "trap", message: msg.message });
  }

  #netMessage(msg: FromWorker): void {
    const net = this.#io.net;
    if (net === undefined) return;
    if (msg.type === "net-send") net.send(msg, msg.offset, msg.bytes, msg.lane ?? 0);
    else if (msg.type === "net-read") net.read(msg);
    else if (msg.type === "net-shutdown") net.shutdown(msg, msg.offset);
    else if (msg.type === "net-close") net.close(msg, msg.offset);
    else if (msg.type === "net-unlisten") net.unlisten(msg.listener);
  }

  /**
   * The guest unwound to hibernate after something asked to keep it awake:
   * it goes on in this worker, as after a suspend and a resume.
   */
  #resumeAfterIdle(): void {
    const running = this.#expect((m) => m.type === "running");
    this.#send({ type: "resume" });
    // The mailbox was closed for the capture and is open again once it runs: what waits for it goes in then.
    void running.then(
      () => this.#pump.pump(),
      () => undefined, // it ended instead: its exit says why
    );
  }

  /**
   * Takes a guest that unwound to hibernate out of its worker: keeps its
   * state and non-zero pages, ends the worker, and watches for the end of
   * its wait (`_hibernate.ts`).
   */
  #hibernate(state: SuspendedState, idle: IdleWait): void {
    // Standard input goes on arriving while it sleeps: what the guest had taken and not consumed goes back in front, and the
    // mailbox is fed again (a guest waiting for input is woken by it; the next worker finds it there).
    this.#pump.hold();
    Atomics.store(this.#control, SLOT_STDIN_LEN, 0);
    this.#pump.preload(state.stdin_pending, state.stdin_eof);
    this.#pump.release();
    const memory = new SleepingMemory(new Uint8Array(this.#live().buffer));
    this.#memory = undefined;
    const worker = this.#worker;
    worker.removeAllListeners("message").removeAllListeners("error").removeAllListeners("exit");
    // Its output, posted before it unwound, came before this message; nothing follows. It waits for a message: it goes back to the pool.
    recycleWorker(worker);
    reclaimSoon(memory.size_bytes);
    // Nothing unread either way (its sends were drained above): fresh rings take their place when needed.
    if (this.#rings !== null && this.#rings.inbox.empty && this.#rings.outbox.empty) this.#rings = null;
    // A lease belongs to the worker that took it: the next one starts without (the links offer again).
    Atomics.store(this.#control, SLOT_LANE_STATE, LaneState.none);
    Atomics.store(this.#control, SLOT_LANE_BUSY, 0);
    this.#phase = "hibernated";
    this.#hibernations += 1;
    const sleep: Sleep = { state, memory, idle, watch: null as unknown as WakeWatch }; // set below: the watch may fire at once
    this.#sleep = sleep;
    // Told once its memory's size reads from the sleep (the node counts it), and before the watch can wake it.
    this.#on_sleep?.(true);
    sleep.watch = new WakeWatch(this.#control, idle, () => {
      void this.#wakeUp().catch(() => undefined); // a failed wake ends the process with a trap that says why
    });
  }

  /** Takes a hibernated guest up again in a new worker; resolves once it runs. A failure ends the process (a trap). */
  #wakeUp(): Promise<void> {
    if (this.#waking !== null) return this.#waking;
    const sleep = this.#sleep;
    if (sleep === null || this.#phase !== "hibernated") return Promise.resolve();
    sleep.watch.cancel();
    this.#phase = "waking";
    this.#on_sleep?.(false);
    const t0 = performance.now();
    this.#waking = (async () => {
      try {
        this.#worker = this.#startWorker(this.#workerInit({ kind: "standby" }));
        const memory = await this.#ready();
        // Instantiation wrote the data segments, unless they were held back (then memory is zero); the pages kept say what is there.
        if (this.#init.data === undefined) new Uint8Array(memory.buffer).fill(0);
        this.#phase = "standby";
        this.growTo(sleep.memory.size_bytes);
        sleep.memory.writeTo(new Uint8Array(this.#live().buffer));
        const wasi = sleep.state.wasi as { preopens?: { host_path: string; guest_path: string }[] };
        const running = this.#expect((m) => m.type === "running");
        // One message: its WASI state, then its stack rewound at once (as a migration's standby is activated).
        this.#send({ type: "activate", wasi: sleep.state.wasi, preopens: wasi.preopens ?? [], globals: sleep.state.globals, asyncify: sleep.state.asyncify, clock_host_ns: sleep.idle.host_ns });
        this.#sleep = null;
        this.#phase = "running";
        await running;
        recordWake(performance.now() - t0);
      } catch (cause: unknown) {
        const message = `could not wake from hibernation: ${(cause as Error).message}`;
        this.#end({ kind: "trap", message });
        throw new RuntimeError("ERR_PROCESS_STATE", message, { cause });
      } finally {
        this.#waking = null;
      }
    })();
    return this.#waking;
  }

  /**
   * Ends the process with `status`; its worker goes back to the pool when
   * `idle_worker` (it reported the end and waits), else it is stopped.
   * `discard` (with `idle_worker`): the worker gives the memory's pages back.
   */
  #end(status: ExitStatus, idle_worker = false, discard = false): void {
    if (this.#phase === "ended") return;
    const hibernated = this.#phase === "hibernated";
    this.#phase = "ended";
    this.#sleep?.watch.cancel();
    this.#sleep = null;
    // Its pages go back to the system once nothing holds this object (see _reclaim.ts), or at once when discarded; its address space then.
    if (this.#memory !== undefined) reclaimSoon(this.#memory.buffer.byteLength, { pages_discarded: discard });
    this.#pump.detach();
    this.#resolveExit(status);
    const errored: FromWorker =
      status.kind === "exit" ? { type: "exit", code: status.code } : { type: "trap", message: status.kind === "trap" || status.kind === "lost" ? status.message : "killed" };
    this.#waiters = this.#waiters.filter((w) => !w(errored));
    // A hibernated guest's worker went back to the pool when it fell asleep.
    if (hibernated) return;
    if (idle_worker) {
      this.#worker.removeAllListeners("message").removeAllListeners("error").removeAllListeners("exit");
      recycleWorker(this.#worker, discard);
    } else void this.#worker.terminate();
  }
}

/**
 * Zeroes what instantiating `wasm` wrote into `memory`: its data segments'
 * bytes only, where the module says which (`instantiationWrites`), else all
 * of it. The rest was never touched, and touching it would cost a page fault
 * a page on this thread (on a host with shadow page tables about 12 µs a 4
 * KiB page, a read as much as a write: 48 ms for a 16 MiB initial memory,
 * in a standby's preparation, on the node's event loop).
 */
function wipeInstantiation(memory: Uint8Array, wasm: Uint8Array): void {
  const written = instantiationWrites(wasm);
  if (written === null) {
    memory.fill(0);
    return;
  }
  for (const { offset, length } of written) memory.fill(0, Math.min(offset, memory.length), Math.min(offset + length, memory.length));
}

/** The cap of a process (4 GiB unless given), checked against what its module needs at start. */
function checkCap(info: InstrumentInfo, memory_max_bytes: number | undefined): number {
  const cap = memory_max_bytes ?? WASM_MEMORY_BYTES_MAX;
  if (!Number.isSafeInteger(cap) || cap % WASM_PAGE_BYTES !== 0 || cap < WASM_PAGE_BYTES || cap > WASM_MEMORY_BYTES_MAX) {
    throw new RuntimeError("ERR_MEMORY_LIMIT", `a memory cap of ${cap} bytes is not a whole number of wasm pages from 64 KiB to 4 GiB`);
  }
  if (info.memory.initial_pages * WASM_PAGE_BYTES > cap) {
    throw new RuntimeError("ERR_MEMORY_LIMIT", `the module needs ${info.memory.initial_pages * WASM_PAGE_BYTES} bytes of memory at start, over its cap of ${cap}`);
  }
  return cap;
}

function wire(target: OutputTarget): OutputWire {
  return target.kind === "fd" ? { kind: "fd", fd: target.fd } : { kind: "port" };
}

/**
 * Whether a captured WASI state has sockets (listeners or connections), so
 * that its worker needs connection slots. Only looked at: the worker checks
 * the state whole, and a malformed one fails there with its reason.
 */
function hasSockets(wasi: unknown): boolean {
  const fds = typeof wasi === "object" && wasi !== null ? (wasi as { fds?: unknown }).fds : undefined;
  if (!Array.isArray(fds)) return false;
  return fds.some((fd: unknown) => {
    const kind = typeof fd === "object" && fd !== null ? (fd as { kind?: unknown }).kind : undefined;
    return kind === "listener" || kind === "conn";
  });
}

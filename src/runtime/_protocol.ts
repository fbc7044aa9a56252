/** Messages between a process's controlling thread and its worker. */
import type { ErrorCode } from "../errors.js";
import type { InstrumentInfo } from "../instrument/mod.js";
import type { Preopen, WasiConfig } from "../wasi/mod.js";
import type { HeldData } from "./_compiled.js";
import type { Script } from "node:vm";

/** Where a guest's output stream goes. */
export type OutputTarget =
  | { kind: "fd"; fd: number } // written by the worker itself, synchronously
  | { kind: "callback"; write(bytes: Uint8Array): void }; // relayed to the controller

/** Serialisable form of {@link OutputTarget} sent to the worker. */
export type OutputWire = { kind: "fd"; fd: number } | { kind: "port" };

/** A captured global: raw bits, as in the image. */
export interface GlobalBits {
  name: string;
  type: "i32" | "i64" | "f32" | "f64";
  bits: bigint;
}

/** What the worker hands over once the guest's stack is unwound. */
export interface SuspendedState {
  globals: GlobalBits[];
  asyncify: Uint8Array;
  wasi: unknown;
  stdout_bytes: number;
  stderr_bytes: number;
  stdin_pending: Uint8Array;
  stdin_eof: boolean;
}

/**
 * What a guest that unwound to hibernate was waiting for, so its controller
 * can wait for the same without a worker (`_hibernate.ts`). Times are on the
 * host's monotonic clock (`process.hrtime`), which every thread of a process
 * shares.
 */
export interface IdleWait {
  /** Host time at the capture: a restore continues the guest's clock from it as if it had run throughout. */
  host_ns: bigint;
  /** Host time its deadline falls due; null for a wait with none. */
  due_host_ns: bigint | null;
  /** It waits for standard input too. */
  stdin: boolean;
  /** It waits for something only the worker can test (a message, a connection): any wake may be it. */
  other: boolean;
}

/** workerData of a process worker. */
export interface WorkerInit {
  /** The instrumented module's bytes, memory cap written in; empty when `module` is given. */
  wasm: Uint8Array;
  /** The same module compiled by the controlling thread (`_compiled.ts`), when it could be: the worker only instantiates it. */
  module?: WebAssembly.Module;
  info: InstrumentInfo;
  /** Data segments held back from the module (`_compiled.ts`): a fresh start writes them into memory itself, a standby leaves memory zero. */
  data?: HeldData;
  entry: string;
  control: SharedArrayBuffer;
  stdin: SharedArrayBuffer;
  /** The inbox and outbox rings of link messages (`_inbox.ts`). */
  inbox: SharedArrayBuffer;
  /** CPU use and the pause flag (`_usage.ts`). */
  usage: SharedArrayBuffer;
  /**
   * The TCP connection slots (`_net_area.ts`); null when the process has
   * no sockets yet (a standby is given them with its state, `activate`) or
   * nothing relays connections.
   */
  net: SharedArrayBuffer | null;
  /** The process's pid in a cluster; null for `ferry exec` (the `ferry` imports answer ENOSYS). */
  pid: string | null;
  stdout: OutputWire;
  stderr: OutputWire;
  /**
   * Fresh start with a config, or standby: instantiate now, get the WASI
   * state later (`activate`), so a migration's destination can be ready
   * before the source stops. A restore is a standby activated at once.
   */
  start: { kind: "fresh"; config: WasiConfig } | { kind: "standby" };
}

/**
 * A worker's workerData: its init, or `warm` for one started ahead of need
 * (`_warm.ts`), whose init then comes as its first message. `script`: the
 * bundle it runs, for the entry that compiles it (`_worker_script.ts`);
 * absent when it runs the modules.
 */
export type WorkerBoot = ({ kind: "init"; init: WorkerInit } | { kind: "warm" }) & { script?: WorkerScript };

/** The bundle a worker compiles as a script, with V8's code cache of it when the controller has one (`_worker_code.ts`). */
export interface WorkerScript {
  file: string;
  cached_data?: Uint8Array;
}

/**
 * Where a worker that runs the bundle keeps its script (on `globalThis`:
 * the entry and the bundle are two copies of the code): `cache_wanted`
 * while the controller has no code cache V8 took, so that the worker makes
 * one after its first guest ran.
 */
export const WORKER_SCRIPT_KEY = Symbol.for("ferry.worker_script");

/** What a worker keeps under {@link WORKER_SCRIPT_KEY}. */
export interface WorkerScriptState {
  script: Script;
  cache_wanted: boolean;
}

/** Controller → worker. */
export type ToWorker =
  | { type: "run" }
  | { type: "resume" }
  /**
   * A standby's state: its captured WASI state with the directories this side
   * grants for the preopens it recorded, then the globals and stack it
   * rewinds from. One message, so that taking it up costs one round trip.
   */
  | {
      type: "activate";
      wasi: unknown;
      preopens: Preopen[];
      globals: GlobalBits[];
      asyncify: Uint8Array;
      /** Set when waking a hibernated guest on the host it slept on: its clock continues from this host time, counting the time it slept. */
      clock_host_ns?: bigint;
      /** The connection slots, for a state with sockets whose worker was started without them. */
      net?: SharedArrayBuffer;
      /** Rewind only once the controller opens the gate (`SLOT_GATE`): the WASI state is taken up meanwhile. */
      gated?: boolean;
    }
  | { type: "touch"; bytes: number }
  /**
   * The guest is done in this worker (it ended, or hibernated and its state
   * was taken): drop it, close its files, and wait for the next init, as a
   * warm worker does (`_warm.ts`). Answered by `recycled`. `discard`: nobody
   * needs the guest's memory any more (it moved away): its pages go back to
   * the kernel now, not when the last isolate holding it collects it.
   * `ending`: the pool has no room for the worker, which is ended once it
   * answers: its isolate need not collect first.
   */
  | { type: "recycle"; discard?: boolean; ending?: boolean };

/** Worker → controller. */
export type FromWorker =
  | { type: "ready"; memory: WebAssembly.Memory }
  /**
   * The guest runs (again): `at_ms` is when, as `performance.timeOrigin +
   * performance.now()` in the worker, which the other threads of the process
   * read on the same scale.
   */
  | { type: "running"; at_ms: number }
  | { type: "touched" }
  | { type: "output"; stream: 1 | 2; bytes: Uint8Array }
  | { type: "stdin-drained" }
  /** The outbox ring has records (`_inbox.ts`); posted once per burst. */
  | { type: "sent" }
  | { type: "inbox-read" }
  | { type: "migrate"; node: string }
  | { type: "files"; files: string[] }
  /** `lane`: the generation of the net lane the worker wrote them on too (`_net_lane_writer.ts`); absent, on none. */
  | { type: "net-send"; listener: number; seq: number; offset: number; bytes: Uint8Array; lane?: number }
  | { type: "net-shutdown"; listener: number; seq: number; offset: number }
  | { type: "net-close"; listener: number; seq: number; offset: number }
  | { type: "net-unlisten"; listener: number }
  | { type: "net-read"; listener: number; seq: number }
  /** `idle`: the guest unwound by itself to hibernate, not at a request. */
  | { type: "suspended"; state: SuspendedState; idle?: IdleWait }
  | { type: "suspend-failed"; message: string }
  | { type: "exit"; code: number }
  | { type: "trap"; message: string }
  | { type: "error"; code: ErrorCode; message: string }
  /** Its guest dropped (`recycle`): it waits for an init. */
  | { type: "recycled" }
  /** V8's code cache of its script, made after its first guest ran (see {@link WorkerScriptState}); before that guest's exit or trap. */
  | { type: "code-cache"; bytes: Uint8Array };

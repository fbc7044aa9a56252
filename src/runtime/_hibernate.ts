/**
 * Hibernation: a guest blocked in a long wait (a sleep, a read with nothing
 * to read) costs a worker thread with its own V8 isolate, some 12 MiB,
 * while it does nothing. After `hibernate_after_ms` of one wait its worker
 * unwinds it as a suspend does (the same state a migration or a checkpoint
 * takes), the controller keeps its non-zero pages ({@link SleepingMemory})
 * and ends the worker, and waits on the controlling thread for what the
 * guest waited for ({@link WakeWatch}): its deadline, its input, a request
 * (a suspend, for a migration or a checkpoint), or for a wait only the
 * guest can test (a message, a connection), any wake. Then a new worker
 * takes the state up again where it stopped, with its clock continued
 * across the time it slept; the shared buffers (control block, stdin
 * mailbox, message rings, connection slots) never changed hands, so
 * whatever arrived meanwhile is there.
 */
import { PAGE_BYTES, sparsePages } from "../image/mod.js";
import { Request, SLOT_REQUEST, SLOT_STDIN_LEN, SLOT_WAKE } from "./_control.js";
import type { IdleWait } from "./_protocol.js";

/**
 * Default of a node's `--hibernate-after`: long next to what waking costs
 * (a worker start and an instantiation, tens of milliseconds of CPU), so a
 * guest that wakes every few seconds stays awake, and short enough that a
 * node full of sleepers gives its memory back soon.
 */
export const HIBERNATE_AFTER_MS_DEFAULT = 5_000;

/** Longest threshold: it is an Int32 slot, and past an hour hibernation is simply off. */
export const HIBERNATE_AFTER_MS_MAX = 3_600_000;

/**
 * Waking takes a worker and an instantiation: tens of milliseconds with a
 * warm worker at hand, hundreds on a loaded machine without. A guest whose
 * wait has a deadline is woken that much ahead of it (its new worker waits
 * the rest), so it does not wake late: twice the recent wakes' average
 * (an exponential one over this thread's wakes), within these bounds.
 */
const WAKE_LEAD_MS_MIN = 20;
const WAKE_LEAD_MS_MAX = 5_000;
/** The average before any wake was measured: a cold worker on a loaded machine. */
const WAKE_MS_FIRST = 250;
/** Weight of the newest wake in the average. */
const WAKE_MS_WEIGHT = 0.2;
let wake_ms_average = WAKE_MS_FIRST;

/** Counts a wake that took `ms` from its start to the guest running again. */
export function recordWake(ms: number): void {
  if (Number.isFinite(ms) && ms >= 0) wake_ms_average += WAKE_MS_WEIGHT * (ms - wake_ms_average);
}

/** How long before a deadline a hibernated guest is woken now. */
export function wakeLeadMs(): number {
  return Math.min(WAKE_LEAD_MS_MAX, Math.max(WAKE_LEAD_MS_MIN, 2 * wake_ms_average));
}

/**
 * Whether hibernating a guest whose wait is `idle` is worth it: not when
 * it would be woken again (its deadline less its wake lead) within about
 * the time a wake takes.
 */
export function worthHibernating(idle: IdleWait): boolean {
  if (idle.due_host_ns === null) return true;
  const left_ms = Number(idle.due_host_ns - process.hrtime.bigint()) / 1e6;
  return left_ms > 2 * wakeLeadMs();
}

/** Longest single timer (Node's setTimeout is a signed 32-bit count of ms); a later deadline is looked at again then. */
const TIMER_MS_MAX = 2 ** 31 - 1;

/** `Atomics.waitAsync` (Node 16 and later; TypeScript's lib has it from es2024 only). */
type WaitAsync = (view: Int32Array, index: number, value: number) => { async: false; value: "not-equal" | "timed-out" } | { async: true; value: Promise<"ok" | "timed-out"> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** One run of non-zero bytes of a hibernated guest's memory. */
interface Run {
  offset: number;
  data: Uint8Array;
}

/** A hibernated guest's memory: its non-zero pages, copied, so the wasm memory they came from can go. */
export class SleepingMemory {
  readonly size_bytes: number;
  readonly #runs: Run[];

  constructor(memory: Uint8Array) {
    this.size_bytes = memory.length;
    const runs: Run[] = [];
    const source = sparsePages(memory);
    if (source.pageRuns !== undefined) for (const run of source.pageRuns()) runs.push({ offset: run.first * PAGE_BYTES, data: run.data.slice() });
    else for (const page of source.pages()) runs.push({ offset: page.index * PAGE_BYTES, data: page.data.slice() });
    this.#runs = runs;
  }

  /** Bytes kept (the non-zero pages). */
  get stored_bytes(): number {
    let n = 0;
    for (const r of this.#runs) n += r.data.length;
    return n;
  }

  /** Writes the pages into `target` (a fresh, zeroed memory at least as large). */
  writeTo(target: Uint8Array): void {
    if (target.length < this.size_bytes) throw new RangeError(`a memory of ${target.length} bytes cannot take back ${this.size_bytes}`);
    for (const r of this.#runs) target.set(r.data, r.offset);
  }
}

/**
 * Watches, on the controlling thread, for the end of a hibernated guest's
 * wait, and calls `wake` once when it comes. A halt request does not wake
 * it: its controller ends it next, and a worker would only be started to
 * stop.
 */
export class WakeWatch {
  readonly #control: Int32Array;
  readonly #idle: IdleWait;
  readonly #wake: () => void;
  /** Host time to wake at: its deadline less the wake lead; null for a wait with none. */
  readonly #wake_at_ns: bigint | null;
  #timer: NodeJS.Timeout | null = null;
  #done = false;

  constructor(control: Int32Array, idle: IdleWait, wake: () => void) {
    this.#control = control;
    this.#idle = idle;
    this.#wake = wake;
    this.#wake_at_ns = idle.due_host_ns === null ? null : idle.due_host_ns - BigInt(Math.round(wakeLeadMs() * 1e6));
    this.#arm(false);
    this.#setTimer();
  }

  /** Stops watching (the guest woke for another reason, or ended). */
  cancel(): void {
    if (this.#done) return;
    this.#done = true;
    // Lets its pending waitAsync go (it finds the watch done), rather than leave one per ended process behind.
    Atomics.notify(this.#control, SLOT_WAKE);
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #setTimer(): void {
    if (this.#done || this.#wake_at_ns === null) return;
    const left_ms = Number(this.#wake_at_ns - process.hrtime.bigint()) / 1e6;
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        if (this.#due()) this.#fire();
        else this.#setTimer();
      },
      Math.max(0, Math.min(TIMER_MS_MAX, Math.ceil(left_ms))),
    );
  }

  #due(): boolean {
    return this.#wake_at_ns !== null && process.hrtime.bigint() >= this.#wake_at_ns;
  }

  /** Looks at what the guest waits for, then waits for the next wake (`signalled`: one came). */
  #arm(signalled: boolean): void {
    if (this.#done) return;
    // Read before looking, as the worker does: a change after the look bumps it, so the wait below returns at once.
    const seen = Atomics.load(this.#control, SLOT_WAKE);
    const request = Atomics.load(this.#control, SLOT_REQUEST);
    const input = this.#idle.stdin && Atomics.load(this.#control, SLOT_STDIN_LEN) !== 0;
    if (request === Request.suspend || input || this.#due() || (signalled && this.#idle.other)) {
      this.#fire();
      return;
    }
    const waited = waitAsync(this.#control, SLOT_WAKE, seen);
    if (waited.async) void waited.value.then(() => this.#arm(true));
    else queueMicrotask(() => this.#arm(true));
  }

  #fire(): void {
    if (this.#done) return;
    this.cancel();
    this.#wake();
  }
}

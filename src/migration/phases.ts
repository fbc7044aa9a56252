/**
 * Where a migration's time goes (issue 15, "profile first"). A migration is
 * always in exactly one phase; entering the next one closes the last, so the
 * source's phases partition its total time and every millisecond of a figure
 * can be found in `ferry migrate --json`. The destination keeps its own clock
 * and reports it in READY and RUNNING.
 */
import { collectNow } from "../runtime/mod.js";

/**
 * Phases of the source, in the order they happen (docs/cluster.md,
 * "Where the time goes"). Their sum is `total_ms`; from `suspend` to
 * `restore`, the downtime. `collect`: the full garbage collection asked for
 * before the stop ({@link collectBeforeStop}). `resumed`: the time the
 * process had run at the destination when its RUNNING came (the
 * destination's reading), which the downtime does not count.
 */
export const SOURCE_PHASES = [
  "connect",
  "prepare",
  "rounds",
  "collect",
  "suspend",
  "flush",
  "capture",
  "encode",
  "transfer",
  "restore",
  "resumed",
  "post_copy",
] as const;

/** A phase of the source. */
export type SourcePhase = (typeof SOURCE_PHASES)[number];

/**
 * Phases of the destination. Until READY: checking the offer (`admit`),
 * fetching a module it lacks (`fetch_module`), instantiating the standby
 * (`standby`) and backing its memory (`reserve`). After: waiting for frames
 * (`wait`), placing the rounds' pages and confirming each round (`pages`), checking and placing the
 * image (`decode`), setting up its relay, links and connections and posting
 * its state to the worker (`restore`), writing the durable record that it
 * runs here while the worker takes the state up, and taking it into the
 * process table once it runs (`adopt`), and the rest of the wait for the
 * worker to say it runs (`resume`), before it answers RUNNING. `collect`:
 * the full garbage collection asked for when the stop is near
 * ({@link collectBeforeStop}).
 */
export const DESTINATION_PHASES = ["admit", "fetch_module", "standby", "reserve", "wait", "pages", "collect", "decode", "restore", "resume", "adopt"] as const;

/** A phase of the destination. */
export type DestinationPhase = (typeof DESTINATION_PHASES)[number];

/** Milliseconds spent in each phase that was entered (absent: never entered). */
export type PhasesMs<P extends string> = Partial<Record<P, number>>;

/** Times consecutive phases: entering one ends the one before. */
export class PhaseClock<P extends string> {
  readonly #now: () => number;
  readonly #spent: PhasesMs<P> = {};
  #current: P | null = null;
  #since = 0;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** The phase running now, if any. */
  get current(): P | null {
    return this.#current;
  }

  /**
   * Ends the current phase (if any) and starts `phase`; a phase entered twice
   * adds up. `at`: the moment it starts, when the caller read the clock
   * already (so a figure it takes from that reading adds up with the phases).
   */
  enter(phase: P, at: number = this.#now()): void {
    const now = at;
    this.#close(now);
    this.#current = phase;
    this.#since = now;
  }

  /** Ends the current phase (at `at`, as for `enter`); the clock then counts nothing until the next `enter`. */
  stop(at: number = this.#now()): void {
    this.#close(at);
    this.#current = null;
  }

  /** Adds `ms` to `phase` without changing the current one (time measured elsewhere). */
  add(phase: P, ms: number): void {
    this.#spent[phase] = (this.#spent[phase] ?? 0) + ms;
  }

  /** Moves `ms` out of the current phase into `phase` (time the current one spent on another's work). */
  carve(phase: P, ms: number): void {
    if (this.#current === null || ms <= 0) return;
    this.add(phase, ms);
    this.#since += ms;
  }

  /** What was spent so far (the current phase up to now included). */
  snapshot(): PhasesMs<P> {
    const out: PhasesMs<P> = { ...this.#spent };
    if (this.#current !== null) out[this.#current] = (out[this.#current] ?? 0) + (this.#now() - this.#since);
    return out;
  }

  #close(now: number): void {
    if (this.#current === null) return;
    this.add(this.#current, now - this.#since);
  }
}

/**
 * Wraps an iterable so the time spent producing each item (in the
 * iterator's `next`) is told to `spent`: the image encoder is a generator,
 * and its time interleaves with the sends that take its chunks.
 */
export function* timedIterable<T>(items: Iterable<T>, spent: (ms: number) => void): Generator<T, void, undefined> {
  const it = items[Symbol.iterator]();
  for (;;) {
    const t = performance.now();
    const r = it.next();
    spent(performance.now() - t);
    if (r.done === true) return;
    yield r.value;
  }
}

/** {@link timedIterable} for an async source: the time until each item is ready counts (waits included). */
export async function* timedAsyncIterable<T>(items: AsyncIterable<T>, spent: (ms: number) => void): AsyncGenerator<T, void, undefined> {
  const it = items[Symbol.asyncIterator]();
  try {
    for (;;) {
      const t = performance.now();
      const r = await it.next();
      spent(performance.now() - t);
      if (r.done === true) return;
      yield r.value;
    }
  } finally {
    await it.return?.();
  }
}

/**
 * Bytes of pages a side must have moved through JavaScript buffers (PAGES
 * frames, either way) before {@link collectBeforeStop} collects. V8 answers
 * external memory with a mark-compact about every 64 MB allocated; a move
 * that framed less than this left too little garbage for one to be likely
 * inside its downtime, and a forced collection would only stall the node:
 * 15 to 30 ms on each side, during which its event loop serves no relayed
 * connection and no link (a 280 KiB server moved by pre-copy: every move
 * collected twice, and its clients' longest round trip was the collections,
 * not the downtime). A first round on the record connection (native threads
 * at both ends) frames nothing.
 */
export const COLLECT_FRAMED_BYTES_MIN = 16 * 1024 * 1024;

/**
 * Asks V8 for a full garbage collection (phase `collect`) at a moment when
 * it costs no downtime, if this side framed at least
 * {@link COLLECT_FRAMED_BYTES_MIN} of pages; says whether it did. Rounds
 * send and receive their pages in fresh 1 MiB buffers, and V8 answers that
 * much external memory with a mark-compact every 60 to 100 ms, 2 to 25 ms
 * each, on both nodes: one fell inside most pre-copy downtimes of a 256 MiB
 * process (issue 15). Collected when the stop is near, the little the
 * stopped phase allocates does not bring one on. The source decides when
 * the round after pre-copy's first small one starts (`RoundLimits.collect`:
 * what the process writes during the collection goes in that round, not in
 * the final copy), else just before the stop (hybrid, or a pre-copy whose
 * first small round was its last); the destination before it confirms
 * pre-copy's first small round or hybrid's round. Only strategies with
 * rounds ask: post-copy's downtime was no lower with it (no rounds leave
 * garbage behind), and stop-copy's is the whole copy, while a small move's
 * total would pay.
 */
export function collectBeforeStop(clock: { enter(phase: "collect"): void }, framed_bytes: number): boolean {
  if (framed_bytes < COLLECT_FRAMED_BYTES_MIN) return false;
  clock.enter("collect");
  collectNow();
  return true;
}

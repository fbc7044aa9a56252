/**
 * Pieces of the source's work that need no state of its own: pre-copy rounds,
 * the chunks post-copy still owes, the chunks a restore touches first, and
 * the watch for the destination's one answer to an image.
 */
import type { Hash } from "node:crypto";
import { FerryError, TransportError, TransportErrorCodes } from "../errors.js";
import { CHUNK_BYTES, type PageTracker } from "../memory/mod.js";
import type { Frame, FramedConnection } from "../transport/mod.js";
import { INLINE_FINAL_PAGES_MAX, Msg, raiseIfError, readFrame, sendJson, sendPages, WIRE_PAGE_BYTES } from "./_wire.js";
import { borrowedBytes, THROTTLE_PCT_MAX } from "../runtime/mod.js";
import { RoundEndSchema } from "./_schemas.js";
import { compressRound, type Compression } from "./_compress.js";
import type { MigrationMetrics, SourceSide } from "./source.js";

/** The destination's one answer to an image, watched while the image is sent. */
export interface Answer {
  /** The answer, once it has come. */
  arrived: Frame | null;
  /** Settles when it comes (rejects if the link broke first): for whoever must act on it at once. */
  readonly frame: Promise<Frame>;
  /** Waits for it at most `timeout_ms` from now (ERR_TRANSPORT_TIMEOUT). */
  within(timeout_ms: number): Promise<Frame>;
}

/**
 * Starts waiting for the destination's answer before the image goes out, so
 * an early ERROR is seen while sending. No timeout yet: sending a large image
 * takes as long as it takes; the restore's timeout starts once it is sent.
 */
export function awaitAnswer(conn: FramedConnection): Answer {
  const frame = conn.next();
  const answer: Answer = {
    arrived: null,
    frame,
    within: (timeout_ms) =>
      new Promise<Frame>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new TransportError(TransportErrorCodes.timeout, `the destination did not answer within ${timeout_ms} ms of the image`)),
          timeout_ms,
        );
        frame.then(
          (f) => {
            clearTimeout(timer);
            resolve(f);
          },
          (err: unknown) => {
            clearTimeout(timer);
            reject(err);
          },
        );
      }),
  };
  // A rejection here (the link broke) is seen by within(), or by the send that fails with it.
  frame.then((f) => (answer.arrived = f), () => undefined);
  return answer;
}

/** Most chunks pushed ahead of any request when a post-copied process restores. */
const HOT_CHUNKS_MAX = 16;

/**
 * Chunks a post-copied process's restore reads before it runs: the top of
 * memory, where its stack is rewound through a region borrowed there
 * (`runtime/_stack.ts`). They go with the image, so the restore waits on no
 * page of the source's.
 */
export function restoreChunks(size_bytes: number, stack_bytes: number): number[] {
  const chunks: number[] = [];
  for (let c = Math.floor(Math.max(0, size_bytes - borrowedBytes(stack_bytes)) / CHUNK_BYTES); c < size_bytes / CHUNK_BYTES; c += 1) chunks.push(c);
  return chunks;
}

/**
 * Chunks the process touches first once it runs: those around every i32
 * global that points into memory (a C program's stack pointer among them).
 * Pushed first, they save it a round trip each.
 */
export function firstChunks(size_bytes: number, globals: { type: string; bits: bigint }[]): number[] {
  const hot = new Set<number>();
  for (const g of globals) {
    if (g.type !== "i32" || g.bits >= BigInt(size_bytes)) continue;
    const c = Math.floor(Number(g.bits) / CHUNK_BYTES);
    hot.add(c);
    if (c > 0) hot.add(c - 1);
  }
  return [...hot].slice(0, HOT_CHUNKS_MAX);
}

/**
 * Splits `hot` chunks out of the `missing` runs: those of them still missing
 * (in order), and the runs without them. Post-copy sends these before the
 * handover, with the image, so the restore finds them in place and asks the
 * source for nothing (`_outgoing.ts`).
 */
export function takeChunks(missing: readonly [number, number][], hot: readonly number[]): { taken: number[]; rest: [number, number][] } {
  const wanted = new Set(hot);
  const taken: number[] = [];
  const rest: [number, number][] = [];
  for (const [first, count] of missing) {
    let run = first;
    for (let c = first; c < first + count; c += 1) {
      if (!wanted.has(c)) continue;
      if (c > run) rest.push([run, c - run]);
      taken.push(c);
      run = c + 1;
    }
    if (first + count > run) rest.push([run, first + count - run]);
  }
  return { taken, rest };
}

/** Every page of `chunks`, in order, as views of `memory`. */
export function* chunkPages(memory: Uint8Array, chunks: readonly number[]): Generator<{ index: number; data: Uint8Array }> {
  const per_chunk = CHUNK_BYTES / WIRE_PAGE_BYTES;
  for (const c of chunks) {
    for (let i = c * per_chunk; i < (c + 1) * per_chunk; i += 1) yield { index: i, data: memory.subarray(i * WIRE_PAGE_BYTES, (i + 1) * WIRE_PAGE_BYTES) };
  }
}

/**
 * The chunks post-copy must still bring over, as [first, count] runs: all of
 * memory, or for hybrid those holding a page written since the round.
 */
export function missingChunks(memory: Uint8Array, tracker: PageTracker | null): [number, number][] {
  const chunks = memory.length / CHUNK_BYTES;
  if (tracker === null) return chunks > 0 ? [[0, chunks]] : [];
  const dirty = new Uint8Array(chunks);
  const per_chunk = CHUNK_BYTES / WIRE_PAGE_BYTES;
  if (tracker.changedRuns !== undefined) {
    // The kernel's runs: no page is read while the process is stopped.
    // The last look: nothing is re-armed (the tracker is closed once the destination runs the process; for hybrid, once its pages are served).
    const runs = tracker.changedRuns(memory, { last: true });
    for (let i = 0; i + 1 < runs.length; i += 2) dirty.fill(1, Math.floor(runs[i]! / per_chunk), Math.ceil(runs[i + 1]! / per_chunk));
  } else {
    for (const page of tracker.changed(memory, { last: true })) dirty[Math.floor(page.index / per_chunk)] = 1;
  }
  const runs: [number, number][] = [];
  for (let c = 0; c < chunks; ) {
    if (dirty[c] === 0) {
      c += 1;
      continue;
    }
    let end = c;
    while (end < chunks && dirty[end] === 1) end += 1;
    runs.push([c, end - c]);
    c = end;
  }
  return runs;
}

/** How long the destination may take to confirm a round: it only places the round's pages. */
const ROUND_ACK_TIMEOUT_MS = 30_000;

/** Auto-converge's first throttle and its step up each round that did not shrink (QEMU's defaults: 20 and 10). */
const THROTTLE_FIRST_PCT = 20;
const THROTTLE_STEP_PCT = 10;

/** What a pre-copy round showed, for {@link decideRound}. */
export interface RoundSeen {
  round: number;
  /** Pages it sent, and the round before (Infinity before the second). */
  pages: number;
  previous_pages: number;
  /** From its scan to the destination's confirmation. */
  elapsed_ms: number;
  /** How fast the process wrote pages since the last scan (Infinity after the first round: not known yet). */
  dirty_bytes_per_ms: number;
  /** How fast the destination confirmed pages, all rounds so far. */
  link_bytes_per_ms: number;
  throttle_pct: number;
}

/**
 * The least share of the downtime target left to the final copy's bytes,
 * however much the rest of a stop was seen to cost: below it the rounds
 * would chase a copy too small to reach, under a throttle that cannot help.
 */
export const FINAL_COPY_SHARE_MIN = 0.2;

/**
 * The time the final copy's bytes may take: the downtime target less what
 * the rest of a stop costs (`stop_cost_ms`: suspend, image, restore, as
 * last seen to this destination), and never less than
 * {@link FINAL_COPY_SHARE_MIN} of the target.
 */
export function finalCopyBudgetMs(limits: Pick<RoundLimits, "max_downtime_ms" | "stop_cost_ms">): number {
  return Math.max(limits.max_downtime_ms - (limits.stop_cost_ms ?? 0), limits.max_downtime_ms * FINAL_COPY_SHARE_MIN);
}

/**
 * After a round: stop the process now (what it writes during the next round
 * would fit the final copy's budget at the confirmed rate, or the rounds are
 * used up, or they stopped shrinking and cannot be helped), or go on with
 * another round, under a higher throttle if they stopped shrinking. Pure,
 * so the policy is tested without a process or a link.
 */
export function decideRound(seen: RoundSeen, limits: Pick<RoundLimits, "max_downtime_ms" | "rounds_max" | "auto_converge" | "stop_cost_ms">): { kind: "stop" } | { kind: "go"; throttle_pct: number } {
  // What it writes while the next round is on its way is the final copy.
  const final_bytes = Math.min(seen.pages * WIRE_PAGE_BYTES, seen.dirty_bytes_per_ms * seen.elapsed_ms);
  const fits = seen.round >= 2 && (final_bytes === 0 || final_bytes / seen.link_bytes_per_ms <= finalCopyBudgetMs(limits));
  if (fits || seen.round >= limits.rounds_max) return { kind: "stop" };
  if (seen.round < 2 || seen.pages < seen.previous_pages) return { kind: "go", throttle_pct: seen.throttle_pct };
  // Not shrinking: it writes about as fast as the link carries.
  if (!limits.auto_converge || seen.throttle_pct >= THROTTLE_PCT_MAX) return { kind: "stop" };
  const stepped = seen.throttle_pct === 0 ? THROTTLE_FIRST_PCT : seen.throttle_pct + THROTTLE_STEP_PCT;
  // Where the rates are known, go straight to the share that brings the writes
  // under half the link (each round of steps costs a whole round's copy); the
  // steps still apply when the measured rate is capped by a small memory
  // written all over within a round.
  const wanted = Number.isFinite(seen.dirty_bytes_per_ms) && seen.dirty_bytes_per_ms > 0 ? Math.ceil(100 * (1 - seen.link_bytes_per_ms / (2 * seen.dirty_bytes_per_ms))) : 0;
  return { kind: "go", throttle_pct: Math.min(THROTTLE_PCT_MAX, Math.max(stepped, wanted)) };
}

/** Limits of {@link preCopyRounds}. */
export interface RoundLimits {
  max_downtime_ms: number;
  rounds_max: number;
  /** Folds every PAGES payload, as the destination does (the signed image vouches for them). */
  digest: Hash;
  /** Throttle the process when rounds stop shrinking (default on). */
  auto_converge: boolean;
  /** Whether rounds compress their pages (`_compress.ts`). */
  compression: Compression;
  /** The rate this node last saw the destination confirm pages at, for the first round's choice (null: none yet). */
  link_hint_bytes_per_s: number | null;
  /**
   * What a stop cost besides the final copy's bytes in this node's recent
   * moves to the destination ({@link stopCostMs}); taken off the downtime
   * target before the rounds decide (absent or 0: nothing known, the whole
   * target is the final copy's).
   */
  stop_cost_ms?: number;
  /**
   * Called once when the stop is near, with the bytes of pages the rounds
   * sent as PAGES frames so far: before the round after the first one of at
   * most INLINE_FINAL_PAGES_MAX pages, or else when the rounds end. The
   * source's full garbage collection (`collectBeforeStop`, which decides by
   * those bytes) goes there, so that what the process writes meanwhile goes
   * in that round and not in the final copy.
   */
  collect?: (framed_bytes: number) => void;
  /**
   * Sends the first round on a connection of its own from a native thread
   * (`_native_bulk.ts`): the tracker armed first, then every non-zero page,
   * then BULK_SEALED; what it sent. Null when it cannot (that connection
   * did not open): the round goes as PAGES frames. Not used for a round
   * that compresses.
   */
  first_round?: () => Promise<{ bytes: number; pages: number } | null>;
}

/**
 * Copies memory while the process runs, each round only what changed since
 * the last, and waits for the destination to confirm each round: the rate
 * that counts is what arrived, not what was queued (a round still queued
 * when the process stops is downtime). Stops when what the process writes
 * during a round would fit the downtime target at that rate, or at the
 * round limit. When rounds stop shrinking (it writes about as fast as the
 * link carries), auto-converge holds the process at its safe points for a
 * growing share of its time, and says so in the metrics.
 */
export async function preCopyRounds(
  conn: FramedConnection,
  tracker: PageTracker,
  memory: () => Uint8Array,
  metrics: MigrationMetrics,
  limits: RoundLimits,
  side: SourceSide,
): Promise<void> {
  let previous = Infinity;
  const confirmed = new ConfirmedRate();
  let last_scan = performance.now();
  // Bytes of the rounds sent as PAGES frames, through this thread's buffers (the garbage a collection is for).
  let framed_bytes = 0;
  let near = false;
  const stopIsNear = (): void => {
    if (near) return;
    near = true;
    limits.collect?.(framed_bytes);
  };
  for (let round = 1; ; round += 1) {
    if (previous <= INLINE_FINAL_PAGES_MAX) stopIsNear();
    const t = performance.now();
    // Pages written between the last scan and this one are this round's.
    const dirtied_ms = Math.max(t - last_scan, 0.001);
    last_scan = t;
    // The first round goes by what an earlier move to this destination saw; the next ones by what this one saw.
    const compress = compressRound(limits.compression, round === 1 ? limits.link_hint_bytes_per_s : confirmed.bytesPerMs() * 1000);
    const native = round === 1 && !compress && limits.first_round !== undefined ? await limits.first_round() : null;
    if (round === 1) metrics.first_round = native !== null ? "records" : "frames";
    const sent = native !== null ? { ...native, raw_bytes: native.bytes } : await sendPages(conn, tracker.changed(memory()), { digest: limits.digest, compress });
    if (compress) {
      const c = (metrics.compression ??= { codec: "lz4", raw_bytes: 0, wire_bytes: 0 });
      c.raw_bytes += sent.raw_bytes;
      c.wire_bytes += sent.bytes;
    }
    await sendJson(conn, Msg.round_end, { round });
    const ack = await conn.next({ timeout_ms: ROUND_ACK_TIMEOUT_MS });
    raiseIfError(ack, "the destination gave up");
    if (ack.type !== Msg.round_ack || readFrame(RoundEndSchema, ack.payload, "ROUND_ACK").round !== round) {
      throw new FerryError("ERR_MIGRATION_PROTOCOL", `expected ROUND_ACK of round ${round}, got frame type ${ack.type}`);
    }
    const elapsed_ms = Math.max(performance.now() - t, 0.001);
    confirmed.add(sent.bytes, elapsed_ms, native !== null);
    if (native === null) framed_bytes += sent.bytes;
    metrics.rounds = round;
    metrics.pages += sent.pages;
    metrics.bytes += sent.bytes;
    metrics.dirty_pages.push(sent.pages);
    const link_bytes_per_ms = confirmed.bytesPerMs();
    const dirty_bytes_per_ms = round === 1 ? Infinity : (sent.pages * WIRE_PAGE_BYTES) / dirtied_ms;
    const dirty_bytes_per_s = round === 1 ? null : Math.round(dirty_bytes_per_ms * 1000);
    metrics.convergence = { link_bytes_per_s: Math.round(link_bytes_per_ms * 1000), dirty_bytes_per_s, throttle_pct: metrics.convergence?.throttle_pct ?? 0, stop_cost_ms: Math.round((limits.stop_cost_ms ?? 0) * 10) / 10 };
    side.progress?.({ phase: "round", round, pages: sent.pages, bytes: metrics.bytes, memory_bytes: memory().length, ...(dirty_bytes_per_s !== null ? { dirty_bytes_per_s } : {}) });
    const next = decideRound(
      { round, pages: sent.pages, previous_pages: previous, elapsed_ms, dirty_bytes_per_ms, link_bytes_per_ms, throttle_pct: metrics.convergence.throttle_pct },
      limits,
    );
    if (next.kind === "stop") {
      stopIsNear();
      return;
    }
    if (next.throttle_pct !== metrics.convergence.throttle_pct) {
      side.proc.throttle(next.throttle_pct);
      metrics.convergence.throttle_pct = next.throttle_pct;
    }
    previous = sent.pages;
  }
}

/**
 * The rate the destination confirmed rounds at, the one the rounds' decisions
 * go by. The final copy goes in the image, on the data connection: what
 * counts is the rate of the rounds sent there, all of them together (a round
 * of a few pages is mostly its round trip, and alone would make the link look
 * slow). A first round on the record connection (a native thread at each
 * end) is two to three times faster, and counts only until a round on the
 * data connection is confirmed: else the final copy would be given that many
 * more pages than its budget carries.
 */
export class ConfirmedRate {
  #bytes = 0;
  #ms = 0;
  #records_bytes = 0;
  #records_ms = 0;

  /** A round confirmed: its bytes, from its scan to its ROUND_ACK, and whether it went on the record connection. */
  add(bytes: number, ms: number, records: boolean): void {
    if (records) {
      this.#records_bytes += bytes;
      this.#records_ms += ms;
    } else {
      this.#bytes += bytes;
      this.#ms += ms;
    }
  }

  /** Bytes per millisecond (NaN before any round). */
  bytesPerMs(): number {
    return this.#ms > 0 ? this.#bytes / this.#ms : this.#records_bytes / this.#records_ms;
  }
}

/**
 * What a pre-copy's stop cost besides its final copy's bytes: its downtime
 * less the time those bytes take at the rate the rounds were confirmed at
 * (suspending, flushing, the image's making, checking and placing, the
 * restore, RUNNING back). Null when the move tells nothing of it (no
 * rounds confirmed). The next move to the same destination takes it off its
 * downtime target ({@link RoundLimits.stop_cost_ms}).
 */
export function stopCostMs(m: { downtime_ms: number; dirty_pages: readonly number[]; convergence?: { link_bytes_per_s: number } }): number | null {
  const rate = m.convergence?.link_bytes_per_s;
  const final_pages = m.dirty_pages.at(-1);
  if (rate === undefined || !(rate > 0) || final_pages === undefined) return null;
  return Math.max(0, m.downtime_ms - (final_pages * WIRE_PAGE_BYTES * 1000) / rate);
}

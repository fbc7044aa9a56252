/**
 * Pieces of the source's work that need no state of its own: pre-copy rounds,
 * the chunks post-copy still owes, the chunks a restore touches first, and
 * the watch for the destination's one answer to an image.
 */
import type { Hash } from "node:crypto";
import { TransportError, TransportErrorCodes } from "../errors.js";
import { CHUNK_BYTES, type PageTracker } from "../memory/mod.js";
import type { Frame, FramedConnection } from "../transport/mod.js";
import { Msg, sendJson, sendPages, WIRE_PAGE_BYTES } from "./_wire.js";
import type { MigrationMetrics, SourceSide } from "./source.js";

/** The destination's one answer to an image, watched while the image is sent. */
export interface Answer {
  /** The answer, once it has come. */
  arrived: Frame | null;
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

/** Most chunks sent ahead of any request when a post-copied process restores. */
const HOT_CHUNKS_MAX = 16;

/**
 * Chunks the destination's restore touches at once: the top of memory (the
 * stack is rewound through a region borrowed there) and the chunks around
 * every i32 global that points into memory (a C program's stack pointer among
 * them). Sent first, they save the restore a round trip each.
 */
export function restoreChunks(size_bytes: number, stack_bytes: number, globals: { type: string; bits: bigint }[]): number[] {
  const hot = new Set<number>();
  const top = size_bytes / CHUNK_BYTES;
  for (let c = Math.floor(Math.max(0, size_bytes - stack_bytes - 1) / CHUNK_BYTES); c < top; c += 1) hot.add(c);
  for (const g of globals) {
    if (g.type !== "i32" || g.bits >= BigInt(size_bytes)) continue;
    const c = Math.floor(Number(g.bits) / CHUNK_BYTES);
    hot.add(c);
    if (c > 0) hot.add(c - 1);
  }
  return [...hot].slice(0, HOT_CHUNKS_MAX);
}

/**
 * The chunks post-copy must still bring over, as [first, count] runs: all of
 * memory, or for hybrid those holding a page written since the round.
 */
export function missingChunks(memory: Uint8Array, tracker: PageTracker | null): [number, number][] {
  const chunks = memory.length / CHUNK_BYTES;
  if (tracker === null) return chunks > 0 ? [[0, chunks]] : [];
  const dirty = new Uint8Array(chunks);
  for (const page of tracker.changed(memory)) dirty[Math.floor((page.index * WIRE_PAGE_BYTES) / CHUNK_BYTES)] = 1;
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


/**
 * Copies memory while the process runs, each round only what changed since
 * the last. Stops when the last round's pages would fit the downtime target
 * at the measured rate, when rounds stop shrinking, or at the round limit.
 */
export async function preCopyRounds(
  conn: FramedConnection,
  tracker: PageTracker,
  memory: () => Uint8Array,
  metrics: MigrationMetrics,
  limits: { max_downtime_ms: number; rounds_max: number; digest: Hash },
  side: SourceSide,
): Promise<void> {
  let previous = Infinity;
  // The best rate seen: a round of a few pages is mostly the scan for them,
  // and would make the last pages look slower to send than they are.
  let rate_bytes_per_ms = 1;
  for (let round = 1; ; round += 1) {
    const t = performance.now();
    const sent = await sendPages(conn, tracker.changed(memory()), limits.digest);
    await sendJson(conn, Msg.round_end, { round });
    const elapsed_ms = Math.max(performance.now() - t, 0.001);
    metrics.rounds = round;
    metrics.pages += sent.pages;
    metrics.bytes += sent.bytes;
    metrics.dirty_pages.push(sent.pages);
    side.progress?.({ phase: "round", round, pages: sent.pages, bytes: metrics.bytes, memory_bytes: memory().length });
    rate_bytes_per_ms = Math.max(rate_bytes_per_ms, sent.bytes / elapsed_ms);
    const fits = (sent.pages * WIRE_PAGE_BYTES) / rate_bytes_per_ms <= limits.max_downtime_ms;
    if (round >= 2 && (fits || sent.pages >= previous)) return;
    if (round >= limits.rounds_max) return;
    previous = sent.pages;
  }
}

/**
 * Checkpoints (docs/checkpoints.md): the runner's side of one incremental
 * checkpoint, and sending a stored image to a node that resumes it.
 *
 * A checkpoint is a pre-copy migration that never commits: rounds of pages
 * sent while the process runs (the first: every non-zero page for the first
 * checkpoint of a chain, then only those the tracker found written since the
 * last; each later round what the one before missed, while that is at most a
 * quarter of it), a short stop for the final capture (stack, globals, WASI and
 * link state, and a copy of the pages no round sent), and the process runs on
 * while that capture is sent. The keeper stores the pages and the signed image, whose
 * META vouches for every PAGES frame (`precopy_sha256`, as in a migration).
 *
 * On a checkpoint connection:
 *   S→K BEGIN (JSON, {@link CheckpointBegin}); K→S READY or ERROR
 *   S→K PAGES* (the round, live)  PAGES* (the final copy)  IMAGE* IMAGE_END
 *   K→S STORED (JSON, {@link CheckpointStored}) or ERROR
 */
import { createHash } from "node:crypto";
import { FerryError } from "../errors.js";
import { encodeImage, type ImageSigner, type ProcessImage } from "../image/mod.js";
import { TRACK_PAGE_BYTES, type PageTracker, type TrackedPage } from "../memory/mod.js";
import type { GuestProcess } from "../runtime/mod.js";
import type { FramedConnection } from "../transport/mod.js";
import { Msg, raiseIfError, readFrame, sendImage, sendJson, sendPages } from "./_wire.js";
import { CheckpointStoredSchema, EmptySchema } from "./_schemas.js";
import type { Offer } from "./source.js";

/**
 * Most rounds a checkpoint sends while the process runs. A base of a large
 * process takes a while to send, and a busy process writes much meanwhile:
 * further rounds shrink what the pause must copy, as long as they shrink.
 */
export const CHECKPOINT_ROUNDS_MAX = 4;
/**
 * A round is sent only if it holds at most this share (1/N) of the round
 * before; else the pause copies it. Rounds that shrink slowly (a process
 * writing at half the link's rate halves each round) re-send what the last
 * one sent: four halving rounds sent almost twice the memory for one
 * checkpoint. With 4, rounds send at most about 4/3 of what they start with.
 */
export const CHECKPOINT_ROUND_SHRINK = 4;
/** A round that would find this few pages is not sent: copying them in the pause costs about a millisecond. */
export const CHECKPOINT_FINAL_PAGES_GOAL = 1024;

/** Frame types of a checkpoint connection beyond the migration's (`Msg`). */
export const CheckpointMsg = {
  begin: 20,
  stored: 21,
} as const;

/** How long the keeper may take to get ready (it may fetch the module first). */
const KEEPER_READY_TIMEOUT_MS = 30_000;
/**
 * How long the keeper (or a restore's destination) may take to answer from
 * the moment the image starts going out: sending a base of gigabytes, then
 * checking and storing (or restoring) it.
 */
const ANSWER_TIMEOUT_MS = 120_000;

/** BEGIN: which checkpoint of which process comes, and what the keeper needs to restore it later. */
export interface CheckpointBegin {
  /** The process, as a migration would offer it (strategy and source are the runner's; open_files empty). */
  process: Omit<Offer, "strategy" | "open_files" | "recover_ms">;
  /** Names the chain: a new one starts with a base, every later checkpoint of it is an increment. */
  chain: string;
  /** Its number in the chain, from 1 (the base). */
  seq: number;
}

/** STORED: what the keeper holds of the process now. */
export interface CheckpointStored {
  /** Bytes the keeper wrote for this checkpoint. */
  stored_bytes: number;
}

/** What one checkpoint cost. */
export interface CheckpointMetrics {
  /** How long the process was stopped: from the suspend request to it running again. */
  pause_ms: number;
  /** When it ran again after the pause (`performance.now()`): the runner measures the interval between checkpoints from here. */
  resumed_at_ms: number;
  /** From the start to the keeper having stored it. */
  total_ms: number;
  /** Bytes sent on the connection (pages, image). */
  bytes: number;
  /** Pages sent: the rounds' and the final copy's. */
  pages: number;
  /** Rounds sent while the process ran. */
  rounds: number;
  /** Pages written while the round was sent: copied during the pause. */
  final_pages: number;
  /** Output offsets the checkpoint covers (the output commit releases up to these). */
  stdout_bytes: number;
  stderr_bytes: number;
  memory_bytes: number;
  /** Bytes the keeper stored. */
  stored_bytes: number;
}

/** What a checkpoint needs of the runner. */
export interface CheckpointSide {
  proc: GuestProcess;
  signer: ImageSigner;
  /** The process's links: frozen for the capture, taken up again at once. */
  links?: { freeze(): void; capture(): unknown; resume(): void };
  /**
   * Resolves once all output written so far (at least `covered`, the offsets
   * the checkpoint covers) has reached the home, and wherever else it must
   * be before the checkpoint counts as stored (the home's replica on the
   * keeper, with a cluster directory). Called after the pause and before the
   * image goes out: a stored checkpoint's output is then always at the home
   * and its replica, so a restart from it leaves no gap.
   */
  flushOutput?(covered: { stdout_bytes: number; stderr_bytes: number }): Promise<void>;
}

/**
 * Takes one checkpoint of a running process over `conn` (a fresh checkpoint
 * connection to the keeper) with `tracker`, which holds what the previous
 * checkpoint of this chain sent (a fresh tracker: a base). On any failure the
 * process runs on as before and the chain must start again with a base: the
 * tracker has moved on past what the keeper holds.
 */
export async function takeCheckpoint(conn: FramedConnection, side: CheckpointSide, tracker: PageTracker, begin: CheckpointBegin): Promise<CheckpointMetrics> {
  const t0 = performance.now();
  const memory = (): Uint8Array => new Uint8Array(side.proc.memory.buffer);
  await sendJson(conn, CheckpointMsg.begin, begin);
  const ready = await conn.next({ timeout_ms: KEEPER_READY_TIMEOUT_MS });
  raiseIfError(ready, "the keeper refused the checkpoint");
  if (ready.type !== Msg.ready) throw new FerryError("ERR_CHECKPOINT_PROTOCOL", `expected READY, got frame type ${ready.type}`);
  readFrame(EmptySchema, ready.payload, "READY");
  const digest = createHash("sha256");
  // The rounds: while the process runs (sendPages copies each page into its frame, as hashed).
  const round = { pages: 0, bytes: 0 };
  let rounds = 0;
  // Pages the tracker reported that no round sent: the pause copies them (as they are then) with what it finds.
  let carried: readonly TrackedPage[] = [];
  for (let previous = Infinity; rounds < CHECKPOINT_ROUNDS_MAX; ) {
    const found = [...tracker.changed(memory())];
    // Another round is worth it only while rounds shrink fast: else it re-sends much of what the last one sent,
    // and the pause copies about as much in the end.
    if (rounds > 0 && (found.length <= CHECKPOINT_FINAL_PAGES_GOAL || found.length * CHECKPOINT_ROUND_SHRINK > previous)) {
      carried = found;
      break;
    }
    const sent = await sendPages(conn, found, { digest });
    rounds += 1;
    round.pages += sent.pages;
    round.bytes += sent.bytes;
    previous = sent.pages;
  }
  // The pause: only the capture and a copy of what the rounds did not send.
  const stopped_at = performance.now();
  const suspension = await side.proc.suspend();
  if (suspension === null) throw new FerryError("ERR_PROCESS_ENDED", "the process ended before its checkpoint");
  let image: ProcessImage;
  let final: { index: number; data: Uint8Array }[] = [];
  let links_frozen = false;
  try {
    image = side.proc.image(suspension);
    if (side.links !== undefined) {
      side.links.freeze();
      links_frozen = true;
      image.links = side.links.capture();
    }
    final = copyPages(memory(), carried, tracker);
  } finally {
    if (links_frozen) side.links?.resume();
    await side.proc.resume();
  }
  const resumed_at_ms = performance.now();
  const pause_ms = resumed_at_ms - stopped_at;
  await side.flushOutput?.(image.streams);
  const last = await sendPages(conn, final, { digest });
  // Every page went in PAGES frames (zero pages too: they clear an older copy); the image carries the size only.
  image.memory = { size_bytes: image.memory.size_bytes, pages: () => [] };
  image.meta.precopy_sha256 = digest.digest("hex");
  const answer = conn.next({ timeout_ms: ANSWER_TIMEOUT_MS });
  // Seen through the await below; this keeps an early rejection from being unhandled meanwhile.
  answer.catch(() => undefined);
  const image_bytes = await sendImage(conn, encodeImage(image, { signer: side.signer }));
  const stored = await answer;
  raiseIfError(stored, "the keeper could not store the checkpoint");
  if (stored.type !== CheckpointMsg.stored) throw new FerryError("ERR_CHECKPOINT_PROTOCOL", `expected STORED, got frame type ${stored.type}`);
  const s = readFrame(CheckpointStoredSchema, stored.payload, "STORED");
  conn.close();
  return {
    pause_ms,
    resumed_at_ms,
    total_ms: performance.now() - t0,
    bytes: round.bytes + last.bytes + image_bytes,
    pages: round.pages + last.pages,
    rounds,
    final_pages: last.pages,
    stdout_bytes: image.streams.stdout_bytes,
    stderr_bytes: image.streams.stderr_bytes,
    memory_bytes: image.memory.size_bytes,
    stored_bytes: s.stored_bytes,
  };
}

/**
 * The pause's copy: the pages `carried` (found by the last look, sent by no
 * round) and those the tracker finds now, each once, in index order, copied
 * from `live` (the memory as it is now: a carried page's view may be of a
 * buffer since grown) into one buffer run by run. One allocation and one copy
 * per run, not one of each per page: the pause of a base whose rounds did not
 * shrink copies the whole memory.
 */
export function copyPages(live: Uint8Array, carried: readonly TrackedPage[], tracker: PageTracker): { index: number; data: Uint8Array }[] {
  const pages = live.length / TRACK_PAGE_BYTES;
  const marked = new Uint8Array(pages);
  for (const page of carried) if (page.index < pages) marked[page.index] = 1;
  if (tracker.changedRuns !== undefined) {
    const runs = tracker.changedRuns(live);
    for (let i = 0; i + 1 < runs.length; i += 2) marked.fill(1, runs[i] as number, Math.min(pages, runs[i + 1] as number));
  } else {
    for (const page of tracker.changed(live)) if (page.index < pages) marked[page.index] = 1;
  }
  let count = 0;
  for (let i = 0; i < pages; i += 1) count += marked[i] as number;
  const copy = Buffer.allocUnsafe(count * TRACK_PAGE_BYTES);
  const out: { index: number; data: Uint8Array }[] = [];
  let at = 0;
  for (let i = 0; i < pages; ) {
    if (marked[i] === 0) {
      i += 1;
      continue;
    }
    let end = i + 1;
    while (end < pages && marked[end] === 1) end += 1;
    copy.set(live.subarray(i * TRACK_PAGE_BYTES, end * TRACK_PAGE_BYTES), at);
    for (let p = i; p < end; p += 1, at += TRACK_PAGE_BYTES) out.push({ index: p, data: copy.subarray(at, at + TRACK_PAGE_BYTES) });
    i = end;
  }
  return out;
}

/**
 * Sends a whole image (rebuilt from checkpoints) to a destination as a
 * stop-and-copy migration would: OFFER, READY, the image, RUNNING. Resolves
 * with the bytes sent once the destination runs the process; nothing runs
 * anywhere else, so a failure leaves it not running at all (the caller may
 * try another node).
 */
export async function restoreTo(conn: FramedConnection, offer: Offer, chunks: Iterable<Uint8Array>): Promise<number> {
  await sendJson(conn, Msg.offer, offer);
  const ready = await conn.next({ timeout_ms: KEEPER_READY_TIMEOUT_MS });
  raiseIfError(ready, "the destination refused the restore");
  if (ready.type !== Msg.ready) throw new FerryError("ERR_CHECKPOINT_PROTOCOL", `expected READY, got frame type ${ready.type}`);
  readFrame(EmptySchema, ready.payload, "READY");
  const answer = conn.next({ timeout_ms: ANSWER_TIMEOUT_MS });
  // Seen through the await below; this keeps an early rejection from being unhandled while the image is sent.
  answer.catch(() => undefined);
  const bytes = await sendImage(conn, chunks);
  const reply = await answer;
  raiseIfError(reply, "the destination could not resume the process");
  if (reply.type !== Msg.running) throw new FerryError("ERR_CHECKPOINT_PROTOCOL", `expected RUNNING, got frame type ${reply.type}`);
  conn.close();
  return bytes;
}

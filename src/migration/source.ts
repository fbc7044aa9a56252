/**
 * The source side of a migration (DESIGN.md, "A migration, pre-copy"): offer,
 * optional pre-copy rounds while the process runs, stop, send the rest,
 * wait until the destination runs it. Until then the process is the
 * source's: any failure leaves it running here.
 */
import { createHash, type Hash } from "node:crypto";
import { FerryError, PeerError, TransportError, TransportErrorCodes } from "../errors.js";
import { encodeImage, sparsePages, type ImageSigner, type MemorySource } from "../image/mod.js";
import { CHUNK_BYTES, ShadowTracker, type PageTracker } from "../memory/mod.js";
import type { GuestProcess } from "../runtime/mod.js";
import type { Frame, FramedConnection } from "../transport/mod.js";
import { Msg, raiseIfError, readFrame, sendImage, sendJson, sendPages, WIRE_PAGE_BYTES, type Handover } from "./_wire.js";
import { EmptySchema, type Strategy } from "./_schemas.js";
import { servePostCopy, type PageChannel, type PostCopyMetrics, type Served } from "./postcopy.js";
import { watchStall } from "./stall.js";
import { errorField, logger } from "../log/mod.js";
export type { PageChannel, PostCopyMetrics } from "./postcopy.js";

export { STRATEGIES, type Strategy } from "./_schemas.js";

/** Default wait for a broken post-copy link to come back before the process is given up. */
export const RECOVER_MS_DEFAULT = 10_000;

/** Most pre-copy rounds before stopping the process anyway. */
export const PRECOPY_ROUNDS_MAX = 12;
/** Default downtime target of pre-copy. */
export const MAX_DOWNTIME_MS_DEFAULT = 300;
/** How long the destination may take to check an offer (it may fetch the module). */
const PREPARE_TIMEOUT_MS = 30_000;
/** How long the destination may take to restore once it has everything. */
const RESTORE_TIMEOUT_MS = 60_000;

/** What the destination is asked to take. */
export interface Offer {
  pid: string;
  home: string;
  module_sha256: string;
  module_name: string;
  args: string[];
  env: string[];
  dirs: { host: string; guest: string }[];
  /** Addresses its home listens on for it (informational: the sockets stay at the home). */
  listen?: string[];
  /** Files the process has open: they must exist on the destination. */
  open_files: string[];
  strategy: Strategy;
  /** The source node's address (the destination fetches a missing module there). */
  source: string;
  /** Memory size when offered; it can only grow, so the destination may reserve this much at once. */
  memory_bytes: number;
  /** The process's memory cap (it travels with the process; the destination checks it against its own maximum). */
  memory_max_bytes: number;
  /** Post-copy and hybrid: how long either side waits for a broken page channel to come back. */
  recover_ms?: number;
  /**
   * The process's move counter once it runs at the destination: one more
   * than at the source. Its home records locations, and takes its exit
   * report, in this order only.
   */
  moves: number;
  /**
   * Between nodes without TLS only: the public key (SPKI DER, base64) the
   * source signs the image with, which the destination then trusts for this
   * migration. It proves nothing about who sent the offer; with TLS the
   * destination trusts the key of the peer's authenticated certificate and
   * ignores this field.
   */
  signing_key?: string;
  /** Periodic checkpoints of the process, every this many ms (docs/checkpoints.md); they go on wherever it runs. */
  checkpoint_every_ms?: number;
}

/** What a migration reports. */
export interface MigrationMetrics {
  strategy: Strategy;
  /** From the request to the destination running the process. */
  total_ms: number;
  /** From the process stopping at the source to it running at the destination. */
  downtime_ms: number;
  /** Bytes sent on the data connection. */
  bytes: number;
  /** Pages sent, all rounds and the final copy together. */
  pages: number;
  /** Pre-copy rounds (0 for stop-and-copy). */
  rounds: number;
  /** Pages sent in each pre-copy round, then in the final copy (post-copy and hybrid: the pages left to the post-copy phase). */
  dirty_pages: number[];
  /** Post-copy and hybrid: the phase after the process resumed at the destination. */
  post_copy?: PostCopyMetrics;
}

/** A step of a migration, for a progress display. */
export interface MigrationProgress {
  phase: "offered" | "round" | "stopping" | "copying" | "post-copy";
  round?: number;
  /** Pages sent in this round. */
  pages?: number;
  /** Bytes sent so far. */
  bytes: number;
  /** The process's memory size now. */
  memory_bytes: number;
}

/** How the source reaches the world. */
export interface SourceSide {
  proc: GuestProcess;
  offer: Offer;
  /**
   * Signs the image (Ed25519 or ECDSA P-256 private key); the destination
   * runs the process only if it trusts this key. A node passes its own key.
   */
  signer: ImageSigner;
  connect(): Promise<FramedConnection>;
  /** Resolves once all output written so far has reached the home node. */
  flushOutput(): Promise<void>;
  /** After the link broke with the image sent: does the destination run the process? */
  destinationRuns(): Promise<boolean>;
  /** Progress for a user watching. */
  progress?(p: MigrationProgress): void;
  /** Post-copy and hybrid: opens the page channel of migration session `session` to the destination. */
  connectPages?(session: string): Promise<PageChannel>;
  /**
   * The process's links: stop taking and sending messages once it is
   * stopped (their state goes in the image), and take up again here if the
   * move fails.
   */
  links?: { freeze(): void; capture(): unknown; resume(): void };
  /**
   * The process's TCP connections: once it is stopped, make sure its home
   * has every byte it sent (their positions go in the image), and take them
   * up again here if the move fails.
   */
  net?: { freeze(): void; flush(): Promise<void>; resume(): void };
  /**
   * Post-copy and hybrid: the destination runs the process now. The source
   * keeps its suspended copy only to serve pages; it must never resume it.
   */
  resumed?(): void;
}

/** Options of {@link migrateOut}. */
export interface MigrationOptions {
  strategy: Strategy;
  /** Makes the page tracker pre-copy uses (default: the portable one). */
  tracker?: () => PageTracker;
  max_downtime_ms?: number;
  rounds_max?: number;
  /** Post-copy and hybrid: cap on the background push, bytes per second. */
  push_bytes_per_s?: number;
  /**
   * Aborts the migration (ERR_MIGRATION_STALLED, the process resumed here)
   * when it makes no progress for this long before the whole image is sent
   * (`stall.ts`). Past that point the destination may already run the
   * process, so an abort could leave two copies: the restore timeout, and
   * for post-copy `recover_ms`, apply instead. Default: no watchdog.
   */
  stall_ms?: number;
  /** Told once when the watchdog aborts the migration, with the phase it stalled in. */
  onStall?: (info: { idle_ms: number; phase: string }) => void;
}

/**
 * Moves a running process to the destination. Resolves once the destination
 * runs it (the caller then drops its copy); rejects with the process running
 * here as before.
 */
export async function migrateOut(side: SourceSide, options: MigrationOptions): Promise<MigrationMetrics> {
  const t0 = performance.now();
  const max_downtime_ms = options.max_downtime_ms ?? MAX_DOWNTIME_MS_DEFAULT;
  const metrics: MigrationMetrics = { strategy: options.strategy, total_ms: 0, downtime_ms: 0, bytes: 0, pages: 0, rounds: 0, dirty_pages: [] };
  let conn: FramedConnection | null = null;
  let tracker: PageTracker | null = null;
  let stopped_at = 0;
  let suspended = false;
  let image_sent = false;
  let links_frozen = false;
  let handover: Handover | null = null;
  /** SHA-256 of every PAGES frame of the rounds, which the signed image carries (META precopy_sha256). */
  let rounds_digest: Hash | null = null;
  let channel: Promise<PageChannel> | null = null;
  let serving: Promise<Served> | null = null;
  const stop_serving = new AbortController();
  let resumedThere!: () => void;
  const resumed_there = new Promise<void>((resolve) => (resumedThere = resolve));
  const memory = (): Uint8Array => new Uint8Array(side.proc.memory.buffer);
  // The stall watchdog: progress is bytes moved on the data connection plus steps taken.
  let steps = 0;
  let phase = "connecting";
  const step = (next: string): void => {
    steps += 1;
    phase = next;
  };
  let stall: FerryError | null = null;
  let stallNow!: (err: FerryError) => void;
  const stalled_p = new Promise<never>((_resolve, reject) => (stallNow = reject));
  stalled_p.catch(() => undefined); // observed through unlessStalled(); this one only keeps it from being unhandled
  /** `p`, or the stall error as soon as the watchdog fires: a wait that never ends is cut short. */
  const unlessStalled = <T>(p: Promise<T>): Promise<T> => (stall !== null ? Promise.reject(stall) : Promise.race([p, stalled_p]));
  const watchdog =
    options.stall_ms === undefined
      ? null
      : watchStall(
          options.stall_ms,
          () => steps + (conn?.moved_bytes ?? 0),
          (idle_ms) => {
            stall = new FerryError("ERR_MIGRATION_STALLED", `no progress for ${Math.round(idle_ms)} ms while ${phase} (stall timeout ${options.stall_ms} ms)`);
            options.onStall?.({ idle_ms, phase });
            stallNow(stall);
            // Whatever waits on the link fails now.
            conn?.destroy(stall);
          },
        );
  // Post-copy and hybrid once the destination runs the process: from here
  // it is the destination's, and nothing resumes it here.
  const postCopyPhase = async (h: Handover, pages_left: number): Promise<MigrationMetrics> => {
    // Committed: the process runs at the destination, and recover_ms watches the page channel from here.
    watchdog?.stop();
    const resumed_at = performance.now();
    metrics.downtime_ms = resumed_at - stopped_at;
    resumedThere();
    side.resumed?.();
    side.progress?.({ phase: "post-copy", pages: pages_left, bytes: metrics.bytes, memory_bytes: h.remote_bytes });
    if (serving === null) {
      // Hybrid with nothing written since the round: the destination has it all.
      void channel?.then((c) => c.socket.destroy(), () => undefined);
      metrics.post_copy = { demand_chunks: 0, pushed_chunks: 0, zero_chunks: 0, resume_to_last_page_ms: 0, connections: 0, bytes: 0, end: "done" };
      metrics.total_ms = performance.now() - t0;
      return metrics;
    }
    const { finished_at, ...served } = await serving;
    // The last page may have arrived before RUNNING did (the restore fetched them all).
    metrics.post_copy = { ...served, resume_to_last_page_ms: Math.max(0, finished_at - resumed_at) };
    metrics.bytes += served.bytes;
    metrics.pages += (served.pushed_chunks + served.demand_chunks) * (CHUNK_BYTES / WIRE_PAGE_BYTES);
    metrics.total_ms = performance.now() - t0;
    return metrics;
  };
  try {
    const connecting = side.connect();
    // A connection that arrives after a stall is not used.
    connecting.then((c) => stall !== null && c.destroy(stall), () => undefined);
    conn = await unlessStalled(connecting);
    step("offering");
    await sendJson(conn, Msg.offer, side.offer);
    const ready = await conn.next({ timeout_ms: PREPARE_TIMEOUT_MS });
    step("pre-copying");
    raiseIfError(ready, "the destination refused");
    if (ready.type !== Msg.ready) throw new FerryError("ERR_MIGRATION_PROTOCOL", `expected READY, got frame type ${ready.type}`);
    readFrame(EmptySchema, ready.payload, "READY");
    side.progress?.({ phase: "offered", bytes: 0, memory_bytes: memory().length });

    const post_copy = options.strategy === "post-copy" || options.strategy === "hybrid";
    if (post_copy && side.connectPages === undefined) throw new FerryError("ERR_MIGRATION_FAILED", `${options.strategy} needs a page channel`);
    if (options.strategy === "pre-copy" || options.strategy === "hybrid") {
      tracker = (options.tracker ?? (() => new ShadowTracker()))();
      // Hybrid: one round while the process runs, then post-copy of what it dirtied since.
      const rounds_max = options.strategy === "hybrid" ? 1 : (options.rounds_max ?? PRECOPY_ROUNDS_MAX);
      rounds_digest = createHash("sha256");
      await preCopyRounds(conn, tracker, memory, metrics, { max_downtime_ms, rounds_max, digest: rounds_digest }, side);
    }

    // Post-copy's page channel opens before the stop, so that its handshake is not downtime.
    const session = `${side.offer.pid}.${Date.now().toString(36)}.${Math.random().toString(36).slice(2, 8)}`;
    if (post_copy) {
      channel = side.connectPages!(session);
      // Awaited later (servePostCopy, or destroyed on failure), where its error is seen; this only keeps it from being unhandled meanwhile.
      channel.catch(() => undefined);
    }
    side.progress?.({ phase: "stopping", bytes: metrics.bytes, memory_bytes: memory().length });
    step("stopping the process");
    stopped_at = performance.now();
    const suspension = await side.proc.suspend();
    if (suspension === null) throw new FerryError("ERR_PROCESS_ENDED", "the process ended before it could be moved");
    suspended = true;
    step("flushing its output and connections to its home");
    side.net?.freeze();
    await unlessStalled(side.flushOutput());
    await unlessStalled(side.net?.flush() ?? Promise.resolve());
    step("sending the image");
    const image = side.proc.image(suspension);
    // The pages the rounds sent are outside the image; its signature vouches for them through this.
    if (rounds_digest !== null) image.meta.precopy_sha256 = rounds_digest.digest("hex");
    side.links?.freeze();
    links_frozen = true;
    if (side.links !== undefined) image.links = side.links.capture();
    let final = 0;
    if (post_copy) {
      // Only the stack, globals and WASI state travel now; the pages follow on demand and by push.
      handover = { session, remote_bytes: memory().length, missing: missingChunks(memory(), tracker) };
      final = handover.missing.reduce((n, [, count]) => n + count, 0) * (CHUNK_BYTES / WIRE_PAGE_BYTES);
      image.memory = { size_bytes: memory().length, pages: () => [] };
      tracker?.close();
      tracker = null;
      await sendJson(conn, Msg.handover, handover);
    } else if (tracker !== null) {
      const t = tracker;
      const counted: MemorySource = {
        size_bytes: memory().length,
        *pages() {
          for (const page of t.changed(memory())) {
            final += 1;
            yield page;
          }
        },
      };
      image.memory = counted;
    } else {
      const all = sparsePages(memory());
      image.memory = {
        size_bytes: all.size_bytes,
        *pages() {
          for (const page of all.pages()) {
            final += page.data.length / WIRE_PAGE_BYTES;
            yield page;
          }
        },
      };
    }
    side.progress?.({ phase: "copying", bytes: metrics.bytes, memory_bytes: memory().length });
    // The destination answers once: ERROR as soon as a check fails (even
    // mid-image: then the rest is not sent), else RUNNING once it runs it.
    const answer = awaitAnswer(conn);
    try {
      metrics.bytes += await sendImage(conn, encodeImage(image, { signer: side.signer }), () => answer.arrived?.type === Msg.error);
    } catch (err: unknown) {
      // The link broke under the send; if the destination said why first, that is the error.
      if (answer.arrived !== null) raiseIfError(answer.arrived, "the destination refused the image");
      throw err;
    }
    if (answer.arrived !== null) raiseIfError(answer.arrived, "the destination refused the image");
    image_sent = true;
    // From here the destination may run the process at any moment: aborting
    // could leave a copy on each side. The restore timeout and the question
    // "does it run there?" decide instead.
    watchdog?.stop();
    step("waiting for the destination to restore it");
    if (!post_copy) metrics.pages += final;
    metrics.dirty_pages.push(final);
    // The page channel opens while the destination restores: its first faults need it.
    if (handover !== null && handover.missing.length > 0) {
      serving = servePostCopy(side, handover, channel!, memory(), {
        recover_ms: side.offer.recover_ms ?? RECOVER_MS_DEFAULT,
        push_bytes_per_s: options.push_bytes_per_s,
        signal: stop_serving.signal,
        push_from: resumed_there,
        hot: restoreChunks(memory().length, suspension.state.asyncify.length, suspension.state.globals),
      });
      // Awaited in postCopyPhase or on failure below, where its error is seen; this only keeps it from being unhandled meanwhile.
      serving.catch(() => undefined);
    }
    const reply = await answer.within(RESTORE_TIMEOUT_MS);
    raiseIfError(reply, "the destination could not restore the process");
    if (reply.type !== Msg.running) throw new FerryError("ERR_MIGRATION_PROTOCOL", `expected RUNNING, got frame type ${reply.type}`);
    readFrame(EmptySchema, reply.payload, "RUNNING");
    if (handover !== null) {
      conn.close();
      return await postCopyPhase(handover, final);
    }
  } catch (caught: unknown) {
    watchdog?.stop();
    if (caught instanceof FerryError && caught.code === "ERR_POSTCOPY_LOST") throw caught;
    // A stall is why the link broke, whatever error the broken link surfaced as.
    const err: unknown = stall ?? caught;
    conn?.close();
    tracker?.close();
    if (suspended) {
      // The link may have broken after the destination resumed it: ask, so
      // that exactly one copy runs.
      const refused = err instanceof PeerError;
      const runs = image_sent && !refused && (await side.destinationRuns().catch((e: unknown) => {
        // Unknown counts as no: the destination never answered RUNNING, so it resumes here.
        logger().warn({ pid: side.offer.pid, err: errorField(e) }, "could not ask the destination whether it runs the process; resuming it at the source");
        return false;
      }));
      if (runs) {
        return handover !== null ? await postCopyPhase(handover, 0) : finish(metrics, t0, stopped_at);
      }
      stop_serving.abort();
      // Stopped on purpose: its ending is not news.
      await serving?.catch(() => undefined);
      if (links_frozen) side.links?.resume();
      side.net?.resume();
      await side.proc.resume();
    }
    if (serving === null) void channel?.then((c) => c.socket.destroy(), () => undefined);
    const why = err instanceof Error ? err.message : String(err);
    const code = err instanceof FerryError && err.code !== "ERR_CONNECTION_CLOSED" ? err.code : "ERR_MIGRATION_FAILED";
    throw new FerryError(code, `migration of ${side.offer.pid} failed: ${why}; it keeps running on the source`, { cause: err });
  }
  watchdog?.stop();
  conn.close();
  tracker?.close();
  return finish(metrics, t0, stopped_at);
}

/** The destination's one answer to an image, watched while the image is sent. */
interface Answer {
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
function awaitAnswer(conn: FramedConnection): Answer {
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
function restoreChunks(size_bytes: number, stack_bytes: number, globals: { type: string; bits: bigint }[]): number[] {
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
function missingChunks(memory: Uint8Array, tracker: PageTracker | null): [number, number][] {
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

function finish(metrics: MigrationMetrics, t0: number, stopped_at: number): MigrationMetrics {
  const now = performance.now();
  metrics.total_ms = now - t0;
  metrics.downtime_ms = now - stopped_at;
  return metrics;
}

/**
 * Copies memory while the process runs, each round only what changed since
 * the last. Stops when the last round's pages would fit the downtime target
 * at the measured rate, when rounds stop shrinking, or at the round limit.
 */
async function preCopyRounds(
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

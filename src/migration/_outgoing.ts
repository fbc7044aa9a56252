/**
 * The source side of one migration as a state machine (issue 11 item 8):
 *
 *   connecting → offered → rounds → stopped → sent → committed
 *        └──────────┴─────────┴─────────┴───────┴──→ aborted
 *
 * - connecting: opening the data connection;
 * - offered: OFFER sent, waiting for READY (the destination prepares);
 * - rounds: READY came; pre-copy rounds while the process runs (none for
 *   stop-copy and post-copy);
 * - stopped: the process is suspended here; its output is flushed, its
 *   image captured and sent;
 * - sent: the whole image is out; the destination restores it;
 * - committed: the destination runs it (RUNNING, or it says so when asked
 *   after the link broke). Post-copy serves pages from here on;
 * - aborted: it runs here as before (or it ended here on its own).
 *
 * Every fault before `committed` goes to one place, {@link OutgoingMigration.fault},
 * which undoes exactly what the state it happened in had done.
 */
import { createHash, type Hash } from "node:crypto";
import type { Duplex } from "node:stream";
import { FerryError, PeerError } from "../errors.js";
import { encodeImage, encodeImageAsync, sparsePages, type ImageSigner, type MemorySource, type ProcessImage } from "../image/mod.js";
import { CHUNK_BYTES, ShadowTracker, TRACK_PAGE_BYTES, type PageTracker } from "../memory/mod.js";
import type { Suspension } from "../runtime/mod.js";
import type { FramedConnection } from "../transport/mod.js";
import { errorField, logger } from "../log/mod.js";
import { INLINE_FINAL_PAGES_MAX, Msg, raiseIfError, readFrame, sendImage, sendJson, sendPages, WIRE_PAGE_BYTES, type Handover } from "./_wire.js";
import { BULK_META_KEY, sendBulk } from "./_bulk.js";
import { BULK_TAGS_META_KEY, sendSealedBulk } from "./_sealed_bulk.js";
import { isSmallMemory, SMALL_MEMORY_BYTES_MAX } from "./_small.js";
import { nativeBulkAvailable, sendNativeBulk, type BulkCipher } from "./_native_bulk.js";
import { AnswerSchema } from "./_schemas.js";
import { servePostCopy, type PageChannel, type Served } from "./postcopy.js";
import { watchStall, type StallTimer } from "./stall.js";
import { ProgressReporter } from "./_progress.js";
import { collectBeforeStop, PhaseClock, timedAsyncIterable, type SourcePhase } from "./phases.js";
import { awaitAnswer, chunkPages, firstChunks, missingChunks, preCopyRounds, restoreChunks, takeChunks, type Answer } from "./_precopy.js";
import {
  MAX_DOWNTIME_MS_DEFAULT,
  PRECOPY_ROUNDS_MAX,
  RECOVER_MS_DEFAULT,
  type MigrationMetrics,
  type MigrationOptions,
  type SourceSide,
} from "./source.js";

/** How many times the source asks whether the destination runs the process, after the link broke with the image out. */
export const DESTINATION_ASKS = 5;
/** The wait before the second ask; doubled before each later one (0.2 + 0.4 + 0.8 + 1.6 s). */
const DESTINATION_ASK_WAIT_MS = 200;

/** States of an outgoing migration, in order. */
export const OUT_STATES = ["connecting", "offered", "rounds", "stopped", "sent", "committed", "aborted"] as const;

/** A state of an outgoing migration. */
export type OutState = (typeof OUT_STATES)[number];

/** The transitions allowed: forward one step, or to `aborted` from anything not yet committed. */
const NEXT: Record<OutState, readonly OutState[]> = {
  connecting: ["offered", "aborted"],
  offered: ["rounds", "aborted"],
  rounds: ["stopped", "aborted"],
  stopped: ["sent", "aborted"],
  sent: ["committed", "aborted"],
  committed: [],
  aborted: [],
};

/** How long the destination may take to check an offer (it may fetch the module). */
const PREPARE_TIMEOUT_MS = 30_000;
/**
 * Post-copy: how long the stop may wait for a page channel opened at READY
 * (the process still runs meanwhile, so the wait is no downtime). A stop
 * quicker than the channel's handshake (upgrade, grant, a second connection)
 * would have the guest's first faults at the destination wait for it.
 */
const EARLY_CHANNEL_WAIT_MS = 250;

/**
 * Hybrid, just before the stop, while the process still runs: whether it has
 * written at least half of its pages since the round, by a look at the
 * kernel tracker that re-arms nothing. Then the stop leaves every chunk to
 * post-copy instead of looking again: the look's cost grows with the pages
 * written (1 GiB, every page written: 4.3 ms, against 0.6 with none), and at
 * the stop it is downtime. Naming a chunk missing that was not written only
 * sends it again, from the stopped process. Only for a tracker that reports
 * runs (the kernel's): another would read every page to find out.
 */
export function dirtyMostly(tracker: PageTracker, memory: Uint8Array): boolean {
  if (tracker.changedRuns === undefined || memory.length === 0) return false;
  const runs = tracker.changedRuns(memory, { last: true });
  let pages = 0;
  for (let i = 0; i + 1 < runs.length; i += 2) pages += (runs[i + 1] as number) - (runs[i] as number);
  return pages * 2 >= memory.length / TRACK_PAGE_BYTES;
}

/** How long the destination may take to restore once it has everything. */
const RESTORE_TIMEOUT_MS = 60_000;

/** One migration out; use {@link migrateOut} (source.ts). */
export class OutgoingMigration {
  #state: OutState = "connecting";
  readonly #side: SourceSide;
  readonly #options: MigrationOptions;
  readonly #clock = new PhaseClock<SourcePhase>();
  readonly #t0 = performance.now();
  readonly #metrics: MigrationMetrics;
  readonly #post_copy: boolean;
  #conn: FramedConnection | null = null;
  #tracker: PageTracker | null = null;
  /** Hybrid: the guest wrote most of its memory since the round, so every chunk is left to post-copy without a look at the stop (see {@link dirtyMostly}). */
  #all_missing = false;
  #stopped_at = 0;
  /** When the image was out and the wait for RUNNING began. */
  #sent_at = 0;
  /** How long the process had run at the destination when it answered RUNNING (its own reading; 0 from an older one). */
  #ran_ms = 0;
  #links_frozen = false;
  /** Post-copy and hybrid: the page channel's session, and what the destination still lacks once the process stopped. */
  #session: string | null = null;
  #handover: Handover | null = null;
  /** SHA-256 of every PAGES frame of the rounds, which the signed image carries (META precopy_sha256). */
  #rounds_digest: Hash | null = null;
  #channel: Promise<PageChannel> | null = null;
  #serving: Promise<Served> | null = null;
  readonly #stop_serving = new AbortController();
  #resumedThere!: () => void;
  readonly #resumed_there = new Promise<void>((resolve) => (this.#resumedThere = resolve));
  /** Stop-copy to a destination that takes BULK frames: the pages go before the image, outside it (`_bulk.ts`). */
  #bulk = false;
  /** ...and the door of the record connection READY named (`_sealed_bulk.ts`, `_native_bulk.ts`), and the connection, opened as soon as READY came. */
  #sealed: { ticket: Buffer; key: Buffer; cipher: BulkCipher } | null = null;
  #sealed_socket: Promise<Duplex> | null = null;
  /** The digest of the first round's record tags, when it went on the record connection (signed in the image's META). */
  #round_tags: string | null = null;
  /** The destination's one answer to the image, watched from before it is sent. */
  #answer: Answer | null = null;
  /** Pages of the final copy (post-copy: left to the page channel). */
  #final = 0;
  // The stall watchdog: progress is bytes moved on the data connection plus steps taken.
  #steps = 0;
  #phase = "connecting";
  #stall: FerryError | null = null;
  #stallNow!: (err: FerryError) => void;
  readonly #stalled: Promise<never>;
  readonly #watchdog: StallTimer | null;
  /** Rejects once the process ends on its own before it is stopped: the move is moot. */
  readonly #ended: Promise<never>;
  /** Steps and bytes moved for whoever watches (`_progress.ts`). */
  readonly #progress: ProgressReporter;
  /** Bytes moved off the data connection: the sealed page connection (sent from this thread), and post-copy's pages. */
  #sealed_sent: Duplex | null = null;
  #served_bytes: (() => number) | null = null;

  constructor(side: SourceSide, options: MigrationOptions) {
    this.#side = side;
    this.#options = options;
    // One reading: the phases add up to the total exactly.
    this.#clock.enter("connect", this.#t0);
    this.#post_copy = options.strategy === "post-copy" || options.strategy === "hybrid";
    this.#metrics = { strategy: options.strategy, total_ms: 0, downtime_ms: 0, bytes: 0, pages: 0, rounds: 0, dirty_pages: [], phases_ms: {}, destination_phases_ms: {} };
    this.#stalled = new Promise<never>((_resolve, reject) => (this.#stallNow = reject));
    // Observed through unlessStalled(); this one only keeps it from being unhandled.
    this.#stalled.catch(() => undefined);
    this.#ended = side.proc.exited.then((status) => {
      const how = status.kind === "exit" ? `exited with status ${status.code}` : status.kind === "trap" ? `trapped (${status.message})` : status.kind;
      throw new FerryError("ERR_PROCESS_ENDED", `${side.offer.pid} has ended at the source (it ${how}) before it could be moved; its end is recorded there as usual`);
    });
    // Observed while it matters (until the process is stopped); a process that ends after its move is not this migration's business.
    this.#ended.catch(() => undefined);
    const report = side.progress?.bind(side);
    this.#progress = new ProgressReporter((p) => report?.(p), () => this.#movedBytes(), {
      rounds: options.strategy === "pre-copy" || options.strategy === "hybrid",
      // Nobody watches: nothing to sample.
      timer: report !== undefined,
    });
    this.#watchdog =
      options.stall_ms === undefined
        ? null
        : watchStall(
            options.stall_ms,
            () => this.#steps + this.#movedBytes(),
            (idle_ms) => {
              this.#stall = new FerryError("ERR_MIGRATION_STALLED", `no progress for ${Math.round(idle_ms)} ms while ${this.#phase} (stall timeout ${options.stall_ms} ms)`);
              options.onStall?.({ idle_ms, phase: this.#phase });
              this.#stallNow(this.#stall);
              // Whatever waits on the link fails now.
              this.#conn?.destroy(this.#stall);
            },
          );
  }

  /** The state it is in now. */
  get state(): OutState {
    return this.#state;
  }

  /** Runs the migration to `committed` (resolves) or `aborted` (rejects; the process runs here as before, or ended here). */
  async run(): Promise<MigrationMetrics> {
    try {
      try {
        await this.#connect();
        await this.#offer();
        await this.#rounds();
        const suspension = await this.#stop();
        await this.#send(suspension);
        await this.#restore();
      } catch (err: unknown) {
        return await this.#fault(err);
      }
      return await this.#committed();
    } finally {
      // Ended either way (post-copy's pages all served, or lost).
      this.#progress.stop();
    }
  }

  #to(next: OutState): void {
    if (!NEXT[this.#state].includes(next)) throw new Error(`migration state machine: ${this.#state} → ${next} is not a transition`);
    this.#state = next;
    if (next !== "committed" && next !== "aborted") {
      this.#options.onState?.(next);
      return;
    }
    // Past the last fault the machine handles: a listener's error is reported, never a second fault.
    try {
      this.#options.onState?.(next);
    } catch (err: unknown) {
      logger().warn({ pid: this.#side.offer.pid, state: next, err: errorField(err) }, "a migration state listener failed");
    }
  }

  #step(phase: string): void {
    this.#steps += 1;
    this.#phase = phase;
  }

  /** `p`, or the stall error as soon as the watchdog fires: a wait that never ends is cut short. */
  #unlessStalled<T>(p: Promise<T>): Promise<T> {
    return this.#stall !== null ? Promise.reject(this.#stall) : Promise.race([p, this.#stalled]);
  }

  /** `p`, or ERR_PROCESS_ENDED as soon as the process ends on its own (before it is stopped). */
  #whileAlive<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.#ended]);
  }

  /**
   * Bytes moved so far on the migration's connections: the data connection,
   * the sealed page connection where this thread writes it, and post-copy's
   * pages. It only grows. A native thread's writes (`_native_bulk.ts`) are
   * not seen until it is done: they count in the next step's bytes.
   */
  #movedBytes(): number {
    const sealed = (this.#sealed_sent as { bytesWritten?: number } | null)?.bytesWritten ?? 0;
    return (this.#conn?.moved_bytes ?? 0) + sealed + (this.#served_bytes?.() ?? 0);
  }

  #memory(): Uint8Array {
    return new Uint8Array(this.#side.proc.memory.buffer);
  }

  async #connect(): Promise<void> {
    const connecting = this.#side.connect();
    // A connection that arrives after a stall is not used. One that fails is seen where it is awaited below.
    connecting.then((c) => this.#stall !== null && c.destroy(this.#stall), () => undefined);
    this.#conn = await this.#unlessStalled(connecting);
    this.#clock.enter("prepare");
    this.#step("offering");
    // Post-copy's page session is named now: a destination that can take its channel before the stop says so in READY.
    if (this.#post_copy) this.#session = `${this.#side.offer.pid}.${Date.now().toString(36)}.${Math.random().toString(36).slice(2, 8)}`;
    await sendJson(this.#conn, Msg.offer, this.#session === null ? this.#side.offer : { ...this.#side.offer, page_session: this.#session });
    this.#to("offered");
  }

  async #offer(): Promise<void> {
    const conn = this.#conn as FramedConnection;
    const ready = await this.#whileAlive(conn.next({ timeout_ms: PREPARE_TIMEOUT_MS }));
    this.#step("pre-copying");
    raiseIfError(ready, "the destination refused");
    if (ready.type !== Msg.ready) throw new FerryError("ERR_MIGRATION_PROTOCOL", `expected READY, got frame type ${ready.type}`);
    const answer = readFrame(AnswerSchema, ready.payload, "READY");
    this.#metrics.destination_phases_ms = answer.phases_ms ?? {};
    // A small memory's pages go inside the image instead (`_small.ts`).
    this.#bulk = answer.bulk === true && this.#options.strategy === "stop-copy" && !this.#small(this.#memory().length);
    const cipher = answer.sealed?.cipher ?? "aes-256-gcm";
    // Tagged records are sent only by the native thread; without it the pages go as BULK frames.
    // Pre-copy and hybrid send their first round there, from a native thread only (the round's pages change as it reads them).
    const first_round = (this.#options.strategy === "pre-copy" || this.#options.strategy === "hybrid") && nativeBulkAvailable();
    if ((this.#bulk || first_round) && answer.sealed !== undefined && this.#side.connectSealed !== undefined && (cipher === "aes-256-gcm" || nativeBulkAvailable())) {
      this.#sealed = { ticket: Buffer.from(answer.sealed.ticket, "base64"), key: Buffer.from(answer.sealed.key, "base64"), cipher };
      // Opened now, while the process still runs and as it is stopped: its handshake is not downtime.
      this.#sealed_socket = this.#side.connectSealed(this.#sealed.ticket);
      // Awaited when the pages go (or dropped on failure), where its error is seen; this only keeps it from being unhandled meanwhile.
      this.#sealed_socket.catch(() => undefined);
    }
    this.#to("rounds");
    this.#progress.step({ phase: "offered", bytes: 0, memory_bytes: this.#memory().length });
    if (this.#post_copy && this.#side.connectPages === undefined) throw new FerryError("ERR_MIGRATION_FAILED", `${this.#options.strategy} needs a page channel`);
    // Its handshake (upgrade, grant, the page-data connection) while the process runs: the channel is there when the restore ends.
    if (this.#post_copy && answer.page_session === true) this.#openPages();
  }

  /** Opens the page channel of the migration's session (once). */
  #openPages(): void {
    if (this.#channel !== null || this.#session === null) return;
    this.#channel = this.#side.connectPages!(this.#session);
    // Awaited later (servePostCopy, or destroyed on failure), where its error is seen; this only keeps it from being unhandled meanwhile.
    this.#channel.catch(() => undefined);
  }

  async #rounds(): Promise<void> {
    const { strategy } = this.#options;
    if (strategy !== "pre-copy" && strategy !== "hybrid") return;
    this.#clock.enter("rounds");
    this.#tracker = (this.#options.tracker ?? (() => new ShadowTracker()))();
    // Hybrid: one round while the process runs, then post-copy of what it dirtied since.
    const rounds_max = strategy === "hybrid" ? 1 : (this.#options.rounds_max ?? PRECOPY_ROUNDS_MAX);
    this.#rounds_digest = createHash("sha256");
    const limits = { max_downtime_ms: this.#options.max_downtime_ms ?? MAX_DOWNTIME_MS_DEFAULT, rounds_max, digest: this.#rounds_digest, auto_converge: this.#options.auto_converge ?? true,
      compression: this.#options.compression ?? "auto",
      link_hint_bytes_per_s: this.#options.link_hint_bytes_per_s ?? null,
      stop_cost_ms: this.#options.stop_cost_hint_ms ?? 0,
      collect: (framed_bytes: number) => {
        if (collectBeforeStop(this.#clock, framed_bytes)) this.#clock.enter("rounds");
      },
      ...(this.#sealed !== null && this.#tracker.arm !== undefined ? { first_round: () => this.#firstRoundSealed(this.#tracker as PageTracker) } : {}),
    };
    // The rounds' steps go through the reporter, which samples the bytes of the round under way between them.
    const side: SourceSide = { ...this.#side, progress: (p) => this.#progress.step(p) };
    await this.#whileAlive(preCopyRounds(this.#conn as FramedConnection, this.#tracker, () => this.#memory(), this.#metrics, limits, side));
    // Not used (the first round compressed, or the tracker cannot arm without a look): closed, which closes the destination's door too.
    this.#dropSealed();
  }

  /**
   * Pre-copy's and hybrid's first round on the record connection: the
   * tracker is armed, then a native thread sends every non-zero page of the
   * running process's memory as records, then BULK_SEALED goes on the data
   * connection, and the records' tags go in the image's META as for
   * stop-copy. A page the process writes while the thread reads it may go
   * torn: the tracker caught the write, and a later round or the final copy
   * sends it again. Null, with nothing sent and nothing armed, when the
   * connection cannot be opened.
   */
  async #firstRoundSealed(tracker: PageTracker): Promise<{ bytes: number; pages: number } | null> {
    const door = this.#sealed as { ticket: Buffer; key: Buffer; cipher: BulkCipher };
    const socket = await this.#takeSealed();
    try {
      if (socket === null) return null;
      const memory = this.#memory();
      try {
        (tracker.arm as (m: Uint8Array) => void).call(tracker, memory);
      } catch (err: unknown) {
        // Handed to the native thread below, which closes it; not reached here.
        socket.destroy();
        throw err;
      }
      const stopping = new AbortController();
      this.#stalled.catch(() => stopping.abort());
      const sent = await sendNativeBulk(socket, memory, door.key, door.cipher, stopping.signal);
      if (sent === null) throw this.#stall ?? new FerryError("ERR_MIGRATION_FAILED", "the first round's record stream was stopped");
      if (sent.tags_sha256 !== null) this.#round_tags = sent.tags_sha256;
      await sendJson(this.#conn as FramedConnection, Msg.bulk_sealed, { records: sent.records });
      return { bytes: sent.bytes, pages: sent.pages };
    } finally {
      door.key.fill(0);
    }
  }

  /**
   * Takes the record connection opened after READY (the door is spent):
   * null, logged, when it failed to open or closed since.
   */
  async #takeSealed(): Promise<Duplex | null> {
    const opening = this.#sealed_socket as Promise<Duplex>;
    this.#sealed = null;
    this.#sealed_socket = null;
    try {
      const socket = await this.#unlessStalled(opening);
      // Opened before: the destination may have closed it since (then it says why on the data connection).
      if (socket.destroyed || !socket.writable) throw new FerryError("ERR_CONNECTION_CLOSED", "the sealed page connection closed before the pages were sent");
      return socket;
    } catch (err: unknown) {
      if (this.#stall !== null) throw err;
      logger().warn({ pid: this.#side.offer.pid, err: errorField(err) }, "could not open the sealed page connection; the pages go on the data connection");
      return null;
    }
  }

  /** Closes a record connection opened and not used (the destination's door with it). */
  #dropSealed(): void {
    void this.#sealed_socket?.then((s) => s.destroy(), () => undefined);
    this.#sealed_socket = null;
    this.#sealed?.key.fill(0);
    this.#sealed = null;
  }

  /** Suspends the process at a safe point, flushes what it wrote to its home, and stops its links. */
  async #stop(): Promise<Suspension> {
    const side = this.#side;
    if (this.#channel !== null) {
      // Opened at READY: up before the stop, so the destination has it when the process runs there. A failure is seen where it is served.
      let timer: NodeJS.Timeout | undefined;
      const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, EARLY_CHANNEL_WAIT_MS)));
      await Promise.race([this.#channel.then(() => undefined, () => undefined), waited]);
      clearTimeout(timer);
    }
    // Else post-copy's page channel opens now, before the stop: its handshake overlaps the stop (the destination answers it at the HANDOVER).
    if (this.#post_copy) this.#openPages();
    if (this.#options.strategy === "hybrid" && this.#tracker !== null) this.#all_missing = dirtyMostly(this.#tracker, this.#memory());
    this.#progress.step({ phase: "stopping", bytes: this.#metrics.bytes, memory_bytes: this.#memory().length });
    this.#step("stopping the process");
    this.#stopped_at = performance.now();
    this.#clock.enter("suspend", this.#stopped_at);
    const suspension = await side.proc.suspend();
    // It ended on its own before it reached a safe point: nothing to move, and nothing to resume.
    if (suspension === null) return await this.#ended;
    this.#to("stopped");
    this.#clock.enter("flush");
    this.#step("flushing its output and connections to its home");
    side.net?.freeze();
    await this.#unlessStalled(side.flushOutput());
    await this.#unlessStalled(side.net?.flush() ?? Promise.resolve());
    this.#clock.enter("capture");
    side.links?.freeze();
    this.#links_frozen = true;
    return suspension;
  }

  /** Captures the image and sends it; the destination answers ERROR at its first failed check, or RUNNING once it runs it. */
  async #send(suspension: Suspension): Promise<void> {
    const side = this.#side;
    const conn = this.#conn as FramedConnection;
    this.#step("sending the image");
    const image = side.proc.image(suspension);
    if (this.#round_tags !== null) image.meta[BULK_TAGS_META_KEY] = this.#round_tags;
    if (side.links !== undefined) image.links = side.links.capture();
    const memory = this.#memory();
    // Only the stack, globals and WASI state travel now; the pages follow on demand and by push, except the few
    // the restore touches at once: they go first, as PAGES, and the destination asks for none of them.
    const session = this.#session;
    const post_copy = session === null ? null : takeChunks(missingChunks(memory, this.#all_missing ? null : this.#tracker), restoreChunks(memory.length, suspension.state.asyncify.length));
    const answer = awaitAnswer(conn);
    this.#answer = answer;
    this.#clock.enter("transfer");
    const refused = (): boolean => answer.arrived?.type === Msg.error;
    const transfer = async (): Promise<void> => {
      if (session !== null && post_copy !== null) {
        const { taken, rest } = post_copy;
        if (taken.length > 0) {
          this.#rounds_digest ??= createHash("sha256");
          const sent = await sendPages(conn, chunkPages(memory, taken), { digest: this.#rounds_digest, stable: true });
          this.#metrics.bytes += sent.bytes;
          this.#metrics.pages += sent.pages;
        }
        this.#handover = { session, remote_bytes: memory.length, missing: rest };
        this.#final = rest.reduce((n, [, count]) => n + count, 0) * (CHUNK_BYTES / WIRE_PAGE_BYTES);
        image.memory = { size_bytes: memory.length, pages: () => [] };
        // The tracker is closed once the pages are served (or the move failed): unarming every page now would be downtime.
        await sendJson(conn, Msg.handover, this.#handover);
      } else if (!this.#bulk) {
        image.memory = this.#counted(this.#tracker !== null ? changedPages(this.#tracker, memory) : sparsePages(memory));
      }
      // The pages the rounds (and post-copy's first chunks) sent are outside the image; its signature vouches for them through this.
      if (this.#rounds_digest !== null) image.meta.precopy_sha256 = this.#rounds_digest.digest("hex");
      this.#progress.step({ phase: "copying", bytes: this.#metrics.bytes, memory_bytes: memory.length });
      try {
        if (this.#bulk && this.#sealed !== null && (await this.#sendSealed(memory, image.meta, refused))) {
          image.memory = { size_bytes: memory.length, pages: () => [] };
        } else if (this.#bulk) {
          // The pages first, straight from memory; the image after them holds none, and its signed META vouches for them.
          const sent = await sendBulk(conn, memory, refused);
          if (sent !== null) {
            this.#metrics.bytes += sent.bytes;
            this.#final = sent.pages;
            if (sent.sha256 !== null) image.meta[BULK_META_KEY] = sent.sha256;
            image.memory = { size_bytes: memory.length, pages: () => [] };
          }
        }
        // Encoding (and for pre-copy the scan for the last dirty pages) runs inside the send, chunk by chunk: its time is carved out.
        // Without its pages (BULK, post-copy, hybrid) the image is a few kilobytes, and pre-copy's final copy is small:
        // hashed here, at once, rather than on a hashing thread that may have to start first.
        // A small memory's image (`_small.ts`) is hashed here too.
        const small_final = this.#tracker !== null && (this.#metrics.dirty_pages.at(-1) ?? Infinity) <= INLINE_FINAL_PAGES_MAX;
        const inline = this.#bulk || this.#handover !== null || small_final || this.#small(memory.length);
        const encoded = inline ? encodeImageInline(image, side.signer) : encodeImageAsync(image, { signer: side.signer });
        const chunks = timedAsyncIterable(encoded, (ms) => this.#clock.carve("encode", ms));
        if (!refused()) this.#metrics.bytes += await sendImage(conn, chunks, refused);
      } catch (err: unknown) {
        // The link broke under the send; if the destination said why first, that is the error.
        if (answer.arrived !== null) raiseIfError(answer.arrived, "the destination refused the image");
        throw err;
      }
    };
    // Post-copy's and hybrid's frames (the restore's chunks, the HANDOVER, the image) go out in one write: D needs
    // them all before it can do anything, and over TLS each write after the first waited for a turn of this
    // thread's event loop (connection.ts, gather).
    await (session !== null && post_copy !== null ? conn.gather(transfer) : transfer());
    if (answer.arrived !== null) raiseIfError(answer.arrived, "the destination refused the image");
    // From here the destination may run the process at any moment: aborting
    // could leave a copy on each side. The restore timeout and the question
    // "does it run there?" decide instead.
    this.#to("sent");
    this.#watchdog?.stop();
    this.#step("waiting for the destination to restore it");
    this.#sent_at = performance.now();
    this.#clock.enter("restore", this.#sent_at);
    if (this.#handover === null) this.#metrics.pages += this.#final;
    this.#metrics.dirty_pages.push(this.#final);
    // The page channel opens while the destination restores: its first faults need it.
    if (this.#handover !== null && this.#handover.missing.length > 0) {
      this.#serving = servePostCopy(side, this.#handover, this.#channel!, memory, {
        recover_ms: side.offer.recover_ms ?? RECOVER_MS_DEFAULT,
        push_bytes_per_s: this.#options.push_bytes_per_s,
        signal: this.#stop_serving.signal,
        push_from: this.#resumed_there,
        hot: firstChunks(memory.length, suspension.state.globals),
        meter: (bytes_out) => (this.#served_bytes = bytes_out),
      });
      // Awaited once committed or on failure, where its error is seen; this only keeps it from being unhandled meanwhile.
      this.#serving.catch(() => undefined);
    }
  }

  /**
   * Sends the pages on the record connection, then BULK_SEALED on the data
   * connection; the tags' digest goes in `meta`. False, with nothing sent,
   * when the sealed connection cannot be opened: the pages then go on the
   * data connection.
   */
  async #sendSealed(memory: Uint8Array, meta: Record<string, unknown>, refused: () => boolean): Promise<boolean> {
    const door = this.#sealed as { ticket: Buffer; key: Buffer; cipher: BulkCipher };
    try {
      const socket = await this.#takeSealed();
      if (socket === null) return false;
      // A native thread writes the records from memory where the addon has one; else the node's thread seals them.
      // It is stopped the moment the destination refuses, or the migration stalls (a destination that stopped
      // reading would otherwise hold the thread's write): both are events, so nothing polls while it sends.
      let sent: { bytes: number; pages: number; records: number; tags_sha256: string | null } | null;
      if (nativeBulkAvailable()) {
        const stopping = new AbortController();
        const stop = (): void => stopping.abort();
        // A lost link is seen by the send it stops (and by the answer's own await): only an ERROR frame matters here.
        (this.#answer as Answer).frame.then((f) => f.type === Msg.error && stop(), () => undefined);
        this.#stalled.catch(stop);
        sent = await sendNativeBulk(socket, memory, door.key, door.cipher, stopping.signal);
      } else {
        this.#sealed_sent = socket;
        sent = await sendSealedBulk(socket, memory, door.key, refused);
      }
      if (sent === null) {
        socket.destroy();
        return true;
      }
      this.#metrics.bytes += sent.bytes;
      this.#final = sent.pages;
      if (sent.tags_sha256 !== null) meta[BULK_TAGS_META_KEY] = sent.tags_sha256;
      await sendJson(this.#conn as FramedConnection, Msg.bulk_sealed, { records: sent.records });
      return true;
    } finally {
      door.key.fill(0);
    }
  }

  /** Whether a memory of `bytes` moves as a small one (`_small.ts`). */
  #small(bytes: number): boolean {
    return isSmallMemory(bytes, this.#options.small_memory_bytes_max ?? SMALL_MEMORY_BYTES_MAX);
  }

  /** Counts the final copy's pages as the encoder takes them (by runs where the source has them: no object per page). */
  #counted(source: MemorySource): MemorySource {
    const count = (bytes: number): void => {
      this.#final += bytes / WIRE_PAGE_BYTES;
    };
    const runs = source.pageRuns?.bind(source);
    return {
      size_bytes: source.size_bytes,
      *pages() {
        for (const page of source.pages()) {
          count(page.data.length);
          yield page;
        }
      },
      ...(runs === undefined
        ? {}
        : {
            *pageRuns() {
              for (const run of runs()) {
                count(run.data.length);
                yield run;
              }
            },
          }),
    };
  }

  async #restore(): Promise<void> {
    const reply = await (this.#answer as Answer).within(RESTORE_TIMEOUT_MS);
    raiseIfError(reply, "the destination could not restore the process");
    if (reply.type !== Msg.running) throw new FerryError("ERR_MIGRATION_PROTOCOL", `expected RUNNING, got frame type ${reply.type}`);
    const running = readFrame(AnswerSchema, reply.payload, "RUNNING");
    Object.assign(this.#metrics.destination_phases_ms, running.phases_ms ?? {});
    this.#ran_ms = running.ran_ms ?? 0;
    this.#to("committed");
  }

  /**
   * The one place a fault before the commit is handled, by the state it
   * happened in: nothing was stopped yet (offered, rounds): close and go on
   * here; stopped: resume here; sent: the destination may run it already, so
   * ask, and commit if it does.
   */
  async #fault(caught: unknown): Promise<MigrationMetrics> {
    this.#watchdog?.stop();
    this.#progress.stop();
    const side = this.#side;
    // A stall is why the link broke, whatever error the broken link surfaced as.
    const err: unknown = this.#stall ?? caught;
    this.#conn?.close();
    this.#tracker?.close();
    // Opened after READY and not used: closed, which closes the destination's door too. One that failed to open has nothing to close.
    this.#dropSealed();
    const state = this.#state;
    if (state === "committed" || state === "aborted") throw caught;
    if (state === "sent") {
      // The link may have broken after the destination resumed it: ask, so that exactly one copy runs.
      const refused = err instanceof PeerError;
      const runs = !refused && (await this.#askDestination());
      if (runs) {
        this.#to("committed");
        return await this.#committed();
      }
    }
    if (state === "stopped" || state === "sent") {
      this.#stop_serving.abort();
      // Stopped on purpose: its ending is not news.
      await this.#serving?.catch(() => undefined);
      if (this.#links_frozen) side.links?.resume();
      side.net?.resume();
      this.#unthrottle();
      await side.proc.resume();
    }
    this.#unthrottle();
    this.#to("aborted");
    // A page channel opened and not served: closed. One that failed to open has nothing to close.
    if (this.#serving === null) void this.#channel?.then((c) => c.socket.destroy(), () => undefined);
    const why = err instanceof Error ? err.message : String(err);
    if (err instanceof FerryError && err.code === "ERR_PROCESS_ENDED") {
      throw new FerryError("ERR_PROCESS_ENDED", `migration of ${side.offer.pid} did not happen: ${why}`, { cause: err });
    }
    const code = err instanceof FerryError && err.code !== "ERR_CONNECTION_CLOSED" ? err.code : "ERR_MIGRATION_FAILED";
    throw new FerryError(code, `migration of ${side.offer.pid} failed: ${why}; it keeps running on the source`, { cause: err });
  }

  /**
   * Whether the destination runs the process, asked after the link broke
   * with the whole image out. A question that fails is asked again,
   * DESTINATION_ASKS times with a doubling wait (about 3 s in all): a link
   * that broke often takes the question's first try with it, and answering
   * "no" to a destination that does run it would leave two copies running.
   * Only when no try gets an answer does it count as no (the destination
   * never answered RUNNING), and the process resumes here.
   */
  async #askDestination(): Promise<boolean> {
    const side = this.#side;
    let wait_ms = DESTINATION_ASK_WAIT_MS;
    for (let ask = 1; ; ask += 1) {
      try {
        return await side.destinationRuns();
      } catch (e: unknown) {
        if (ask >= DESTINATION_ASKS) {
          logger().warn({ pid: side.offer.pid, asks: ask, err: errorField(e) }, "could not ask the destination whether it runs the process; resuming it at the source");
          return false;
        }
        logger().debug({ pid: side.offer.pid, ask, err: errorField(e) }, `could not ask the destination whether it runs the process; asking again in ${wait_ms} ms`);
        await new Promise((resolve) => setTimeout(resolve, wait_ms));
        wait_ms *= 2;
      }
    }
  }

  /** It goes on here at full speed (auto-converge may have held it). */
  #unthrottle(): void {
    const convergence = this.#metrics.convergence;
    if (convergence !== undefined && convergence.throttle_pct > 0) this.#side.proc.throttle(0);
  }

  /** The destination runs the process: finish (stop-copy, pre-copy) or serve its pages (post-copy, hybrid). */
  async #committed(): Promise<MigrationMetrics> {
    const now = performance.now();
    this.#watchdog?.stop();
    this.#conn?.close();
    const metrics = this.#metrics;
    // The process ran at the destination for ran_ms before its RUNNING came here: not downtime. What is left still
    // counts the answer's way here, so the downtime is at most what it says. Never before the image was out: the
    // destination's clock is not this one.
    const resumed_at = Math.min(now, Math.max(this.#sent_at, now - this.#ran_ms));
    metrics.downtime_ms = resumed_at - this.#stopped_at;
    this.#clock.enter("resumed", resumed_at);
    if (this.#handover === null) this.#tracker?.close();
    let end = now;
    if (this.#handover !== null) {
      await this.#postCopy(this.#handover, resumed_at, now);
      end = performance.now();
    }
    // The clock stops at the readings the figures are taken from, so the phases add up to them whatever ran in between.
    this.#clock.stop(end);
    metrics.total_ms = end - this.#t0;
    metrics.phases_ms = this.#clock.snapshot();
    return metrics;
  }

  /**
   * Post-copy and hybrid once the destination runs the process: from here it
   * is the destination's, and nothing resumes it here; recover_ms watches the
   * page channel. A lost channel is ERR_POSTCOPY_LOST.
   */
  async #postCopy(h: Handover, resumed_at: number, answered_at: number): Promise<void> {
    const metrics = this.#metrics;
    this.#clock.enter("post_copy", answered_at);
    this.#resumedThere();
    this.#side.resumed?.();
    this.#progress.step({ phase: "post-copy", pages: this.#final, bytes: metrics.bytes, memory_bytes: h.remote_bytes });
    if (this.#serving === null) {
      this.#tracker?.close();
      // Hybrid with nothing written since the round: the destination has it all. A channel that failed to open has nothing to close.
      void this.#channel?.then((c) => c.socket.destroy(), () => undefined);
      metrics.post_copy = { demand_chunks: 0, pushed_chunks: 0, zero_chunks: 0, resume_to_last_page_ms: 0, connections: 0, bytes: 0, end: "done" };
      return;
    }
    // Hybrid's tracker is closed once the pages are served, not now: unarming 1 GiB took this thread 23-25 ms just
    // as the guest's first faults came to it (the guest then stood still 32-43 ms per move, against 7-17 ms for
    // post-copy's). The process is stopped here: nothing writes its memory meanwhile, and the server only reads it.
    const { finished_at, ...served } = await this.#serving.finally(() => this.#tracker?.close());
    // The last page may have arrived before RUNNING did (the restore fetched them all).
    metrics.post_copy = { ...served, resume_to_last_page_ms: Math.max(0, finished_at - resumed_at) };
    metrics.bytes += served.bytes;
    metrics.pages += (served.pushed_chunks + served.demand_chunks) * (CHUNK_BYTES / WIRE_PAGE_BYTES);
  }
}

/** {@link encodeImage}'s chunks as an async iterable (the send takes either kind; the timing wants this one). */
async function* encodeImageInline(image: ProcessImage, signer: ImageSigner): AsyncGenerator<Uint8Array, void, undefined> {
  yield* encodeImage(image, { signer });
}

/**
 * The pages written since the tracker's last round, as a memory source: the
 * final copy, the tracker's last look (nothing is re-armed while the process
 * is stopped; a failed move closes the tracker as a successful one does).
 */
function changedPages(tracker: PageTracker, memory: Uint8Array): MemorySource {
  return { size_bytes: memory.length, pages: () => tracker.changed(memory, { last: true }) };
}

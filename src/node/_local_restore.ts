/**
 * A restore on the keeper itself (docs/directory.md "Failover"): failover
 * resumes a process on the node that keeps its checkpoints, so the image
 * it rebuilds need not go through a migration to itself (sign, encode, a TLS
 * connection to its own port, decode, check again): it lands in a standby
 * here directly, as a migration's destination lands one.
 *
 * **Prepared ahead.** Most of a restore (rebuilding the image, a standby
 * instantiated with its memory and every page in place) needs nothing the
 * takeover decides, so the keeper does it while the dead runner's lease runs
 * out: once a process's periodic checkpoints stop coming for longer than
 * {@link SILENCE_INTERVALS} intervals, it asks the runner whether it still
 * runs it, and if the runner does not answer, prepares the restore. The
 * takeover then only claims the move and starts the prepared process. A
 * prepared restore is of one checkpoint, for the move and home the takeover
 * is expected to give it (the next move; this node as home when the runner
 * was the home too); anything else, a newer checkpoint, the runner
 * answering again, or {@link PREPARED_TTL_MS} going by, drops it (the
 * standby and its memory go).
 */
import { createPublicKey } from "node:crypto";
import { FerryError } from "../errors.js";
import { PAGE_BYTES, type DecodedImage, type ProcessImage } from "../image/mod.js";
import type { Landing, Offer } from "../migration/mod.js";
import { errorField, logger } from "../log/mod.js";
import { parse } from "../validate.js";
import type { FerryNode } from "./node.js";
import type { NodeDirectory } from "./cluster_directory.js";
import { requestJson } from "./_http.js";
import { nodeNamed } from "./_dialer.js";
import { prepare } from "./_migrate.js";
import { RunningAnswerSchema } from "./_internal_schemas.js";

/** A runner is asked whether it still runs a process once its periodic checkpoints are this many intervals late. */
export const SILENCE_INTERVALS = 2;
/** Least silence before the runner is asked (ms): a short interval must not make a busy runner look dead. */
const SILENCE_MS_MIN = 300;
/** Longest silence before the runner is asked (ms), however often it proved alive after all. */
const SILENCE_MS_MAX = 10_000;
/** How long the runner may take to answer that question (ms): a live one on a loaded machine answers within this. */
const PROBE_TIMEOUT_MS = 1000;
/** A prepared restore nobody took is dropped after this long: its standby holds the whole memory of the process. */
export const PREPARED_TTL_MS = 30_000;
/** How often the keeper looks for silent runners. */
const TICK_MS = 50;

/** Where to resume a process, as the takeover gives it. */
export interface RestoreTarget {
  chain: string;
  seq: number;
  moves: number;
  /** Its home after the restore (absent: the one it had). */
  home?: string;
}

/** The offer a restore from the chain kept here makes (to this node, or to another through the data endpoint). */
export function restoreOffer(node: FerryNode, proc: NonNullable<ReturnType<FerryNode["checkpoint_store"]["process"]>>, memory_bytes: number, target: Pick<RestoreTarget, "moves" | "home">): Offer {
  const { signing_key: _theirs, checkpoint_every_ms, ...rest } = proc;
  return {
    ...rest,
    listen: proc.listen ?? [],
    open_files: [],
    strategy: "stop-copy",
    source: node.address,
    memory_bytes,
    moves: target.moves,
    ...(target.home !== undefined ? { home: target.home } : {}),
    ...(checkpoint_every_ms !== undefined ? { checkpoint_every_ms } : {}),
    ...(node.tls === null ? { signing_key: createPublicKey(node.image_key).export({ type: "spki", format: "der" }).toString("base64") } : {}),
  };
}

/** A restore ready to start on this node: the image rebuilt, a standby with every page of it in place. */
export interface PreparedRestore extends RestoreTarget {
  pid: string;
  image: ProcessImage;
  landing: Landing;
  /** How long rebuilding the image and preparing the standby took (ms). */
  rebuild_ms: number;
  prepare_ms: number;
}

/**
 * Rebuilds the image of checkpoint `target` of `pid` (kept here) and lands it
 * in a standby on this node, not yet running. `locked`: the caller holds the
 * chain's lock already.
 */
export async function prepareHere(node: FerryNode, pid: string, target: RestoreTarget, locked = false): Promise<PreparedRestore> {
  const store = node.checkpoint_store;
  const t0 = performance.now();
  const rebuild = async (): Promise<{ image: ProcessImage; proc: NonNullable<ReturnType<typeof store.process>> }> => {
    const kept = store.newest(pid);
    const proc = store.process(pid);
    if (kept === undefined || proc === undefined || kept.chain !== target.chain || kept.seq !== target.seq) {
      throw new FerryError("ERR_NO_CHECKPOINT", `checkpoint ${target.chain}/${target.seq} of ${pid} is not the newest kept on ${node.name}`);
    }
    return { image: await store.rebuild(pid), proc };
  };
  // Read under the chain's lock: a compaction committed meanwhile removes the files it replaced.
  const { image, proc } = locked ? await rebuild() : await store.locked(pid, rebuild);
  const rebuilt_at = performance.now();
  const landing = await prepare(node, restoreOffer(node, proc, image.memory.size_bytes, target), null);
  try {
    // The standby's memory starts all zero: the non-zero pages are all it needs.
    for (const page of image.memory.pages()) landing.write(page.index * PAGE_BYTES, page.data);
  } catch (err: unknown) {
    await landing.abort();
    throw err;
  }
  return { pid, ...target, image, landing, rebuild_ms: rebuilt_at - t0, prepare_ms: performance.now() - rebuilt_at };
}

/** Starts a prepared restore: the process runs here from now on (or the standby is dropped and this throws). */
export async function startPrepared(p: PreparedRestore): Promise<void> {
  // The image was checked when it was rebuilt (every checkpoint's signature and digest): it never left this process since.
  const image: DecodedImage = { ...p.image, memory: { ...p.image.memory, page_count: 0 } };
  try {
    await p.landing.finish(image, null);
  } catch (err: unknown) {
    // As a migration's destination does when its landing fails: the standby and its reservation go.
    await p.landing.abort().catch((e: unknown) => logger().warn({ pid: p.pid, err: errorField(e) }, `could not drop the standby of ${p.pid} after its restore failed`));
    throw err;
  }
}

/** What the keeper watches of one process whose checkpoints it keeps. */
interface Watched {
  runner: string;
  every_ms: number;
  /** Silence after which its runner is asked whether it lives (ms): doubled at each false alarm. */
  silence_ms: number;
  /** When its runner was last heard of (a checkpoint begun or stored, or an answer that it runs the process). */
  heard_ms: number;
  /** A question to the runner or a preparation under way. */
  busy: boolean;
  prepared: PreparedRestore | null;
  prepared_at_ms: number;
}

/** The keeper's restores prepared ahead, per node. */
export class RestorePreparer {
  readonly #node: FerryNode;
  readonly #cluster: NodeDirectory;
  readonly #watched = new Map<string, Watched>();
  #timer: NodeJS.Timeout | null = null;

  constructor(node: FerryNode, cluster: NodeDirectory) {
    this.#node = node;
    this.#cluster = cluster;
  }

  /** Starts watching (until the node leaves its directory). */
  start(): void {
    this.#timer ??= setInterval(() => this.#tick(), TICK_MS);
    this.#timer.unref();
  }

  /** A checkpoint of `pid` from `runner` was stored here: the runner lives, and what was prepared is out of date. */
  stored(pid: string, runner: string | null, every_ms: number | undefined): void {
    const w = this.#watched.get(pid);
    if (w !== undefined) this.#falseAlarm(w);
    if (runner === null || runner === this.#node.name || every_ms === undefined || every_ms <= 0 || this.#node.table.running(pid) !== undefined) {
      this.#watched.delete(pid);
      return;
    }
    const silence_ms = Math.max(SILENCE_MS_MIN, SILENCE_INTERVALS * every_ms, w?.runner === runner ? w.silence_ms : 0);
    this.#watched.set(pid, { runner, every_ms, silence_ms, heard_ms: performance.now(), busy: false, prepared: null, prepared_at_ms: 0 });
  }

  /** A checkpoint of `pid` from `runner` began: its runner lives (a checkpoint under way counts as no silence). */
  heard(pid: string, runner: string | null): void {
    const w = this.#watched.get(pid);
    if (w === undefined || w.runner !== runner) return;
    this.#falseAlarm(w);
    w.heard_ms = performance.now();
  }

  /** The runner lives after all: what was prepared goes, and the next suspicion of it waits longer (a loaded runner must not cost a rebuild per checkpoint). */
  #falseAlarm(w: Watched): void {
    if (w.prepared === null) return;
    this.#drop(w);
    w.silence_ms = Math.min(SILENCE_MS_MAX, w.silence_ms * 2);
  }

  /**
   * The restore prepared for `target`, if there is one (taken: it is the
   * caller's to start); one prepared for anything else is dropped.
   */
  take(pid: string, target: RestoreTarget): PreparedRestore | null {
    const w = this.#watched.get(pid);
    const p = w?.prepared ?? null;
    if (w === undefined || p === null) return null;
    w.prepared = null;
    this.#watched.delete(pid);
    if (p.chain === target.chain && p.seq === target.seq && p.moves === target.moves && p.home === target.home) return p;
    void p.landing.abort().catch((err: unknown) => this.#node.log.warn({ pid, err: errorField(err) }, `could not drop the restore of ${pid} prepared for another move`));
    return null;
  }

  /** Drops everything prepared and stops. */
  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const w of this.#watched.values()) this.#drop(w);
    this.#watched.clear();
  }

  #drop(w: Watched): void {
    const p = w.prepared;
    w.prepared = null;
    if (p !== null) void p.landing.abort().catch((err: unknown) => this.#node.log.warn({ pid: p.pid, err: errorField(err) }, `could not drop the restore of ${p.pid} prepared ahead`));
  }

  #tick(): void {
    if (this.#cluster.stopping) return this.stop();
    const now = performance.now();
    for (const [pid, w] of this.#watched) {
      if (w.busy) continue;
      const kept = this.#node.checkpoint_store.newest(pid);
      if (kept === undefined) {
        // Its chain went (the process ended, or moved its checkpoints elsewhere).
        this.#drop(w);
        this.#watched.delete(pid);
        continue;
      }
      if (w.prepared !== null) {
        if (now - w.prepared_at_ms > PREPARED_TTL_MS || w.prepared.chain !== kept.chain || w.prepared.seq !== kept.seq) this.#drop(w);
        continue;
      }
      if (now - w.heard_ms < w.silence_ms) continue;
      w.busy = true;
      void this.#check(pid, w, kept.chain, kept.seq).finally(() => {
        w.busy = false;
      });
    }
  }

  /** Asks the runner of `pid` whether it still runs it; prepares the restore if it does not answer. */
  async #check(pid: string, w: Watched, chain: string, seq: number): Promise<void> {
    const node = this.#node;
    try {
      const answer = await requestJson(node.dialer, await node.addressOf(w.runner), "GET", `/v1/internal/running/${pid}`, { expect: nodeNamed(w.runner), timeout_ms: PROBE_TIMEOUT_MS });
      if (parse(RunningAnswerSchema, answer, `node ${w.runner}'s answer`, { code: "ERR_PEER_UNREACHABLE" }).running) w.heard_ms = performance.now();
      // It runs elsewhere now, or ended: its next chain (if any) tells.
      else if (this.#watched.get(pid) === w) this.#watched.delete(pid);
      return;
    } catch (err: unknown) {
      // Only a refused or reset connection says the runner's node is gone (killed, its port closed). A runner that is
      // merely slow to answer (busy, on a loaded machine) must not cost a rebuild of the whole memory and a standby of
      // it each time: that load made the keeper itself too slow to take connections. A runner cut off without a word
      // is restored the ordinary way, once its lease runs out.
      if (!refused(err)) {
        node.log.debug({ pid, runner: w.runner, err: errorField(err) }, `${w.runner} did not answer for ${pid} in time; nothing prepared`);
        w.heard_ms = performance.now();
        return;
      }
      node.log.debug({ pid, runner: w.runner, err: errorField(err) }, `${w.runner} refused the connection for ${pid}: preparing its restore here`);
    }
    const proc = node.checkpoint_store.process(pid);
    // It runs here now (moved here, or restored here already): nothing to prepare.
    if (proc === undefined || node.table.running(pid) !== undefined) return;
    // What the takeover will ask for: the next move, and this node as home if the runner was the home too (it takes the home over).
    const target: RestoreTarget = { chain, seq, moves: proc.moves + 1, ...(proc.home === w.runner ? { home: node.name } : {}) };
    try {
      const prepared = await prepareHere(node, pid, target);
      if (this.#watched.get(pid) !== w || w.prepared !== null) {
        await prepared.landing.abort();
        return;
      }
      w.prepared = prepared;
      w.prepared_at_ms = performance.now();
      node.log.info({ pid, runner: w.runner, seq, rebuild_ms: Math.round(prepared.rebuild_ms), prepare_ms: Math.round(prepared.prepare_ms) }, `prepared the restore of ${pid} from checkpoint ${seq}: ${w.runner} does not answer`);
    } catch (err: unknown) {
      node.log.info({ pid, err: errorField(err) }, `could not prepare the restore of ${pid} ahead`);
      // Not again before the runner has been silent as long once more.
      w.heard_ms = performance.now();
    }
  }
}

/** Whether `err` (or one of its causes) is a connection refused or reset: no process listens where the node was. */
function refused(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth += 1) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ECONNREFUSED" || code === "ECONNRESET") return true;
  }
  return false;
}

const preparers = new WeakMap<FerryNode, RestorePreparer>();

/** Starts preparing restores ahead on `node` (a member of `cluster`: failover needs the directory). */
export function startPreparing(node: FerryNode, cluster: NodeDirectory): void {
  const p = new RestorePreparer(node, cluster);
  preparers.set(node, p);
  p.start();
}

/** The preparer of `node` (none without a directory). */
export function preparerOf(node: FerryNode): RestorePreparer | undefined {
  return preparers.get(node);
}

/**
 * The runner's side of checkpoints (docs/checkpoints.md): periodic ones for
 * processes run with `--checkpoint-every`, one on request (`ferry
 * checkpoint`), each sent to a keeper (another node) over the checkpoint
 * endpoint and then recorded at the process's home, which releases the
 * output it covers. Also the keeper's endpoint glue.
 *
 * A chain lives as long as its page tracker: the first checkpoint of a chain
 * is a base, each later one sends what the tracker found written since. A
 * failure, a move or a restart ends the chain; the next checkpoint starts a
 * new one (a base), on a keeper chosen again.
 */
import type http from "node:http";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { createPublicKey } from "node:crypto";
import { FerryError } from "../errors.js";
import { takeCheckpoint, type CheckpointBegin, type CheckpointMetrics } from "../migration/mod.js";
import { createTracker, type PageTracker } from "../memory/mod.js";
import { FramedConnection } from "../transport/mod.js";
import type { Identity } from "../trust/mod.js";
import { errorField } from "../log/mod.js";
import type { FerryNode } from "./node.js";
import type { Running } from "./_records.js";
import { nodeNamed, type Dialer } from "./_dialer.js";
import { upgrade } from "./_upgrade.js";
import { requestJson } from "./_http.js";
import { retry } from "./_retry.js";
import type { CheckpointRecord } from "./_checkpoint_records.js";
import { acceptCheckpointRecord } from "./_checkpoint_routes.js";
import { checkpointSlowdown, type CheckpointSlowdown } from "./_checkpoint_cost.js";
import { fetchModule } from "./_migrate.js";
import { replicateBeforeStored } from "./_output_replica.js";
import { preparerOf } from "./_local_restore.js";

/** The upgrade token of the checkpoint protocol. */
export const CHECKPOINT_PROTOCOL = "ferry-checkpoint/1";
/** Path of the checkpoint endpoint. */
export const CHECKPOINT_PATH = "/v1/internal/checkpoint";

/** How often the scheduler looks for checkpoints that are due: the granularity of --checkpoint-every. */
const TICK_MS = 20;
/** After a failed periodic checkpoint, wait at least this long before the next (a keeper that is down is not hammered). */
const RETRY_AFTER_FAILURE_MS = 1000;
/** How long a runner keeps trying to record a checkpoint at the home. */
const RECORD_GIVE_UP_MS = 10_000;

/** What `ferry checkpoint` and the events report of one checkpoint. */
export interface CheckpointReport extends Omit<CheckpointMetrics, "resumed_at_ms">, CheckpointSlowdown {
  pid: string;
  keeper: string;
  chain: string;
  seq: number;
  moves: number;
  /**
   * Periodic checkpoints that fell due while the one before was still under
   * way and were folded into this one (it covers them all): at an interval
   * shorter than a checkpoint takes, checkpoints go at the rate the link and
   * the keeper allow, and this says how far behind the interval that is.
   */
  coalesced: number;
}

/** One process's chain on this runner. */
interface Chain {
  id: string;
  keeper: string;
  tracker: PageTracker;
  /** Checkpoints of the chain stored so far. */
  seq: number;
  moves: number;
  /** How often its process had hibernated when the chain began: a wake gives it a new memory, which its tracker never saw. */
  hibernations: number;
}

/** Per process: its chain, the checkpoint under way, when the next is due. */
interface Slot {
  chain: Chain | null;
  busy: Promise<CheckpointReport> | null;
  due_ms: number;
  /** The code of the last checkpoint if it failed: the same failure again is counted, not published again. */
  failed: string | null;
  /** When the last checkpoint's pause here ended (`performance.now()`): the next one's slowdown is measured from here. */
  resumed_ms?: number;
}

/** Opens a checkpoint connection to node `name` at `address`. */
export async function connectCheckpoint(dialer: Dialer, address: string, name: string): Promise<FramedConnection> {
  const { socket, head } = await upgrade(dialer, address, CHECKPOINT_PATH, CHECKPOINT_PROTOCOL, nodeNamed(name));
  return new FramedConnection(socket, { head: Buffer.from(head) });
}

/** The keeper's end of a checkpoint connection (called by the node's upgrade handler for CHECKPOINT_PATH, peer already checked to be a node). */
export function acceptCheckpoint(node: FerryNode, req: http.IncomingMessage, socket: Duplex, head: Buffer, peer: Identity | null): void {
  if ((req.headers.upgrade ?? "").toLowerCase() !== CHECKPOINT_PROTOCOL) {
    socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    return;
  }
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${CHECKPOINT_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
  const conn = new FramedConnection(socket, { head });
  const key = peer === null ? undefined : (req.socket as TLSSocket).getPeerX509Certificate?.()?.publicKey;
  node.checkpoint_store
    .receive(conn, { name: peer?.name ?? null, key }, {
      idle_ms: node.limits.standby_idle_ms,
      ensureModule: async (begin: CheckpointBegin) => {
        if (node.modules.has(begin.process.module_sha256)) return;
        // From the runner that sent it, and nowhere else (with TLS, the authenticated peer).
        await fetchModule(node, begin.process.source, peer === null ? undefined : nodeNamed(peer.name), begin.process.module_sha256);
      },
      began: (begin: CheckpointBegin) => preparerOf(node)?.heard(begin.process.pid, peer?.name ?? null),
    })
    .then(
      (kept) => {
        node.log.debug({ pid: kept.pid, seq: kept.seq, from: peer?.name ?? null }, `stored checkpoint ${kept.seq} of ${kept.pid}`);
        // Its runner lives; should its checkpoints stop coming, the restore is prepared ahead.
        preparerOf(node)?.stored(kept.pid, peer?.name ?? null, node.checkpoint_store.process(kept.pid)?.checkpoint_every_ms);
      },
      (err: unknown) => node.log.info({ from: peer?.name ?? null, err: errorField(err) }, "a checkpoint was not stored"),
    );
}

/** The checkpoints this node takes of the processes it runs. */
export class NodeCheckpoints {
  readonly #node: FerryNode;
  readonly #slots = new Map<string, Slot>();
  #timer: NodeJS.Timeout | null = null;

  constructor(node: FerryNode) {
    this.#node = node;
  }

  /** Starts taking periodic checkpoints. */
  start(): void {
    this.#timer ??= setInterval(() => this.#tick(), TICK_MS);
    this.#timer.unref();
  }

  /** Stops: no new checkpoints, trackers released. */
  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const slot of this.#slots.values()) {
      const tracker = slot.chain?.tracker;
      // A tracker in use by a checkpoint under way is released when that one ends (it fails: its process is being stopped).
      if (slot.busy === null) tracker?.close();
      else void slot.busy.catch(() => undefined).finally(() => tracker?.close());
    }
    this.#slots.clear();
  }

  #tick(): void {
    const now = performance.now();
    // Only the processes with periodic checkpoints: the others cost this tick (every 20 ms) nothing.
    for (const r of this.#node.table.runningCheckpointed()) {
      const every = r.checkpoint_every_ms ?? 0;
      if (every <= 0) continue;
      let slot = this.#slots.get(r.pid);
      if (slot === undefined) {
        // The first one after an interval: a process that just started (or arrived) has little to save at once.
        slot = { chain: null, busy: null, due_ms: now + every, failed: null };
        this.#slots.set(r.pid, slot);
      } else if (slot.due_ms === Infinity) {
        // Its slot was made by a checkpoint on request (take) before this tick first saw it: periodic ones start now.
        slot.due_ms = now + every;
      }
      if (slot.busy !== null || now < slot.due_ms || r.migrating || this.#node.postcopy.forPid(r.pid) !== undefined) continue;
      // Due for longer than an interval: the one before took longer than that, and the intervals between are folded into this one.
      const coalesced = Math.floor((now - slot.due_ms) / every);
      slot.due_ms = now + every;
      this.take(r.pid, coalesced).catch((err: unknown) => {
        slot.due_ms = performance.now() + Math.max(every, RETRY_AFTER_FAILURE_MS);
        this.#node.log.debug({ pid: r.pid, err: errorField(err) }, `periodic checkpoint of ${r.pid} failed`);
      });
    }
    // Gone from here (ended or moved on): its chain ends with it.
    for (const [pid, slot] of this.#slots) {
      if (this.#node.table.running(pid) !== undefined || slot.busy !== null) continue;
      slot.chain?.tracker.close();
      this.#slots.delete(pid);
    }
  }

  /** Whether a checkpoint chain of `pid` tracks its memory's writes now (the load module's dirty-rate meter then leaves it alone). */
  tracks(pid: string): boolean {
    const slot = this.#slots.get(pid);
    return slot !== undefined && (slot.chain !== null || slot.busy !== null);
  }

  /** Takes a checkpoint of `pid`, which runs here, now (after the one under way, if any); `coalesced`: periodic ones folded into it. */
  async take(pid: string, coalesced = 0): Promise<CheckpointReport> {
    const slot = this.#slots.get(pid) ?? { chain: null, busy: null, due_ms: Infinity, failed: null };
    this.#slots.set(pid, slot);
    // Only the turn is awaited: a failure of the one under way is its own caller's, who awaits `busy` in its take().
    while (slot.busy !== null) await slot.busy.catch(() => undefined);
    const busy = this.#take(pid, slot, coalesced);
    slot.busy = busy;
    try {
      return await busy;
    } finally {
      slot.busy = null;
    }
  }

  /**
   * Ends the chain of `pid` before it moves (its tracker must not stay armed
   * beside the migration's): waits for a checkpoint under way.
   */
  async pause(pid: string): Promise<void> {
    const slot = this.#slots.get(pid);
    if (slot === undefined) return;
    // Only the end is awaited: a failure of the checkpoint under way is its own caller's, who awaits it in take().
    while (slot.busy !== null) await slot.busy.catch(() => undefined);
    slot.chain?.tracker.close();
    slot.chain = null;
  }

  async #take(pid: string, slot: Slot, coalesced: number): Promise<CheckpointReport> {
    const node = this.#node;
    const running = node.table.running(pid);
    if (running === undefined) throw new FerryError("ERR_NO_SUCH_PROCESS", `process ${pid} does not run on node ${node.name}`);
    if (running.migrating) throw new FerryError("ERR_PROCESS_STATE", `${pid} is being migrated`);
    if (node.postcopy.forPid(pid) !== undefined) throw new FerryError("ERR_PROCESS_STATE", `${pid} is still receiving pages from its last post-copy migration`);
    const failed = (keeper: string | null, err: unknown): unknown => {
      const code = err instanceof FerryError ? err.code : "ERR_INTERNAL";
      node.metrics.checkpointFailed(code);
      // A keeper that stays away would otherwise fill the recent events (and the log) with one failure a period.
      if (slot.failed !== code) {
        node.events.publish({ type: "checkpoint.failed", pid, keeper, code, message: err instanceof Error ? err.message : String(err) });
        if (code !== "ERR_PROCESS_ENDED") node.log.warn({ pid, keeper, err: errorField(err) }, `a checkpoint of ${pid} failed (${code}); the same failure again is logged at debug level only`);
      }
      slot.failed = code;
      return err;
    };
    // Read in place while it runs: a hibernated process wakes first, and none hibernates during a checkpoint.
    let awake: () => void;
    try {
      awake = await running.proc.stayAwake();
    } catch (err: unknown) {
      throw failed(null, err);
    }
    try {
      return await this.#takeAwake(running, slot, coalesced, failed);
    } finally {
      awake();
    }
  }

  async #takeAwake(running: Running, slot: Slot, coalesced: number, failed: (keeper: string | null, err: unknown) => unknown): Promise<CheckpointReport> {
    const node = this.#node;
    const pid = running.pid;
    let chain = slot.chain;
    if (chain === null || chain.moves !== running.moves || chain.hibernations !== running.proc.hibernations) {
      chain?.tracker.close();
      slot.chain = null;
      let keeper: string;
      try {
        keeper = await this.#chooseKeeper(running);
      } catch (err: unknown) {
        throw failed(null, err);
      }
      // A memory takes one write tracker at a time: the load module's dirty-rate window gives way.
      node.load.dirty.release(pid);
      chain = { id: chainId(node.name), keeper, tracker: createTracker(node.page_tracker.name), seq: 0, moves: running.moves, hibernations: running.proc.hibernations };
      slot.chain = chain;
    }
    const seq = chain.seq + 1;
    const begin: CheckpointBegin = {
      process: {
        pid,
        home: running.home,
        module_sha256: running.module_sha256,
        module_name: running.module_name,
        args: running.args,
        env: running.env,
        dirs: running.dirs,
        listen: running.listen,
        source: node.address,
        memory_bytes: running.proc.memory_bytes,
        memory_max_bytes: running.memory_max_bytes,
        moves: running.moves,
        ...(running.checkpoint_every_ms !== undefined ? { checkpoint_every_ms: running.checkpoint_every_ms } : {}),
        ...(node.tls === null ? { signing_key: createPublicKey(node.image_key).export({ type: "spki", format: "der" }).toString("base64") } : {}),
      },
      chain: chain.id,
      seq,
    };
    let metrics: CheckpointMetrics;
    let conn: FramedConnection | null = null;
    const keeper = chain.keeper;
    const flushOutput = async (covered: { stdout_bytes: number; stderr_bytes: number }): Promise<void> => {
      await running.relay.flush();
      // The output it covers reaches the keeper's replica before the checkpoint counts as stored: a home may die at any moment and leave no gap.
      await replicateBeforeStored(node, pid, running.home, keeper, running.moves, covered);
    };
    try {
      conn = await connectCheckpoint(node.dialer, await node.addressOf(keeper), keeper);
      metrics = await takeCheckpoint(conn, { proc: running.proc, signer: { key: node.image_key }, links: running.links, flushOutput }, chain.tracker, begin);
    } catch (err: unknown) {
      // The tracker moved on past what the keeper holds: the next checkpoint starts a new chain.
      conn?.destroy(err instanceof Error ? err : new Error(String(err)));
      chain.tracker.close();
      slot.chain = null;
      throw failed(chain.keeper, err);
    }
    chain.seq = seq;
    // Stored: what it had taken from each sender then is durable (senders keep the rest for a restore: docs/links.md).
    running.links.checkpointStored();
    slot.failed = null;
    const { resumed_at_ms, ...taken } = metrics;
    const { interval_ms, slowdown_ratio } = checkpointSlowdown(Math.max(slot.resumed_ms ?? -Infinity, running.runs_since_ms), resumed_at_ms, metrics.pause_ms);
    slot.resumed_ms = resumed_at_ms;
    const report: CheckpointReport = { ...taken, interval_ms, slowdown_ratio, pid, keeper: chain.keeper, chain: chain.id, seq, moves: running.moves, coalesced };
    node.metrics.checkpointTaken(metrics, coalesced, slowdown_ratio);
    node.events.publish({ type: "checkpoint.taken", pid, keeper: chain.keeper, checkpoint: seq, pause_ms: metrics.pause_ms, bytes: metrics.bytes, pages: metrics.pages, total_ms: metrics.total_ms, coalesced, interval_ms, slowdown_ratio });
    await this.#record(running, report);
    return report;
  }

  /** Tells the home of the process where its newest checkpoint is (it releases the output it covers). */
  async #record(running: Running, r: CheckpointReport): Promise<void> {
    const node = this.#node;
    const record: CheckpointRecord = {
      pid: r.pid,
      keeper: r.keeper,
      chain: r.chain,
      seq: r.seq,
      runner: node.name,
      moves: r.moves,
      bytes: r.bytes,
      pages: r.pages,
      pause_ms: r.pause_ms,
      interval_ms: r.interval_ms,
      slowdown_ratio: r.slowdown_ratio,
      memory_bytes: r.memory_bytes,
      stdout_bytes: r.stdout_bytes,
      stderr_bytes: r.stderr_bytes,
      created_unix_ms: Date.now(),
    };
    try {
      await retry(async () => {
        if (running.home === node.name) {
          await acceptCheckpointRecord(node, record, node.name);
          return;
        }
        await requestJson(node.dialer, await node.addressOf(running.home), "POST", `/v1/internal/checkpointed/${r.pid}`, { body: record, expect: nodeNamed(running.home) });
      }, { give_up_ms: RECORD_GIVE_UP_MS });
    } catch (err: unknown) {
      // Stored but not recorded: its output stays held until a later checkpoint is recorded.
      node.log.warn({ pid: r.pid, home: running.home, err: errorField(err) }, `the home of ${r.pid} did not record checkpoint ${r.seq}`);
    }
  }

  /**
   * The node to keep a new chain: another node that is up, not the home if
   * any other will do (the home's own failure then does not take the
   * checkpoints with it), the same one for the same process while it is up.
   */
  async #chooseKeeper(running: Running): Promise<string> {
    const node = this.#node;
    const up = (await node.peerInfos()).flatMap((p) => (p.up && p.name !== node.name ? [p.name] : [])).sort();
    const others = up.filter((n) => n !== running.home);
    const pick = others.length > 0 ? others[hash(running.pid) % others.length] : up[0];
    if (pick === undefined) throw new FerryError("ERR_NO_KEEPER", `no other node is up to keep a checkpoint of ${running.pid}: checkpoints are stored away from the node that runs the process`);
    return pick;
  }
}

function chainId(node: string): string {
  return `${node}.${Date.now().toString(36)}.${Math.random().toString(36).slice(2, 8)}`;
}

/** A small stable hash, to spread processes' chains over the keepers. */
function hash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i += 1) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return h;
}

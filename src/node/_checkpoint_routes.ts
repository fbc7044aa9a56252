/**
 * Checkpoints in the control API (docs/checkpoints.md): taking one now
 * (`POST /v1/processes/PID/checkpoint`), a process's last checkpoint (`GET
 * /v1/processes/PID/checkpoints`), the home's record of each checkpoint and
 * its output commit, and the restore primitive failover calls: resume a
 * process from its last checkpoint on a chosen live node, as its next move.
 */
import type http from "node:http";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { encodeImage } from "../image/mod.js";
import { restoreTo } from "../migration/mod.js";
import { NodeName } from "../process_spec.js";
import { parse } from "../validate.js";
import type { Identity } from "../trust/mod.js";
import { errorField } from "../log/mod.js";
import type { FerryNode } from "./node.js";
import type { HomeRecord } from "./_records.js";
import { forward, readRequest, requestJson, sendJson } from "./_http.js";
import { nodeNamed } from "./_dialer.js";
import { connectData } from "./_migrate.js";
import { CheckpointRecordSchema, type CheckpointRecord } from "./_checkpoint_records.js";
import { RunningAnswerSchema } from "./_internal_schemas.js";
import type { KeptCheckpoint } from "./_checkpoint_store.js";
import { checkpointToDirectory } from "./_failover.js";
import { replicaRewound } from "./_output_replica.js";
import { dropCopy, fencedAway, FenceSchema } from "./_fence.js";
import { preparerOf, prepareHere, restoreOffer, startPrepared, type RestoreTarget } from "./_local_restore.js";

/** How long a restore may take at the keeper: rebuilding and sending a whole image, and the destination resuming it. */
const RESTORE_TIMEOUT_MS = 180_000;

/** `POST /v1/processes/PID/restore`: where to resume it (default: its keeper). */
export const RestoreRequestSchema = v.object({ to: v.optional(NodeName) });
/** `POST /v1/internal/ckpt-restore/PID` (home → keeper). */
const KeeperRestoreSchema = v.object({ to: NodeName, moves: v.pipe(v.number(), v.integer(), v.minValue(1)), chain: CheckpointRecordSchema.entries.chain, seq: CheckpointRecordSchema.entries.seq, home: v.optional(NodeName) });
/** `POST /v1/internal/ckpt-drop/PID` (home → keeper). */
const DropSchema = v.object({ chain: v.optional(CheckpointRecordSchema.entries.chain) });
/** `POST /v1/internal/ckpt-restore/PID`'s answer (keeper → home): what the keeper's side took (ms). */
const KeeperRestoredSchema = v.object({
  pid: v.string(),
  to: NodeName,
  bytes: v.number(),
  total_ms: v.number(),
  /** Whether the keeper had prepared the restore ahead, while the runner's lease ran out. */
  prepared_ahead: v.optional(v.boolean(), false),
  phases_ms: v.object({ wait: v.number(), rebuild: v.number(), send: v.number() }),
});
type KeeperRestored = v.InferOutput<typeof KeeperRestoredSchema>;
/** `GET /v1/internal/ckpt/PID`'s answer (keeper → home). */
const KeptSchema = v.object({ chain: CheckpointRecordSchema.entries.chain, seq: CheckpointRecordSchema.entries.seq, stdout_bytes: v.number(), stderr_bytes: v.number() });

/** What the restore primitive reports. */
export interface RestoreResult {
  pid: string;
  /** The node it ran on, and the node it runs on now. */
  from: string;
  to: string;
  keeper: string;
  chain: string;
  seq: number;
  /** Its move counter now (one more than before). */
  moves: number;
  /** Output it resumed at (what the checkpoint covers). */
  stdout_bytes: number;
  stderr_bytes: number;
  total_ms: number;
  /** Whether the keeper had prepared it ahead (image rebuilt, standby ready) while the runner's lease ran out: `rebuild` was then only a check. */
  prepared_ahead: boolean;
  /** Where the time went, in order (ms): what failover did before (`before`), and each step of the restore. */
  phases_ms: RestorePhases;
}

/**
 * Where a restore's time went (ms). `before`: what the caller did first
 * (failover: learning of the death, the directory's records, the claim, the
 * fence); `ask_keeper`: the home asking the keeper for its newest
 * checkpoint (a keeper taking a dead home over: taking the replica and the
 * home record); at the keeper, `wait` for a change of the chain under way,
 * `rebuild` of the whole image, `send` to the destination until it runs it;
 * `record`: the home recording the move (and the directory learning it).
 */
export interface RestorePhases {
  before: Record<string, number>;
  ask_keeper: number;
  wait: number;
  rebuild: number;
  send: number;
  record: number;
}

/** The routes under /v1/processes/PID/ this file serves; false: not one of them (the caller goes on). */
export async function checkpointProcessRoute(node: FerryNode, method: string, pid: string, sub: string | undefined, req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
  const record = node.table.home(pid);
  if (sub === "checkpoint" && method === "POST") {
    if (node.table.running(pid) !== undefined) {
      sendJson(res, 200, await node.checkpoints.take(pid));
      return true;
    }
    if (record === undefined) return false;
    if (record.exit !== null) throw new FerryError("ERR_PROCESS_ENDED", `${pid} has ended (${record.state}); there is nothing to checkpoint`);
    if (record.node === node.name) throw new FerryError("ERR_PROCESS_STATE", `${pid} is ${record.state}, not running on ${node.name}`);
    forward(node.dialer, req, res, await node.addressOf(record.node), nodeNamed(record.node), null);
    return true;
  }
  if (record === undefined) return false;
  if (sub === "checkpoints" && method === "GET") {
    sendJson(res, 200, { pid, last: node.checkpoint_records.last(pid) ?? null });
    return true;
  }
  if (sub === "restore" && method === "POST") {
    sendJson(res, 200, await restoreProcess(node, record, await readRequest(req, RestoreRequestSchema)));
    return true;
  }
  return false;
}

/** The node-to-node routes this file serves (`/v1/internal/WHAT/PID`); false: not one of them. */
export async function checkpointInternalRoute(
  node: FerryNode,
  method: string,
  what: string,
  pid: string,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  peer: Identity | null,
): Promise<boolean> {
  if (what === "checkpointed" && method === "POST") {
    const record = await readRequest(req, CheckpointRecordSchema);
    if (record.pid !== pid) throw new FerryError("ERR_BAD_REQUEST", `a record of ${record.pid} sent for ${pid}`);
    await acceptCheckpointRecord(node, record, peer?.name ?? record.runner);
    sendJson(res, 200, { pid });
    return true;
  }
  if (what === "ckpt" && method === "GET") {
    const kept = node.checkpoint_store.newest(pid);
    if (kept === undefined) throw new FerryError("ERR_NO_CHECKPOINT", `no checkpoint of ${pid} is kept on ${node.name}`);
    sendJson(res, 200, kept);
    return true;
  }
  if (what === "ckpt-restore" && method === "POST") {
    sendJson(res, 200, await restoreFromHere(node, pid, await readRequest(req, KeeperRestoreSchema)));
    return true;
  }
  if (what === "fence" && method === "POST") {
    const body = await readRequest(req, FenceSchema);
    // Only what the directory records: no node can make another drop a copy the cluster still counts on.
    const record = await node.cluster?.directory.process(pid);
    if (record === undefined || record === null || record.moves < body.moves || (record.moves === body.moves && record.runner !== body.to)) {
      throw new FerryError("ERR_LOCATION_STALE", `the directory does not record move ${body.moves} of ${pid} to ${body.to}`);
    }
    sendJson(res, 200, { pid, dropped: await dropCopy(node, pid, body.moves, body.to, `node ${peer?.name ?? "?"} claimed move ${body.moves} of it, to ${body.to}`) });
    return true;
  }
  if (what === "ckpt-drop" && method === "POST") {
    const body = await readRequest(req, DropSchema);
    sendJson(res, 200, { pid, dropped: await node.checkpoint_store.drop(pid, body.chain) });
    return true;
  }
  return false;
}

/**
 * The home's side of a checkpoint report from node `from`: records it (if
 * newer than the last) and releases the output it covers. A chain replaced
 * on another keeper is dropped there.
 */
export async function acceptCheckpointRecord(node: FerryNode, record: CheckpointRecord, from: string): Promise<void> {
  const home = node.table.home(record.pid);
  if (home === undefined) throw new FerryError("ERR_NO_SUCH_PROCESS", `node ${node.name} is not home to ${record.pid}`);
  // Only the node that took a checkpoint may say where it is.
  if (from !== record.runner) throw new FerryError("ERR_FORBIDDEN", `node ${from} cannot record a checkpoint taken by ${record.runner}`);
  if (home.exit !== null) {
    // Taken while the process was ending: nothing restarts from it, so the keeper need not keep it.
    dropChain(node, record);
    return;
  }
  // From the runner recorded, or from one a move the home has not recorded yet took it to; never from one it has left (a runner cut off, then restored elsewhere).
  if (!(record.moves > home.moves || (record.moves === home.moves && record.runner === home.node))) {
    throw new FerryError("ERR_NOT_RUNNER", `${record.pid} runs on ${home.node} (move ${home.moves}); a checkpoint taken by ${record.runner} at move ${record.moves} is refused`);
  }
  const prev = node.checkpoint_records.put(record);
  const written = checkpointToDirectory(node, record);
  // Output is released only once a restart of this home would still find the checkpoint that covers it.
  await node.checkpoint_records.durable();
  home.output.commit({ stdout: record.stdout_bytes, stderr: record.stderr_bytes });
  // Once the directory names the new keeper: until then failover may look for the old chain.
  if (prev !== undefined && prev.keeper !== record.keeper) void written.then(() => dropChain(node, prev));
}

/** The process ended: its record goes, and its chain with it (retention: nothing is kept of an ended process). */
export function checkpointsEnded(node: FerryNode, pid: string): void {
  const last = node.checkpoint_records.drop(pid);
  if (last !== undefined) dropChain(node, last);
}

function dropChain(node: FerryNode, r: CheckpointRecord): void {
  void (async () => {
    if (r.keeper === node.name) return void (await node.checkpoint_store.drop(r.pid, r.chain));
    await requestJson(node.dialer, await node.addressOf(r.keeper), "POST", `/v1/internal/ckpt-drop/${r.pid}`, { body: { chain: r.chain }, expect: nodeNamed(r.keeper) });
  })().catch((err: unknown) => {
    // Left on the keeper until the process's next chain there replaces it; the keeper's limits bound it meanwhile.
    node.log.warn({ pid: r.pid, keeper: r.keeper, err: errorField(err) }, `could not drop the old checkpoints of ${r.pid} on ${r.keeper}`);
  });
}

/** Restores being run by this home, so that one process is never restored twice at once. */
const restoring = new WeakSet<HomeRecord>();

/**
 * The restore primitive (failover calls it once the runner is declared dead):
 * resumes the process from its last checkpoint on node `to` (default: its
 * keeper), with the same pid and its move counter plus one. Refused while the
 * node it runs on says it still runs it. The output past the checkpoint was
 * never released (output commit) and is cut off: the resumed process writes
 * it again. `claimed`: failover claimed the move in the directory and fenced
 * the old runner already, which then no longer counts, answering or not.
 */
export async function restoreProcess(
  node: FerryNode,
  record: HomeRecord,
  body: v.InferOutput<typeof RestoreRequestSchema> & { claimed?: boolean; before_ms?: Record<string, number> },
): Promise<RestoreResult> {
  const t0 = performance.now();
  const pid = record.pid;
  if (record.exit !== null) throw new FerryError("ERR_PROCESS_ENDED", `${pid} has ended (${record.state})`);
  const last = node.checkpoint_records.last(pid);
  if (last === undefined) throw new FerryError("ERR_NO_CHECKPOINT", `${pid} has no checkpoint to resume from`);
  if (restoring.has(record)) throw new FerryError("ERR_PROCESS_STATE", `${pid} is being restored already`);
  restoring.add(record);
  try {
    const from = record.node;
    if (body.claimed !== true && (await stillRuns(node, from, pid))) throw new FerryError("ERR_PROCESS_STATE", `${pid} still runs on ${from}: exactly one copy may run, so it is not restored`);
    const to = body.to ?? last.keeper;
    const asked_at = performance.now();
    const keeper = await node.addressOf(last.keeper);
    const kept = parse(KeptSchema, await requestJson(node.dialer, keeper, "GET", `/v1/internal/ckpt/${pid}`, { expect: nodeNamed(last.keeper) }), `node ${last.keeper}'s checkpoint`, { code: "ERR_PEER_UNREACHABLE" }) as Pick<KeptCheckpoint, "chain" | "seq" | "stdout_bytes" | "stderr_bytes">;
    if (kept.chain !== last.chain || kept.seq < last.seq) throw new FerryError("ERR_NO_CHECKPOINT", `${last.keeper} no longer keeps checkpoint ${last.chain}/${last.seq} of ${pid}`);
    const offsets = { stdout: kept.stdout_bytes, stderr: kept.stderr_bytes };
    try {
      // Past what the checkpoint covers: never released, and written again by the resumed process.
      record.output.rewind(offsets);
    } catch (cause: unknown) {
      throw new FerryError("ERR_PROCESS_STATE", `the output of ${pid} cannot resume where its checkpoint does: ${(cause as Error).message}`, { cause });
    }
    replicaRewound(node, pid, offsets);
    // What the checkpoint covers is stored: readers may see it.
    record.output.commit(offsets);
    const moves = record.moves + 1;
    const restoring_at = performance.now();
    const done = parse(
      KeeperRestoredSchema,
      await requestJson(node.dialer, keeper, "POST", `/v1/internal/ckpt-restore/${pid}`, { body: { to, moves, chain: kept.chain, seq: kept.seq }, expect: nodeNamed(last.keeper), timeout_ms: RESTORE_TIMEOUT_MS, once: true }),
      `node ${last.keeper}'s restore`,
      { code: "ERR_PEER_UNREACHABLE" },
    );
    const recording_at = performance.now();
    node.table.acceptRestore(record, to, moves);
    fencedAway(record, from);
    // The cluster directory learns the move too (failover has claimed it there already: then this write finds it done).
    await node.cluster?.moved(pid, to, moves);
    const end = performance.now();
    const phases_ms: RestorePhases = {
      before: body.before_ms ?? {},
      ask_keeper: restoring_at - asked_at,
      wait: done.phases_ms.wait,
      rebuild: done.phases_ms.rebuild,
      // The keeper's send, and the hops of its answer.
      send: recording_at - restoring_at - done.phases_ms.wait - done.phases_ms.rebuild,
      record: end - recording_at,
    };
    const prepared_ahead = done.prepared_ahead;
    const result: RestoreResult = { pid, from, to, keeper: last.keeper, chain: kept.chain, seq: kept.seq, moves, stdout_bytes: offsets.stdout, stderr_bytes: offsets.stderr, total_ms: end - t0, prepared_ahead, phases_ms };
    node.log.info({ pid, from, to, keeper: last.keeper, seq: kept.seq, prepared_ahead, phases_ms }, `restored ${pid} on ${to} from checkpoint ${kept.seq}`);
    node.events.publish({ type: "process.restored", pid, from, to, keeper: last.keeper, checkpoint: kept.seq, moves, total_ms: result.total_ms, prepared_ahead, phases_ms });
    return result;
  } finally {
    restoring.delete(record);
  }
}

/** Whether node `name` says it runs `pid`; a node that does not answer does not. */
async function stillRuns(node: FerryNode, name: string, pid: string): Promise<boolean> {
  if (name === node.name) return node.table.running(pid) !== undefined;
  try {
    const answer = await requestJson(node.dialer, await node.addressOf(name), "GET", `/v1/internal/running/${pid}`, { expect: nodeNamed(name) });
    return parse(RunningAnswerSchema, answer, `node ${name}'s answer`, { code: "ERR_PEER_UNREACHABLE" }).running;
  } catch (err: unknown) {
    if (err instanceof FerryError && (err.code === "ERR_PEER_UNREACHABLE" || err.code === "ERR_NO_SUCH_NODE")) return false;
    throw err;
  }
}

/**
 * The keeper's side of a restore: rebuilds the image of the checkpoint asked
 * for and resumes it on `to` (reporting to `home` if given: failover of a
 * dead home). On this node itself, the image lands in a standby here
 * directly, prepared ahead if the runner's silence let it be
 * (`_local_restore.ts`); on another, it goes as a stop-and-copy migration.
 */
export async function restoreFromHere(node: FerryNode, pid: string, body: v.InferOutput<typeof KeeperRestoreSchema>): Promise<KeeperRestored> {
  const t0 = performance.now();
  const store = node.checkpoint_store;
  return store.locked(pid, async () => {
    const locked_at = performance.now();
    const kept = store.newest(pid);
    const proc = store.process(pid);
    if (kept === undefined || proc === undefined || kept.chain !== body.chain || kept.seq !== body.seq) {
      throw new FerryError("ERR_NO_CHECKPOINT", `checkpoint ${body.chain}/${body.seq} of ${pid} is not the newest kept on ${node.name}`);
    }
    if (body.to === node.name) {
      const target: RestoreTarget = { chain: body.chain, seq: body.seq, moves: body.moves, ...(body.home !== undefined ? { home: body.home } : {}) };
      const ahead = preparerOf(node)?.take(pid, target) ?? null;
      const prepared = ahead ?? (await prepareHere(node, pid, target, true));
      const starting_at = performance.now();
      await startPrepared(prepared);
      store.fence(pid, body.moves);
      const end = performance.now();
      return { pid, to: body.to, bytes: 0, total_ms: end - t0, prepared_ahead: ahead !== null, phases_ms: { wait: locked_at - t0, rebuild: starting_at - locked_at, send: end - starting_at } };
    }
    const image = await store.rebuild(pid);
    const rebuilt_at = performance.now();
    const offer = restoreOffer(node, proc, image.memory.size_bytes, body);
    const conn = await connectData(node.dialer, await node.addressOf(body.to), body.to);
    const bytes = await restoreTo(conn, offer, encodeImage(image, { signer: { key: node.image_key } }));
    // Fenced: a checkpoint from the runner it was restored away from (cut off, not dead) is refused from now on.
    store.fence(pid, body.moves);
    const end = performance.now();
    return { pid, to: body.to, bytes, total_ms: end - t0, prepared_ahead: false, phases_ms: { wait: locked_at - t0, rebuild: rebuilt_at - locked_at, send: end - rebuilt_at } };
  });
}

/**
 * Failover of a process's home (issue 11 item 5, docs/directory.md
 * "Failover"): the output log and the home's record are kept with the
 * checkpoints, so that when the home dies with the runner, the keeper of the
 * last checkpoint becomes the process's home and resumes it.
 *
 * - **Replica.** Each time a home records a checkpoint (with a directory
 *   only: failover needs one), it sends the keeper its record of the process
 *   and the output written since the last it sent there (`POST
 *   /v1/internal/output-replica/PID`). The keeper writes it under
 *   `DATA/replicas/` (each chunk at its offset, cutting what lies past it: a
 *   restore rewinds output). When the process ends, the home drops it.
 * - **Adoption.** When the directory declares the home (and runner) dead,
 *   the keeper of the process's last checkpoint claims it in the directory
 *   (compare-and-set: home and runner itself, the next move), copies the
 *   replica, cut at the offsets the checkpoint covers, into its own output
 *   log, takes the home record, and restores the process on itself,
 *   reporting to itself. Any node then forwards `wait`, `logs`, `kill` and
 *   looks to the home the directory names ({@link movedHome}).
 * - **Not carried over:** listening sockets (they were the dead home's: a
 *   client's connection is reset and the addresses are gone) and link
 *   routing to the new home.
 */
import fs from "node:fs";
import path from "node:path";
import type http from "node:http";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { errorField } from "../log/mod.js";
import type { Identity } from "../trust/mod.js";
import type { ProcessRecord } from "../directory/mod.js";
import type { FerryNode } from "./node.js";
import type { NodeDirectory } from "./cluster_directory.js";
import type { CheckpointRecord } from "./_checkpoint_records.js";
import { restoreFromHere } from "./_checkpoint_routes.js";
import { readRequest, requestJson, sendJson } from "./_http.js";
import { nodeNamed } from "./_dialer.js";
import { OutputChunksSchema } from "./_internal_schemas.js";
import { SavedHomeSchema, type SavedHome } from "./node_state.js";
import type { StreamName } from "./output_log.js";

/** Most bytes of output sent in one replica request (its JSON, base64, stays under the 1 MiB body limit). */
const REPLICA_CHUNK_BYTES = 256 * 1024;

const STREAMS: readonly StreamName[] = ["stdout", "stderr"];

/** `POST /v1/internal/output-replica/PID` (home → keeper). */
const ReplicaSchema = v.object({ record: SavedHomeSchema, chunks: OutputChunksSchema });

/** What a home has replicated of one process: to which keeper, up to where. */
interface Sent {
  keeper: string;
  offsets: Record<StreamName, number>;
  /** The replication under way (one at a time per process, in order). */
  busy: Promise<void>;
}

/** Per node, per pid: what its processes' replicas hold. */
const sentBy = new WeakMap<FerryNode, Map<string, Sent>>();

function sentOf(node: FerryNode): Map<string, Sent> {
  let m = sentBy.get(node);
  if (m === undefined) {
    m = new Map();
    sentBy.set(node, m);
  }
  return m;
}

function replicaPath(node: FerryNode, pid: string, what: StreamName | "json"): string {
  return path.join(node.data_dir, "replicas", `${pid}.${what}`);
}

/**
 * The home recorded checkpoint `record`: the keeper gets the home's record
 * and the output written since the last replication there, in the
 * background (with a directory only).
 */
export function replicateOutput(node: FerryNode, record: CheckpointRecord): void {
  if (node.cluster === null) return;
  const pid = record.pid;
  const sent = sentOf(node);
  const prev = sent.get(pid);
  const entry: Sent = prev?.keeper === record.keeper ? prev : { keeper: record.keeper, offsets: { stdout: 0, stderr: 0 }, busy: prev?.busy ?? Promise.resolve() };
  if (prev !== undefined && prev.keeper !== record.keeper) dropReplica(node, pid, prev.keeper);
  entry.busy = entry.busy.then(() => sendReplica(node, pid, entry)).catch((err: unknown) => {
    // The next checkpoint sends it all again from where the keeper's copy ends.
    node.log.warn({ pid, keeper: entry.keeper, err: errorField(err) }, `could not replicate the output of ${pid} to ${entry.keeper}`);
  });
  sent.set(pid, entry);
}

async function sendReplica(node: FerryNode, pid: string, entry: Sent): Promise<void> {
  const home = node.table.home(pid);
  if (home === undefined || home.exit !== null) return;
  const saved: SavedHome = {
    pid,
    home: home.home,
    node: home.node,
    state: home.state,
    exit: null,
    moves: home.moves,
    previous: home.previous,
    started_unix_ms: home.started_unix_ms,
    module_sha256: home.module_sha256,
    module_name: home.module_name,
    args: home.args,
    env: home.env,
    dirs: home.dirs,
    listen: home.listen,
    memory_max_bytes: home.memory_max_bytes,
    ...(home.checkpoint_every_ms !== undefined ? { checkpoint_every_ms: home.checkpoint_every_ms } : {}),
  };
  const address = await node.addressOf(entry.keeper);
  for (let first = true; ; first = false) {
    const chunks = [];
    let room = REPLICA_CHUNK_BYTES;
    for (const stream of STREAMS) {
      // A restore may have cut the log back below what was sent: send from there.
      const from = Math.min(entry.offsets[stream], home.output.size(stream));
      const data = readRaw(path.join(node.data_dir, "output", `${pid}.${stream}`), from, Math.min(room, home.output.size(stream) - from));
      room -= data.length;
      if (data.length > 0 || from < entry.offsets[stream]) chunks.push({ stream, offset: from, data: data.toString("base64") });
    }
    if (chunks.length === 0 && !first) return;
    await requestJson(node.dialer, address, "POST", `/v1/internal/output-replica/${pid}`, { body: { record: saved, chunks }, expect: nodeNamed(entry.keeper) });
    for (const c of chunks) entry.offsets[c.stream] = c.offset + Buffer.byteLength(c.data, "base64");
    if (chunks.length === 0) return;
  }
}

function readRaw(file: string, offset: number, n: number): Buffer {
  const buf = Buffer.alloc(Math.max(0, n));
  if (buf.length === 0) return buf;
  const fd = fs.openSync(file, "r");
  try {
    const got = fs.readSync(fd, buf, 0, buf.length, offset);
    return buf.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

/** The process ended at this home: its replica goes (retention: nothing is kept of an ended process). */
export function replicaEnded(node: FerryNode, pid: string): void {
  const sent = sentOf(node);
  const entry = sent.get(pid);
  sent.delete(pid);
  if (entry !== undefined) void entry.busy.then(() => dropReplica(node, pid, entry.keeper));
}

function dropReplica(node: FerryNode, pid: string, keeper: string): void {
  void (async () => {
    await requestJson(node.dialer, await node.addressOf(keeper), "DELETE", `/v1/internal/output-replica/${pid}`, { expect: nodeNamed(keeper) });
  })().catch((err: unknown) => {
    node.log.warn({ pid, keeper, err: errorField(err) }, `could not drop the output replica of ${pid} on ${keeper}`);
  });
}

/** The keeper's side: `POST` stores a replica's chunks, `DELETE` drops it. False: not this route. */
export async function replicaRoute(node: FerryNode, method: string, what: string, pid: string, req: http.IncomingMessage, res: http.ServerResponse, peer: Identity | null): Promise<boolean> {
  if (what !== "output-replica") return false;
  if (method === "DELETE") {
    for (const f of [...STREAMS, "json" as const]) fs.rmSync(replicaPath(node, pid, f), { force: true });
    sendJson(res, 200, { pid });
    return true;
  }
  if (method !== "POST") return false;
  const body = await readRequest(req, ReplicaSchema);
  if (body.record.pid !== pid) throw new FerryError("ERR_BAD_REQUEST", `a replica of ${body.record.pid} sent for ${pid}`);
  // Only the home may say what its process wrote.
  if (peer !== null && peer.name !== body.record.home) throw new FerryError("ERR_FORBIDDEN", `node ${peer.name} is not home to ${pid}`);
  fs.mkdirSync(path.join(node.data_dir, "replicas"), { recursive: true });
  for (const c of body.chunks) {
    const file = replicaPath(node, pid, c.stream);
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    try {
      const size = fs.fstatSync(fd).size;
      if (c.offset > size) throw new FerryError("ERR_OUTPUT_GAP", `replica of ${pid} ${c.stream} at offset ${c.offset}, but it holds ${size} bytes`);
      fs.ftruncateSync(fd, c.offset);
      const data = Buffer.from(c.data, "base64");
      if (data.length > 0) fs.writeSync(fd, data, 0, data.length, c.offset);
    } finally {
      fs.closeSync(fd);
    }
  }
  const json = replicaPath(node, pid, "json");
  fs.writeFileSync(`${json}.tmp`, JSON.stringify(body.record), { mode: 0o600 });
  fs.renameSync(`${json}.tmp`, json);
  sendJson(res, 200, { pid });
  return true;
}

/**
 * Becomes home to `record` (its home and runner declared dead) and resumes
 * it here from the checkpoint this node keeps. Throws with the reason it
 * cannot (then it is marked lost); returns a reason to skip when another
 * writer moved it on first.
 */
export async function adoptHere(node: FerryNode, cluster: NodeDirectory, record: ProcessRecord): Promise<{ moves: number } | { skipped: string }> {
  const pid = record.pid;
  const json = replicaPath(node, pid, "json");
  if (!fs.existsSync(json)) throw new FerryError("ERR_NO_CHECKPOINT", `node ${node.name} keeps no replica of the output of ${pid}`);
  const saved = v.parse(SavedHomeSchema, JSON.parse(fs.readFileSync(json, "utf8")));
  const kept = node.checkpoint_store.newest(pid);
  if (kept === undefined) throw new FerryError("ERR_NO_CHECKPOINT", `node ${node.name} keeps no checkpoint of ${pid}`);
  const offsets = { stdout: kept.stdout_bytes, stderr: kept.stderr_bytes };
  for (const s of STREAMS) {
    const have = fs.existsSync(replicaPath(node, pid, s)) ? fs.statSync(replicaPath(node, pid, s)).size : 0;
    // Resuming would leave a hole in its output: the home died before it sent what the checkpoint covers.
    if (have < offsets[s]) throw new FerryError("ERR_OUTPUT_GAP", `the replica of ${pid}'s ${s} holds ${have} bytes, its checkpoint covers ${offsets[s]}`);
  }
  const t0 = performance.now();
  const moves = record.moves + 1;
  const claim = await cluster.directory.updateProcess(pid, record.moves, { home: node.name, runner: node.name, moves });
  if (!claim.ok) return { skipped: `the directory did not take ${pid}'s new home (${claim.reason}): another writer moved it on` };
  const out = path.join(node.data_dir, "output");
  fs.mkdirSync(out, { recursive: true });
  for (const s of STREAMS) {
    // Past the checkpoint: never released, written again by the resumed process.
    const to = path.join(out, `${pid}.${s}`);
    if (fs.existsSync(replicaPath(node, pid, s))) fs.copyFileSync(replicaPath(node, pid, s), to);
    else fs.writeFileSync(to, "");
    fs.truncateSync(to, offsets[s]);
  }
  const home = node.table.adoptHome({ ...saved, home: node.name, node: node.name, previous: record.runner, moves, state: "running", exit: null });
  home.output.commit(offsets);
  try {
    await restoreFromHere(node, pid, { to: node.name, moves, chain: kept.chain, seq: kept.seq, home: node.name });
  } catch (err: unknown) {
    node.table.finish(home, { kind: "lost", message: `its home and runner died, and restoring it on ${node.name} failed: ${err instanceof Error ? err.message : String(err)}` });
    throw err;
  }
  for (const f of [...STREAMS, "json" as const]) fs.rmSync(replicaPath(node, pid, f), { force: true });
  // It runs here now: its next checkpoints go to another node, and this chain is the past.
  await node.checkpoint_store.drop(pid, kept.chain).catch((err: unknown) => node.log.warn({ pid, err: errorField(err) }, `could not drop the chain ${pid} was restored from`));
  node.log.info({ pid, from: record.runner, seq: kept.seq }, `failover: ${node.name} is home to ${pid} now and resumed it from checkpoint ${kept.seq}`);
  node.events.publish({ type: "process.restored", pid, from: record.runner, to: node.name, keeper: node.name, checkpoint: kept.seq, moves, total_ms: performance.now() - t0 });
  return { moves };
}

/** Where a process's home is now if failover moved it from the dead node its pid names (null: it has not moved, or no directory). */
export async function movedHome(node: FerryNode, pid: string, named: string): Promise<string | null> {
  if (node.cluster === null) return null;
  const record = await node.cluster.directory.process(pid);
  if (record === null || record.home === named || node.cluster.isDead(record.home)) return null;
  return record.home;
}

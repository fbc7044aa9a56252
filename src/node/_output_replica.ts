/**
 * The output replica (docs/directory.md "Failover"): a home's record of a
 * checkpointed process and its output log, kept on the keeper of the
 * process's checkpoints, so that the keeper can take the home's roles over
 * when the home dies (`_home_failover.ts`).
 *
 * The replica reaches the keeper *before* the checkpoint it belongs to counts
 * as stored: the runner, after the checkpoint's pause and before it sends the
 * image, asks the home to replicate at least the output the checkpoint covers
 * (`POST /v1/internal/output-replicate/PID`, or a call when the runner is the
 * home), and the keeper stores the checkpoint only after that. So whatever
 * checkpoint a keeper holds, its replica covers that checkpoint's output: a
 * home may die at any moment without leaving a gap.
 *
 * The keeper writes each chunk at its offset, cutting what lies past it (a
 * restore rewinds output), under `DATA/replicas/`. A replica on a keeper the
 * process left is dropped once the directory names the new one; all of it
 * goes when the process ends. With a directory only: failover needs one.
 */
import fs from "node:fs";
import path from "node:path";
import type http from "node:http";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { errorField } from "../log/mod.js";
import { NodeName } from "../process_spec.js";
import { Uint } from "../validate.js";
import type { Identity } from "../trust/mod.js";
import type { FerryNode } from "./node.js";
import { readRequest, requestJson, sendJson } from "./_http.js";
import { nodeNamed } from "./_dialer.js";
import { OutputChunksSchema } from "./_internal_schemas.js";
import { savedHome, SavedHomeSchema } from "./node_state.js";
import type { StreamName } from "./output_log.js";

/** Most bytes of output sent in one replica request (its JSON, base64, stays under the 1 MiB body limit). */
const REPLICA_CHUNK_BYTES = 256 * 1024;
/** How long a home may take to bring a replica up to a checkpoint (a long log sent for the first time included). */
const REPLICATE_TIMEOUT_MS = 60_000;

/** The two streams a replica holds. */
export const STREAMS: readonly StreamName[] = ["stdout", "stderr"];

/** `POST /v1/internal/output-replica/PID` (home → keeper). */
const ReplicaSchema = v.object({ record: SavedHomeSchema, chunks: OutputChunksSchema });
/** `POST /v1/internal/output-replicate/PID` (runner → home): bring the replica on `keeper` up to these offsets. */
const ReplicateSchema = v.object({ keeper: NodeName, moves: Uint, stdout_bytes: Uint, stderr_bytes: Uint });

/** Output offsets a checkpoint covers. */
export interface Covered {
  stdout_bytes: number;
  stderr_bytes: number;
}

/** What a home has replicated of one process: up to where, on each keeper; the replication under way (one at a time, in order). */
interface Sent {
  keepers: Map<string, Record<StreamName, number>>;
  busy: Promise<void>;
}

/** Per node, per pid: what its processes' replicas hold. */
const sentBy = new WeakMap<FerryNode, Map<string, Sent>>();

function sentOf(node: FerryNode, pid: string): Sent {
  let m = sentBy.get(node);
  if (m === undefined) {
    m = new Map();
    sentBy.set(node, m);
  }
  let s = m.get(pid);
  if (s === undefined) {
    s = { keepers: new Map(), busy: Promise.resolve() };
    m.set(pid, s);
  }
  return s;
}

/** Where the keeper keeps a replica's stream or record. */
export function replicaPath(node: FerryNode, pid: string, what: StreamName | "json"): string {
  return path.join(node.data_dir, "replicas", `${pid}.${what}`);
}

/**
 * Before checkpoint of `pid` taken at move `moves` is stored on `keeper`:
 * brings the replica there up to `covered` (at least), from the runner. No
 * directory, or the keeper is the home itself: nothing to do.
 */
export async function replicateBeforeStored(node: FerryNode, pid: string, home: string, keeper: string, moves: number, covered: Covered): Promise<void> {
  if (node.cluster === null || keeper === home) return;
  if (home === node.name) {
    await replicateTo(node, pid, keeper, covered);
    return;
  }
  await requestJson(node.dialer, await node.addressOf(home), "POST", `/v1/internal/output-replicate/${pid}`, {
    body: { keeper, moves, ...covered },
    expect: nodeNamed(home),
    timeout_ms: REPLICATE_TIMEOUT_MS,
  });
}

/** The home's side: brings the replica of `pid` on `keeper` up to `covered`, after any replication of it under way. */
export function replicateTo(node: FerryNode, pid: string, keeper: string, covered: Covered): Promise<void> {
  const sent = sentOf(node, pid);
  // The earlier replication's failure is its own caller's (it awaits that promise); this one only waits its turn.
  const next = sent.busy.catch(() => undefined).then(() => sendReplica(node, pid, keeper, sent, covered));
  sent.busy = next;
  return next;
}

async function sendReplica(node: FerryNode, pid: string, keeper: string, sent: Sent, covered: Covered): Promise<void> {
  const home = node.table.home(pid);
  if (home === undefined) throw new FerryError("ERR_NO_SUCH_PROCESS", `node ${node.name} is not home to ${pid}`);
  if (home.exit !== null) throw new FerryError("ERR_PROCESS_ENDED", `${pid} has ended`);
  for (const s of STREAMS) {
    const need = s === "stdout" ? covered.stdout_bytes : covered.stderr_bytes;
    // The runner flushed its output before asking: short of it, the checkpoint would resume past a gap.
    if (home.output.size(s) < need) throw new FerryError("ERR_OUTPUT_GAP", `the home of ${pid} holds ${home.output.size(s)} bytes of its ${s}, its checkpoint covers ${need}`);
  }
  const offsets = sent.keepers.get(keeper) ?? { stdout: 0, stderr: 0 };
  // What a keeper needs to become its home: the record as the home saves it (requirements and pinning included), not ended.
  const saved = { ...savedHome(home), exit: null };
  const address = await node.addressOf(keeper);
  // Up to what the log holds now (at least `covered`), not until it stops growing: a process that writes faster than a request's round trip would keep this going, and its checkpoint waiting.
  const until: Record<StreamName, number> = { stdout: home.output.size("stdout"), stderr: home.output.size("stderr") };
  for (let first = true; ; first = false) {
    const chunks = [];
    let room = REPLICA_CHUNK_BYTES;
    for (const stream of STREAMS) {
      // A restore may have cut the log back below what was sent: send from there.
      const size = Math.min(home.output.size(stream), until[stream]);
      const from = Math.min(offsets[stream], size);
      const data = readRaw(path.join(node.data_dir, "output", `${pid}.${stream}`), from, Math.min(room, size - from));
      room -= data.length;
      if (data.length > 0 || from < offsets[stream]) chunks.push({ stream, offset: from, data: data.toString("base64") });
    }
    if (chunks.length === 0 && !first) break;
    await requestJson(node.dialer, address, "POST", `/v1/internal/output-replica/${pid}`, { body: { record: saved, chunks }, expect: nodeNamed(keeper) });
    for (const c of chunks) offsets[c.stream] = c.offset + Buffer.byteLength(c.data, "base64");
    sent.keepers.set(keeper, offsets);
    if (chunks.length === 0) break;
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

/** The home cut the output of `pid` back to `offsets` (a restore): every replica is sent again from there at most. */
export function replicaRewound(node: FerryNode, pid: string, offsets: Record<StreamName, number>): void {
  for (const o of sentOf(node, pid).keepers.values()) {
    for (const s of STREAMS) o[s] = Math.min(o[s], offsets[s]);
  }
}

/** The directory names `keeper` as the keeper of `pid`'s last checkpoint now: replicas on other keepers go. */
export function replicaKeeperIs(node: FerryNode, pid: string, keeper: string): void {
  const sent = sentOf(node, pid);
  for (const other of [...sent.keepers.keys()]) {
    if (other === keeper) continue;
    sent.keepers.delete(other);
    dropReplica(node, pid, other);
  }
}

/** The process ended at this home: its replicas go (retention: nothing is kept of an ended process). */
export function replicaEnded(node: FerryNode, pid: string): void {
  const map = sentBy.get(node);
  const sent = map?.get(pid);
  if (sent === undefined) return;
  map?.delete(pid);
  // The last replication's failure went to its caller; the replicas are dropped whichever way it ended.
  void sent.busy
    .catch(() => undefined)
    .then(() => {
      for (const keeper of sent.keepers.keys()) dropReplica(node, pid, keeper);
    });
}

function dropReplica(node: FerryNode, pid: string, keeper: string): void {
  void (async () => {
    await requestJson(node.dialer, await node.addressOf(keeper), "DELETE", `/v1/internal/output-replica/${pid}`, { expect: nodeNamed(keeper) });
  })().catch((err: unknown) => {
    node.log.warn({ pid, keeper, err: errorField(err) }, `could not drop the output replica of ${pid} on ${keeper}`);
  });
}

/** Removes the replica of `pid` this node keeps. */
export function removeReplica(node: FerryNode, pid: string): void {
  for (const f of [...STREAMS, "json" as const]) fs.rmSync(replicaPath(node, pid, f), { force: true });
}

/**
 * The keeper's side (`POST` stores chunks, `DELETE` drops the replica) and
 * the home's (`output-replicate`: a runner asks it to bring a replica up to
 * a checkpoint). False: not this route.
 */
export async function replicaRoute(node: FerryNode, method: string, what: string, pid: string, req: http.IncomingMessage, res: http.ServerResponse, peer: Identity | null): Promise<boolean> {
  if (what === "output-replicate" && method === "POST") {
    const body = await readRequest(req, ReplicateSchema);
    const home = node.table.home(pid);
    if (home === undefined) throw new FerryError("ERR_NO_SUCH_PROCESS", `node ${node.name} is not home to ${pid}`);
    // Only the node that runs it (or one a move the home has not recorded yet took it to) may ask.
    if (peer !== null && !(body.moves > home.moves || (body.moves === home.moves && peer.name === home.node))) {
      throw new FerryError("ERR_NOT_RUNNER", `${pid} runs on ${home.node} (move ${home.moves}); ${peer.name} at move ${body.moves} cannot have its output replicated`);
    }
    await replicateTo(node, pid, body.keeper, body);
    sendJson(res, 200, { pid });
    return true;
  }
  if (what !== "output-replica") return false;
  if (method === "DELETE") {
    removeReplica(node, pid);
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
      if (data.length > 0) writeAt(fd, data, c.offset);
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

/** Writes all of `data` at `offset`. */
function writeAt(fd: number, data: Uint8Array, offset: number): void {
  for (let at = 0; at < data.length; ) at += fs.writeSync(fd, data, at, data.length - at, offset + at);
}

/**
 * `ferry logs` of a process whose home does not answer (docs/directory.md
 * "Failover"): served from the replica of its output that the keeper of its
 * checkpoints holds (`_output_replica.ts`), before a takeover, and carried on
 * from the keeper's own log once the keeper becomes its home.
 *
 * What a reader is shown is what the keeper's newest stored checkpoint
 * covers, never more: output commit's rule (docs/checkpoints.md). A takeover
 * resumes the process from that very checkpoint, its log cut at those
 * offsets, so a reader who saw the replica before the takeover and the
 * adopted log after it sees one stream, with no gap and nothing twice. The
 * rule holds while the home is only cut off, too: output a stored checkpoint
 * covers is never taken back.
 *
 * - Any node: the home is declared dead, or does not answer a forwarded
 *   request: the directory names the keeper of the last checkpoint, and the
 *   request goes there (`GET /v1/internal/output-replica/PID`, same query).
 * - The keeper: the replica up to its newest checkpoint; with `follow`, it
 *   then waits for the takeover here (and relays the adopted log from the
 *   same offsets until the end), or for the directory to say the process was
 *   lost (its `exit`). Any other change of its record (a new home elsewhere,
 *   a newer checkpoint recorded by a home that lives, another end) ends the
 *   answer without `exit`: the client asks again, and is answered by where
 *   the process is now.
 */
import fs from "node:fs";
import type http from "node:http";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { errorField } from "../log/mod.js";
import { parse } from "../validate.js";
import type { ProcessRecord } from "../directory/mod.js";
import { statusOfRecord } from "./cluster_directory.js";
import { nodeNamed } from "./_dialer.js";
import { forward } from "./_http.js";
import type { FerryNode } from "./node.js";
import { OutputQuerySchema, queryOf } from "./_api_schemas.js";
import { onAdopted } from "./_home_failover.js";
import { replicaPath, STREAMS } from "./_output_replica.js";
import { relayLog, sendOutput, sseEvent, startOutputStream, type Offsets } from "./_output_stream.js";
import { SavedHomeSchema } from "./node_state.js";

/** Largest piece of a replica read at once. */
const REPLICA_READ_BYTES = 64 * 1024;

/**
 * `GET /v1/processes/PID/output` at a node that is not the home, when the
 * home `home` (the one the pid names) is declared dead or did not answer:
 * answered by the home the directory names now, or from the replica of the
 * keeper of the last checkpoint. With a directory only.
 */
export async function outputWithoutHome(node: FerryNode, pid: string, home: string, url: URL, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const cluster = node.cluster;
  if (cluster === null) throw new FerryError("ERR_INTERNAL", "output from a replica needs a cluster directory");
  const record = await cluster.directory.process(pid);
  if (record === null) throw new FerryError("ERR_NO_SUCH_PROCESS", `no process ${pid} (its home ${home} does not answer, and the directory has no record of it)`);
  // Failover gave it a new home, which this node has not heard of as such yet: that node answers.
  if (record.home !== home && record.home !== node.name && !cluster.isDead(record.home)) {
    return forward(node.dialer, req, res, await node.addressOf(record.home), nodeNamed(record.home), null);
  }
  const keeper = record.last_checkpoint?.node;
  if (keeper === undefined || cluster.isDead(keeper)) {
    const why = keeper === undefined ? "it has no checkpoint, so no node keeps a replica of its output" : `node ${keeper}, which keeps the replica of its output, is dead too`;
    throw new FerryError("ERR_PEER_UNREACHABLE", `the output of ${pid} is kept at its home ${record.home}, which does not answer; ${why}`);
  }
  if (keeper === node.name) return serveReplicaOutput(node, pid, url, req, res);
  req.url = `/v1/internal/output-replica/${encodeURIComponent(pid)}${url.search}`;
  forward(node.dialer, req, res, await node.addressOf(keeper), nodeNamed(keeper), null);
}

/** The replica this node keeps of `pid`: whose home it was, and the offsets its newest checkpoint covers. */
function keptReplica(node: FerryNode, pid: string): { home: string; covered: Offsets } | null {
  const json = replicaPath(node, pid, "json");
  const kept = node.checkpoint_store.newest(pid);
  if (kept === undefined || !fs.existsSync(json)) return null;
  const saved = v.parse(SavedHomeSchema, JSON.parse(fs.readFileSync(json, "utf8")));
  const size = (s: "stdout" | "stderr"): number => (fs.existsSync(replicaPath(node, pid, s)) ? fs.statSync(replicaPath(node, pid, s)).size : 0);
  // A replica short of its checkpoint (never stored so) shows what it holds: a takeover would refuse it and mark the process lost.
  return { home: saved.home, covered: { stdout: Math.min(kept.stdout_bytes, size("stdout")), stderr: Math.min(kept.stderr_bytes, size("stderr")) } };
}

/**
 * The keeper's side, `GET /v1/internal/output-replica/PID` with the query of
 * `GET /v1/processes/PID/output`: the replica's output up to what the newest
 * checkpoint covers, then (with follow) the takeover's log (module comment).
 */
export async function serveReplicaOutput(node: FerryNode, pid: string, url: URL, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const query = parse(OutputQuerySchema, queryOf(url), "query");
  const offsets: Offsets = { stdout: query.stdout, stderr: query.stderr };
  const follow = query.follow === "1";
  const record = (await node.cluster?.directory.process(pid)) ?? null;
  // Taken over here already: its log is the whole story.
  const adopted = node.table.home(pid);
  if (adopted !== undefined) {
    startOutputStream(res);
    return relayLog(adopted.output, () => adopted.exit, offsets, follow, req, res);
  }
  const kept = keptReplica(node, pid);
  if (kept === null || record === null) throw new FerryError("ERR_NO_SUCH_PROCESS", `node ${node.name} keeps no replica of the output of ${pid}`);
  const lost = (r: ProcessRecord): boolean => r.state === "lost" && node.cluster?.isDead(kept.home) === true && (r.home === kept.home || r.home === node.name);
  if (record.state !== "running" && !lost(record)) {
    // Its home released all of its output at the end; the replica holds only what a checkpoint covered.
    throw new FerryError("ERR_PEER_UNREACHABLE", `${pid} has ended (${record.state}) and its whole output is kept at its home ${record.home}, which does not answer; node ${node.name} holds only what its last checkpoint covers`);
  }
  startOutputStream(res);
  sendReplica(node, pid, kept.covered, offsets, res);
  if (lost(record)) {
    sseEvent(res, "exit", { status: statusOfRecord(record) });
    res.end();
    return;
  }
  if (!follow) {
    res.end();
    return;
  }
  const seen = record.last_checkpoint;
  let done = false;
  const stop = (): void => {
    done = true;
    offAdopted();
    offRecord();
  };
  const offAdopted = onAdopted(node, (home) => {
    if (home.pid !== pid || done) return;
    stop();
    // The log starts at the offsets this checkpoint (or a newer one) covers: at or past what was sent.
    relayLog(home.output, () => home.exit, offsets, true, req, res);
  });
  const changed = (r: ProcessRecord): void => {
    if (r.pid !== pid || done) return;
    if (lost(r)) {
      stop();
      sseEvent(res, "exit", { status: statusOfRecord(r) });
      res.end();
      return;
    }
    // Claimed here: the adoption follows.
    if (r.state === "running" && r.home === node.name) return;
    if (r.state === "running" && r.home === kept.home && r.last_checkpoint?.seq === seen?.seq && r.last_checkpoint?.node === seen?.node) return;
    stop();
    res.end();
  };
  const offRecord = node.cluster?.membership.onProcess(changed) ?? ((): void => undefined);
  req.on("close", () => {
    if (!done) stop();
  });
  // A change between the first read and watching would be missed: read it once more.
  node.cluster?.directory.process(pid).then(
    (r) => {
      if (r !== null) changed(r);
    },
    (err: unknown) => node.log.warn({ pid, err: errorField(err) }, `could not read the directory's record of ${pid} for a reader of its replica`),
  );
}

/** Sends the replica's bytes of each stream from the reader's offsets up to `covered`. */
function sendReplica(node: FerryNode, pid: string, covered: Offsets, offsets: Offsets, res: http.ServerResponse): void {
  for (const stream of STREAMS) {
    if (offsets[stream] >= covered[stream]) continue;
    const fd = fs.openSync(replicaPath(node, pid, stream), "r");
    try {
      while (offsets[stream] < covered[stream]) {
        const buf = Buffer.alloc(Math.min(REPLICA_READ_BYTES, covered[stream] - offsets[stream]));
        const got = fs.readSync(fd, buf, 0, buf.length, offsets[stream]);
        // The file was cut under the read (a home that lives rewound it): the reader asks again.
        if (got === 0) break;
        sendOutput(res, offsets, stream, offsets[stream], buf.subarray(0, got));
      }
    } finally {
      fs.closeSync(fd);
    }
  }
}

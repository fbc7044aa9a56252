/**
 * The control API's answers from the cluster directory, for processes whose
 * home is dead (docs/directory.md, "When a node dies"): `ps` lists them, and
 * a look or a `wait` is answered from their record rather than failing or
 * hanging on a home that will not answer.
 */
import type http from "node:http";
import { FerryError } from "../errors.js";
import { errorField } from "../log/mod.js";
import { describeRecord, statusOfRecord } from "./cluster_directory.js";
import { pidHome } from "./names.js";
import type { FerryNode } from "./node.js";
import { forward, requestJson, sendJson } from "./_http.js";
import { nodeNamed } from "./_dialer.js";

/**
 * The processes the directory records whose home is dead and so could not
 * list them (with a directory only): `ps` shows them, `lost` or running
 * elsewhere, rather than leaving them out.
 */
export async function fromDirectory(node: FerryNode, listed: unknown[]): Promise<Record<string, unknown>[]> {
  const cluster = node.cluster;
  if (cluster === null) return [];
  const seen = new Set(listed.map((p) => (p !== null && typeof p === "object" ? (p as { pid?: unknown }).pid : undefined)));
  try {
    const records = await cluster.directory.processes();
    return records.filter((r) => !seen.has(r.pid) && cluster.isDead(r.home)).map(describeRecord);
  } catch (err: unknown) {
    node.log.warn({ err: errorField(err) }, "could not read the directory for the processes of dead homes");
    return [];
  }
}

/** `GET /v1/processes/PID` or `.../wait` for a process whose home is dead, from the directory. */
export async function answerFromDirectory(node: FerryNode, pid: string, sub: string | undefined, res: http.ServerResponse): Promise<void> {
  const cluster = node.cluster;
  if (cluster === null) return;
  const home = pidHome(pid);
  if (sub === undefined) {
    const record = await cluster.directory.process(pid);
    if (record === null) throw new FerryError("ERR_NO_SUCH_PROCESS", `no process ${pid} (its home ${home} is dead, and the directory has no record of it)`);
    return sendJson(res, 200, describeRecord(record));
  }
  const gone = new AbortController();
  res.on("close", () => gone.abort());
  const record = await cluster.waitEnded(pid, gone.signal);
  if (gone.signal.aborted) return;
  if (record === null) throw new FerryError("ERR_NO_SUCH_PROCESS", `no process ${pid} (its home ${home} is dead, and the directory has no record of it)`);
  sendJson(res, 200, { status: statusOfRecord(record) });
}

/** How long a kill waits for a keeper to take a dead home's place before it gives up: detection, the claim and the restore. */
const TAKEOVER_WAIT_MS = 60_000;

/** How long a kill sent to a process's runner waits for its end to reach the directory: the runner's report goes there once the home is declared dead. */
const END_WAIT_MS = 60_000;

/**
 * `DELETE /v1/processes/PID` (kill) for a process whose home is dead or does
 * not answer (docs/directory.md, "When a node dies"):
 * - checkpointed: the keeper of its last checkpoint takes the home over; the
 *   kill waits for that and goes to the new home;
 * - not checkpointed: nothing takes the home over; it runs on where it ran,
 *   so its runner is told to stop it, and the end it records in the
 *   directory (its home cannot take it) is the answer.
 * An ended process answers with its status, as a kill of it at its home does.
 */
export async function killWithoutHome(node: FerryNode, pid: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const cluster = node.cluster;
  if (cluster === null) throw new FerryError("ERR_PEER_UNREACHABLE", `the home of ${pid} does not answer, and this node has no cluster directory to find ${pid} by`);
  const home = pidHome(pid);
  const gone = new AbortController();
  res.on("close", () => gone.abort());
  let record = await cluster.directory.process(pid);
  if (record === null) throw new FerryError("ERR_NO_SUCH_PROCESS", `no process ${pid} (its home ${home} does not answer, and the directory has no record of it)`);
  if (record.state === "running" && record.home === home && record.last_checkpoint !== null) {
    const signal = AbortSignal.any([gone.signal, AbortSignal.timeout(TAKEOVER_WAIT_MS)]);
    record = await cluster.waitRecord(pid, (r) => r.state !== "running" || (r.home !== home && !cluster.isDead(r.home)), signal);
    if (gone.signal.aborted) return;
    if (record === null || (record.state === "running" && record.home === home)) {
      throw new FerryError("ERR_PEER_UNREACHABLE", `the home of ${pid}, ${home}, does not answer, and no node took its place within ${TAKEOVER_WAIT_MS / 1000} s; try again`);
    }
  }
  if (record.state !== "running") return sendJson(res, 200, { pid, status: statusOfRecord(record) });
  if (record.home !== home) {
    // Taken over: the new home kills it and answers with its end.
    const moved = record.home;
    return forward(node.dialer, req, res, await node.addressOf(moved), nodeNamed(moved), null);
  }
  const runner = record.runner;
  if (runner === home || cluster.isDead(runner)) throw new FerryError("ERR_PEER_UNREACHABLE", `${pid} ran on ${runner}, which does not answer; it will be marked lost once that node is declared dead`);
  if (runner === node.name) await node.table.kill(pid);
  else await requestJson(node.dialer, await node.addressOf(runner), "DELETE", `/v1/internal/processes/${pid}`, { expect: nodeNamed(runner) });
  const ended = await cluster.waitEnded(pid, AbortSignal.any([gone.signal, AbortSignal.timeout(END_WAIT_MS)]));
  if (gone.signal.aborted) return;
  if (ended === null || ended.state === "running") {
    throw new FerryError("ERR_PEER_UNREACHABLE", `${pid} was stopped on ${runner}, but its end has not reached the directory within ${END_WAIT_MS / 1000} s (its home ${home} does not answer and is not declared dead yet)`);
  }
  sendJson(res, 200, { pid, status: statusOfRecord(ended) });
}

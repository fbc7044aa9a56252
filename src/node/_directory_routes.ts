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
import { sendJson } from "./_http.js";

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

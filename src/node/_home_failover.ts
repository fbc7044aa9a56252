/**
 * Failover of a process's home (issue 11 item 5, docs/directory.md
 * "Failover"): the output log and the home's record are kept with the
 * checkpoints (`_output_replica.ts`), so that when the home dies, the keeper
 * of the last checkpoint becomes the process's home and resumes it.
 *
 * - **Adoption.** When the directory declares the home dead, the keeper of
 *   the process's last checkpoint claims it in the directory
 *   (compare-and-set: home and runner itself, the next move), copies the
 *   replica, cut at the offsets the checkpoint covers, into its own output
 *   log, takes the home record, and restores the process on itself,
 *   reporting to itself. Any node then forwards `wait`, `logs`, `kill` and
 *   looks to the home the directory names ({@link movedHome}).
 * - **Not carried over:** listening sockets (they were the dead home's: a
 *   client's connection is reset and the addresses are gone).
 */
import fs from "node:fs";
import path from "node:path";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { errorField } from "../log/mod.js";
import type { ProcessRecord } from "../directory/mod.js";
import type { FerryNode } from "./node.js";
import { endChange, type NodeDirectory } from "./cluster_directory.js";
import type { ProcessStatus } from "./_records.js";
import type { HomeRecord } from "./_records.js";
import { restoreFromHere } from "./_checkpoint_routes.js";
import { SavedHomeSchema } from "./node_state.js";
import { removeReplica, replicaPath, STREAMS } from "./_output_replica.js";
import { fenceRunner } from "./_fence.js";

/**
 * Becomes home to `record` (its home and runner declared dead) and resumes
 * it here from the checkpoint this node keeps. Throws with the reason it
 * cannot (then it is marked lost); returns a reason to skip when another
 * writer moved it on first.
 */
export async function adoptHere(node: FerryNode, cluster: NodeDirectory, record: ProcessRecord, heard_at_ms?: number): Promise<{ moves: number } | { skipped: string }> {
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
  const fencing_at = performance.now();
  // Its runner may live (only its home died), or be only cut off: its copy goes before this one resumes.
  await fenceRunner(node, record.runner, pid, moves, node.name);
  const adopting_at = performance.now();
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
  // Readers of the replica here go on from this log, at the same offsets.
  for (const listener of adoptionListeners(node)) {
    try {
      listener(home);
    } catch (err: unknown) {
      // A reader's trouble is not the takeover's: it goes on.
      node.log.warn({ pid, err: errorField(err) }, `a reader of ${pid}'s output failed when ${node.name} became its home`);
    }
  }
  let restored: Awaited<ReturnType<typeof restoreFromHere>>;
  try {
    restored = await restoreFromHere(node, pid, { to: node.name, moves, chain: kept.chain, seq: kept.seq, home: node.name });
  } catch (err: unknown) {
    node.table.finish(home, { kind: "lost", message: `its home and runner died, and restoring it on ${node.name} failed: ${err instanceof Error ? err.message : String(err)}` });
    throw err;
  }
  removeReplica(node, pid);
  // It runs here now: its next checkpoints go to another node, and this chain is the past.
  await node.checkpoint_store.drop(pid, kept.chain).catch((err: unknown) => node.log.warn({ pid, err: errorField(err) }, `could not drop the chain ${pid} was restored from`));
  const phases_ms = {
    before: { ...(heard_at_ms !== undefined ? { records: t0 - heard_at_ms } : {}), claim: fencing_at - t0, fence: adopting_at - fencing_at },
    // Taking the replica and the home record over, here.
    ask_keeper: performance.now() - adopting_at - restored.total_ms,
    ...restored.phases_ms,
    record: 0,
  };
  const prepared_ahead = restored.prepared_ahead;
  node.log.info({ pid, from: record.runner, seq: kept.seq, prepared_ahead, phases_ms }, `failover: ${node.name} is home to ${pid} now and resumed it from checkpoint ${kept.seq}`);
  node.events.publish({ type: "process.restored", pid, from: record.runner, to: node.name, keeper: node.name, checkpoint: kept.seq, moves, total_ms: performance.now() - t0, prepared_ahead, phases_ms });
  return { moves };
}

/** Per node, who is told when it becomes home to a process by failover. */
const adoptionsBy = new WeakMap<FerryNode, Set<(home: HomeRecord) => void>>();

function adoptionListeners(node: FerryNode): Set<(home: HomeRecord) => void> {
  let set = adoptionsBy.get(node);
  if (set === undefined) {
    set = new Set();
    adoptionsBy.set(node, set);
  }
  return set;
}

/**
 * Calls `listener` each time this node becomes home to a process by
 * failover, once its log holds (and releases) what the checkpoint covers
 * and before the process resumes; returns the function that stops it.
 */
export function onAdopted(node: FerryNode, listener: (home: HomeRecord) => void): () => void {
  const set = adoptionListeners(node);
  set.add(listener);
  return () => void set.delete(listener);
}

/** Where a process's home is now if failover moved it from the dead node its pid names (null: it has not moved, or no directory). */
export async function movedHome(node: FerryNode, pid: string, named: string): Promise<string | null> {
  if (node.cluster === null) return null;
  const record = await node.cluster.directory.process(pid);
  if (record === null || record.home === named || node.cluster.isDead(record.home)) return null;
  return record.home;
}

/**
 * Whether the home of `pid` (running here at move `moves`) is declared dead
 * and nothing takes it over: the process has no checkpoint, so no keeper
 * holds its output or adopts it. Its output and its end then have nowhere
 * to go but the directory.
 */
export async function homeLost(node: FerryNode, pid: string, home: string, moves: number): Promise<boolean> {
  const cluster = node.cluster;
  if (cluster === null || !cluster.isDead(home)) return false;
  const record = await cluster.directory.process(pid);
  // A keeper takes the home over, and stops this copy before it resumes its own: the end is that copy's to report.
  return record !== null && record.state === "running" && record.home === home && record.runner === node.name && record.moves === moves && record.last_checkpoint === null;
}

/**
 * The end of a process whose home is declared dead, reported by its runner
 * (this node) to the directory, because nothing takes that home over: it has
 * no checkpoint, so no keeper holds its output or adopts it. Then `wait`,
 * `ps` and `kill` on any node answer from the directory, rather than a
 * process that ended showing as running forever. Resolves to whether the
 * directory took it; false (the runner keeps reporting to the home, which may
 * come back) while the home is not declared dead, or a takeover is due.
 */
export async function endedWithoutHome(node: FerryNode, pid: string, home: string, moves: number, status: ProcessStatus): Promise<boolean> {
  const cluster = node.cluster;
  if (cluster === null || !(await homeLost(node, pid, home, moves))) return false;
  const result = await cluster.directory.updateProcess(pid, moves, endChange(status));
  if (!result.ok) return false;
  node.log.warn({ pid, home, status }, `${pid} ended on ${node.name} while its home ${home} is dead: its end is recorded in the directory (its output before stayed with its home)`);
  return true;
}

/**
 * Failover (issue 11 item 5, docs/directory.md "Failover"): when the
 * cluster directory declares a node dead, each checkpointed process that ran
 * there is resumed from its last checkpoint on a live node, with the same
 * pid, as its next move. It subscribes to {@link NodeDirectory.onNodeDead},
 * which hands it the records still `running` on the dead node that have a
 * checkpoint (what has none is marked `lost` before it is called).
 *
 * Who acts: the process's home if it is alive (it keeps the output log, the
 * checkpoint records and the exit status, and runs the restore primitive);
 * else, when the home died with the runner, the keeper of its last
 * checkpoint, which holds a replica of its output log and takes over the
 * home's roles (`_home_failover.ts`); else the first alive member by name,
 * which marks it `lost` with the reason, never silently dropped. The move
 * is claimed in the directory first (compare-and-
 * set from the move counter the dead runner had to the next): a second
 * writer, or a restore an operator started meanwhile, finds the counter
 * moved on and backs off, so exactly one copy resumes.
 */
import { FerryError } from "../errors.js";
import { errorField } from "../log/mod.js";
import { REASON_CHARS_MAX, type ProcessRecord } from "../directory/mod.js";
import type { FerryNode } from "./node.js";
import type { NodeDeadEvent, NodeDirectory } from "./cluster_directory.js";
import type { CheckpointRecord } from "./_checkpoint_records.js";
import { restoreProcess, type RestoreResult } from "./_checkpoint_routes.js";
import { adoptHere } from "./_home_failover.js";
import { replicaKeeperIs } from "./_output_replica.js";
import { fenceRunner, startFencing } from "./_fence.js";
import { startPreparing } from "./_local_restore.js";

/** Subscribes node `node` to the deaths `cluster` declares (before it joins: no death goes unseen), and fences its own processes (`_fence.ts`). */
export function startFailover(node: FerryNode, cluster: NodeDirectory): void {
  cluster.onNodeDead.add(async (event) => {
    await failOver(node, cluster, event);
  });
  startFencing(node, cluster);
  // As a keeper: a restore is prepared while a silent runner's lease runs out (`_local_restore.ts`).
  startPreparing(node, cluster);
}

/**
 * The home's report of a checkpoint recorded (docs/checkpoints.md step 7)
 * reaches the directory as the process's `last_checkpoint`, so any node can
 * see what failover may resume it from. Resolves once the directory has it
 * (or gave up): only then may what an older keeper holds go, since until
 * then failover may look for it there.
 */
export async function checkpointToDirectory(node: FerryNode, record: CheckpointRecord): Promise<void> {
  if (node.cluster === null) return;
  await node.cluster.checkpointed(record.pid, record.moves, { node: record.keeper, seq: record.seq, moves: record.moves });
  replicaKeeperIs(node, record.pid, record.keeper);
}

/** What this node did for one process of a dead node. */
export type FailoverOutcome = { pid: string; restored: RestoreResult } | { pid: string; adopted: number } | { pid: string; lost: string } | { pid: string; skipped: string };

/** Acts on the checkpointed processes of the dead node `event.name` this node is responsible for. */
export async function failOver(node: FerryNode, cluster: NodeDirectory, event: NodeDeadEvent): Promise<FailoverOutcome[]> {
  const alive = cluster.membership
    .members()
    .filter((m) => m.state === "alive" && m.name !== event.name)
    .map((m) => m.name)
    .sort();
  const outcomes: FailoverOutcome[] = [];
  // One at a time: each restore rebuilds a whole image on its keeper; several at once would only compete for it.
  for (const record of event.checkpointed) {
    // The home acts if it lives; else the keeper of the last checkpoint, which holds the output replica too; else the first alive member marks it lost.
    const keeper = record.last_checkpoint?.node;
    const responsible = alive.includes(record.home) ? record.home : keeper !== undefined && alive.includes(keeper) ? keeper : alive[0];
    if (responsible !== node.name) continue;
    let outcome: FailoverOutcome;
    try {
      outcome = record.home === node.name ? await resume(node, cluster, event, record) : await homeGone(node, cluster, event, record);
    } catch (err: unknown) {
      node.log.error({ pid: record.pid, peer: event.name, err: errorField(err) }, `failover of ${record.pid} failed`);
      outcome = await markLost(node, cluster, record, record.moves, `failover from node ${event.name} (declared dead: ${event.reason}) failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    outcomes.push(outcome);
  }
  // Their home died, their runner lives: the keeper of the last checkpoint becomes their home.
  for (const record of event.orphaned) {
    const keeper = record.last_checkpoint?.node;
    if (keeper !== node.name) continue;
    let outcome: FailoverOutcome;
    try {
      if (record.runner === node.name) {
        // It runs on its keeper (restored here, no newer checkpoint elsewhere yet): this node has no chain of it to take it over from.
        outcome = { pid: record.pid, skipped: `${record.pid} runs on ${node.name}, which keeps no newer checkpoint of it` };
      } else {
        const adopted = await adoptHere(node, cluster, record, event.heard_at_ms);
        outcome = "skipped" in adopted ? { pid: record.pid, skipped: adopted.skipped } : { pid: record.pid, adopted: adopted.moves };
      }
    } catch (err: unknown) {
      node.log.error({ pid: record.pid, peer: event.name, err: errorField(err) }, `taking over the home of ${record.pid} failed`);
      outcome = await markLost(node, cluster, record, record.moves, `its home ${event.name} was declared dead (${event.reason}) and taking it over on ${node.name} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    outcomes.push(outcome);
  }
  return outcomes;
}

/** This node is the home: claim the next move in the directory, then restore on the checkpoint's keeper. */
async function resume(node: FerryNode, cluster: NodeDirectory, event: NodeDeadEvent, record: ProcessRecord): Promise<FailoverOutcome> {
  const pid = record.pid;
  const home = node.table.home(pid);
  if (home === undefined || home.exit !== null) return { pid, skipped: `${pid} has ended at its home` };
  if (home.node !== event.name || home.moves !== record.moves) {
    // The home has heard of a move the directory has not (or the reverse): the record is not the process's state.
    return { pid, skipped: `${pid} is recorded at its home on ${home.node} (move ${home.moves}), not on ${event.name} (move ${record.moves})` };
  }
  const last = node.checkpoint_records.last(pid);
  if (last === undefined) return markLost(node, cluster, record, record.moves, `node ${event.name} was declared dead (${event.reason}) while ${pid} ran there; its home has no record of a checkpoint to restart from`);
  // The keeper holds the chain: resuming there sends the image nowhere over the network.
  const to = last.keeper;
  const claiming_at = performance.now();
  const claim = await cluster.directory.updateProcess(pid, record.moves, { runner: to, moves: record.moves + 1 });
  if (!claim.ok) return { pid, skipped: `the directory did not take the restore of ${pid} (${claim.reason}): another writer moved it on` };
  try {
    const fencing_at = performance.now();
    // Declared dead, it may only be cut off: its copy goes (it holds it by itself if it cannot hear this).
    await fenceRunner(node, event.name, pid, record.moves + 1, to);
    // From hearing of the death: the directory's records of what ran there, the claim, the fence.
    const before_ms = { records: claiming_at - event.heard_at_ms, claim: fencing_at - claiming_at, fence: performance.now() - fencing_at };
    const restored = await restoreProcess(node, home, { to, claimed: true, before_ms });
    node.log.info({ pid, from: event.name, to, total_ms: restored.total_ms, phases_ms: restored.phases_ms }, `failover: ${pid} resumed on ${to} from checkpoint ${restored.seq}`);
    return { pid, restored };
  } catch (err: unknown) {
    const why = err instanceof FerryError ? `${err.code}: ${err.message}` : String(err);
    return markLost(node, cluster, { ...record, moves: record.moves + 1 }, record.moves + 1, `node ${event.name} was declared dead (${event.reason}) and ${pid} could not be restored from its checkpoint on ${to}: ${why}`);
  }
}

/**
 * The home died with the runner: the keeper of its last checkpoint, which
 * holds the replica of its output log, becomes its home and resumes it
 * (`_home_failover.ts`); any other node marks it lost.
 */
async function homeGone(node: FerryNode, cluster: NodeDirectory, event: NodeDeadEvent, record: ProcessRecord): Promise<FailoverOutcome> {
  const pid = record.pid;
  if (record.home === event.name && record.last_checkpoint?.node === node.name) {
    const adopted = await adoptHere(node, cluster, record, event.heard_at_ms);
    if ("skipped" in adopted) return { pid, skipped: adopted.skipped };
    return { pid, adopted: adopted.moves };
  }
  const why =
    record.home === event.name
      ? `node ${event.name}, its home and runner, was declared dead (${event.reason}), and the keeper of its last checkpoint (${record.last_checkpoint?.node ?? "none"}) is not alive to take over`
      : `node ${event.name} was declared dead (${event.reason}) while ${pid} ran there, and its home ${record.home} is dead too`;
  return markLost(node, cluster, record, record.moves, why);
}

/** Marks `record` lost (compare-and-set at `moves`) in the directory and, if this node is its home, there. */
async function markLost(node: FerryNode, cluster: NodeDirectory, record: ProcessRecord, moves: number, why: string): Promise<FailoverOutcome> {
  const reason = why.slice(0, REASON_CHARS_MAX);
  const result = await cluster.directory.updateProcess(record.pid, moves, { state: "lost", reason });
  const home = node.table.home(record.pid);
  if (home !== undefined && home.exit === null) node.table.finish(home, { kind: "lost", message: reason });
  if (!result.ok) node.log.warn({ pid: record.pid, reason: result.reason }, `the directory did not take the loss of ${record.pid} (${result.reason})`);
  node.log.warn({ pid: record.pid }, `${record.pid} lost: ${reason}`);
  return { pid: record.pid, lost: reason };
}

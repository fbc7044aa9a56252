/**
 * Fencing (docs/directory.md "Fencing"): a node the cluster has declared
 * dead but that still lives (cut off from the directory, stopped, starved of
 * CPU) must not keep running a process the cluster has resumed elsewhere.
 * Exactly one copy runs:
 *
 * - **Its lease runs out: it holds its processes.** A node whose lease may
 *   have run out ({@link Membership.leaseLeftMs}: counted from when its last
 *   successful renewal was sent, so never later than the directory counts)
 *   holds every guest it runs at its next safe point. From then on the
 *   cluster may resume them elsewhere, and these copies write nothing more.
 * - **When it holds a lease again** it asks the directory about each: a
 *   process still recorded as running here, at the move this copy is at,
 *   goes on; any other (moved on, taken over, marked lost or ended) is
 *   dropped without a word to its home, which has heard of its successor.
 * - **The directory moved a process on** (a failover claimed its next move
 *   while this copy runs): the copy is dropped as soon as this node sees the
 *   record, through its watch, or when the node that claimed it says so
 *   (`POST /v1/internal/fence/PID {moves}`; failover asks the old runner
 *   before it resumes the process).
 */
import * as v from "valibot";
import { errorField } from "../log/mod.js";
import { NodeName } from "../process_spec.js";
import { Uint } from "../validate.js";
import type { ProcessRecord } from "../directory/mod.js";
import type { FerryNode } from "./node.js";
import type { NodeDirectory } from "./cluster_directory.js";
import type { HomeRecord } from "./_records.js";
import { requestJson } from "./_http.js";
import { nodeNamed } from "./_dialer.js";

/** `POST /v1/internal/fence/PID`: move `moves` of the process took it to `to`; a copy here at an earlier move goes. */
export const FenceSchema = v.object({ moves: Uint, to: NodeName });

/** Lease checks per lease length: a node holds its guests within an eighth of a lease of the moment it may have been declared dead. */
const CHECKS_PER_LEASE = 8;
/** How long failover waits for the old runner to answer a fence: it may be cut off, and then it holds its guests by itself. */
export const FENCE_TIMEOUT_MS = 2_000;

/** Drops this node's copy of `pid` (if it runs here at a move before `moves`): the process runs on `to` now. True if one was dropped. */
export async function dropCopy(node: FerryNode, pid: string, moves: number, to: string, why: string): Promise<boolean> {
  const running = node.table.running(pid);
  if (running === undefined || running.moves >= moves || running.migrating) return false;
  // Forgotten first: its end is then not reported to its home (the process goes on elsewhere).
  node.table.release(pid);
  node.links.moved(pid, to);
  running.net.detach();
  node.log.warn({ pid, moves: running.moves, now: moves, to }, `dropped this node's copy of ${pid}: ${why}`);
  await running.proc.terminate();
  return true;
}

/** Starts fencing this node's processes against the directory `cluster` (see the module comment). */
export function startFencing(node: FerryNode, cluster: NodeDirectory): void {
  const held = new Set<string>();
  let checking = false;
  cluster.membership.onProcess((record) => {
    void dropIfMovedOn(node, record);
  });
  const check = async (): Promise<void> => {
    if (cluster.stopping) return void clearInterval(timer);
    if (checking) return;
    checking = true;
    try {
      if (cluster.membership.leaseLeftMs() <= 0) {
        for (const r of node.table.runningAll()) {
          if (held.has(r.pid)) continue;
          held.add(r.pid);
          r.proc.fence(true);
          node.log.warn({ pid: r.pid }, `this node's lease may have run out: ${r.pid} is held until the directory says it still runs here`);
        }
        return;
      }
      for (const pid of [...held]) {
        const running = node.table.running(pid);
        if (running === undefined) {
          held.delete(pid);
          continue;
        }
        const record = await cluster.directory.process(pid);
        held.delete(pid);
        if (record !== null && record.state === "running" && record.runner === node.name && record.moves === running.moves) {
          running.proc.fence(false);
          node.log.info({ pid }, `this node holds a lease again and the directory says ${pid} runs here: it goes on`);
        } else {
          const to = record?.runner ?? node.name;
          await dropCopy(node, pid, Math.max(running.moves + 1, record?.moves ?? 0), to, `the directory records it ${record === null ? "nowhere" : `${record.state} on ${record.runner} at move ${record.moves}`}`);
        }
      }
    } catch (err: unknown) {
      // The directory is away again: what is held stays held; the next check asks again.
      node.log.warn({ err: errorField(err) }, "could not check this node's held processes against the directory");
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void check(), Math.max(10, Math.floor(cluster.membership.ttl_ms / CHECKS_PER_LEASE)));
  timer.unref();
}

/** A record the directory changed: a copy here that it moved on from goes. */
async function dropIfMovedOn(node: FerryNode, record: ProcessRecord): Promise<void> {
  const running = node.table.running(record.pid);
  if (running === undefined || record.runner === node.name || record.moves <= running.moves) return;
  try {
    await dropCopy(node, record.pid, record.moves, record.runner, `the directory records move ${record.moves} of it to ${record.runner}`);
  } catch (err: unknown) {
    node.log.error({ pid: record.pid, err: errorField(err) }, `could not drop this node's copy of ${record.pid}`);
  }
}

/**
 * Failover's side: tells `runner` (declared dead, perhaps only cut off) that
 * move `moves` takes `pid` to `to`, so it drops its copy. A runner that does
 * not answer holds its guests by itself once its lease runs out (and it has).
 */
export async function fenceRunner(node: FerryNode, runner: string, pid: string, moves: number, to: string): Promise<void> {
  if (runner === node.name) {
    await dropCopy(node, pid, moves, to, `move ${moves} takes it to ${to}`);
    return;
  }
  try {
    await requestJson(node.dialer, await node.addressOf(runner), "POST", `/v1/internal/fence/${pid}`, { body: { moves, to }, expect: nodeNamed(runner), timeout_ms: FENCE_TIMEOUT_MS });
  } catch (err: unknown) {
    node.log.info({ pid, runner, err: errorField(err) }, `${runner} did not answer the fence of ${pid}; declared dead, it holds its guests by itself`);
  }
}

/** Per home record, the runner a failover took it from: that copy's late output is refused. */
const fencedFrom = new WeakMap<HomeRecord, string>();

/** The home resumed `record` elsewhere, away from `runner` (declared dead, perhaps only cut off). */
export function fencedAway(record: HomeRecord, runner: string): void {
  fencedFrom.set(record, runner);
}

/**
 * Whether the home refuses output for `record` from node `from`: the runner
 * a failover took it from, until a move takes it back there. What that copy
 * wrote past its checkpoint must not land where its successor writes.
 */
export function refusesOutput(record: HomeRecord, from: string): boolean {
  return fencedFrom.get(record) === from && record.node !== from;
}

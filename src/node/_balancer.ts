/**
 * The load module's round, every interval: measure this node, gossip its
 * load with a window of the freshest entries it knows to a few random peers
 * (push-pull: the answer carries the peer's window), then run the policies
 * (`decide`) over the view and carry their moves out with the node's own
 * migration code. Each move is an event with its reason, strategy and
 * expected cost before it starts, and one more if it fails.
 */
import { FerryError } from "../errors.js";
import { avoidAfter_ms, decide, MOVE_ASKS_MAX, moveOffer, policyParams, retarget, wantsToAct, WINDOW_ENTRIES_DEFAULT, type LoadEntry, type Move, type PolicyParams, type ProcessInfo, type Strategy } from "../policy/mod.js";
import type { Identity } from "../trust/mod.js";
import { parse } from "../validate.js";
import { errorField } from "../log/mod.js";
import type { FerryNode } from "./node.js";
import { nodeNamed } from "./_dialer.js";
import { requestJsonFrom } from "./_http.js";
import { LoadWindowSchema, MoveAnswerSchema } from "./_load_schemas.js";

/** Peers a node sends its window to each interval, after MOSIX. */
export const GOSSIP_FANOUT = 2;

/**
 * Longest a gossip exchange may take: a peer slower than a few intervals
 * tells nothing fresh, and the next round must not queue behind it.
 */
const GOSSIP_TIMEOUT_MS = 2_000;

/** One round: gossip, then decide and move. */
export async function loadRound(node: FerryNode): Promise<void> {
  const load = node.load;
  load.view.expire(load.params.view_age_max_ms * 4, performance.now());
  // Work arrived and waits: decide now (docs/load.md, "The balancer"); the exchange's fresher news may add moves after it.
  if (load.early) balanceRound(node);
  await gossip(node);
  load.sampleDirty();
  load.noteIdle();
  balanceRound(node);
}

/** Sends this node's window to up to {@link GOSSIP_FANOUT} random peers and merges their answers. */
async function gossip(node: FerryNode): Promise<void> {
  const load = node.load;
  const peers = [...node.peers];
  const targets: string[] = [];
  while (targets.length < GOSSIP_FANOUT && peers.length > 0) targets.push(peers.splice(load.random.int(peers.length), 1)[0] as string);
  if (targets.length === 0) return;
  const window = load.view.window(load.ownEntry(), { size: WINDOW_ENTRIES_DEFAULT, now_ms: performance.now() });
  await Promise.all(
    targets.map(async (address) => {
      try {
        const { value, peer } = await exchangeWith(node, address, { window });
        const answer = parse(LoadWindowSchema, value, `node ${address}'s load window`, { code: "ERR_PEER_UNREACHABLE" });
        acceptWindow(node, answer.window, peer?.name ?? null);
        if (peer !== null) node.learnName(peer.name, address);
      } catch (err: unknown) {
        // A peer that is down or slow is simply not heard from; its entry ages out of the view.
        node.log.debug({ address, err: errorField(err) }, "a load exchange failed");
      }
    }),
  );
}

/**
 * One load exchange with the peer at `address`. Addressed to the node last
 * seen there when this node knows it, so it rides the kept-alive connections
 * of that node, which a move's offer and its data connection use too (the
 * data connection is then made of one instead of a TLS handshake of its
 * own); a peer that turns out to be another node now is asked again as any
 * node.
 */
async function exchangeWith(node: FerryNode, address: string, body: { window: readonly LoadEntry[] }): Promise<{ value: unknown; peer: Identity | null }> {
  const name = node.tls === null ? null : node.nameAt(address);
  if (name !== null) {
    try {
      return await requestJsonFrom(node.dialer, address, "POST", "/v1/internal/load", { body, timeout_ms: GOSSIP_TIMEOUT_MS, expect: nodeNamed(name) });
    } catch (err: unknown) {
      if (!(err instanceof FerryError && err.code === "ERR_PEER_UNAUTHENTICATED")) throw err;
    }
  }
  return await requestJsonFrom(node.dialer, address, "POST", "/v1/internal/load", { body, timeout_ms: GOSSIP_TIMEOUT_MS });
}

/**
 * Merges a window a peer sent (or answered with). Its first entry is the
 * sender's own load: with TLS it must be about the authenticated node, so no
 * node can speak as another first-hand (ERR_FORBIDDEN).
 */
export function acceptWindow(node: FerryNode, window: readonly LoadEntry[], sender: string | null): void {
  const first = window[0];
  if (sender !== null && first !== undefined && first.load.node !== sender) {
    throw new FerryError("ERR_FORBIDDEN", `node ${sender} sent a load window whose own entry is about node ${first.load.node}`);
  }
  node.load.view.merge(window, performance.now());
}

/** The window this node answers a peer's with. */
export function answerWindow(node: FerryNode): { window: LoadEntry[] } {
  return { window: node.load.view.window(node.load.ownEntry(), { size: WINDOW_ENTRIES_DEFAULT, now_ms: performance.now() }) };
}

/**
 * Decides and starts this node's moves. With the balancer off, a drained
 * node still sends its processes away (drain alone: nothing else moves).
 */
export function balanceRound(node: FerryNode): void {
  const load = node.load;
  if (!load.balance && !load.draining) return;
  const base = load.balance ? load.params : policyParams({ mode: "balance", colocate: false }, load.params);
  // The cost model with this node's measured fixed cost of a move, once it has one.
  const params = load.setup_ms === null ? base : { ...base, model: { ...base.model, setup_ms: load.setup_ms } };
  const now_ms = performance.now();
  const local = load.measure();
  const view = load.decisionView(now_ms);
  if (!wantsToAct({ local, view, now_ms }, params)) return;
  const processes = load.processes();
  const moves = decide({ now_ms, local, processes, view, peer_view: view, random: load.random }, params);
  for (const m of moves) {
    if (!load.balance && m.reason !== "drain") continue;
    load.metrics?.decided(m.reason);
    const info = processes.find((p): boolean => p.pid === m.pid);
    if (info !== undefined) void carryOut(node, m, info, params);
  }
}

/**
 * Asks the target whether it takes the move on its load now. A refusal
 * answers with the target's fresh entry, merged into the view; a target that
 * cannot be asked is left to the migration itself (it fails there if the
 * target is down).
 */
async function askTarget(node: FerryNode, m: Move, proc: ProcessInfo): Promise<{ accepted: true } | { accepted: false; detail: string; on_load: boolean }> {
  const load = node.load;
  // This node without the process, nor the others it is sending away (they are in flight, so measure() leaves them out).
  const offer = moveOffer(m, { proc, source: load.measure() });
  try {
    const { value, peer } = await requestJsonFrom(node.dialer, await node.addressOf(m.to), "POST", "/v1/internal/load/accept", { body: offer, timeout_ms: GOSSIP_TIMEOUT_MS, expect: nodeNamed(m.to) });
    const answer = parse(MoveAnswerSchema, value, `node ${m.to}'s answer to a move`, { code: "ERR_PEER_UNREACHABLE" });
    acceptWindow(node, answer.window, peer?.name ?? null);
    return answer.accepted ? { accepted: true } : { accepted: false, detail: answer.detail ?? "refused", on_load: answer.on_load ?? false };
  } catch (err: unknown) {
    node.log.info({ pid: m.pid, to: m.to, err: errorField(err) }, `could not ask ${m.to} whether it takes ${m.pid}; moving anyway`);
    return { accepted: true };
  }
}

/** The move of `proc` a refusal leaves (`retarget`, the simulator's too), on the view as the refusal refreshed it. */
function nextTarget(node: FerryNode, proc: ProcessInfo, refused: ReadonlySet<string>, params: PolicyParams): Move | undefined {
  const load = node.load;
  const now_ms = performance.now();
  const here = load.measure();
  // The process is in flight, so measure() left it out: it is still here.
  const local = { ...here, processes: here.processes + 1, movable: here.movable + 1, runnable: here.runnable + proc.cpu_share, memory_used_bytes: here.memory_used_bytes + proc.memory_bytes };
  // (decisionView leaves out the nodes that refused lately; `refused` holds this move's, whatever the clock.)
  return retarget({ now_ms, local, proc, view: load.decisionView(now_ms), refused, random: load.random }, params);
}

/** Moves one process as decided (asking its target first); a failure leaves it running here and says why in an event. */
async function carryOut(node: FerryNode, first: Move, proc: ProcessInfo, params: PolicyParams): Promise<void> {
  const load = node.load;
  let m: Move | undefined = first;
  const refused = new Set<string>();
  load.moveStarted(m.pid, m.to, proc.cpu_share, proc.memory_bytes);
  for (let asks = 0; ; asks += 1) {
    const answer = await askTarget(node, m, proc);
    if (answer.accepted) break;
    refused.add(m.to);
    load.moveRefused(m.to, avoidAfter_ms(answer));
    load.metrics?.moved(m.strategy, "refused");
    node.events.publish({ type: "load.move_refused", pid: m.pid, to: m.to, reason: m.reason, detail: answer.detail });
    node.log.info({ pid: m.pid, to: m.to }, `${m.to} refused ${m.pid} on its load now (${answer.detail})`);
    // Its count moves from the refusing target to the next, or away.
    load.moveEnded(m.pid, false);
    m = asks + 1 < MOVE_ASKS_MAX ? nextTarget(node, proc, refused, params) : undefined;
    if (m === undefined) return;
    load.metrics?.decided(m.reason);
    load.moveStarted(m.pid, m.to, proc.cpu_share, proc.memory_bytes);
  }
  const detail = m.detail;
  node.events.publish({
    type: "load.move",
    pid: m.pid,
    from: m.from,
    to: m.to,
    reason: m.reason,
    strategy: m.strategy,
    memory_bytes: proc.memory_bytes,
    dirty_bytes_per_s: Math.round(proc.dirty_bytes_per_s),
    detail,
    expected_total_ms: Math.round(m.estimate.total_ms),
    expected_downtime_ms: Math.round(m.estimate.downtime_ms),
  });
  node.log.info({ pid: m.pid, to: m.to, reason: m.reason, strategy: m.strategy }, `moving ${m.pid} to ${m.to} (${m.reason}: ${detail})`);
  let ok = false;
  let strategy: Strategy = m.strategy;
  try {
    let result;
    try {
      result = await node.migrateOut(m.pid, { to: m.to, strategy });
    } catch (err: unknown) {
      // The policy cannot know every node's kernel: without userfaultfd there, pre-copy does the same job.
      if (!(err instanceof FerryError && err.code === "ERR_UFFD_UNAVAILABLE" && (strategy === "post-copy" || strategy === "hybrid"))) throw err;
      strategy = "pre-copy";
      result = await node.migrateOut(m.pid, { to: m.to, strategy });
    }
    const { bytes, total_ms } = result.metrics;
    // Only a move with real bulk says anything about the rate; a small one is all fixed cost.
    if (bytes >= 4 * 1024 * 1024 && total_ms > 0) load.transfer_bytes_per_s += 0.5 * ((bytes * 1000) / total_ms - load.transfer_bytes_per_s);
    // What is left once the pages' transfer is taken out is the fixed cost the gain must beat (the model's default is an older, slower figure).
    const fixed_ms = Math.max(0, total_ms - (bytes * 1000) / load.transfer_bytes_per_s);
    load.setup_ms = load.setup_ms === null ? fixed_ms : load.setup_ms + 0.5 * (fixed_ms - load.setup_ms);
    ok = true;
    load.metrics?.moved(strategy, "succeeded");
  } catch (err: unknown) {
    const code = err instanceof FerryError ? err.code : "ERR_INTERNAL";
    load.metrics?.moved(strategy, "failed");
    node.events.publish({ type: "load.move_failed", pid: m.pid, to: m.to, reason: m.reason, strategy, code, message: err instanceof Error ? err.message : String(err) });
    node.log.info({ pid: m.pid, to: m.to, err: errorField(err) }, `the automatic move of ${m.pid} to ${m.to} did not happen; it stays here`);
  } finally {
    load.moveEnded(m.pid, ok);
  }
}

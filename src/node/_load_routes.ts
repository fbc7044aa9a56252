/**
 * The control API's load routes (docs/load.md, "In the daemon"): the load
 * gossip between nodes, `ferry policy`, `ferry drain`/`undrain`, placement
 * of `ferry run` without `--node`, and the checks a manual migration's
 * target must pass (its labels meet the process's requirements; it is not
 * drained).
 */
import type http from "node:http";
import { FerryError } from "../errors.js";
import { satisfies, type Labels } from "../policy/mod.js";
import type { Identity } from "../trust/mod.js";
import { parse } from "../validate.js";
import type { FerryNode } from "./node.js";
import { readRequest, requestJson, sendJson } from "./_http.js";
import { pushModuleTo } from "./_module_transfer.js";
import { nodeNamed } from "./_dialer.js";
import { acceptWindow, answerWindow } from "./_balancer.js";
import { DrainAnswerSchema, LabelsSchema, LoadWindowSchema, MoveOfferSchema, PolicyAnswerSchema, PolicyChangeSchema } from "./_load_schemas.js";
import * as v from "valibot";
import { NodeName } from "../process_spec.js";
import { formatLabels } from "./load.js";
import type { RunRequestBody } from "./_api_schemas.js";

/** What a manual migration's check reads of the target's `GET /v1/node`. */
const TargetInfoSchema = v.object({ name: NodeName, labels: v.optional(LabelsSchema, {}), draining: v.optional(v.boolean(), false) });

/** Handles the load routes; false when the request is not one of them. */
export async function loadRoute(
  node: FerryNode,
  request: { method: string; what: string | undefined; id: string | undefined; sub: string | undefined },
  req: http.IncomingMessage,
  res: http.ServerResponse,
  peer: Identity | null,
): Promise<boolean> {
  const { method, what, id, sub } = request;
  if (what === "internal" && id === "load" && sub === undefined && method === "POST") {
    const body = await readRequest(req, LoadWindowSchema);
    acceptWindow(node, body.window, peer?.name ?? null);
    sendJson(res, 200, answerWindow(node));
    return true;
  }
  if (what === "internal" && id === "load" && sub === "accept" && method === "POST") {
    // Only nodes get here (the router checks the role); the offer is judged on this node's load now.
    const offer = await readRequest(req, MoveOfferSchema);
    const answer = node.load.acceptMove(offer, peer?.name ?? null);
    sendJson(res, 200, { accepted: answer.kind === "accept", ...(answer.kind === "refuse" ? { detail: answer.detail, on_load: answer.on_load } : {}), ...answerWindow(node) });
    return true;
  }
  if (what === "policy" && id === undefined) {
    if (method === "GET") {
      sendJson(res, 200, node.load.describe());
      return true;
    }
    if (method === "PUT") {
      const body = await readRequest(req, PolicyChangeSchema);
      node.load.setPolicy(body.set);
      const nodes: { node: string; ok: boolean; error?: string }[] = [{ node: node.name, ok: true }];
      if (!body.local) {
        // Every node decides for itself: each gets the change. One that is down keeps its old policy and is named.
        await Promise.all(
          node.peers.map(async (address) => {
            try {
              const answer = parse(PolicyAnswerSchema, await requestJson(node.dialer, address, "PUT", "/v1/policy", { body: { set: body.set, local: true } }), `node ${address}'s answer`, {
                code: "ERR_PEER_UNREACHABLE",
              });
              nodes.push({ node: answer.nodes[0]?.node ?? address, ok: true });
            } catch (err: unknown) {
              nodes.push({ node: address, ok: false, error: err instanceof Error ? err.message : String(err) });
            }
          }),
        );
      }
      sendJson(res, 200, { nodes, policy: node.load.describe() });
      return true;
    }
  }
  if (what === "nodes" && id !== undefined && (sub === "drain" || sub === "undrain") && method === "POST") {
    if (id !== node.name) {
      const answer = await requestJson(node.dialer, await node.addressOf(id), "POST", `/v1/nodes/${id}/${sub}`, { expect: nodeNamed(id) });
      sendJson(res, 200, parse(DrainAnswerSchema, answer, `node ${id}'s answer`, { code: "ERR_PEER_UNREACHABLE" }));
      return true;
    }
    node.load.setDraining(sub === "drain");
    sendJson(res, 200, { node: node.name, draining: node.load.draining, processes: node.table.running_count });
    return true;
  }
  return false;
}

/**
 * Places a run request that names no node: where the policy says, or here
 * (placement off, or here is best). Returns the node to forward it to, or
 * null to start it here. ERR_NO_PLACE when no known node qualifies.
 */
export async function placeRun(node: FerryNode, body: RunRequestBody): Promise<{ node: string; detail: string } | null> {
  if (body.node !== undefined || !node.load.placing) return null;
  // A module's memory is known only once it is instrumented: placement goes by CPU, labels and drain.
  const placement = node.load.place({ memory_bytes: 0, requires: body.requires ?? {}, peer_nodes: [] });
  if (placement.kind === "nowhere") throw new FerryError("ERR_NO_PLACE", `no node to run it: ${placement.detail}`);
  if (placement.node === node.name) return null;
  await pushModule(node, placement.node, body.module_sha256);
  return { node: placement.node, detail: placement.detail };
}

/** Gives node `name` the module `sha256` from this node's store, unless it has it. */
async function pushModule(node: FerryNode, name: string, sha256: string): Promise<void> {
  if (!node.modules.has(sha256)) return; // the target is asked anyway, and says ERR_MODULE_MISSING if it lacks it too
  await pushModuleTo(node.dialer, await node.addressOf(name), { sha256, bytes: node.modules.get(sha256), expect: nodeNamed(name) });
}

/** Throws unless a process with `requires` may start here (started here or forwarded here with `--node`). */
export function checkStartHere(node: FerryNode, requires: Labels | undefined): void {
  node.load.checkStart(requires ?? {});
}

/**
 * Checks a manual migration's target before anything moves: a process with
 * requirements goes only where they hold (ERR_REQUIREMENT). Nothing goes to
 * a drained node: the target refuses the offer (ERR_NODE_DRAINING).
 */
export async function checkMigrationTarget(node: FerryNode, pid: string, to: string): Promise<void> {
  const running = node.table.running(pid);
  if (running === undefined || to === node.name) return;
  const c = node.load.constraintsOf(pid, running.home);
  const requires = c?.requires ?? node.table.home(pid)?.requires ?? {};
  // Nothing to check here: a drained target refuses the offer itself, and a move costs no extra round trip.
  if (Object.keys(requires).length === 0) return;
  // A fresh gossiped entry says it; else the target is asked.
  const entry = node.load.view.get(to);
  const fresh = entry !== undefined && entry.age_ms + (performance.now() - entry.received_ms) <= node.load.params.view_age_max_ms;
  const info = fresh
    ? { labels: entry.load.labels, draining: entry.load.draining }
    : parse(TargetInfoSchema, await requestJson(node.dialer, await node.addressOf(to), "GET", "/v1/node", { expect: nodeNamed(to) }), `node ${to}'s GET /v1/node`, {
        code: "ERR_PEER_UNREACHABLE",
      });
  if (info.draining) throw new FerryError("ERR_NODE_DRAINING", `node ${to} is drained: nothing new lands there (ferry undrain ${to})`);
  if (!satisfies(info.labels, requires)) throw new FerryError("ERR_REQUIREMENT", `${pid} requires ${formatLabels(requires)}; node ${to} has ${formatLabels(info.labels)}`);
}

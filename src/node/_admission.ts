/**
 * Whether a node takes a process: a run request, or a migration's OFFER,
 * checked against the node's limits (`limits.ts`) and policy (`policy.ts`)
 * before anything is started, fetched or reserved. Both ways in go through
 * here, so a process cannot get by migrating what it could not get by
 * starting.
 */
import { FerryError } from "../errors.js";
import type { Offer } from "../migration/mod.js";
import type { Preopen } from "../wasi/mod.js";
import type { FerryNode } from "./node.js";
import type { RunRequest } from "./process_table.js";
import type { StandbyTicket } from "./_standbys.js";
import type { RunRequestBody } from "./_api_schemas.js";

/** A run request the node takes: what to start, and its directories as preopens. */
export interface AdmittedRun {
  request: RunRequest;
  preopens: Preopen[];
}

/** Checks a run request (its cap, the process quota, its ports, its directories); throws ERR_MEMORY_LIMIT, ERR_QUOTA, ERR_FORBIDDEN, ERR_MISSING_DIRECTORY. */
export function admitRun(node: FerryNode, body: RunRequestBody): AdmittedRun {
  const memory_max_bytes = body.memory_max_bytes ?? node.limits.memory_max_bytes;
  checkCap(node, memory_max_bytes);
  checkProcessQuota(node);
  node.policy.checkListen(body.listen);
  const preopens = node.policy.preopens(body.dirs);
  const { module_sha256, module_name, args, env, dirs, listen } = body;
  const constraints = { ...(body.requires !== undefined ? { requires: body.requires } : {}), ...(body.pinned === true ? { pinned: true } : {}) };
  const checkpoint_every_ms = body.checkpoint_every_ms ?? node.limits.checkpoint_every_ms;
  return { request: { module_sha256, module_name, args, env, dirs, listen, memory_max_bytes, ...constraints, ...(checkpoint_every_ms > 0 ? { checkpoint_every_ms } : {}) }, preopens };
}

/**
 * Checks an OFFER (its memory against its cap and the node's maximum, the
 * process quota, its directories against this node's roots, its open files
 * under its directories) and reserves the memory its standby will hold.
 * Throws before anything is reserved: ERR_MEMORY_LIMIT, ERR_QUOTA,
 * ERR_FORBIDDEN, ERR_MISSING_DIRECTORY, ERR_MISSING_FILE.
 */
export function admitOffer(node: FerryNode, offer: Offer): { ticket: StandbyTicket; preopens: Preopen[] } {
  if (node.load.draining) throw new FerryError("ERR_NODE_DRAINING", `node ${node.name} is drained: nothing new lands there (ferry undrain ${node.name})`);
  checkCap(node, offer.memory_max_bytes);
  if (offer.memory_bytes > offer.memory_max_bytes) {
    throw new FerryError("ERR_MEMORY_LIMIT", `${offer.pid} has ${offer.memory_bytes} bytes of memory, over its own cap of ${offer.memory_max_bytes}`);
  }
  checkProcessQuota(node);
  const preopens = node.policy.preopens(offer.dirs);
  node.policy.checkOpenFiles(offer.pid, offer.open_files, offer.dirs);
  const ticket = node.standbys.reserve(offer.pid, offer.memory_bytes);
  // Its standby counts it in this node's load from now on.
  node.load.arriving(offer.pid);
  return { ticket, preopens };
}

function checkCap(node: FerryNode, memory_max_bytes: number): void {
  if (memory_max_bytes > node.limits.memory_max_bytes) {
    throw new FerryError(
      "ERR_MEMORY_LIMIT",
      `a memory cap of ${memory_max_bytes} bytes is over node ${node.name}'s maximum of ${node.limits.memory_max_bytes} (--memory-max)`,
    );
  }
}

function checkProcessQuota(node: FerryNode): void {
  const busy = node.table.busy + node.standbys.count;
  if (busy >= node.limits.processes_max) {
    throw new FerryError("ERR_QUOTA", `node ${node.name} runs ${busy} processes (counting the ones arriving), its quota (--max-processes)`);
  }
}

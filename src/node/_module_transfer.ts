/**
 * Modules sent between nodes: a migration's destination or a checkpoint's
 * keeper fetches the module from the node the process comes from, and
 * placement pushes it to the node chosen for a start. Like every request
 * between nodes, each has the dialer's connect deadline and a total one; a
 * module can be large, so the total deadline grows with its size: an
 * allowance plus its bytes at a floor rate. A peer that accepts the
 * connection and then stalls (no answer, or a body that stops) fails the
 * transfer with ERR_TRANSFER_TIMEOUT once that deadline passes.
 */
import type http from "node:http";
import { FerryError } from "../errors.js";
import type { ExpectedPeer } from "../trust/mod.js";
import type { Dialer } from "./_dialer.js";
import { peerError } from "./_http.js";
import type { ModuleStore } from "./module_store.js";

/**
 * The slowest rate a module transfer may go at before it is called stuck:
 * 1 MiB/s. A link between nodes that cannot carry that could not move a
 * process either (its memory is larger than its module).
 */
export const MODULE_TRANSFER_FLOOR_BYTES_PER_S = 1024 * 1024;

/**
 * Time a transfer gets beyond its bytes at the floor rate: connecting and
 * the TLS handshake (5 s at most, the dialer's), the peer opening or
 * hashing the file, and an overloaded machine's slack.
 */
export const MODULE_TRANSFER_ALLOWANCE_MS = 30_000;

/** How long a transfer may take, by its size. */
export interface TransferPace {
  /** Bytes per second below which the transfer is stuck. */
  floor_bytes_per_s: number;
  /** Time allowed on top of the bytes at the floor rate. */
  allowance_ms: number;
}

/** The pace of transfers between nodes: {@link MODULE_TRANSFER_FLOOR_BYTES_PER_S} and {@link MODULE_TRANSFER_ALLOWANCE_MS}. */
export const MODULE_TRANSFER_PACE: TransferPace = { floor_bytes_per_s: MODULE_TRANSFER_FLOOR_BYTES_PER_S, allowance_ms: MODULE_TRANSFER_ALLOWANCE_MS };

/** The total deadline of a transfer of `bytes`: the allowance plus the bytes at the floor rate. */
export function transferDeadlineMs(bytes: number, pace: TransferPace = MODULE_TRANSFER_PACE): number {
  return pace.allowance_ms + Math.ceil((bytes * 1000) / pace.floor_bytes_per_s);
}

/** Options of {@link fetchModuleFrom}. */
export interface FetchModuleOptions {
  /** The module asked for. */
  sha256: string;
  /** Where it is stored as it streams in. */
  store: ModuleStore;
  /** The most bytes taken (this node's module size limit); also the size the deadline assumes when the peer does not say. */
  bytes_max: number;
  /** The node that must answer (the process's authenticated source), or any node. */
  expect?: ExpectedPeer | undefined;
  /** Default {@link MODULE_TRANSFER_PACE}. */
  pace?: TransferPace;
}

/**
 * Fetches module `sha256` from the node at `address` into the store,
 * streamed (never held whole, never over `bytes_max`). Until the answer's
 * head the deadline is the allowance alone; then it is the allowance plus
 * the length the answer declares at the floor rate, counted from the start.
 * Throws ERR_TRANSFER_TIMEOUT past it, ERR_MODULE_MISSING if the peer lacks
 * the module, ERR_PEER_UNREACHABLE if it does not answer.
 */
export function fetchModuleFrom(dialer: Dialer, address: string, options: FetchModuleOptions): Promise<void> {
  const { sha256, store, bytes_max } = options;
  const pace = options.pace ?? MODULE_TRANSFER_PACE;
  return new Promise((resolve, reject) => {
    const req = dialer.request(address, { method: "GET", path: `/v1/modules/${sha256}`, agent: false }, options.expect);
    const guard = transferGuard(req, `fetching module ${sha256} from ${address}`, pace, { resolve, reject });
    guard.arm(pace.allowance_ms);
    req.on("response", (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        guard.fail(new FerryError("ERR_MODULE_MISSING", `node ${address} does not have module ${sha256}`));
        return;
      }
      const declared = Number(res.headers["content-length"]);
      guard.arm(transferDeadlineMs(Number.isSafeInteger(declared) && declared >= 0 ? Math.min(declared, bytes_max) : bytes_max, pace));
      store.putStream(sha256, res, bytes_max).then(
        () => guard.done(),
        (err: unknown) => {
          res.destroy();
          guard.fail(err, address);
        },
      );
    });
    req.on("error", (err) => guard.fail(err, address));
    req.end();
  });
}

/** Options of {@link pushModuleTo}. */
export interface PushModuleOptions {
  /** The module's name. */
  sha256: string;
  /** Its bytes. */
  bytes: Uint8Array;
  /** The node that must answer. */
  expect: ExpectedPeer;
  /** Default {@link MODULE_TRANSFER_PACE}. */
  pace?: TransferPace;
}

/**
 * Gives module `sha256` to the node at `address`. The whole exchange, the
 * peer's answer included, has the allowance plus the module's bytes at the
 * floor rate. Throws ERR_TRANSFER_TIMEOUT past it, ERR_MODULE_MISSING if
 * the peer does not take it, ERR_PEER_UNREACHABLE if it does not answer.
 */
export function pushModuleTo(dialer: Dialer, address: string, options: PushModuleOptions): Promise<void> {
  const { sha256, bytes } = options;
  const pace = options.pace ?? MODULE_TRANSFER_PACE;
  return new Promise((resolve, reject) => {
    const req = dialer.request(
      address,
      { method: "PUT", path: `/v1/modules/${sha256}`, agent: false, headers: { "content-type": "application/octet-stream", "content-length": bytes.length } },
      options.expect,
    );
    const guard = transferGuard(req, `pushing module ${sha256} to ${address}`, pace, { resolve, reject });
    guard.arm(transferDeadlineMs(bytes.length, pace));
    req.on("response", (res) => {
      res.resume();
      if (res.statusCode === 200 || res.statusCode === 201) res.on("end", () => guard.done());
      else guard.fail(new FerryError("ERR_MODULE_MISSING", `node ${address} did not take module ${sha256} (HTTP ${res.statusCode})`));
    });
    req.on("error", (err) => guard.fail(err, address));
    req.end(bytes);
  });
}

/** Settles a transfer once, and fails it with ERR_TRANSFER_TIMEOUT when its deadline passes first. */
function transferGuard(
  req: http.ClientRequest,
  what: string,
  pace: TransferPace,
  { resolve, reject }: { resolve: () => void; reject: (err: unknown) => void },
): { arm(deadline_ms: number): void; done(): void; fail(err: unknown, address?: string): void } {
  const started_ms = performance.now();
  let timer: NodeJS.Timeout | undefined;
  let settled = false;
  const settle = (err: unknown): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    if (err === null) resolve();
    else reject(err);
  };
  req.on("close", () => clearTimeout(timer));
  return {
    arm(deadline_ms) {
      clearTimeout(timer);
      const left_ms = Math.max(0, started_ms + deadline_ms - performance.now());
      timer = setTimeout(() => {
        // Settled first, so the errors the destroy raises (an aborted body, a reset) are not taken for the cause.
        settle(new FerryError("ERR_TRANSFER_TIMEOUT", `${what} did not finish within its ${deadline_ms} ms deadline (the peer stalled, or its link is slower than ${pace.floor_bytes_per_s} bytes/s)`));
        req.destroy();
      }, left_ms);
    },
    done: () => settle(null),
    fail: (err, address) => settle(address === undefined || err instanceof FerryError ? err : peerError(address, err instanceof Error ? err : new Error(String(err)))),
  };
}

/**
 * Module transfers between nodes have a total deadline: a peer that accepts
 * the connection and then stalls (never answers, or stops mid-body) fails
 * the transfer with ERR_TRANSFER_TIMEOUT, not after the kernel gives up on
 * the connection.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { Dialer, ANY_NODE } from "./_dialer.js";
import { fetchModuleFrom, MODULE_TRANSFER_PACE, pushModuleTo, transferDeadlineMs, type TransferPace } from "./_module_transfer.js";
import { ModuleStore } from "./module_store.js";

/** Short enough for a test: 300 ms plus the bytes at 10 MB/s. */
const PACE: TransferPace = { allowance_ms: 300, floor_bytes_per_s: 10_000_000 };
/** Far above the deadlines here; only a transfer that never fails passes it. */
const GENEROUS_MS = 20_000;

/** A peer on loopback whose requests `handler` answers (or not). */
async function peer(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<{ address: string; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function isTimeout(err: unknown): boolean {
  return err instanceof FerryError && err.code === "ERR_TRANSFER_TIMEOUT";
}

describe("module transfers between nodes", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-transfer-"));
  const store = new ModuleStore(dir);
  const dialer = new Dialer(null);
  const module_bytes = Buffer.from("\0asm\x01\0\0\0 a module of a few bytes");
  const sha256 = createHash("sha256").update(module_bytes).digest("hex");
  after(() => {
    dialer.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("gives a transfer the allowance plus its bytes at the floor rate", () => {
    assert.equal(transferDeadlineMs(0), MODULE_TRANSFER_PACE.allowance_ms);
    assert.equal(transferDeadlineMs(64 * 1024 * 1024), MODULE_TRANSFER_PACE.allowance_ms + 64_000);
    assert.equal(transferDeadlineMs(10_000_000, PACE), 1300);
  });

  it("fetches a module from a peer that answers", async () => {
    const p = await peer((_req, res) => res.writeHead(200, { "content-length": module_bytes.length }).end(module_bytes));
    try {
      await fetchModuleFrom(dialer, p.address, { sha256, store, bytes_max: 1024, expect: ANY_NODE, pace: PACE });
      assert.ok(store.has(sha256));
    } finally {
      await p.close();
    }
  });

  it("fails a fetch from a peer that never answers with ERR_TRANSFER_TIMEOUT", async () => {
    const p = await peer(() => {
      // Takes the request and says nothing.
    });
    const started = performance.now();
    try {
      await assert.rejects(fetchModuleFrom(dialer, p.address, { sha256: "0".repeat(64), store, bytes_max: 1024, pace: PACE }), isTimeout);
      assert.ok(performance.now() - started < GENEROUS_MS);
    } finally {
      await p.close();
    }
  });

  it("fails a fetch whose body stops midway with ERR_TRANSFER_TIMEOUT, and keeps nothing of it", async () => {
    const p = await peer((_req, res) => {
      res.writeHead(200, { "content-length": 1_000_000 });
      res.write(Buffer.alloc(1000));
      // And nothing more.
    });
    const started = performance.now();
    try {
      await assert.rejects(fetchModuleFrom(dialer, p.address, { sha256: "1".repeat(64), store, bytes_max: 2_000_000, pace: PACE }), isTimeout);
      assert.ok(performance.now() - started < GENEROUS_MS);
      assert.equal(store.has("1".repeat(64)), false);
    } finally {
      await p.close();
    }
  });

  it("fails a push to a peer that takes the body and never answers with ERR_TRANSFER_TIMEOUT", async () => {
    const p = await peer((req) => {
      // Reads it all and says nothing.
      req.resume();
    });
    const started = performance.now();
    try {
      await assert.rejects(pushModuleTo(dialer, p.address, { sha256, bytes: module_bytes, expect: ANY_NODE, pace: PACE }), isTimeout);
      assert.ok(performance.now() - started < GENEROUS_MS);
    } finally {
      await p.close();
    }
  });

  it("pushes a module to a peer that takes it", async () => {
    const p = await peer((req, res) => {
      req.resume();
      req.on("end", () => res.writeHead(201).end());
    });
    try {
      await pushModuleTo(dialer, p.address, { sha256, bytes: module_bytes, expect: ANY_NODE, pace: PACE });
    } finally {
      await p.close();
    }
  });
});

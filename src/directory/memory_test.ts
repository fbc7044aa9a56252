/** The in-memory and embedded (file-backed) directories: the conformance suite, and what the file keeps across a restart. */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { directoryConformance } from "./_conformance.js";
import { openEmbeddedDirectory } from "./embedded.js";
import { MemoryDirectory } from "./memory.js";

// Renewed every third of the lease: 1 s outlasts a stall of a busy machine between two renewals (300 ms did not).
directoryConformance("memory", {
  ttl_ms: 1000,
  open: () => {
    const directory = new MemoryDirectory();
    return Promise.resolve({ directory, close: () => directory.close() });
  },
});

directoryConformance("embedded", {
  ttl_ms: 1000,
  open: () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-directory-"));
    const directory = openEmbeddedDirectory(path.join(dir, "directory.json"));
    return Promise.resolve({
      directory,
      close: async () => {
        await directory.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    });
  },
});

describe("embedded directory file", () => {
  it("keeps records and members across a restart, every member dead until it takes a new lease", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-directory-"));
    try {
      const file = path.join(dir, "directory.json");
      const first = openEmbeddedDirectory(file);
      await first.createProcess({ pid: "a-1", home: "a" });
      await first.updateProcess("a-1", 0, { runner: "b", moves: 1, last_checkpoint: { node: "c", seq: 1, moves: 1 } });
      await first.grantLease({ name: "b", address: "127.0.0.1:9" }, 60_000);
      await first.close();
      const second = openEmbeddedDirectory(file);
      assert.deepEqual(
        { ...(await second.process("a-1")), updated_unix_ms: 0 },
        { pid: "a-1", home: "a", runner: "b", state: "running", moves: 1, last_checkpoint: { node: "c", seq: 1, moves: 1 }, reason: null, exit_code: null, updated_unix_ms: 0 },
      );
      assert.deepEqual(await second.members(), [{ name: "b", address: "127.0.0.1:9", ttl_ms: 60_000, state: "dead" }]);
      await second.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a damaged file with ERR_DIRECTORY_FILE, never starting empty", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-directory-"));
    try {
      const file = path.join(dir, "directory.json");
      fs.writeFileSync(file, '{"version":1,"processes":[{"pid":"a-1"}');
      assert.throws(() => openEmbeddedDirectory(file), (e: unknown) => e instanceof FerryError && e.code === "ERR_DIRECTORY_FILE");
      fs.writeFileSync(file, '{"version":2,"processes":[],"members":[]}');
      assert.throws(() => openEmbeddedDirectory(file), (e: unknown) => e instanceof FerryError && e.code === "ERR_DIRECTORY_FILE");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the in-memory directory's leases", () => {
  it("never run out before their whole length from the renewal, to the fraction of a millisecond", async () => {
    const d = new MemoryDirectory();
    try {
      const lease = await d.grantLease({ name: "a", address: "127.0.0.1:1" }, 300);
      let dead_at: number | null = null;
      await d.watch((c) => {
        if (c.kind === "member" && c.member.state === "dead") dead_at ??= performance.now();
      });
      // A timer counts whole milliseconds from the event loop's clock, which can be up to a millisecond (or a busy turn) behind this one.
      const renewed_at = performance.now();
      await d.keepAlive(lease.id);
      while (dead_at === null) await new Promise((r) => setTimeout(r, 10));
      assert.ok(dead_at - renewed_at >= 300, `dead ${(dead_at - renewed_at).toFixed(2)} ms after its renewal, before its 300 ms ran out`);
    } finally {
      await d.close();
    }
  });
});

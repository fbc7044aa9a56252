/**
 * A process running here with pages at a source whose page channel never
 * comes (its attempts failed, and then it died): the session counts the
 * link as down from its start, so the process ends as lost after
 * `recover_ms` with the pages it lost named, instead of waiting forever.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { CHUNK_BYTES, remotePagesAvailability } from "../memory/mod.js";
import { GuestProcess } from "../runtime/mod.js";
import { IncomingPostCopy, PostCopySessions } from "./_postcopy.js";

const MEMHOG = fileURLToPath(new URL("../../../examples/c/memhog.wasm", import.meta.url));
const availability = remotePagesAvailability();
const skip = !availability.available && `userfaultfd is unavailable here: ${availability.reason}`;
const devnull = fs.openSync("/dev/null", "w");
const io = { stdin: null, stdout: { kind: "fd", fd: devnull }, stderr: { kind: "fd", fd: devnull } } as const;

describe("an incoming post-copy session", { skip }, () => {
  it("whose page channel never comes ends its process as lost after recover_ms, naming the pages", async () => {
    // Held in a wait after touching 8 MiB: it touches nothing while the test decides its fate.
    const proc = await GuestProcess.start({ wasm: fs.readFileSync(MEMHOG), module_path: MEMHOG, args: ["memhog", "--hold", "8", "0", "0"], env: [], preopens: [] }, io);
    try {
      // Grown to its size: the chunks dropped below are in its memory.
      while (proc.memory.buffer.byteLength < 8 * 1024 * 1024) await new Promise((r) => setTimeout(r, 10));
      const sessions = new PostCopySessions();
      const bytes = proc.memory.buffer.byteLength;
      const chunks = Math.floor(bytes / CHUNK_BYTES);
      const t0 = performance.now();
      const session = new IncomingPostCopy(sessions, "n1-1", proc, { session: "s1", remote_bytes: chunks * CHUNK_BYTES, missing: [[1, 2]] }, { recover_ms: 300, source: "127.0.0.1:1" });
      session.open();
      assert.equal(sessions.forPid("n1-1"), session);
      const status = await proc.exited;
      assert.equal(status.kind, "lost", JSON.stringify(status));
      assert.match((status as { message?: string }).message ?? "", /never arrived/);
      assert.match((status as { message?: string }).message ?? "", new RegExp(`0x${CHUNK_BYTES.toString(16)}-0x${(3 * CHUNK_BYTES - 1).toString(16)}`));
      assert.ok(performance.now() - t0 >= 300, "lost before recover_ms");
      assert.equal(sessions.forPid("n1-1"), undefined, "the session ended with its process");
    } finally {
      await proc.terminate();
    }
  });
});

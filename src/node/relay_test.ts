/** The output relay to a remote home (a plain HTTP home on 127.0.0.1 stands in for the home node). */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { Dialer } from "./_dialer.js";
import { RemoteRelay } from "./relay.js";

interface Chunk {
  stream: "stdout" | "stderr";
  offset: number;
  data: string;
}

/** A home that takes output batches; `onBatch` runs before each answer. */
async function fakeHome(onBatch: (chunks: Chunk[]) => void): Promise<{ address: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      onBatch(JSON.parse(Buffer.concat(parts).toString()) as Chunk[]);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

describe("RemoteRelay", () => {
  it("regression, checkpoints held up after a move away from the home: flush waits for what was written before it, not for a process that keeps writing to stop", async () => {
    // The process writes one more line while each batch is on its way: the queue never runs dry until it stops, after 40 batches.
    const WRITES_WHILE_SENDING = 40;
    const batches: Chunk[][] = [];
    let relay: RemoteRelay | null = null;
    let stopped!: () => void;
    const all_sent = new Promise<void>((r) => {
      stopped = r;
    });
    const home = await fakeHome((chunks) => {
      batches.push(chunks);
      if (batches.length <= WRITES_WHILE_SENDING) relay?.write("stdout", Buffer.from(`line ${batches.length}\n`));
      else stopped();
    });
    try {
      relay = new RemoteRelay("n9-1", { dialer: new Dialer(null), name: "n9", address: () => Promise.resolve(home.address) }, { stdout: 0, stderr: 0 });
      relay.write("stdout", Buffer.from("first\n"));
      relay.write("stderr", Buffer.from("err\n"));
      await relay.flush();
      const at_flush = batches.length;
      // The first write goes alone, the second with the line written meanwhile; one more batch may be on its way by the time the flush's caller runs.
      assert.ok(at_flush >= 2 && at_flush <= 3, `flush returned after ${at_flush} batches, with the process still writing`);
      assert.deepEqual(
        batches.slice(0, 2).flat().map((c) => [c.stream, c.offset, Buffer.from(c.data, "base64").toString()]),
        [
          ["stdout", 0, "first\n"],
          ["stderr", 0, "err\n"],
          ["stdout", 6, "line 1\n"],
        ],
      );
      await all_sent;
      await relay.flush();
      const stdout = batches.flat().filter((c) => c.stream === "stdout");
      const offsets = stdout.map((c) => c.offset);
      assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b), "in order");
      assert.equal(Buffer.concat(stdout.map((c) => Buffer.from(c.data, "base64"))).toString(), ["first\n", ...Array.from({ length: WRITES_WHILE_SENDING }, (_, i) => `line ${i + 1}\n`)].join(""));
    } finally {
      await home.close();
    }
  });
});

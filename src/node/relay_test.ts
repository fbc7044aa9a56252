/** The output relay to a remote home (a plain HTTP home on 127.0.0.1 stands in for the home node). */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { Dialer } from "./_dialer.js";
import { RELAY_QUEUE_BYTES_MAX, RemoteRelay } from "./relay.js";

interface Chunk {
  stream: "stdout" | "stderr";
  offset: number;
  data: string;
}

/** A home that takes output batches; `onBatch` runs before each answer, and a batch it says `false` to is refused (503: a home not up yet). */
async function fakeHome(onBatch: (chunks: Chunk[]) => boolean | void): Promise<{ address: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      if (onBatch(JSON.parse(Buffer.concat(parts).toString()) as Chunk[]) === false) res.writeHead(503, { "content-type": "application/json" }).end('{"error":{"code":"ERR_QUOTA","message":"not taking output now"}}');
      else res.writeHead(200, { "content-type": "application/json" }).end("{}");
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

/** A relay of `pid` to the home at `address`. */
function relayTo(pid: string, address: string): RemoteRelay {
  return new RemoteRelay(pid, { dialer: new Dialer(null), name: "n9", address: () => Promise.resolve(address) }, { stdout: 0, stderr: 0 });
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

  it("regression, output lost when a home restarted slowly: a home that does not answer is tried until it does, nothing dropped, in order", async () => {
    // A home that refuses everything while the process writes (its node restarting), then takes it.
    let up = false;
    let refused = 0;
    let tried!: () => void;
    const retried = new Promise<void>((r) => {
      tried = r;
    });
    const batches: Chunk[][] = [];
    const home = await fakeHome((chunks) => {
      if (!up) {
        refused += 1;
        if (refused === 3) tried();
        return false;
      }
      batches.push(chunks);
    });
    const relay = relayTo("n9-2", home.address);
    const written = Array.from({ length: 20 }, (_, i) => `line ${i}\n`);
    try {
      for (const line of written.slice(0, 10)) relay.write("stdout", Buffer.from(line));
      // A flush says the home has not taken it in time; the output is kept, and tried again.
      await assert.rejects(relay.flush(100), (err: Error & { code?: string }) => err.code === "ERR_RELAY_FAILED" && /kept, and still sent/.test(err.message));
      await retried;
      for (const line of written.slice(10)) relay.write("stdout", Buffer.from(line));
      up = true;
      await relay.flush(30_000);
      const got = batches.flat();
      const offsets = got.map((c) => c.offset);
      assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b), "in order");
      assert.equal(Buffer.concat(got.map((c) => Buffer.from(c.data, "base64"))).toString(), written.join(""), "each byte once");
    } finally {
      relay.abandon();
      await home.close();
    }
  });

  it("gives up on a home only past the bytes it may hold, and says so", async () => {
    const home = await fakeHome(() => false);
    try {
      const relay = relayTo("n9-3", home.address);
      const mib = Buffer.alloc(1024 * 1024, 0x61);
      for (let i = 0; i <= RELAY_QUEUE_BYTES_MAX / mib.length; i += 1) relay.write("stdout", mib);
      await assert.rejects(relay.flush(30_000), (err: Error & { code?: string }) => err.code === "ERR_RELAY_FAILED" && /has not taken the last \d+ bytes/.test(err.message));
      assert.equal(relay.abandon(), 0, "nothing is held once given up on");
    } finally {
      await home.close();
    }
  });
});

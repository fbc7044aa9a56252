/**
 * Net lanes (docs/networking.md, "Net lanes"): a server running away from
 * its home writes its replies to the home on a lane of its own worker's.
 * Four nodes in this process, with TLS: n1 the home, n2 a runner with
 * lanes, n3 one with them turned off, n4 one whose processes hibernate
 * soon. Whatever happens to a lane (the home drops it mid-stream, the
 * server moves with replies on their way, runs where lanes are off, or
 * hibernates and wakes), the client sees every reply once, in order, on one
 * connection.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { localNode } from "../src/cli/_identity.js";
import { nativeAddon } from "../src/native.js";
import { FerryNode } from "../src/node/mod.js";
import { EXAMPLES, tempDir } from "./_helpers.js";
import { json, request, testAuthority, upload } from "./_cluster.js";

const native = nativeAddon();
const LANES = "addon" in native && native.addon.dupFd !== undefined && native.addon.sealerSend !== undefined;

/** A client on one connection that reads replies line by line. */
class Lines {
  readonly socket: net.Socket;
  #buffer = "";
  #lines: string[] = [];
  #waiter: (() => void) | null = null;
  #ended = false;
  errors: Error[] = [];

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.#buffer += chunk;
      const parts = this.#buffer.split("\n");
      this.#buffer = parts.pop() ?? "";
      this.#lines.push(...parts);
      this.#wake();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on("error", (err) => this.errors.push(err));
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }

  /** Lines read so far and not taken. */
  get ready(): number {
    return this.#lines.length;
  }

  async line(): Promise<string | null> {
    const deadline = Date.now() + 30_000;
    while (this.#lines.length === 0) {
      if (this.#ended) return null;
      if (Date.now() > deadline) throw new Error("no reply within 30 s");
      await new Promise<void>((r) => {
        this.#waiter = r;
        setTimeout(r, 1000).unref();
      });
    }
    return this.#lines.shift() as string;
  }
}

describe("net lanes", { skip: LANES ? false : "the native addon is not built" }, () => {
  const data = tempDir("net-lanes");
  const nodes: FerryNode[] = [];
  let sha = "";
  before(async () => {
    const ca = await testAuthority();
    for (const name of ["n1", "n2", "n3", "n4"]) {
      const tls = await localNode(ca, name, "127.0.0.1");
      // n4's processes hibernate once they have waited 300 ms.
      const limits = name === "n4" ? { limits: { hibernate_after_ms: 300 } } : {};
      nodes.push(await FerryNode.start({ name, host: "127.0.0.1", port: 0, peers: [], data_dir: path.join(data, name), tls, net_lanes: name !== "n3", ...limits }));
    }
    for (const n of nodes) n.addPeers(nodes.map((m) => m.address));
    for (const n of nodes) sha = await upload(n.address, path.join(EXAMPLES, "c", "kvserver.wasm"));
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    fs.rmSync(data, { recursive: true, force: true });
  });

  it("replies go on the lane; one dropped mid-stream, a move with replies on their way, a runner without lanes and a hibernation lose nothing", { timeout: 180_000 }, async () => {
    const [n1, n2] = nodes as [FerryNode, FerryNode];
    const doors = n1.net_lane_doors;
    const created = await json<{ pid: string; listen: string[] }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "kvserver.wasm", args: ["--quiet"], listen: ["127.0.0.1:0"], node: "n1" });
    const pid = created.pid;
    const move = async (to: string, strategy: string): Promise<void> => {
      const r = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to, strategy });
      assert.equal(r.status, 200, `${strategy} to ${to}: ${r.body.toString()}`);
    };
    const port = Number((created.listen[0] as string).split(":").pop());
    const client = new Lines(await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: "127.0.0.1", port }, () => resolve(s));
      s.once("error", reject);
    }));
    let n = 0;
    const roundTrip = async (): Promise<void> => {
      n += 1;
      client.socket.write(`ECHO rt ${n}\n`);
      assert.equal(await client.line(), `rt ${n}`);
    };
    /** Round trips until `check` holds (a lane is opened after the line attaches, and again a second after one fails). */
    const roundTripsUntil = async (what: string, check: () => boolean): Promise<void> => {
      const deadline = Date.now() + 60_000;
      while (!check()) {
        assert.ok(Date.now() < deadline, `waited 60 s for ${what}`);
        await roundTrip();
      }
    };
    /** Many requests in one write; after `at` replies, `meanwhile` runs; every reply must come, in order. */
    const burst = async (count: number, at: number, meanwhile: () => Promise<void>): Promise<void> => {
      const tag = `b${n}`;
      client.socket.write(Array.from({ length: count }, (_, i) => `ECHO ${tag} ${i} ${"x".repeat(i % 300)}\n`).join(""));
      let during: Promise<void> | null = null;
      for (let i = 0; i < count; i += 1) {
        if (i === at) during = meanwhile();
        assert.equal(await client.line(), `${tag} ${i} ${"x".repeat(i % 300)}`, `reply ${i} of burst ${tag}`);
      }
      await during;
    };

    // At home: no lane.
    for (let i = 0; i < 20; i += 1) await roundTrip();
    assert.equal(doors.bytes, 0);
    await move("n2", "stop-copy");
    await roundTripsUntil("replies on a lane", () => doors.bytes > 0);
    assert.equal(doors.size, 1);
    const on_lane = doors.bytes;
    for (let i = 0; i < 50; i += 1) await roundTrip();
    assert.ok(doors.bytes >= on_lane + 50 * "rt 100\n".length - 50, "the replies after the first go on the lane");

    // The home drops the lane with replies on it: they come again on the channel. This thread runs the home (and
    // the runner's own thread), so holding it lets the worker fill the lane's socket with replies the home never reads.
    await burst(3000, 400, async () => {
      const t0 = performance.now();
      while (performance.now() - t0 < 50);
      doors.close();
    });
    await roundTripsUntil("a new lane", () => doors.size === 1 && doors.bytes > on_lane + 50 * 6);
    const reopened = doors.bytes;
    await roundTripsUntil("replies on the new lane", () => doors.bytes > reopened);

    // Moves with replies on their way: the source's lane closes, and the destination opens its own.
    await burst(3000, 300, () => move("n1", "pre-copy"));
    assert.equal(doors.size, 0, "no lane while it runs at home");
    await burst(2000, 200, () => move("n2", "post-copy"));
    await roundTripsUntil("a lane from the new runner", () => doors.size === 1);

    // A runner with lanes off: its replies go on its channel only.
    await move("n3", "stop-copy");
    await roundTripsUntil("n2's lane closed", () => doors.size === 0);
    const before_n3 = doors.bytes;
    await burst(1000, 100, async () => undefined);
    assert.equal(doors.bytes, before_n3);
    assert.equal(doors.size, 0);

    // A runner whose process hibernates: the worker that wakes it does not write on the lane the first one took
    // (it cannot know how many records that one sealed); the runner opens a new lane.
    const n4 = nodes[3] as FerryNode;
    await move("n4", "stop-copy");
    await roundTripsUntil("a lane from n4", () => doors.size === 1 && doors.bytes > before_n3);
    const accepted = doors.accepted;
    const deadline = Date.now() + 60_000;
    while (n4.table.hibernated().count === 0) {
      assert.ok(Date.now() < deadline, "the server did not hibernate within 60 s");
      await new Promise((r) => setTimeout(r, 50));
    }
    await burst(500, 50, async () => undefined);
    await roundTripsUntil("a new lane after the wake", () => doors.accepted > accepted && doors.size === 1);
    const after_wake = doors.bytes;
    await roundTripsUntil("replies on the new lane", () => doors.bytes > after_wake);

    client.socket.write("QUIT\n");
    assert.equal(await client.line(), "BYE");
    assert.equal(await client.line(), null);
    assert.deepEqual(client.errors, []);
    assert.equal(n2.net_lane_doors.size, 0, "the runner serves no lanes of its own");
    assert.equal((await request(n1.address, "DELETE", `/v1/processes/${pid}`)).status, 200);
  });
});


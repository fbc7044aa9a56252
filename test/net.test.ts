/**
 * TCP connections that survive migration (issue 5): a key-value server
 * started with a listening socket on its home node keeps serving one client
 * connection while it is moved between three node daemons (separate OS
 * processes on 127.0.0.1). Every reply must be right and in order, with no
 * reconnect; the client sees one connection from start to end.
 */
import assert from "node:assert/strict";
import net from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { remotePagesAvailability } from "../src/memory/mod.js";
import { EXAMPLES, ferry, prng, testSeed } from "./_helpers.js";
import { json, outputOf, request, startCluster, upload, type NodeProc } from "./_cluster.js";

const STRATEGIES = remotePagesAvailability().available ? ["stop-copy", "pre-copy", "post-copy", "hybrid"] : ["stop-copy", "pre-copy"];
const NAMES = ["n1", "n2", "n3"];

/** A client on one connection that reads replies line by line. */
class LineClient {
  readonly socket: net.Socket;
  #buffer = "";
  #lines: string[] = [];
  #waiters: ((line: string | null) => void)[] = [];
  #ended = false;
  closes = 0;
  errors: Error[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.#buffer += chunk;
      for (let i = this.#buffer.indexOf("\n"); i >= 0; i = this.#buffer.indexOf("\n")) {
        this.#push(this.#buffer.slice(0, i));
        this.#buffer = this.#buffer.slice(i + 1);
      }
    });
    socket.on("error", (err) => this.errors.push(err));
    socket.on("end", () => {
      this.#ended = true;
      for (const w of this.#waiters.splice(0)) w(null);
    });
    socket.on("close", () => (this.closes += 1));
  }

  static connect(address: string): Promise<LineClient> {
    const i = address.lastIndexOf(":");
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)) }, () => resolve(new LineClient(socket)));
      socket.once("error", reject);
    });
  }

  #push(line: string): void {
    const w = this.#waiters.shift();
    if (w !== undefined) w(line);
    else this.#lines.push(line);
  }

  /** The next reply line, or null at the end of the stream. */
  line(timeout_ms = 30_000): Promise<string | null> {
    const ready = this.#lines.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.#ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no reply within the time limit")), timeout_ms);
      this.#waiters.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  }

  write(text: string): void {
    this.socket.write(text);
  }
}

describe("TCP connections across migrations", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  let sha = "";
  let flood_sha = "";
  before(async () => {
    cluster = await startCluster(NAMES);
    n1 = cluster.nodes[0] as NodeProc;
    for (const n of cluster.nodes) {
      sha = await upload(n.address, path.join(EXAMPLES, "c", "kvserver.wasm"));
      flood_sha = await upload(n.address, path.join(EXAMPLES, "c", "flood.wasm"));
    }
  });
  after(() => cluster.stop());

  async function startServer(node = "n1"): Promise<{ pid: string; address: string }> {
    const r = await json<{ pid: string; listen: string[] }>(n1.address, "POST", "/v1/processes", {
      module_sha256: sha,
      module_name: "kvserver.wasm",
      args: [],
      listen: ["127.0.0.1:0"],
      node,
    });
    assert.equal(r.listen.length, 1);
    return { pid: r.pid, address: r.listen[0] as string };
  }

  async function move(pid: string, i: number, random: () => number): Promise<string> {
    const info = await json<{ node: string; state: string }>(n1.address, "GET", `/v1/processes/${pid}`);
    assert.equal(info.state, "running");
    const others = NAMES.filter((n) => n !== info.node);
    const to = others[Math.floor(random() * others.length)] as string;
    const strategy = STRATEGIES[i % STRATEGIES.length] as string;
    const r = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to, strategy });
    assert.equal(r.status, 200, `${strategy} of ${pid} to ${to}: ${r.body.toString()}`);
    return `${strategy}->${to}`;
  }

  it("a client holds one connection to the kv server while it migrates 10 times: every reply correct, in order, no reconnect", async () => {
    const random = prng(testSeed());
    const { pid, address } = await startServer();
    const client = await LineClient.connect(address);
    const model = new Map<string, string>();
    let commands = 0;
    const check = async (command: string, want: string): Promise<void> => {
      client.write(`${command}\n`);
      commands += 1;
      assert.equal(await client.line(), want, `reply to ${command}`);
    };
    const moves: string[] = [];
    let moving: Promise<void> | null = null;
    for (let round = 0; moves.length < 10; round += 1) {
      // Requests keep flowing while a move is under way: some are in flight at the stop.
      if (moving === null) {
        moving = move(pid, moves.length, random).then((m) => {
          moves.push(m);
          moving = null;
        });
      }
      for (let k = 0; k < 20; k += 1) {
        const key = `k${Math.floor(random() * 50)}`;
        const op = random();
        if (op < 0.5) {
          const value = `v${round}.${k}.${"x".repeat(Math.floor(random() * 300))}`;
          model.set(key, value);
          await check(`SET ${key} ${value}`, "OK");
        } else if (op < 0.8) {
          await check(`GET ${key}`, model.has(key) ? `VALUE ${model.get(key)}` : "NOTFOUND");
        } else {
          const text = `${round} ${k} ${"e".repeat(Math.floor(random() * 2000))}`;
          await check(`ECHO ${text}`, text);
        }
      }
    }
    await moving;
    // Pipelined: many requests in one write, replies in order.
    const burst = Array.from({ length: 500 }, (_, i) => `ECHO burst ${i}`);
    client.write(`${burst.join("\n")}\n`);
    for (let i = 0; i < burst.length; i += 1) assert.equal(await client.line(), `burst ${i}`);
    await check("COUNT", `COUNT ${model.size}`);
    await check("QUIT", "BYE");
    assert.equal(await client.line(), null, "the server ends the connection after BYE");
    assert.deepEqual(client.errors, [], "no reset, no error");
    assert.equal(moves.length, 10);

    // The server keeps serving new connections after all those moves.
    const second = await LineClient.connect(address);
    second.write("GET k1\nSHUTDOWN\n");
    assert.equal(await second.line(), model.has("k1") ? `VALUE ${model.get("k1")}` : "NOTFOUND");
    assert.equal(await second.line(), "BYE");
    const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
    assert.deepEqual(status, { kind: "exit", code: 0 });
    const out = (await outputOf(n1.address, pid)).stdout.toString();
    assert.match(out, /connection 1 open[\s\S]*connection 1 closed[\s\S]*served 2 connections/);
    assert.ok(commands > 200);
  });

  it("bulk traffic both ways through the flow-control windows while the server moves: every byte once, in order", async () => {
    const random = prng(testSeed());
    const { pid, address } = await startServer("n2");
    const client = await LineClient.connect(address);
    const N = 6000;
    const line = (i: number): string => `${i} ${String.fromCharCode(97 + (i % 26)).repeat(200 + ((i * 7919) % 1800))}`;
    // Written all at once: several MB queue up in the home, the server's ring and its send window.
    client.write(Array.from({ length: N }, (_, i) => `ECHO ${line(i)}\n`).join(""));
    // Each move comes with megabytes still on their way in and replies on their way out.
    let moves = 0;
    for (let i = 0; i < N; i += 1) {
      if (i % 1500 === 700) {
        await move(pid, moves, random);
        moves += 1;
      }
      assert.equal(await client.line(), line(i), `reply ${i}`);
    }
    assert.equal(moves, 4);
    client.write("SHUTDOWN\n");
    assert.equal(await client.line(), "BYE");
    assert.equal(await client.line(), null);
    assert.deepEqual(client.errors, []);
    const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${pid}/wait`);
    assert.deepEqual(status, { kind: "exit", code: 0 });
  });

  it("ferry run --listen: the CLI prints the address; a bad or taken address is refused", async () => {
    const file = path.join(EXAMPLES, "c", "kvserver.wasm");
    const r = await ferry(["run", "--cluster", n1.address, "--listen", "127.0.0.1:0", "--json", file]);
    assert.equal(r.status, 0, r.stderr.toString());
    const created = JSON.parse(r.stdout.toString()) as { pid: string; listen: string[] };
    assert.match(created.listen[0] ?? "", /^127\.0\.0\.1:\d+$/);
    const info = await json<{ listen: string[] }>(n1.address, "GET", `/v1/processes/${created.pid}`);
    assert.deepEqual(info.listen, created.listen);
    const taken = await ferry(["run", "--cluster", n1.address, "--listen", created.listen[0] as string, file]);
    assert.equal(taken.status, 125, taken.stderr.toString());
    assert.match(taken.stderr.toString(), /ERR_LISTEN/);
    const c = await LineClient.connect(created.listen[0] as string);
    c.write("ECHO hi\n");
    assert.equal(await c.line(), "hi");
    const ps = await ferry(["ps", "--cluster", n1.address]);
    const row = ps.stdout.toString().split("\n").find((l) => l.startsWith(`${created.pid} `)) ?? "";
    assert.ok(row.includes(`${created.listen[0]} (1 conn)`), ps.stdout.toString());
    c.write("ECHO hi\nSHUTDOWN\n");
    assert.equal(await c.line(), "hi");
    assert.equal(await c.line(), "BYE");
    const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${created.pid}/wait`);
    assert.deepEqual(status, { kind: "exit", code: 0 });
  });

  it("killing a server that runs away from its home ends its clients' connections and frees its port", async () => {
    const { pid, address } = await startServer("n1");
    const c = await LineClient.connect(address);
    c.write("SET a 1\n");
    assert.equal(await c.line(), "OK");
    const r = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n3", strategy: "stop-copy" });
    assert.equal(r.status, 200, r.body.toString());
    c.write("GET a\n");
    assert.equal(await c.line(), "VALUE 1");
    const killed = await request(n1.address, "DELETE", `/v1/processes/${pid}`);
    assert.equal(killed.status, 200, killed.body.toString());
    assert.equal(await c.line(10_000), null, "the client sees the end of the stream");
    // The address is free again: another process can listen there.
    const again = await json<{ pid: string; listen: string[] }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "kvserver.wasm", args: [], listen: [address] });
    assert.deepEqual(again.listen, [address]);
    const d = await LineClient.connect(address);
    d.write("SHUTDOWN\n");
    assert.equal(await d.line(), "BYE");
    await json(n1.address, "GET", `/v1/processes/${again.pid}/wait`);
  });

  it("a server blocked writing to a client that does not read is migrated there, and the client still gets every byte once", async () => {
    const BYTES = 32 * 1024 * 1024;
    const created = await json<{ pid: string; listen: string[] }>(n1.address, "POST", "/v1/processes", {
      module_sha256: flood_sha,
      module_name: "flood.wasm",
      args: [String(BYTES)],
      listen: ["127.0.0.1:0"],
      node: "n2",
    });
    const { host, port } = { host: "127.0.0.1", port: Number((created.listen[0] as string).split(":").pop()) };
    const socket = net.connect({ host, port, allowHalfOpen: true });
    await new Promise<void>((r) => socket.once("connect", () => r()));
    socket.pause();
    // Everything in between fills up; the server waits in write() for the client to read.
    await new Promise((r) => setTimeout(r, 500));
    for (const [to, strategy] of [["n3", STRATEGIES[1]], ["n1", STRATEGIES[STRATEGIES.length - 1]], ["n2", "stop-copy"]] as const) {
      const r = await request(n1.address, "POST", `/v1/processes/${created.pid}/migrate`, { to, strategy });
      assert.equal(r.status, 200, `${strategy} to ${to}: ${r.body.toString()}`);
    }
    let count = 0;
    let bad = -1;
    socket.on("data", (chunk: Buffer) => {
      for (let k = 0; k < chunk.length && bad < 0; k += 1) {
        const i = count + k;
        if (chunk[k] !== (i * 7 + Math.floor(i / 65536)) % 251) bad = i;
      }
      count += chunk.length;
    });
    socket.resume();
    await new Promise<void>((r) => socket.once("end", () => r()));
    socket.end(`${bad < 0 ? "OK" : `BAD at ${bad}`} ${count}`);
    const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${created.pid}/wait`);
    assert.deepEqual(status, { kind: "exit", code: 0 });
    const out = (await outputOf(n1.address, created.pid)).stdout.toString();
    assert.equal(out, `flood: wrote ${BYTES} bytes; client says: OK ${BYTES}\n`);
  });
});

/**
 * The CLI's cluster commands against a fake cluster: two in-memory nodes
 * speaking just enough of the control API (docs/cluster.md), with output
 * streams cut at awkward places and a connection that drops mid-stream. The
 * real `ferry` runs as a child process.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ferry, tempDir, type RunResult } from "./_helpers.js";
import { testAuthority } from "./_cluster.js";
import { localNode } from "../src/cli/_identity.js";
import type { ClusterTls } from "../src/trust/mod.js";

type Status = { kind: "exit"; code: number } | { kind: "trap"; message: string } | { kind: "killed" };

interface FakeProcess {
  pid: string;
  home: string;
  node: string;
  state: string;
  module_name: string;
  args: string[];
  exit: Status | null;
  /** How it ends: decided by its first argument (`trap`, `hang` until killed, else exit 3). */
  final: Status | null;
  waiters: (() => void)[];
  /** Follow streams opened so far (the `drop` program loses its first one). */
  follows: number;
}

interface Chunk {
  stream: "stdout" | "stderr";
  offset: number;
  data: Buffer;
}

/** Every process writes this, in this order: binary, invalid UTF-8, multi-byte characters, no final newline. */
const CHUNKS: Chunk[] = [];
{
  const pieces: [Chunk["stream"], Buffer][] = [
    ["stdout", Buffer.concat([Buffer.from("hello\n"), Buffer.from([0x00, 0xff, 0xfe, 0x0d])])],
    ["stderr", Buffer.from("warn: ✓\n")],
    ["stdout", Buffer.from("déjà line\r\n")],
    ["stderr", Buffer.from([0x80, 0x0a])],
    ["stdout", Buffer.from("world")],
  ];
  const offsets = { stdout: 0, stderr: 0 };
  for (const [stream, data] of pieces) {
    CHUNKS.push({ stream, offset: offsets[stream], data });
    offsets[stream] += data.length;
  }
}
const STDOUT = Buffer.concat(CHUNKS.filter((c) => c.stream === "stdout").map((c) => c.data));
const STDERR = Buffer.concat(CHUNKS.filter((c) => c.stream === "stderr").map((c) => c.data));

/** Serialises an event the way a server may: LF or CRLF lines, data over several lines, comments, ids. */
function sseEvent(event: string, value: unknown, n: number): string {
  const eol = n % 2 === 0 ? "\n" : "\r\n";
  // Pretty-printed JSON spreads the data over several `data:` lines, which the client joins with LF.
  const json = n % 3 === 0 ? JSON.stringify(value, null, 1) : JSON.stringify(value);
  const data = json.split("\n").map((line) => `data: ${line}${eol}`).join("");
  return `: comment ${n}${eol}event: ${event}${eol}id: ${n}${eol}${data}${eol}`;
}

/** Writes `text` in pieces of 1, 7, 3, 13, 2... bytes, each after a pause, so they reach the client apart. */
async function writeAwkwardly(res: http.ServerResponse, text: string): Promise<void> {
  const bytes = Buffer.from(text);
  const sizes = [1, 7, 3, 13, 2, 5];
  for (let at = 0, k = 0; at < bytes.length && !res.destroyed; k += 1) {
    const size = sizes[k % sizes.length] as number;
    res.write(bytes.subarray(at, at + size));
    at += size;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

class FakeCluster {
  readonly processes = new Map<string, FakeProcess>();
  readonly nodes: FakeNode[] = [];

  async start(names: string[]): Promise<void> {
    for (const name of names) {
      const node = new FakeNode(name, this, await localNode(await testAuthority(), name, "127.0.0.1"));
      await node.listen();
      this.nodes.push(node);
    }
  }

  node(name: string): FakeNode | undefined {
    return this.nodes.find((n) => n.name === name);
  }

  finish(p: FakeProcess, status: Status): void {
    p.exit = status;
    p.state = status.kind === "killed" ? "killed" : status.kind === "trap" ? "failed" : "exited";
    for (const w of p.waiters.splice(0)) w();
  }

  async close(): Promise<void> {
    for (const n of this.nodes) {
      n.server.closeAllConnections();
      await new Promise((resolve) => n.server.close(resolve));
    }
  }
}

class FakeNode {
  readonly server: http.Server;
  readonly modules = new Map<string, Buffer>();
  /** `METHOD /path?query` of every request, in order. */
  readonly log: string[] = [];
  /** Bodies of POST /v1/processes. */
  readonly created: Record<string, unknown>[] = [];
  address = "";
  #next = 1;

  constructor(
    readonly name: string,
    readonly cluster: FakeCluster,
    tls: ClusterTls,
  ) {
    // It speaks TLS with a node certificate of the test CA, as a real node does.
    this.server = https.createServer(tls.serverOptions(), (req, res) => {
      this.log.push(`${req.method} ${req.url}`);
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, { error: { code: "ERR_INTERNAL", message: String(err) } });
      });
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.address = `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://fake");
    const parts = url.pathname.split("/").slice(1);
    const body = await readBody(req);
    const route = `${req.method} /${parts.slice(0, 2).join("/")}`;
    if (route === "GET /v1/nodes") {
      const list = this.cluster.nodes.map((n) => ({
        name: n.name,
        address: n.address,
        up: true,
        processes: [...this.cluster.processes.values()].filter((p) => p.node === n.name).length,
        page_tracker: "portable",
        post_copy: n.name === "n1",
      }));
      send(res, 200, [...list, { name: "n3", address: "127.0.0.1:1", up: false, processes: 0 }]);
      return;
    }
    if (route === "HEAD /v1/modules" || route === "PUT /v1/modules") {
      const sha = parts[2] ?? "";
      if (req.method === "HEAD") {
        res.writeHead(this.modules.has(sha) ? 200 : 404).end();
        return;
      }
      if (createHash("sha256").update(body).digest("hex") !== sha) {
        send(res, 400, { error: { code: "ERR_MODULE_HASH", message: "the bytes do not hash to the name" } });
        return;
      }
      this.modules.set(sha, body);
      send(res, 201, { sha256: sha });
      return;
    }
    if (route === "POST /v1/processes") {
      const spec = JSON.parse(body.toString("utf8")) as { module_sha256: string; module_name: string; args: string[]; node?: string };
      this.created.push(spec as unknown as Record<string, unknown>);
      const target = spec.node === undefined ? this : this.cluster.node(spec.node);
      if (target === undefined) return send(res, 404, { error: { code: "ERR_NO_SUCH_NODE", message: `no node ${spec.node}` } });
      if (!target.modules.has(spec.module_sha256)) {
        return send(res, 409, { error: { code: "ERR_MODULE_MISSING", message: `module not on ${target.name}` } });
      }
      const pid = `${this.name}-${this.#next++}`;
      const how = spec.args[0];
      const final: Status | null = how === "trap" ? { kind: "trap", message: "unreachable" } : how === "hang" ? null : { kind: "exit", code: 3 };
      const p: FakeProcess = { pid, home: this.name, node: target.name, state: "running", module_name: spec.module_name, args: spec.args, exit: null, final, waiters: [], follows: 0 };
      this.cluster.processes.set(pid, p);
      if (final !== null) this.cluster.finish(p, final);
      send(res, 201, { pid, node: target.name });
      return;
    }
    if (route === "GET /v1/processes" && parts.length === 2) {
      send(res, 200, [...this.cluster.processes.values()].map(publicView));
      return;
    }
    const p = this.cluster.processes.get(decodeURIComponent(parts[2] ?? ""));
    if (p === undefined) return send(res, 404, { error: { code: "ERR_NO_SUCH_PROCESS", message: `no process ${parts[2]}` } });
    const what = `${req.method} ${parts[3] ?? ""}`;
    if (what === "GET ") return send(res, 200, publicView(p));
    if (what === "DELETE ") {
      if (p.exit === null) this.cluster.finish(p, { kind: "killed" });
      return send(res, 200, { pid: p.pid, status: p.exit });
    }
    if (what === "GET wait") {
      if (p.exit === null) await new Promise<void>((resolve) => p.waiters.push(resolve));
      return send(res, 200, { status: p.exit });
    }
    if (what === "GET output") return this.#output(p, url.searchParams, res);
    send(res, 404, { error: { code: "ERR_NOT_FOUND", message: `no route ${req.method} ${url.pathname}` } });
  }

  async #output(p: FakeProcess, query: URLSearchParams, res: http.ServerResponse): Promise<void> {
    const follow = query.get("follow") === "1";
    const first_follow = follow && p.follows++ === 0;
    // After the drop, the fake ignores the offsets asked for: the client must skip what it has seen.
    const honour_offsets = p.args[0] !== "drop";
    const from = { stdout: honour_offsets ? Number(query.get("stdout") ?? 0) : 0, stderr: honour_offsets ? Number(query.get("stderr") ?? 0) : 0 };
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
    res.flushHeaders();
    let n = 0;
    for (const c of CHUNKS) {
      const skip = from[c.stream] - c.offset;
      if (skip >= c.data.length) continue;
      const data = c.data.subarray(Math.max(0, skip));
      await writeAwkwardly(res, sseEvent("output", { stream: c.stream, offset: c.offset + Math.max(0, skip), data: data.toString("base64") }, n++));
      if (p.args[0] === "drop" && first_follow && n === 3) {
        res.destroy(); // the connection breaks in the middle of the stream
        return;
      }
    }
    if (!follow) return void res.end();
    if (p.exit === null) await new Promise<void>((resolve) => p.waiters.push(resolve));
    await writeAwkwardly(res, sseEvent("exit", { status: p.exit }, n++));
    res.end();
  }
}

function publicView(p: FakeProcess): Record<string, unknown> {
  return { pid: p.pid, home: p.home, node: p.node, state: p.state, module_name: p.module_name, args: p.args, exit: p.exit };
}

function send(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of req) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** Polls `probe` until it returns something truthy (tests wait on the fake's state, not for a while). */
async function until<T>(probe: () => T | undefined | false, what: string): Promise<T> {
  for (let tries = 0; tries < 2000; tries += 1) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

function explain(r: RunResult): string {
  return `status ${r.status}\nstdout: ${r.stdout.toString()}\nstderr: ${r.stderr.toString()}`;
}

/** No test may hang the suite: a stuck stream fails its test instead. */
const LIMIT = { timeout: 30_000 };

describe("ferry cluster commands", () => {
  const cluster = new FakeCluster();
  let dir = "";
  let wasm = "";
  let sha = "";
  let n1: FakeNode;
  let n2: FakeNode;
  let closed_port = 0;

  const run = (args: string[], env?: NodeJS.ProcessEnv): Promise<RunResult> => ferry([args[0] as string, "--cluster", n1.address, ...args.slice(1)], { env, timeout_ms: 30_000 });
  const start = async (args: string[]): Promise<string> => {
    const r = await run(["run", wasm, ...args]);
    assert.equal(r.status, 0, explain(r));
    return r.stdout.toString().trim();
  };

  before(async () => {
    await cluster.start(["n1", "n2"]);
    [n1, n2] = cluster.nodes as [FakeNode, FakeNode];
    dir = tempDir("cli-cluster");
    wasm = path.join(dir, "prog.wasm");
    const bytes = Buffer.concat([Buffer.from("\0asm\x01\0\0\0"), Buffer.from(dir)]);
    fs.writeFileSync(wasm, bytes);
    sha = createHash("sha256").update(bytes).digest("hex");
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    closed_port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
  });

  after(async () => {
    await cluster.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const command of ["run", "ps", "logs", "wait", "kill", "nodes"]) {
    it(`ferry ${command} --help and -h print usage and exit 0`, LIMIT, async () => {
      for (const flag of ["--help", "-h"]) {
        const r = await ferry([command, flag]);
        assert.equal(r.status, 0, explain(r));
        assert.match(r.stdout.toString(), new RegExp(`^Usage: ferry ${command} `));
        assert.match(r.stdout.toString(), /--cluster HOST:PORT/);
      }
    });
  }

  it("usage errors exit 2 and say what is wrong", LIMIT, async () => {
    const cases: [string[], RegExp][] = [
      [["run"], /missing PROGRAM/],
      [["run", "--attach", "--json", wasm], /do not go together/],
      [["run", "--env", "NOEQUALS", wasm], /want K=V/],
      [["run", "--listen", "9000", wasm], /--listen "9000": want HOST:PORT/],
      [["run", path.join(dir, "missing.wasm")], /cannot read module/],
      [["wait"], /missing PID/],
      [["kill", "n1-1", "n1-2"], /exactly one PID/],
      [["ps", "extra"], /unexpected argument/],
      [["nodes", "--bogus"], /unknown option --bogus/],
      [["ps", "--cluster", "nohost"], /want HOST:PORT/],
    ];
    for (const [args, message] of cases) {
      const r = await ferry(args);
      assert.equal(r.status, 2, `ferry ${args.join(" ")}: ${explain(r)}`);
      assert.match(r.stderr.toString(), message);
    }
  });

  it("an unreachable cluster exits 125 with ERR_CLUSTER_UNREACHABLE and says to start one", LIMIT, async () => {
    const down = `127.0.0.1:${closed_port}`;
    for (const args of [["ps", "--cluster", down], ["run", "--cluster", down, wasm], ["wait", "--cluster", down, "n1-1"]]) {
      const r = await ferry(args);
      assert.equal(r.status, 125, explain(r));
      assert.match(r.stderr.toString(), /^ferry \w+: .*ferry up.*\(ERR_CLUSTER_UNREACHABLE\)\n$/);
    }
    // FERRY_CLUSTER is where it looks without --cluster.
    const r = await ferry(["nodes"], { env: { FERRY_CLUSTER: down } });
    assert.equal(r.status, 125);
    assert.match(r.stderr.toString(), new RegExp(`${down}.*ERR_CLUSTER_UNREACHABLE`));
  });

  it("--cluster and FERRY_CLUSTER take a list: a node that does not answer is passed over for the next; none answering names them all", LIMIT, async () => {
    const down = `127.0.0.1:${closed_port}`;
    const r = await ferry(["nodes", "--json", "--cluster", `${down},${n1.address}`]);
    assert.equal(r.status, 0, explain(r));
    assert.deepEqual((JSON.parse(r.stdout.toString()) as { name: string }[]).map((n) => n.name), ["n1", "n2", "n3"]);
    const e = await ferry(["ps", "--json"], { env: { FERRY_CLUSTER: `${down}, ${n2.address}` } });
    assert.equal(e.status, 0, explain(e));
    const none = await ferry(["ps", "--cluster", `${down},127.0.0.1:1`]);
    assert.equal(none.status, 125, explain(none));
    assert.match(none.stderr.toString(), new RegExp(`any of ${down}, 127\\.0\\.0\\.1:1: .*\\(ERR_CLUSTER_UNREACHABLE\\)`));
    const bad = await ferry(["ps", "--cluster", `${n1.address},nohost`]);
    assert.equal(bad.status, 2, explain(bad));
    assert.match(bad.stderr.toString(), /want HOST:PORT/);
  });

  it("run uploads the module only where it is missing, then creates the process", LIMIT, async () => {
    const before_log = n1.log.length;
    const first = await run(["run", "--env", "A=1", "--dir", ".:/work", "--dir", dir, wasm, "x y", "--help"]);
    assert.equal(first.status, 0, explain(first));
    assert.match(first.stdout.toString(), /^n1-\d+\n$/);
    assert.deepEqual(n1.log.slice(before_log, before_log + 3), [`HEAD /v1/modules/${sha}`, `PUT /v1/modules/${sha}`, "POST /v1/processes"]);
    assert.deepEqual(n1.created.at(-1), {
      module_sha256: sha,
      module_name: "prog.wasm",
      args: ["x y", "--help"],
      env: ["A=1"],
      dirs: [
        { host: process.cwd(), guest: "/work" },
        { host: dir, guest: dir },
      ],
    });
    const mark = n1.log.length;
    const second = await run(["run", "--json", wasm]);
    assert.equal(second.status, 0, explain(second));
    assert.deepEqual(n1.log.slice(mark), [`HEAD /v1/modules/${sha}`, "POST /v1/processes"]);
    const answer = JSON.parse(second.stdout.toString()) as { pid: string; node: string };
    assert.match(answer.pid, /^n1-\d+$/);
    assert.equal(answer.node, "n1");
  });

  it("run --node uploads to the target node too and asks the cluster node to place it there", LIMIT, async () => {
    const r = await run(["run", "--node", "n2", "--json", wasm]);
    assert.equal(r.status, 0, explain(r));
    assert.equal((JSON.parse(r.stdout.toString()) as { node: string }).node, "n2");
    assert.ok(n2.log.includes(`PUT /v1/modules/${sha}`), n2.log.join("\n"));
    assert.equal(n1.created.at(-1)?.["node"], "n2");
    assert.ok(!n2.log.includes("POST /v1/processes"), "the CLI talks to the --cluster node only");
    const unknown = await run(["run", "--node", "nope", wasm]);
    assert.equal(unknown.status, 125);
    assert.match(unknown.stderr.toString(), /nodes: n1, n2, n3.*\(ERR_NO_SUCH_NODE\)/);
    const down = await run(["run", "--node", "n3", wasm]);
    assert.equal(down.status, 125);
    assert.match(down.stderr.toString(), /\(ERR_NODE_DOWN\)/);
  });

  it("run --attach relays stdout and stderr byte for byte and exits with the program's status", LIMIT, async () => {
    const r = await run(["run", "--attach", wasm]);
    assert.equal(r.status, 3, explain(r));
    assert.deepEqual(r.stdout, STDOUT);
    assert.deepEqual(r.stderr, STDERR);
  });

  it("run --attach exits 134 when the program traps", LIMIT, async () => {
    const r = await run(["run", "--attach", wasm, "trap"]);
    assert.equal(r.status, 134, explain(r));
    assert.deepEqual(r.stdout, STDOUT);
    assert.match(r.stderr.toString(), /the program trapped: unreachable/);
  });

  it("logs prints the output so far; -f follows it to the end; both exit 0", LIMIT, async () => {
    const pid = await start([]);
    for (const args of [["logs", pid], ["logs", "-f", pid], ["logs", "--follow", pid]]) {
      const r = await run(args);
      assert.equal(r.status, 0, explain(r));
      assert.deepEqual(r.stdout, STDOUT);
      assert.deepEqual(r.stderr, STDERR);
    }
    const missing = await run(["logs", "n1-999"]);
    assert.equal(missing.status, 125);
    assert.match(missing.stderr.toString(), /^ferry logs: no process n1-999 \(ERR_NO_SUCH_PROCESS\)\n$/);
  });

  it("logs -f picks a dropped stream up from its offsets and writes each byte once", LIMIT, async () => {
    const pid = await start(["drop"]);
    const mark = n1.log.length;
    const r = await run(["logs", "-f", pid]);
    assert.equal(r.status, 0, explain(r));
    assert.deepEqual(r.stdout, STDOUT);
    assert.deepEqual(r.stderr, STDERR);
    const outputs = n1.log.slice(mark).filter((l) => l.includes("/output"));
    assert.equal(outputs.length, 2, outputs.join("\n"));
    // The first three events were stdout, stderr, stdout.
    const seen_stdout = (CHUNKS[0] as Chunk).data.length + (CHUNKS[2] as Chunk).data.length;
    assert.equal(outputs[1], `GET /v1/processes/${pid}/output?follow=1&stdout=${seen_stdout}&stderr=${(CHUNKS[1] as Chunk).data.length}`);
  });

  it("wait exits with the process's status; --json prints it", LIMIT, async () => {
    const pid = await start([]);
    const r = await run(["wait", pid]);
    assert.equal(r.status, 3, explain(r));
    assert.equal(r.stdout.length, 0);
    const j = await run(["wait", "--json", pid]);
    assert.equal(j.status, 3);
    assert.deepEqual(JSON.parse(j.stdout.toString()), { kind: "exit", code: 3 });
    const trapped = await run(["wait", await start(["trap"])]);
    assert.equal(trapped.status, 134);
    const missing = await run(["wait", "n1-999"]);
    assert.equal(missing.status, 125);
    assert.match(missing.stderr.toString(), /\(ERR_NO_SUCH_PROCESS\)/);
  });

  it("kill ends a running process; waiters and attached clients see 137", LIMIT, async () => {
    const pid = await start(["hang"]);
    const following = run(["logs", "-f", pid]);
    const waiting = run(["wait", pid]);
    const attached = run(["run", "--attach", wasm, "hang"]);
    // Kill only once every client is connected: the two on `pid`, and the one that started another process.
    await until(() => n1.log.filter((l) => l.startsWith(`GET /v1/processes/${pid}/`)).length >= 2, "logs -f and wait to connect");
    const other = await until(() => [...cluster.processes.values()].find((p) => p.args[0] === "hang" && p.pid !== pid && p.follows > 0), "run --attach to connect");
    const k = await run(["kill", pid]);
    assert.equal(k.status, 0, explain(k));
    assert.equal(k.stdout.toString(), `${pid}\n`);
    const w = await waiting;
    assert.equal(w.status, 137, explain(w));
    assert.match(w.stderr.toString(), /killed/);
    const logs = await following;
    assert.equal(logs.status, 0, explain(logs));
    assert.deepEqual(logs.stdout, STDOUT);
    const kj = await run(["kill", "--json", other.pid]);
    assert.equal(kj.status, 0, explain(kj));
    assert.deepEqual(JSON.parse(kj.stdout.toString()), { pid: other.pid, status: { kind: "killed" } });
    const r = await attached;
    assert.equal(r.status, 137, explain(r));
    assert.deepEqual(r.stdout, STDOUT);
  });

  it("ps prints a table and --json the API's array", LIMIT, async () => {
    await start(["two words", "it's"]);
    const r = await run(["ps"]);
    assert.equal(r.status, 0, explain(r));
    const lines = r.stdout.toString().split("\n");
    assert.match(lines[0] as string, /^PID +NODE +HOME +STATE +LISTEN +PROGRAM +ARGS$/);
    assert.equal(lines.length, cluster.processes.size + 2); // header, rows, final newline
    assert.ok(lines.some((l) => /^n1-\d+ +n1 +n1 +exited\(3\) +- +prog\.wasm +'two words' 'it'\\''s'$/.test(l)), r.stdout.toString());
    assert.ok(lines.some((l) => /^n1-\d+ +n2 +n1 +exited\(3\) +- +prog\.wasm$/.test(l)), r.stdout.toString());
    assert.ok(lines.some((l) => / failed\(trap\) /.test(l)));
    assert.ok(lines.some((l) => / killed /.test(l)));
    const j = await run(["ps", "--json"]);
    assert.deepEqual(JSON.parse(j.stdout.toString()), [...cluster.processes.values()].map(publicView));
  });

  it("nodes prints a table and --json the API's array", LIMIT, async () => {
    const r = await run(["nodes"]);
    assert.equal(r.status, 0, explain(r));
    const lines = r.stdout.toString().trimEnd().split("\n");
    assert.match(lines[0] as string, /^NAME +ADDRESS +UP +STATE +PROCESSES +TRACKER +POST-COPY +CPUS +LOAD +CPU +AGE +LABELS$/);
    // These nodes give no load: its columns are "-" (test/load.test.ts checks them on real nodes).
    assert.match(lines[1] as string, new RegExp(`^n1 +${n1.address} +yes +- +\\d+ +portable +yes +- +- +- +- +-$`));
    assert.match(lines[2] as string, new RegExp(`^n2 +${n2.address} +yes +- +[1-9]\\d* +portable +no +- +- +- +- +-$`));
    assert.match(lines[3] as string, /^n3 +127\.0\.0\.1:1 +no +- +0 +- +- +- +- +- +- +-$/);
    const j = await run(["nodes", "--json"]);
    const list = JSON.parse(j.stdout.toString()) as { name: string; up: boolean }[];
    assert.deepEqual(list.map((n) => [n.name, n.up]), [["n1", true], ["n2", true], ["n3", false]]);
  });
});

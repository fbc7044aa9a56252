/**
 * Node daemons and their control API: three nodes on 127.0.0.1, processes
 * started on any of them through any of them, output read back exactly,
 * exit statuses, kill, and the cluster-wide process list.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { FerryNode } from "../src/node/mod.js";
import { EXAMPLES, tempDir } from "./_helpers.js";
import { request, testAuthority } from "./_cluster.js";
import { localNode } from "../src/cli/_identity.js";

async function json(address: string, method: string, p: string, body?: Buffer | object): Promise<unknown> {
  const r = await request(address, method, p, body);
  assert.ok(r.status < 400, `${method} ${p}: ${r.status} ${r.body.toString()}`);
  return JSON.parse(r.body.toString());
}

/** Reads a process's output events until the stream ends. */
async function output(address: string, pid: string): Promise<{ stdout: string; stderr: string; exit: unknown }> {
  const r = await request(address, "GET", `/v1/processes/${pid}/output?follow=1`);
  const got = { stdout: "", stderr: "", exit: null as unknown };
  for (const block of r.body.toString().split("\n\n")) {
    const name = /^event: (.*)$/m.exec(block)?.[1];
    const data = /^data: (.*)$/m.exec(block)?.[1];
    if (name === "output" && data !== undefined) {
      const e = JSON.parse(data) as { stream: "stdout" | "stderr"; data: string };
      got[e.stream] += Buffer.from(e.data, "base64").toString();
    } else if (name === "exit" && data !== undefined) got.exit = (JSON.parse(data) as { status: unknown }).status;
  }
  return got;
}

describe("node daemons", () => {
  const nodes: FerryNode[] = [];
  const data = tempDir("nodes");
  const wasm = fs.readFileSync(path.join(EXAMPLES, "c", "compute.wasm"));
  const sha = createHash("sha256").update(wasm).digest("hex");

  before(async () => {
    const ca = await testAuthority();
    for (const name of ["n1", "n2", "n3"]) {
      nodes.push(await FerryNode.start({ name, host: "127.0.0.1", port: 0, peers: [], data_dir: path.join(data, name), tls: await localNode(ca, name, "127.0.0.1") }));
    }
    for (const n of nodes) n.addPeers(nodes.map((m) => m.address));
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    fs.rmSync(data, { recursive: true, force: true });
  });

  it("lists every node from any node", async () => {
    const list = (await json(nodes[1]!.address, "GET", "/v1/nodes")) as { name: string; up: boolean }[];
    assert.deepEqual(list.map((n) => n.name).sort(), ["n1", "n2", "n3"]);
    assert.ok(list.every((n) => n.up));
  });

  it("stores modules by hash and refuses bytes that do not match", async () => {
    const a = nodes[0]!.address;
    assert.equal((await request(a, "HEAD", `/v1/modules/${sha}`)).status, 404);
    assert.equal((await request(a, "PUT", `/v1/modules/${sha}`, wasm)).status, 201);
    assert.equal((await request(a, "HEAD", `/v1/modules/${sha}`)).status, 200);
    const wrong = await request(a, "PUT", `/v1/modules/${"0".repeat(64)}`, wasm);
    assert.equal(wrong.status, 400);
    assert.match(wrong.body.toString(), /ERR_MODULE_HASH/);
  });

  it("runs a process, streams its output exactly and reports its exit status", async () => {
    const a = nodes[0]!.address;
    const { pid } = (await json(a, "POST", "/v1/processes", { module_sha256: sha, module_name: "compute.wasm", args: ["3", "4"] })) as { pid: string };
    assert.match(pid, /^n1-\d+$/);
    const out = await output(a, pid);
    assert.match(out.stdout, /round 3\/3/);
    assert.match(out.stderr, /summary rounds=3/);
    assert.deepEqual(out.exit, { kind: "exit", code: 4 });
    assert.deepEqual(await json(a, "GET", `/v1/processes/${pid}/wait`), { status: { kind: "exit", code: 4 } });
    // Reading again from an offset gives only what lies past it.
    const again = await request(a, "GET", `/v1/processes/${pid}/output?stdout=${Buffer.byteLength(out.stdout) - 5}&stderr=${Buffer.byteLength(out.stderr)}`);
    const events = again.body.toString().split("\n\n").filter((b) => b.startsWith("event: output"));
    assert.equal(events.length, 1);
    assert.equal(Buffer.from((JSON.parse(/data: (.*)/.exec(events[0]!)![1]!) as { data: string }).data, "base64").toString(), out.stdout.slice(-5));
  });

  it("starts a process on another node through any node, and answers for it from any node", async () => {
    await request(nodes[2]!.address, "PUT", `/v1/modules/${sha}`, wasm);
    const { pid, node } = (await json(nodes[0]!.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "compute.wasm", args: ["2"], node: "n3" })) as { pid: string; node: string };
    assert.equal(node, "n3");
    assert.match(pid, /^n3-/);
    const status = await json(nodes[1]!.address, "GET", `/v1/processes/${pid}/wait`);
    assert.deepEqual(status, { status: { kind: "exit", code: 0 } });
    const out = await output(nodes[0]!.address, pid);
    assert.match(out.stdout, /round 2\/2/);
    const all = (await json(nodes[1]!.address, "GET", "/v1/processes")) as { pid: string; node: string }[];
    assert.ok(all.some((p) => p.pid === pid && p.node === "n3"));
  });

  it("kills a running process", async () => {
    const a = nodes[0]!.address;
    const { pid } = (await json(a, "POST", "/v1/processes", { module_sha256: sha, module_name: "compute.wasm", args: ["10000"] })) as { pid: string };
    const killed = (await json(nodes[2]!.address, "DELETE", `/v1/processes/${pid}`)) as { status: unknown };
    assert.deepEqual(killed.status, { kind: "killed" });
    const info = (await json(a, "GET", `/v1/processes/${pid}`)) as { state: string };
    assert.equal(info.state, "killed");
  });

  it("a second node on a port in use fails with ERR_ADDRESS_IN_USE", async () => {
    const port = Number(nodes[0]!.address.split(":")[1]);
    await assert.rejects(
      FerryNode.start({ name: "dup", host: "127.0.0.1", port, peers: [], data_dir: path.join(data, "dup"), tls: null }),
      (err: unknown) => (err as { code?: string }).code === "ERR_ADDRESS_IN_USE",
    );
  });

  it("answers errors with codes", async () => {
    const a = nodes[0]!.address;
    const missing = await request(a, "GET", "/v1/processes/n1-999");
    assert.equal(missing.status, 404);
    assert.match(missing.body.toString(), /ERR_NO_SUCH_PROCESS/);
    const noModule = await request(a, "POST", "/v1/processes", { module_sha256: "f".repeat(64) });
    assert.equal(noModule.status, 409);
    assert.match(noModule.body.toString(), /ERR_MODULE_MISSING/);
    const bad = await request(a, "POST", "/v1/processes", Buffer.from("{nope"));
    assert.equal(bad.status, 400);
    const noNode = await request(a, "POST", "/v1/processes", { module_sha256: sha, node: "n9" });
    assert.equal(noNode.status, 404);
    assert.match(noNode.body.toString(), /ERR_NO_SUCH_NODE/);
  });
});

/**
 * Issue 10, items 3 and 4: what an attacker found against a local cluster,
 * pinned. Real nodes on 127.0.0.1, raw requests: malformed input on every
 * route is a 400 and the node keeps answering; host directories only under
 * allowed roots (without saying whether a forbidden path exists); no
 * privileged ports; memory caps that the guest really meets and that travel
 * with it; quotas on incoming migrations, and a standby whose source goes
 * quiet freed; uploads over the limit refused without a trace.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Msg } from "../src/migration/mod.js";
import { connectData } from "../src/node/mod.js";
import type { FramedConnection } from "../src/transport/mod.js";
import { json, nodeDialer, request, startCluster, testOffer, upload, type NodeProc } from "./_cluster.js";
import { EXAMPLES, tempDir } from "./_helpers.js";

const MiB = 1024 * 1024;
/** n1's limits, small enough to hit on purpose. */
const N1_MEMORY_MAX = 256 * MiB;
const N1_STANDBY_MAX = 16 * MiB;
const N1_MODULE_MAX = 128 * 1024;
/** Short, so that the abandoned-offer test is quick; long enough for a loaded machine to prepare a standby. */
const N1_STANDBY_TIMEOUT_MS = 1500;
const N2_MEMORY_MAX = 64 * MiB;

interface NodeInfo {
  name: string;
  standbys: number;
  standby_bytes: number;
  limits: { memory_max_bytes: number; standby_bytes_max: number };
}

/** The error code and message of an error answer. */
function errorOf(r: { status: number; body: Buffer }): { code: string; message: string } {
  const e = (JSON.parse(r.body.toString()) as { error?: { code: string; message: string } }).error;
  assert.ok(e !== undefined, `not an error answer: ${r.status} ${r.body.toString()}`);
  return e;
}

/** Asserts an error answer with `status` and `code`. */
function assertError(r: { status: number; body: Buffer }, status: number, code: string, what: string): { code: string; message: string } {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.body.toString()}`);
  const e = errorOf(r);
  assert.equal(e.code, code, `${what}: ${e.message}`);
  return e;
}

/** The first frame the destination sends after an OFFER, as JSON. */
async function offer(address: string, body: object): Promise<{ conn: FramedConnection; type: number; value: { code?: string; message?: string } }> {
  // A node of the cluster may open a data connection; the OFFER is what is tested.
  const conn = await connectData(await nodeDialer(), address);
  await conn.send(Msg.offer, Buffer.from(JSON.stringify(body)));
  const frame = await conn.next({ timeout_ms: 30_000 });
  return { conn, type: frame.type, value: JSON.parse(Buffer.from(frame.payload).toString()) as { code?: string; message?: string } };
}

describe("input validation, limits and authorization (issue 10)", { timeout: 300_000 }, () => {
  const work = tempDir("security");
  const root = path.join(work, "allowed");
  const outside = path.join(work, "outside");
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  let n2: NodeProc;
  let n3: NodeProc;
  let sleeper_sha: string;
  let memhog_sha: string;
  /** A sleeper on n1 (home n1) that the malformed requests are about. */
  let pid: string;
  const started: { address: string; pid: string }[] = [];

  const run = async (address: string, body: object): Promise<string> => {
    const { pid: p } = await json<{ pid: string }>(address, "POST", "/v1/processes", body);
    started.push({ address, pid: p });
    return p;
  };

  /** A valid OFFER of a process that does not exist anywhere: only its checks matter. */
  const validOffer = (over: object = {}): object =>
    testOffer(n1.address, { module_sha256: sleeper_sha, module_name: "sleeper.wasm", memory_bytes: 4 * MiB, memory_max_bytes: 64 * MiB, ...over });

  before(async () => {
    fs.mkdirSync(path.join(root, "data"), { recursive: true });
    fs.mkdirSync(outside, { recursive: true });
    fs.symlinkSync("/etc", path.join(root, "escape"));
    fs.symlinkSync(path.join(outside, "no-such-dir"), path.join(root, "dangling"));
    cluster = await startCluster(["n1", "n2", "n3"], undefined, (name) => {
      if (name === "n1") {
        return [
          "--allow-dir", root,
          "--memory-max", String(N1_MEMORY_MAX),
          "--max-standby-bytes", String(N1_STANDBY_MAX),
          "--max-module-size", String(N1_MODULE_MAX),
          "--standby-timeout", String(N1_STANDBY_TIMEOUT_MS),
        ];
      }
      if (name === "n2") return ["--allow-dir", root, "--memory-max", "64M", "--allow-low-ports"];
      return ["--max-processes", "1"];
    });
    [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    sleeper_sha = await upload(n1.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
    memhog_sha = await upload(n1.address, path.join(EXAMPLES, "c", "memhog.wasm"));
    await upload(n2.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
    await upload(n3.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
    pid = await run(n1.address, { module_sha256: sleeper_sha, module_name: "sleeper.wasm", args: ["60000", "1000"], memory_max_bytes: 32 * MiB });
  });

  after(async () => {
    // A process that already ended answers with an error: nothing left to stop.
    for (const s of started) await request(s.address, "DELETE", `/v1/processes/${s.pid}`).catch(() => undefined);
    await cluster.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it("regression: a fractional output offset (?stdout=N.5) is a 400, and the node keeps answering", async () => {
    const r = await request(n1.address, "GET", `/v1/processes/${pid}/output?stdout=0.5`);
    assertError(r, 400, "ERR_BAD_REQUEST", "stdout=0.5");
    assert.match(errorOf(r).message, /stdout/);
    const info = await json<NodeInfo>(n1.address, "GET", "/v1/node");
    assert.equal(info.name, "n1");
  });

  it("negative, huge, NaN and oddly written offsets are 400s; a whole offset past the end is an empty answer", async () => {
    for (const q of ["stdout=-1", "stderr=1e3", "stdout=NaN", "stdout=", "stdout=%201", "stdout=0x10", "stdout=99999999999999999", "stdout=Infinity", "follow=2"]) {
      assertError(await request(n1.address, "GET", `/v1/processes/${pid}/output?${q}`), 400, "ERR_BAD_REQUEST", q);
    }
    const past = await request(n1.address, "GET", `/v1/processes/${pid}/output?stdout=${Number.MAX_SAFE_INTEGER}&stderr=0`);
    assert.equal(past.status, 200);
    assert.ok(!past.body.toString().includes(`"stream":"stdout"`), "no stdout past its end");
    assert.equal((await request(n1.address, "GET", "/v1/node")).status, 200);
  });

  it("malformed bodies and queries on every route are 400 ERR_BAD_REQUEST, never 500", async () => {
    const sha = sleeper_sha;
    const cases: [string, string, object | Buffer][] = [
      ["POST", "/v1/processes", Buffer.from("{")],
      ["POST", "/v1/processes", Buffer.from("null")],
      ["POST", "/v1/processes", []],
      ["POST", "/v1/processes", Buffer.from('"text"')],
      ["POST", "/v1/processes", { module_sha256: 1 }],
      ["POST", "/v1/processes", { module_sha256: "ABC" }],
      ["POST", "/v1/processes", { module_sha256: sha, args: "x" }],
      ["POST", "/v1/processes", { module_sha256: sha, args: Array.from({ length: 2000 }, () => "a") }],
      ["POST", "/v1/processes", { module_sha256: sha, args: ["a".repeat(10_000)] }],
      ["POST", "/v1/processes", { module_sha256: sha, args: ["nul\u0000"] }],
      ["POST", "/v1/processes", { module_sha256: sha, env: ["NOEQUALS"] }],
      ["POST", "/v1/processes", { module_sha256: sha, dirs: [{ host: "relative", guest: "/d" }] }],
      ["POST", "/v1/processes", { module_sha256: sha, dirs: [{ host: `${root}/../outside`, guest: "/d" }] }],
      ["POST", "/v1/processes", { module_sha256: sha, dirs: [{ host: `${root}/`, guest: "/d" }] }],
      ["POST", "/v1/processes", { module_sha256: sha, dirs: [{ host: root }] }],
      ["POST", "/v1/processes", { module_sha256: sha, listen: ["nope"] }],
      ["POST", "/v1/processes", { module_sha256: sha, listen: ["127.0.0.1:70000"] }],
      ["POST", "/v1/processes", { module_sha256: sha, memory_max_bytes: 1.5 }],
      ["POST", "/v1/processes", { module_sha256: sha, memory_max_bytes: 100_000 }],
      ["POST", "/v1/processes", { module_sha256: sha, memory_max_bytes: -65536 }],
      ["POST", "/v1/processes", { module_sha256: sha, node: "bad name!" }],
      ["POST", "/v1/processes", { module_sha256: sha, module_name: "" }],
      ["POST", `/v1/processes/${pid}/migrate`, Buffer.from("[")],
      ["POST", `/v1/processes/${pid}/migrate`, {}],
      ["POST", `/v1/processes/${pid}/migrate`, { to: 5 }],
      ["POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy: "warp" }],
      ["POST", `/v1/processes/${pid}/migrate`, { to: "n2", max_downtime_ms: -1 }],
      ["POST", `/v1/processes/${pid}/migrate`, { to: "n2", recover_ms: 0 }],
      ["POST", `/v1/processes/${pid}/migrate`, { to: "n2", recover_ms: 1.5 }],
      ["POST", `/v1/processes/${pid}/migrate`, { to: "n2", push_bytes_per_s: -1 }],
      ["POST", `/v1/processes/${pid}/migrate?progress=yes`, { to: "n2" }],
      ["POST", `/v1/processes/${pid}/migrate?progress=1`, { to: 5 }],
      ["POST", `/v1/processes/${pid}/send`, {}],
      ["POST", `/v1/processes/${pid}/send`, { data: 1 }],
      ["POST", `/v1/processes/${pid}/send`, { data: "x", data_base64: "eA==" }],
      ["POST", `/v1/processes/${pid}/send`, { data_base64: "!!" }],
      ["POST", `/v1/internal/output/${pid}`, {}],
      ["POST", `/v1/internal/output/${pid}`, [{ stream: "stdin", offset: 0, data: "" }]],
      ["POST", `/v1/internal/output/${pid}`, [{ stream: "stdout", offset: 0.5, data: "" }]],
      ["POST", `/v1/internal/output/${pid}`, [{ stream: "stdout", offset: -1, data: "" }]],
      ["POST", `/v1/internal/output/${pid}`, [{ stream: "stdout", offset: 0, data: "***" }]],
      ["POST", `/v1/internal/exit/${pid}`, {}],
      ["POST", `/v1/internal/exit/${pid}`, { status: { kind: "exit" } }],
      ["POST", `/v1/internal/exit/${pid}`, { status: { kind: "boom" } }],
      ["POST", `/v1/internal/location/${pid}`, {}],
      ["POST", `/v1/internal/location/${pid}`, { node: 5 }],
      ["POST", `/v1/internal/location/${pid}`, { node: "a b" }],
      ["POST", `/v1/internal/deliver/${pid}`, {}],
      ["POST", `/v1/internal/deliver/${pid}`, { from: "", messages: [] }],
      ["POST", `/v1/internal/deliver/${pid}`, { from: "x", messages: [{ seq: 0, data: "" }] }],
      ["POST", `/v1/internal/deliver/${pid}`, { from: "x", messages: [{ seq: 1.5, data: "" }] }],
      ["GET", "/v1/processes?local=2", Buffer.alloc(0)],
      ["GET", "/v1/links?inspect=x", Buffer.alloc(0)],
    ];
    const probe = await nodeDialer();
    for (const [method, p, body] of cases) {
      // The node-to-node endpoints answer nodes only: asked as one.
      const r = await request(n1.address, method, p, body, p.startsWith("/v1/internal/") ? probe : undefined);
      assertError(r, 400, "ERR_BAD_REQUEST", `${method} ${p} ${Buffer.isBuffer(body) ? body.toString() : JSON.stringify(body).slice(0, 80)}`);
    }
    // None of it changed anything: the process still runs where it did, and the node answers.
    const info = await json<{ node: string; state: string }>(n1.address, "GET", `/v1/processes/${pid}`);
    assert.deepEqual([info.node, info.state], ["n1", "running"]);
  });

  it("a directory outside the allowed roots is 403 ERR_FORBIDDEN naming the roots, whether it exists or not", async () => {
    const ask = (host: string): Promise<{ status: number; body: Buffer }> =>
      request(n1.address, "POST", "/v1/processes", { module_sha256: sleeper_sha, args: ["0", "0"], dirs: [{ host, guest: "/h" }] });
    const messages: string[] = [];
    for (const host of ["/", "/etc", "/etc/no-such-dir-here", outside, path.join(outside, "no-such-dir"), path.join(root, "escape"), path.join(root, "escape", "no-such-dir"), path.join(root, "dangling")]) {
      const e = assertError(await ask(host), 403, "ERR_FORBIDDEN", host);
      assert.ok(e.message.includes(root), `the message names the allowed root: ${e.message}`);
      messages.push(e.message.replace(host, "PATH"));
    }
    // The same words for paths that exist and paths that do not: nothing is learnt about either.
    assert.equal(new Set(messages).size, 1, messages.join("\n"));
    // Under a root: a missing directory is said to be missing; an existing one is given.
    assertError(await ask(path.join(root, "missing")), 409, "ERR_MISSING_DIRECTORY", "missing under the root");
    const ok = await ask(path.join(root, "data"));
    assert.equal(ok.status, 201, ok.body.toString());
    started.push({ address: n1.address, pid: (JSON.parse(ok.body.toString()) as { pid: string }).pid });
    // A node started without --allow-dir allows none.
    assertError(
      await request(n3.address, "POST", "/v1/processes", { module_sha256: sleeper_sha, dirs: [{ host: root, guest: "/h" }] }),
      403,
      "ERR_FORBIDDEN",
      "n3 allows no directory",
    );
  });

  it("listening on a port below 1024 is 403 ERR_FORBIDDEN unless the node allows low ports", async () => {
    const body = { module_sha256: sleeper_sha, args: ["0", "0"], listen: ["127.0.0.1:1"] };
    const e = assertError(await request(n1.address, "POST", "/v1/processes", body), 403, "ERR_FORBIDDEN", "port 1 on n1");
    assert.match(e.message, /--allow-low-ports/);
    // n2 allows it: whatever happens then (bound as root, or EACCES), it is not a refusal by policy.
    const r = await request(n2.address, "POST", "/v1/processes", body);
    assert.notEqual(r.status, 403, r.body.toString());
    if (r.status === 201) started.push({ address: n2.address, pid: (JSON.parse(r.body.toString()) as { pid: string }).pid });
  });

  it("a guest that grows its memory past --memory fails its allocation; the cap is reported and checked against the node's maximum", async () => {
    const capped = await run(n1.address, { module_sha256: memhog_sha, module_name: "memhog.wasm", args: ["64", "0", "0"], memory_max_bytes: 32 * MiB });
    const { status } = await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${capped}/wait`);
    assert.deepEqual(status, { kind: "exit", code: 3 }, "memhog exits 3 when malloc fails");
    const info = await json<{ memory_max_bytes: number }>(n1.address, "GET", `/v1/processes/${capped}`);
    assert.equal(info.memory_max_bytes, 32 * MiB);
    const fits = await run(n1.address, { module_sha256: memhog_sha, module_name: "memhog.wasm", args: ["16", "0", "0"], memory_max_bytes: 32 * MiB });
    assert.deepEqual((await json<{ status: unknown }>(n1.address, "GET", `/v1/processes/${fits}/wait`)).status, { kind: "exit", code: 0 });
    // Without --memory: the node's maximum.
    const plain = await run(n1.address, { module_sha256: sleeper_sha, args: ["0", "0"] });
    assert.equal((await json<{ memory_max_bytes: number }>(n1.address, "GET", `/v1/processes/${plain}`)).memory_max_bytes, N1_MEMORY_MAX);
    assertError(
      await request(n1.address, "POST", "/v1/processes", { module_sha256: sleeper_sha, memory_max_bytes: 2 * N1_MEMORY_MAX }),
      400,
      "ERR_MEMORY_LIMIT",
      "a cap over the node's maximum",
    );
  });

  it("the memory cap travels with a migration: a destination whose maximum is lower refuses it, and it keeps running", async () => {
    const big = await run(n1.address, { module_sha256: sleeper_sha, module_name: "sleeper.wasm", args: ["60000", "1000"], memory_max_bytes: 128 * MiB });
    const refused = await request(n1.address, "POST", `/v1/processes/${big}/migrate`, { to: "n2" });
    const e = assertError(refused, 400, "ERR_MEMORY_LIMIT", "128M cap into a 64M node");
    assert.ok(e.message.includes(String(N2_MEMORY_MAX)), e.message);
    assert.deepEqual((await json<{ node: string; state: string }>(n1.address, "GET", `/v1/processes/${big}`)).node, "n1");
    assert.equal((await json<NodeInfo>(n2.address, "GET", "/v1/node")).standby_bytes, 0);
    // Within n2's maximum it moves, cap and all.
    const moved = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n2" });
    assert.equal(moved.status, 200, moved.body.toString());
    const info = await json<{ node: string; memory_max_bytes: number }>(n2.address, "GET", `/v1/processes/${pid}`);
    assert.deepEqual([info.node, info.memory_max_bytes], ["n2", 32 * MiB]);
    assert.equal((await json<NodeInfo>(n2.address, "GET", "/v1/node")).standby_bytes, 0, "a standby that landed holds nothing");
  });

  it("OFFERs are checked before anything is reserved: over the quota, over the cap, outside the roots, malformed", async () => {
    const cases: [string, object, string][] = [
      ["over the standby quota", { memory_bytes: 32 * MiB }, "ERR_QUOTA"],
      ["memory over its own cap", { memory_bytes: 8 * MiB, memory_max_bytes: 4 * MiB }, "ERR_MEMORY_LIMIT"],
      ["cap over the node's maximum", { memory_max_bytes: 2 * N1_MEMORY_MAX }, "ERR_MEMORY_LIMIT"],
      ["a directory outside the roots", { dirs: [{ host: "/etc", guest: "/etc" }] }, "ERR_FORBIDDEN"],
      ["an open file outside its directories", { dirs: [{ host: path.join(root, "data"), guest: "/d" }], open_files: ["/etc/shadow"] }, "ERR_FORBIDDEN"],
      ["an open file that is missing", { dirs: [{ host: path.join(root, "data"), guest: "/d" }], open_files: [path.join(root, "data", "gone")] }, "ERR_MISSING_FILE"],
      ["a fractional memory size", { memory_bytes: 1.5 }, "ERR_MIGRATION_PROTOCOL"],
      ["a relative directory", { dirs: [{ host: "etc", guest: "/etc" }] }, "ERR_MIGRATION_PROTOCOL"],
      ["a strategy that does not exist", { strategy: "warp" }, "ERR_MIGRATION_PROTOCOL"],
    ];
    for (const [what, over, code] of cases) {
      const answer = await offer(n1.address, validOffer(over));
      answer.conn.destroy();
      assert.equal(answer.type, Msg.error, `${what}: got frame type ${answer.type}`);
      assert.equal(answer.value.code, code, `${what}: ${answer.value.message}`);
      const info = await json<NodeInfo>(n1.address, "GET", "/v1/node");
      assert.deepEqual([info.standbys, info.standby_bytes], [0, 0], `${what}: nothing is held`);
    }
  });

  it("an abandoned OFFER (READY, then silence) is freed after the standby timeout", async () => {
    const answer = await offer(n1.address, validOffer({ memory_bytes: 8 * MiB }));
    try {
      assert.equal(answer.type, Msg.ready, JSON.stringify(answer.value));
      const held = await json<NodeInfo>(n1.address, "GET", "/v1/node");
      assert.deepEqual([held.standbys, held.standby_bytes], [1, 8 * MiB]);
      // Silence: the destination gives up on its own, says why, and has freed the standby by then.
      const next = await answer.conn.next({ timeout_ms: N1_STANDBY_TIMEOUT_MS * 20 });
      assert.equal(next.type, Msg.error);
      assert.equal((JSON.parse(Buffer.from(next.payload).toString()) as { code: string }).code, "ERR_TRANSPORT_TIMEOUT");
      const freed = await json<NodeInfo>(n1.address, "GET", "/v1/node");
      assert.deepEqual([freed.standbys, freed.standby_bytes], [0, 0]);
    } finally {
      answer.conn.destroy();
    }
  });

  it("the process quota refuses one process too many with 503 ERR_QUOTA", async () => {
    await run(n3.address, { module_sha256: sleeper_sha, args: ["60000", "1000"] });
    assertError(await request(n3.address, "POST", "/v1/processes", { module_sha256: sleeper_sha, args: ["0", "0"] }), 503, "ERR_QUOTA", "a second process on n3");
  });

  it("an upload over the module size limit is 413 and leaves no temporary file", async () => {
    const modules = path.join(cluster.dir, "n1", "modules");
    const big = Buffer.alloc(N1_MODULE_MAX * 4, 7);
    const sha = "ab".repeat(32);
    assertError(await request(n1.address, "PUT", `/v1/modules/${sha}`, big), 413, "ERR_MODULE_TOO_LARGE", "an upload 4 times the limit");
    assert.deepEqual(fs.readdirSync(modules).filter((f) => f.endsWith(".tmp")), []);
    assert.equal((await request(n1.address, "HEAD", `/v1/modules/${sha}`)).status, 404);
    // Bytes that do not hash to the name leave nothing either.
    assertError(await request(n1.address, "PUT", `/v1/modules/${sha}`, Buffer.alloc(100)), 400, "ERR_MODULE_HASH", "wrong hash");
    assert.deepEqual(fs.readdirSync(modules).filter((f) => f.endsWith(".tmp")), []);
    assert.equal((await request(n1.address, "GET", "/v1/node")).status, 200);
  });

  it("a JSON body over 1 MiB is 413 ERR_BODY_TOO_LARGE, read by the client every time rather than a connection reset under its writes", async () => {
    const body = { module_sha256: sleeper_sha, args: ["x".repeat(8000)], env: Array.from({ length: 200 }, (_, i) => `K${i}=${"v".repeat(8000)}`) };
    // Refused from its declared length before the body is read. Answered at once, the connection (which the
    // client asked to close) closed with the body still arriving, and the kernel reset it: about one request
    // in six failed with EPIPE before the node lingered (sendError). Thirty in a row would have caught it.
    for (let i = 0; i < 30; i += 1) {
      assertError(await request(n1.address, "POST", "/v1/processes", body), 413, "ERR_BODY_TOO_LARGE", `a 1.6 MB run request (attempt ${i + 1})`);
    }
  });
});

/**
 * Trust (issue 10): only members of a cluster are served. Real node
 * processes on 127.0.0.1, attacked as the issue's report did: every route
 * without credentials and with another cluster's certificates, internal
 * endpoints called by a client or by a node acting for another, plain HTTP,
 * an OFFER naming someone else as its source; and the ways in: join and
 * login tokens, `ferry up`'s credentials.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Dialer, httpRequest } from "../src/node/mod.js";
import { upgrade } from "../src/node/_upgrade.js";
import { requestJson } from "../src/node/_http.js";
import { ClusterTls, createAuthority, localAuthorityDir, issue, parseToken, formatToken, type KeyPairPem } from "../src/trust/mod.js";
import { FramedConnection } from "../src/transport/mod.js";
import { EXAMPLES, FERRY, ferry, tempDir } from "./_helpers.js";
import { freePorts, json, NODE_ARGS_DEFAULT, nodeDialer, testOffer, request, startCluster, stopNode, upload, type NodeProc } from "./_cluster.js";

const compute = path.join(EXAMPLES, "c", "compute.wasm");

/** A request over TLS that trusts the cluster's CA but presents `cert` (or nothing). */
function tlsRequest(address: string, method: string, p: string, options: { ca: string; cert?: string; key?: string }): Promise<number> {
  const i = address.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const req = https.request({ host: address.slice(0, i), port: Number(address.slice(i + 1)), method, path: p, agent: false, ca: [options.ca], cert: options.cert, key: options.key, checkServerIdentity: () => undefined });
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end(method === "GET" || method === "HEAD" || method === "DELETE" ? undefined : "{}");
  });
}

/** An upgrade request with the same choice of certificate; resolves with the status line's code (101 when let in). */
function tlsUpgrade(address: string, p: string, protocol: string, options: { ca: string; cert?: string; key?: string }): Promise<number> {
  const i = address.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: address.slice(0, i),
      port: Number(address.slice(i + 1)),
      path: p,
      agent: false,
      ca: [options.ca],
      cert: options.cert,
      key: options.key,
      checkServerIdentity: () => undefined,
      headers: { connection: "Upgrade", upgrade: protocol },
    });
    req.on("upgrade", (_res, socket) => {
      socket.destroy();
      resolve(101);
    });
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

/** Resolves once `child` printed `pattern`; rejects if it exits first, or prints nothing that matches within two minutes. */
function waitForLine(child: ReturnType<typeof spawn>, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`no ${pattern} within 120 s: ${out}`)), 120_000);
    child.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      if (pattern.test(out)) {
        clearTimeout(timer);
        resolve(out);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before ${pattern}: ${out}`));
    });
  });
}

describe("an authenticated cluster", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  let n2: NodeProc;
  let ca_pem = "";
  let foreign: KeyPairPem;
  let foreign_client: { cert_pem: string; key_pem: string };
  let foreign_n2: { cert_pem: string; key_pem: string };
  let client: { cert_pem: string; key_pem: string };
  let pid = "";
  let sha = "";
  const extra: NodeProc[] = [];
  const dir = tempDir("security");

  before(async () => {
    // n1 holds the CA's key, so it can issue join tokens.
    cluster = await startCluster(["n1", "n2"], undefined, (name) => (name === "n1" ? [...NODE_ARGS_DEFAULT, "--ca-key", path.join(localAuthorityDir(), "ca-key.pem")] : NODE_ARGS_DEFAULT));
    [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
    ca_pem = fs.readFileSync(path.join(cluster.dir, "n1", "pki", "ca.pem"), "utf8");
    foreign = await createAuthority("elsewhere");
    const fc = await issue(foreign, { role: "client", name: "tester" });
    foreign_client = { cert_pem: fc.cert_pem, key_pem: fc.key_pem as string };
    const fn = await issue(foreign, { role: "node", name: "n2" });
    foreign_n2 = { cert_pem: fn.cert_pem, key_pem: fn.key_pem as string };
    const home = process.env["FERRY_HOME"] as string;
    client = { cert_pem: fs.readFileSync(path.join(home, "client", "cert.pem"), "utf8"), key_pem: fs.readFileSync(path.join(home, "client", "key.pem"), "utf8") };
    sha = await upload(n1.address, path.join(EXAMPLES, "c", "sleeper.wasm"));
    ({ pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args: ["1000", "3600"] }));
  });

  after(async () => {
    for (const n of extra) await stopNode(n);
    await cluster.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const routes = (): [string, string][] => [
    ["GET", "/v1/node"],
    ["GET", "/v1/nodes"],
    ["GET", "/v1/processes"],
    ["POST", "/v1/processes"],
    ["PUT", `/v1/modules/${sha}`],
    ["GET", `/v1/modules/${sha}`],
    ["HEAD", `/v1/modules/${sha}`],
    ["GET", `/v1/processes/${pid}`],
    ["GET", `/v1/processes/${pid}/wait`],
    ["GET", `/v1/processes/${pid}/output`],
    ["POST", `/v1/processes/${pid}/migrate`],
    ["POST", `/v1/processes/${pid}/send`],
    ["DELETE", `/v1/processes/${pid}`],
    ["GET", "/v1/links"],
    ["POST", "/v1/tokens"],
    ["POST", `/v1/internal/output/${pid}`],
    ["POST", `/v1/internal/exit/${pid}`],
    ["POST", `/v1/internal/location/${pid}`],
    ["DELETE", `/v1/internal/processes/${pid}`],
    ["GET", `/v1/internal/running/${pid}`],
    ["POST", `/v1/internal/deliver/${pid}`],
    ["POST", "/v1/internal/peers"],
  ];
  const upgrades: [string, string][] = [
    ["/v1/internal/data", "ferry-data/1"],
    ["/v1/internal/links", "ferry-links/3"],
    ["/v1/internal/pages/s1", "ferry-pages/1"],
    ["/v1/internal/net/n1-1", "ferry-net/2"],
  ];

  it("answers every route and upgrade 401 without a certificate, and with another cluster's; the process is untouched", async () => {
    for (const creds of [{ ca: ca_pem }, { ca: ca_pem, cert: foreign_client.cert_pem, key: foreign_client.key_pem }, { ca: ca_pem, cert: foreign_n2.cert_pem, key: foreign_n2.key_pem }]) {
      for (const [method, p] of routes()) assert.equal(await tlsRequest(n1.address, method, p, creds), 401, `${method} ${p}`);
      for (const [p, protocol] of upgrades) assert.equal(await tlsUpgrade(n1.address, p, protocol, creds), 401, `upgrade ${p}`);
    }
    const info = await json<{ state: string; node: string }>(n1.address, "GET", `/v1/processes/${pid}`);
    assert.deepEqual([info.state, info.node], ["running", "n1"]);
  });

  it("keeps the node-to-node endpoints for nodes: a client gets 403", async () => {
    const creds = { ca: ca_pem, cert: client.cert_pem, key: client.key_pem };
    for (const [method, p] of routes().filter(([, p]) => p.startsWith("/v1/internal/"))) assert.equal(await tlsRequest(n1.address, method, p, creds), 403, `${method} ${p}`);
    for (const [p, protocol] of upgrades) assert.equal(await tlsUpgrade(n1.address, p, protocol, creds), 403, `upgrade ${p}`);
    // The client's own routes work.
    assert.equal(await tlsRequest(n1.address, "GET", "/v1/node", creds), 200);
  });

  it("lets no node act for another: only the node running a process may say where it went", async () => {
    const probe = await nodeDialer();
    const r = await request(n1.address, "POST", `/v1/internal/location/${pid}`, { node: "n2", moves: 1 }, probe);
    assert.equal(r.status, 403, r.body.toString());
    assert.match(r.body.toString(), /ERR_FORBIDDEN/);
    const info = await json<{ node: string }>(n1.address, "GET", `/v1/processes/${pid}`);
    assert.equal(info.node, "n1");
  });

  it("refuses a peer that is not the node expected, and a node of another cluster", async () => {
    const probe = await nodeDialer();
    // n1 answers at its address, but a caller that wants n2 there must not talk to it.
    await assert.rejects(requestJson(probe, n1.address, "GET", "/v1/node", { expect: { role: "node", name: "n2" } }), (e: { code?: string; message: string }) => e.code === "ERR_PEER_UNAUTHENTICATED" && /not n2/.test(e.message));
    const stranger = new Dialer(new ClusterTls({ ca_pem: foreign.cert_pem, ...foreign_n2 }));
    await assert.rejects(httpRequest(n1.address, "GET", "/v1/node", undefined, stranger), /certificate|self.signed|unable/i);
  });

  it("refuses plain HTTP, and stays up", async () => {
    const i = n1.address.lastIndexOf(":");
    const answer = await new Promise<string>((resolve) => {
      const s = net.connect(Number(n1.address.slice(i + 1)), "127.0.0.1", () => s.write("GET /v1/node HTTP/1.1\r\nhost: x\r\n\r\n"));
      let got = "";
      s.on("data", (c: Buffer) => (got += c.toString("latin1")));
      s.on("close", () => resolve(got));
      s.on("error", () => undefined);
    });
    assert.doesNotMatch(answer, /^HTTP\/1\.1 200/);
    assert.equal((await request(n1.address, "GET", "/v1/node")).status, 200);
  });

  it("closes a page-data connection whose ticket it never granted, unanswered, and stays up", async () => {
    const i = n1.address.lastIndexOf(":");
    const got = await new Promise<number>((resolve) => {
      const s = net.connect(Number(n1.address.slice(i + 1)), "127.0.0.1", () => s.write(Buffer.concat([Buffer.from("FRYPGS01"), Buffer.alloc(32, 1)])));
      let bytes = 0;
      s.on("data", (c: Buffer) => (bytes += c.length));
      s.on("close", () => resolve(bytes));
      s.on("error", () => undefined);
    });
    assert.equal(got, 0);
    assert.equal((await request(n1.address, "GET", "/v1/node")).status, 200);
  });

  it("takes an OFFER only from its source: a node naming another as the source is refused before anything is fetched", async () => {
    const probe = await nodeDialer();
    const { socket, head } = await upgrade(probe, n2.address, "/v1/internal/data", "ferry-data/1");
    const conn = new FramedConnection(socket, { head: Buffer.from(head) });
    // It names n1 as its source, but the probe node sends it.
    const offer = testOffer(n1.address, { pid: "n1-77", home: "n1" });
    await conn.send(1, Buffer.from(JSON.stringify(offer)));
    const frame = await conn.next({ timeout_ms: 10_000 });
    assert.equal(frame.type, 3, "an ERROR frame");
    const error = JSON.parse(Buffer.from(frame.payload).toString()) as { code: string; message: string };
    assert.equal(error.code, "ERR_PEER_UNAUTHENTICATED", error.message);
    conn.destroy();
  });

  it("lets a node join with a one-time token, and serves it as a member", async () => {
    const made = await ferry(["token", "create", "--cluster", n1.address, "--ttl", "10m"]);
    assert.equal(made.status, 0, made.stderr.toString());
    const token = made.stdout.toString().trim();
    assert.equal(parseToken(token).role, "node");
    const [port, port4] = (await freePorts(2)) as [number, number];
    const data = path.join(dir, "n3");
    const child = spawn(process.execPath, [FERRY, "node", "start", "--name", "n3", "--listen", `127.0.0.1:${port}`, "--data", data, "--join", token], { stdio: ["ignore", "pipe", "inherit"] });
    const n3: NodeProc = { name: "n3", address: `127.0.0.1:${port}`, child };
    extra.push(n3);
    await waitForLine(child, /listening on/);
    const key = fs.statSync(path.join(data, "tls", "key.pem"));
    assert.equal(key.mode & 0o777, 0o600);
    // Every member knows it now, and it runs processes started through another.
    const nodes = await json<{ name: string; up: boolean }[]>(n2.address, "GET", "/v1/nodes");
    assert.ok(nodes.some((n) => n.name === "n3" && n.up), JSON.stringify(nodes));
    const run = await ferry(["run", "--cluster", n1.address, "--node", "n3", "--attach", compute, "2"]);
    assert.equal(run.status, 0, run.stderr.toString());
    assert.match(run.stdout.toString(), /round 2\/2/);
    // Used once: a second join with it is refused, and so is a token of another CA.
    const again = await ferry(["node", "start", "--name", "n4", "--listen", `127.0.0.1:${port4}`, "--data", path.join(dir, "n4"), "--join", token]);
    assert.equal(again.status, 125);
    assert.match(again.stderr.toString(), /ERR_TOKEN/);
    const t = parseToken(token);
    const forged = formatToken({ ...t, ca_fingerprint: createHash("sha256").update(foreign.cert_pem).digest("hex") });
    const wrong = await ferry(["node", "start", "--name", "n5", "--listen", `127.0.0.1:${port4}`, "--data", path.join(dir, "n5"), "--join", forged]);
    assert.equal(wrong.status, 125);
    assert.match(wrong.stderr.toString(), /ERR_PEER_UNAUTHENTICATED/);
  });

  it("lets a person log in with a client token; the credential is theirs alone", async () => {
    const made = await ferry(["token", "create", "--client", "--name", "bob", "--cluster", n1.address]);
    assert.equal(made.status, 0, made.stderr.toString());
    const bob = path.join(dir, "bob-home");
    const env = { FERRY_HOME: bob };
    assert.equal((await ferry(["ps", "--cluster", n1.address], { env })).status, 125, "no credential yet");
    const login = await ferry(["login", made.stdout.toString().trim()], { env: { ...env } });
    assert.equal(login.status, 0, login.stderr.toString());
    assert.equal(fs.statSync(path.join(bob, "client", "key.pem")).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.join(bob, "client")).mode & 0o777, 0o700);
    const ps = await ferry(["ps", "--cluster", n2.address], { env });
    assert.equal(ps.status, 0, ps.stderr.toString());
    assert.match(ps.stdout.toString(), new RegExp(pid));
    // A client token is not a node's, and the other way round.
    const node_token = (await ferry(["token", "create", "--cluster", n1.address])).stdout.toString().trim();
    const misuse = await ferry(["login", "--force", node_token], { env });
    assert.equal(misuse.status, 125);
    assert.match(misuse.stderr.toString(), /ERR_TOKEN/);
  });
});

describe("ferry up", () => {
  it("makes a CA, node certificates and this user's client credential on first use, keys 0600", async () => {
    const home = tempDir("up-home");
    const [port] = (await freePorts(1)) as [number];
    const env = { ...process.env, FERRY_HOME: home };
    const up = spawn(process.execPath, [FERRY, "up", "--nodes", "2", "--port", String(port)], { stdio: ["ignore", "pipe", "inherit"], env });
    // Watched from the start: if it ends early, its exit comes before the cleanup below waits for it.
    const exited = new Promise((r) => up.once("exit", r));
    try {
      await waitForLine(up, /cluster of 2 up/);
      for (const f of ["cluster/ca-key.pem", "client/key.pem"]) assert.equal(fs.statSync(path.join(home, f)).mode & 0o777, 0o600, f);
      const nodes = await ferry(["nodes", "--json", "--cluster", `127.0.0.1:${port}`], { env: { FERRY_HOME: home } });
      assert.equal(nodes.status, 0, nodes.stderr.toString());
      assert.deepEqual((JSON.parse(nodes.stdout.toString()) as { name: string }[]).map((n) => n.name).sort(), ["n1", "n2"]);
      // Another user's home has no credential: refused.
      const stranger = await ferry(["nodes", "--cluster", `127.0.0.1:${port}`], { env: { FERRY_HOME: path.join(home, "stranger") } });
      assert.equal(stranger.status, 125);
      assert.match(stranger.stderr.toString(), /ERR_NO_CREDENTIALS/);
    } finally {
      up.kill("SIGINT");
      await exited;
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});

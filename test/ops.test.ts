/**
 * Operations (issue 13): metrics scraped after a migration and while one
 * moves (held at a proxy between its rounds), checked by promtool; the
 * cluster's events, a scrape-only credential, and a migration stalled for
 * real (a proxy that stops forwarding) aborted by the watchdog.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";

import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Dialer, httpRequest } from "../src/node/mod.js";
import { ClusterTls, localAuthorityDir, readCredential } from "../src/trust/mod.js";
import { EXAMPLES, ferry, tempDir, until } from "./_helpers.js";
import { freePorts, json, NODE_ARGS_DEFAULT, runsOn, startCluster, startNode, stopNode, testAuthority, upload, type NodeProc } from "./_cluster.js";
import { tapEvents } from "./_events.js";

const sleeper = path.join(EXAMPLES, "c", "sleeper.wasm");
const memhog = path.join(EXAMPLES, "c", "memhog.wasm");

/** promtool, if installed (Debian's `prometheus`; .ci/run installs it). */
const promtool = spawnSync("promtool", ["--version"], { stdio: "ignore" }).status === 0;
if (!promtool) console.log("# promtool not found (apt-get install prometheus): the metrics text is not checked by promtool");

/** The metrics text passes `promtool check metrics` (where promtool is installed). */
function passesPromtool(text: string): void {
  if (!promtool) return;
  const check = spawnSync("promtool", ["check", "metrics"], { input: text });
  assert.equal(check.status, 0, `promtool check metrics: ${check.stdout.toString()}${check.stderr.toString()}`);
}

/** The value of one sample of `text` (name and labels as written), or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^([^{\s]+)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function metricsOf(address: string, dialer?: Dialer): Promise<string> {
  const r = await httpRequest(address, "GET", "/metrics", undefined, dialer);
  assert.equal(r.status, 200, r.body.toString());
  return r.body.toString();
}

describe("metrics and events", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  let n2: NodeProc;
  before(async () => {
    await testAuthority();
    // n1 holds the CA's key, so it issues tokens (the scrape credential below).
    cluster = await startCluster(["n1", "n2"], undefined, (name) => (name === "n1" ? [...NODE_ARGS_DEFAULT, "--ca-key", path.join(localAuthorityDir(), "ca-key.pem")] : NODE_ARGS_DEFAULT));
    [n1, n2] = cluster.nodes as [NodeProc, NodeProc];
  });
  after(async () => {
    await cluster.stop();
  });

  it("counts a migration once it ended, shows its events, and passes promtool", async () => {
    // The cluster's stream, read at n2: n1's events reach it through n2.
    const events = await tapEvents(n2.address, "/v1/events?follow=1");
    try {
      const sha = await upload(n1.address, sleeper);
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args: ["100", "600"] });
      await events.until((e, d) => e.event === "process.started" && d["pid"] === pid && d["node"] === "n1");
      const moving = await tapEvents(n1.address, `/v1/processes/${pid}/migrate?progress=1`, { method: "POST", body: { to: "n2", strategy: "pre-copy" } });
      const result = await moving.until((e) => e.event === "result" || e.event === "error");
      assert.ok(!("code" in result), JSON.stringify(result));
      moving.close();
      // (The gauges of a migration in progress: "a migration in progress" below.)
      const done = await metricsOf(n1.address);
      assert.equal(sample(done, "ferry_migrations_started_total", { strategy: "pre-copy" }), 1);
      assert.equal(sample(done, "ferry_migrations_succeeded_total", { strategy: "pre-copy" }), 1);
      assert.equal(sample(done, "ferry_migration_downtime_seconds_count", { strategy: "pre-copy" }), 1);
      assert.equal(sample(done, "ferry_migration_duration_seconds_count", { strategy: "pre-copy" }), 1);
      assert.ok((sample(done, "ferry_migration_sent_bytes_total", { strategy: "pre-copy" }) ?? 0) > 0);
      assert.equal(sample(done, "ferry_migration_remaining_bytes", { pid }), undefined, "a finished migration still shows as in progress");
      assert.equal(sample(done, "ferry_processes", { state: "running", node: "n1" }), 1);
      assert.equal(sample(done, "ferry_node_processes", {}), 0);
      assert.ok((sample(done, "process_resident_memory_bytes", {}) ?? 0) > 0, "default process metrics");
      const there = await metricsOf(n2.address);
      assert.equal(sample(there, "ferry_node_processes", { node: "n2" }), 1);
      assert.ok((sample(there, "ferry_node_guest_memory_bytes", {}) ?? 0) > 0);
      // The load module's gauges: capacity, load, the view of the other node, and the balancer's counters at 0.
      assert.ok((sample(there, "ferry_node_cpus", {}) ?? 0) >= 1, "capacity");
      assert.equal(sample(there, "ferry_node_guests_queued", {}), 0);
      assert.equal(sample(there, "ferry_node_draining", {}), 0);
      assert.equal(sample(done, "ferry_balancer_decisions_total", { reason: "balance" }), 0);
      assert.equal(sample(done, "ferry_balancer_moves_total", { strategy: "pre-copy", result: "succeeded" }), 0);
      const viewed = await until("n1 to hold n2's load in its view", async () => {
        const text = await metricsOf(n1.address);
        return sample(text, "ferry_load_view_nodes", {}) === 1 ? text : undefined;
      });
      assert.ok((sample(viewed, "ferry_load_view_age_seconds", { peer: "n2" }) ?? -1) >= 0, "the age of n2's entry");
      for (const text of [done, there, viewed]) passesPromtool(text);
      // The phases and the outcome, as n1 saw them, on n2's stream.
      await events.until((e, d) => e.event === "migration.started" && d["pid"] === pid && d["node"] === "n1" && d["to"] === "n2");
      await events.until((e, d) => e.event === "migration.phase" && d["pid"] === pid && d["phase"] === "round");
      await events.until((e, d) => e.event === "migration.succeeded" && d["pid"] === pid);
      await json(n1.address, "DELETE", `/v1/processes/${pid}`);
      await events.until((e, d) => e.event === "process.ended" && d["pid"] === pid);
      // The CLI: the recent events without -f, and another node's metrics through n1.
      const cli = await ferry(["events", "--json", "--cluster", n2.address]);
      assert.equal(cli.status, 0, cli.stderr.toString());
      const lines = cli.stdout.toString().trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(lines.some((l) => l["type"] === "migration.succeeded" && l["pid"] === pid && l["node"] === "n1"), cli.stdout.toString());
      const metrics = await ferry(["metrics", "--node", "n2", "--cluster", n1.address]);
      assert.equal(metrics.status, 0, metrics.stderr.toString());
      assert.match(metrics.stdout.toString(), /^ferry_node_processes\{node="n2"\} 0$/m);
    } finally {
      events.close();
    }
  });

  it("a scrape credential reads /metrics and nothing else", async () => {
    const made = await ferry(["token", "create", "--scrape", "--cluster", n1.address]);
    assert.equal(made.status, 0, made.stderr.toString());
    const dir = path.join(tempDir("scrape"), "prometheus");
    try {
      const login = await ferry(["login", "--scrape", "--out", dir, made.stdout.toString().trim()]);
      assert.equal(login.status, 0, login.stderr.toString());
      const scraper = new Dialer(new ClusterTls(readCredential(dir)));
      for (const node of [n1, n2]) assert.match(await metricsOf(node.address, scraper), /^ferry_node_processes_max/m);
      for (const [method, p] of [["GET", "/v1/processes"], ["GET", "/v1/events"], ["GET", "/v1/node"], ["POST", "/metrics"]] as const) {
        const r = await httpRequest(n1.address, method, p, undefined, scraper);
        assert.equal(r.status, 403, `${method} ${p}: ${r.status} ${r.body.toString()}`);
      }
      // A client token is not redeemed as a scraper's, nor the other way round.
      const client = await ferry(["token", "create", "--client", "--cluster", n1.address]);
      const wrong = await ferry(["login", "--scrape", "--out", `${dir}2`, client.stdout.toString().trim()]);
      assert.equal(wrong.status, 125);
      assert.match(wrong.stderr.toString(), /ERR_TOKEN/);
    } finally {
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });
});

/**
 * A TCP proxy that can stop forwarding while keeping every connection open
 * (the path to a destination that stops reading), and go on again.
 */
async function stallableProxy(target: string): Promise<{ address: string; stall(): void; resume(): void; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const pairs: [net.Socket, net.Socket][] = [];
  let stalled = false;
  const i = target.lastIndexOf(":");
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("error", () => undefined);
    client.on("close", () => sockets.delete(client));
    // Once stalled, a new connection is accepted and never forwarded either.
    if (stalled) return client.pause();
    const upstream = net.connect(Number(target.slice(i + 1)), target.slice(0, i));
    sockets.add(upstream);
    upstream.on("error", () => undefined);
    upstream.on("close", () => sockets.delete(upstream));
    client.pipe(upstream);
    upstream.pipe(client);
    pairs.push([client, upstream]);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    stall() {
      stalled = true;
      for (const [a, b] of pairs) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
    },
    resume() {
      // What each side sent meanwhile waits in its socket, and goes on in order.
      stalled = false;
      for (const [a, b] of pairs) {
        a.pipe(b);
        b.pipe(a);
      }
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** Waits until the process has written its first output (memhog: its memory is written). */
async function untilOutput(address: string, pid: string): Promise<void> {
  const tap = await tapEvents(address, `/v1/processes/${pid}/output?follow=1`);
  try {
    await tap.until((e) => e.event === "output");
  } finally {
    tap.close();
  }
}

/**
 * Runs `body` with two nodes on 127.0.0.1, n1 reaching n2 through a proxy
 * that can stop forwarding (`stallableProxy`), n1 started with `n1_args`;
 * stops both, the proxy and their data afterwards.
 */
async function withProxiedPair(stem: string, n1_args: readonly string[], body: (n1: NodeProc, n2: NodeProc, proxy: Awaited<ReturnType<typeof stallableProxy>>) => Promise<void>): Promise<void> {
  const [p1, p2] = await freePorts(2);
  const proxy = await stallableProxy(`127.0.0.1:${p2}`);
  const dir = tempDir(stem);
  let n1: NodeProc | undefined;
  let n2: NodeProc | undefined;
  try {
    n1 = await startNode("n1", p1 as number, [proxy.address], path.join(dir, "n1"), n1_args);
    n2 = await startNode("n2", p2 as number, [`127.0.0.1:${p1}`], path.join(dir, "n2"));
    await body(n1, n2, proxy);
  } finally {
    if (n1 !== undefined) await stopNode(n1);
    if (n2 !== undefined) await stopNode(n2);
    await proxy.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe("a migration in progress", () => {
  it("scrapes a pre-copy held between its rounds: remaining bytes, the dirty rate in bytes per second, bytes processed, idle seconds, and passes promtool", async () => {
    await withProxiedPair("moving", NODE_ARGS_DEFAULT, async (n1, _n2, proxy) => {
      const sha = await upload(n1.address, memhog);
      // 64 MiB rewritten at 32 MiB/s for as long as the test runs (held at its end: it cannot end under the test).
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: ["--hold", "64", "32", "3600"] });
      await untilOutput(n1.address, pid);
      // A downtime target its writes never fit: the rounds go on (up to PRECOPY_ROUNDS_MAX) while it writes,
      // so after the second round's end there are more rounds, the stop and the restore to go through the proxy.
      const moving = await tapEvents(n1.address, `/v1/processes/${pid}/migrate?progress=1`, { method: "POST", body: { to: "n2", strategy: "pre-copy", max_downtime_ms: 0.001 } });
      const labels = { pid, to: "n2", strategy: "pre-copy" };
      try {
        // The second round measured the rate the process writes at; from here the path to n2 forwards nothing until resumed.
        const second = await moving.until((e, d) => e.event === "progress" && d["phase"] === "round" && d["in_phase"] !== true && Number(d["round"]) >= 2);
        proxy.stall();
        assert.ok(Number(second["dirty_bytes_per_s"]) > 0, JSON.stringify(second));
        // Held: what it sent is in, and it stops moving (its idle time grows past a sample or two).
        const during = await until("the held migration's idle gauge to grow", async () => {
          const text = await metricsOf(n1.address);
          assert.notEqual(sample(text, "ferry_migration_remaining_bytes", labels), undefined, `the migration is no longer in progress:\n${text}`);
          return (sample(text, "ferry_migration_idle_seconds", labels) ?? 0) >= 1 ? text : undefined;
        });
        assert.ok((sample(during, "ferry_migration_remaining_bytes", labels) ?? -1) >= 0, during);
        assert.ok((sample(during, "ferry_migration_dirty_bytes_per_second", labels) ?? 0) > 0, during);
        // Round 1 alone sent the whole 64 MiB, before anything was committed.
        assert.ok((sample(during, "ferry_migration_processed_bytes_total", { strategy: "pre-copy" }) ?? 0) >= 64 * 1048576, during);
        assert.equal(sample(during, "ferry_migration_sent_bytes_total", { strategy: "pre-copy" }), undefined, "bytes counted as committed before the commit");
        assert.equal(sample(during, "ferry_migration_dirty_pages_per_second", labels), undefined, "the old gauge in pages is gone");
        passesPromtool(during);
      } finally {
        proxy.resume();
      }
      const result = await moving.until((e) => e.event === "result" || e.event === "error");
      moving.close();
      assert.equal(result["to"], "n2", JSON.stringify(result));
      const done = await metricsOf(n1.address);
      const sent = sample(done, "ferry_migration_sent_bytes_total", { strategy: "pre-copy" }) ?? 0;
      assert.ok(sent > 0);
      assert.ok((sample(done, "ferry_migration_processed_bytes_total", { strategy: "pre-copy" }) ?? 0) >= sent, done);
      for (const gone of ["ferry_migration_remaining_bytes", "ferry_migration_dirty_bytes_per_second", "ferry_migration_idle_seconds"]) {
        assert.equal(sample(done, gone, labels), undefined, `${gone} of a finished migration`);
      }
      await json(n1.address, "DELETE", `/v1/processes/${pid}`);
    });
  });
});

/**
 * The watchdog of the stalled migration below: the test reads the gauges of
 * the migration while it is held up, before the watchdog gives up, so this
 * is the time a busy machine has for that read (2 s was too short), and for
 * the offer before the stall (10 s was too short at a load average of 45);
 * the test waits it out once.
 */
const STALL_TIMEOUT_MS = 30_000;

describe("stalled migrations", () => {
  it("a migration whose destination stops reading is aborted, and the process keeps running at the source", async () => {
    await withProxiedPair("stall", [...NODE_ARGS_DEFAULT, "--stall-timeout", String(STALL_TIMEOUT_MS)], async (n1, n2, proxy) => {
      const sha = await upload(n1.address, memhog);
      // 128 MiB, idle once written: far more than the sockets and the proxy buffer, so sends block once it stalls.
      const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: ["128", "0", "600"] });
      await untilOutput(n1.address, pid);
      const moving = await tapEvents(n1.address, `/v1/processes/${pid}/migrate?progress=1`, { method: "POST", body: { to: "n2", strategy: "pre-copy" } });
      // The destination took the offer; from here the path forwards nothing.
      await moving.until((e) => e.event === "progress");
      proxy.stall();
      // Held up, not yet given up (that takes STALL_TIMEOUT_MS without a byte moving): the gauges of a migration in progress are there.
      const during = await metricsOf(n1.address);
      assert.notEqual(sample(during, "ferry_migration_remaining_bytes", { pid, to: "n2", strategy: "pre-copy" }), undefined, during);
      passesPromtool(during);
      const failed = await moving.until((e) => e.event === "error" || e.event === "result");
      moving.close();
      assert.equal(failed["code"], "ERR_MIGRATION_STALLED", JSON.stringify(failed));
      assert.match(String(failed["message"]), /keeps running on the source/);
      const info = await json<{ node: string; state: string }>(n1.address, "GET", `/v1/processes/${pid}`);
      assert.deepEqual([info.node, info.state], ["n1", "running"]);
      assert.equal(await runsOn(n1.address, pid), true);
      assert.equal(await runsOn(n2.address, pid), false, "a second copy runs on the destination");
      const text = await metricsOf(n1.address);
      assert.equal(sample(text, "ferry_migrations_stalled_total", { strategy: "pre-copy" }), 1, text);
      assert.equal(sample(text, "ferry_migrations_failed_total", { strategy: "pre-copy", code: "ERR_MIGRATION_STALLED" }), 1);
      const local = await tapEvents(n1.address, "/v1/events?local=1");
      const stalled = await local.until((e, d) => e.event === "migration.stalled" && d["pid"] === pid);
      local.close();
      assert.equal(stalled["to"], "n2");
      await json(n1.address, "DELETE", `/v1/processes/${pid}`);
    });
  });
});


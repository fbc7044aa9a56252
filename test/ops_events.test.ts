/**
 * Operators' view, end to end on node processes: peers seen up and down
 * (`node.up`, `node.down`), a migration that fails (`migration.failed`, the
 * process left running where it was), `ferry events -f` as people read it
 * and with `--json`, and `--log-level` (debug lines at `debug`, no info
 * lines at `warn`, an unknown level refused at the command line).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { EXAMPLES, FERRY, ferry, tempDir, testHome, until } from "./_helpers.js";
import { json, NODE_ARGS_DEFAULT, request, runsOn, startCluster, stopNode, upload, type NodeProc } from "./_cluster.js";
import { tapEvents, type EventTap } from "./_events.js";

const sleeper = path.join(EXAMPLES, "c", "sleeper.wasm");

/** `ferry ARGS...` left running (e.g. `events -f`): what it printed so far, and a way to end it. */
interface Running {
  readonly child: ChildProcess;
  stdout(): string;
  stop(): Promise<void>;
}

function ferryRunning(args: readonly string[]): Running {
  const child = spawn(process.execPath, [FERRY, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, FERRY_HOME: testHome() } });
  let out = "";
  let err = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (err += c.toString()));
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  return {
    child,
    stdout: () => (err === "" ? out : `${out}\n[stderr] ${err}`),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await closed;
    },
  };
}

/** A node's log as parsed JSON lines: every line it writes from now on. */
function logOf(node: NodeProc): { lines(): Record<string, unknown>[] } {
  let text = "";
  node.child.stderr?.on("data", (c: Buffer) => (text += c.toString()));
  return {
    lines: () =>
      text
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe("events and log levels on node processes", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  let n2: NodeProc;
  let n3: NodeProc;
  let n1_log: ReturnType<typeof logOf>;
  let n2_log: ReturnType<typeof logOf>;
  let events: EventTap | undefined;
  const following: Running[] = [];

  before(async () => {
    // n1 logs at debug, n2 at warn, n3 at the default (info).
    const level: Record<string, string[]> = { n1: ["--log-level", "debug"], n2: ["--log-level", "warn"], n3: [] };
    cluster = await startCluster(["n1", "n2", "n3"], undefined, (name) => [...NODE_ARGS_DEFAULT, ...(level[name] ?? [])]);
    [n1, n2, n3] = cluster.nodes as [NodeProc, NodeProc, NodeProc];
    n1_log = logOf(n1);
    n2_log = logOf(n2);
  });
  after(async () => {
    events?.close();
    for (const f of following) await f.stop();
    await cluster.stop();
  });

  it("publishes node.up and node.down, and a migration to a node that is down as migration.failed; ferry events -f prints them as they come", async () => {
    events = await tapEvents(n1.address, "/v1/events?follow=1&local=1");
    const human = ferryRunning(["events", "-f", "--local", "--cluster", n1.address]);
    const machine = ferryRunning(["events", "-f", "--local", "--json", "--cluster", n1.address]);
    following.push(human, machine);
    // n1 asks its peers when it lists the nodes: each answers, for the first time.
    await request(n1.address, "GET", "/v1/nodes");
    for (const peer of [n2, n3]) {
      const up = await events.until((e, d) => e.event === "node.up" && d["peer"] === peer.name);
      assert.equal(up["address"], peer.address);
      assert.equal(up["node"], "n1");
    }
    const sha = await upload(n1.address, sleeper);
    const { pid } = await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: "sleeper.wasm", args: ["200", "100000"], node: "n1" });

    await stopNode(n3);
    await request(n1.address, "GET", "/v1/nodes");
    const down = await events.until((e, d) => e.event === "node.down" && d["peer"] === "n3");
    assert.equal(down["address"], n3.address);
    assert.equal(typeof down["reason"], "string");
    assert.notEqual(down["reason"], "");

    const refused = await request(n1.address, "POST", `/v1/processes/${pid}/migrate`, { to: "n3", strategy: "pre-copy" });
    assert.ok(refused.status >= 400, `a move to a node that is down: ${refused.status} ${refused.body.toString()}`);
    await events.until((e, d) => e.event === "migration.started" && d["pid"] === pid && d["to"] === "n3");
    const failed = await events.until((e, d) => e.event === "migration.failed" && d["pid"] === pid);
    assert.equal(failed["to"], "n3");
    assert.equal(failed["strategy"], "pre-copy");
    assert.match(String(failed["code"]), /^ERR_[A-Z_]+$/);
    assert.equal((JSON.parse(refused.body.toString()) as { error: { code: string } }).error.code, failed["code"], "the event says what the API answered");
    assert.equal(typeof failed["message"], "string");
    // A failed migration leaves the process running where it was.
    assert.equal(await runsOn(n1.address, pid), true);

    // The same events through the CLI, as they happened: a line each for people, the API's JSON with --json.
    const iso = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`;
    const at = n3.address.replace(/\./g, "\\.");
    await until("ferry events -f to print node.down", () => new RegExp(`^${iso} n1 node\\.down peer=n3 address=${at} reason=.+$`, "m").test(human.stdout()) || undefined);
    await until("ferry events -f to print migration.failed", () =>
      new RegExp(`^${iso} n1 migration\\.failed pid=${pid} to=n3 strategy=pre-copy code=${String(failed["code"])} message=.+$`, "m").test(human.stdout()) || undefined,
    );
    assert.match(human.stdout(), new RegExp(`^${iso} n1 node\\.up peer=n2 address=${n2.address.replace(/\./g, "\\.")}$`, "m"));
    const parsed = await until("ferry events -f --json to print migration.failed", () => {
      const lines = machine
        .stdout()
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      return lines.some((l) => l["type"] === "migration.failed") ? lines : undefined;
    });
    const seen = parsed.find((l) => l["type"] === "migration.failed" && l["pid"] === pid);
    assert.deepEqual(seen, failed, "--json prints the event as the API sent it");
    assert.ok(parsed.some((l) => l["type"] === "node.down" && l["peer"] === "n3"));
    for (const l of parsed) assert.equal(l["node"], "n1", "--local: the events of the node asked only");
    // -f keeps the stream open until it is stopped.
    assert.equal(human.child.exitCode, null);
    for (const f of following.splice(0)) await f.stop();
    await request(n1.address, "DELETE", `/v1/processes/${pid}`);
  });

  it("logs at the level --log-level gives: debug lines at debug, nothing below warn at warn", async () => {
    // n1, at debug: a cluster-wide list with n3 down logs (at debug) that n3 did not list its processes.
    await request(n1.address, "GET", "/v1/processes");
    const debug = await until("n1 to log a debug line", () => n1_log.lines().find((l) => l["level"] === 20 && l["msg"] === "a peer did not list its processes"));
    assert.equal(debug["address"], n3.address);
    assert.ok(
      n1_log.lines().some((l) => l["level"] === 30),
      "info lines too at debug",
    );
    // n2, at warn: asking its peers finds n1 up (info, left out) and n3 down (a warning).
    await request(n2.address, "GET", "/v1/nodes");
    await until("n2 to warn that n3 does not answer", () => n2_log.lines().some((l) => l["level"] === 40 && l["address"] === n3.address) || undefined);
    // Stopped, so that every line it wrote is read: it logs stopping, and its processes, at info.
    await stopNode(n2);
    const lines = n2_log.lines();
    assert.ok(lines.length > 0);
    const below = lines.filter((l) => typeof l["level"] !== "number" || (l["level"] as number) < 40);
    assert.deepEqual(below, [], "no line below warn");
  });

  it("refuses an unknown --log-level at the command line, with status 2 and the levels it takes", async () => {
    const data = path.join(tempDir("loglevel"), "n9");
    try {
      const r = await ferry(["node", "start", "--name", "n9", "--listen", "127.0.0.1:0", "--data", data, "--log-level", "loud"]);
      assert.equal(r.status, 2, r.stderr.toString());
      assert.equal(r.stdout.toString(), "");
      assert.match(r.stderr.toString(), /^ferry node: --log-level is one of trace, debug, info, warn, error, fatal, silent\n$/);
      assert.equal(fs.existsSync(data), false, "nothing was started");
    } finally {
      fs.rmSync(path.dirname(data), { recursive: true, force: true });
    }
  });
});

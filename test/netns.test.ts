/**
 * The cluster over a real network: each node in a network namespace of its
 * own with its own address, joined by veth pairs to a bridge in a hub
 * namespace — all created by this test and removed after it. Needs root and
 * iproute2; skipped, saying why, where they are missing.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { EXAMPLES, ferry, FERRY, tempDir } from "./_helpers.js";
import { nodeCredentialFiles } from "./_cluster.js";
import { makeNet, netnsUnavailable, type TestNet } from "./_netns.js";

const names = ["n1", "n2", "n3"];
const PORT = 7070;

const why = netnsUnavailable();

describe("a cluster across network namespaces", { skip: why ?? false }, () => {
  const nodes: ChildProcess[] = [];
  const data = tempDir("netns");
  let net: TestNet | null = null;
  const ip = (i: number): string => (net as TestNet).ip(names[i] as string);
  const ferryIn = (name: string, args: string[]): ReturnType<TestNet["ferryIn"]> => (net as TestNet).ferryIn(name, args);

  before(async () => {
    net = makeNet(names);
    for (const [i, name] of names.entries()) {
      const peers = names.flatMap((_, j) => (j === i ? [] : [`${ip(j)}:${PORT}`])).join(",");
      const child = net.spawnIn(name, process.execPath, [FERRY, "node", "start", "--name", name, "--listen", `${ip(i)}:${PORT}`, "--peers", peers, "--data", path.join(data, name), ...(await nodeCredentialFiles(name, path.join(data, name)))], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      nodes.push(child);
      await new Promise<void>((resolve, reject) => {
        child.stdout?.on("data", (c: Buffer) => {
          if (c.toString().includes("listening on")) resolve();
        });
        child.on("exit", (code) => reject(new Error(`node ${name} exited with ${code}`)));
      });
    }
  });

  after(async () => {
    for (const child of nodes) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
    net?.remove();
    fs.rmSync(data, { recursive: true, force: true });
  });

  it("moves a process between nodes that talk over the network, output and status intact", async () => {
    const module = path.join(EXAMPLES, "c", "compute.wasm");
    // Long enough (about 8 s) to outlive three moves, each a CLI process and a migration, on a loaded machine.
    const whole = await ferry(["exec", module, "150", "6"]);
    const cluster = ["--cluster", `${ip(0)}:${PORT}`];
    const run = await ferryIn("n1", ["run", ...cluster, module, "150", "6"]);
    assert.equal(run.status, 0, run.stderr);
    const pid = run.stdout.trim();
    for (const [to, strategy] of [["n2", "pre-copy"], ["n3", "stop-copy"], ["n1", "pre-copy"]] as const) {
      const m = await ferryIn("n2", ["migrate", "--cluster", `${ip(1)}:${PORT}`, "--json", pid, "--to", to, "--strategy", strategy]);
      assert.equal(m.status, 0, m.stderr);
      const ps = await ferryIn("n3", ["ps", "--cluster", `${ip(2)}:${PORT}`, "--json"]);
      const me = (JSON.parse(ps.stdout) as { pid: string; node: string }[]).find((p) => p.pid === pid);
      assert.equal(me?.node, to);
    }
    const wait = await ferryIn("n1", ["wait", ...cluster, pid]);
    assert.equal(wait.status, whole.status);
    const logs = await ferryIn("n3", ["logs", "--cluster", `${ip(2)}:${PORT}`, pid]);
    assert.equal(logs.stdout, whole.stdout.toString());
    assert.equal(logs.stderr, whole.stderr.toString());
  });
});

if (why !== null) process.stdout.write(`# netns test skipped: ${why}\n`);

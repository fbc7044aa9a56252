/**
 * `ferry top` (issue 13, item 6) against a real cluster: one frame with
 * `--once`, and the live view on a terminal (a pseudo-terminal made by
 * util-linux's `script`) that draws on the alternate screen, redraws, and
 * gives the terminal back when `q` is pressed.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { EXAMPLES, FERRY, ferry, testHome, until } from "./_helpers.js";
import { json, startCluster, upload, type NodeProc } from "./_cluster.js";

/** util-linux's `script`, which runs a command on a pseudo-terminal. */
const have_script = spawnSync("script", ["--version"], { stdio: "ignore" }).status === 0;
if (!have_script) console.log("# `script` (util-linux) not found: ferry top's live view is not tested on a terminal");

describe("ferry top", () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let n1: NodeProc;
  const pids: string[] = [];

  before(async () => {
    cluster = await startCluster(["n1", "n2"]);
    n1 = cluster.nodes[0] as NodeProc;
    for (const [node, args] of [["n1", ["200", "100000"]], ["n2", ["32", "1", "86400"]]] as const) {
      const program = node === "n1" ? "sleeper" : "memhog";
      const sha = await upload(n1.address, path.join(EXAMPLES, "c", `${program}.wasm`));
      if (node === "n2") await upload((cluster.nodes[1] as NodeProc).address, path.join(EXAMPLES, "c", `${program}.wasm`));
      pids.push((await json<{ pid: string }>(n1.address, "POST", "/v1/processes", { module_sha256: sha, module_name: `${program}.wasm`, args, node })).pid);
    }
  });
  after(() => cluster.stop());

  it("--once prints the nodes and the running processes, the largest first", async () => {
    // memhog's 32 MiB are seen once it has touched them.
    const text = await until("a frame listing memhog's 32 MiB", async () => {
      const top = await ferry(["top", "--once", "--cluster", n1.address]);
      assert.equal(top.status, 0, top.stderr.toString());
      const out = top.stdout.toString();
      return /^\S+\s+n2\s+running\s+3\d\.\d MiB/m.test(out) ? out : undefined;
    });
    assert.match(text, /2 of 2 nodes up/);
    assert.match(text, /^NODE\s+ADDRESS\s+PROCS\s+LOAD\/CPU/m);
    for (const n of cluster.nodes) assert.match(text, new RegExp(`^${n.name}\\s+${n.address.replace(/\./g, "\\.")}\\s+1/256\\s`, "m"));
    const lines = text.split("\n");
    const memhog = lines.findIndex((l) => l.startsWith(`${pids[1]} `));
    const sleeper = lines.findIndex((l) => l.startsWith(`${pids[0]} `));
    assert.ok(memhog > 0 && sleeper > memhog, text);
    assert.doesNotMatch(text, /\x1b/, "one frame for a file or pipe has no terminal codes");
    const help = await ferry(["top", "--help"]);
    assert.equal(help.status, 0);
    assert.match(help.stdout.toString(), /--once/);
    const bad = await ferry(["top", "--interval", "0"]);
    assert.equal(bad.status, 2);
  });

  it("draws in place on a terminal and quits on q", { skip: have_script ? false : "no `script`" }, async () => {
    const command = [process.execPath, FERRY, "top", "--interval", "0.5", "--cluster", n1.address].map((a) => `'${a}'`).join(" ");
    const child = spawn("script", ["-qfec", command, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, FERRY_HOME: testHome() } });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    try {
      // Two frames drawn from the top left: it refreshes in place rather than scrolling.
      await until("two frames of ferry top", () => out.includes("\x1b[?1049h") && out.split("\x1b[H").length > 2 && out.includes(pids[0] as string), 30_000);
      child.stdin.write("q");
      await until("ferry top to quit on q", () => child.exitCode !== null, 10_000);
      assert.equal(child.exitCode, 0);
      assert.ok(out.trimEnd().endsWith("\x1b[?25h\x1b[?1049l"), "the terminal is given back: cursor shown, main screen");
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});

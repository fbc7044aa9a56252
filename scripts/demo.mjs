#!/usr/bin/env node
// The quick-start demo: starts a local cluster of three nodes (`ferry up`),
// runs an example program on it, and moves the program from node to node
// while it prints — its output arrives once, in order, as if it had never
// moved. Then a TCP key-value server moves from node to node while a client
// keeps one connection to it. Then the cluster is stopped.
import { spawn, spawnSync } from "node:child_process";
import net from "node:net";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const ferry = path.join(root, "bin", "ferry.js");
const port = process.env.FERRY_DEMO_PORT ?? "7070";
const cluster = `127.0.0.1:${port}`;
const note = (s) => process.stderr.write(`\x1b[2m--- ${s}\x1b[0m\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cli = (command, ...args) => spawnSync(process.execPath, [ferry, command, "--cluster", cluster, ...args], { encoding: "utf8" });
/** The node `pid` runs on now (`ferry run` places it where the balancer says), or null. */
const nodeOf = (pid) => JSON.parse(cli("ps", "--json").stdout || "[]").find((p) => p.pid === pid)?.node ?? null;
/** `hops` from the first that leaves the node `pid` is on (no two in a row name the same node). */
const hopsFor = (pid, hops) => {
  const at = nodeOf(pid);
  const first = hops.findIndex(([to]) => to !== at);
  return hops.slice(Math.max(0, first));
};

note(`ferry up --port ${port}`);
const up = spawn(process.execPath, [ferry, "up", "--port", port], { stdio: ["ignore", "pipe", "inherit"] });
await new Promise((resolve, reject) => {
  let out = "";
  up.stdout.on("data", (c) => {
    out += c;
    if (out.includes("cluster of")) resolve();
  });
  up.on("exit", (code) => reject(new Error(`ferry up exited with ${code} (is port ${port} free? set FERRY_DEMO_PORT)`)));
});
let status = 1;
try {
  const run = cli("run", path.join(root, "examples", "c", "compute.wasm"), "150");
  if (run.status !== 0) throw new Error(run.stderr);
  const pid = run.stdout.trim();
  note(`ferry run examples/c/compute.wasm 150  →  ${pid}; following its output with ferry logs -f`);
  const logs = spawn(process.execPath, [ferry, "logs", "--cluster", cluster, "-f", pid], { stdio: ["ignore", "inherit", "inherit"] });
  // Listened for now: the program may end (and its follower with it) while a move below waits, and an exit heard by no one would be waited for forever.
  const followed = new Promise((r) => logs.on("exit", r));
  // Post-copy and hybrid where the nodes can take them (userfaultfd); `ferry nodes` says.
  const nodes = JSON.parse(cli("nodes", "--json").stdout || "[]");
  const post_copy = nodes.length > 0 && nodes.every((n) => n.post_copy === true);
  const hops = post_copy
    ? [["n2", "pre-copy"], ["n3", "post-copy"], ["n1", "stop-copy"], ["n2", "hybrid"], ["n3", "pre-copy"]]
    : [["n2", "pre-copy"], ["n3", "stop-copy"], ["n1", "pre-copy"], ["n2", "stop-copy"], ["n3", "pre-copy"]];
  if (!post_copy) note("post-copy and hybrid left out: these nodes cannot serve them (see ferry nodes)");
  for (const [to, strategy] of hopsFor(pid, hops)) {
    await sleep(250);
    const m = cli("migrate", pid, "--to", to, "--strategy", strategy);
    if (m.status !== 0) {
      note(/has ended/.test(m.stderr) ? `${pid} finished before the next move` : m.stderr.trim());
      break;
    }
    note(m.stdout.trim().split("\n")[0]);
  }
  const wait = cli("wait", pid);
  status = wait.status ?? 1;
  await followed;
  note(`${pid} ended with status ${status}`);
  if (status === 0) status = await serverAct(hops);
  note("stopping the cluster");
} finally {
  up.kill("SIGINT");
  await new Promise((r) => up.on("exit", r));
}
process.exit(status);

/** A kv server moves around the cluster; one client connection stays open throughout. */
async function serverAct(hops) {
  const run = cli("run", "--json", "--listen", "127.0.0.1:0", path.join(root, "examples", "c", "kvserver.wasm"));
  if (run.status !== 0) throw new Error(run.stderr);
  const { pid, listen } = JSON.parse(run.stdout);
  const [host, port] = [listen[0].slice(0, listen[0].lastIndexOf(":")), Number(listen[0].slice(listen[0].lastIndexOf(":") + 1))];
  note(`ferry run --listen 127.0.0.1:0 examples/c/kvserver.wasm  →  ${pid}, listening on ${listen[0]} (its home node owns the socket)`);
  const socket = net.connect({ host, port });
  await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  let buffered = "";
  const replies = [];
  socket.setEncoding("utf8").on("data", (c) => {
    buffered += c;
    for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
      replies.push(buffered.slice(0, i));
      buffered = buffered.slice(i + 1);
    }
  });
  const ask = async (line) => {
    const before = replies.length;
    socket.write(`${line}\n`);
    while (replies.length === before) await sleep(1);
    process.stdout.write(`client> ${line}\nserver< ${replies[before]}\n`);
  };
  await ask(`SET greeting hello from ${nodeOf(pid) ?? "its first node"}`);
  for (const [to, strategy] of hopsFor(pid, hops).slice(0, 3)) {
    const m = cli("migrate", pid, "--to", to, "--strategy", strategy);
    if (m.status !== 0) throw new Error(m.stderr);
    note(`${m.stdout.trim().split("\n")[0]}  (same client connection)`);
    await ask(`SET where ${to}`);
    await ask("GET greeting");
  }
  await ask("SHUTDOWN");
  socket.destroy();
  return cli("wait", pid).status ?? 1;
}

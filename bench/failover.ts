/**
 * Failover benchmark (`--only=failover`): three node daemons with 1 s
 * leases on the embedded directory (served from this process, as `ferry up`
 * serves it). Each round starts a CPU-bound process checkpointed every 200
 * ms at n1 (its home), moves it to n3, waits for a checkpoint taken there
 * (kept on n2), kills n3 with SIGKILL, and times, from the kill: the
 * directory declaring n3 dead, and the process running again (its home
 * recording the restore, which answers once the new runner runs it). Then
 * the process is killed and n3 started again for the next round.
 */
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { openEmbeddedDirectory, type MemoryDirectory } from "../src/directory/mod.js";
import { serveDirectory } from "../src/node/mod.js";
import { createAuthority, type KeyPairPem } from "../src/trust/mod.js";
import { median } from "./_measure.js";
import { ROOT } from "./_nodes.js";
import { credential, poll, startTrio, type BenchTrio } from "./directory.js";
import { SseParser } from "../src/sse.js";

const LEASE_MS = 1000;
const CHECKPOINT_EVERY_MS = 200;

interface Round {
  dead_ms: number;
  running_ms: number;
  restore_ms: number;
  /** Where the home's restore spent its time (its `process.restored` event). */
  phases: Record<string, number>;
}

/** The phases of the restore of `pid`, from its home's `process.restored` event, flattened (`before.claim`, `rebuild`, ...). */
async function restoredPhases(trio: BenchTrio, home: string, pid: string): Promise<Record<string, number>> {
  let found: Record<string, number> | null = null;
  await poll("the home's process.restored event", async () => {
    for (const e of new SseParser().push(await trio.raw(home, "GET", "/v1/events?local=1"))) {
      if (e.event !== "process.restored") continue;
      const d = JSON.parse(e.data) as { pid: string; prepared_ahead?: boolean; phases_ms: { before: Record<string, number> } & Record<string, number> };
      if (d.pid !== pid) continue;
      const { before, ...rest } = d.phases_ms;
      // 1: the keeper had the restore ready (image rebuilt, standby with its pages) before the death was declared.
      found = { ...Object.fromEntries(Object.entries(before).map(([k, v]) => [`before.${k}`, v])), ...rest, prepared_ahead: d.prepared_ahead === true ? 1 : 0 };
    }
    return found !== null;
  });
  return found ?? {};
}

async function measure(ca: KeyPairPem, url: string, directory: MemoryDirectory, rounds: number): Promise<Round[]> {
  const trio = await startTrio(ca, url, "failover");
  const { addresses, nodes, request, start } = trio;
  const out: Round[] = [];
  try {
    const wasm = fs.readFileSync(path.join(ROOT, "examples", "c", "compute.wasm"));
    const sha = createHash("sha256").update(wasm).digest("hex");
    const [a1] = addresses as [string];
    await request(a1, "PUT", `/v1/modules/${sha}`, wasm);
    const alive = async (): Promise<boolean> => ((await request(a1, "GET", "/v1/nodes")) as { state: string }[]).filter((n) => n.state === "alive").length === 3;
    for (let round = 0; round < rounds; round += 1) {
      await poll("all three alive", alive);
      const { pid } = (await request(a1, "POST", "/v1/processes", { module_sha256: sha, module_name: "compute.wasm", args: ["10000"], checkpoint_every_ms: CHECKPOINT_EVERY_MS })) as { pid: string };
      await request(a1, "POST", `/v1/processes/${pid}/migrate`, { to: "n3", strategy: "stop-copy" });
      await poll("a checkpoint taken on n3 in the directory", async () => (await directory.process(pid))?.last_checkpoint?.moves === 1);
      let dead_at = 0;
      const stop = await directory.watch((c) => {
        if (c.kind === "member" && c.member.name === "n3" && c.member.state === "dead" && dead_at === 0) dead_at = Date.now();
      });
      const n3 = nodes[2] as ChildProcess;
      const gone = new Promise((r) => n3.once("exit", r));
      const killed_at = Date.now();
      n3.kill("SIGKILL");
      await gone;
      await poll("the process to run again elsewhere", async () => ((await request(a1, "GET", `/v1/processes/${pid}`)) as { node: string }).node !== "n3");
      const running_at = Date.now();
      stop();
      const restored = await restoredPhases(trio, a1, pid);
      out.push({ dead_ms: dead_at - killed_at, running_ms: running_at - killed_at, restore_ms: running_at - dead_at, phases: restored });
      await request(a1, "DELETE", `/v1/processes/${pid}`);
      nodes[2] = await start(2);
    }
  } finally {
    await trio.stop();
  }
  return out;
}

/** Runs the failover benchmark and prints its table. */
export async function failoverBench(quick: boolean): Promise<void> {
  const rounds = quick ? 2 : 5;
  console.log(`\n(o) failover: kill -9 of the node running a checkpointed process (1 s leases, checkpoints every ${CHECKPOINT_EVERY_MS} ms, three nodes; load average ${os.loadavg()[0]?.toFixed(1)} on ${os.cpus().length} cores at the start). Milliseconds, median (min–max)`);
  console.log("| directory | lease ms | rounds | kill to declared dead | declared dead to running again | kill to running again |\n|---|---|---|---|---|---|");
  const ca = await createAuthority("bench-failover");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-bench-embedded-"));
  const embedded = openEmbeddedDirectory(path.join(dir, "directory.json"));
  const server = await serveDirectory(embedded, { host: "127.0.0.1", port: 0, tls: await credential(ca, "node", "directory") });
  try {
    const rs = await measure(ca, server.url, embedded, rounds);
    const f = (xs: number[]): string => `${median(xs).toFixed(0)} (${Math.min(...xs)}–${Math.max(...xs)})`;
    console.log(`| embedded (served) | ${LEASE_MS} | ${rs.length} | ${f(rs.map((r) => r.dead_ms))} | ${f(rs.map((r) => r.restore_ms))} | ${f(rs.map((r) => r.running_ms))} |`);
    // Where "declared dead to running again" goes, at the home (its process.restored event): records = from hearing of
    // the death to acting (the directory's records of the dead node), claim, fence, ask_keeper, then at the keeper
    // wait (for the chain's lock), rebuild, send (to the destination, until it runs it), then record (the move).
    const keys = [...new Set(rs.flatMap((r) => Object.keys(r.phases)))];
    console.log(`\nphases of the restore, ms, median (min–max):\n| ${keys.join(" | ")} |\n|${keys.map(() => "---|").join("")}`);
    console.log(`| ${keys.map((k) => f(rs.map((r) => Math.round(r.phases[k] ?? 0)))).join(" | ")} |`);
  } finally {
    await server.close();
    await embedded.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Checkpoint benchmark (issue 11): a 256 MiB process dirtying about 50 MB/s
 * (examples/c/dirtier.wasm, a fixed amount of work that never looks at a
 * clock) on one node of a pair of node daemons (separate OS processes on
 * 127.0.0.1, mutual TLS), checkpointed to the other at 1/s and 10/s, and not
 * at all: pause per checkpoint, bytes per checkpoint, and the runtime
 * slowdown against no checkpoints, all in the same run.
 */
import { startPair, type NodePair } from "./_nodes.js";
import { median } from "./_measure.js";
import { SseParser } from "../src/sse.js";

const SIZE_MIB = 256;
/** The dirty rate aimed at (MB/s, 10^6 bytes), as issue 11 asks. */
const TARGET_MB_PER_S = 50;

interface Taken {
  checkpoint: number;
  pause_ms: number;
  bytes: number;
  pages: number;
  total_ms: number;
}

/** Runs dirtier once on n1; resolves with its wall time (create to exit, ms) and the checkpoints it took. */
async function runOnce(pair: NodePair, write_mib: number, work: number, every_ms: number): Promise<{ ms: number; taken: Taken[] }> {
  const t0 = performance.now();
  const created = await pair.request(pair.a1, "POST", "/v1/processes", {
    module_sha256: pair.sha,
    module_name: "dirtier.wasm",
    args: [String(SIZE_MIB), String(write_mib), String(work)],
    checkpoint_every_ms: every_ms,
  });
  if (created.status !== 201) throw new Error(`run failed: ${created.body.toString()}`);
  const { pid } = JSON.parse(created.body.toString()) as { pid: string };
  const waited = await pair.request(pair.a1, "GET", `/v1/processes/${pid}/wait`);
  const ms = performance.now() - t0;
  const status = (JSON.parse(waited.body.toString()) as { status: { kind: string; code?: number } }).status;
  if (status.kind !== "exit" || status.code !== 0) throw new Error(`dirtier ended ${JSON.stringify(status)}`);
  const events = await pair.request(pair.a1, "GET", "/v1/events?local=1");
  const taken: Taken[] = [];
  for (const e of new SseParser().push(events.body)) {
    if (e.event !== "checkpoint.taken") continue;
    const d = JSON.parse(e.data) as Taken & { pid: string };
    if (d.pid === pid) taken.push(d);
  }
  return { ms, taken };
}

const f1 = (x: number): string => x.toFixed(1);
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))] ?? NaN;

/** Runs the checkpoint benchmark and prints its table. */
export async function checkpointBench(quick: boolean): Promise<void> {
  const pair = await startPair("c/dirtier.wasm");
  try {
    // Calibration: the write phase's time per MiB is about a + b × WORK; pick WORK for the target rate.
    const probe_mib = quick ? 32 : 64;
    const idle = (await runOnce(pair, 0, 0, 0)).ms;
    const plain = (await runOnce(pair, probe_mib, 0, 0)).ms;
    const worked = (await runOnce(pair, probe_mib, 4000, 0)).ms;
    const a = Math.max(0.01, (plain - idle) / probe_mib);
    const b = Math.max(1e-6, (worked - plain) / probe_mib / 4000);
    const target_ms_per_mib = 1000 / ((TARGET_MB_PER_S * 1e6) / 1048576);
    const work = Math.max(0, Math.round((target_ms_per_mib - a) / b));
    // Long enough for a few checkpoints at 1/s after the base, which alone takes seconds to send.
    const write_mib = quick ? 250 : 500;
    const repeats = quick ? 1 : 2;
    const runs: Record<string, { ms: number[]; taken: Taken[] }> = { none: { ms: [], taken: [] }, "1/s": { ms: [], taken: [] }, "10/s": { ms: [], taken: [] } };
    const every: Record<string, number> = { none: 0, "1/s": 1000, "10/s": 100 };
    for (let r = 0; r < repeats; r += 1) {
      // Interleaved, so that a change in the machine's load falls on all three alike.
      for (const name of Object.keys(runs)) {
        const got = await runOnce(pair, write_mib, work, every[name] as number);
        runs[name]?.ms.push(got.ms);
        runs[name]?.taken.push(...got.taken);
      }
    }
    const base_ms = median(runs.none?.ms ?? []);
    const dirty_mb_s = (write_mib * 1048576) / 1e6 / ((base_ms - idle) / 1000);
    console.log(`\n(k) checkpoints of a ${SIZE_MIB} MiB process dirtying ~${dirty_mb_s.toFixed(0)} MB/s (dirtier ${SIZE_MIB} ${write_mib} ${work}; ${write_mib} MiB rewritten), n1 → keeper n2 over mutual TLS, median of ${repeats}`);
    console.log("base = the first checkpoint of a chain (every non-zero page); increments = the pages written since the one before");
    console.log("| checkpoints | runtime ms | slowdown | count | pause ms median | p95 | max | base MiB | increment MiB median | pages per increment |\n|---|---|---|---|---|---|---|---|---|---|");
    for (const [name, run] of Object.entries(runs)) {
      const ms = median(run.ms);
      const slowdown = `${(((ms - base_ms) / base_ms) * 100).toFixed(1)}%`;
      if (run.taken.length === 0) {
        console.log(`| ${name} | ${ms.toFixed(0)} | ${name === "none" ? "-" : slowdown} | 0 | - | - | - | - | - | - |`);
        continue;
      }
      const pauses = run.taken.map((t) => t.pause_ms);
      const bases = run.taken.filter((t) => t.checkpoint === 1);
      const incs = run.taken.filter((t) => t.checkpoint > 1);
      const mib = (x: number): string => (x / 1048576).toFixed(1);
      console.log(
        `| ${name} | ${ms.toFixed(0)} | ${slowdown} | ${(run.taken.length / repeats).toFixed(0)} | ${f1(median(pauses))} | ${f1(pct(pauses, 95))} | ${f1(Math.max(...pauses))} | ${bases.length > 0 ? mib(median(bases.map((t) => t.bytes))) : "-"} | ${incs.length > 0 ? mib(median(incs.map((t) => t.bytes))) : "-"} | ${incs.length > 0 ? median(incs.map((t) => t.pages)).toFixed(0) : "-"} |`,
      );
    }
  } finally {
    await pair.stop();
  }
}

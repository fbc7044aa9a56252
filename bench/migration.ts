/**
 * Migration benchmark: two node daemons as separate OS processes on
 * 127.0.0.1; the memory-heavy example at several sizes and write rates moved
 * with each strategy; stop-and-copy throughput against a raw TCP transfer of
 * the same bytes over loopback, measured in the same run.
 */
import { startPair } from "./_nodes.js";
import { rawTcpTransfer } from "./_measure.js";
import { remotePagesAvailability } from "../src/memory/mod.js";

interface Metrics {
  total_ms: number;
  downtime_ms: number;
  bytes: number;
  rounds: number;
  dirty_pages: number[];
  post_copy?: { demand_chunks: number; pushed_chunks: number; zero_chunks: number; resume_to_last_page_ms: number };
}

/** Runs the migration benchmark and prints its tables. */
export async function migrationBench(quick: boolean): Promise<void> {
  const { a1, sha, request, stop } = await startPair("c/memhog.wasm");
  const sizes = quick ? [64] : [256, 1024];
  const rates = quick ? [0, 100] : [0, 10, 100];
  const post_copy = remotePagesAvailability();
  const strategies = post_copy.available ? ["stop-copy", "pre-copy", "post-copy", "hybrid"] : ["stop-copy", "pre-copy"];
  if (!post_copy.available) console.log(`\npost-copy and hybrid left out: ${post_copy.reason}`);
  console.log("\n(e) migration of memhog between two node processes on 127.0.0.1 (ms; MB/s of writes while it runs)");
  console.log("post-copy columns: 64 KiB chunks fetched on demand / pushed, and ms from resume to the last page");
  console.log("| memory | writes | strategy | total ms | downtime ms | MiB sent | rounds | pages per round | on demand | pushed | last page ms |\n|---|---|---|---|---|---|---|---|---|---|---|");
  const throughput: { mib: number; bytes: number; total_ms: number; downtime_ms: number }[] = [];
  try {
    for (const mib of sizes) {
      for (const rate of rates) {
        for (const strategy of strategies) {
          const { pid } = JSON.parse((await request(a1, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: [String(mib), String(rate), "600"] })).body.toString()) as { pid: string };
          // Wait until every page is touched: memhog says so on its first line.
          for (;;) {
            const out = await request(a1, "GET", `/v1/processes/${pid}/output`);
            if (out.body.toString().includes("event: output")) break;
            await new Promise((r) => setTimeout(r, 50));
          }
          await new Promise((r) => setTimeout(r, 300));
          const r = await request(a1, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy, max_downtime_ms: 100 });
          if (r.status !== 200) throw new Error(`migration failed: ${r.body.toString()}`);
          const m = (JSON.parse(r.body.toString()) as { metrics: Metrics }).metrics;
          const pc = m.post_copy;
          const tail = pc === undefined ? "- | - | -" : `${pc.demand_chunks} | ${pc.pushed_chunks} | ${pc.resume_to_last_page_ms.toFixed(0)}`;
          console.log(`| ${mib} MiB | ${rate} | ${strategy} | ${m.total_ms.toFixed(0)} | ${m.downtime_ms.toFixed(1)} | ${(m.bytes / 1048576).toFixed(1)} | ${m.rounds} | ${m.dirty_pages.join(" ")} | ${tail} |`);
          if (strategy === "stop-copy" && rate === 0) throughput.push({ mib, bytes: m.bytes, total_ms: m.total_ms, downtime_ms: m.downtime_ms });
          await request(a1, "DELETE", `/v1/processes/${pid}`);
        }
      }
    }
    console.log("\n(f) stop-and-copy throughput vs a raw TCP transfer of the same bytes over loopback, same run");
    console.log("copy phase = stopped at the source to running at the destination (suspend, image, checks, restore);");
    console.log("whole = the request to running, including preparing the destination while the source still runs");
    console.log("| memory | bytes | raw TCP MB/s | copy phase MB/s | ratio | whole MB/s | ratio |\n|---|---|---|---|---|---|---|");
    for (const t of throughput) {
      const raw_ms = await rawTcpTransfer(t.bytes);
      const raw = t.bytes / 1e6 / (raw_ms / 1000);
      const copy = t.bytes / 1e6 / (t.downtime_ms / 1000);
      const whole = t.bytes / 1e6 / (t.total_ms / 1000);
      console.log(`| ${t.mib} MiB | ${t.bytes} | ${raw.toFixed(0)} | ${copy.toFixed(0)} | ${(copy / raw).toFixed(2)}x | ${whole.toFixed(0)} | ${(whole / raw).toFixed(2)}x |`);
    }
  } finally {
    await stop();
  }
}

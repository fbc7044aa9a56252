/**
 * Pre-copy's downtime over many moves of one process: memhog writing at a
 * steady rate, moved back and forth between two node daemons (separate OS
 * processes on 127.0.0.1, mutual TLS) with `max_downtime_ms` 10, issue 15's
 * aim. One move's downtime on this kind of machine scatters more than most
 * changes to it (a collection, a thread not scheduled), so the figure is
 * the spread of many: median and the 10th and 90th percentiles, with the
 * median of each phase inside it.
 */
import { median, percentile } from "./_measure.js";
import { startPair } from "./_nodes.js";

interface Metrics {
  downtime_ms: number;
  dirty_pages: number[];
  phases_ms: Record<string, number>;
  destination_phases_ms: Record<string, number>;
}

const SOURCE = ["suspend", "capture", "encode", "transfer", "restore"] as const;
const DESTINATION = ["decode", "restore", "resume", "adopt"] as const;

/** Runs the section and prints its table. */
export async function downtimeBench(quick: boolean): Promise<void> {
  const mib = 256;
  const moves = quick ? 6 : 16;
  const { a1, a2, sha, request, stop } = await startPair("c/memhog.wasm");
  console.log(`\n(e3) pre-copy downtime over ${moves} moves of one ${mib} MiB memhog, back and forth between two nodes (mutual TLS), max_downtime_ms 10 (ms)`);
  console.log("phases: medians of the source's from the stop, then the destination's from the image on; final copy: pages sent after the stop");
  console.log(`| writes MB/s | median | p10 | p90 | ${SOURCE.join(" | ")} | dest. ${DESTINATION.join(" | dest. ")} | final copy (median pages) |`);
  console.log(`|---|---|---|---|${[...SOURCE, ...DESTINATION].map(() => "---|").join("")}---|`);
  try {
    for (const rate of quick ? [50] : [0, 50]) {
      const { pid } = JSON.parse((await request(a1, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: [String(mib), String(rate), "3600"] })).body.toString()) as { pid: string };
      for (;;) {
        const out = await request(a1, "GET", `/v1/processes/${pid}/output`);
        if (out.body.toString().includes("event: output")) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const seen: Metrics[] = [];
      let at = a1;
      try {
        for (let i = 0; i < moves; i += 1) {
          const to = at === a1 ? "n2" : "n1";
          const r = await request(at, "POST", `/v1/processes/${pid}/migrate`, { to, strategy: "pre-copy", max_downtime_ms: 10 });
          if (r.status !== 200) throw new Error(`migration failed: ${r.body.toString()}`);
          seen.push((JSON.parse(r.body.toString()) as { metrics: Metrics }).metrics);
          at = at === a1 ? a2 : a1;
        }
      } finally {
        await request(at, "DELETE", `/v1/processes/${pid}`);
      }
      const downtimes = seen.map((m) => m.downtime_ms);
      const med = (f: (m: Metrics) => number): string => median(seen.map(f)).toFixed(1);
      const src = SOURCE.map((p) => med((m) => m.phases_ms[p] ?? 0));
      const dst = DESTINATION.map((p) => med((m) => m.destination_phases_ms[p] ?? 0));
      const final = median(seen.map((m) => m.dirty_pages.at(-1) ?? 0));
      console.log(`| ${rate} | ${median(downtimes).toFixed(1)} | ${percentile(downtimes, 10).toFixed(1)} | ${percentile(downtimes, 90).toFixed(1)} | ${src.join(" | ")} | ${dst.join(" | ")} | ${final} |`);
    }
  } finally {
    await stop();
  }
}

/**
 * Cheap moves (issue 12 item 6, issue 15 "setup"): a small process moved back
 * and forth between two nodes with mutual TLS, from the client's request to
 * the process running at the destination. Two pairs in one run, alternating:
 * nodes that start a worker for each standby (`--warm-workers 0`, as before)
 * and nodes that keep one warm (the default). The phases say where the rest
 * goes.
 */
import { median } from "./_measure.js";
import { startPair, type NodePair } from "./_nodes.js";

interface Metrics {
  total_ms: number;
  downtime_ms: number;
  phases_ms: Record<string, number>;
  destination_phases_ms: Record<string, number>;
}

/** One pid moving between the pair's nodes: each call moves it to the other one. */
async function mover(pair: NodePair, mib: number): Promise<{ move(): Promise<{ wall_ms: number; m: Metrics }>; end(): Promise<void> }> {
  const { a1, a2, sha, request } = pair;
  const { pid } = JSON.parse((await request(a1, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: [String(mib), "0", "600"] })).body.toString()) as { pid: string };
  // memhog's first line says every page is touched.
  for (;;) {
    const out = await request(a1, "GET", `/v1/processes/${pid}/output`);
    if (out.body.toString().includes("event: output")) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  let at = a1;
  return {
    async move() {
      const [to, next] = at === a1 ? ["n2", a2] : ["n1", a1];
      const t0 = performance.now();
      const r = await request(at, "POST", `/v1/processes/${pid}/migrate`, { to, strategy: "stop-copy" });
      const wall_ms = performance.now() - t0;
      if (r.status !== 200) throw new Error(`migration failed: ${r.body.toString()}`);
      at = next;
      return { wall_ms, m: (JSON.parse(r.body.toString()) as { metrics: Metrics }).metrics };
    },
    async end() {
      await request(at, "DELETE", `/v1/processes/${pid}`);
    },
  };
}

/** Runs the small-move benchmark and prints its table. */
export async function smallBench(quick: boolean): Promise<void> {
  const moves = quick ? 5 : 15;
  const sizes = [1, 16];
  const kinds = [
    { label: "a new worker per standby (--warm-workers 0)", args: ["--warm-workers", "0"] },
    { label: "a warm worker (default)", args: [] },
  ];
  const pairs: NodePair[] = [];
  try {
    for (const k of kinds) pairs.push(await startPair("c/memhog.wasm", "tls", k.args));
    console.log(`\n(s) small moves: stop-copy of memhog between two nodes (mutual TLS) on 127.0.0.1, back and forth; median of ${moves} (ms)`);
    console.log("request = the client's POST .../migrate to its answer; total and downtime as the source measures them; setup = destination's standby + reserve");
    console.log("| memory | nodes | request | total | downtime | connect | prepare | dest standby | dest reserve | encode+transfer | restore |\n|---|---|---|---|---|---|---|---|---|---|---|");
    for (const mib of sizes) {
      const movers = await Promise.all(pairs.map((p) => mover(p, mib)));
      const got: { wall_ms: number; m: Metrics }[][] = pairs.map(() => []);
      for (let i = 0; i < moves; i += 1) {
        for (const [j, mv] of movers.entries()) {
          // A moment between moves, so that each pair's warm worker is back (as between real moves).
          await new Promise((r) => setTimeout(r, 400));
          got[j]?.push(await mv.move());
        }
      }
      for (const [j, k] of kinds.entries()) {
        const xs = got[j] ?? [];
        const med = (f: (x: { wall_ms: number; m: Metrics }) => number): string => median(xs.map(f)).toFixed(1);
        console.log(
          `| ${mib} MiB | ${k.label} | ${med((x) => x.wall_ms)} | ${med((x) => x.m.total_ms)} | ${med((x) => x.m.downtime_ms)} | ${med((x) => x.m.phases_ms["connect"] ?? 0)} | ${med((x) => x.m.phases_ms["prepare"] ?? 0)} | ${med((x) => x.m.destination_phases_ms["standby"] ?? 0)} | ${med((x) => x.m.destination_phases_ms["reserve"] ?? 0)} | ${med((x) => (x.m.phases_ms["encode"] ?? 0) + (x.m.phases_ms["transfer"] ?? 0))} | ${med((x) => x.m.phases_ms["restore"] ?? 0)} |`,
        );
      }
      for (const mv of movers) await mv.end();
    }
  } finally {
    for (const p of pairs) await p.stop();
  }
}

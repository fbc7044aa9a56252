/**
 * Stop-copy at line rate (issue 15): an idle memhog moved with stop-copy
 * between two nodes, with mutual TLS and without (`--insecure`), against a
 * raw loopback TCP transfer of the same bytes measured in the same run, one
 * after the other so that drift on the machine falls on all alike; and what
 * TLS costs against plain (issue 10: at most 20% at 256 MiB). Stop-copy sends
 * its pages before the image, as records on a connection of their own that
 * native threads write from guest memory and read into the standby's
 * (sealed with TLS, GMAC-tagged in the clear without; docs/cluster.md).
 */
import { median, rawTcpTransfer } from "./_measure.js";
import { startPair, type NodePair, type Security } from "./_nodes.js";

interface Metrics {
  total_ms: number;
  downtime_ms: number;
  bytes: number;
  phases_ms?: Record<string, number>;
}

/** Runs the throughput benchmark and prints its table: 64 MiB with --quick, 64 and 256 MiB without. */
export async function throughputBench(quick: boolean): Promise<void> {
  for (const mib of quick ? [64] : [64, 256]) await throughputAt(mib, quick ? 3 : 5);
}

/** One size: TLS and plain pairs side by side, each move followed by its raw TCP transfer. */
async function throughputAt(mib: number, repeats: number): Promise<void> {
  const kinds: Security[] = ["plain", "tls"];
  const pairs = new Map<Security, NodePair>();
  const pids = new Map<Security, { pid: string; at: string }>();
  try {
    for (const k of kinds) {
      const pair = await startPair("c/memhog.wasm", k);
      pairs.set(k, pair);
      const { pid } = JSON.parse((await pair.request(pair.a1, "POST", "/v1/processes", { module_sha256: pair.sha, module_name: "memhog.wasm", args: [String(mib), "0", "600"] })).body.toString()) as { pid: string };
      for (;;) {
        const out = await pair.request(pair.a1, "GET", `/v1/processes/${pid}/output`);
        if (out.body.toString().includes("event: output")) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      pids.set(k, { pid, at: pair.a1 });
    }
    const got = new Map<string, number[]>();
    const add = (key: string, v: number): void => void got.set(key, [...(got.get(key) ?? []), v]);
    const phases = new Map<Security, Record<string, number>[]>();
    for (let i = 0; i < repeats; i += 1) {
      for (const k of kinds) {
        const pair = pairs.get(k) as NodePair;
        const p = pids.get(k) as { pid: string; at: string };
        const to = p.at === pair.a1 ? "n2" : "n1";
        const r = await pair.request(p.at, "POST", `/v1/processes/${p.pid}/migrate`, { to, strategy: "stop-copy" });
        if (r.status !== 200) throw new Error(`migration failed: ${r.body.toString()}`);
        p.at = p.at === pair.a1 ? pair.a2 : pair.a1;
        const m = (JSON.parse(r.body.toString()) as { metrics: Metrics }).metrics;
        const raw_ms = await rawTcpTransfer(m.bytes);
        const fresh_ms = await rawTcpTransfer(m.bytes, { into_fresh_memory: true });
        add(`${k} raw`, m.bytes / 1e3 / raw_ms);
        add(`${k} fresh`, m.bytes / 1e3 / fresh_ms);
        add(`${k} whole fresh ratio`, fresh_ms / m.total_ms);
        add(`${k} copy`, m.bytes / 1e3 / m.downtime_ms);
        add(`${k} whole`, m.bytes / 1e3 / m.total_ms);
        add(`${k} copy ratio`, raw_ms / m.downtime_ms);
        add(`${k} whole ratio`, raw_ms / m.total_ms);
        if (m.phases_ms !== undefined) phases.set(k, [...(phases.get(k) ?? []), m.phases_ms]);
      }
      // TLS against plain, move by move (each pair of moves ran back to back).
      const last = (key: string): number => (got.get(key) ?? []).at(-1) ?? NaN;
      add("tls cost", 1 - last("tls whole") / last("plain whole"));
    }
    const med = (key: string): number => median(got.get(key) ?? [NaN]);
    console.log(`\n(t) stop-copy of an idle ${mib} MiB memhog between two nodes on 127.0.0.1 vs raw loopback TCP of the same bytes (received in another thread), each move followed by its raw transfers (median of ${repeats}; MB/s)`);
    console.log("copy phase = stopped at the source to running at the destination (the downtime); whole = from the offer to running");
    console.log("raw TCP into fresh memory: the receiver also copies the bytes into a new memory of their size, backed first as a standby is (huge pages where the kernel has them), whose pages are written for the first time, as a destination's are");
    console.log("| nodes | raw TCP | copy phase | ratio | whole | ratio | raw TCP into fresh memory | whole / that |\n|---|---|---|---|---|---|---|---|");
    for (const k of kinds) {
      console.log(
        `| ${k === "tls" ? "mutual TLS" : "plain (--insecure)"} | ${med(`${k} raw`).toFixed(0)} | ${med(`${k} copy`).toFixed(0)} | ${med(`${k} copy ratio`).toFixed(2)}x | ${med(`${k} whole`).toFixed(0)} | ${med(`${k} whole ratio`).toFixed(2)}x | ${med(`${k} fresh`).toFixed(0)} | ${med(`${k} whole fresh ratio`).toFixed(2)}x |`,
      );
    }
    console.log(`what TLS costs of plain's whole-migration throughput at ${mib} MiB (median of the pairs of moves): ${(med("tls cost") * 100).toFixed(0)}% (aim: at most 20%)`);
    if (phases.size > 0) {
      console.log("\nwhere the time went (median ms of each phase, source's phases_ms)");
      const names = ["connect", "prepare", "suspend", "flush", "capture", "encode", "transfer", "restore"];
      console.log(`| nodes | ${names.join(" | ")} |\n|---|${names.map(() => "---|").join("")}`);
      for (const [k, xs] of phases) console.log(`| ${k} | ${names.map((n) => median(xs.map((x) => x[n] ?? 0)).toFixed(1)).join(" | ")} |`);
    }
    for (const k of kinds) {
      const pair = pairs.get(k) as NodePair;
      const p = pids.get(k) as { pid: string; at: string };
      await pair.request(p.at, "DELETE", `/v1/processes/${p.pid}`);
    }
  } finally {
    for (const p of pairs.values()) await p.stop();
  }
}

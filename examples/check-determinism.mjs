#!/usr/bin/env node
// Run every example twice under node:wasi (examples/run-node-wasi.mjs) and
// check that stdout, stderr, exit status and output files are identical
// byte for byte; print each run's wall time.
//
// Usage: node examples/check-determinism.mjs [NAME...]   (default: all)
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const runner = join(here, "run-node-wasi.mjs");
const stdinText = "hello world\nsecond line\n\nMixed Case 123\nlast line without newline";

// name -> { wasm, args, stdin?, dir?, files?, exit }
const cases = {
  compute: { wasm: "c/compute.wasm", args: [], exit: 0 },
  "compute-exit3": { wasm: "c/compute.wasm", args: ["5", "3"], exit: 3 },
  fileproc: { wasm: "c/fileproc.wasm", args: ["/data/in.bin", "/data/out.bin"], dir: true, files: ["out.bin"], exit: 0 },
  "fileproc-chunk1000": { wasm: "c/fileproc.wasm", args: ["/data/in.bin", "/data/out.bin", "1000"], dir: true, files: ["out.bin"], exit: 0 },
  memhog: { wasm: "c/memhog.wasm", args: [], exit: 0 },
  "memhog-idle": { wasm: "c/memhog.wasm", args: ["16", "0", "1"], exit: 0 },
  recurse: { wasm: "c/recurse.wasm", args: [], exit: 0 },
  "recurse-100000": { wasm: "c/recurse.wasm", args: ["100000", "5"], exit: 0 },
  sleeper: { wasm: "c/sleeper.wasm", args: ["100", "10"], stdin: stdinText, exit: 0 },
  "sleeper-nostdin": { wasm: "c/sleeper.wasm", args: [], stdin: "", exit: 0 },
  sieve: { wasm: "as/sieve.wasm", args: [], exit: 0 },
  "sieve-exit7": { wasm: "as/sieve.wasm", args: ["3", "7"], exit: 7 },
  mandel: { wasm: "as/mandel.wasm", args: [], exit: 0 },
};

const only = process.argv.slice(2);
let failures = 0;
for (const [name, c] of Object.entries(cases)) {
  if (only.length && !only.includes(name)) continue;
  const runs = [];
  for (let i = 0; i < 2; i++) {
    const dir = mkdtempSync(join(tmpdir(), "ferry-ex-"));
    if (c.dir) spawnSync(process.execPath, [join(here, "gen-input.mjs"), join(dir, "in.bin"), "2M"]);
    const t0 = Date.now();
    const r = spawnSync(
      process.execPath,
      [runner, ...(c.dir ? ["--dir", dir] : []), join(here, c.wasm), ...c.args],
      { input: c.stdin ?? "", maxBuffer: 64 << 20 },
    );
    const ms = Date.now() - t0;
    const files = (c.files ?? []).map((f) => readFileSync(join(dir, f)));
    rmSync(dir, { recursive: true, force: true });
    runs.push({ r, ms, files });
  }
  const [a, b] = runs;
  const problems = [];
  if (a.r.status !== c.exit) problems.push(`exit ${a.r.status} (signal ${a.r.signal}), want ${c.exit}`);
  if (a.r.status !== b.r.status) problems.push(`exit differs: ${a.r.status} vs ${b.r.status}`);
  if (!a.r.stdout.equals(b.r.stdout)) problems.push("stdout differs");
  if (!a.r.stderr.equals(b.r.stderr)) problems.push("stderr differs");
  a.files.forEach((f, i) => {
    if (!f.equals(b.files[i])) problems.push(`${c.files[i]} differs`);
  });
  if (a.r.stdout.length === 0) problems.push("no stdout");
  const lines = a.r.stdout.toString().split("\n").length - 1;
  console.log(
    `${problems.length ? "FAIL" : "ok  "} ${name.padEnd(20)} exit=${a.r.status} ` +
      `${String(lines).padStart(3)} stdout lines, ${a.ms} ms / ${b.ms} ms${problems.length ? "  " + problems.join("; ") : ""}`,
  );
  if (problems.length) {
    failures++;
    process.stderr.write(a.r.stderr);
  }
}
process.exitCode = failures ? 1 : 0;

#!/usr/bin/env node
// The quick-start demo: runs an example program as a chain of fresh OS
// processes — each one suspends the program into an image after a while and
// the next resumes it from that image — until the program ends. Its output
// reads as one uninterrupted run.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const ferry = path.join(root, "bin", "ferry.js");
const program = path.join(root, "examples", "c", "compute.wasm");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-demo-"));
const note = (s) => process.stderr.write(`\x1b[2m--- ${s}\x1b[0m\n`);

let step = 0;
let image = null;
let status = 0;
for (;;) {
  const next = path.join(dir, `step${step}.img`);
  const suspend = ["--suspend-after", "400", "--image", next];
  const args = image === null ? ["exec", ...suspend, program, "16"] : ["resume", ...suspend, image];
  note(`ferry ${args.map((a) => (a.startsWith(dir) ? path.basename(a) : a.startsWith(root) ? path.relative(root, a) : a)).join(" ")}`);
  const r = spawnSync(process.execPath, [ferry, ...args], { stdio: "inherit" });
  status = r.status ?? 1;
  if (!fs.existsSync(next)) break;
  note(`suspended into ${path.basename(next)} (${fs.statSync(next).size} bytes); resuming it in a new process`);
  image = next;
  step += 1;
}
note(`the program ended with status ${status} after ${step} suspensions`);
fs.rmSync(dir, { recursive: true, force: true });
process.exit(status);

/**
 * Ferry's own WASI host against Node's node:wasi on the same (uninstrumented)
 * programs: the same stdout, stderr, exit status and files. A second opinion
 * on our preview1 semantics, program by program.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, describe, it } from "node:test";
import { EXAMPLES, ferry, nodeWasi, readTree, tempDir } from "./_helpers.js";


const CASES: { module: string; args: string[]; files?: boolean; stdin?: string }[] = [
  { module: "c/compute.wasm", args: ["4", "9"] },
  { module: "c/fileproc.wasm", args: ["/data/in.bin", "/data/out.bin", "1000"], files: true },
  { module: "c/memhog.wasm", args: ["8", "0", "0"] },
  { module: "c/dirtier.wasm", args: ["4", "40", "10"] },
  { module: "c/recurse.wasm", args: ["5000", "5"] },
  { module: "c/sleeper.wasm", args: ["5", "6"], stdin: "one\ntwo\nthree" },
  { module: "as/sieve.wasm", args: ["3", "4"] },
  { module: "as/mandel.wasm", args: ["3"] },
];

describe("conformance with node:wasi", () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });
  for (const c of CASES) {
    it(`${c.module} ${c.args.join(" ")}`, async () => {
      const ours = tempDir("conf-ferry");
      const theirs = tempDir("conf-node");
      dirs.push(ours, theirs);
      if (c.files === true) {
        const input = Buffer.alloc(300_000);
        for (let i = 0; i < input.length; i += 1) input[i] = (i * 7919) & 0xff;
        fs.writeFileSync(path.join(ours, "in.bin"), input);
        fs.writeFileSync(path.join(theirs, "in.bin"), input);
      }
      const module = path.join(EXAMPLES, c.module);
      const a = await ferry(["exec", ...(c.files === true ? ["--dir", `${ours}:/data`] : []), module, ...c.args], { stdin: c.stdin ?? "" });
      const b = await nodeWasi([...(c.files === true ? ["--dir", theirs] : []), module, ...c.args], c.stdin ?? "");
      assert.equal(a.status, b.status, "exit status");
      assert.equal(a.stdout.toString(), b.stdout.toString(), "stdout");
      assert.equal(a.stderr.toString(), b.stderr.toString(), "stderr");
      const want = readTree(theirs);
      const got = readTree(ours);
      assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
      for (const [name, bytes] of want) assert.ok(bytes.equals(got.get(name) as Buffer), `file ${name}`);
    });
  }
});

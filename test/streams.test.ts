/**
 * Faithful standard streams (issue 14): a guest sees fds 0, 1 and 2 as what
 * they really are — a terminal, a regular file, a pipe, /dev/null — with the
 * file type and rights that make `isatty()` and `fstat()` answer as on the
 * host, as node:wasi does; and it keeps seeing the same after a suspension.
 * (The SQLite shell printed its banner and prompts into redirected output
 * because fd 0 claimed to be a terminal.) examples/c/streams.c reports, one
 * line a stream: `fdN tty=0|1 type=regular|chardev|pipe seek=0|1`.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, describe, it } from "node:test";
import { EXAMPLES, FERRY, ferry, tempDir, testHome } from "./_helpers.js";

const STREAMS = path.join(EXAMPLES, "c", "streams.wasm");
const NODE_WASI = path.join(EXAMPLES, "run-node-wasi.mjs");

/** What the report says of a stream of each kind. */
const SEEN = {
  file: "tty=0 type=regular seek=1",
  pipe: "tty=0 type=pipe seek=0",
  null: "tty=0 type=chardev seek=1",
  terminal: "tty=1 type=chardev seek=0",
} as const;

/** Single-quoted for sh. */
const q = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

/** Runs `script` through sh; resolves with its stdout once it ends. */
function sh(script: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", script], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, FERRY_HOME: testHome() } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
  });
}

/** The line the report gives for fd `fd`. */
function lineOf(report: string, fd: number): string {
  const line = report.split(/\r?\n/).find((l) => l.startsWith(`fd${fd} `));
  assert.ok(line !== undefined, `no line for fd${fd} in ${JSON.stringify(report)}`);
  return line.slice(`fd${fd} `.length);
}

describe("standard streams are what they really are, under ferry exec as under node:wasi", { concurrency: 2 }, () => {
  const work = tempDir("streams");
  const input = path.join(work, "input.txt");
  fs.writeFileSync(input, "some input\n");
  after(() => fs.rmSync(work, { recursive: true, force: true }));

  const runners = {
    ferry: `${q(process.execPath)} ${q(FERRY)} exec ${q(STREAMS)}`,
    "node:wasi": `${q(process.execPath)} ${q(NODE_WASI)} ${q(STREAMS)}`,
  };
  // Each case redirects one stream and has the report written to another
  // (the test reads it from sh's stdout). `{}` stands for the runner.
  const sink = path.join(work, "sink");
  const cases: { name: string; fd: number; kind: keyof typeof SEEN; script: string }[] = [
    { name: "stdin from a file", fd: 0, kind: "file", script: `{} 1 < ${q(input)}` },
    { name: "stdin from a pipe", fd: 0, kind: "pipe", script: `printf 'x\\n' | {} 1` },
    { name: "stdin from /dev/null", fd: 0, kind: "null", script: "{} 1 < /dev/null" },
    { name: "stdout to a file", fd: 1, kind: "file", script: `{} 2 > ${q(sink)}.RUNNER 2>&1 && cat ${q(sink)}.RUNNER` },
    { name: "stdout to a pipe", fd: 1, kind: "pipe", script: "{ {} 2 | cat > /dev/null; } 2>&1" },
    { name: "stdout to /dev/null", fd: 1, kind: "null", script: "{} 2 2>&1 > /dev/null" },
    { name: "stderr to a file", fd: 2, kind: "file", script: `{} 1 2> ${q(sink)}.RUNNER` },
    { name: "stderr to a pipe", fd: 2, kind: "pipe", script: "{ {} 1 2>&1 >&3 | cat > /dev/null; } 3>&1" },
    { name: "stderr to /dev/null", fd: 2, kind: "null", script: "{} 1 2> /dev/null" },
  ];
  for (const c of cases) {
    it(`${c.name}: ${SEEN[c.kind]}, as node:wasi says`, async () => {
      const reports: Record<string, string> = {};
      for (const [runner, command] of Object.entries(runners)) {
        const tag = runner === "ferry" ? "ferry" : "node";
        const r = await sh(c.script.replace("{}", command).replaceAll("RUNNER", tag));
        assert.equal(r.status, 0, `${runner}: ${r.stderr}`);
        reports[runner] = r.stdout;
      }
      assert.equal(lineOf(reports["ferry"] as string, c.fd), SEEN[c.kind]);
      assert.equal(reports["ferry"], reports["node:wasi"], "ferry exec and node:wasi see the streams differently");
    });
  }

  const script_tool = spawnSync("script", ["--version"]).status === 0;
  it("all three on a terminal: isatty() is true, no position", { skip: script_tool ? false : "no `script` (util-linux) to make a terminal" }, async () => {
    const r = await sh(`script -qec ${q(`${runners.ferry} 1`)} /dev/null`);
    assert.equal(r.status, 0, r.stderr);
    for (const fd of [0, 1, 2]) assert.equal(lineOf(r.stdout, fd), SEEN.terminal);
  });

  it("a resumed process sees the streams it started with, not the resuming side's", async () => {
    const image = path.join(work, "streams.img");
    const suspended = await sh(`${q(process.execPath)} ${q(FERRY)} exec --suspend-after 300 --image ${q(image)} ${q(STREAMS)} 1 3000 < ${q(input)} 2> /dev/null`);
    assert.equal(suspended.status, 0, suspended.stderr);
    assert.equal(suspended.stdout, "", "the program reported before it was suspended: it did not sleep");
    assert.ok(fs.existsSync(image), "no image was written");
    // Resumed with stdin a pipe and stderr a pipe: the guest still sees a file and /dev/null.
    const resumed = await ferry(["resume", image], { stdin: "" });
    assert.equal(resumed.status, 0, resumed.stderr.toString());
    const report = resumed.stdout.toString();
    assert.equal(lineOf(report, 0), SEEN.file);
    assert.equal(lineOf(report, 2), SEEN.null);
  });
});

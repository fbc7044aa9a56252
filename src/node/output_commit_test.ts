import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { OutputLog, type OutputChunk } from "./output_log.js";

function log(): { log: OutputLog; seen: OutputChunk[]; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-commit-"));
  const l = new OutputLog(dir, "n1-1");
  const seen: OutputChunk[] = [];
  l.on("chunk", (c: OutputChunk) => seen.push({ ...c, data: Buffer.from(c.data) }));
  return { log: l, seen, dir };
}

const text = (chunks: OutputChunk[], stream = "stdout"): string => Buffer.concat(chunks.filter((c) => c.stream === stream).map((c) => c.data)).toString();
const readAll = (l: OutputLog): string => Buffer.from(l.read("stdout", 0)).toString();

describe("output commit", () => {
  it("a held log shows readers only what a stored checkpoint covers, and the rest once one does", () => {
    const { log: l, seen, dir } = log();
    try {
      l.hold({ stdout: 0, stderr: 0 });
      l.append({ stream: "stdout", offset: 0, data: Buffer.from("hello ") });
      assert.equal(l.released("stdout"), 0);
      assert.equal(readAll(l), "");
      assert.deepEqual(seen, []);
      l.commit({ stdout: 3, stderr: 0 });
      assert.equal(readAll(l), "hel");
      assert.equal(text(seen), "hel");
      // A checkpoint may cover output that has not arrived yet: it is shown as it arrives.
      l.commit({ stdout: 9, stderr: 0 });
      l.append({ stream: "stdout", offset: 6, data: Buffer.from("world") });
      assert.equal(text(seen), "hello wor");
      assert.equal(l.size("stdout"), 11);
      // Offsets only go forward.
      l.commit({ stdout: 2, stderr: 0 });
      assert.equal(l.released("stdout"), 9);
      // Its end is final: all of it is shown.
      l.end();
      assert.equal(text(seen), "hello world");
      assert.equal(readAll(l), "hello world");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("rewind cuts what no checkpoint covers, for the restarted process to write again; never what readers saw", () => {
    const { log: l, seen, dir } = log();
    try {
      l.hold({ stdout: 0, stderr: 0 });
      l.append({ stream: "stdout", offset: 0, data: Buffer.from("line 1\nline 2\nline 3 (lost with its node)\n") });
      l.commit({ stdout: 14, stderr: 0 });
      assert.throws(() => l.rewind({ stdout: 13, stderr: 0 }), RangeError);
      assert.throws(() => l.rewind({ stdout: 999, stderr: 0 }), RangeError);
      l.rewind({ stdout: 14, stderr: 0 });
      assert.equal(l.size("stdout"), 14);
      l.append({ stream: "stdout", offset: 14, data: Buffer.from("line 3\n") });
      l.commit({ stdout: 21, stderr: 0 });
      assert.equal(text(seen), "line 1\nline 2\nline 3\n");
      assert.equal(readAll(l), "line 1\nline 2\nline 3\n");
      l.close();
      // The file holds exactly that: no byte past the cut survives.
      assert.equal(fs.readFileSync(path.join(dir, "n1-1.stdout"), "utf8"), "line 1\nline 2\nline 3\n");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a log that is not held shows everything at once and ignores commits", () => {
    const { log: l, seen, dir } = log();
    try {
      l.append({ stream: "stderr", offset: 0, data: Buffer.from("oops") });
      l.commit({ stdout: 0, stderr: 0 });
      assert.equal(text(seen, "stderr"), "oops");
      assert.equal(l.held, null);
      l.end();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("regression: a killed process's last write arriving after its log ended is dropped, not thrown (it took the node down)", () => {
    const { log: l, seen, dir } = log();
    try {
      l.append({ stream: "stdout", offset: 0, data: Buffer.from("tick 1\n") });
      l.end();
      assert.equal(l.append({ stream: "stdout", offset: 7, data: Buffer.from("tick 2\n") }), true);
      assert.equal(text(seen), "tick 1\n");
      assert.equal(l.size("stdout"), 7);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

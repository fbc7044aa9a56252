import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { bytes, duration, renderTop, type TopFrame } from "./_top.js";

const frame: TopFrame = {
  now_unix_ms: Date.UTC(2026, 0, 1, 12, 0, 0),
  columns: 100,
  rows: 12,
  overview: {
    node: "n1",
    time_unix_ms: 0,
    nodes: [
      { name: "n1", address: "127.0.0.1:7070", up: true, processes: 2, processes_max: 256, guest_memory_bytes: 3 << 20, rss_bytes: 80 << 20, heap_used_bytes: 20 << 20, load1: 7, cpus: 4, node_cpus: 2, runnable: 1, cpu_used: 0.5, draining: false, post_copy: true, started_unix_ms: 0, time_unix_ms: 90_000 },
      { name: "n3", address: "127.0.0.1:7072", up: true, processes: 0, processes_max: 256, guest_memory_bytes: 0, rss_bytes: 70 << 20, heap_used_bytes: 20 << 20, load1: 7, cpus: 4, node_cpus: 4, runnable: 0, cpu_used: 0, draining: false, post_copy: true, started_unix_ms: 0, time_unix_ms: 90_000 },
      { address: "127.0.0.1:7071", up: false },
    ],
  },
  page: {
    total: 30,
    all: 31,
    states: { running: 30, exited: 1 },
    rows: Array.from({ length: 30 }, (_, i) => ({ pid: `n1-${i + 1}`, node: "n1", state: "running", module_name: "p.wasm", args: ["x".repeat(200)], started_unix_ms: Date.UTC(2026, 0, 1, 11, 0, 0), moves: 1, memory_bytes: 65536 })),
  },
};

describe("ferry top's frame", () => {
  it("fits the terminal: no more lines than rows, none wider than columns", () => {
    const lines = renderTop(frame);
    assert.equal(lines.length, frame.rows);
    for (const l of lines) assert.ok(l.length <= frame.columns, l);
    assert.match(lines[0] ?? "", /2 of 3 nodes up/);
    assert.ok(lines.some((l) => /^NODE\s+ADDRESS\s+PROCS\s+LOAD\/CPU\s+USED\/CPU\s+GUEST MEM\s+NODE MEM\s+UP$/.test(l)), lines.join("\n"));
    assert.ok(lines.some((l) => /^n1\s+127\.0\.0\.1:7070\s+2\/256\s+0\.50\s+0\.25\s+3\.0 MiB\s+80\.0 MiB\s+1m30s$/.test(l)), lines.join("\n"));
    assert.ok(lines.some((l) => /^\?\s+127\.0\.0\.1:7071\s+down$/.test(l)));
    assert.ok(lines.some((l) => l.startsWith("31 processes (1 exited, 30 running)")));
    assert.ok(lines.some((l) => /^n1-1\s+n1\s+running\s+64\.0 KiB\s+1h00m\s+1\s+p\.wasm x+…$/.test(l)), lines.join("\n"));
  });

  it("shows each node's own load from its load module, not the machine's load average", () => {
    // n1 and n3 share a host (the same load1 and cpus) yet differ in what their guests want and use, over their own --cpus.
    const lines = renderTop({ ...frame, rows: 40 });
    const row = (name: string): string[] => (lines.find((l) => l.startsWith(`${name} `)) ?? "").trim().split(/\s{2,}/);
    assert.deepEqual(row("n1").slice(3, 5), ["0.50", "0.25"]);
    assert.deepEqual(row("n3").slice(3, 5), ["0.00", "0.00"]);
    assert.ok(!lines.some((l) => l.includes("1.75")), "the machine's load per core (7 / 4) is not shown");
  });

  it("writes sizes and durations in their largest units", () => {
    assert.equal(bytes(null), "-");
    assert.equal(bytes(1023), "1023 B");
    assert.equal(bytes(1536), "1.5 KiB");
    assert.equal(duration(59_999), "59s");
    assert.equal(duration(3 * 86_400_000 + 3_600_000), "3d01h");
  });
});

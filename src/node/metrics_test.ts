import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { NodeMetrics, type NodeGauges } from "./metrics.js";

const gauges: NodeGauges = {
  homeStates: () => ({}),
  running: () => 1,
  guestMemoryBytes: () => 0,
  standbys: () => ({ count: 0, bytes: 0 }),
  limits: () => ({ processes_max: 1, memory_max_bytes: 1, standby_bytes_max: 1 }),
  eventSubscribers: () => 0,
};

/** The value of the one sample of `name` whose line holds `having`, or undefined. */
function sample(text: string, name: string, having = ""): number | undefined {
  const line = text.split("\n").find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(having));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

const promtool = spawnSync("promtool", ["--version"], { stdio: "ignore" }).status === 0;
if (!promtool) console.log("# promtool not found (apt-get install prometheus): the metrics text is not checked by promtool");

describe("node metrics of a migration in progress", () => {
  const labels = { pid: "n1-1", to: "n2", strategy: "pre-copy" };
  const MiB = 1 << 20;

  it("counts bytes as they go out, shows the measured dirty rate in bytes per second, and how long since it moved", async () => {
    const m = new NodeMetrics("n1", gauges);
    m.migrationStarted(labels, 64 * MiB);
    m.migrationProgress(labels.pid, { phase: "offered", bytes: 0, memory_bytes: 64 * MiB });
    m.migrationProgress(labels.pid, { phase: "round", round: 1, bytes: 16 * MiB, memory_bytes: 64 * MiB, in_phase: true });
    let text = await m.text();
    assert.equal(sample(text, "ferry_migration_processed_bytes_total", 'strategy="pre-copy"'), 16 * MiB);
    assert.equal(sample(text, "ferry_migration_remaining_bytes", 'pid="n1-1"'), 48 * MiB);
    assert.equal(sample(text, "ferry_migration_dirty_bytes_per_second"), undefined, "no rate before a round measured one");
    assert.ok((sample(text, "ferry_migration_idle_seconds", 'pid="n1-1"') ?? -1) >= 0);
    // Round 1 copies all of memory and measures no writes.
    m.migrationProgress(labels.pid, { phase: "round", round: 1, pages: 16384, bytes: 64 * MiB, memory_bytes: 64 * MiB });
    text = await m.text();
    assert.equal(sample(text, "ferry_migration_dirty_bytes_per_second"), undefined, "round 1 measures no dirty rate");
    m.migrationProgress(labels.pid, { phase: "round", round: 2, pages: 115, bytes: 64 * MiB + 471040, memory_bytes: 64 * MiB, dirty_bytes_per_s: 1_884_160 });
    text = await m.text();
    assert.equal(sample(text, "ferry_migration_dirty_bytes_per_second", 'pid="n1-1"'), 1_884_160);
    assert.equal(sample(text, "ferry_migration_processed_bytes_total", 'strategy="pre-copy"'), 64 * MiB + 471040);
    // A report below an earlier one (a step's own count) is not a step back.
    m.migrationProgress(labels.pid, { phase: "stopping", bytes: 64 * MiB, memory_bytes: 64 * MiB });
    text = await m.text();
    assert.equal(sample(text, "ferry_migration_processed_bytes_total", 'strategy="pre-copy"'), 64 * MiB + 471040);
    if (promtool) {
      const check = spawnSync("promtool", ["check", "metrics"], { input: text });
      assert.equal(check.status, 0, `promtool check metrics: ${check.stdout.toString()}${check.stderr.toString()}`);
    }
    m.migrationSucceeded(labels.pid, { strategy: "pre-copy", total_ms: 1, downtime_ms: 1, bytes: 65 * MiB, pages: 0, rounds: 2, dirty_pages: [], phases_ms: {}, destination_phases_ms: {} });
    text = await m.text();
    assert.equal(sample(text, "ferry_migration_processed_bytes_total", 'strategy="pre-copy"'), 65 * MiB, "the rest counted at the commit");
    for (const gone of ["ferry_migration_dirty_bytes_per_second", "ferry_migration_remaining_bytes", "ferry_migration_idle_seconds"]) {
      assert.equal(sample(text, gone, 'pid="n1-1"'), undefined, `${gone} of a finished migration`);
    }
    assert.equal(sample(text, "ferry_migration_processed_bytes_total", 'strategy="stop-copy"'), 0, "every strategy's series from the start");
  });
});

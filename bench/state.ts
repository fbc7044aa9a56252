/**
 * What saving a node's durable state costs per change as the node is home
 * to more processes (issue 13, many processes): the whole state file
 * rewritten and synced (`NodeStateFile.save`, what every change cost before
 * the journal) against one journal line appended and synced
 * (`StateJournal.record`), with the compactions it makes counted in. Real
 * files in the temporary directory, fsynced: the figures are the disk's and
 * the machine's as much as the code's (its load average is printed).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { NODE_STATE_VERSION, NodeStateFile, type NodeState, type SavedHome, type SavedRunning } from "../src/node/node_state.js";
import { JOURNAL_BYTES_MIN, StateJournal } from "../src/node/_state_journal.js";
import { savedHome } from "../src/node/_state_testing.js";
import { median } from "./_measure.js";

/** A home entry as a node saves it, sized like a real one. */
const home = (pid: string): SavedHome => savedHome(pid, { started_unix_ms: Date.now(), module_name: "pingpong.wasm", args: ["pong", "1"], memory_max_bytes: 268435456 });

const load = (): string => os.loadavg()[0]!.toFixed(1);

/** Runs the part: tables of 1,000, 3,000 and 10,000 processes (`quick`: 1,000). */
export async function stateBench(quick: boolean): Promise<void> {
  console.log("\n== node state: cost of saving one change, by processes the node is home to ==");
  console.log("processes | state file | whole file rewritten (before) | journal record (now) | load");
  console.log("---|---|---|---|---");
  for (const n of quick ? [1000] : [1000, 3000, 10_000]) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-state-bench-"));
    try {
      const homes = new Map<string, SavedHome>();
      const running = new Map<string, SavedRunning>();
      for (let i = 1; i <= n; i += 1) {
        homes.set(`n1-${i}`, home(`n1-${i}`));
        running.set(`n1-${i}`, { pid: `n1-${i}`, home: "n1", moves: 0 });
      }
      let next_pid = n + 1;
      const whole = (): NodeState => ({ version: NODE_STATE_VERSION, node: "n1", next_pid, homes: [...homes.values()], running: [...running.values()] });
      const file = new NodeStateFile(dir);
      const rewrites: number[] = [];
      for (let k = 0; k < 20; k += 1) {
        const t = performance.now();
        file.save(whole());
        rewrites.push(performance.now() - t);
      }
      const size = fs.statSync(file.path).size;
      // The journal: a start's two records (the counter, then the process), timed; then what a compaction costs, and its share per record.
      const journal = new StateJournal(dir, "n1");
      journal.load();
      const starts = 250;
      const t0 = performance.now();
      for (let k = 0; k < starts; k += 1) {
        const pid = `n1-${next_pid}`;
        next_pid += 1;
        journal.record({ next_pid }, whole);
        homes.set(pid, home(pid));
        running.set(pid, { pid, home: "n1", moves: 0 });
        journal.record({ next_pid, pid: { pid, home: homes.get(pid) as SavedHome, running: [running.get(pid) as SavedRunning] } }, whole);
      }
      const record_ms = (performance.now() - t0) / (starts * 2);
      const line_bytes = fs.statSync(journal.journalPath()).size / (starts * 2);
      const compacts: number[] = [];
      for (let k = 0; k < 5; k += 1) {
        const t = performance.now();
        journal.compact(whole());
        compacts.push(performance.now() - t);
      }
      journal.close();
      // A compaction comes once the journal holds max(JOURNAL_BYTES_MIN, the snapshot's size) bytes.
      const share_ms = (median(compacts) * line_bytes) / Math.max(JOURNAL_BYTES_MIN, size);
      console.log(
        `${n} | ${(size / 1024).toFixed(0)} KiB | ${median(rewrites).toFixed(1)} ms (median of 20, min ${Math.min(...rewrites).toFixed(1)}) | ${record_ms.toFixed(2)} ms (mean of ${starts * 2}, ${line_bytes.toFixed(0)} bytes) + ${share_ms.toFixed(2)} ms share of a compaction (${median(compacts).toFixed(0)} ms each, one per ${Math.round(Math.max(JOURNAL_BYTES_MIN, size) / line_bytes)} records) | ${load()}`,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

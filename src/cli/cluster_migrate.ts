/** `ferry migrate`: move a running process to another node. */
import { FerryError, isErrorCode, knownCode } from "../errors.js";
import type { MigrationMetrics } from "../migration/mod.js";
import { optionInt, optionValue, parseArgs, UsageError } from "./_args.js";
import { CLUSTER_OPTION, clusterClient } from "./_client.js";

/** Help of `ferry migrate`. */
export const MIGRATE_HELP = `Usage: ferry migrate [OPTIONS] PID --to NAME

Moves a running process to node NAME while it runs, and prints the migration's
metrics. If anything fails, the process keeps running where it was.

Options:
  --to NAME              The destination node.
  --strategy S           stop-copy (default): stop, copy everything, resume there;
                         pre-copy: copy memory in rounds while it runs, then stop
                         for the last dirty pages;
                         post-copy: stop, send only the stack and WASI state,
                         resume there at once; pages follow on first touch and
                         by a background push (needs userfaultfd on NAME);
                         hybrid: one pre-copy round, then post-copy of what the
                         process wrote since.
  --max-downtime MS      Pre-copy's downtime target (default 300): rounds stop once
                         the remaining dirty pages would fit in it.
  --recover-timeout MS   Post-copy and hybrid: how long a broken link may stay
                         down before the process is given up (default 10000).
  --push-rate MB         Post-copy and hybrid: cap the background push at MB
                         megabytes per second (pages touched are never held back).
  --compress C           Pre-copy and hybrid: compress the rounds' pages with
                         LZ4: auto (default: when the destination confirmed
                         pages at under 100 MB/s, in this move's last round or
                         the node's last move there), lz4 (always) or off.
  --json                 Print {pid, from, to, metrics} as JSON.
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.

Metrics: total_ms (request to running at the destination), downtime_ms (stopped
at the source to running at the destination), bytes, pages, rounds, and the
pages sent in each round (the last number is the final stop-and-copy; for
post-copy and hybrid, the pages left to come after the process resumed).
Post-copy and hybrid add: chunks (64 KiB) fetched on demand, chunks pushed,
zero chunks sent as ranges, and the time from resume to the last page.

If a post-copy link breaks for longer than --recover-timeout, or either node
dies mid-way, the process is lost (its state is split between the nodes): it
ends with status "lost", naming the pages that never arrived.
`;

interface Result {
  pid: string;
  from: string;
  to: string;
  metrics: MigrationMetrics;
}

interface Progress {
  phase: string;
  round?: number;
  pages?: number;
  bytes: number;
  memory_bytes: number;
}

const BAR_CELLS = 30;

function bar(p: Progress): string {
  const total = Math.max(p.memory_bytes, 1);
  const done = Math.min(1, p.bytes / total);
  const cells = Math.round(done * BAR_CELLS);
  // A round's pages are known at its end; within it (in_phase), only its bytes so far.
  const what = p.phase === "round" ? `round ${p.round ?? 0}${p.pages !== undefined ? `: ${p.pages} pages` : ""}` : p.phase;
  return `\r[${"#".repeat(cells)}${".".repeat(BAR_CELLS - cells)}] ${(p.bytes / 1048576).toFixed(1)} MiB sent  ${what}\x1b[K`;
}

/** `ferry migrate`. */
export async function migrateCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(
    argv,
    [
      { name: "to", value: true },
      { name: "strategy", value: true },
      { name: "max-downtime", value: true },
      { name: "recover-timeout", value: true },
      { name: "push-rate", value: true },
      { name: "compress", value: true },
      { name: "json", value: false },
      { name: "help", value: false, short: "h" },
      CLUSTER_OPTION,
    ],
    false,
  );
  if (parsed.flags.has("help")) {
    process.stdout.write(MIGRATE_HELP);
    return 0;
  }
  const [pid, extra] = parsed.positionals;
  if (pid === undefined) throw new UsageError("missing PID (see ferry migrate --help)");
  if (extra !== undefined) throw new UsageError(`want exactly one PID, got ${JSON.stringify(extra)} too`);
  const to = optionValue(parsed, "to");
  if (to === undefined) throw new UsageError("--to NAME is required");
  const strategy = optionValue(parsed, "strategy") ?? "stop-copy";
  if (!["stop-copy", "pre-copy", "post-copy", "hybrid"].includes(strategy)) throw new UsageError("--strategy is stop-copy, pre-copy, post-copy or hybrid");
  const max_downtime_ms = optionInt(parsed, "max-downtime");
  const recover_ms = optionInt(parsed, "recover-timeout");
  if (recover_ms === 0) throw new UsageError("--recover-timeout must be at least 1 ms");
  const push_mb = optionInt(parsed, "push-rate");
  if (push_mb === 0) throw new UsageError("--push-rate must be at least 1 MB/s");
  const compress = optionValue(parsed, "compress");
  if (compress !== undefined && !["auto", "lz4", "off"].includes(compress)) throw new UsageError("--compress is auto, lz4 or off");
  const body = {
    to,
    strategy,
    ...(compress !== undefined ? { compress } : {}),
    ...(max_downtime_ms !== undefined ? { max_downtime_ms } : {}),
    ...(recover_ms !== undefined ? { recover_ms } : {}),
    ...(push_mb !== undefined ? { push_bytes_per_s: push_mb * 1_000_000 } : {}),
  };
  const client = clusterClient(parsed);
  const path = `/v1/processes/${encodeURIComponent(pid)}/migrate`;
  let result: Result;
  if (process.stderr.isTTY && !parsed.flags.has("json")) {
    result = await withProgress(client.events(`${path}?progress=1`, "POST", body));
  } else {
    result = (await client.json("POST", path, body)) as Result;
  }
  if (parsed.flags.has("json")) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  }
  const m = result.metrics;
  process.stdout.write(
    `migrated ${result.pid} from ${result.from} to ${result.to} (${m.strategy}) in ${m.total_ms.toFixed(1)} ms, downtime ${m.downtime_ms.toFixed(1)} ms\n` +
      `  bytes ${m.bytes}  pages ${m.pages}  rounds ${m.rounds}  pages per round: ${m.dirty_pages.join(" ")}\n`,
  );
  const c = m.convergence;
  if (c !== undefined) {
    const dirty = c.dirty_bytes_per_s === null ? "" : `, written at ${(c.dirty_bytes_per_s / 1e6).toFixed(1)} MB/s`;
    process.stdout.write(`  rounds confirmed at ${(c.link_bytes_per_s / 1e6).toFixed(1)} MB/s${dirty}${c.throttle_pct > 0 ? `; auto-converge held the process ${c.throttle_pct}% of its time` : ""}\n`);
    if (m.first_round === "records") process.stdout.write("  the first round went on the record connection, from a native thread; the rate above is the later rounds'\n");
    if (c.stop_cost_ms > 0) process.stdout.write(`  a stop there took ${c.stop_cost_ms.toFixed(1)} ms besides its final copy in earlier moves: that much of the downtime target was kept for it\n`);
  }
  const z = m.compression;
  if (z !== undefined) process.stdout.write(`  rounds compressed (${z.codec}): ${z.raw_bytes} bytes sent as ${z.wire_bytes} (${(z.raw_bytes / Math.max(z.wire_bytes, 1)).toFixed(2)}:1)\n`);
  // Older nodes report no phases.
  const phases = Object.entries(m.phases_ms ?? {}).filter(([, ms]) => ms !== undefined);
  if (phases.length > 0) process.stdout.write(`  phases ms: ${phases.map(([k, ms]) => `${k} ${(ms as number).toFixed(1)}`).join("  ")}\n`);
  const p = m.post_copy;
  if (p !== undefined) {
    process.stdout.write(
      `  post-copy: ${p.demand_chunks} chunks on demand, ${p.pushed_chunks} pushed, ${p.zero_chunks} zero; last page ${p.resume_to_last_page_ms.toFixed(1)} ms after resume` +
        `${p.connections > 1 ? `; link recovered ${p.connections - 1} time(s)` : ""}${p.end === "abort" ? "; the process ended there before its last page" : ""}\n`,
    );
  }
  return 0;
}

async function withProgress(events: AsyncIterable<{ event: string; data: string }>): Promise<Result> {
  try {
    for await (const e of events) {
      if (e.event === "progress") process.stderr.write(bar(JSON.parse(e.data) as Progress));
      else if (e.event === "result") return JSON.parse(e.data) as Result;
      else if (e.event === "error") {
        const err = JSON.parse(e.data) as { code?: unknown; message?: unknown };
        const message = typeof err.message === "string" ? err.message : "the migration failed";
        // A code this CLI does not know is kept in the message, never passed off as a known one.
        throw new FerryError(knownCode(err.code, "ERR_PEER"), isErrorCode(err.code) ? message : `${message} [${String(err.code)}]`);
      }
    }
  } finally {
    process.stderr.write("\r\x1b[K");
  }
  throw new FerryError("ERR_CLUSTER_PROTOCOL", "the node ended the migration's event stream without a result");
}

/**
 * What the cluster commands share about a process: its status as the API
 * reports it, the exit status the CLI turns it into, and relaying its output
 * stream to this terminal (`run --attach`, `logs`).
 */
import { FerryError } from "../errors.js";
import { ClusterError, type ClusterClient } from "./_client.js";
import { EXIT_KILLED, EXIT_LOST, EXIT_TRAP } from "./run.js";

/**
 * How many times in a row `follow` reconnects to the home node without
 * receiving anything before giving up: enough to ride out a node restarting
 * or a connection reset, few enough that a node gone for good is reported.
 */
export const RECONNECTS_MAX = 5;

/** Pause before reconnect attempt N is N times this. */
export const RECONNECT_DELAY_MS = 200;

/** How a process ended (docs/cluster.md). */
export type ProcessStatus = { kind: "exit"; code: number } | { kind: "trap"; message: string } | { kind: "killed" } | { kind: "lost"; message: string };

/** Checks a status the API sent; a malformed one is the node's fault, not the process's. */
export function parseStatus(value: unknown): ProcessStatus {
  const v = value as { kind?: unknown; code?: unknown; message?: unknown } | null;
  if (v !== null && typeof v === "object") {
    if (v.kind === "exit" && typeof v.code === "number" && Number.isInteger(v.code)) return { kind: "exit", code: v.code };
    if (v.kind === "trap") return { kind: "trap", message: typeof v.message === "string" ? v.message : "" };
    if (v.kind === "killed") return { kind: "killed" };
    if (v.kind === "lost") return { kind: "lost", message: typeof v.message === "string" ? v.message : "" };
  }
  throw new ClusterError("ERR_CLUSTER_PROTOCOL", `the node sent a process status the CLI does not know: ${JSON.stringify(value)}`);
}

/** The CLI's exit status for a process's: its own code, 134 for a trap, 137 when killed, 125 when Ferry lost it. */
export function exitCodeOf(status: ProcessStatus): number {
  switch (status.kind) {
    case "exit":
      return status.code;
    case "trap":
      return EXIT_TRAP;
    case "killed":
      return EXIT_KILLED;
    case "lost":
      return EXIT_LOST;
  }
}

/** Tells the user why the exit status is not the program's own (a trap, a kill); says nothing for a plain exit. */
export function reportStatus(status: ProcessStatus, stderr: NodeJS.WritableStream = process.stderr): void {
  if (status.kind === "trap") stderr.write(`ferry: the program trapped: ${status.message}\n`);
  else if (status.kind === "killed") stderr.write("ferry: the program was killed\n");
  else if (status.kind === "lost") stderr.write(`ferry: the process was lost: ${status.message}\n`);
}

/** Where the output goes. */
export interface OutputSinks {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/**
 * Relays a process's output: without `follow`, what it has written so far;
 * with `follow`, everything until it ends, then returns its status. Offsets
 * make this exactly-once: after a broken connection it asks for what it has
 * not seen, and skips anything the node sends twice.
 */
export async function relayOutput(
  client: ClusterClient,
  pid: string,
  options: { follow: boolean; sinks?: OutputSinks },
): Promise<ProcessStatus | null> {
  const sinks = options.sinks ?? { stdout: process.stdout, stderr: process.stderr };
  const seen = { stdout: 0, stderr: 0 };
  let failures = 0;
  for (;;) {
    const query = new URLSearchParams();
    if (options.follow) query.set("follow", "1");
    // Offsets only once there is something to skip, so a first request is the plainest one.
    if (seen.stdout > 0) query.set("stdout", String(seen.stdout));
    if (seen.stderr > 0) query.set("stderr", String(seen.stderr));
    const path = `/v1/processes/${encodeURIComponent(pid)}/output${query.size > 0 ? `?${query}` : ""}`;
    try {
      for await (const event of client.events(path)) {
        // Only new bytes count as progress: a node that repeats itself and hangs up is not.
        if (event.event === "output" && (await writeChunk(parseChunk(event.data), seen, sinks)) > 0) failures = 0;
        else if (event.event === "exit") return parseStatus(parseJson(event.data, "exit").status);
        // Other events are for newer clients; skip them.
      }
      if (!options.follow) return null;
      // A follow stream must end with `exit`: it was cut, so pick it up again.
    } catch (err: unknown) {
      if (!options.follow || !retriable(err) || failures >= RECONNECTS_MAX) throw err;
    }
    if (failures >= RECONNECTS_MAX) {
      throw new ClusterError("ERR_CLUSTER_CONNECTION", `node ${client.name} keeps ending the output of ${pid} before the process ends`);
    }
    failures += 1;
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_DELAY_MS * failures));
  }
}

/** A connection problem, or a directory that did not answer in time (the caller retries, docs/directory.md): worth another try. */
function retriable(err: unknown): boolean {
  return err instanceof FerryError && (err.code === "ERR_CLUSTER_CONNECTION" || err.code === "ERR_CLUSTER_UNREACHABLE" || err.code === "ERR_DIRECTORY_UNAVAILABLE");
}

interface Chunk {
  stream: "stdout" | "stderr";
  offset: number;
  data: Buffer;
}

function parseJson(text: string, what: string): Record<string, unknown> {
  try {
    const value = JSON.parse(text) as unknown;
    if (value !== null && typeof value === "object") return value as Record<string, unknown>;
  } catch {
    // Not JSON: reported below as what it is, an answer the CLI cannot read.
  }
  throw new ClusterError("ERR_CLUSTER_PROTOCOL", `the node sent a malformed ${what} event: ${text.slice(0, 200)}`);
}

function parseChunk(text: string): Chunk {
  const v = parseJson(text, "output");
  const { stream, offset, data } = v;
  if ((stream !== "stdout" && stream !== "stderr") || typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0 || typeof data !== "string") {
    throw new ClusterError("ERR_CLUSTER_PROTOCOL", `the node sent a malformed output event: ${text.slice(0, 200)}`);
  }
  return { stream, offset, data: Buffer.from(data, "base64") };
}

/** Writes what of `chunk` is new; returns how many bytes that was. */
async function writeChunk(chunk: Chunk, seen: { stdout: number; stderr: number }, sinks: OutputSinks): Promise<number> {
  const have = seen[chunk.stream];
  if (chunk.offset > have) {
    throw new ClusterError("ERR_CLUSTER_PROTOCOL", `the node skipped ${chunk.stream} bytes ${have}..${chunk.offset}`);
  }
  const fresh = chunk.data.subarray(have - chunk.offset);
  if (fresh.length === 0) return 0;
  seen[chunk.stream] = have + fresh.length;
  const sink = chunk.stream === "stdout" ? sinks.stdout : sinks.stderr;
  await new Promise<void>((resolve, reject) => {
    sink.write(fresh, (err?: Error | null) => (err ? reject(err) : resolve()));
  });
  return fresh.length;
}

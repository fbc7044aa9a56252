/**
 * A process's output as server-sent events (`GET /v1/processes/PID/output`):
 * `output` events `{stream, offset, data}` from the offsets the client asks
 * for, then, once the process has ended, one `exit` event with its status.
 * Offsets let a client that reconnects get every byte exactly once, whichever
 * node answers it: the home's log, or a keeper's replica of it before a
 * takeover (`_replica_logs.ts`).
 */
import type http from "node:http";
import type { ProcessStatus } from "./_records.js";
import type { OutputChunk, OutputLog, StreamName } from "./output_log.js";

/** Where a reader has got to in each stream. */
export type Offsets = Record<StreamName, number>;

/** Writes one server-sent event. */
export function sseEvent(res: http.ServerResponse, name: string, data: unknown): void {
  res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
}

/** Starts an event-stream answer. */
export function startOutputStream(res: http.ServerResponse): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
}

/** Sends what of `data` (at `offset` in `stream`) the reader has not seen, and moves its offset on. */
export function sendOutput(res: http.ServerResponse, offsets: Offsets, stream: StreamName, offset: number, data: Uint8Array): void {
  const skip = offsets[stream] - offset;
  if (skip >= data.length) return;
  const fresh = data.subarray(Math.max(0, skip));
  sseEvent(res, "output", { stream, offset: offsets[stream], data: Buffer.from(fresh).toString("base64") });
  offsets[stream] += fresh.length;
}

/**
 * Relays `log` to an event stream already started, from `offsets` (moved on
 * as bytes go): what is released now, then, with `follow`, each chunk as it
 * is released, until the end (then `exit` with `status()`). Without
 * `follow`, the answer ends after what is released now (with `exit` if the
 * process has ended).
 */
export function relayLog(log: OutputLog, status: () => ProcessStatus | null, offsets: Offsets, follow: boolean, req: http.IncomingMessage, res: http.ServerResponse): void {
  for (const stream of ["stdout", "stderr"] as const) {
    // Held output (output commit) is shown only as far as a stored checkpoint covers it.
    while (offsets[stream] < log.released(stream)) {
      const data = log.read(stream, offsets[stream]);
      // Each pass must move on; one that cannot would spin (and stop the node answering).
      if (data.length === 0) throw new Error(`reading ${stream} at ${offsets[stream]} of ${log.released(stream)} returned nothing`);
      sendOutput(res, offsets, stream, offsets[stream], data);
    }
  }
  const finish = (): void => {
    sseEvent(res, "exit", { status: status() });
    res.end();
  };
  if (log.ended) return finish();
  if (!follow) {
    res.end();
    return;
  }
  const onChunk = (chunk: OutputChunk): void => sendOutput(res, offsets, chunk.stream, chunk.offset, chunk.data);
  const onEnd = (): void => {
    cleanup();
    finish();
  };
  const cleanup = (): void => {
    log.off("chunk", onChunk);
    log.off("end", onEnd);
  };
  log.on("chunk", onChunk);
  log.on("end", onEnd);
  req.on("close", cleanup);
}

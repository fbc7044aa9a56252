/** The compacting worker's entry: one job from workerData, one answer (`_compact.ts`). */
import { parentPort, workerData } from "node:worker_threads";
import { compact, type CompactAnswer, type CompactJob } from "./_compact.js";

const port = parentPort;
if (port === null) throw new Error("_compact_worker.js runs as a worker thread only");
let answer: CompactAnswer;
try {
  answer = { kind: "done", bytes: await compact(workerData as CompactJob) };
} catch (err: unknown) {
  const code = (err as { code?: unknown } | null)?.code;
  answer = { kind: "error", code: typeof code === "string" ? code : "ERR_INTERNAL", message: err instanceof Error ? err.message : String(err) };
}
port.postMessage(answer);

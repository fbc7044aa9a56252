/**
 * A compaction's heavy part in a worker thread of its own (docs/checkpoints.md,
 * "Retention policy"): reading a chain's files, rebuilding the whole memory
 * at its newest checkpoint, and writing it out as a new signed base. On the
 * keeper's main thread this was seconds of CPU per compaction of a large
 * process, taken in slices between which its peers, its leases and the next
 * checkpoints waited; here the main thread only commits the result.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { FerryError, isErrorCode } from "../errors.js";
import { encodeImage, trustKeys } from "../image/mod.js";
import { rebuildImage, type StoredCheckpoint } from "../migration/mod.js";
import { replaceFileDurably } from "../durable_file.js";

/** One compaction: the chain's files (base first) with their signers, and where the new base goes. */
export interface CompactJob {
  /** The process's checkpoint folder. */
  dir: string;
  /** Each checkpoint's file name (before `.pages` and `.image`) and its signer (SPKI DER, base64). */
  entries: { file: string; signer: string }[];
  module_sha256: string;
  /** The key that signs the new base (PKCS#8 PEM). */
  key_pem: string;
  /** The new base's file name. */
  name: string;
}

/** What the worker answers. */
export type CompactAnswer = { kind: "done"; bytes: number } | { kind: "error"; code: string; message: string };

/** Does the job here, on this thread: the worker's body, and the tests'. Leaves no file of the new base behind on failure. */
export async function compact(job: CompactJob): Promise<number> {
  const files = { image: path.join(job.dir, `${job.name}.image`), pages: path.join(job.dir, `${job.name}.pages`) };
  try {
    const trust = trustKeys(job.entries.map((e) => createPublicKey({ key: Buffer.from(e.signer, "base64"), format: "der", type: "spki" })));
    const stored: StoredCheckpoint[] = [];
    for (const e of job.entries) {
      const pages = fs.readFileSync(path.join(job.dir, `${e.file}.pages`));
      stored.push({ pages: [...framesOf(pages)], image: fs.readFileSync(path.join(job.dir, `${e.file}.image`)) });
    }
    const image = await rebuildImage(stored, trust, Buffer.from(job.module_sha256, "hex"));
    const key: KeyObject = createPrivateKey(job.key_pem);
    const fd = fs.openSync(files.image, "w", 0o600);
    let bytes = 0;
    try {
      for (const chunk of encodeImage(image, { signer: { key } })) {
        fs.writeSync(fd, chunk);
        bytes += chunk.length;
      }
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    replaceFileDurably(files.pages, new Uint8Array(0));
    return bytes;
  } catch (err: unknown) {
    fs.rmSync(files.image, { force: true });
    fs.rmSync(files.pages, { force: true });
    throw err;
  }
}

/** As {@link compact}, in a worker thread that ends with the job. */
export function compactInWorker(job: CompactJob): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const worker = new Worker(new URL("./_compact_worker.js", import.meta.url), { workerData: job, stdout: false, stderr: false });
    // A node may stop mid-compaction: a base left half-written is not named by chain.json, and is removed when the node starts again.
    worker.unref();
    let settled = false;
    const settle = (finish: () => void): void => {
      if (settled) return;
      settled = true;
      finish();
      void worker.terminate();
    };
    worker.on("message", (answer: CompactAnswer) => {
      if (answer.kind === "done") settle(() => resolve(answer.bytes));
      else settle(() => reject(new FerryError(isErrorCode(answer.code) ? answer.code : "ERR_INTERNAL", answer.message)));
    });
    worker.on("error", (err: Error) => settle(() => reject(new FerryError("ERR_INTERNAL", `the compacting worker failed: ${err.message}`, { cause: err }))));
    worker.on("exit", (code) => settle(() => reject(new FerryError("ERR_INTERNAL", `the compacting worker exited (status ${code}) without an answer`))));
  });
}

/** The PAGES payloads of a `.pages` file (each after its u32 LE length). */
export function* framesOf(file: Buffer): Generator<Uint8Array> {
  for (let at = 0; at < file.length; ) {
    if (at + 4 > file.length) throw new FerryError("ERR_CHECKPOINT_PROTOCOL", "a checkpoint's pages file is cut short");
    const n = file.readUInt32LE(at);
    if (at + 4 + n > file.length) throw new FerryError("ERR_CHECKPOINT_PROTOCOL", "a checkpoint's pages file is cut short");
    yield file.subarray(at + 4, at + 4 + n);
    at += 4 + n;
  }
}

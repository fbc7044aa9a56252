/**
 * The hashing thread of {@link offThreadSha256}: one SHA-256 per stream id,
 * fed in the order the streams' owners posted their bytes. Runs nothing but
 * hashes, so the thread that reads and writes the sockets does no hashing.
 */
import { createHash, type Hash } from "node:crypto";
import { parentPort } from "node:worker_threads";
import type { FromHashWorker, ToHashWorker } from "./_hash_pool.js";

const port = parentPort;
if (port === null) throw new Error("_hash_worker.js runs only as a worker thread");
const streams = new Map<number, Hash>();

port.on("message", (message: ToHashWorker) => {
  if (message.op === "update") {
    let hash = streams.get(message.id);
    if (hash === undefined) {
      hash = createHash("sha256");
      streams.set(message.id, hash);
    }
    for (const piece of message.pieces) hash.update(piece);
    return;
  }
  const hash = streams.get(message.id) ?? createHash("sha256");
  streams.delete(message.id);
  if (message.op === "digest") {
    const reply: FromHashWorker = { id: message.id, digest: new Uint8Array(hash.digest()) };
    port.postMessage(reply, [reply.digest.buffer as ArrayBuffer]);
  }
});

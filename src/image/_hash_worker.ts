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
interface Stream {
  hash: Hash;
  /** The shared buffers the stream registered, by number; dropped with the stream. */
  shared: Map<number, SharedArrayBuffer>;
}
const streams = new Map<number, Stream>();

function stream(id: number): Stream {
  let s = streams.get(id);
  if (s === undefined) {
    s = { hash: createHash("sha256"), shared: new Map() };
    streams.set(id, s);
  }
  return s;
}

port.on("message", (message: ToHashWorker) => {
  if (message.op === "share") {
    stream(message.id).shared.set(message.buffer, message.shared);
    return;
  }
  if (message.op === "update") {
    const s = stream(message.id);
    for (const piece of message.pieces) {
      if (piece instanceof Uint8Array) s.hash.update(piece);
      else {
        const buffer = s.shared.get(piece.buffer);
        if (buffer === undefined) throw new Error(`hash stream ${message.id} names shared buffer ${piece.buffer}, never shared`);
        s.hash.update(new Uint8Array(buffer, piece.offset, piece.length));
      }
    }
    return;
  }
  const hash = (streams.get(message.id) ?? stream(message.id)).hash;
  streams.delete(message.id);
  if (message.op === "digest") {
    const reply: FromHashWorker = { id: message.id, digest: new Uint8Array(hash.digest()) };
    port.postMessage(reply, [reply.digest.buffer as ArrayBuffer]);
  }
});

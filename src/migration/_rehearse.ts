/**
 * A node's rehearsal of the code a migration runs once per move inside its
 * downtime: an image without pages encoded and signed (a source), its
 * HANDOVER read and the image decoded and its signature checked (a
 * destination). V8 compiles and optimizes a function only as it is called:
 * a node's first moves ran these cold, and a destination decoded a
 * post-copy image in 0.4-0.6 ms for its first twenty or so, against 0.16
 * once warm (`ImageDecoder` on a memhog's image signed with P-256, timed
 * alone). So a node rehearses them, with its own key, on a made-up process,
 * a while after it starts, one round per turn of its event loop.
 */
import { CHUNK_BYTES } from "../memory/mod.js";
import { encodeImage, ImageDecoder, trustKeys, type ImageSigner, type ProcessImage } from "../image/mod.js";
import { idleDeps, WasiHost } from "../wasi/mod.js";
import { checkHandover } from "./destination.js";
import { HandoverSchema } from "./_schemas.js";
import { readFrame } from "./_wire.js";

/** Rounds of a rehearsal: past the ones V8 optimizes after (a round is 0.2-3 ms, the first the longest). */
export const REHEARSAL_ROUNDS = 40;

/** How long after a node starts it rehearses: not while a test or a user is starting it and moving its first process at once. */
export const REHEARSAL_DELAY_MS = 1000;

/** A rehearsal under way: {@link stop} ends it early; {@link done} resolves with the rounds it ran, or rejects with what failed. */
export interface Rehearsal {
  stop(): void;
  readonly done: Promise<number>;
}

/**
 * Starts rehearsing after `delay_ms`. Nothing it does is seen: no file, no
 * socket, no guest. A failure (a bug: the made-up image no longer fits the
 * format) ends it and rejects `done`; it never throws into the event loop.
 */
export function rehearseMigrations(signer: ImageSigner, options: { delay_ms?: number; rounds?: number } = {}): Rehearsal {
  let stopped = false;
  const rounds = options.rounds ?? REHEARSAL_ROUNDS;
  let ran = 0;
  let immediate: NodeJS.Immediate | null = null;
  let settle: { resolve: (n: number) => void; reject: (err: unknown) => void } | null = null;
  const done = new Promise<number>((resolve, reject) => (settle = { resolve, reject }));
  const finish = (err?: unknown): void => {
    stopped = true;
    if (err === undefined) settle?.resolve(ran);
    else settle?.reject(err);
  };
  const round = (): void => {
    immediate = null;
    if (stopped) return;
    if (ran >= rounds) return finish();
    try {
      checkHandover(readFrame(HandoverSchema, handover, "HANDOVER"), { strategy: "post-copy", memory_max_bytes: 16 * CHUNK_BYTES });
      const decoder = new ImageDecoder({ trust, module_sha256: image.module_sha256 });
      for (const chunk of encodeImage(image, { signer })) decoder.push(chunk);
      decoder.end();
    } catch (err: unknown) {
      return finish(err);
    }
    ran += 1;
    immediate = setImmediate(round);
    immediate.unref();
  };
  const trust = trustKeys([signer.key]);
  const image = rehearsalImage();
  const handover = Buffer.from(JSON.stringify({ session: "rehearsal", remote_bytes: 16 * CHUNK_BYTES, missing: [[0, 15]] }));
  const timer = setTimeout(round, options.delay_ms ?? REHEARSAL_DELAY_MS);
  timer.unref();
  return {
    stop: () => {
      clearTimeout(timer);
      if (immediate !== null) clearImmediate(immediate);
      if (!stopped) finish();
    },
    done,
  };
}

/** A post-copy image of a process that never ran: its WASI state as a fresh host captures it, no pages. */
function rehearsalImage(): ProcessImage {
  const wasi = new WasiHost({ args: ["rehearsal", "256", "0"], env: ["A=B"], preopens: [] }, idleDeps()).capture();
  return {
    module_sha256: new Uint8Array(32),
    instrumenter: "rehearsal",
    memory: { size_bytes: 16 * CHUNK_BYTES, pages: () => [] },
    globals: [{ name: "__ferry_budget", type: "i32", bits: 1n }],
    stack: { entry: "_start", asyncify: new Uint8Array(256) },
    wasi,
    streams: { stdout_bytes: 0, stderr_bytes: 0, stdin_pending: new Uint8Array(0), stdin_eof: false },
    meta: { module_path: "rehearsal.wasm", created_unix_ms: 0, precopy_sha256: "0".repeat(64) },
  };
}

/**
 * migrateOut and migrateIn over an in-memory connection, with real processes
 * on both sides: a good image moves the process; a bad one (a global of the
 * wrong type, a corrupt stack, an untrusted signature, pre-copied pages
 * changed on the way) is refused at once with a typed ERROR, and the process
 * keeps running at the source with its state intact.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { PassThrough, type Duplex } from "node:stream";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { trustKeys, type ImageSigner, type ImageTrust, type ProcessImage } from "../image/mod.js";
import { GuestProcess } from "../runtime/mod.js";
import { pipeDuplexPair } from "../transport/_testing.js";
import { FrameParser, FramedConnection, encodeFrame } from "../transport/mod.js";
import { Msg } from "./_wire.js";
import { wat } from "../instrument/_wat.js";
import { migrateIn, migrateOut, type Compression, type MigrationMetrics, type Strategy } from "./mod.js";
import { destination, EXIT_INTACT, GUEST, io, source, SPINNER } from "./_testing.js";
import { DESTINATION_PHASES, SOURCE_PHASES, type DestinationPhase, type SourcePhase } from "./phases.js";

/**
 * Frames from the source to the destination pass through `change`, which
 * may rewrite them (a man in the middle); the other way they pass as they are.
 */
function relay(change: (type: number, payload: Uint8Array) => Uint8Array): [Duplex, Duplex] {
  const [src, src_peer] = pipeDuplexPair();
  const [dst_peer, dst] = pipeDuplexPair();
  const parser = new FrameParser();
  src_peer.on("data", (chunk: Buffer) => {
    for (const f of parser.push(chunk)) for (const part of encodeFrame(f.type, change(f.type, f.payload))) dst_peer.write(part);
  });
  src_peer.on("end", () => dst_peer.end());
  dst_peer.on("data", (chunk: Buffer) => src_peer.write(chunk));
  dst_peer.on("end", () => src_peer.end());
  return [src, dst];
}

/** The source's metrics of the last {@link migrate}, null if it failed. */
let metrics_of_last: Promise<MigrationMetrics | null> = Promise.resolve(null);

interface Run {
  outcome: { ok: true } | { ok: false; out: FerryError; in: FerryError };
  source: { proc: GuestProcess; stdin: PassThrough; out: () => string };
  landed: { proc: GuestProcess; stdin: PassThrough; out: () => string } | null;
}

/** Starts the guest, migrates it with `strategy`, and reports what both sides said. */
async function migrate(options: {
  strategy: Strategy;
  wasm?: Uint8Array;
  signer?: ImageSigner;
  trust?: ImageTrust;
  image?: (image: ProcessImage) => void;
  change?: (type: number, payload: Uint8Array) => Uint8Array;
  compression?: Compression;
  small_memory_bytes_max?: number;
}): Promise<Run> {
  const signer = options.signer ?? { key: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey };
  const s = io();
  const wasm = options.wasm ?? GUEST;
  const proc = await GuestProcess.start({ wasm, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, s.io);
  if (options.image !== undefined) {
    // What the source encodes, changed as a buggy or hostile writer would (it signs it all the same).
    const edit = options.image;
    const image = proc.image.bind(proc);
    proc.image = (suspension) => {
      const captured = image(suspension);
      edit(captured);
      return captured;
    };
  }
  const [a, b] = options.change === undefined ? pipeDuplexPair() : relay(options.change);
  const dest = destination(options.trust ?? trustKeys([signer.key]), wasm);
  const incoming = migrateIn(new FramedConnection(b, { splittable_types: [Msg.image, Msg.bulk] }), dest.side);
  const outgoing = migrateOut(source(proc, options.strategy, signer, () => new FramedConnection(a)), {
    strategy: options.strategy,
    ...(options.compression !== undefined ? { compression: options.compression } : {}),
    ...(options.small_memory_bytes_max !== undefined ? { small_memory_bytes_max: options.small_memory_bytes_max } : {}),
  });
  metrics_of_last = outgoing.then((m) => m, () => null);
  const [out, inn] = await Promise.allSettled([outgoing, incoming]);
  const source_side = { proc, stdin: s.stdin, out: s.out };
  if (out.status === "fulfilled" && inn.status === "fulfilled") return { outcome: { ok: true }, source: source_side, landed: dest.landed() };
  assert.ok(out.status === "rejected" && out.reason instanceof FerryError, `the source did not fail with a FerryError: ${String(out.status === "rejected" ? out.reason : "it succeeded")}`);
  assert.ok(inn.status === "rejected" && inn.reason instanceof FerryError, `the destination did not fail with a FerryError: ${String(inn.status === "rejected" ? inn.reason : "it succeeded")}`);
  return { outcome: { ok: false, out: out.reason, in: inn.reason }, source: source_side, landed: dest.landed() };
}

/** The process at the source was resumed: it reads its line, finds its memory intact, says so and exits. */
async function assertKeepsRunningAtSource(run: Run): Promise<void> {
  assert.equal(run.landed, null, "the destination ran the process");
  run.source.stdin.end("go\n");
  assert.deepEqual(await run.source.proc.exited, { kind: "exit", code: EXIT_INTACT });
  assert.equal(run.source.out(), "ok\n");
}

describe("where a migration's time goes", () => {
  for (const strategy of ["stop-copy", "pre-copy"] as const) {
    it(`${strategy}: phases_ms partition the total and the downtime; the destination reports its own, inside the source's`, async () => {
      const s = io();
      const signer = { key: generateKeyPairSync("ed25519").privateKey };
      const proc = await GuestProcess.start({ wasm: GUEST, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, s.io);
      const [a, b] = pipeDuplexPair();
      const dest = destination(trustKeys([signer.key]), GUEST);
      const incoming = migrateIn(new FramedConnection(b, { splittable_types: [Msg.image, Msg.bulk] }), dest.side);
      const m = await migrateOut(source(proc, strategy, signer, () => new FramedConnection(a)), { strategy });
      await incoming;
      const landed = dest.landed();
      assert.ok(landed !== null);
      try {
        checkPhases(strategy, m);
      } finally {
        await landed.proc.terminate();
        await proc.terminate();
      }
    });
  }
});

/** The phases of a migration that succeeded: all known, partitioning its total and its downtime; the destination's inside them. */
function checkPhases(strategy: Strategy, m: MigrationMetrics): void {
  const phases = m.phases_ms;
  for (const key of Object.keys(phases)) assert.ok((SOURCE_PHASES as readonly string[]).includes(key), `unknown phase ${key}`);
  // The guest's rounds frame far less than COLLECT_FRAMED_BYTES_MIN: no side collects (see "garbage collection before the stop").
  const expected = ["connect", "prepare", "suspend", "flush", "capture", "encode", "transfer", "restore", "resumed", ...(strategy === "pre-copy" ? ["rounds"] : [])];
  assert.equal(phases.collect, undefined, `${strategy} of a small memory does not collect`);
  for (const key of expected) assert.ok(typeof phases[key as SourcePhase] === "number", `phase ${key} missing: ${JSON.stringify(phases)}`);
  const sum = (keys: readonly string[], of: Record<string, number | undefined>): number => keys.reduce((n, k) => n + (of[k] ?? 0), 0);
  for (const v of Object.values(phases)) assert.ok(v >= 0);
  // One clock, each phase ending where the next begins: they add up to the whole (up to float rounding).
  assert.ok(Math.abs(sum(SOURCE_PHASES, phases) - m.total_ms) < 0.5, `phases ${sum(SOURCE_PHASES, phases)} vs total ${m.total_ms}`);
  const stopped = SOURCE_PHASES.slice(SOURCE_PHASES.indexOf("suspend"), SOURCE_PHASES.indexOf("restore") + 1);
  assert.ok(Math.abs(sum(stopped, phases) - m.downtime_ms) < 0.5, `stopped phases ${sum(stopped, phases)} vs downtime ${m.downtime_ms}`);
  const d = m.destination_phases_ms;
  const d_expected = ["admit", "standby", "wait", "decode", "restore", "resume"];
  for (const key of d_expected) assert.ok(typeof d[key as DestinationPhase] === "number", `destination phase ${key} missing: ${JSON.stringify(d)}`);
  assert.equal(d.collect, undefined, `${strategy} of a small memory does not collect at the destination`);
  // The destination's setup happens between the source's OFFER and its READY, and the rest before its RUNNING.
  assert.ok(sum(["admit", "fetch_module", "standby", "reserve"], d) <= (phases.prepare ?? 0));
  assert.ok(sum(DESTINATION_PHASES, d) <= m.total_ms);
}

describe("the downtime ends when the process runs at the destination", () => {
  it("the time it ran there before its RUNNING came (the destination's reading) is the phase resumed, not downtime", async () => {
    // The destination takes HOLD_MS more after the process runs before it answers: its own work then (adopting it), or a slow answer.
    const HOLD_MS = 40;
    const s = io();
    const signer = { key: generateKeyPairSync("ed25519").privateKey };
    const proc = await GuestProcess.start({ wasm: GUEST, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, s.io);
    const [a, b] = pipeDuplexPair();
    const dest = destination(trustKeys([signer.key]), GUEST);
    const prepare = dest.side.prepare.bind(dest.side);
    dest.side.prepare = async (offer, clock) => {
      const landing = await prepare(offer, clock);
      return {
        ...landing,
        finish: async (image, handover, c) => {
          const resumed_at = await landing.finish(image, handover, c);
          await new Promise((resolve) => setTimeout(resolve, HOLD_MS));
          return resumed_at;
        },
      };
    };
    const incoming = migrateIn(new FramedConnection(b, { splittable_types: [Msg.image, Msg.bulk] }), dest.side);
    const m = await migrateOut(source(proc, "stop-copy", signer, () => new FramedConnection(a)), { strategy: "stop-copy" });
    await incoming;
    const landed = dest.landed();
    assert.ok(landed !== null);
    try {
      // The downtime is the phases from suspend to restore (checkPhases); resumed comes after them.
      checkPhases("stop-copy", m);
      assert.ok((m.phases_ms.resumed ?? 0) >= HOLD_MS, `resumed ${m.phases_ms.resumed} ms, the destination held its answer ${HOLD_MS} ms`);
    } finally {
      await landed.proc.terminate();
      await proc.terminate();
    }
  });
});

describe("garbage collection before the stop", () => {
  /** Like GUEST, with `mib` MiB of memory filled with non-zero words (so every page is sent) from 64 KiB on, then a line awaited. */
  const filler = (mib: number): Uint8Array =>
    wat(`(module
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") ${mib * 16 + 2})
      (func (export "_start")
        (local $i i32)
        (loop $fill
          (i32.store (i32.add (i32.const 65536) (i32.shl (local.get $i) (i32.const 2))) (i32.add (local.get $i) (i32.const 1)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $fill (i32.lt_u (local.get $i) (i32.const ${(mib * 1024 * 1024) / 4}))))
        (i32.store (i32.const 2048) (i32.const 4096))
        (i32.store (i32.const 2052) (i32.const 64))
        (drop (call $read (i32.const 0) (i32.const 2048) (i32.const 1) (i32.const 2056)))))`);

  // COLLECT_FRAMED_BYTES_MIN is 16 MiB: a first round of 20 MiB in PAGES frames (no record connection here) passes it, one of 4 MiB does not.
  for (const [mib, collects] of [[20, true], [4, false]] as const) {
    it(`pre-copy of ${mib} MiB framed ${collects ? "collects once on each side, outside the downtime" : "collects on neither side"}`, async () => {
      const wasm = filler(mib);
      const s = io();
      const signer = { key: generateKeyPairSync("ed25519").privateKey };
      const proc = await GuestProcess.start({ wasm, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, s.io);
      const [a, b] = pipeDuplexPair();
      const dest = destination(trustKeys([signer.key]), wasm);
      const incoming = migrateIn(new FramedConnection(b, { splittable_types: [Msg.image, Msg.bulk] }), dest.side);
      // Filled before the move: the first round then carries every page of it.
      const last = new Int32Array(proc.memory.buffer, 65536 + mib * 1024 * 1024 - 4, 1);
      while (Atomics.load(last, 0) === 0) await new Promise((r) => setTimeout(r, 5));
      const m = await migrateOut(source(proc, "pre-copy", signer, () => new FramedConnection(a)), { strategy: "pre-copy", compression: "off" });
      await incoming;
      const landed = dest.landed();
      assert.ok(landed !== null);
      try {
        assert.ok((m.dirty_pages[0] ?? 0) * 4096 >= mib * 1024 * 1024, `the first round sent ${m.dirty_pages[0]} pages`);
        assert.equal(typeof m.phases_ms.collect === "number", collects, `source phases ${JSON.stringify(m.phases_ms)}`);
        assert.equal(typeof m.destination_phases_ms.collect === "number", collects, `destination phases ${JSON.stringify(m.destination_phases_ms)}`);
      } finally {
        await landed.proc.terminate();
        await proc.terminate();
      }
    });
  }
});

describe("migration of a bad image", () => {
  for (const strategy of ["stop-copy", "pre-copy"] as const) {
    it(`${strategy}: a good image moves the process, its state intact (signed with ECDSA P-256)`, async () => {
      const run = await migrate({ strategy });
      assert.deepEqual(run.outcome, { ok: true });
      const landed = run.landed;
      assert.ok(landed !== null, "nothing runs at the destination");
      landed.stdin.end("go\n");
      assert.deepEqual(await landed.proc.exited, { kind: "exit", code: EXIT_INTACT });
      assert.equal(landed.out(), "ok\n");
      await run.source.proc.terminate();
    });
  }

  it("pre-copy of a process whose memory is all zero (no PAGES frame at all) still moves it", async () => {
    let pages_frames = 0;
    const run = await migrate({
      strategy: "pre-copy",
      wasm: SPINNER,
      change: (type, payload) => {
        if (type === Msg.pages) pages_frames += 1;
        return payload;
      },
    });
    assert.deepEqual(run.outcome, { ok: true });
    assert.equal(pages_frames, 0);
    assert.ok(run.landed !== null);
    await run.landed.proc.terminate();
    await run.source.proc.terminate();
  });

  it("a global of the wrong type: ERR_RESTORE_STATE on both sides, the source keeps running", async () => {
    const run = await migrate({
      strategy: "stop-copy",
      image: (image) => {
        image.globals = image.globals.map((g) => ({ ...g, type: "f64" }));
      },
    });
    assert.equal(run.outcome.ok, false);
    if (!run.outcome.ok) {
      assert.equal(run.outcome.in.code, "ERR_RESTORE_STATE");
      assert.equal(run.outcome.out.code, "ERR_RESTORE_STATE");
      assert.match(run.outcome.out.message, /keeps running on the source/);
    }
    await assertKeepsRunningAtSource(run);
  });

  it("a corrupt Asyncify stack: ERR_RESTORE_STATE on both sides, the source keeps running", async () => {
    const run = await migrate({
      strategy: "pre-copy",
      image: (image) => {
        image.stack = { ...image.stack, asyncify: image.stack.asyncify.map((b) => b ^ 0x5a) };
      },
    });
    assert.equal(run.outcome.ok, false);
    if (!run.outcome.ok) {
      assert.equal(run.outcome.in.code, "ERR_RESTORE_STATE");
      assert.equal(run.outcome.out.code, "ERR_RESTORE_STATE");
    }
    await assertKeepsRunningAtSource(run);
  });

  it("an image signed by a key the destination does not trust: ERR_IMAGE_SIGNATURE, the source keeps running", async () => {
    const stranger = generateKeyPairSync("ed25519").privateKey;
    const run = await migrate({ strategy: "pre-copy", trust: trustKeys([stranger]) });
    assert.equal(run.outcome.ok, false);
    if (!run.outcome.ok) {
      assert.equal(run.outcome.in.code, "ERR_IMAGE_SIGNATURE");
      assert.equal(run.outcome.out.code, "ERR_IMAGE_SIGNATURE");
    }
    await assertKeepsRunningAtSource(run);
  });

  it("a pre-copied page changed on the way: the image's signed digest of the rounds refuses it, the source keeps running", async () => {
    let changed = false;
    const run = await migrate({
      strategy: "pre-copy",
      change: (type, payload) => {
        if (type !== Msg.pages || changed) return payload;
        changed = true;
        const copy = Buffer.from(payload);
        copy[copy.length - 1] = (copy[copy.length - 1] as number) ^ 1;
        return copy;
      },
    });
    assert.ok(changed, "no PAGES frame went through");
    assert.equal(run.outcome.ok, false);
    if (!run.outcome.ok) {
      assert.equal(run.outcome.in.code, "ERR_IMAGE_SIGNATURE");
      assert.equal(run.outcome.out.code, "ERR_IMAGE_SIGNATURE");
    }
    await assertKeepsRunningAtSource(run);
  });

  it("pre-copy with its rounds compressed: the pages travel as PAGES_LZ4, fewer bytes than they stand for, and land intact", async () => {
    let compressed = 0;
    const run = await migrate({
      strategy: "pre-copy",
      compression: "lz4",
      change: (type, payload) => {
        assert.notEqual(type, Msg.pages, "a round's pages went uncompressed, though they shrink");
        if (type === Msg.pages_lz4) compressed += 1;
        return payload;
      },
    });
    assert.deepEqual(run.outcome, { ok: true });
    assert.ok(compressed > 0, "no PAGES_LZ4 frame went through");
    const m = await metrics_of_last;
    assert.ok(m?.compression !== undefined && m.compression.wire_bytes < m.compression.raw_bytes, JSON.stringify(m?.compression));
    const landed = run.landed;
    assert.ok(landed !== null);
    landed.stdin.end("go\n");
    assert.deepEqual(await landed.proc.exited, { kind: "exit", code: EXIT_INTACT });
    await run.source.proc.terminate();
  });

  it("a compressed page changed on the way is refused, as a damaged block or by the signed digest; the source keeps running", async () => {
    let changed = false;
    const run = await migrate({
      strategy: "pre-copy",
      compression: "lz4",
      change: (type, payload) => {
        if (type !== Msg.pages_lz4 || changed) return payload;
        changed = true;
        const copy = Buffer.from(payload);
        copy[copy.length - 1] = (copy[copy.length - 1] as number) ^ 1;
        return copy;
      },
    });
    assert.ok(changed, "no PAGES_LZ4 frame went through");
    assert.equal(run.outcome.ok, false);
    if (!run.outcome.ok) assert.ok(["ERR_IMAGE_SIGNATURE", "ERR_MIGRATION_PROTOCOL"].includes(run.outcome.in.code), run.outcome.in.code);
    await assertKeepsRunningAtSource(run);
  });

  it("an image of another module, refused at its first section: the destination's code reaches the source, which keeps running", async () => {
    const run = await migrate({
      strategy: "stop-copy",
      image: (image) => {
        image.module_sha256 = new Uint8Array(32).fill(7);
      },
    });
    assert.equal(run.outcome.ok, false);
    if (!run.outcome.ok) {
      assert.equal(run.outcome.in.code, "ERR_IMAGE_MODULE_MISMATCH");
      assert.equal(run.outcome.out.code, "ERR_IMAGE_MODULE_MISMATCH");
    }
    await assertKeepsRunningAtSource(run);
  });
});

describe("stop-copy's pages outside the image (BULK)", () => {
  /** A stop-copy whose BULK frames go through `change`; returns the run and how many BULK frames passed. */
  async function bulkRun(change: (payload: Uint8Array, n: number) => Uint8Array): Promise<{ run: Run; frames: number }> {
    let frames = 0;
    const run = await migrate({
      strategy: "stop-copy",
      // The guest's memory is small: without this its pages would go inside the image.
      small_memory_bytes_max: 0,
      change: (type, payload) => (type === Msg.bulk ? change(payload, frames++) : payload),
    });
    return { run, frames };
  }

  function assertRefused(run: Run, code: string): void {
    assert.equal(run.outcome.ok, false);
    if (!run.outcome.ok) {
      assert.equal(run.outcome.in.code, code);
      assert.equal(run.outcome.out.code, code);
    }
  }

  it("the pages travel as BULK frames and the process lands intact", async () => {
    const { run, frames } = await bulkRun((p) => p);
    assert.ok(frames > 0, "no BULK frame went through");
    assert.deepEqual(run.outcome, { ok: true });
    assert.ok(run.landed !== null);
    run.landed.stdin.end("go\n");
    assert.deepEqual(await run.landed.proc.exited, { kind: "exit", code: EXIT_INTACT });
    await run.source.proc.terminate();
  });

  it("a page byte changed on the way: the signed digest refuses it (ERR_IMAGE_SIGNATURE), nothing runs, the source keeps running", async () => {
    const { run } = await bulkRun((p, n) => {
      if (n !== 0) return p;
      const copy = Buffer.from(p);
      copy[copy.length - 1] = (copy[copy.length - 1] as number) ^ 1;
      return copy;
    });
    assertRefused(run, "ERR_IMAGE_SIGNATURE");
    await assertKeepsRunningAtSource(run);
  });

  it("a run dropped on the way (the stream truncated): ERR_IMAGE_SIGNATURE, the source keeps running", async () => {
    const { run, frames } = await bulkRun((p, n) => (n === 0 ? new Uint8Array(0) : p));
    assert.ok(frames > 1, "the guest's memory should take more than one run");
    assertRefused(run, "ERR_IMAGE_SIGNATURE");
    await assertKeepsRunningAtSource(run);
  });

  it("a run replayed on the way: refused as out of order (ERR_MIGRATION_PROTOCOL), the source keeps running", async () => {
    const { run } = await bulkRun((p, n) => (n === 0 ? Buffer.concat([p, p]) : p));
    assertRefused(run, "ERR_MIGRATION_PROTOCOL");
    await assertKeepsRunningAtSource(run);
  });

  it("a run cut inside its pages (the stream ends mid-run): ERR_MIGRATION_PROTOCOL, the source keeps running", async () => {
    const { run } = await bulkRun((p, n) => (n === 0 ? p.subarray(0, p.length - 100) : p));
    assert.equal(run.outcome.ok, false);
    await assertKeepsRunningAtSource(run);
  });
});

describe("a small memory's stop-copy: its pages inside the signed image (_small.ts)", () => {
  it("the pages travel inside the image, no BULK frame, and the process lands intact", async () => {
    let image_bytes = 0;
    const run = await migrate({
      strategy: "stop-copy",
      change: (type, payload) => {
        assert.notEqual(type, Msg.bulk, "a small memory's pages went as BULK frames");
        if (type === Msg.image) image_bytes += payload.length;
        return payload;
      },
    });
    assert.deepEqual(run.outcome, { ok: true });
    // The guest's pattern fills three wasm pages (48 pages of 4 KiB): the image holds them.
    assert.ok(image_bytes > 3 * 65536, `an image of ${image_bytes} bytes cannot hold the guest's pages`);
    assert.ok(run.landed !== null);
    run.landed.stdin.end("go\n");
    assert.deepEqual(await run.landed.proc.exited, { kind: "exit", code: EXIT_INTACT });
    assert.equal(run.landed.out(), "ok\n");
    await run.source.proc.terminate();
  });

  it("a page byte changed inside the image: refused (its section's CRC), nothing runs, the source keeps running", async () => {
    let changed = false;
    const run = await migrate({
      strategy: "stop-copy",
      change: (type, payload) => {
        // The pattern's pages make the image's largest frames: a byte in the middle of one is page data.
        if (type !== Msg.image || changed || payload.length < 65536) return payload;
        changed = true;
        const copy = Buffer.from(payload);
        const at = copy.length >> 1;
        copy[at] = (copy[at] as number) ^ 1;
        return copy;
      },
    });
    assert.ok(changed, "no IMAGE frame with pages went through");
    assert.equal(run.outcome.ok, false);
    if (!run.outcome.ok) {
      assert.equal(run.outcome.in.code, "ERR_IMAGE_CHECKSUM");
      assert.equal(run.outcome.out.code, "ERR_IMAGE_CHECKSUM");
    }
    await assertKeepsRunningAtSource(run);
  });

  it("a small image signed by a key the destination does not trust: ERR_IMAGE_SIGNATURE, the source keeps running", async () => {
    const stranger = generateKeyPairSync("ed25519").privateKey;
    const run = await migrate({ strategy: "stop-copy", trust: trustKeys([stranger]) });
    assert.equal(run.outcome.ok, false);
    if (!run.outcome.ok) {
      assert.equal(run.outcome.in.code, "ERR_IMAGE_SIGNATURE");
      assert.equal(run.outcome.out.code, "ERR_IMAGE_SIGNATURE");
    }
    await assertKeepsRunningAtSource(run);
  });
});

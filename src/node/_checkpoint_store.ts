/**
 * The keeper's side of checkpoints (docs/checkpoints.md): takes checkpoints
 * from runners on the checkpoint endpoint (an HTTP upgrade, node-to-node
 * only, mutual TLS), checks and stores them under DATA/checkpoints/PID/,
 * compacts chains by the retention policy, and rebuilds a process's whole
 * image to resume it on a node.
 *
 * On disk, per process: `chain.json` (the process, and each checkpoint of its
 * one chain, base first: the commit point of every change), and per
 * checkpoint `CHAIN.SEQ.pages` (its PAGES payloads, each after its u32 LE
 * length) and `CHAIN.SEQ.image` (its signed image). Files chain.json does not
 * name are left-overs of a crash and are removed.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { trustKeys, type ImageTrust, type ProcessImage } from "../image/mod.js";
import {
  CheckpointBeginSchema,
  CheckpointMsg,
  checkCheckpoint,
  Msg,
  needsCompaction,
  PagesDigest,
  rebuildImage,
  type CheckpointBegin,
  type StoredCheckpoint,
} from "../migration/mod.js";
import type { FramedConnection } from "../transport/mod.js";
import { WASM_MEMORY_BYTES_MAX } from "../process_spec.js";
import { parseJson } from "../validate.js";
import { errorField, logger } from "../log/mod.js";
import { replaceFileDurably, replaceFileDurablyAsync } from "../durable_file.js";
import { compactInWorker, framesOf } from "./_compact.js";

/**
 * Bytes of one checkpoint a keeper takes at most: a whole 4 GiB memory (a
 * base) and room for its state (WASI, links and stack are far smaller).
 */
export const CHECKPOINT_BYTES_MAX = WASM_MEMORY_BYTES_MAX + 64 * 1024 * 1024;
/** Bytes of an image a keeper holds in memory while it checks it: a checkpoint's image carries state only, its pages come as PAGES. */
export const CHECKPOINT_IMAGE_BYTES_MAX = 64 * 1024 * 1024;
/**
 * Free space a keeper leaves on its data directory's filesystem: a
 * checkpoint that could take it below this is refused. The node's state
 * journal, output logs and module store go on growing there, and a full
 * disk fails far more than checkpoints (a home's output, a restart).
 */
export const KEEPER_DISK_FREE_MIN_BYTES = 1024 * 1024 * 1024;
/** Processes one keeper keeps checkpoints of at most. */
export const KEEPER_CHAINS_MAX = 4096;

/** One checkpoint of a chain as chain.json records it. */
const EntrySchema = v.object({
  seq: v.pipe(v.number(), v.integer(), v.minValue(1)),
  /** Its files' name before `.pages` and `.image`: CHAIN.SEQ, or CHAIN.SEQ.base for a compacted base. */
  file: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,80}$/)),
  bytes: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** SPKI DER (base64) of the key that signed its image. */
  signer: v.pipe(v.string(), v.maxLength(1024), v.base64()),
  memory_bytes: v.pipe(v.number(), v.integer(), v.minValue(0)),
  stdout_bytes: v.pipe(v.number(), v.integer(), v.minValue(0)),
  stderr_bytes: v.pipe(v.number(), v.integer(), v.minValue(0)),
  created_unix_ms: v.number(),
});
const ChainSchema = v.object({
  version: v.literal(1),
  chain: CheckpointBeginSchema.entries.chain,
  process: CheckpointBeginSchema.entries.process,
  entries: v.pipe(v.array(EntrySchema), v.minLength(1)),
});
/** A chain as chain.json holds it. */
export type Chain = v.InferOutput<typeof ChainSchema>;

/** What the keeper says of the newest checkpoint of a process. */
export interface KeptCheckpoint {
  pid: string;
  chain: string;
  seq: number;
  memory_bytes: number;
  stdout_bytes: number;
  stderr_bytes: number;
  /** Checkpoints in the chain now (1: a base alone) and their bytes. */
  checkpoints: number;
  bytes: number;
  /** Bytes of the chain's base (its first checkpoint, or the last compaction's). */
  base_bytes: number;
  /**
   * Whether a compaction of the chain is under way. While none is, the
   * retention policy holds: `bytes` is at most twice the base, the base at
   * most its memory plus 1 MiB (docs/checkpoints.md, "Retention policy").
   */
  compacting: boolean;
}

/** Who sent a checkpoint: its node name and the key its images must be signed with. */
export interface CheckpointPeer {
  name: string | null;
  key: KeyObject | undefined;
}

/** Options of a {@link CheckpointStore}. */
export interface CheckpointStoreOptions {
  /** Bytes all chains may hold together (`--checkpoint-disk-max`). */
  bytes_max: number;
  /** Free space to leave on the filesystem (default {@link KEEPER_DISK_FREE_MIN_BYTES}). */
  free_bytes_min?: number;
  /** Free bytes on the filesystem of `dir` (default: `fs.statfs`; tests give their own). */
  freeBytes?: (dir: string) => Promise<number>;
}

/**
 * Whether a checkpoint that may need `need_bytes` (a base: its process's
 * memory) fits beside the `kept_bytes` of chains kept: within `bytes_max`,
 * and leaving at least `free_bytes_min` of the `free_bytes` on the disk.
 * Throws ERR_CHECKPOINT_LIMIT saying which bound it would pass.
 */
export function checkKeeperRoom(room: { kept_bytes: number; need_bytes: number; bytes_max: number; free_bytes: number; free_bytes_min: number }): void {
  const { kept_bytes, need_bytes, bytes_max, free_bytes, free_bytes_min } = room;
  if (kept_bytes + need_bytes > bytes_max) {
    throw new FerryError("ERR_CHECKPOINT_LIMIT", `this node keeps ${kept_bytes} bytes of checkpoints; one of up to ${need_bytes} more would pass its --checkpoint-disk-max of ${bytes_max} bytes`);
  }
  if (free_bytes - need_bytes < free_bytes_min) {
    throw new FerryError("ERR_CHECKPOINT_LIMIT", `this node's data disk has ${free_bytes} bytes free; a checkpoint of up to ${need_bytes} bytes would leave less than the ${free_bytes_min} it keeps free`);
  }
}

/** Free bytes (to an unprivileged user) on the filesystem of `dir`. */
async function statfsFree(dir: string): Promise<number> {
  const s = await fs.promises.statfs(dir);
  return s.bavail * s.bsize;
}

/** The checkpoints a node keeps for others. */
export class CheckpointStore {
  readonly #dir: string;
  readonly #own_key: KeyObject;
  readonly #bytes_max: number;
  readonly #free_bytes_min: number;
  readonly #freeBytes: (dir: string) => Promise<number>;
  readonly #chains = new Map<string, Chain>();
  /** One change at a time per process: a store, a compaction's commit, a restore or a drop. */
  readonly #locks = new Map<string, Promise<unknown>>();
  /** Compactions under way, per process (at most one each). */
  readonly #compacting = new Map<string, Promise<void>>();

  /** The store under `dir`; `own_key` signs the bases it compacts (its node's image key). */
  constructor(dir: string, own_key: KeyObject, options: CheckpointStoreOptions) {
    this.#dir = dir;
    this.#own_key = own_key;
    this.#bytes_max = options.bytes_max;
    this.#free_bytes_min = options.free_bytes_min ?? KEEPER_DISK_FREE_MIN_BYTES;
    this.#freeBytes = options.freeBytes ?? statfsFree;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const pid of fs.readdirSync(dir)) this.#load(pid);
  }

  #load(pid: string): void {
    const dir = path.join(this.#dir, pid);
    let chain: Chain | null = null;
    try {
      chain = parseJson(ChainSchema, fs.readFileSync(path.join(dir, "chain.json")), "chain.json");
    } catch (err: unknown) {
      logger().warn({ pid, err: errorField(err) }, "dropping a checkpoint chain that cannot be read");
    }
    if (chain === null) {
      fs.rmSync(dir, { recursive: true, force: true });
      return;
    }
    this.#chains.set(pid, chain);
    const named = new Set(chain.entries.flatMap((e) => [`${e.file}.pages`, `${e.file}.image`]));
    for (const f of fs.readdirSync(dir)) if (f !== "chain.json" && !named.has(f)) fs.rmSync(path.join(dir, f), { force: true });
  }

  /** Bytes all chains hold. */
  get bytes(): number {
    let n = 0;
    for (const c of this.#chains.values()) for (const e of c.entries) n += e.bytes;
    return n;
  }

  /** Processes with a chain here. */
  get chains(): number {
    return this.#chains.size;
  }

  /** The newest checkpoint of `pid` kept here. */
  newest(pid: string): KeptCheckpoint | undefined {
    const c = this.#chains.get(pid);
    const e = c?.entries.at(-1);
    if (c === undefined || e === undefined) return undefined;
    return {
      pid,
      chain: c.chain,
      seq: e.seq,
      memory_bytes: e.memory_bytes,
      stdout_bytes: e.stdout_bytes,
      stderr_bytes: e.stderr_bytes,
      checkpoints: c.entries.length,
      bytes: c.entries.reduce((n, x) => n + x.bytes, 0),
      base_bytes: c.entries[0]?.bytes ?? 0,
      compacting: this.#compacting.has(pid),
    };
  }

  /** The process a chain was taken of (for a restore's offer). */
  process(pid: string): CheckpointBegin["process"] | undefined {
    return this.#chains.get(pid)?.process;
  }

  /** Runs `f` once every earlier change to `pid` is done. */
  locked<T>(pid: string, f: () => Promise<T>): Promise<T> {
    const before = this.#locks.get(pid) ?? Promise.resolve();
    const run = before.then(f, f);
    // The caller sees the failure through `run`; the chain only orders the next change after this one.
    const tail = run.catch(() => undefined);
    this.#locks.set(pid, tail);
    void tail.then(() => {
      if (this.#locks.get(pid) === tail) this.#locks.delete(pid);
    });
    return run;
  }

  /**
   * Takes one checkpoint on `conn` (after the upgrade): BEGIN, READY, its
   * pages and image, STORED, then compacts the chain if the policy says so.
   * `ensureModule` makes sure this node has the process's module (a restore
   * needs it here); `began` hears of each BEGIN (its runner lives). Refuses with an ERROR frame what does not follow the
   * chain, passes a limit or fails a check; nothing is stored then.
   */
  async receive(conn: FramedConnection, peer: CheckpointPeer, options: { idle_ms: number; ensureModule(begin: CheckpointBegin): Promise<void>; began?(begin: CheckpointBegin): void }): Promise<KeptCheckpoint> {
    let begin: CheckpointBegin;
    try {
      const first = await conn.next({ timeout_ms: options.idle_ms });
      if (first.type !== CheckpointMsg.begin) throw new FerryError("ERR_CHECKPOINT_PROTOCOL", `expected BEGIN, got frame type ${first.type}`);
      begin = parseJson(CheckpointBeginSchema, first.payload, "BEGIN frame", { code: "ERR_CHECKPOINT_PROTOCOL" });
    } catch (err: unknown) {
      await refuse(conn, err);
      throw err;
    }
    const pid = begin.process.pid;
    options.began?.(begin);
    return this.locked(pid, async () => {
      const dir = path.join(this.#dir, pid);
      const base = `${begin.chain}.${begin.seq}`;
      const temp = { pages: path.join(dir, `${base}.pages.tmp`), image: path.join(dir, `${base}.image.tmp`) };
      // Written with awaits: a base of gigabytes must not hold up the keeper's other work (its own processes, its peers' requests).
      let fh: fs.promises.FileHandle | null = null;
      try {
        await this.#admit(begin);
        await options.ensureModule(begin);
        const signer = peer.key ?? (begin.process.signing_key !== undefined ? createPublicKey({ key: Buffer.from(begin.process.signing_key, "base64"), format: "der", type: "spki" }) : undefined);
        if (signer === undefined) throw new FerryError("ERR_IMAGE_SIGNATURE", "the checkpoint names no key to check its image with");
        fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
        fh = await fs.promises.open(temp.pages, "w", 0o600);
        await conn.send(Msg.ready, Buffer.from("{}"));
        const digest = new PagesDigest();
        const image: Uint8Array[] = [];
        let pages_bytes = 0;
        let image_bytes = 0;
        for (;;) {
          const frame = await conn.next({ timeout_ms: options.idle_ms });
          if (frame.type === Msg.pages) {
            digest.update(frame.payload);
            pages_bytes += 4 + frame.payload.length;
            if (pages_bytes > CHECKPOINT_BYTES_MAX) throw new FerryError("ERR_CHECKPOINT_LIMIT", `a checkpoint of more than ${CHECKPOINT_BYTES_MAX} bytes`);
            const head = Buffer.alloc(4);
            head.writeUInt32LE(frame.payload.length, 0);
            await fh.writeFile(head);
            await fh.writeFile(Buffer.from(frame.payload));
          } else if (frame.type === Msg.image) {
            image_bytes += frame.payload.length;
            if (image_bytes > CHECKPOINT_IMAGE_BYTES_MAX) throw new FerryError("ERR_CHECKPOINT_LIMIT", `a checkpoint image of more than ${CHECKPOINT_IMAGE_BYTES_MAX} bytes`);
            image.push(Buffer.from(frame.payload));
          } else if (frame.type === Msg.image_end) break;
          else if (frame.type === Msg.error) throw new FerryError("ERR_CHECKPOINT_PROTOCOL", "the runner gave up the checkpoint");
          else throw new FerryError("ERR_CHECKPOINT_PROTOCOL", `unexpected frame type ${frame.type}`);
        }
        await fh.sync();
        await fh.close();
        fh = null;
        const image_all = Buffer.concat(image);
        const decoded = checkCheckpoint(image_all, digest.seen(), trustKeys([signer]), Buffer.from(begin.process.module_sha256, "hex"));
        await replaceFileDurablyAsync(temp.image, image_all);
        await fs.promises.rename(temp.pages, path.join(dir, `${base}.pages`));
        await fs.promises.rename(temp.image, path.join(dir, `${base}.image`));
        const entry = {
          seq: begin.seq,
          file: base,
          bytes: pages_bytes + image_all.length,
          signer: signer.export({ type: "spki", format: "der" }).toString("base64"),
          memory_bytes: decoded.memory.size_bytes,
          stdout_bytes: decoded.streams.stdout_bytes,
          stderr_bytes: decoded.streams.stderr_bytes,
          created_unix_ms: Date.now(),
        };
        const old = this.#chains.get(pid);
        const chain: Chain = begin.seq === 1 || old === undefined ? { version: 1, chain: begin.chain, process: begin.process, entries: [entry] } : { ...old, process: begin.process, entries: [...old.entries, entry] };
        await this.#commit(pid, chain, old);
        // At once, before the next await: no one sees a chain the policy says to compact with no compaction under way.
        this.#compactSoon(pid);
        await conn.send(CheckpointMsg.stored, Buffer.from(JSON.stringify({ stored_bytes: entry.bytes })));
        conn.close();
      } catch (err: unknown) {
        await fh?.close();
        fs.rmSync(temp.pages, { force: true });
        fs.rmSync(temp.image, { force: true });
        await refuse(conn, err);
        throw err;
      }
      return this.newest(pid) as KeptCheckpoint;
    });
  }

  /**
   * Compacts the chain of `pid` in the background if the retention policy
   * says so, one compaction per process at a time. It runs outside the
   * process's lock: rebuilding a whole memory takes seconds, and the next
   * checkpoint (due every 100 ms at 10/s) must not wait for it. A checkpoint
   * stored meanwhile stays after the new base.
   */
  #compactSoon(pid: string): void {
    const chain = this.#chains.get(pid);
    if (chain === undefined || this.#compacting.has(pid) || !needsCompaction(chain.entries)) return;
    const run = this.#compact(pid, chain).then(
      () => {
        this.#compacting.delete(pid);
        // What arrived meanwhile may call for the next one already, and so may a chain that replaced this one meanwhile (its own store found this one under way).
        this.#compactSoon(pid);
      },
      (err: unknown) => {
        this.#compacting.delete(pid);
        // The chain stays as it was, whole: the next checkpoint tries again. A chain replaced or dropped meanwhile took the files the merge read: expected.
        const replaced = this.#chains.get(pid)?.chain !== chain.chain;
        logger()[replaced ? "debug" : "warn"]({ pid, err: errorField(err) }, `compacting the checkpoints of ${pid} failed`);
      },
    );
    this.#compacting.set(pid, run);
  }

  /** Checks a BEGIN against the chain kept and the keeper's limits (its disk's free space included). */
  async #admit(begin: CheckpointBegin): Promise<void> {
    const pid = begin.process.pid;
    const old = this.#chains.get(pid);
    if (old !== undefined && begin.process.moves < old.process.moves) {
      throw new FerryError("ERR_LOCATION_STALE", `${pid}: a checkpoint taken at move ${begin.process.moves}, older than the kept one (move ${old.process.moves})`);
    }
    if (begin.seq > 1) {
      const last = old?.entries.at(-1);
      if (old === undefined || old.chain !== begin.chain || last?.seq !== begin.seq - 1) {
        throw new FerryError("ERR_CHECKPOINT_CHAIN", `${pid}: no checkpoint ${begin.chain}/${begin.seq - 1} here to follow; start a new chain`);
      }
    }
    if (old === undefined && this.#chains.size >= KEEPER_CHAINS_MAX) throw new FerryError("ERR_CHECKPOINT_LIMIT", `this node keeps checkpoints of ${KEEPER_CHAINS_MAX} processes already`);
    // A base may be as large as the process's memory (so may the base a compaction then writes): room for that, beside what is kept.
    checkKeeperRoom({ kept_bytes: this.bytes, need_bytes: begin.process.memory_bytes, bytes_max: this.#bytes_max, free_bytes: await this.#freeBytes(this.#dir), free_bytes_min: this.#free_bytes_min });
  }

  /**
   * Makes `chain` the chain of `pid` (chain.json is the commit point), then
   * removes the files only `old` named. Call under {@link locked}: its writes
   * are awaited, off the event loop.
   */
  async #commit(pid: string, chain: Chain, old: Chain | undefined): Promise<void> {
    const dir = path.join(this.#dir, pid);
    await replaceFileDurablyAsync(path.join(dir, "chain.json"), JSON.stringify(chain));
    this.#chains.set(pid, chain);
    if (old === undefined) return;
    const keep = new Set(chain.entries.map((e) => e.file));
    for (const e of old.entries) {
      const name = e.file;
      if (keep.has(name)) continue;
      await fs.promises.rm(path.join(dir, `${name}.pages`), { force: true });
      await fs.promises.rm(path.join(dir, `${name}.image`), { force: true });
    }
  }

  /**
   * The retention policy's merge: the whole image at the newest checkpoint
   * of `chain` (the chain as it was when the merge started) becomes a new
   * base, signed by this node. Built outside the process's lock; committed
   * under it, before the checkpoints stored meanwhile, unless the chain was
   * replaced or dropped in between (then the merge is dropped). Resolves to
   * whether it was committed.
   */
  async #compact(pid: string, chain: Chain): Promise<boolean> {
    const last = chain.entries.at(-1) as Chain["entries"][number];
    const dir = path.join(this.#dir, pid);
    const name = `${chain.chain}.${last.seq}.base`;
    const files = { image: path.join(dir, `${name}.image`), pages: path.join(dir, `${name}.pages`) };
    // Off this thread: the rebuild and the signing are seconds of CPU for a large process.
    const bytes = await compactInWorker({
      dir,
      entries: chain.entries.map((e) => ({ file: e.file, signer: e.signer })),
      module_sha256: chain.process.module_sha256,
      key_pem: this.#own_key.export({ type: "pkcs8", format: "pem" }).toString(),
      name,
    });
    const entry = { ...last, file: name, bytes, signer: createPublicKey(this.#own_key).export({ type: "spki", format: "der" }).toString("base64") };
    return this.locked(pid, async () => {
      const now = this.#chains.get(pid);
      const merged = chain.entries.length;
      // Still the chain merged, grown only at its end (a new base or a drop leave it otherwise)?
      const same = now !== undefined && now.chain === chain.chain && now.entries.length >= merged && now.entries[merged - 1]?.file === last.file && now.entries[0]?.file === chain.entries[0]?.file;
      if (!same) {
        await fs.promises.rm(files.image, { force: true });
        await fs.promises.rm(files.pages, { force: true });
        return false;
      }
      // chain.json is the commit point: until it names the new base, the old files are the chain.
      await this.#commit(pid, { ...now, entries: [entry, ...now.entries.slice(merged)] }, now);
      logger().debug({ pid, seq: last.seq, bytes, after: now.entries.length - merged }, `compacted the checkpoints of ${pid} into a new base`);
      return true;
    });
  }

  /** Refuses checkpoints of `pid` taken before move `moves` from now on (it was restored as that move). Call under {@link locked}. */
  fence(pid: string, moves: number): void {
    const chain = this.#chains.get(pid);
    if (chain === undefined || chain.process.moves >= moves) return;
    const fenced = { ...chain, process: { ...chain.process, moves } };
    replaceFileDurably(path.join(this.#dir, pid, "chain.json"), JSON.stringify(fenced));
    this.#chains.set(pid, fenced);
  }

  /** The whole image of `pid` at the newest checkpoint kept (read from disk, checked again). */
  async rebuild(pid: string): Promise<ProcessImage> {
    const chain = this.#chains.get(pid);
    if (chain === undefined) throw new FerryError("ERR_NO_CHECKPOINT", `no checkpoint of ${pid} is kept here`);
    return this.#rebuild(pid, chain);
  }

  async #rebuild(pid: string, chain: Chain): Promise<ProcessImage> {
    const dir = path.join(this.#dir, pid);
    const signers: ImageTrust = trustKeys(chain.entries.map((e) => createPublicKey({ key: Buffer.from(e.signer, "base64"), format: "der", type: "spki" })));
    // Read with awaits; the merge itself is one synchronous pass over what was read.
    const stored: StoredCheckpoint[] = [];
    for (const e of chain.entries) {
      const pages = await fs.promises.readFile(path.join(dir, `${e.file}.pages`));
      stored.push({ pages: [...framesOf(pages)], image: await fs.promises.readFile(path.join(dir, `${e.file}.image`)) });
    }
    return await rebuildImage(stored, signers, Buffer.from(chain.process.module_sha256, "hex"));
  }

  /** Drops the chain of `pid` (its process ended, or its checkpoints moved to another keeper); only chain `chain` if given. */
  drop(pid: string, chain?: string): Promise<boolean> {
    return this.locked(pid, async () => {
      const c = this.#chains.get(pid);
      if (c === undefined || (chain !== undefined && c.chain !== chain)) return false;
      this.#chains.delete(pid);
      // Hundreds of megabytes to free: off the event loop.
      await fs.promises.rm(path.join(this.#dir, pid), { recursive: true, force: true });
      return true;
    });
  }
}

async function refuse(conn: FramedConnection, err: unknown): Promise<void> {
  const code = err instanceof FerryError ? err.code : "ERR_CHECKPOINT_PROTOCOL";
  const message = err instanceof Error ? err.message : String(err);
  // The link may be gone already: the runner then sees that instead.
  await conn.send(Msg.error, Buffer.from(JSON.stringify({ code, message }))).catch(() => undefined);
  conn.close();
}

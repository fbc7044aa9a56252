/**
 * The source side of post-copy's page channel (docs/cluster.md): serves a
 * suspended process's memory to the destination, whose native threads ask
 * for the chunks its guest faults on while this side pushes the rest in
 * address order. Chunks asked for go first, then the chunks right after them
 * (a faulting guest tends to walk on), then the push resumes where it was.
 * All-zero chunks travel as ranges. One server outlives broken connections:
 * each new one starts with the destination saying which chunks it has. A
 * connection with keys seals each frame it sends as one record and opens
 * the destination's records (docs/cluster.md, "Sealed records"). A demand
 * connection (QEMU's "preempt" channel) answers requests only, so an
 * answer never waits behind pushed chunks queued on the page channel.
 */
import type { Duplex } from "node:stream";
import { FerryError } from "../errors.js";
import { yieldIfDue } from "../transport/mod.js";
import { copyOut, readable } from "../runtime/_backing.js";
import {
  CHUNK_BYTES,
  CHUNKS_PER_FRAME_MAX,
  nativeRecordSealer,
  type NativeRecordSealer,
  PAGE_FRAME_HEAD_BYTES,
  pageFrameHead,
  PageFrame,
  PAGES_FLAG_DEMAND,
  RecordDirection,
  RecordOpener,
  RecordSealer,
  RECORD_WIRE_BYTES_MAX,
  type PageChannelKeys,
} from "../memory/mod.js";

/** Chunks pushed right after one asked for, ahead of the address-order push. */
const NEIGHBOURS = 15;
/**
 * Bytes queued on the socket past which the push waits for it to drain: two
 * 1 MiB frames, so the next frame is made (sealed) while the last one is
 * still being written, yet an answer to a fault never queues behind more.
 */
const QUEUED_BYTES_MAX = 2 * 1048576;
/**
 * Frame buffers of a connection: a PAGES frame is sealed (or, in the clear,
 * copied) into one and written from it, and the buffer is reused once the
 * socket has taken it. One more than QUEUED_BYTES_MAX holds, so the next
 * frame is made while those before it are still being written.
 *
 * In the clear too, the pages are copied rather than written straight from
 * the guest's memory: the kernel's first read of each 4 KiB page of a
 * process costs it about 4 µs on this machine's virtual CPUs (shadow page
 * tables: a page the guest touched is not yet mapped for the kernel), 1 s
 * of CPU per GiB pushed, where copying into a buffer the kernel has read
 * before costs about 0.06 s per GiB. docs/cluster.md, "Page channel".
 */
const FRAME_BUFFERS = QUEUED_BYTES_MAX / 1048576 + 1;
/**
 * Frame buffers kept from one connection (and one migration) to the next,
 * their pages backed already: sealing 1 MiB into a fresh buffer took 4.5–5.5
 * ms here (a fault per 4 KiB page on this machine's virtual CPUs), into one
 * kept from the move before 1.6 ms. A small process's whole push (2 MiB)
 * paid that twice. Enough for a page channel and a demand channel at once.
 */
const SPARE_BUFFERS_MAX = 2 * FRAME_BUFFERS;
const spare_buffers: Buffer[] = [];

function takeBuffer(): Buffer {
  return spare_buffers.pop() ?? Buffer.allocUnsafe(RECORD_WIRE_BYTES_MAX);
}

/** Where a frame's pages are copied before they are sealed, when they must be (see {@link staged}); kept, so its pages stay backed. */
let staging: Buffer | null = null;

/**
 * `pages`, for the sealer to read: in place where the process has touched
 * them, else copied out through the kernel's mapping ({@link readable}) into
 * a buffer this thread reuses. Read in place, every page post-copy placed
 * and the guest left alone cost a trap to the hypervisor here (a process
 * moved on by post-copy twice: 600 against 2,300 MB/s). Valid until the next
 * call: the sealer reads it at once.
 */
function staged(pages: Uint8Array): Uint8Array {
  if (staging === null || staging.length < pages.length) staging = Buffer.allocUnsafe(Math.max(pages.length, RECORD_WIRE_BYTES_MAX));
  return readable(pages, staging);
}

/** Keeps `buffer` for the next connection (every byte of it is written before it is sent again). */
function keepBuffer(buffer: Buffer): void {
  if (spare_buffers.length < SPARE_BUFFERS_MAX) spare_buffers.push(buffer);
}
/** All-zero chunks in one ZERO frame at most. */
const ZERO_RUN_MAX = 4096;

/** How one connection ended. */
export type ServeEnd = "done" | "abort" | "closed";

/** Counters of a page server, over all its connections. */
export interface PageServerStats {
  /** Chunks the destination asked for (its guest faulted on them). */
  demand_chunks: number;
  /** Chunks sent by the push (not asked for). */
  pushed_chunks: number;
  /** All-zero chunks sent as ranges. */
  zero_chunks: number;
  bytes_out: number;
  connections: number;
  /** Chunks answered on a demand connection. */
  preempt_chunks: number;
}

/** Options of a {@link PageServer}. */
export interface PageServerOptions {
  /** Cap on the background push, bytes per second (answers to faults are never held back). */
  push_bytes_per_s?: number;
  /**
   * Answer requests only until {@link PageServer.startPush}: while the
   * destination restores the process, each page it touches is wanted now,
   * and pushed pages queued ahead of it would only delay it.
   */
  hold_push?: boolean;
  /**
   * Seal with the native addon where it is built (the default); false seals
   * in JavaScript, as a node without the addon does (tests compare the two).
   */
  native_seal?: boolean;
}

/** Serves the memory of a suspended process (it must not change while served). */
export class PageServer {
  readonly stats: PageServerStats = { demand_chunks: 0, pushed_chunks: 0, zero_chunks: 0, bytes_out: 0, connections: 0, preempt_chunks: 0 };
  readonly #memory: Buffer;
  readonly #chunks: number;
  readonly #rate: number;
  readonly #zero = Buffer.alloc(CHUNK_BYTES);
  readonly #connections = new Set<Connection>();
  readonly native_seal: boolean;
  #holding: boolean;
  #hot: number[] = [];

  constructor(memory: Uint8Array, options: PageServerOptions = {}) {
    if (memory.length % CHUNK_BYTES !== 0) throw new RangeError("memory must be whole chunks");
    this.#memory = Buffer.from(memory.buffer, memory.byteOffset, memory.length);
    this.#chunks = memory.length / CHUNK_BYTES;
    this.#rate = options.push_bytes_per_s ?? Infinity;
    this.#holding = options.hold_push ?? false;
    this.native_seal = options.native_seal ?? true;
  }

  /**
   * Chunks to send first on every connection, before any request: those the
   * destination's restore is known to touch (the stack's), so that it does
   * not wait a round trip for each.
   */
  prefetch(chunks: Iterable<number>): void {
    this.#hot = [...chunks].filter((c) => c >= 0 && c < this.#chunks);
    for (const c of this.#connections) c.poke();
  }

  get hot(): readonly number[] {
    return this.#hot;
  }

  /** Lets the background push begin. */
  startPush(): void {
    this.#holding = false;
    for (const c of this.#connections) c.poke();
  }

  get holding(): boolean {
    return this.#holding;
  }

  /**
   * Serves one connection (`head`: bytes already read past the upgrade)
   * until DONE, ABORT or a break; sealed with `keys` when given.
   */
  serve(socket: Duplex, head: Uint8Array = new Uint8Array(0), keys?: PageChannelKeys, options: { demand?: boolean } = {}): Promise<ServeEnd> {
    const demand = options.demand ?? false;
    if (!demand) this.stats.connections += 1;
    const connection = new Connection(this, socket, keys, demand);
    this.#connections.add(connection);
    return connection.run(head).finally(() => this.#connections.delete(connection));
  }

  get chunks(): number {
    return this.#chunks;
  }

  /** A chunk was asked for on a demand connection: the page channels push the chunks after it next, as they would after a request of their own. */
  askedElsewhere(c: number): void {
    for (const connection of this.#connections) connection.near(c);
  }

  get push_bytes_per_s(): number {
    return this.#rate;
  }

  chunk(c: number, count = 1): Uint8Array {
    return this.#memory.subarray(c * CHUNK_BYTES, (c + count) * CHUNK_BYTES);
  }

  isZero(c: number): boolean {
    return this.#zero.equals(this.chunk(c));
  }
}


/** One connection's state: what the destination has, what it asked for, where the push is. */
class Connection {
  readonly #server: PageServer;
  readonly #socket: Duplex;
  /** Present when the connection is sealed: natively where the addon is built (#native), else in JavaScript (#sealer). */
  readonly #native: NativeRecordSealer | null;
  readonly #sealer: RecordSealer | null;
  readonly #opener: RecordOpener | null;
  /** Frame buffers not being written now (natively sealed or in the clear); made as needed, up to FRAME_BUFFERS. */
  readonly #free_buffers: Buffer[] = [];
  #buffers = 0;
  #buffer_wait: (() => void) | null = null;
  /** 1: at the destination, or sent on this connection. */
  #sent: Uint8Array | null = null;
  #asked: number[] = [];
  #near: number[] = [];
  #prefetch: number[] = [];
  #cursor = 0;
  #input: Buffer<ArrayBufferLike> = Buffer.alloc(0);
  #end: ServeEnd | null = null;
  #wake: (() => void) | null = null;
  #push_started = 0;
  #pushed_bytes = 0;
  /** A demand connection: no HELLO, only REQs, each answered (whatever went on other connections). */
  readonly #demand: boolean;

  constructor(server: PageServer, socket: Duplex, keys: PageChannelKeys | undefined, demand: boolean) {
    this.#server = server;
    this.#socket = socket;
    this.#demand = demand;
    if (demand) this.#sent = new Uint8Array(server.chunks);
    this.#native = keys === undefined || !server.native_seal ? null : nativeRecordSealer(keys.to_destination, RecordDirection.to_destination);
    this.#sealer = keys === undefined || this.#native !== null ? null : new RecordSealer(keys.to_destination, RecordDirection.to_destination);
    this.#opener = keys === undefined ? null : new RecordOpener(keys.to_source, RecordDirection.to_source);
  }

  run(head: Uint8Array): Promise<ServeEnd> {
    const socket = this.#socket;
    socket.on("data", (data: Buffer) => this.#onData(data));
    socket.on("close", () => this.#finish("closed"));
    socket.on("error", () => this.#finish("closed"));
    if (head.length > 0) this.#onData(Buffer.from(head));
    return this.#loop().finally(() => {
      socket.destroy();
      this.#native?.close();
      // Those still being written come back through their writes' callbacks.
      for (const b of this.#free_buffers.splice(0)) keepBuffer(b);
    });
  }

  #finish(end: ServeEnd): void {
    if (this.#end === null) this.#end = end;
    this.poke();
    this.#releaseWait();
  }

  #releaseWait(): void {
    const wake = this.#buffer_wait;
    this.#buffer_wait = null;
    wake?.();
  }

  /** Queues the chunks after `c` (asked for on a demand connection) ahead of the address-order push. */
  near(c: number): void {
    if (this.#demand || this.#sent === null) return;
    for (let n = c + NEIGHBOURS; n > c; n -= 1) if (n < this.#sent.length) this.#near.unshift(n);
    this.poke();
  }

  /** Wakes the send loop (something to send, or the end). */
  poke(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #onData(data: Buffer): void {
    if (this.#opener === null) {
      this.#onFrames(data);
      return;
    }
    let plain: Buffer[];
    try {
      plain = this.#opener.push(data);
    } catch (err: unknown) {
      // Not from the destination: nothing in it is acted on, and the link is dropped (the source reopens it).
      this.#socket.destroy(err as Error);
      return;
    }
    for (const p of plain) if (!this.#socket.destroyed) this.#onFrames(p);
  }

  #onFrames(data: Buffer): void {
    this.#input = this.#input.length === 0 ? data : Buffer.concat([this.#input, data]);
    while (this.#input.length >= PAGE_FRAME_HEAD_BYTES) {
      const kind = this.#input.readUInt32LE(0);
      const a = this.#input.readUInt32LE(4);
      const b = this.#input.readUInt32LE(8);
      const c = this.#input.readUInt32LE(12);
      if (kind !== PageFrame.req && this.#demand) {
        this.#socket.destroy(new FerryError("ERR_POSTCOPY_PROTOCOL", `a demand channel carries requests only, not frame kind ${kind}`));
        return;
      }
      if (kind === PageFrame.hello) {
        if (this.#input.length < PAGE_FRAME_HEAD_BYTES + c) return;
        const bitmap = this.#input.subarray(PAGE_FRAME_HEAD_BYTES, PAGE_FRAME_HEAD_BYTES + c);
        this.#input = this.#input.subarray(PAGE_FRAME_HEAD_BYTES + c);
        if (a !== CHUNK_BYTES || b !== this.#server.chunks || c !== Math.ceil(b / 8)) {
          this.#socket.destroy(new FerryError("ERR_POSTCOPY_PROTOCOL", `destination expects ${b} chunks of ${a} bytes; this memory has ${this.#server.chunks} of ${CHUNK_BYTES}`));
          return;
        }
        const sent = new Uint8Array(b);
        for (let i = 0; i < b; i += 1) sent[i] = (bitmap[i >> 3]! >> (i & 7)) & 1;
        this.#sent = sent;
        this.#prefetch = [...this.#server.hot];
      } else {
        this.#input = this.#input.subarray(PAGE_FRAME_HEAD_BYTES);
        if (kind === PageFrame.req && a < this.#server.chunks) {
          this.#asked.push(a);
          this.#server.stats.demand_chunks += 1;
          if (this.#demand) this.#server.askedElsewhere(a);
        } else if (kind === PageFrame.done) this.#finish("done");
        else if (kind === PageFrame.abort) this.#finish("abort");
        else {
          this.#socket.destroy(new FerryError("ERR_POSTCOPY_PROTOCOL", `unexpected page-channel frame kind ${kind}`));
          return;
        }
      }
    }
    this.poke();
  }

  /** The next chunk to send and whether it was asked for, or null when nothing is left. */
  #next(sent: Uint8Array): { c: number; demand: boolean } | null {
    if (this.#demand) {
      const c = this.#asked.shift();
      return c === undefined ? null : { c, demand: true };
    }
    while (this.#asked.length > 0) {
      const c = this.#asked.shift()!;
      if (sent[c] === 0) {
        for (let n = c + NEIGHBOURS; n > c; n -= 1) if (n < sent.length) this.#near.unshift(n);
        return { c, demand: true };
      }
    }
    while (this.#prefetch.length > 0) {
      const c = this.#prefetch.shift()!;
      if (sent[c] === 0) return { c, demand: false };
    }
    if (this.#server.holding) return null;
    while (this.#near.length > 0) {
      const c = this.#near.shift()!;
      if (sent[c] === 0) return { c, demand: false };
    }
    while (this.#cursor < sent.length && sent[this.#cursor] === 1) this.#cursor += 1;
    return this.#cursor < sent.length ? { c: this.#cursor, demand: false } : null;
  }

  async #loop(): Promise<ServeEnd> {
    const server = this.#server;
    for (;;) {
      if (this.#end !== null) return this.#end;
      const sent = this.#sent;
      const next = sent === null ? null : this.#next(sent);
      if (sent === null || next === null) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        continue;
      }
      const { c, demand } = next;
      let frame: Uint8Array[];
      let count = 1;
      if (server.isZero(c)) {
        while (count < ZERO_RUN_MAX && c + count < sent.length && sent[c + count] === 0 && !demand && server.isZero(c + count)) count += 1;
        frame = [pageFrameHead(PageFrame.zero, c, count, 0)];
        server.stats.zero_chunks += count;
      } else {
        // An answer goes alone, so the waiting thread gets it soonest; the push sends runs.
        if (!demand) while (count < CHUNKS_PER_FRAME_MAX && c + count < sent.length && sent[c + count] === 0 && !server.isZero(c + count)) count += 1;
        frame = [pageFrameHead(PageFrame.pages, c, count, demand ? PAGES_FLAG_DEMAND : 0), server.chunk(c, count)];
        if (!demand) server.stats.pushed_chunks += count;
        if (this.#demand) server.stats.preempt_chunks += count;
      }
      sent.fill(1, c, c + count);
      const bytes = frame.reduce((n, b) => n + b.length, 0);
      server.stats.bytes_out += bytes;
      await this.#write(frame);
      if (!demand) await this.#pace(bytes);
      // So that this thread reads what came meanwhile (requests, RUNNING): a write the kernel takes at once resolves
      // without a turn, and on a fast link the push went on for up to 150 ms while a faulting guest's request waited
      // unread, and the demand channel with it (docs/cluster.md, "What the guest sees").
      await yieldIfDue();
    }
  }

  /**
   * Writes one frame (sealed: as one record); resolves once the socket takes
   * more. Pages never go to the socket as views of the guest's memory: they
   * are sealed or copied into a frame buffer first (FRAME_BUFFERS says why).
   */
  async #write(frame: Uint8Array[]): Promise<void> {
    let ok = true;
    const native = this.#native;
    const pages = frame[1];
    if (native !== null || (this.#sealer === null && pages !== undefined)) {
      const buffer = await this.#frameBuffer();
      if (buffer === null) return;
      const head = frame[0] as Uint8Array;
      let bytes: number;
      if (native !== null) bytes = native.sealInto(head, pages === undefined ? null : staged(pages), buffer);
      else {
        buffer.set(head, 0);
        copyOut(pages as Uint8Array, buffer.subarray(head.length));
        bytes = head.length + (pages as Uint8Array).length;
      }
      // Back in the pool only once the socket is done with it (written, or the socket destroyed).
      ok = this.#socket.write(buffer.subarray(0, bytes), () => {
        if (this.#end !== null) {
          keepBuffer(buffer);
          return;
        }
        this.#free_buffers.push(buffer);
        this.#releaseWait();
      });
    } else {
      const parts = this.#sealer === null ? frame : this.#sealer.seal(frame);
      // Corked: the pieces of a frame or record leave in one write.
      this.#socket.cork();
      for (const part of parts) ok = this.#socket.write(part);
      this.#socket.uncork();
    }
    if (ok || this.#end !== null || this.#socket.writableLength <= QUEUED_BYTES_MAX) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.#socket.off("drain", done);
        this.#socket.off("close", done);
        resolve();
      };
      this.#socket.on("drain", done);
      this.#socket.on("close", done);
    });
  }

  /** A frame buffer no write is using, waiting for one if all are; null once the connection ended. */
  async #frameBuffer(): Promise<Buffer | null> {
    for (;;) {
      if (this.#end !== null) return null;
      const free = this.#free_buffers.pop();
      if (free !== undefined) return free;
      if (this.#buffers < FRAME_BUFFERS) {
        this.#buffers += 1;
        return takeBuffer();
      }
      await new Promise<void>((resolve) => {
        this.#buffer_wait = resolve;
      });
    }
  }

  /** Holds the push to the configured rate (requests that arrive meanwhile are answered first). */
  async #pace(bytes: number): Promise<void> {
    const rate = this.#server.push_bytes_per_s;
    if (!Number.isFinite(rate)) return;
    if (this.#push_started === 0) this.#push_started = performance.now();
    this.#pushed_bytes += bytes;
    const due_ms = this.#push_started + (this.#pushed_bytes / rate) * 1000 - performance.now();
    if (due_ms <= 1) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve();
      }, due_ms);
      this.#wake = () => {
        // A request (or the end) cuts the wait short; the push waits again after it.
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

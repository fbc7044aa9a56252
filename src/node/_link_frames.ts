/**
 * The link channel's frame bodies (`ferry-links/2`, docs/links.md): DELIVER
 * and ANSWER in a fixed binary layout, so a message crosses between nodes as
 * its own bytes, with no JSON and no base64 on either side. A codec only:
 * bytes in, checked values out; the channel (`_link_channel.ts`) does the I/O.
 * Everything a peer sends is checked here against the same limits as a batch
 * anywhere else (pids, message and batch sizes, sequence numbers), and a
 * body that breaks one is an ERR_LINK_PROTOCOL, never a partial value.
 *
 * All integers are little-endian. DELIVER (frame type 1):
 *
 *   0   u32  id, echoed by the ANSWER
 *   4   u8   P: bytes of the receiver's pid (a pid: NODE-N)
 *   5   u8   F: bytes of the sender's pid (1..255, UTF-8, no NUL)
 *   6   u16  N: messages (0..128)
 *   8   P    the receiver's pid
 *   8+P F    the sender's pid
 *   then N times: u64 seq (1..2^53-1), u32 L (0..65536), L bytes of data
 *
 * The body ends exactly after the last message. ANSWER (frame type 2):
 *
 *   0   u32  id of the DELIVER it answers
 *   4   u8   kind: 1 accepted, 2 moving, 3 unknown, 4 gone
 *   accepted only (else the body ends here):
 *   5   u8   flags: bit 0 set = durable follows; other bits 0
 *   6   u8   A: bytes of `at` (a node name, 1..32)
 *   7   u64  upto (0..2^53-1)
 *   15  u64  durable (0..2^53-1), only with bit 0 of flags
 *   ..  A    at
 */
import { FerryError } from "../errors.js";
import { BATCH_MESSAGES_MAX, type Batch, type DeliverAnswer } from "../links/mod.js";
import { NODE_NAME_PATTERN, PID_PATTERN } from "../process_spec.js";
import { MESSAGE_BYTES_MAX, PID_BYTES_MAX } from "../runtime/mod.js";

/** Bytes of a DELIVER body before the pids. */
const DELIVER_HEAD_BYTES = 8;
/** Bytes before each message's data: its seq and its length. */
const MESSAGE_HEAD_BYTES = 12;
/** Bytes of an ANSWER body that is not `accepted`. */
const ANSWER_SHORT_BYTES = 5;
/** Bytes of an `accepted` ANSWER before its `at` (without durable). */
const ACCEPTED_HEAD_BYTES = 15;
/** Bit of an accepted ANSWER's flags: a durable number follows. */
const FLAG_DURABLE = 1;

const KIND_CODES = { accepted: 1, moving: 2, unknown: 3, gone: 4 } as const;
const KINDS = [undefined, "accepted", "moving", "unknown", "gone"] as const;

/** A DELIVER as the serving side takes it. */
export interface DeliverFrame {
  id: number;
  pid: string;
  batch: Batch;
}

/** An ANSWER as the sending side takes it. */
export interface AnswerFrame {
  id: number;
  answer: DeliverAnswer;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function bad(what: string): FerryError {
  return new FerryError("ERR_LINK_PROTOCOL", `malformed link frame: ${what}`);
}

function writeU64(b: Buffer, at: number, n: number): void {
  b.writeUInt32LE(n % 0x1_0000_0000, at);
  b.writeUInt32LE(Math.floor(n / 0x1_0000_0000), at + 4);
}

/** A u64 that must be a safe integer (a JSON number before, and every counter of a link is one). */
function readU64(b: Buffer, at: number, what: string): number {
  const hi = b.readUInt32LE(at + 4);
  if (hi > 0x1f_ffff) throw bad(`${what} is past 2^53 - 1`);
  return hi * 0x1_0000_0000 + b.readUInt32LE(at);
}

function view(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

function text(b: Buffer, at: number, n: number, what: string): string {
  try {
    return decoder.decode(b.subarray(at, at + n));
  } catch (cause: unknown) {
    throw new FerryError("ERR_LINK_PROTOCOL", `malformed link frame: ${what} is not UTF-8`, { cause });
  }
}

/** A DELIVER body for `batch` to `pid` (the sender's own values: checked as it would be, so a bad one fails here, not at the peer). */
export function encodeDeliver(id: number, pid: string, batch: Batch): Buffer {
  const to = encoder.encode(pid);
  const from = encoder.encode(batch.from);
  if (!PID_PATTERN.test(pid)) throw bad(`receiver ${JSON.stringify(pid)} is not a pid`);
  if (from.length === 0 || from.length > PID_BYTES_MAX) throw bad(`a sender's pid is 1 to ${PID_BYTES_MAX} bytes`);
  if (batch.messages.length > BATCH_MESSAGES_MAX) throw bad(`a batch has at most ${BATCH_MESSAGES_MAX} messages`);
  let size = DELIVER_HEAD_BYTES + to.length + from.length;
  for (const m of batch.messages) size += MESSAGE_HEAD_BYTES + m.data.length;
  const b = Buffer.allocUnsafe(size);
  b.writeUInt32LE(id >>> 0, 0);
  b.writeUInt8(to.length, 4);
  b.writeUInt8(from.length, 5);
  b.writeUInt16LE(batch.messages.length, 6);
  b.set(to, DELIVER_HEAD_BYTES);
  b.set(from, DELIVER_HEAD_BYTES + to.length);
  let at = DELIVER_HEAD_BYTES + to.length + from.length;
  for (const m of batch.messages) {
    if (!Number.isSafeInteger(m.seq) || m.seq < 1) throw bad(`seq ${m.seq} is not 1 to 2^53 - 1`);
    if (m.data.length > MESSAGE_BYTES_MAX) throw bad(`a message is at most ${MESSAGE_BYTES_MAX} bytes`);
    writeU64(b, at, m.seq);
    b.writeUInt32LE(m.data.length, at + 8);
    b.set(m.data, at + MESSAGE_HEAD_BYTES);
    at += MESSAGE_HEAD_BYTES + m.data.length;
  }
  return b;
}

/** Decodes and checks a DELIVER body from a peer; its messages' data are views of `bytes`. */
export function decodeDeliver(bytes: Uint8Array): DeliverFrame {
  const b = view(bytes);
  if (b.length < DELIVER_HEAD_BYTES) throw bad(`a DELIVER of ${b.length} bytes is too short`);
  const id = b.readUInt32LE(0);
  const to_len = b.readUInt8(4);
  const from_len = b.readUInt8(5);
  const count = b.readUInt16LE(6);
  if (count > BATCH_MESSAGES_MAX) throw bad(`${count} messages in a batch (at most ${BATCH_MESSAGES_MAX})`);
  if (from_len === 0) throw bad("an empty sender");
  let at = DELIVER_HEAD_BYTES + to_len + from_len;
  if (b.length < at) throw bad("the pids run past the body");
  const pid = text(b, DELIVER_HEAD_BYTES, to_len, "the receiver");
  if (!PID_PATTERN.test(pid)) throw bad(`receiver ${JSON.stringify(pid)} is not a pid`);
  const from = text(b, DELIVER_HEAD_BYTES + to_len, from_len, "the sender");
  if (from.includes("\0")) throw bad("the sender holds a NUL");
  const messages: Batch["messages"] = [];
  for (let i = 0; i < count; i += 1) {
    if (b.length < at + MESSAGE_HEAD_BYTES) throw bad(`message ${i} runs past the body`);
    const seq = readU64(b, at, `message ${i}'s seq`);
    if (seq < 1) throw bad(`message ${i}'s seq is 0`);
    const len = b.readUInt32LE(at + 8);
    if (len > MESSAGE_BYTES_MAX) throw bad(`message ${i} has ${len} bytes (at most ${MESSAGE_BYTES_MAX})`);
    at += MESSAGE_HEAD_BYTES;
    if (b.length < at + len) throw bad(`message ${i} runs past the body`);
    messages.push({ seq, data: b.subarray(at, at + len) });
    at += len;
  }
  if (at !== b.length) throw bad(`${b.length - at} bytes after the last message`);
  return { id, pid, batch: { from, messages } };
}

/** An ANSWER body (the receiving side's own answer). */
export function encodeAnswer(id: number, answer: DeliverAnswer): Buffer {
  if (answer.kind !== "accepted") {
    const b = Buffer.allocUnsafe(ANSWER_SHORT_BYTES);
    b.writeUInt32LE(id >>> 0, 0);
    b.writeUInt8(KIND_CODES[answer.kind], 4);
    return b;
  }
  const at = encoder.encode(answer.at);
  const durable = answer.durable !== undefined;
  const b = Buffer.allocUnsafe(ACCEPTED_HEAD_BYTES + (durable ? 8 : 0) + at.length);
  b.writeUInt32LE(id >>> 0, 0);
  b.writeUInt8(KIND_CODES.accepted, 4);
  b.writeUInt8(durable ? FLAG_DURABLE : 0, 5);
  b.writeUInt8(at.length, 6);
  writeU64(b, 7, answer.upto);
  if (answer.durable !== undefined) writeU64(b, ACCEPTED_HEAD_BYTES, answer.durable);
  b.set(at, ACCEPTED_HEAD_BYTES + (durable ? 8 : 0));
  return b;
}

/** Decodes and checks an ANSWER body from a peer. */
export function decodeAnswer(bytes: Uint8Array): AnswerFrame {
  const b = view(bytes);
  if (b.length < ANSWER_SHORT_BYTES) throw bad(`an ANSWER of ${b.length} bytes is too short`);
  const id = b.readUInt32LE(0);
  const kind = KINDS[b.readUInt8(4)];
  if (kind === undefined) throw bad(`answer kind ${b.readUInt8(4)}`);
  if (kind !== "accepted") {
    if (b.length !== ANSWER_SHORT_BYTES) throw bad(`a ${kind} ANSWER has ${b.length} bytes, not ${ANSWER_SHORT_BYTES}`);
    return { id, answer: { kind } };
  }
  if (b.length < ACCEPTED_HEAD_BYTES) throw bad(`an accepted ANSWER of ${b.length} bytes is too short`);
  const flags = b.readUInt8(5);
  if ((flags & ~FLAG_DURABLE) !== 0) throw bad(`answer flags ${flags}`);
  const at_len = b.readUInt8(6);
  const upto = readU64(b, 7, "upto");
  const head = ACCEPTED_HEAD_BYTES + ((flags & FLAG_DURABLE) !== 0 ? 8 : 0);
  if (b.length !== head + at_len) throw bad(`an accepted ANSWER has ${b.length} bytes, not ${head + at_len}`);
  const at = text(b, head, at_len, "at");
  if (!NODE_NAME_PATTERN.test(at)) throw bad(`at ${JSON.stringify(at)} is not a node name`);
  if ((flags & FLAG_DURABLE) === 0) return { id, answer: { kind, upto, at } };
  return { id, answer: { kind, upto, at, durable: readU64(b, ACCEPTED_HEAD_BYTES, "durable") } };
}

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import type { Batch, DeliverAnswer } from "../links/mod.js";
import { nativeRecordSealer, RecordDirection, RecordOpener, RecordSealer } from "../memory/mod.js";
import { LANE_FRAME_HEAD_BYTES, LaneFrame } from "../runtime/_lane_writer.js";
import { dialLane, LaneDoors } from "./_link_lanes.js";
import { decodeAnswer, encodeDeliver } from "./_link_frames.js";
import { ticketFront } from "./_lanes_testing.js";

/** A lane frame as the worker writes it: u32 body length, u8 type, body. */
function frame(type: number, body: Uint8Array): Buffer {
  const head = Buffer.alloc(LANE_FRAME_HEAD_BYTES);
  head.writeUInt32LE(body.length, 0);
  head.writeUInt8(type, 4);
  return Buffer.concat([head, body]);
}

function deliver(id: number, to: string, from: string, seq: number, text: string): Buffer {
  return frame(LaneFrame.deliver, encodeDeliver(id, to, { from, messages: [{ seq, data: Buffer.from(text) }] }));
}

describe("link lanes: the receiving node's door and server", () => {
  const doors = new LaneDoors();
  const received: { pid: string; batch: Batch; peer: string | null }[] = [];
  let answer: (pid: string, batch: Batch) => DeliverAnswer = (_pid, batch) => ({ kind: "accepted", upto: batch.messages.at(-1)?.seq ?? 0, at: "r1" });
  let server: net.Server;
  let address = "";
  before(async () => {
    ({ server, address } = await ticketFront((socket, ticket) =>
      doors.accept(socket, ticket, (pid, batch, peer) => {
        received.push({ pid, batch, peer });
        return Promise.resolve(answer(pid, batch));
      }),
    ));
  });
  after(async () => {
    doors.close();
    await new Promise((r) => server.close(r));
  });

  /** Opens a lane for `sender` through a fresh door: the socket, the worker's sealer and the opener of the answers. */
  async function open(sender: string): Promise<{ socket: net.Socket; seal: (parts: Uint8Array[]) => void; answers: () => Promise<{ id: number; answer: DeliverAnswer }[]> }> {
    const grant = doors.issue(sender, "s1");
    const socket = await dialLane(address, Buffer.from(grant.ticket, "base64"));
    const key = Buffer.from(grant.to_receiver, "base64");
    const native = nativeRecordSealer(key, RecordDirection.to_destination);
    const js = new RecordSealer(key, RecordDirection.to_destination);
    const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
    const opener = new RecordOpener(Buffer.from(grant.to_sender, "base64"), RecordDirection.to_source);
    const got: { id: number; answer: DeliverAnswer }[] = [];
    socket.on("data", (chunk: Buffer) => {
      for (const plain of opener.push(chunk)) {
        for (let at = 0; at < plain.length; ) {
          const len = plain.readUInt32LE(at);
          assert.equal(plain.readUInt8(at + 4), LaneFrame.answer);
          got.push(decodeAnswer(plain.subarray(at + LANE_FRAME_HEAD_BYTES, at + LANE_FRAME_HEAD_BYTES + len)));
          at += LANE_FRAME_HEAD_BYTES + len;
        }
      }
    });
    socket.resume();
    return {
      socket,
      // As the worker does: sealed and written by the addon in one call; in JavaScript where it is not built.
      seal: (parts) => {
        const err = native?.send(fd, parts, 200) ?? null;
        if (err === null) socket.write(Buffer.concat(js.seal(parts)));
        else assert.equal(err, 0);
      },
      answers: async () => {
        const deadline = Date.now() + 10_000;
        while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        return got;
      },
    };
  }

  const closed = (socket: net.Socket): Promise<void> => new Promise((r) => (socket.destroyed ? r() : socket.once("close", () => r())));

  it("takes the worker's deliveries in order and answers each on the lane, several to a record", { timeout: 30_000 }, async () => {
    received.length = 0;
    const lane = await open("n1-7");
    for (let seq = 1; seq <= 20; seq += 1) lane.seal([deliver(100 + seq, "n2-3", "n1-7", seq, `m${seq}`)]);
    // Answers are held a little and go several to a write: all twenty come, each naming its delivery.
    const deadline = Date.now() + 10_000;
    while ((await lane.answers()).length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const answers = await lane.answers();
    assert.deepEqual(
      answers.map((a) => a.id).sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, i) => 101 + i),
    );
    assert.ok(answers.every((a) => a.answer.kind === "accepted"));
    assert.deepEqual(
      received.map((r) => [r.pid, r.batch.from, r.batch.messages[0]?.seq, Buffer.from(r.batch.messages[0]?.data ?? []).toString(), r.peer]),
      Array.from({ length: 20 }, (_, i) => ["n2-3", "n1-7", i + 1, `m${i + 1}`, "s1"]),
    );
    lane.socket.destroy();
  });

  it("answers one that took less than its delivery at once", { timeout: 30_000 }, async () => {
    answer = () => ({ kind: "moving" });
    try {
      const lane = await open("n1-8");
      lane.seal([deliver(5, "n2-3", "n1-8", 1, "x")]);
      const [first] = await lane.answers();
      assert.deepEqual(first, { id: 5, answer: { kind: "moving" } });
      lane.socket.destroy();
    } finally {
      answer = (_pid, batch) => ({ kind: "accepted", upto: batch.messages.at(-1)?.seq ?? 0, at: "r1" });
    }
  });

  it("drops a lane that carries another process's messages, or a record that is not authentic, and spends each ticket once", { timeout: 30_000 }, async () => {
    received.length = 0;
    const forged = await open("n1-9");
    forged.seal([deliver(1, "n2-3", "n1-10", 1, "not mine")]);
    await closed(forged.socket);
    assert.equal(received.length, 0);

    const grant = doors.issue("n1-11", "s1");
    const ticket = Buffer.from(grant.ticket, "base64");
    const tampered = await dialLane(address, ticket);
    const record = Buffer.concat(new RecordSealer(Buffer.from(grant.to_receiver, "base64"), RecordDirection.to_destination).seal([deliver(1, "n2-3", "n1-11", 1, "m")]));
    record[10] = (record[10] as number) ^ 1;
    tampered.write(record);
    tampered.resume();
    await closed(tampered);
    assert.equal(received.length, 0);
    // The ticket was spent by the first connection: a second one through it is not let in.
    await assert.rejects(dialLane(address, ticket));
  });

  it("serves a bounded number of lanes: past it, no door is opened", () => {
    const few = new LaneDoors({ served_max: 0 });
    assert.throws(() => few.issue("n1-1", "s1"), (err: Error & { code?: string }) => err.code === "ERR_QUOTA");
  });
});

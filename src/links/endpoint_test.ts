import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BATCH_BYTES_MAX, BATCH_MESSAGES_MAX, BATCHES_IN_FLIGHT_MAX, Endpoint, INBOX_QUEUE_MAX, KEPT_BYTES_MAX, KEPT_REOFFER_MS, parseLinkState, type Batch, type DeliverAnswer, type LinkTransport } from "./mod.js";
import { MESSAGE_BYTES_MAX } from "../runtime/mod.js";

const bytes = (s: string): Uint8Array => Buffer.from(s);
const text = (d: string): string => Buffer.from(d, "base64").toString();
const nowhere: LinkTransport = { deliver: () => Promise.resolve({ kind: "moving" }) };

function batch(from: string, first: number, count: number): Batch {
  return { from, messages: Array.from({ length: count }, (_, i) => ({ seq: first + i, data: bytes(`${from}:${first + i}`) })) };
}

/** A sender wired straight to a receiver, through a transport that can drop answers or whole batches. */
function wire(receiver: Endpoint, faults: { lose_answer?: number; drop?: number } = {}): { transport: LinkTransport; calls: number } {
  const state = { calls: 0 };
  return {
    get calls() {
      return state.calls;
    },
    transport: {
      deliver: (_to, b): Promise<DeliverAnswer> => {
        state.calls += 1;
        if (state.calls === faults.drop) return Promise.reject(new Error("link cut before arrival"));
        const answer = receiver.accept(b, "there");
        if (state.calls === faults.lose_answer) return Promise.reject(new Error("link cut after arrival"));
        return Promise.resolve(answer);
      },
    },
  };
}

async function until(check: () => boolean): Promise<void> {
  await untilFor(1_000, check);
}

async function untilFor(ms: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  assert.ok(check(), "condition not reached");
}

describe("link endpoint", () => {
  it("takes each sender's messages once and in order: repeats are skipped and a gap stops the batch", () => {
    const ep = new Endpoint("r", nowhere);
    assert.deepEqual(ep.accept(batch("a", 1, 3), "here"), { kind: "accepted", upto: 3, at: "here" });
    assert.deepEqual(ep.accept(batch("a", 2, 4), "here"), { kind: "accepted", upto: 5, at: "here" }, "2 and 3 again, then 4 and 5");
    assert.deepEqual(ep.accept(batch("a", 7, 2), "here"), { kind: "accepted", upto: 5, at: "here" }, "7 would leave a gap at 6");
    assert.deepEqual(ep.accept(batch("b", 1, 1), "here"), { kind: "accepted", upto: 1, at: "here" }, "senders are numbered apart");
    const state = ep.capture();
    assert.deepEqual(state.inbox.map((m) => text(m.data)), ["a:1", "a:2", "a:3", "a:4", "a:5", "b:1"]);
    assert.deepEqual(state.delivered, { a: 5, b: 1 });
  });

  it("bounds its inbox: past the limit the sender is told how far it got", () => {
    const ep = new Endpoint("r", nowhere);
    const answer = ep.accept(batch("a", 1, INBOX_QUEUE_MAX + 10), "here");
    assert.deepEqual(answer, { kind: "accepted", upto: INBOX_QUEUE_MAX, at: "here" });
  });

  it("while frozen for a move it takes nothing; once ended it says gone", async () => {
    const ep = new Endpoint("r", nowhere);
    ep.freeze();
    assert.deepEqual(ep.accept(batch("a", 1, 1), "here"), { kind: "moving" });
    ep.resume();
    assert.equal(ep.accept(batch("a", 1, 1), "here").kind, "accepted");
    await ep.end();
    assert.deepEqual(ep.accept(batch("a", 2, 1), "here"), { kind: "gone" });
  });

  it("its state survives a move: loaded elsewhere, it keeps numbering and skipping as before", () => {
    const sender = new Endpoint("s", nowhere);
    const hooks = sender.hooks(() => undefined);
    hooks.send("r", bytes("one"));
    hooks.send("r", bytes("two"));
    const moved = new Endpoint("s", nowhere, parseLinkState(JSON.parse(JSON.stringify(sender.capture()))));
    moved.hooks(() => undefined).send("r", bytes("three"));
    const out = moved.capture().outbox;
    assert.deepEqual(out.map((m) => [m.seq, text(m.data)]), [[1, "one"], [2, "two"], [3, "three"]]);
    // Their delivery loops retry for ever against `nowhere`: stop them.
    sender.freeze();
    moved.freeze();
    assert.throws(() => parseLinkState({ version: 2 }), /malformed/);
  });

  for (const [name, faults] of [
    // The last of the three batches 300 messages make: no later answer covers it, so it must be sent again.
    ["an answer lost after the batch arrived", { lose_answer: 3 }],
    ["a batch lost before it arrived", { drop: 1 }],
  ] as const) {
    it(`delivers every message exactly once in order despite ${name}`, async () => {
      const receiver = new Endpoint("r", nowhere);
      const link = wire(receiver, faults);
      const sender = new Endpoint("s", link.transport);
      const hooks = sender.hooks(() => undefined);
      for (let i = 1; i <= 300; i += 1) hooks.send("r", bytes(`m${i}`));
      await until(() => sender.capture().outbox.length === 0);
      const inbox = receiver.capture().inbox.map((m) => text(m.data));
      assert.deepEqual(inbox, Array.from({ length: 300 }, (_, i) => `m${i + 1}`));
      assert.ok(link.calls >= 4, "a delivery failed and was sent again");
    });
  }

  it("keeps several batches on their way to one receiver, and no more than its limit", async () => {
    const receiver = new Endpoint("r", nowhere);
    const held: (() => void)[] = [];
    const sender = new Endpoint("s", {
      deliver: (_to, b) => new Promise((resolve) => held.push(() => resolve(receiver.accept(b, "there")))),
    });
    const hooks = sender.hooks(() => undefined);
    // Messages of 64 KiB: a batch holds 8 of them (BATCH_BYTES_MAX), so these make twice as many batches as may be on their way.
    const per_batch = BATCH_BYTES_MAX / MESSAGE_BYTES_MAX;
    const n = per_batch * BATCHES_IN_FLIGHT_MAX * 2;
    for (let i = 1; i <= n; i += 1) hooks.send("r", bytes(`m${i}`.padEnd(MESSAGE_BYTES_MAX)));
    await until(() => held.length > 0);
    const on_their_way = held.length;
    assert.equal(on_their_way, BATCHES_IN_FLIGHT_MAX, "as many batches as the limit, before any answer");
    assert.equal(on_their_way * per_batch, n / 2, "each of them full: the messages sent in one go travel together");
    for (;;) {
      await until(() => held.length > 0 || sender.capture().outbox.length === 0);
      if (held.length === 0) break;
      held.shift()!();
    }
    assert.deepEqual(
      receiver.capture().inbox.map((m) => text(m.data).trimEnd()),
      Array.from({ length: n }, (_, i) => `m${i + 1}`),
    );
  });

  it("delivers exactly once and in order when batches arrive out of order and answers come back out of order", async () => {
    const receiver = new Endpoint("r", nowhere);
    const held: (() => void)[] = [];
    let calls = 0;
    const sender = new Endpoint("s", {
      deliver: (_to, b) => {
        calls += 1;
        return new Promise((resolve) => held.push(() => resolve(receiver.accept(b, "there"))));
      },
    });
    const hooks = sender.hooks(() => undefined);
    const n = BATCH_MESSAGES_MAX * 5 + 7;
    for (let i = 1; i <= n; i += 1) hooks.send("r", bytes(`m${i}`));
    // Newest first: each batch but the oldest lands after a gap and is refused, then sent again.
    for (;;) {
      await until(() => held.length > 0 || sender.capture().outbox.length === 0);
      if (held.length === 0) break;
      held.pop()!();
    }
    assert.deepEqual(
      receiver.capture().inbox.map((m) => text(m.data)),
      Array.from({ length: n }, (_, i) => `m${i + 1}`),
    );
    assert.ok(calls > 6, "refused batches were sent again");
  });

  it("keeps what a checkpointed receiver took past its stored checkpoint, and sends it again when the receiver is resumed from that checkpoint: exactly once, in order", async () => {
    let receiver = new Endpoint("r", nowhere);
    const sender = new Endpoint("s", { deliver: (_to, b) => Promise.resolve(receiver.accept(b, "there")) });
    const hooks = sender.hooks(() => undefined);
    for (let i = 1; i <= 3; i += 1) hooks.send("r", bytes(`m${i}`));
    await until(() => sender.capture().outbox.length === 0);
    // The receiver's checkpoint: captured, then stored.
    const checkpoint = JSON.parse(JSON.stringify(receiver.capture()));
    receiver.checkpointStored();
    for (let i = 4; i <= 6; i += 1) hooks.send("r", bytes(`m${i}`));
    await until(() => sender.capture().outbox.length === 0);
    assert.deepEqual((sender.capture().kept ?? []).map((m) => m.seq), [4, 5, 6], "taken past the checkpoint: kept");
    // Its runner dies: it resumes from the checkpoint, which had taken 3.
    receiver = new Endpoint("r", nowhere, parseLinkState(checkpoint));
    hooks.send("r", bytes("m7"));
    await until(() => receiver.capture().inbox.length === 7);
    assert.deepEqual(
      receiver.capture().inbox.map((m) => text(m.data)),
      Array.from({ length: 7 }, (_, i) => `m${i + 1}`),
    );
    // A new checkpoint covers them all: the sender forgets them.
    receiver.capture();
    receiver.checkpointStored();
    hooks.send("r", bytes("m8"));
    await until(() => (sender.capture().kept ?? []).every((m) => m.seq > 7) && sender.capture().outbox.length === 0);
    assert.deepEqual((sender.capture().kept ?? []).map((m) => m.seq), [8]);
  });

  it("offers what it keeps again once the link is quiet: a sender waiting on a receiver resumed without its last messages sends them again, and forgets them once a checkpoint covers them", async () => {
    let receiver = new Endpoint("r", nowhere);
    let deliveries = 0;
    const sender = new Endpoint("s", {
      deliver: (_to, b) => {
        deliveries += 1;
        return Promise.resolve(receiver.accept(b, "there"));
      },
    });
    const hooks = sender.hooks(() => undefined);
    for (let i = 1; i <= 3; i += 1) hooks.send("r", bytes(`m${i}`));
    await until(() => sender.capture().outbox.length === 0);
    const checkpoint = JSON.parse(JSON.stringify(receiver.capture()));
    receiver.checkpointStored();
    for (let i = 4; i <= 6; i += 1) hooks.send("r", bytes(`m${i}`));
    await until(() => sender.capture().outbox.length === 0 && (sender.capture().kept ?? []).length === 3);
    // The receiver is resumed from its checkpoint; the sender has nothing more to send (it waits for an answer that will not come).
    receiver = new Endpoint("r", nowhere, parseLinkState(checkpoint));
    const before = deliveries;
    await untilFor(5_000, () => receiver.capture().inbox.length === 6);
    assert.deepEqual(receiver.capture().inbox.map((m) => text(m.data)), ["m1", "m2", "m3", "m4", "m5", "m6"], "each once, in order");
    assert.ok(deliveries > before, "offered again without a new message");
    // Its next checkpoint covers them: the next offer finds them covered, and the sender keeps nothing.
    receiver.capture();
    receiver.checkpointStored();
    await untilFor(5_000 + KEPT_REOFFER_MS, () => sender.capture().kept === undefined);
  });

  it("keeps at most KEPT_BYTES_MAX (and what was on its way) for a receiver whose checkpoints fall behind, holding the rest in its outbox, and sends it all, once and in order, once a checkpoint covers what is kept", async () => {
    const receiver = new Endpoint("r", nowhere);
    const sender = new Endpoint("s", { deliver: (_to, b) => Promise.resolve(receiver.accept(b, "there")) });
    receiver.capture();
    receiver.checkpointStored();
    const hooks = sender.hooks(() => undefined);
    const n = Math.ceil((KEPT_BYTES_MAX * 1.5) / MESSAGE_BYTES_MAX);
    for (let i = 1; i <= n; i += 1) hooks.send("r", bytes(`m${i}`.padEnd(MESSAGE_BYTES_MAX)));
    const keptBytes = (): number => (sender.capture().kept ?? []).reduce((sum, m) => sum + Buffer.from(m.data, "base64").length, 0);
    await untilFor(10_000, () => keptBytes() >= KEPT_BYTES_MAX);
    assert.ok(keptBytes() <= KEPT_BYTES_MAX + BATCHES_IN_FLIGHT_MAX * BATCH_BYTES_MAX, `kept ${keptBytes()} bytes`);
    assert.ok(sender.capture().outbox.length > 0, "the rest waits in the outbox");
    // The receiver's next checkpoint covers what it took: the next message's answer says so, and the rest goes.
    receiver.capture();
    receiver.checkpointStored();
    await untilFor(10_000 + KEPT_REOFFER_MS, () => receiver.capture().inbox.length === n);
    assert.deepEqual(receiver.capture().inbox.map((m) => text(m.data).trimEnd()), Array.from({ length: n }, (_, i) => `m${i + 1}`));
  });

  it("keeps nothing for a receiver that has no stored checkpoint", async () => {
    const receiver = new Endpoint("r", nowhere);
    const sender = new Endpoint("s", { deliver: (_to, b) => Promise.resolve(receiver.accept(b, "there")) });
    for (let i = 1; i <= 5; i += 1) sender.hooks(() => undefined).send("r", bytes(`m${i}`));
    await until(() => sender.capture().outbox.length === 0);
    assert.equal(sender.capture().kept, undefined);
  });

  it("drops what it holds for a receiver that has ended", async () => {
    const sender = new Endpoint("s", { deliver: () => Promise.resolve({ kind: "gone" }) });
    sender.hooks(() => undefined).send("r", bytes("lost"));
    await until(() => sender.capture().outbox.length === 0);
    assert.equal(sender.stats().get("r")?.messages, 1);
  });
});

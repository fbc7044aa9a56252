/**
 * A node's post-copy sessions as page channels find them: a channel that
 * comes before its session waits for it, and a stopping node turns such a
 * channel away at once, so none holds its listener open. A session an offer
 * named takes its channels at once and hands them, in order, to the session
 * once it is set up; closed first, it closes them.
 */
import assert from "node:assert/strict";
import { PassThrough, type Duplex } from "node:stream";
import { describe, it } from "node:test";
import type { PageChannelKeys } from "../memory/mod.js";
import { PostCopySessions, type IncomingPostCopy } from "./_postcopy.js";

/** A stand-in for a set-up session: records the channels it is given (the real one hands them to native threads). */
function fakeSession(session: string, pid: string): { s: IncomingPostCopy; got: { socket: Duplex; keys: string | undefined; demand: boolean }[] } {
  const got: { socket: Duplex; keys: string | undefined; demand: boolean }[] = [];
  const attach = (socket: Duplex, keys?: PageChannelKeys, demand = false): void => {
    got.push({ socket, keys: keys === undefined ? undefined : Buffer.from(keys.to_source).toString("hex"), demand });
  };
  const s = { session, pid, attach };
  return { s: s as unknown as IncomingPostCopy, got };
}

const keys = (b: number): PageChannelKeys => ({ to_destination: Buffer.alloc(32, b), to_source: Buffer.alloc(32, b + 1) });

describe("post-copy sessions", () => {
  it("a channel that waits for a session not set up is turned away when the node stops, and so is one that comes after", async () => {
    const sessions = new PostCopySessions();
    // Long enough that only close() can answer it within the test.
    const waiting = sessions.wait("s1", 60_000);
    let answered: unknown = "not yet";
    void waiting.then((s) => (answered = s));
    await new Promise((r) => setImmediate(r));
    assert.equal(answered, "not yet", "the channel did not wait for its session");
    sessions.close();
    assert.equal(await waiting, null);
    assert.equal(await sessions.wait("s2", 60_000), null, "a channel that came after the stop waited");
  });

  it("a wait for a session that never comes ends after its timeout", async () => {
    const sessions = new PostCopySessions();
    assert.equal(await sessions.wait("s1", 10), null);
  });

  it("a session an offer named takes its channels before it is set up and hands them over in order, keys intact though the caller wiped its own", async () => {
    const sessions = new PostCopySessions();
    const waiting = sessions.wait("s1", 60_000);
    const pending = sessions.expect("s1", "n1-1");
    assert.ok(pending !== null);
    assert.equal(await waiting, pending, "a channel already waiting goes to the named session at once");
    assert.equal(sessions.get("s1"), pending);
    assert.equal(sessions.expect("s1", "n1-1"), null, "a name in use is not taken twice");
    const [a, b] = [new PassThrough(), new PassThrough()];
    const k = keys(1);
    pending.attach(a, k);
    k.to_source.fill(0);
    pending.attach(b, undefined, true);
    const { s, got } = fakeSession("s1", "n1-1");
    sessions.add(s);
    assert.deepEqual(got.map((g) => [g.socket, g.keys, g.demand]), [[a, Buffer.alloc(32, 2).toString("hex"), false], [b, undefined, true]]);
    assert.equal(sessions.get("s1"), s);
    // A channel whose wait resolved to the named session before it was set up (the answer to its upgrade still being written) goes on to it.
    const late = new PassThrough();
    pending.attach(late);
    assert.equal(late.destroyed, false);
    assert.equal(got.at(-1)?.socket, late);
  });

  it("a named session closed before it is set up (the move failed) closes the channels it holds and turns later ones away", async () => {
    const sessions = new PostCopySessions();
    const pending = sessions.expect("s1", "n1-1");
    assert.ok(pending !== null);
    const a = new PassThrough();
    pending.attach(a);
    pending.close();
    assert.equal(a.destroyed, true);
    assert.equal(sessions.get("s1"), undefined);
    assert.equal(await sessions.wait("s1", 60_000), null, "a channel for a closed session waited");
    const late = new PassThrough();
    pending.attach(late);
    assert.equal(late.destroyed, true);
    assert.equal(sessions.expect("s1", "n1-1"), null, "the name of a session that ended came back");
  });

  it("a stopping node closes the named sessions not set up yet", () => {
    const sessions = new PostCopySessions();
    const pending = sessions.expect("s1", "n1-1");
    assert.ok(pending !== null);
    const a = new PassThrough();
    pending.attach(a);
    sessions.close();
    assert.equal(a.destroyed, true);
    assert.equal(sessions.expect("s2", "n1-2"), null);
  });
});

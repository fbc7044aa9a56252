/**
 * A node's post-copy sessions as page channels find them: a channel that
 * comes before its session waits for it, and a stopping node turns such a
 * channel away at once, so none holds its listener open.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PostCopySessions } from "./_postcopy.js";

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
});

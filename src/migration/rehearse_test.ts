/** A node's rehearsal of a move's encoding and decoding (`_rehearse.ts`): it runs its rounds with either kind of node key, and stops when told. */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, it } from "node:test";
import { rehearseMigrations } from "./_rehearse.js";

describe("a node's rehearsal of a migration", () => {
  for (const [name, key] of [
    ["P-256", generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey],
    ["Ed25519", generateKeyPairSync("ed25519").privateKey],
  ] as const) {
    it(`encodes, signs, checks and decodes its made-up image with a ${name} key, every round`, async () => {
      // Its timer and turns do not keep a process alive (a node's do not): this one does, meanwhile.
      const alive = setInterval(() => undefined, 1000);
      try {
        const rehearsal = rehearseMigrations({ key }, { delay_ms: 0, rounds: 5 });
        assert.equal(await rehearsal.done, 5);
      } finally {
        clearInterval(alive);
      }
    });
  }

  it("stopped before it starts, runs nothing and leaves nothing scheduled", async () => {
    const rehearsal = rehearseMigrations({ key: generateKeyPairSync("ed25519").privateKey }, { delay_ms: 60_000 });
    rehearsal.stop();
    assert.equal(await rehearsal.done, 0);
  });
});

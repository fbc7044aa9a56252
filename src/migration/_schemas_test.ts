/** The migration protocol's JSON frames: what passes and what is a protocol error. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FerryError, PeerError } from "../errors.js";
import { Msg, raiseIfError, readFrame } from "./_wire.js";
import { HandoverSchema, OfferSchema } from "./_schemas.js";

const offer = {
  pid: "n1-3",
  home: "n1",
  module_sha256: "a".repeat(64),
  module_name: "m.wasm",
  args: ["x"],
  env: ["K=V"],
  dirs: [{ host: "/data", guest: "/d" }],
  open_files: ["/data/in.bin"],
  strategy: "pre-copy",
  source: "127.0.0.1:7070",
  memory_bytes: 2 * 65536,
  memory_max_bytes: 64 * 65536,
  moves: 1,
};
const bytes = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value));
const protocolError = (e: unknown): boolean => e instanceof FerryError && e.code === "ERR_MIGRATION_PROTOCOL";

describe("migration frames", () => {
  it("takes a well-formed OFFER", () => {
    assert.deepEqual(readFrame(OfferSchema, bytes(offer), "OFFER"), offer);
  });

  it("refuses an OFFER with a bad field, naming it", () => {
    const bad: [string, unknown][] = [
      ["memory_bytes", 1.5],
      ["memory_bytes", -65536],
      ["memory_max_bytes", 0],
      ["strategy", "warp"],
      ["pid", "../x"],
      ["home", "a b"],
      ["source", "nowhere"],
      ["dirs", [{ host: "/a/../b", guest: "/d" }]],
      ["open_files", ["relative"]],
      ["recover_ms", 0],
      ["args", "x"],
    ];
    for (const [field, value] of bad) {
      assert.throws(
        () => readFrame(OfferSchema, bytes({ ...offer, [field]: value }), "OFFER"),
        (e: unknown) => protocolError(e) && (e as Error).message.includes(field),
        field,
      );
    }
    assert.throws(() => readFrame(OfferSchema, Buffer.from("{"), "OFFER"), protocolError);
    const { memory_max_bytes: _, ...without_cap } = offer;
    assert.throws(() => readFrame(OfferSchema, bytes(without_cap), "OFFER"), protocolError);
  });

  it("bounds a HANDOVER's runs", () => {
    const h = { session: "n1-3.abc", remote_bytes: 4 * 65536, missing: [[0, 2]] };
    assert.deepEqual(readFrame(HandoverSchema, bytes(h), "HANDOVER"), h);
    for (const bad of [{ ...h, session: "a/b" }, { ...h, remote_bytes: 100 }, { ...h, missing: [[0, 0]] }, { ...h, missing: [[-1, 1]] }, { ...h, missing: [[0, 1.5]] }, { ...h, missing: [0, 1] }]) {
      assert.throws(() => readFrame(HandoverSchema, bytes(bad), "HANDOVER"), protocolError, JSON.stringify(bad));
    }
  });

  it("raises an ERROR frame as the peer's error, an unknown code as ERR_PEER", () => {
    const frame = (value: unknown): { type: number; payload: Uint8Array } => ({ type: Msg.error, payload: bytes(value) });
    assert.throws(() => raiseIfError(frame({ code: "ERR_QUOTA", message: "full" }), "the destination refused"), (e: unknown) => e instanceof PeerError && e.code === "ERR_QUOTA" && e.message === "the destination refused: full");
    assert.throws(() => raiseIfError(frame({ code: "ERR_MADE_UP", message: "x" }), "peer"), (e: unknown) => e instanceof PeerError && e.code === "ERR_PEER" && e.message.includes("ERR_MADE_UP"));
    assert.throws(() => raiseIfError(frame({}), "peer"), (e: unknown) => e instanceof PeerError && e.code === "ERR_MIGRATION_REFUSED");
    assert.throws(() => raiseIfError(frame({ code: 5 }), "peer"), protocolError);
    raiseIfError({ type: Msg.ready, payload: bytes({}) }, "peer");
  });
});

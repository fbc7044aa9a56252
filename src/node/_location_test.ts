import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { checkExit, checkLocation, type Recorded } from "./_location.js";

const code = (c: string) => (err: unknown): boolean => err instanceof FerryError && err.code === c;
const at = (node: string, moves: number, ended = false, previous: string | null = null): Recorded => ({ pid: "n1-1", node, moves, previous, ended });

describe("location rules", () => {
  it("take the next move from the runner, and a repeat of the recorded one as done", () => {
    assert.equal(checkLocation(at("n1", 0), "n1", "n2", 1), "apply");
    assert.equal(checkLocation(at("n2", 1), "n1", "n2", 1), "repeat");
    assert.equal(checkLocation(at("n2", 1), null, "n3", 2), "apply");
  });

  it("refuse a stale update, whoever sends it: an older move, or the recorded move to another node", () => {
    assert.throws(() => checkLocation(at("n3", 2), "n3", "n2", 1), code("ERR_LOCATION_STALE"));
    assert.throws(() => checkLocation(at("n3", 2), "n3", "n1", 2), code("ERR_LOCATION_STALE"));
    assert.throws(() => checkLocation(at("n3", 2, true), "n3", "n1", 3), code("ERR_LOCATION_STALE"));
  });

  it("hold back an update past the next move, and refuse the next move told by a node that does not run it", () => {
    assert.throws(() => checkLocation(at("n1", 0), "n2", "n3", 2), code("ERR_LOCATION_PENDING"));
    assert.throws(() => checkLocation(at("n1", 0), "n2", "n3", 1), code("ERR_FORBIDDEN"));
  });

  it("take an exit report only from the runner at the recorded move; one from a move not recorded yet waits", () => {
    assert.equal(checkExit(at("n2", 1), "n2", 1, "exit"), "apply");
    assert.equal(checkExit(at("n2", 1, true), "n3", 7, "exit"), "repeat");
    assert.throws(() => checkExit(at("n1", 0), "n2", 1, "exit"), code("ERR_LOCATION_PENDING"));
    assert.throws(() => checkExit(at("n2", 1, false, "n1"), "n1", 1, "exit"), code("ERR_NOT_RUNNER"));
    assert.throws(() => checkExit(at("n2", 2), "n2", 1, "exit"), code("ERR_NOT_RUNNER"));
  });

  it("take a loss of the last move from its source too (post-copy's pages that never arrived), and nothing else from it", () => {
    assert.equal(checkExit(at("n2", 1, false, "n1"), "n1", 1, "lost"), "apply");
    assert.throws(() => checkExit(at("n2", 1, false, "n1"), "n1", 0, "lost"), code("ERR_NOT_RUNNER"));
    assert.throws(() => checkExit(at("n2", 1, false, "n1"), "n3", 1, "lost"), code("ERR_NOT_RUNNER"));
  });
});

/**
 * A keeper's room for one more checkpoint: within its --checkpoint-disk-max,
 * and leaving its floor of free space on the data directory's disk.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { checkKeeperRoom, KEEPER_DISK_FREE_MIN_BYTES } from "./_checkpoint_store.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function refused(pattern: RegExp): (e: unknown) => boolean {
  return (e: unknown) => e instanceof FerryError && e.code === "ERR_CHECKPOINT_LIMIT" && pattern.test(e.message);
}

describe("a keeper's room for a checkpoint", () => {
  const room = { kept_bytes: 10 * MiB, need_bytes: 8 * MiB, bytes_max: 32 * MiB, free_bytes: 100 * GiB, free_bytes_min: KEEPER_DISK_FREE_MIN_BYTES };

  it("takes a checkpoint that fits both bounds", () => {
    checkKeeperRoom(room);
    checkKeeperRoom({ ...room, kept_bytes: 24 * MiB });
    checkKeeperRoom({ ...room, free_bytes: KEEPER_DISK_FREE_MIN_BYTES + 8 * MiB });
  });

  it("refuses one that could pass --checkpoint-disk-max, naming it", () => {
    assert.throws(() => checkKeeperRoom({ ...room, kept_bytes: 24 * MiB + 1 }), refused(/--checkpoint-disk-max of 33554432 bytes/));
    assert.throws(() => checkKeeperRoom({ ...room, kept_bytes: 0, bytes_max: 4 * MiB }), refused(/--checkpoint-disk-max/));
  });

  it("refuses one that could leave less than the floor free on the disk, whatever the bound allows", () => {
    assert.throws(() => checkKeeperRoom({ ...room, bytes_max: 1024 * GiB, free_bytes: KEEPER_DISK_FREE_MIN_BYTES + 8 * MiB - 1 }), refused(/keeps free/));
    assert.throws(() => checkKeeperRoom({ ...room, free_bytes: 0 }), refused(/has 0 bytes free/));
  });
});

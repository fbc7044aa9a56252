/**
 * The source's state machine (`_outgoing.ts`) over the in-memory duplex
 * pair, with real processes on both sides and a fault injected as it enters
 * each state: the link breaks, or the step itself fails. Whatever the fault,
 * exactly one copy of the process runs afterwards, with its state intact:
 * at the source before the image is sent; after it, wherever the
 * destination says it runs. Also: a connect that fails, a destination that
 * refuses after the whole image, and the question "does it run there?"
 * lost once or every time after the link broke.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { trustKeys } from "../image/mod.js";
import { GuestProcess } from "../runtime/mod.js";
import { pipeDuplexPair } from "../transport/_testing.js";
import { FramedConnection } from "../transport/mod.js";
import { migrateIn, migrateOut, Msg, OUT_STATES, type OutState, type Strategy } from "./mod.js";
import { KernelTracker, ShadowTracker, TRACK_PAGE_BYTES, kernelTrackerAvailability } from "../memory/mod.js";
import { DESTINATION_ASKS, dirtyMostly } from "./_outgoing.js";
import { destination, EXIT_INTACT, GUEST, io, source } from "./_testing.js";

type Fault = "the link breaks" | "the step fails";

/** What a case changes beyond the fault: the connect fails; the destination's restore fails; how the source's question "does it run there?" is answered, given the truth. */
interface Twists {
  connect_fails?: boolean;
  restore_fails?: boolean;
  ask?: (truth: () => Promise<boolean>) => Promise<boolean>;
}

/** Migrates GUEST with `strategy`, injecting `fault` as the source enters `at`; reports both sides and the states passed. */
/** Page channels the post-copy cases opened: ended once each case is settled. */
const channels: { destroy(): void }[] = [];

async function faulted(strategy: Strategy, at: OutState, fault: Fault, twists: Twists = {}) {
  const signer = { key: generateKeyPairSync("ed25519").privateKey };
  const s = io();
  const proc = await GuestProcess.start({ wasm: GUEST, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, s.io);
  const [a, b] = pipeDuplexPair();
  const dest = destination(trustKeys([signer.key]), GUEST);
  if (twists.restore_fails === true) {
    const prepare = dest.side.prepare.bind(dest.side);
    dest.side.prepare = async (offer, clock) => {
      const landing = await prepare(offer, clock);
      return {
        ...landing,
        finish: async () => {
          throw new FerryError("ERR_RESTORE_STATE", "injected: the restore fails");
        },
      };
    };
  }
  const incoming = migrateIn(new FramedConnection(b, { splittable_types: [Msg.image, Msg.bulk] }), dest.side);
  const settled = incoming.then(() => undefined, () => undefined);
  const side = source(proc, strategy, signer, () => new FramedConnection(a));
  if (strategy === "post-copy" || strategy === "hybrid") {
    // A page channel to nowhere: every case here faults before the destination runs it, so no page is ever asked for.
    side.connectPages = () => {
      const [pages, far] = pipeDuplexPair();
      channels.push(pages, far);
      return Promise.resolve({ socket: pages, head: new Uint8Array(0) });
    };
  }
  if (twists.connect_fails === true) side.connect = () => Promise.reject(new FerryError("ERR_PEER_UNREACHABLE", "injected: the destination cannot be reached"));
  // As a node asks its peer: does the process run there? Once the destination has settled, it knows.
  const truth = async (): Promise<boolean> => {
    await settled;
    return dest.landed() !== null;
  };
  side.destinationRuns = twists.ask === undefined ? truth : () => (twists.ask as NonNullable<Twists["ask"]>)(truth);
  const states: OutState[] = [];
  const outgoing = migrateOut(side, {
    strategy,
    onState: (state) => {
      states.push(state);
      if (state !== at) return;
      if (fault === "the link breaks") a.destroy();
      else throw new FerryError("ERR_MIGRATION_FAILED", `injected fault on entering ${state}`);
    },
  });
  // A connect that fails leaves the destination's side waiting for an offer that never comes: its end of the pair is closed.
  if (twists.connect_fails === true) void outgoing.catch(() => undefined).then(() => b.destroy());
  const [out] = await Promise.allSettled([outgoing, settled]);
  for (const c of channels.splice(0)) c.destroy();
  return { out, proc, stdin: s.stdin, output: s.out, landed: dest.landed(), states };
}

/** The run aborted and the process goes on at the source with its state intact; nothing runs at the destination. */
async function abortedAtSource(run: Awaited<ReturnType<typeof faulted>>): Promise<void> {
  assert.equal(run.out.status, "rejected", "the migration succeeded");
  if (run.out.status === "rejected") {
    assert.ok(run.out.reason instanceof FerryError);
    assert.match(run.out.reason.message, /keeps running on the source/);
  }
  assert.equal(run.states.at(-1), "aborted");
  assert.equal(run.landed, null, "the destination runs it too");
  run.stdin.end("go\n");
  assert.deepEqual(await run.proc.exited, { kind: "exit", code: EXIT_INTACT });
  assert.equal(run.output(), "ok\n");
}

describe("the source's state machine, with a fault as it enters each state", () => {
  for (const strategy of ["stop-copy", "pre-copy", "post-copy", "hybrid"] as const) {
    for (const at of ["offered", "rounds", "stopped"] as const) {
      for (const fault of ["the link breaks", "the step fails"] as const) {
        it(`${strategy}, ${fault} on entering ${at}: aborted, the process runs at the source, intact`, async () => {
          await abortedAtSource(await faulted(strategy, at, fault));
        });
      }
    }
    // Post-copy and hybrid past `sent` need a destination that runs a process whose pages come later: the node's (test/postcopy.test.ts).
    if (strategy === "post-copy" || strategy === "hybrid") continue;
    for (const fault of ["the link breaks", "the step fails"] as const) {
      it(`${strategy}, ${fault} on entering sent (before RUNNING is read): the destination runs it, and the source commits`, async () => {
        const run = await faulted(strategy, "sent", fault);
        const landed = run.landed;
        assert.ok(landed !== null, "the destination does not run it");
        try {
          assert.equal(run.out.status, "fulfilled", `the source did not commit: ${run.out.status === "rejected" ? String(run.out.reason) : ""}`);
          assert.deepEqual(run.states.slice(-2), ["sent", "committed"]);
          landed.stdin.end("go\n");
          assert.deepEqual(await landed.proc.exited, { kind: "exit", code: EXIT_INTACT });
          assert.equal(landed.out(), "ok\n");
        } finally {
          await landed.proc.terminate();
          // The source's copy is stopped, never resumed: its node drops it once committed.
          await run.proc.terminate();
        }
      });
    }
  }

  for (const strategy of ["stop-copy", "pre-copy"] as const) {
    it(`${strategy}, the connect fails (connecting): aborted, the process runs at the source, intact`, async () => {
      const run = await faulted(strategy, "aborted", "the step fails", { connect_fails: true });
      assert.deepEqual(run.states, ["aborted"]);
      await abortedAtSource(run);
    });

    it(`${strategy}, the destination refuses after the whole image (its restore fails): no question asked, it resumes at the source, intact`, async () => {
      let asked = 0;
      const run = await faulted(strategy, "aborted", "the step fails", {
        restore_fails: true,
        ask: (truth) => {
          asked += 1;
          return truth();
        },
      });
      assert.equal(run.states.at(-2), "sent");
      assert.equal(asked, 0, "a refusal is an answer: nothing to ask");
      await abortedAtSource(run);
    });

    it(`${strategy}, the link breaks with the image out and the first questions fail: asked again until answered, it runs at the destination only`, async () => {
      let asked = 0;
      const run = await faulted(strategy, "sent", "the link breaks", {
        ask: async (truth) => {
          asked += 1;
          if (asked <= 2) throw new FerryError("ERR_PEER_UNREACHABLE", "injected: the question is lost");
          return truth();
        },
      });
      const landed = run.landed;
      try {
        assert.equal(asked, 3);
        if (landed === null) {
          // The break took the image's end with it: the destination never ran it, and said so on the third question.
          await abortedAtSource(run);
          return;
        }
        assert.equal(run.out.status, "fulfilled", "the source resumed its copy while the destination runs one");
        assert.deepEqual(run.states.slice(-2), ["sent", "committed"]);
        landed.stdin.end("go\n");
        assert.deepEqual(await landed.proc.exited, { kind: "exit", code: EXIT_INTACT });
        assert.equal(landed.out(), "ok\n");
      } finally {
        await landed?.proc.terminate();
        if (landed !== null) await run.proc.terminate();
      }
    });

    it(`${strategy}, the destination's restore fails and no question gets an answer: asked ${DESTINATION_ASKS} times, then it resumes at the source, intact`, async () => {
      let asked = 0;
      const run = await faulted(strategy, "sent", "the link breaks", {
        restore_fails: true,
        ask: async () => {
          asked += 1;
          throw new FerryError("ERR_PEER_UNREACHABLE", "injected: the question is lost");
        },
      });
      assert.equal(asked, DESTINATION_ASKS);
      await abortedAtSource(run);
    });
  }

  it("without faults the states go in order, from offered to committed", async () => {
    const run = await faulted("pre-copy", "aborted", "the step fails");
    assert.equal(run.out.status, "fulfilled");
    assert.deepEqual(run.states, OUT_STATES.filter((s) => s !== "connecting" && s !== "aborted"));
    await run.landed?.proc.terminate();
    await run.proc.terminate();
  });

  it("a process that ends on its own while the destination prepares: ERR_PROCESS_ENDED, it ended at the source as it would have, nothing runs there", async () => {
    const signer = { key: generateKeyPairSync("ed25519").privateKey };
    const s = io();
    const proc = await GuestProcess.start({ wasm: GUEST, module_path: "guest.wasm", args: ["guest"], env: [], preopens: [] }, s.io);
    const [a, b] = pipeDuplexPair();
    const dest = destination(trustKeys([signer.key]), GUEST);
    const prepare = dest.side.prepare.bind(dest.side);
    // The destination is slow to prepare; meanwhile the process reads its line and exits.
    dest.side.prepare = async (offer, clock) => {
      s.stdin.end("go\n");
      await proc.exited;
      return prepare(offer, clock);
    };
    const incoming = migrateIn(new FramedConnection(b), dest.side);
    const [out, inn] = await Promise.allSettled([migrateOut(source(proc, "pre-copy", signer, () => new FramedConnection(a)), { strategy: "pre-copy" }), incoming]);
    assert.equal(out.status, "rejected");
    if (out.status === "rejected") {
      assert.ok(out.reason instanceof FerryError);
      assert.equal(out.reason.code, "ERR_PROCESS_ENDED");
      assert.match(out.reason.message, /exited with status 7/);
      assert.doesNotMatch(out.reason.message, /keeps running/);
    }
    assert.equal(inn.status, "rejected", "the destination did not give up");
    assert.equal(dest.landed(), null);
    assert.deepEqual(await proc.exited, { kind: "exit", code: EXIT_INTACT });
    assert.equal(s.out(), "ok\n");
  });
});

describe("hybrid's look before the stop", () => {
  const availability = kernelTrackerAvailability();
  it("says the guest wrote most of its memory from the kernel tracker's runs, and leaves them for the look at the stop", { skip: !availability.available && availability.reason }, () => {
    // One memory each: the kernel registers a range with one tracker at a time.
    const views = [0, 1].map(() => new Uint8Array(new WebAssembly.Memory({ initial: 2, maximum: 65536, shared: true }).buffer));
    const [a, b] = views as [Uint8Array, Uint8Array];
    const pages = a.length / TRACK_PAGE_BYTES;
    const write = (view: Uint8Array, to: number): void => {
      for (let p = 0; p < to; p += 1) view[p * TRACK_PAGE_BYTES] = 7;
    };
    const few = new KernelTracker();
    const most = new KernelTracker();
    try {
      few.arm?.(a);
      most.arm?.(b);
      write(a, pages / 4);
      write(b, pages / 2 + 1);
      assert.equal(dirtyMostly(few, a), false, "a quarter written");
      assert.equal(dirtyMostly(most, b), true, "more than half written");
      // The look re-armed nothing: the stop's look still finds every page written since the round.
      assert.deepEqual([...few.changedRuns(a, { last: true })], [0, pages / 4]);
      assert.deepEqual([...most.changedRuns(b, { last: true })], [0, pages / 2 + 1]);
    } finally {
      few.close();
      most.close();
    }
  });

  it("never says so from a tracker that would have to read every page to know", () => {
    const memory = new Uint8Array(4 * TRACK_PAGE_BYTES).fill(1);
    const t = new ShadowTracker();
    [...t.changed(memory)];
    memory.fill(2);
    assert.equal(dirtyMostly(t, memory), false);
  });
});

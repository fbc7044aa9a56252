import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { RemotePages, remotePagesAvailability } from "./mod.js";

const availability = remotePagesAvailability();
const skip = !availability.available && `userfaultfd is unavailable here: ${availability.reason}`;
if (skip !== false) console.log(`# skipping remote-page tests: ${skip}`);

interface ProbeReport {
  sum?: number;
  lost?: number;
  expected: number;
  downs: number;
  completed: boolean;
  tampered: number;
  stats: { chunks: number; present: number; faults: number; demand_chunks: number; pushed_chunks: number; zero_chunks: number; attaches: number; preempt_chunks: number };
  server: { connections: number; zero_chunks: number; bytes_out: number; preempt_chunks: number };
}

/** Runs the probe in its own process, killed if it hangs: a thread waiting on a page that never comes never returns. */
function probe(mode: string): ProbeReport {
  const file = path.join(path.dirname(fileURLToPath(import.meta.url)), "_remote_probe.js");
  const r = spawnSync(process.execPath, [file, mode], { encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, `probe ${mode} failed or hung: ${r.stderr}`);
  return JSON.parse(r.stdout) as ProbeReport;
}

describe("remote pages (post-copy)", { skip }, () => {
  it("a thread reading memory whose pages are all at the source gets every byte, zero runs included", () => {
    const out = probe("serve");
    assert.equal(out.sum, out.expected, "bytes differ after being served");
    assert.equal(out.completed, true);
    assert.equal(out.stats.present, out.stats.chunks);
    assert.ok(out.stats.zero_chunks > 0, "zero chunks should travel as ranges");
  });

  it("a session opened before its size is known, over memory written here, serves the source's bytes for every dropped page, never the old ones", () => {
    const out = probe("prepared");
    assert.equal(out.sum, out.expected, "a dropped page kept the bytes that were here, or arrived wrong");
    assert.equal(out.completed, true);
    assert.equal(out.stats.present, out.stats.chunks);
    assert.equal(out.stats.chunks, 256);
  });

  it("a few pages written here before the drop (a post-copy standby's) read as the source's once dropped", () => {
    const out = probe("sparse");
    assert.equal(out.sum, out.expected, "a dropped page kept the bytes that were here, or arrived wrong");
    assert.equal(out.completed, true);
    assert.equal(out.stats.present, out.stats.chunks);
  });

  it("with a demand channel beside the page channel, faults are asked for and answered there, and every byte arrives", () => {
    const out = probe("demand");
    assert.equal(out.sum, out.expected);
    assert.equal(out.completed, true);
    assert.ok(out.stats.preempt_chunks > 0, `no chunk came on the demand channel: ${JSON.stringify(out.stats)}`);
    assert.equal(out.server.preempt_chunks, out.stats.preempt_chunks, "the source answered on the demand channel what the threads placed from it");
  });

  it("a demand channel cut mid-transfer costs no page: what it owed is asked for again on the page channel", () => {
    const out = probe("demand-cut");
    assert.equal(out.sum, out.expected);
    assert.equal(out.completed, true);
    assert.equal(out.downs, 0, "losing the demand channel is not the page channel going down");
  });

  it("a link cut mid-transfer is recovered by attaching a new socket, with nothing lost", () => {
    const out = probe("recover");
    assert.equal(out.sum, out.expected);
    assert.equal(out.completed, true);
    assert.ok(out.downs >= 1 && out.stats.attaches >= 2, `the link should have broken and been reattached: ${JSON.stringify(out)}`);
  });

  for (const [mode, how] of [
    ["sealed", "natively"],
    ["sealed-js", "in JavaScript"],
  ] as const) {
    it(`sealed records both ways: the source seals ${how} and the threads open, the threads seal and the source opens`, () => {
      const out = probe(mode);
      assert.equal(out.sum, out.expected, "bytes differ after being served sealed");
      assert.equal(out.completed, true, "DONE, sealed by the threads, should have reached the source");
      assert.equal(out.stats.present, out.stats.chunks);
      assert.equal(out.stats.attaches, 1);
    });
  }

  it("records sealed under a key the threads were not given drop the link, none of it is placed, and the next connection finishes intact", () => {
    const out = probe("wrong-key");
    assert.equal(out.sum, out.expected, "a chunk sealed under the wrong key was placed");
    assert.equal(out.completed, true);
    assert.ok(out.downs >= 1 && out.stats.attaches >= 2, `the link under the wrong key should have been dropped and another attached: ${JSON.stringify(out)}`);
  });

  it("a record with one bit flipped drops the link, none of it is placed, and the next connection (new keys) finishes intact", () => {
    const out = probe("tampered");
    assert.equal(out.tampered, 1, "the probe should have flipped one bit");
    assert.equal(out.sum, out.expected, "a chunk from the tampered record was placed");
    assert.equal(out.completed, true);
    assert.ok(out.downs >= 1 && out.stats.attaches >= 2, `the tampered link should have been dropped and another attached: ${JSON.stringify(out)}`);
  });

  it("pages written into a registered memory before the handover are placed whole, over fresh pages and pages already there, and nothing else changes", () => {
    const memory = new WebAssembly.Memory({ initial: 64, maximum: 1024, shared: true });
    const view = new Uint8Array(memory.buffer);
    // A page already there, as the session's thread maps a chunk of zero pages at a touch, or as a second round rewrites one.
    view[3 * 4096 + 9] = 0x5a;
    const pages = new RemotePages(view, 0, { down: () => undefined, complete: () => undefined });
    try {
      const data = new Uint8Array(5 * 4096);
      for (let i = 0; i < data.length; i += 1) data[i] = (i * 31 + 7) & 0xff;
      // Pages 1-5: fresh, then the one written above, then fresh again; and the memory's last page alone.
      pages.write(view, 4096, data);
      pages.write(view, view.length - 4096, data.subarray(0, 4096));
      assert.deepEqual(view.subarray(4096, 6 * 4096), data);
      assert.deepEqual(view.subarray(view.length - 4096), data.subarray(0, 4096));
      // The neighbours read as zero (a fresh page's first touch maps zeros), the memory's size is as it was.
      assert.ok(view.subarray(0, 4096).every((b) => b === 0));
      assert.ok(view.subarray(6 * 4096, 7 * 4096).every((b) => b === 0));
      assert.equal(memory.buffer.byteLength, 64 * 65536);
      // Unaligned, partial pages, before the memory, past its end (inside the reservation, which is not accessible until the memory grows), another view.
      for (const [target, at, bytes] of [[view, 100, 4096], [view, 4096, 100], [view, -4096, 4096], [view, view.length, 4096], [view.subarray(4096), 0, 4096]] as const) {
        assert.throws(() => pages.write(target, at, new Uint8Array(bytes)), (err: Error & { code?: string }) => err.code === "ERR_UFFD_ARGS", `write at ${at} of ${bytes}`);
      }
    } finally {
      pages.close();
    }
  });

  it("failing a session wakes a thread waiting on a page that never comes, and names what was lost", () => {
    const out = probe("fail");
    assert.equal(out.completed, false);
    assert.equal(out.lost, out.stats.chunks * 65536, "every chunk was lost");
    assert.ok(out.stats.faults >= 1, "the reader should have been waiting on a fault");
  });
});

/**
 * The ferry command's contract: help on every command, usage errors, the
 * program's exit status, and images that fail a check restore nothing.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { EXAMPLES, ferry, ROOT, tempDir } from "./_helpers.js";

const compute = path.join(EXAMPLES, "c", "compute.wasm");
const fileproc = path.join(EXAMPLES, "c", "fileproc.wasm");

describe("ferry CLI", () => {
  let dir = "";
  let image = "";
  before(async () => {
    dir = tempDir("cli");
    image = path.join(dir, "compute.img");
    const r = await ferry(["exec", "--suspend-after", "150", "--image", image, compute, "200"]);
    assert.equal(r.status, 0, r.stderr.toString());
    assert.ok(fs.existsSync(image), "no image written");
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const args of [["--help"], ["exec", "--help"], ["resume", "--help"], ["exec", "-h"], ["sim", "--help"], ["sim", "-h"]]) {
    it(`ferry ${args.join(" ")} prints usage and exits 0`, async () => {
      const r = await ferry(args);
      assert.equal(r.status, 0);
      assert.match(r.stdout.toString(), /^Usage: ferry/);
    });
  }

  it("usage errors exit 2 and say what is wrong", async () => {
    const cases: [string[], RegExp][] = [
      [["frobnicate"], /unknown command/],
      [["exec"], /missing PROGRAM/],
      [["exec", "--suspend-after", "10", compute], /--suspend-after and --image go together/],
      [["exec", "--suspend-after", "soon", "--image", "x", compute], /whole number/],
      [["exec", "--dir", "/no/such/dir", compute], /no such directory/],
      [["exec", "--env", "NOEQUALS", compute], /want K=V/],
      [["exec", "--bogus", compute], /unknown option --bogus/],
      [["resume"], /exactly one IMAGE/],
      [["sim", "--policy", "fastest"], /--policy is balance, pack or none/],
      [["sim", "--speed", "2:1"], /--speed wants MIN:MAX/],
      [["sim", "--nodes", "4", "--drain", "7"], /there are only 4 nodes/],
      [["sim", "--hot-share", "0"], /--hot-share wants a number/],
      [["sim", "extra"], /unexpected argument/],
      [["sim", "--nodes", "4", "--partitions", "5"], /partitions must be 1\.\.16, and at most the nodes/],
      [["sim", "--sync-ms", "0"], /--sync-ms wants a number/],
      [["node", "start", "--name", "n1", "--insecure", "--link-lanes", "maybe"], /--link-lanes is on or off/],
      [["up", "--link-lanes", "maybe"], /--link-lanes is on or off/],
    ];
    for (const [args, message] of cases) {
      const r = await ferry(args);
      assert.equal(r.status, 2, `ferry ${args.join(" ")}`);
      assert.match(r.stderr.toString(), message);
    }
  });

  it("ferry sim prints the figures of a seeded run as JSON, the same for the same seed", async () => {
    const args = ["sim", "--nodes", "6", "--processes", "120", "--seed", "3", "--drain", "2", "--drain-at-s", "1"];
    const [a, b] = await Promise.all([ferry(args), ferry(args)]);
    assert.equal(a.status, 0, a.stderr.toString());
    const r = JSON.parse(a.stdout.toString()) as { completed: number; policy: string; invariant_violations: number; wall_ms: number; drain_empty_at_s: number | null };
    assert.equal(r.completed, 120);
    assert.equal(r.policy, "balance");
    assert.equal(r.invariant_violations, 0);
    assert.notEqual(r.drain_empty_at_s, null);
    assert.deepEqual({ ...r, wall_ms: 0 }, { ...(JSON.parse(b.stdout.toString()) as object), wall_ms: 0 });
  });

  it("ferry sim --partitions 2 runs the nodes in two parts on two threads, the same for the same seed", async () => {
    const args = ["sim", "--nodes", "20", "--processes", "400", "--seed", "3", "--partitions", "2", "--sync-ms", "100"];
    const [a, b] = await Promise.all([ferry(args), ferry(args)]);
    assert.equal(a.status, 0, a.stderr.toString());
    const r = JSON.parse(a.stdout.toString()) as { completed: number; invariant_violations: number; wall_ms: number };
    assert.equal(r.completed, 400);
    assert.equal(r.invariant_violations, 0);
    assert.deepEqual({ ...r, wall_ms: 0 }, { ...(JSON.parse(b.stdout.toString()) as object), wall_ms: 0 });
  });

  it("runs the bundle the build made, and the modules when one that went into it is newer or it is missing", async () => {
    const { cliEntry } = (await import(pathToFileURL(path.join(ROOT, "bin", "_entry.js")).href)) as { cliEntry: (dist?: URL) => URL };
    assert.equal(path.basename(cliEntry().pathname), "ferry_cli.js", "dist/src/ferry_cli.js is missing or older than a module in it: run npm run build");
    // The same rule over a directory of its own: a bundle, its manifest and one module.
    const dist = tempDir("cli-entry");
    const url = pathToFileURL(dist + "/");
    try {
      const at = (file: string, s: number): void => {
        fs.writeFileSync(path.join(dist, file), "");
        fs.utimesSync(path.join(dist, file), s, s);
      };
      const entry = (): string => path.relative(dist, cliEntry(url).pathname);
      assert.equal(entry(), "cli/main.js", "no bundle");
      fs.mkdirSync(path.join(dist, "cli"));
      at("cli/main.js", 1000);
      at("ferry_cli.js", 2000);
      assert.equal(entry(), "cli/main.js", "no manifest");
      fs.writeFileSync(path.join(dist, "ferry_cli.inputs.json"), JSON.stringify({ inputs: ["cli/main.js"] }));
      assert.equal(entry(), "ferry_cli.js", "the bundle is newer than its input");
      at("cli/main.js", 3000);
      assert.equal(entry(), "cli/main.js", "an input is newer than the bundle");
      fs.writeFileSync(path.join(dist, "ferry_cli.inputs.json"), JSON.stringify({ inputs: ["cli/gone.js"] }));
      assert.equal(entry(), "cli/main.js", "an input is gone");
    } finally {
      fs.rmSync(dist, { recursive: true, force: true });
    }
  });

  it("arguments after the program belong to the program", async () => {
    const r = await ferry(["exec", compute, "1", "--help"]);
    // compute rejects a third argument it does not know: its own usage, its own status.
    assert.notEqual(r.stdout.toString().slice(0, 6), "Usage:");
  });

  it("the program's exit status is ferry's", async () => {
    const r = await ferry(["exec", compute, "1", "7"]);
    assert.equal(r.status, 7);
  });

  it("a module that is not WebAssembly is refused with a code", async () => {
    const bogus = path.join(dir, "bogus.wasm");
    fs.writeFileSync(bogus, "not wasm at all");
    const r = await ferry(["exec", bogus]);
    assert.equal(r.status, 125);
    assert.match(r.stderr.toString(), /ERR_INSTRUMENT_INVALID/);
  });

  const damaged: [string, (b: Buffer) => Buffer, string][] = [
    ["a corrupted image", (b) => flip(b, Math.floor(b.length / 2)), "ERR_IMAGE_CHECKSUM"],
    ["a truncated image", (b) => b.subarray(0, b.length - 100), "ERR_IMAGE_TRUNCATED"],
    ["an image of a foreign version", (b) => withVersion(b, 99), "ERR_IMAGE_VERSION"],
    ["a file that is no image", () => Buffer.from("hello, I am not an image"), "ERR_IMAGE_MAGIC"],
  ];
  for (const [what, damage, code] of damaged) {
    it(`${what} is rejected with ${code} and nothing runs`, async () => {
      const bad = path.join(dir, `${code}.img`);
      fs.writeFileSync(bad, damage(fs.readFileSync(image)));
      const r = await ferry(["resume", bad]);
      assert.equal(r.status, 125);
      assert.match(r.stderr.toString(), new RegExp(code));
      assert.equal(r.stdout.length, 0, "the program ran");
    });
  }

  it("an image resumed with another module is rejected with ERR_IMAGE_MODULE_MISMATCH", async () => {
    const r = await ferry(["resume", "--module", fileproc, image]);
    assert.equal(r.status, 125);
    assert.match(r.stderr.toString(), /ERR_IMAGE_MODULE_MISMATCH/);
    assert.equal(r.stdout.length, 0);
  });

  it("an image whose open file is gone is rejected with ERR_RESTORE_FILE and writes nothing", async () => {
    const data = tempDir("cli-files");
    try {
      fs.writeFileSync(path.join(data, "in.bin"), Buffer.alloc(4 * 1024 * 1024, 7));
      const img = path.join(data, "..", `${path.basename(data)}.img`);
      const r = await ferry(["exec", "--suspend-after", "200", "--image", img, "--dir", `${data}:/data`, fileproc, "/data/in.bin", "/data/out.bin"]);
      assert.equal(r.status, 0, r.stderr.toString());
      assert.ok(fs.existsSync(img), "fileproc finished before it could be suspended");
      const before = fs.readFileSync(path.join(data, "out.bin"));
      fs.rmSync(path.join(data, "in.bin"));
      const resumed = await ferry(["resume", "--dir", `${data}:/data`, img]);
      fs.rmSync(img, { force: true });
      assert.equal(resumed.status, 125);
      assert.match(resumed.stderr.toString(), /ERR_RESTORE_FILE/);
      assert.match(resumed.stderr.toString(), /in\.bin/);
      assert.equal(resumed.stdout.length, 0);
      assert.ok(fs.readFileSync(path.join(data, "out.bin")).equals(before), "output file changed");
    } finally {
      fs.rmSync(data, { recursive: true, force: true });
    }
  });
});

function flip(bytes: Buffer, at: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] = (copy[at] as number) ^ 0x5a;
  return copy;
}

function withVersion(bytes: Buffer, version: number): Buffer {
  const copy = Buffer.from(bytes);
  // docs/image-format.md: the version is the u32 right after the 8-byte magic.
  copy.writeUInt32LE(version, 8);
  return copy;
}

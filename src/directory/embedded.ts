/**
 * The embedded directory: the in-memory one kept in a file, for `ferry up`
 * and a single machine, with no extra service. It lives in the `ferry up`
 * supervisor, which outlives its nodes, and is served to them by `serve.ts`.
 *
 * The file is rewritten whole and atomically after every change (temporary
 * file, fsync, rename, directory fsync), so a crash leaves the old state or
 * the new one. Leases are not kept: after a restart every member is dead
 * until it takes a new lease, which is what they are (the supervisor's nodes
 * stop with it).
 */
import fs from "node:fs";
import * as v from "valibot";
import { replaceFileDurably } from "../durable_file.js";
import { FerryError } from "../errors.js";
import { list } from "../validate.js";
import { MemoryDirectory, type MemorySnapshot } from "./memory.js";
import { MemberSchema, ProcessRecordSchema } from "./types.js";

/** Version of the file's layout; another is refused, never guessed at. */
export const DIRECTORY_FILE_VERSION = 1;

/** Largest file read: millions of records fit; more is not this file. */
const FILE_BYTES_MAX = 1024 * 1024 * 1024;

const FileSchema = v.object({
  version: v.literal(DIRECTORY_FILE_VERSION),
  processes: list(ProcessRecordSchema, 10_000_000),
  members: list(MemberSchema, 100_000),
});

/** Opens (or starts) the embedded directory kept in `file`; ERR_DIRECTORY_FILE if it is damaged. */
export function openEmbeddedDirectory(file: string): MemoryDirectory {
  const snapshot = load(file);
  return new MemoryDirectory({ kind: "embedded", ...(snapshot !== null ? { snapshot } : {}), persist: (s) => save(file, s) });
}

function load(file: string): MemorySnapshot | null {
  let text: string;
  try {
    const size = fs.statSync(file).size;
    if (size > FILE_BYTES_MAX) throw new Error(`it is ${size} bytes, more than a directory file can be`);
    text = fs.readFileSync(file, "utf8");
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw damaged(file, err instanceof Error ? err.message : String(err), err);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err: unknown) {
    throw damaged(file, "it is not JSON (cut short or overwritten)", err);
  }
  const result = v.safeParse(FileSchema, value);
  if (!result.success) throw damaged(file, `it does not have the layout of version ${DIRECTORY_FILE_VERSION}`);
  return { processes: result.output.processes, members: result.output.members };
}

function save(file: string, snapshot: MemorySnapshot): void {
  replaceFileDurably(file, JSON.stringify({ version: DIRECTORY_FILE_VERSION, ...snapshot }));
}

function damaged(file: string, why: string, cause?: unknown): FerryError {
  return new FerryError("ERR_DIRECTORY_FILE", `the directory file ${file} cannot be used: ${why}. Restore it from a backup, or move it away to start with an empty directory`, cause === undefined ? undefined : { cause });
}

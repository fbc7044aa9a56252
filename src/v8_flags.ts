/**
 * V8 flags set while a process runs (`v8.setFlagsFromString`), kept so that
 * what depends on them can say so: a V8 code cache made under other flags is
 * rejected, so its file is named after them too (`instrument/_load.ts`).
 * They are kept in the environment because a worker thread has modules of
 * its own but the process's flags, and starts with a copy of its creator's
 * environment.
 */
import v8 from "node:v8";

const ENV = "FERRY_V8_FLAGS_SET";

/** Sets `flags` for this process and its workers from now on, and records them. */
export function setV8Flags(...flags: string[]): void {
  const bad = flags.find((flag) => /\s/.test(flag) || !flag.startsWith("--"));
  if (bad !== undefined) throw new RangeError(`not one V8 flag: ${JSON.stringify(bad)}`);
  for (const flag of flags) v8.setFlagsFromString(flag);
  process.env[ENV] = [...v8FlagsSet(), ...flags].join(" ");
}

/** The flags set by {@link setV8Flags} so far, in order: in this thread, or before the thread was made. */
export function v8FlagsSet(): readonly string[] {
  return (process.env[ENV] ?? "").split(" ").filter((f) => f !== "");
}

/** This process's environment for a child process, which has its own flags: without the record of this one's. */
export function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env[ENV];
  return env;
}

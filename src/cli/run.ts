/**
 * `ferry exec` and `ferry resume`: run a process locally, optionally suspend
 * it after some time into an image (signed with the local key, encrypted on
 * request), and exit with the program's status.
 */
import fs from "node:fs";
import path from "node:path";
import { FerryError, RestoreError } from "../errors.js";
import { ferryHome } from "../home.js";
import {
  GuestProcess,
  claimWarm,
  hostStdioKinds,
  localEncryptionKey,
  localEnvelopeKeys,
  localSigner,
  localTrust,
  readImageFile,
  readModuleFile,
  writeImageFile,
  type ExitStatus,
  type ProcessIo,
  type WriteImageOptions,
} from "../runtime/mod.js";
import { match_preopens, parse_wasi_state, type PreopenMatch, type Preopen } from "../wasi/mod.js";
import { optionInt, optionValue, parseArgs, UsageError, type OptionSpec, type Parsed } from "./_args.js";
import { stageText, startProgress, type Progress } from "./_progress.js";

/** Exit status when the guest traps, as a shell reports an abort (128 + SIGABRT). */
export const EXIT_TRAP = 134;

const SUSPEND_OPTIONS: OptionSpec[] = [
  { name: "suspend-after", value: true },
  { name: "image", value: true },
  { name: "encrypt", value: false },
  { name: "help", value: false, short: "h" },
];

/** Where the keys are, for the help texts. */
const KEYS_NOTE = `Images are signed with a key made on first use in $FERRY_HOME/keys (default
~/.ferry/keys); resume accepts only images signed with that key.`;

/** Help of `ferry exec`. */
export const EXEC_HELP = `Usage: ferry exec [OPTIONS] PROGRAM.wasm [ARGS...]

Runs a WASI preview1 program locally. Its stdout, stderr and exit status are
the program's.

Options:
  --dir HOST[:GUEST]     Give the program the host directory HOST, seen as GUEST
                         (default: the same path). Repeatable.
  --env K=V              Set an environment variable for the program. Repeatable.
  --suspend-after MS     Suspend the program at its first safe point after MS
                         milliseconds of running, write its image and exit 0.
                         If the program ends first, nothing is written.
  --image FILE           Where to write the image (required with --suspend-after).
  --encrypt              Encrypt the image (AES-256-GCM) with a local key made on
                         first use; only this user on this machine can resume it.
  -h, --help             Show this help.

Continue a suspended program with: ferry resume [--dir HOST:GUEST...] FILE
${KEYS_NOTE}
`;

/** Help of `ferry resume`. */
export const RESUME_HELP = `Usage: ferry resume [OPTIONS] IMAGE

Continues a suspended program from its image in this process, as if it had
never stopped: its output continues where it left off and its exit status is
the program's.

Options:
  --dir HOST[:GUEST]     Give the program the host directory HOST for its
                         directory GUEST (default: the same path). Repeatable.
                         Every directory the program had must be given again,
                         matched by GUEST: the host paths an image records are
                         never reused, so an image cannot grant itself a
                         directory. Its files are reopened inside these.
  --module PATH          The program's .wasm (default: the path recorded in the
                         image). Must be the very module the image was taken from.
  --suspend-after MS     Suspend again after MS milliseconds of running.
  --image FILE           Where to write the new image (required with --suspend-after).
  --encrypt              Encrypt the new image (an encrypted IMAGE is recognised
                         and opened with the local key, whatever this says).
  -h, --help             Show this help.

${KEYS_NOTE}
`;

/** When to suspend, where to write the image, and the keys it is written with. */
interface SuspendPlan {
  after_ms: number;
  image: string;
  write: WriteImageOptions;
}

/**
 * The suspend options, and the keys (created now if they are new): a key
 * that cannot be made fails before the program runs, not after its state
 * was captured with nowhere to go.
 */
function suspendPlan(parsed: Parsed): SuspendPlan | null {
  const after_ms = optionInt(parsed, "suspend-after");
  const image = optionValue(parsed, "image");
  const encrypt = parsed.flags.has("encrypt");
  if (after_ms === undefined && image === undefined) {
    if (encrypt) throw new UsageError("--encrypt goes with --suspend-after and --image");
    return null;
  }
  if (after_ms === undefined || image === undefined) throw new UsageError("--suspend-after and --image go together");
  const home = ferryHome();
  const write: WriteImageOptions = { signer: localSigner(home), ...(encrypt ? { encrypt: localEncryptionKey(home) } : {}) };
  return { after_ms, image, write };
}

function preopen(spec: string): Preopen {
  // HOST[:GUEST]; a Windows-style drive letter is not a concern on our hosts.
  const colon = spec.indexOf(":");
  const host = colon >= 0 ? spec.slice(0, colon) : spec;
  const guest = colon >= 0 ? spec.slice(colon + 1) : spec;
  if (host === "" || guest === "") throw new UsageError(`--dir ${JSON.stringify(spec)}: want HOST[:GUEST]`);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(host);
  } catch {
    // stat's own error says less than this to someone at the command line.
    throw new UsageError(`--dir ${host}: no such directory`);
  }
  if (!stat.isDirectory()) throw new UsageError(`--dir ${host}: not a directory`);
  return { host_path: path.resolve(host), guest_path: guest };
}

/** Progress on stderr (a terminal only) while a module is instrumented; a cache hit shows nothing. */
function instrumentProgress(file: string, wasm: Uint8Array): Progress {
  return startProgress(process.stderr, `instrumenting ${path.basename(file)} (${(wasm.byteLength / 1e6).toFixed(1)} MB)`);
}

/**
 * How this command instruments its one module when it is not cached: in a
 * process of its own, whose V8 is set for a single instrumentation (see
 * `src/instrument/_process.ts`), with progress on the terminal.
 */
function instrumentOnce(progress: Progress): Pick<ProcessIo, "on_instrument_stage" | "instrument_thread"> {
  return { on_instrument_stage: (stage) => progress.step(stageText(stage)), instrument_thread: "process" };
}

function stdio(): ProcessIo {
  return { stdin: process.stdin, stdout: { kind: "fd", fd: 1 }, stderr: { kind: "fd", fd: 2 } };
}

/** `ferry exec`. Returns the exit status for the CLI. */
export async function execCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(
    argv,
    [{ name: "dir", value: true, multiple: true }, { name: "env", value: true, multiple: true }, ...SUSPEND_OPTIONS],
    true,
  );
  if (parsed.flags.has("help")) {
    process.stdout.write(EXEC_HELP);
    return 0;
  }
  const [program, ...args] = parsed.positionals;
  if (program === undefined) throw new UsageError("missing PROGRAM.wasm (see ferry exec --help)");
  const plan = suspendPlan(parsed);
  const env = parsed.options.get("env") ?? [];
  for (const e of env) if (!e.includes("=")) throw new UsageError(`--env ${JSON.stringify(e)}: want K=V`);
  const preopens = (parsed.options.get("dir") ?? []).map(preopen);
  const wasm = readModule(program);
  const progress = instrumentProgress(program, wasm);
  let proc: GuestProcess;
  // Its worker boots while the module is checked, compiled and instrumented if new (a thread and Node in it: 60-100 ms), not after; released once started, so none is kept.
  const booted = claimWarm(1);
  try {
    proc = await GuestProcess.start(
      { wasm, module_path: path.resolve(program), args: [path.basename(program), ...args], env, preopens, stdio: hostStdioKinds() },
      { ...stdio(), ...instrumentOnce(progress) },
    );
  } finally {
    booted();
    progress.end();
  }
  return finish(proc, plan);
}

/** `ferry resume`. Returns the exit status for the CLI. */
export async function resumeCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(argv, [{ name: "module", value: true }, { name: "dir", value: true, multiple: true }, ...SUSPEND_OPTIONS], false);
  if (parsed.flags.has("help")) {
    process.stdout.write(RESUME_HELP);
    return 0;
  }
  if (parsed.positionals.length !== 1) throw new UsageError("want exactly one IMAGE (see ferry resume --help)");
  const plan = suspendPlan(parsed);
  const granted = (parsed.options.get("dir") ?? []).map(preopen);
  const home = ferryHome();
  const file = parsed.positionals[0] as string;
  let image: ReturnType<typeof readImageFile>;
  try {
    image = readImageFile(file, { trust: localTrust(home), keys: localEnvelopeKeys(home) });
  } catch (err: unknown) {
    if (err instanceof FerryError) throw err;
    throw new UsageError(`cannot read image ${file}: ${(err as Error).message}`);
  }
  // Checked here as well as in the restore, to say which --dir to pass.
  const match = match_preopens(parse_wasi_state(image.wasi).preopens, granted);
  if (match.kind === "mismatch") throw new RestoreError("ERR_RESTORE_PREOPEN", grant_hint(match));
  // Signed, so the path is the one the writer recorded; still only a regular file of bounded size is read.
  const module_path = optionValue(parsed, "module") ?? image.meta.module_path;
  const wasm = readModule(module_path);
  const progress = instrumentProgress(module_path, wasm);
  let proc: GuestProcess;
  // Its worker boots while the module is checked, compiled and instrumented if new (a thread and Node in it: 60-100 ms), not after; released once started, so none is kept.
  const booted = claimWarm(1);
  try {
    proc = await GuestProcess.restore(image, wasm, { ...stdio(), ...instrumentOnce(progress) }, { preopens: match.preopens });
  } finally {
    booted();
    progress.end();
  }
  return finish(proc, plan);
}

/** What to pass to `ferry resume` so that the directories match the image's. */
function grant_hint(match: Extract<PreopenMatch, { kind: "mismatch" }>): string {
  const parts = [
    ...match.missing.map(
      (p) => `the image's directory ${p.guest_path} is not granted: pass --dir HOST:${p.guest_path} (it was ${p.host_path} when suspended; a recorded host path is never reused by itself)`,
    ),
    ...match.unused.map((p) => `--dir ${p.host_path}:${p.guest_path}: the image has no directory ${p.guest_path}`),
  ];
  return parts.join("; ");
}

/** The module at `file`: a regular file of bounded size (ModuleFileError otherwise). */
function readModule(file: string): Uint8Array {
  try {
    return readModuleFile(file);
  } catch (err: unknown) {
    if (err instanceof FerryError) throw err;
    throw new UsageError(`cannot read module ${file}: ${(err as Error).message}`);
  }
}

async function finish(proc: GuestProcess, plan: SuspendPlan | null): Promise<number> {
  if (plan !== null) {
    const timer = new Promise<"timer">((resolve) => setTimeout(() => resolve("timer"), plan.after_ms));
    const first = await Promise.race([timer, proc.exited]);
    if (first === "timer") {
      const suspension = await proc.suspend();
      if (suspension !== null) {
        writeImageFile(plan.image, proc.image(suspension), plan.write);
        await proc.terminate();
        return 0;
      }
    }
  }
  return exitCode(await proc.exited);
}

/** Exit status of a killed program (128 + SIGKILL), as a shell reports it. */
export const EXIT_KILLED = 137;

/** Exit status when Ferry lost the process (a failure of Ferry's, not the program's). */
export const EXIT_LOST = 125;

function exitCode(status: ExitStatus): number {
  if (status.kind === "exit") return status.code;
  if (status.kind === "killed") return EXIT_KILLED;
  if (status.kind === "lost") {
    process.stderr.write(`ferry: the process was lost: ${status.message}\n`);
    return EXIT_LOST;
  }
  process.stderr.write(`ferry: the program trapped: ${status.message}\n`);
  return EXIT_TRAP;
}

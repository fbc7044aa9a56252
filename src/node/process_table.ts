/** The processes a node knows: those it is home to or runs. */
import path from "node:path";
import fs from "node:fs";
import { FerryError } from "../errors.js";
import { GuestProcess, type ExitStatus } from "../runtime/mod.js";
import type { Preopen } from "../wasi/mod.js";
import { makePid } from "./names.js";
import type { ModuleStore } from "./module_store.js";
import { OutputLog } from "./output_log.js";

/** How a process ended, as the API reports it. */
export type ProcessStatus = ExitStatus;

/** What a client asks to run. */
export interface RunRequest {
  module_sha256: string;
  module_name: string;
  args: string[];
  env: string[];
  dirs: { host: string; guest: string }[];
}

/** One process as the node keeps it. */
export interface ProcessRecord extends RunRequest {
  pid: string;
  home: string;
  node: string;
  state: "running" | "migrating" | "exited" | "killed" | "failed";
  exit: ProcessStatus | null;
  started_unix_ms: number;
  output: OutputLog;
  done: Promise<ProcessStatus>;
  proc: GuestProcess | null;
}

/** The public view of a record. */
export function describeProcess(r: ProcessRecord): Record<string, unknown> {
  return {
    pid: r.pid,
    home: r.home,
    node: r.node,
    state: r.state,
    module_name: r.module_name,
    module_sha256: r.module_sha256,
    args: r.args,
    exit: r.exit,
    started_unix_ms: r.started_unix_ms,
  };
}

/** Checks a run request's shape; the API's input is untrusted. */
export function parseRunRequest(body: unknown): RunRequest & { node?: string } {
  const b = body as Partial<RunRequest & { node: unknown }> | null;
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === "string");
  if (b === null || typeof b !== "object") throw new FerryError("ERR_BAD_REQUEST", "want a JSON object");
  if (typeof b.module_sha256 !== "string") throw new FerryError("ERR_BAD_REQUEST", "module_sha256 is required");
  const args = b.args ?? [];
  const env = b.env ?? [];
  const dirs = b.dirs ?? [];
  if (!strings(args) || !strings(env)) throw new FerryError("ERR_BAD_REQUEST", "args and env must be arrays of strings");
  if (!Array.isArray(dirs) || !dirs.every((d) => typeof d?.host === "string" && typeof d?.guest === "string")) {
    throw new FerryError("ERR_BAD_REQUEST", "dirs must be [{host, guest}]");
  }
  if (b.node !== undefined && typeof b.node !== "string") throw new FerryError("ERR_BAD_REQUEST", "node must be a name");
  return {
    module_sha256: b.module_sha256,
    module_name: typeof b.module_name === "string" ? b.module_name : "program.wasm",
    args,
    env,
    dirs,
    ...(typeof b.node === "string" ? { node: b.node } : {}),
  };
}

/** The table, and starting and stopping what is in it. */
export class ProcessTable {
  readonly #records = new Map<string, ProcessRecord>();
  readonly #node: string;
  readonly #modules: ModuleStore;
  readonly #output_dir: string;
  #next = 1;

  constructor(node: string, modules: ModuleStore, data_dir: string) {
    this.#node = node;
    this.#modules = modules;
    this.#output_dir = path.join(data_dir, "output");
  }

  /** Every record. */
  list(): ProcessRecord[] {
    return [...this.#records.values()];
  }

  /** One record, or undefined. */
  get(pid: string): ProcessRecord | undefined {
    return this.#records.get(pid);
  }

  /** Starts a process here; this node is its home. */
  async start(request: RunRequest): Promise<ProcessRecord> {
    if (!this.#modules.has(request.module_sha256)) {
      throw new FerryError("ERR_MODULE_MISSING", `module ${request.module_sha256} is not on node ${this.#node}: upload it first`);
    }
    const preopens: Preopen[] = request.dirs.map((d) => {
      if (!path.isAbsolute(d.host) || !fs.existsSync(d.host) || !fs.statSync(d.host).isDirectory()) {
        throw new FerryError("ERR_BAD_REQUEST", `directory ${d.host} does not exist on node ${this.#node}`);
      }
      return { host_path: d.host, guest_path: d.guest };
    });
    const pid = makePid(this.#node, this.#next);
    this.#next += 1;
    const output = new OutputLog(this.#output_dir, pid);
    const wasm = this.#modules.get(request.module_sha256);
    const record: ProcessRecord = {
      ...request,
      pid,
      home: this.#node,
      node: this.#node,
      state: "running",
      exit: null,
      started_unix_ms: Date.now(),
      output,
      proc: null,
      done: Promise.resolve({ kind: "killed" }),
    };
    const proc = await GuestProcess.start(
      { wasm, module_path: request.module_name, args: [request.module_name, ...request.args], env: request.env, preopens },
      {
        stdin: null,
        stdout: { kind: "callback", write: (bytes) => output.append({ stream: "stdout", offset: output.size("stdout"), data: bytes }) },
        stderr: { kind: "callback", write: (bytes) => output.append({ stream: "stderr", offset: output.size("stderr"), data: bytes }) },
      },
    );
    record.proc = proc;
    record.done = proc.exited.then((status) => this.#finish(record, status));
    this.#records.set(pid, record);
    return record;
  }

  #finish(record: ProcessRecord, status: ProcessStatus): ProcessStatus {
    record.exit = status;
    record.state = status.kind === "trap" ? "failed" : status.kind === "killed" ? "killed" : "exited";
    record.proc = null;
    record.output.end();
    return status;
  }

  /** Kills a process running here. */
  async kill(pid: string): Promise<ProcessStatus> {
    const record = this.#records.get(pid);
    if (record === undefined) throw new FerryError("ERR_NO_SUCH_PROCESS", `no process ${pid} on node ${this.#node}`);
    if (record.proc !== null) await record.proc.terminate();
    return record.done;
  }

  /** Kills everything and closes the logs (the node is stopping). */
  async stop(): Promise<void> {
    for (const r of this.#records.values()) {
      if (r.proc !== null) await this.kill(r.pid);
      r.output.close();
    }
  }
}

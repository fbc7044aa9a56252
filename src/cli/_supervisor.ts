/**
 * `ferry up`'s supervisor: each node of a local cluster is its own OS
 * process (a child `ferry node start`), so one node can fail alone, as it
 * would on a machine of its own. The supervisor starts them, relays what
 * they print, says when one ends unexpectedly, and stops them all.
 *
 * It is where the local cluster's shared services live: they need to outlive
 * any one node, and this process does. The embedded cluster directory, with
 * the leases that detect a node's death, is served from here (`ferry up` in
 * node_cmd.ts); the events and the node list below are for such services to
 * subscribe to, rather than logic inside the loop.
 *
 * With `restart_after_ms`, a node that ends unexpectedly once it served is
 * started again on the same flags (so on its data directory, keeping its
 * pids and output) after that delay, and again, with the delay doubled up to
 * RESTART_DELAY_MS_MAX, while it fails to start.
 *
 * Children are started in process groups of their own: a Ctrl-C at the
 * terminal reaches the supervisor only, which then stops each node in order.
 * Each child holds an IPC channel to the supervisor; it says "ready" on it
 * once it listens, and stops itself when the channel closes, so a
 * supervisor killed outright (SIGKILL) leaves no node running.
 */
import { formatLogLine } from "../log/format.js";
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { fileURLToPath } from "node:url";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { NodeName } from "../process_spec.js";
import { integer, text } from "../validate.js";

/** The ferry command the children run (this build's). */
const FERRY_BIN = fileURLToPath(new URL("../../../bin/ferry.js", import.meta.url));

/** How long a node may take to listen: it probes its page tracker and may make its certificate first. */
export const NODE_START_TIMEOUT_MS = 60_000;
/** How long a node may take to stop after SIGTERM before it is killed: it terminates its processes first. */
export const NODE_STOP_GRACE_MS = 10_000;

/** The longest wait between two tries to restart a node that fails to start. */
export const RESTART_DELAY_MS_MAX = 30_000;

/** What a child says on its IPC channel once it listens. */
export const ReadyMessageSchema = v.object({ kind: v.literal("ready"), name: NodeName, address: text(300, 1), os_pid: integer(1, 0x7fff_ffff) });

/** A supervised node. */
export interface SupervisedNode {
  name: string;
  /** Where it listens, once up. */
  address: string;
  /** Its OS process id. */
  os_pid: number;
  state: "starting" | "up" | "exited";
  /** How it ended, once it has. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
}

/** How one node is started: its name and its `ferry node start` flags after `--name NAME`. */
export interface NodeSpec {
  name: string;
  args: readonly string[];
}

/** Events: "exit" (node: SupervisedNode, expected: boolean) once a node's process has ended. */
export class Supervisor extends EventEmitter {
  readonly #children = new Map<string, { node: SupervisedNode; child: ChildProcess; exited: Promise<void> }>();
  readonly #out: (line: string) => void;
  readonly #err: (line: string) => void;
  readonly #restart_after_ms: number | undefined;
  /** Restarts due: cleared by stop(). */
  readonly #restarts = new Set<NodeJS.Timeout>();
  #stopping = false;

  /**
   * `out` and `err` take each line the nodes print, already prefixed where
   * it helps; with `restart_after_ms`, a node that ends unexpectedly is
   * started again after that delay.
   */
  constructor(out: (line: string) => void, err: (line: string) => void, options: { restart_after_ms?: number } = {}) {
    super();
    this.#out = out;
    this.#err = err;
    this.#restart_after_ms = options.restart_after_ms;
  }

  /** The nodes, in the order they were started. */
  nodes(): SupervisedNode[] {
    return [...this.#children.values()].map((c) => ({ ...c.node }));
  }

  /** Starts a node and resolves once it listens; rejects (and leaves nothing running) if it ends or stalls first. */
  async start(spec: NodeSpec): Promise<SupervisedNode> {
    if (this.#stopping) throw new FerryError("ERR_INTERNAL", "the supervisor is stopping");
    const child = spawn(process.execPath, [FERRY_BIN, "node", "start", "--name", spec.name, ...spec.args], {
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      detached: true,
    });
    const node: SupervisedNode = { name: spec.name, address: "", os_pid: child.pid ?? 0, state: "starting", exit: null };
    lines(child.stdout, this.#out);
    // A node's stderr is this pipe, so it logs JSON lines; on a terminal they are shown formatted for people.
    const people = process.stderr.isTTY === true;
    const color = people && process.env["NO_COLOR"] === undefined;
    lines(child.stderr, (line) => this.#err(`[${spec.name}] ${people ? formatLogLine(line, color) : line}`));
    const exited = new Promise<void>((resolve) => {
      child.once("exit", (code, signal) => {
        const expected = this.#stopping;
        // Only a node that served is restarted from here; one that fails to start is retried by #restart.
        const served = node.state === "up";
        node.state = "exited";
        node.exit = { code, signal };
        if (!expected) {
          const how = signal !== null ? `signal ${signal}` : `status ${code}`;
          const next = this.#restart_after_ms === undefined ? "It is not restarted (ferry up --restart would)" : served ? `It is restarted on its data directory in ${this.#restart_after_ms} ms` : "";
          this.#err(`ferry up: node ${spec.name} (os pid ${node.os_pid}) exited unexpectedly (${how}); the other nodes keep serving.${next === "" ? "" : ` ${next}`}`);
          if (served && this.#restart_after_ms !== undefined) this.#restartLater(spec, this.#restart_after_ms);
        }
        this.emit("exit", { ...node }, expected);
        resolve();
      });
    });
    this.#children.set(spec.name, { node, child, exited });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new FerryError("ERR_INTERNAL", `node ${spec.name} did not start listening within ${NODE_START_TIMEOUT_MS / 1000} s`)), NODE_START_TIMEOUT_MS);
      const onMessage = (message: unknown): void => {
        const ready = v.safeParse(ReadyMessageSchema, message);
        if (!ready.success || ready.output.name !== spec.name) return;
        node.address = ready.output.address;
        node.state = "up";
        done();
        resolve();
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        fail(new FerryError("ERR_INTERNAL", `node ${spec.name} ended before it listened (${signal ?? `status ${code}`}); what it printed is above`));
      };
      const done = (): void => {
        clearTimeout(timer);
        child.off("message", onMessage);
        child.off("exit", onExit);
      };
      const fail = (err: FerryError): void => {
        done();
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        reject(err);
      };
      child.on("message", onMessage);
      child.once("exit", onExit);
    });
    return { ...node };
  }

  /** Starts node `spec` again in `delay_ms`, and again (waiting twice as long, up to RESTART_DELAY_MS_MAX) while it fails to start. */
  #restartLater(spec: NodeSpec, delay_ms: number): void {
    const timer = setTimeout(() => {
      this.#restarts.delete(timer);
      if (this.#stopping) return;
      this.start(spec).then(
        (node) => this.#err(`ferry up: node ${spec.name} restarted (os pid ${node.os_pid}), listening on ${node.address}`),
        (err: unknown) => {
          if (this.#stopping) return;
          const next = Math.min(RESTART_DELAY_MS_MAX, Math.max(1000, delay_ms * 2));
          this.#err(`ferry up: node ${spec.name} could not be restarted: ${err instanceof Error ? err.message : String(err)}; trying again in ${next} ms`);
          this.#restartLater(spec, next);
        },
      );
    }, delay_ms);
    this.#restarts.add(timer);
  }

  /** Stops every node still running (SIGTERM, then SIGKILL after NODE_STOP_GRACE_MS) and resolves once all have ended. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const timer of this.#restarts) clearTimeout(timer);
    this.#restarts.clear();
    await Promise.all(
      [...this.#children.values()].map(async ({ child, exited }) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const timer = setTimeout(() => child.kill("SIGKILL"), NODE_STOP_GRACE_MS);
        child.kill("SIGTERM");
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}

/** Calls `each` with every line read from `stream` (a last line without its newline too). */
function lines(stream: NodeJS.ReadableStream | null, each: (line: string) => void): void {
  if (stream === null) return;
  let pending = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    pending += chunk;
    for (let i = pending.indexOf("\n"); i >= 0; i = pending.indexOf("\n")) {
      each(pending.slice(0, i));
      pending = pending.slice(i + 1);
    }
  });
  stream.on("end", () => {
    if (pending !== "") each(pending);
    pending = "";
  });
}

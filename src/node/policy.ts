/**
 * What a node allows its processes: host directories only under the roots
 * its operator named (`--allow-dir`), and listening on privileged ports only
 * when told (`--allow-low-ports`). Applies to processes started here and to
 * processes migrating in (checked against this node's own roots, whatever
 * the source allowed).
 *
 * A path is checked against the roots before anything looks at whether it
 * exists: a client learns nothing of the file system outside the roots.
 */
import fs from "node:fs";
import path from "node:path";
import { FerryError } from "../errors.js";
import { isNormalAbsolutePath, splitHostPort } from "../process_spec.js";
import type { Preopen } from "../wasi/mod.js";

/** Ports below this are privileged (only root may bind them on most systems): a process gets one only if its node allows it. */
export const PRIVILEGED_PORTS_BELOW = 1024;

/** A node's policy. */
export interface NodePolicy {
  /** Roots under which host directories may be given to processes; none: no directories at all. */
  allow_dirs: readonly string[];
  /** Whether processes may listen on ports below 1024. */
  allow_low_ports: boolean;
}

/** A root as the operator named it, and where it really is. */
interface Root {
  given: string;
  real: string;
}

function under(p: string, root: string): boolean {
  return root === "/" || p === root || p.startsWith(`${root}/`);
}

/** The policy, its roots resolved once at start. */
export class Policy {
  readonly #roots: Root[];
  readonly allow_low_ports: boolean;
  readonly #node: string;

  /** Resolves the roots (throws ERR_USAGE when one is not a directory). */
  constructor(node: string, policy: Partial<NodePolicy> = {}) {
    this.#node = node;
    this.allow_low_ports = policy.allow_low_ports ?? false;
    this.#roots = (policy.allow_dirs ?? []).map((dir) => {
      const given = path.resolve(dir);
      let real: string;
      try {
        real = fs.realpathSync(given);
      } catch (err: unknown) {
        throw new FerryError("ERR_USAGE", `allowed directory ${given} cannot be used: ${(err as Error).message}`, { cause: err });
      }
      if (!fs.statSync(real).isDirectory()) throw new FerryError("ERR_USAGE", `allowed directory ${given} is not a directory`);
      return { given, real };
    });
  }

  /** The allowed roots, as the operator named them. */
  get allow_dirs(): string[] {
    return this.#roots.map((r) => r.given);
  }

  /**
   * The preopens of a process given `dirs`: each must lie under an allowed
   * root (as written, and once symlinks are resolved), then exist and be a
   * directory. Throws ERR_FORBIDDEN, then ERR_MISSING_DIRECTORY.
   */
  preopens(dirs: readonly { host: string; guest: string }[]): Preopen[] {
    return dirs.map((d) => {
      this.#checkDir(d.host);
      return { host_path: d.host, guest_path: d.guest };
    });
  }

  /**
   * Files a migrating process has open must lie under the directories it was
   * given (checked as written first, so nothing is looked up outside them),
   * exist, and resolve under an allowed root. Throws ERR_FORBIDDEN or ERR_MISSING_FILE.
   */
  checkOpenFiles(pid: string, files: readonly string[], dirs: readonly { host: string }[]): void {
    for (const file of files) {
      if (!isNormalAbsolutePath(file) || !dirs.some((d) => under(file, d.host))) {
        throw new FerryError("ERR_FORBIDDEN", `file ${file}, open in ${pid}, is not under a directory it was given`);
      }
    }
    for (const file of files) {
      let real: string;
      try {
        real = fs.realpathSync(file);
      } catch (err: unknown) {
        if (!this.#roots.some((r) => under(reach(file), r.real))) throw this.#forbidden(`file ${file}, open in ${pid},`);
        throw new FerryError("ERR_MISSING_FILE", `file ${file}, open in ${pid}, does not exist on node ${this.#node}`, { cause: err });
      }
      if (!this.#roots.some((r) => under(real, r.real))) throw this.#forbidden(`file ${file}, open in ${pid},`);
    }
  }

  /** Throws ERR_FORBIDDEN for a privileged port unless allowed (port 0, any free port, is never privileged). */
  checkListen(addresses: readonly string[]): void {
    if (this.allow_low_ports) return;
    for (const address of addresses) {
      const port = splitHostPort(address)?.port ?? 0;
      if (port > 0 && port < PRIVILEGED_PORTS_BELOW) {
        throw new FerryError("ERR_FORBIDDEN", `node ${this.#node} does not allow listening on port ${port} (below ${PRIVILEGED_PORTS_BELOW}); start it with --allow-low-ports, or pick a port from ${PRIVILEGED_PORTS_BELOW}`);
      }
    }
  }

  #checkDir(host: string): void {
    // As written: outside every root, refused before the file system is asked anything.
    if (!isNormalAbsolutePath(host) || !this.#roots.some((r) => under(host, r.given) || under(host, r.real))) throw this.#forbidden(`directory ${host}`);
    let real: string;
    try {
      real = fs.realpathSync(host);
    } catch (err: unknown) {
      // Missing is only said of a path that, as far as it exists, really leads under a root.
      if (!this.#roots.some((r) => under(reach(host), r.real))) throw this.#forbidden(`directory ${host}`);
      throw new FerryError("ERR_MISSING_DIRECTORY", `directory ${host} does not exist on node ${this.#node}`, { cause: err });
    }
    // A symlink under a root that leads out of every root.
    if (!this.#roots.some((r) => under(real, r.real))) throw this.#forbidden(`directory ${host}`);
    if (!fs.statSync(real).isDirectory()) throw new FerryError("ERR_MISSING_DIRECTORY", `${host} is not a directory on node ${this.#node}`);
  }

  #forbidden(what: string): FerryError {
    const roots = this.#roots.length === 0 ? "none" : this.#roots.map((r) => r.given).join(", ");
    return new FerryError(
      "ERR_FORBIDDEN",
      `${what} is not under a directory node ${this.#node} allows (allowed: ${roots}); start the node with --allow-dir to allow one`,
    );
  }
}

/** Symlinks followed through a path that does not resolve, as the kernel's ELOOP limit. */
const SYMLINK_HOPS_MAX = 40;

/**
 * Where a path that does not resolve leads, as far as it exists: its
 * existing part resolved (symlinks followed, dangling ones too), the
 * missing rest appended. A dangling symlink under a root that points out of
 * every root leads out of them, and must be refused as such, not reported
 * missing (that would say something of the place it points to).
 */
function reach(p: string, hops = 0): string {
  try {
    return fs.realpathSync(p);
  } catch {
    // Does not resolve (missing, dangling, a loop): look at it piece by piece below.
  }
  if (p === "/" || hops > SYMLINK_HOPS_MAX) return p;
  let link: string | null = null;
  try {
    if (fs.lstatSync(p).isSymbolicLink()) link = fs.readlinkSync(p);
  } catch {
    // Not there at all: its parent says where it would be.
  }
  if (link !== null) return reach(path.resolve(path.dirname(p), link), hops + 1);
  return path.join(reach(path.dirname(p), hops), path.basename(p));
}

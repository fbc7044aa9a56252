/** Node names and cluster-wide pids (docs/cluster.md). */
import { FerryError } from "../errors.js";
import { NODE_NAME_PATTERN, PID_PATTERN } from "../process_spec.js";

/** Throws unless `name` is a valid node name. */
export function checkNodeName(name: string): string {
  if (!NODE_NAME_PATTERN.test(name)) throw new FerryError("ERR_NODE_NAME", `bad node name ${JSON.stringify(name)}: use 1-32 letters, digits or _`);
  return name;
}

/** A pid: the home node's name, a dash, a number unique on that node. */
export function makePid(home: string, n: number): string {
  return `${home}-${n}`;
}

/** The home node of a pid, or undefined if it is not a pid. */
export function pidHome(pid: string): string | undefined {
  const m = PID_PATTERN.exec(pid);
  return m?.[1];
}

/** Parses HOST:PORT. */
export function parseAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(":");
  const port = Number(address.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new FerryError("ERR_ADDRESS", `bad address ${JSON.stringify(address)}: want HOST:PORT`);
  }
  return { host: address.slice(0, i), port };
}

/**
 * Machines for the tests out of network namespaces: each name gets a
 * namespace of its own with its own address, joined by veth pairs to a
 * bridge in a hub namespace, all created by the test and removed by
 * `remove()`. Needs root and iproute2 ({@link netnsUnavailable} says why
 * not). Nothing is added to the namespace the tests run in: what runs in
 * the namespaces is reached by running commands there.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { randomBytes } from "node:crypto";
import { FERRY } from "./_helpers.js";

/** Why namespaces cannot be made here, or null. */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return "needs root to create network namespaces";
  try {
    execFileSync("ip", ["netns", "list"], { stdio: "ignore" });
  } catch {
    return "iproute2 (ip netns) is not available";
  }
  return null;
}

/** The namespaces made by {@link makeNet}. */
export interface TestNet {
  /** The namespace of `name`. */
  ns(name: string): string;
  /** The address of `name` (a private /24 only these namespaces know). */
  ip(name: string): string;
  /** Starts `command` inside the namespace of `name`. */
  spawnIn(name: string, command: string, args: readonly string[], options?: SpawnOptions): ChildProcess;
  /** Runs the ferry CLI inside the namespace of `name` to its end. */
  ferryIn(name: string, args: readonly string[]): Promise<{ status: number | null; stdout: string; stderr: string }>;
  /** Resolves once something listens on `address` (HOST:PORT) as seen from the namespace of `name`; throws after `timeout_ms`. */
  listening(name: string, address: string, timeout_ms?: number): Promise<void>;
  /** Removes every namespace made (and so their links). */
  remove(): void;
}

function sh(args: string[]): void {
  execFileSync("ip", args, { stdio: "ignore" });
}

/** Makes a namespace per name, each with an address on one bridge. */
export function makeNet(names: readonly string[]): TestNet {
  const tag = randomBytes(3).toString("hex");
  const hub = `fy-hub-${tag}`;
  const ns = (name: string): string => `fy-${name}-${tag}`;
  const index = (name: string): number => {
    const i = names.indexOf(name);
    if (i < 0) throw new Error(`no namespace for ${name}`);
    return i;
  };
  const ip = (name: string): string => `10.211.${parseInt(tag.slice(0, 2), 16)}.${index(name) + 1}`;
  const made: string[] = [];
  const remove = (): void => {
    for (const n of made.reverse()) {
      try {
        sh(["netns", "del", n]);
      } catch {
        // Already gone.
      }
    }
    made.length = 0;
  };
  try {
    sh(["netns", "add", hub]);
    made.push(hub);
    sh(["-n", hub, "link", "add", "br0", "type", "bridge"]);
    sh(["-n", hub, "link", "set", "br0", "up"]);
    names.forEach((name, i) => {
      sh(["netns", "add", ns(name)]);
      made.push(ns(name));
      sh(["-n", ns(name), "link", "set", "lo", "up"]);
      sh(["link", "add", "eth0", "netns", ns(name), "type", "veth", "peer", "name", `p${i}`, "netns", hub]);
      sh(["-n", ns(name), "addr", "add", `${ip(name)}/24`, "dev", "eth0"]);
      sh(["-n", ns(name), "link", "set", "eth0", "up"]);
      sh(["-n", hub, "link", "set", `p${i}`, "master", "br0"]);
      sh(["-n", hub, "link", "set", `p${i}`, "up"]);
    });
  } catch (err: unknown) {
    remove();
    throw err;
  }
  const spawnIn = (name: string, command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess => spawn("ip", ["netns", "exec", ns(name), command, ...args], options);
  return {
    ns,
    ip,
    spawnIn,
    ferryIn(name, args) {
      return new Promise((resolve, reject) => {
        const child = spawnIn(name, process.execPath, [FERRY, ...args], { stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout?.on("data", (c: Buffer) => (stdout += c.toString()));
        child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
        child.on("error", reject);
        child.on("close", (status) => resolve({ status, stdout, stderr }));
      });
    },
    listening(name, address, timeout_ms = 30_000) {
      const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
      // A connect tried every 50 ms from inside the namespace, by a Node child that ends by itself.
      const probe = `const net=require("node:net");const end=Date.now()+${timeout_ms};(function go(){const s=net.connect(${port},${JSON.stringify(host)});s.on("connect",()=>{s.destroy();process.exit(0)});s.on("error",()=>{if(Date.now()>end)process.exit(1);setTimeout(go,50)})})()`;
      return new Promise((resolve, reject) => {
        const child = spawnIn(name, process.execPath, ["-e", probe], { stdio: "ignore" });
        child.on("error", reject);
        child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`nothing listens on ${address} in ${name}'s namespace after ${timeout_ms} ms`))));
      });
    },
    remove,
  };
}

/**
 * Migrations over a slow link (issue 15, "How it is shown"): two node
 * daemons, each in a network namespace of its own made by this benchmark,
 * joined by one veth pair whose both ends are rate-limited with a token
 * bucket (`tc qdisc ... tbf`). The measuring side runs inside the first
 * namespace (bench/_slowlink_driver.ts), since this process cannot enter one;
 * this side makes the namespaces, hands the driver its set-up, prints what it
 * prints and removes everything after.
 *
 * Needs root, iproute2 and the kernel's tbf; left out, saying why, without
 * them. There is no added delay: `netem` is not built into this kernel, and
 * the figures below are about bandwidth.
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The link's rate, as tc spells it, and in bytes per second for the report. */
const RATE = "100mbit";
/** Bytes the bucket holds: enough for a few full-size segments at this rate, no more (a bigger bucket lets bursts pass at loopback speed). */
const BURST = "64kb";
/** How long a packet may wait in the bucket's queue before it is dropped. */
const QUEUE_LATENCY = "50ms";

/** What the driver needs to know of the namespaces this side made. */
export interface SlowLinkSetup {
  /** Namespace of the second node (the driver runs in the first). */
  ns2: string;
  ip1: string;
  ip2: string;
  rate: string;
  quick: boolean;
}

function ip(args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** Why the benchmark cannot run here, or null. */
function unavailable(): string | null {
  if (process.getuid?.() !== 0) return "needs root to make network namespaces";
  try {
    execFileSync("ip", ["netns", "list"], { stdio: "ignore" });
    execFileSync("tc", ["-V"], { stdio: "ignore" });
  } catch {
    return "iproute2 (ip netns, tc) is not installed";
  }
  return null;
}

/** Runs the slow-link benchmark and prints its table. */
export async function slowLinkBench(quick: boolean): Promise<void> {
  console.log(`\n(s) pre-copy over a slow link: two nodes in network namespaces joined by a veth pair limited to ${RATE} each way (tbf, no added delay)`);
  const why = unavailable();
  if (why !== null) {
    console.log(`left out: ${why}`);
    return;
  }
  const tag = randomBytes(3).toString("hex");
  const ns1 = `fy-sl1-${tag}`;
  const ns2 = `fy-sl2-${tag}`;
  // A private subnet that exists only inside these two namespaces.
  const subnet = `10.213.${parseInt(tag.slice(0, 2), 16)}`;
  const made: string[] = [];
  try {
    for (const ns of [ns1, ns2]) {
      ip(["netns", "add", ns]);
      made.push(ns);
      ip(["-n", ns, "link", "set", "lo", "up"]);
    }
    ip(["link", "add", "eth0", "netns", ns1, "type", "veth", "peer", "name", "eth0", "netns", ns2]);
    for (const [i, ns] of [ns1, ns2].entries()) {
      ip(["-n", ns, "addr", "add", `${subnet}.${i + 1}/24`, "dev", "eth0"]);
      ip(["-n", ns, "link", "set", "eth0", "up"]);
      execFileSync("ip", ["netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", RATE, "burst", BURST, "latency", QUEUE_LATENCY], { stdio: ["ignore", "ignore", "pipe"] });
    }
  } catch (err: unknown) {
    console.log(`left out: could not make the namespaces and the rate limit: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? String(err)}`);
    for (const ns of made) removeNamespace(ns);
    return;
  }
  const setup: SlowLinkSetup = { ns2, ip1: `${subnet}.1`, ip2: `${subnet}.2`, rate: RATE, quick };
  const driver = path.join(path.dirname(fileURLToPath(import.meta.url)), "_slowlink_driver.js");
  try {
    const child = spawn("ip", ["netns", "exec", ns1, process.execPath, driver, JSON.stringify(setup)], { stdio: ["ignore", "inherit", "inherit"] });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("exit", (c) => resolve(c));
    });
    if (code !== 0) console.log(`the slow-link driver exited with ${code}`);
  } finally {
    for (const ns of made) removeNamespace(ns);
  }
}

function removeNamespace(ns: string): void {
  try {
    ip(["netns", "del", ns]);
  } catch (err: unknown) {
    // Nothing else to do in a benchmark: say so, so the operator can remove it by hand.
    console.log(`could not remove namespace ${ns}: ${String(err)}`);
  }
}

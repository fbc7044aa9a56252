/**
 * Links benchmark: message latency and throughput between two processes on
 * one node and on two nodes (node daemons as separate OS processes on
 * 127.0.0.1), against a raw TCP exchange of the same small messages over
 * loopback, measured in the same run: with the echo in this process (the
 * reference the aims are stated against) and in another process (each hop
 * then wakes a sleeping process, as every hop of a link does). Uses
 * examples/c/pingpong.wasm; the figures come from the senders' own link
 * statistics (first to last message).
 */
import net from "node:net";
import { echoProcess } from "./_echo.js";
import { startPair, type NodePair } from "./_nodes.js";

/**
 * Round trips of `size`-byte messages over one loopback TCP connection,
 * `window` in flight; resolves with ms per message. The echo runs in this
 * process (one thread, which never sleeps between a write and its reply), or
 * in another one at `port`: each hop then wakes a sleeping process, as every
 * hop between two nodes does.
 */
async function rawTcp(n: number, window: number, size = 10, port?: number): Promise<number> {
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    s.on("data", (d: Buffer) => s.write(d)); // echo
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const client = net.connect(port ?? (server.address() as net.AddressInfo).port, "127.0.0.1");
  client.setNoDelay(true);
  await new Promise<void>((r) => client.on("connect", () => r()));
  const msg = Buffer.alloc(size, 7);
  let received = 0;
  let sent = 0;
  const t0 = performance.now();
  await new Promise<void>((done) => {
    client.on("data", (d: Buffer) => {
      const before = Math.floor(received / size);
      received += d.length;
      const answered = Math.floor(received / size);
      for (let i = before; i < answered && sent < n; i += 1) {
        client.write(msg);
        sent += 1;
      }
      if (answered >= n) done();
    });
    for (; sent < Math.min(window, n); sent += 1) client.write(msg);
  });
  const ms = performance.now() - t0;
  client.destroy();
  await new Promise((r) => server.close(r));
  return ms / n;
}

interface Pair {
  from: string;
  to: string;
  messages: number;
  first_unix_ms: number;
  last_unix_ms: number;
}

/** Runs a ping-pong pair on `pair`'s nodes; resolves with ms per message of the ping → pong direction. */
export async function pingpong(pair: NodePair, n: number, window: number, ping_node: string): Promise<number> {
  const { a1, sha, request } = pair;
  const run = async (args: string[], node: string): Promise<string> =>
    (JSON.parse((await request(a1, "POST", "/v1/processes", { module_sha256: sha, module_name: "pingpong.wasm", args, node })).body.toString()) as { pid: string }).pid;
  const pong = await run(["pong", String(n)], "n1");
  const ping = await run(["ping", pong, String(n), String(window)], ping_node);
  for (const pid of [ping, pong]) await request(a1, "GET", `/v1/processes/${pid}/wait`);
  const links = JSON.parse((await request(a1, "GET", "/v1/links")).body.toString()) as Pair[];
  const seen = links.find((l) => l.from === ping && l.to === pong);
  if (seen === undefined || seen.messages !== n) throw new Error(`pingpong ${ping} -> ${pong} did not complete`);
  return (seen.last_unix_ms - seen.first_unix_ms) / (n - 1);
}

/** Link channel writes and frames of both nodes so far (`GET /v1/links?inspect=1`). */
async function channelCounts(pair: NodePair): Promise<{ writes: number; deliveries: number; answers: number }> {
  const sum = { writes: 0, deliveries: 0, answers: 0 };
  for (const a of [pair.a1, pair.a2]) {
    const c = (JSON.parse((await pair.request(a, "GET", "/v1/links?inspect=1")).body.toString()) as { channels: typeof sum }).channels;
    sum.writes += c.writes;
    sum.deliveries += c.deliveries;
    sum.answers += c.answers;
  }
  return sum;
}

/** Runs the links benchmark and prints its table. */
export async function linksBench(quick: boolean): Promise<void> {
  const pair = await startPair("c/pingpong.wasm");
  try {
    const latency_n = quick ? 500 : 3000;
    const volume_n = quick ? 10000 : 100000;
    console.log("\n(h) messages between two processes (pingpong.wasm, ~10-byte messages) vs a raw loopback TCP echo of the same size, same run");
    console.log("latency: one message in flight, ms per round trip; throughput: 64 in flight, messages per second each way");
    console.log("writes: socket writes between the nodes per round trip (one message each way), which the load does not change: latency run / throughput run");
    console.log("| path | round trip ms | vs raw TCP | messages/s | vs raw TCP | writes per round trip |\n|---|---|---|---|---|---|");
    const raw_rtt = await rawTcp(latency_n, 1);
    const raw_rate = 1000 / (await rawTcp(volume_n, 64));
    console.log(`| raw TCP, loopback | ${raw_rtt.toFixed(3)} | 1x | ${raw_rate.toFixed(0)} | 1x | 2 |`);
    const echo = await echoProcess();
    try {
      const rtt = await rawTcp(latency_n, 1, 10, echo.port);
      const rate = 1000 / (await rawTcp(volume_n, 64, 10, echo.port));
      console.log(`| raw TCP, loopback, echo in another process | ${rtt.toFixed(3)} | ${(rtt / raw_rtt).toFixed(1)}x | ${rate.toFixed(0)} | ${(rate / raw_rate).toFixed(2)}x | 2 |`);
    } finally {
      await echo.stop();
    }
    for (const [label, node] of [["same node", "n1"], ["two nodes", "n2"]] as const) {
      // Writes per round trip of a run: both nodes' channel writes over its messages (each message is answered by one).
      const writes = async (run: () => Promise<number>, n: number): Promise<[number, number]> => {
        const before = await channelCounts(pair);
        const ms = await run();
        const after = await channelCounts(pair);
        return [ms, (after.writes - before.writes) / n];
      };
      const [rtt, rtt_writes] = await writes(() => pingpong(pair, latency_n, 1, node), latency_n);
      const [ms, rate_writes] = await writes(() => pingpong(pair, volume_n, 64, node), volume_n);
      const rate = 1000 / ms;
      console.log(
        `| Ferry link, ${label} | ${rtt.toFixed(3)} | ${(rtt / raw_rtt).toFixed(1)}x | ${rate.toFixed(0)} | ${(rate / raw_rate).toFixed(2)}x | ${rtt_writes.toFixed(2)} / ${rate_writes.toFixed(2)} |`,
      );
    }
  } finally {
    await pair.stop();
  }
}

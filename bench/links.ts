/**
 * Links benchmark: message latency and throughput between two processes on
 * one node and on two nodes (node daemons as separate OS processes on
 * 127.0.0.1), against a raw TCP exchange of the same small messages over
 * loopback, measured in the same run: with the echo in this process (the
 * reference the aims are stated against) and in another process (each hop
 * then wakes a sleeping process, as every hop of a link does). Uses
 * examples/c/pingpong.wasm; the figures come from the senders' own link
 * statistics (first to last message).
 *
 * Two node pairs: one as deployed, where a pair of processes on two nodes
 * that talks goes by lanes (its workers write their messages to the other
 * node themselves, docs/links.md), and one started with `--link-lanes off`,
 * whose messages all go through the nodes' link channel, beside it.
 *
 * Every path is measured warm: the same run once or twice first, so the
 * code on the way (the nodes' link code, the guest's module, the kernel's
 * socket buffers) has tiered up, as it has on a node that exchanges
 * messages for longer than a second. A link's first 3,000 round trips took
 * about twice as long as its third (0.73 against 0.31 ms here): V8
 * optimizing each node's and each guest's hot code meanwhile. That first
 * run is printed beside.
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

/** Link channel writes and frames of both nodes so far, and deliveries taken on lanes (`GET /v1/links?inspect=1`). */
async function channelCounts(pair: NodePair): Promise<{ writes: number; deliveries: number; answers: number; laned: number }> {
  const sum = { writes: 0, deliveries: 0, answers: 0, laned: 0 };
  for (const a of [pair.a1, pair.a2]) {
    const c = JSON.parse((await pair.request(a, "GET", "/v1/links?inspect=1")).body.toString()) as { channels: typeof sum; lanes: { taken: number } };
    sum.writes += c.channels.writes;
    sum.deliveries += c.channels.deliveries;
    sum.answers += c.channels.answers;
    sum.laned += c.lanes.taken;
  }
  return sum;
}

/** Runs the links benchmark and prints its table. */
export async function linksBench(quick: boolean): Promise<void> {
  const pair = await startPair("c/pingpong.wasm");
  // The same, with its processes' messages to the other node all through the nodes' link channel (no lanes), beside.
  const channel_only = await startPair("c/pingpong.wasm", "tls", ["--link-lanes", "off"]);
  try {
    const latency_n = quick ? 500 : 3000;
    const volume_n = quick ? 10000 : 100000;
    console.log("\n(h) messages between two processes (pingpong.wasm, ~10-byte messages) vs a raw loopback TCP echo of the same size, same run");
    console.log("latency: one message in flight, ms per round trip; throughput: 64 in flight, messages per second each way");
    console.log("writes: the nodes' socket writes on their link channel per round trip (one message each way), which the load does not change: latency run / throughput run");
    console.log("on lanes: the share of the messages their receivers took on lanes, written by the sending guest's worker itself (docs/links.md, \"Lanes\"): latency run / throughput run");
    console.log("each path measured warm (after the same run twice; raw TCP once); its first run beside");
    console.log("| path | round trip ms | vs raw TCP | first run ms | messages/s | vs raw TCP | first run msg/s | writes per round trip | on lanes |\n|---|---|---|---|---|---|---|---|---|");
    // A path's first run, then the one measured after `warm_ups` more.
    const warm = async <T>(run: () => Promise<T>, warm_ups: number): Promise<{ first: T; warm: T }> => {
      const first = await run();
      for (let i = 0; i < warm_ups - 1; i += 1) await run();
      return { first, warm: await run() };
    };
    const raw = await warm(() => rawTcp(latency_n, 1), 1);
    const raw_volume = await warm(() => rawTcp(volume_n, 64), 1);
    const raw_rtt = raw.warm;
    const raw_rate = 1000 / raw_volume.warm;
    console.log(`| raw TCP, loopback | ${raw_rtt.toFixed(3)} | 1x | ${raw.first.toFixed(3)} | ${raw_rate.toFixed(0)} | 1x | ${(1000 / raw_volume.first).toFixed(0)} | 2 | |`);
    const echo = await echoProcess();
    try {
      const rtt = await warm(() => rawTcp(latency_n, 1, 10, echo.port), 1);
      const volume = await warm(() => rawTcp(volume_n, 64, 10, echo.port), 1);
      const rate = 1000 / volume.warm;
      console.log(
        `| raw TCP, loopback, echo in another process | ${rtt.warm.toFixed(3)} | ${(rtt.warm / raw_rtt).toFixed(1)}x | ${rtt.first.toFixed(3)} | ${rate.toFixed(0)} | ${(rate / raw_rate).toFixed(2)}x | ${(1000 / volume.first).toFixed(0)} | 2 | |`,
      );
    } finally {
      await echo.stop();
    }
    const paths = [
      ["same node", pair, "n1"],
      ["two nodes", pair, "n2"],
      ["two nodes, lanes off", channel_only, "n2"],
    ] as const;
    for (const [label, on, node] of paths) {
      const counted = async (run: () => Promise<number>, n: number): Promise<[number, number, number]> => {
        const before = await channelCounts(on);
        const ms = await run();
        const after = await channelCounts(on);
        return [ms, (after.writes - before.writes) / n, (after.laned - before.laned) / (2 * n)];
      };
      const rtt = await warm(() => counted(() => pingpong(on, latency_n, 1, node), latency_n), 2);
      const volume = await warm(() => counted(() => pingpong(on, volume_n, 64, node), volume_n), 2);
      const [ms, rtt_writes, rtt_laned] = rtt.warm;
      const rate = 1000 / volume.warm[0];
      console.log(
        `| Ferry link, ${label} | ${ms.toFixed(3)} | ${(ms / raw_rtt).toFixed(1)}x | ${rtt.first[0].toFixed(3)} | ${rate.toFixed(0)} | ${(rate / raw_rate).toFixed(2)}x | ${(1000 / volume.first[0]).toFixed(0)} | ${rtt_writes.toFixed(2)} / ${volume.warm[1].toFixed(2)} | ${pct(rtt_laned)} / ${pct(volume.warm[2])} |`,
      );
    }
    // One pair's long exchange: a lane's first thousands of round trips are slower (each new pair's worker and
    // lane warm up; see docs/links.md), so a pair that talks for longer sees the steady figure.
    for (const [label, on] of [
      ["two nodes", pair],
      ["two nodes, lanes off", channel_only],
    ] as const) {
      const long_n = quick ? 5000 : 20000;
      const before = await channelCounts(on);
      const ms = await pingpong(on, long_n, 1, "n2");
      const after = await channelCounts(on);
      console.log(
        `| Ferry link, ${label}, one pair's ${long_n} round trips | ${ms.toFixed(3)} | ${(ms / raw_rtt).toFixed(1)}x | | | | | ${((after.writes - before.writes) / long_n).toFixed(2)} | ${pct((after.laned - before.laned) / (2 * long_n))} |`,
      );
    }
    await inFlightTable(pair, volume_n);
  } finally {
    await pair.stop();
    await channel_only.stop();
  }
}

function pct(share: number): string {
  return `${(share * 100).toFixed(0)}%`;
}

/**
 * (h2) Throughput by messages in flight, two nodes against raw TCP in this
 * process with the same window: a link at 64 in flight is bound by its
 * loaded round trip (the same chain of thread wakes as one message's, each
 * stage waking for what came meanwhile), so more in flight fill its
 * batches; raw TCP coalesces more of its writes too. Each measured warm,
 * after one run of the same window.
 */
async function inFlightTable(pair: NodePair, n: number): Promise<void> {
  console.log("\n(h2) throughput by messages in flight, two nodes: messages per second each way, warm (after one run of the same window), against raw TCP in this process with the same window");
  console.log("| in flight | raw TCP msg/s | Ferry link msg/s | vs raw TCP |\n|---|---|---|---|");
  for (const window of [64, 256, 1024]) {
    await rawTcp(n, window);
    const raw = 1000 / (await rawTcp(n, window));
    await pingpong(pair, n, window, "n2");
    const link = 1000 / (await pingpong(pair, n, window, "n2"));
    console.log(`| ${window} | ${raw.toFixed(0)} | ${link.toFixed(0)} | ${(link / raw).toFixed(2)}x |`);
  }
}

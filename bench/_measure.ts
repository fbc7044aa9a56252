/** Measuring helpers the benchmark's parts share. */
import net from "node:net";

/** The value at `p` percent of `xs` sorted: the one at index ⌊n·p/100⌋ (NaN for none). */
export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))] ?? NaN;
}

/** The middle value of `xs` (the upper one of the two middles for an even count). */
export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Sends `bytes` over a loopback TCP connection in 1 MiB writes; resolves with the milliseconds it took. */
export async function rawTcpTransfer(bytes: number): Promise<number> {
  const chunk = Buffer.alloc(1024 * 1024, 7);
  let received = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const server = net.createServer((s) => {
    s.on("data", (c: Buffer) => {
      received += c.length;
      if (received >= bytes) done();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const t0 = performance.now();
  const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  await new Promise<void>((r) => client.on("connect", () => r()));
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!client.write(chunk.subarray(0, Math.min(chunk.length, bytes - sent)))) await new Promise((r) => client.once("drain", r));
  }
  await finished;
  const ms = performance.now() - t0;
  client.destroy();
  await new Promise((r) => server.close(r));
  return ms;
}

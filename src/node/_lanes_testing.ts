/**
 * Test helpers for lanes' doors (`_link_lanes.ts`, `_net_lanes.ts`) and
 * the TCP relay (`net_home.ts`): a stand-in for the node's front, and a
 * client of a home's listener.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { PAGE_DATA_HELLO_BYTES, PAGE_DATA_MAGIC } from "./_page_tickets.js";
import { parseListenAddress } from "./net_home.js";

/**
 * The front's part on 127.0.0.1: reads a connection's hello (the magic and
 * the ticket), nothing past it, and hands it to `accept`; destroys it if
 * `accept` says the ticket is none of its doors'.
 */
export async function ticketFront(accept: (socket: net.Socket, ticket: Buffer) => boolean): Promise<{ server: net.Server; address: string }> {
  const server = net.createServer((socket) => {
    let got = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      if (got.length < PAGE_DATA_HELLO_BYTES) return;
      socket.off("data", onData);
      socket.pause();
      assert.ok(got.subarray(0, PAGE_DATA_MAGIC.length).equals(PAGE_DATA_MAGIC));
      if (!accept(socket, got.subarray(PAGE_DATA_MAGIC.length, PAGE_DATA_HELLO_BYTES))) socket.destroy();
    };
    socket.on("data", onData);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { server, address: `127.0.0.1:${(server.address() as net.AddressInfo).port}` };
}

/** A client socket of `address` that keeps what it reads (latin1). */
export async function client(address: string): Promise<{ socket: net.Socket; got: () => string; ended: () => boolean }> {
  const { host, port } = parseListenAddress(address);
  const socket = net.connect({ host, port, allowHalfOpen: true });
  await new Promise<void>((r) => socket.once("connect", () => r()));
  let got = "";
  let ended = false;
  socket.on("data", (d: Buffer) => (got += d.toString("latin1")));
  socket.on("end", () => (ended = true));
  return { socket, got: () => got, ended: () => ended };
}

/**
 * TCP sockets: sock_accept, sock_recv, sock_send, sock_shutdown, and the
 * socket side of fd_read, fd_write and poll_oneoff.
 *
 * A process never holds a real socket. Its listening sockets are preopened
 * (`WasiConfig.listeners`) and every connection is relayed by whoever runs
 * the host (`WasiDeps.net`); the host keeps the guest's side of each stream,
 * bytes taken in and bytes sent out, so a capture knows both exactly and the
 * relay resumes each direction there after a migration.
 *
 * Blocking calls follow the file calls' rule: when the Blocker answers
 * "suspend" they return having consumed nothing and sent nothing, and the
 * runtime repeats them after the rewind, perhaps on another machine. Every
 * call that can wait here (sock_accept, sock_recv, sock_send, fd_read,
 * fd_write, poll_oneoff) is a safe point.
 */

import { Errno, fail, type ErrnoValue } from "./errno.js";
import { FdFlags, RIGHTS_SOCKET_CONN, Rights } from "./_layout.js";
import { require_rights, type ConnEntry, type FdEntry } from "./fd_table.js";
import type { HostContext } from "./_context.js";
import type { NetPort } from "./deps.js";
import { u32_arg, type GuestSlice } from "./_memory.js";

/** riflags: look at the data without consuming it. */
const RECV_PEEK = 1;
/** riflags: wait until the buffers are full (not supported: a partly filled wait could not be undone by a suspend). */
const RECV_WAITALL = 2;
/** sdflags. */
const SHUT_RD = 1;
const SHUT_WR = 2;

/** `sock_accept(fd, flags, fd_ptr)`: the next connection, in arrival order. May block. */
export function sock_accept(ctx: HostContext, fd: number, flags: number, fd_ptr: number): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  if (entry.kind !== "listener") fail(entry.kind === "conn" ? Errno.inval : Errno.notsock);
  require_rights(entry, Rights.sock_accept);
  const out = u32_arg(fd_ptr);
  ctx.mem.check(out, 4);
  if ((flags & ~FdFlags.nonblock) !== 0) fail(Errno.inval, "sock_accept takes only NONBLOCK");
  const net = port(ctx);
  while (!net.arrived(entry.listener, entry.accepted)) {
    if ((entry.fdflags & FdFlags.nonblock) !== 0) return Errno.again;
    const listener = entry.listener;
    const seq = entry.accepted;
    if (ctx.deps.blocker.wait({ until: () => net.arrived(listener, seq) }) === "suspend") return Errno.success;
  }
  const conn: ConnEntry = {
    kind: "conn",
    listener: entry.listener,
    seq: entry.accepted,
    received: 0,
    sent: 0,
    shut_rd: false,
    shut_wr: false,
    fdflags: flags & FdFlags.nonblock,
    rights_base: RIGHTS_SOCKET_CONN,
    rights_inheriting: 0n,
  };
  const new_fd = ctx.fds.insert(conn);
  entry.accepted += 1;
  ctx.mem.set_u32(out, new_fd);
  return Errno.success;
}

/** `sock_recv(fd, ri_data, ri_data_len, ri_flags, ro_datalen_ptr, ro_flags_ptr)`. May block. */
export function sock_recv(
  ctx: HostContext,
  fd: number,
  iovs_ptr: number,
  iovs_len: number,
  ri_flags: number,
  ro_datalen_ptr: number,
  ro_flags_ptr: number,
): ErrnoValue {
  const conn = connection(ctx.fds.get(u32_arg(fd)));
  require_rights(conn, Rights.fd_read);
  const slices = ctx.mem.iovecs(u32_arg(iovs_ptr), u32_arg(iovs_len));
  const len_at = u32_arg(ro_datalen_ptr);
  const flags_at = u32_arg(ro_flags_ptr);
  ctx.mem.check(len_at, 4);
  ctx.mem.check(flags_at, 2);
  if ((ri_flags & ~(RECV_PEEK | RECV_WAITALL)) !== 0) fail(Errno.inval, `riflags ${ri_flags}`);
  if ((ri_flags & RECV_WAITALL) !== 0) fail(Errno.notsup, "MSG_WAITALL is not supported");
  const n = receive(ctx, conn, slices, (ri_flags & RECV_PEEK) !== 0);
  if (n === undefined) return Errno.success;
  ctx.mem.set_u32(len_at, n);
  ctx.mem.set_u16(flags_at, 0);
  return Errno.success;
}

/** `sock_send(fd, si_data, si_data_len, si_flags, so_datalen_ptr)`. May block. */
export function sock_send(ctx: HostContext, fd: number, iovs_ptr: number, iovs_len: number, _si_flags: number, so_datalen_ptr: number): ErrnoValue {
  const conn = connection(ctx.fds.get(u32_arg(fd)));
  require_rights(conn, Rights.fd_write);
  const slices = ctx.mem.iovecs(u32_arg(iovs_ptr), u32_arg(iovs_len));
  const out = u32_arg(so_datalen_ptr);
  ctx.mem.check(out, 4);
  const n = send(ctx, conn, slices);
  if (n !== undefined) ctx.mem.set_u32(out, n);
  return Errno.success;
}

/** `sock_shutdown(fd, how)`: RD makes later reads see end of stream; WR ends the outgoing stream after what was sent. */
export function sock_shutdown(ctx: HostContext, fd: number, how: number): ErrnoValue {
  const entry = ctx.fds.get(u32_arg(fd));
  if (entry.kind === "listener") fail(Errno.notconn);
  const conn = connection(entry);
  require_rights(conn, Rights.sock_shutdown);
  if (how === 0 || (how & ~(SHUT_RD | SHUT_WR)) !== 0) fail(Errno.inval, `sdflags ${how}`);
  if ((how & SHUT_RD) !== 0) conn.shut_rd = true;
  if ((how & SHUT_WR) !== 0 && !conn.shut_wr) {
    conn.shut_wr = true;
    port(ctx).shutdown(conn, conn.sent);
  }
  return Errno.success;
}

/** Reads from a connection into `slices`: bytes read (0 at end of stream), or undefined when a suspend came first. */
export function receive(ctx: HostContext, conn: ConnEntry, slices: readonly GuestSlice[], peek: boolean): number | undefined {
  const want = slices.reduce((sum, s) => sum + s.len, 0);
  if (want === 0 || conn.shut_rd) return 0;
  const net = port(ctx);
  for (;;) {
    const got = net.read(conn, want, peek);
    if (got === "eof") return 0;
    if (got === "reset") fail(Errno.connreset);
    if (got !== "empty") {
      ctx.mem.scatter(slices, got);
      if (!peek) conn.received += got.length;
      return got.length;
    }
    if ((conn.fdflags & FdFlags.nonblock) !== 0) fail(Errno.again);
    if (ctx.deps.blocker.wait({ until: () => net.read(conn, 1, true) !== "empty" }) === "suspend") return undefined;
  }
}

/**
 * Sends what fits of `slices` on a connection: bytes sent (at least one
 * unless there were none to send), or undefined when a suspend came first.
 */
export function send(ctx: HostContext, conn: ConnEntry, slices: readonly GuestSlice[]): number | undefined {
  if (conn.shut_wr) fail(Errno.pipe, "the connection's write side was shut down");
  const total = slices.reduce((sum, s) => sum + s.len, 0);
  if (total === 0) return 0;
  const net = port(ctx);
  for (;;) {
    const room = net.room(conn);
    if (room === "reset") fail(Errno.pipe, "the peer closed the connection");
    if (room > 0) {
      const bytes = ctx.mem.gather(slices).subarray(0, Math.min(room, total));
      net.write(conn, conn.sent, bytes);
      conn.sent += bytes.length;
      return bytes.length;
    }
    if ((conn.fdflags & FdFlags.nonblock) !== 0) fail(Errno.again);
    const waited = ctx.deps.blocker.wait({ until: () => net.room(conn) !== 0 });
    if (waited === "suspend") return undefined;
  }
}

/**
 * poll_oneoff's view of a socket: the event's nbytes when ready now, or a
 * predicate that turns true when it may be.
 */
export function socket_readiness(ctx: HostContext, entry: FdEntry, reading: boolean): { nbytes: bigint } | { error: ErrnoValue } | (() => boolean) {
  const net = port(ctx);
  if (entry.kind === "listener") {
    if (!reading) return { error: Errno.notconn };
    const { listener, accepted } = entry;
    return net.arrived(listener, accepted) ? { nbytes: 0n } : () => net.arrived(listener, accepted);
  }
  const conn = connection(entry);
  if (reading) {
    if (conn.shut_rd) return { nbytes: 0n };
    const peeked = net.read(conn, 1 << 30, true);
    if (peeked === "empty") return () => net.read(conn, 1, true) !== "empty";
    return { nbytes: typeof peeked === "string" ? 0n : BigInt(peeked.length) };
  }
  if (conn.shut_wr) return { error: Errno.pipe };
  const room = net.room(conn);
  if (room === "reset") return { error: Errno.pipe };
  return room > 0 ? { nbytes: BigInt(room) } : () => net.room(conn) !== 0;
}

/** Tells the relay the guest closed a socket. */
export function socket_closed(ctx: HostContext, entry: FdEntry): void {
  if (entry.kind === "conn") port(ctx).close(entry, entry.sent);
  else if (entry.kind === "listener") port(ctx).unlisten(entry.listener);
}

function connection(entry: FdEntry): ConnEntry {
  if (entry.kind !== "conn") fail(entry.kind === "listener" ? Errno.notconn : Errno.notsock);
  return entry;
}

function port(ctx: HostContext): NetPort {
  const net = ctx.deps.net;
  // Socket fds exist only when a NetPort does; this is a host bug, not a guest error.
  if (net === undefined) throw new Error("a socket fd without a NetPort");
  return net;
}

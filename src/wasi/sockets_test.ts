import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { Errno, WasiHost } from "./mod.js";
import type { ConnRef, NetPort, NetRead } from "./deps.js";
import { Guest, fake_deps } from "./_testing.js";
import { Event, EventType, FdFlags, Fdstat, Filetype, Subscription } from "./_layout.js";
import { parse_wasi_state, socket_positions } from "./state.js";

/** A relay the test drives: connections arrive, bytes come in, room opens. */
class FakeNet implements NetPort {
  readonly arrivals = new Map<number, number>();
  readonly inbound = new Map<string, { data: Buffer; eof: boolean; reset: boolean }>();
  readonly out: Array<{ key: string; offset: number; text: string }> = [];
  readonly events: string[] = [];
  window = 1 << 20;

  arrive(listener: number): void {
    this.arrivals.set(listener, (this.arrivals.get(listener) ?? 0) + 1);
  }
  give(listener: number, seq: number, text: string, end: "eof" | "reset" | null = null): void {
    const s = this.#stream({ listener, seq });
    s.data = Buffer.concat([s.data, Buffer.from(text)]);
    if (end === "eof") s.eof = true;
    if (end === "reset") s.reset = true;
  }
  #stream(conn: ConnRef): { data: Buffer; eof: boolean; reset: boolean } {
    const key = `${conn.listener}.${conn.seq}`;
    let s = this.inbound.get(key);
    if (s === undefined) this.inbound.set(key, (s = { data: Buffer.alloc(0), eof: false, reset: false }));
    return s;
  }
  arrived(listener: number, seq: number): boolean {
    return seq < (this.arrivals.get(listener) ?? 0);
  }
  read(conn: ConnRef, max: number, peek: boolean): NetRead {
    const s = this.#stream(conn);
    if (s.data.length > 0) {
      const got = s.data.subarray(0, max);
      if (!peek) s.data = s.data.subarray(got.length);
      return new Uint8Array(got);
    }
    if (s.reset) return "reset";
    return s.eof ? "eof" : "empty";
  }
  room(conn: ConnRef): number | "reset" {
    return this.#stream(conn).reset ? "reset" : this.window;
  }
  write(conn: ConnRef, offset: number, bytes: Uint8Array): void {
    this.out.push({ key: `${conn.listener}.${conn.seq}`, offset, text: Buffer.from(bytes).toString() });
    this.window -= bytes.length;
  }
  shutdown(conn: ConnRef, offset: number): void {
    this.events.push(`shutdown ${conn.listener}.${conn.seq} at ${offset}`);
  }
  close(conn: ConnRef, offset: number): void {
    this.events.push(`close ${conn.listener}.${conn.seq} at ${offset}`);
  }
  unlisten(listener: number): void {
    this.events.push(`unlisten ${listener}`);
  }
}

function start(listeners = ["127.0.0.1:7000"]): { guest: Guest; net: FakeNet; fakes: ReturnType<typeof fake_deps> } {
  const fakes = fake_deps();
  const net = new FakeNet();
  const host = new WasiHost({ args: [], env: [], preopens: [], listeners }, { ...fakes.deps, net });
  fakes.blocker.host = host;
  return { guest: new Guest(host), net, fakes };
}

function accept(guest: Guest, fd: number, flags = 0): [number, number] {
  const out = guest.alloc(4, 4);
  guest.set_u32(out, 0xffffffff);
  const errno = guest.call("sock_accept", fd, flags, out);
  return [errno, guest.u32(out)];
}

function recv(guest: Guest, fd: number, max: number, flags = 0): [number, string] {
  const [iovs, count, [buf]] = guest.iovecs([max]);
  const len = guest.alloc(4, 4);
  const ro_flags = guest.alloc(4, 4);
  guest.set_u32(len, 0xffffffff);
  const errno = guest.call("sock_recv", fd, iovs, count, flags, len, ro_flags);
  return [errno, errno === 0 && guest.u32(len) !== 0xffffffff ? guest.text(buf as number, guest.u32(len)) : ""];
}

function send(guest: Guest, fd: number, text: string): [number, number] {
  const [ptr, len] = guest.str(text);
  const iovs = guest.alloc(8, 4);
  guest.set_u32(iovs, ptr);
  guest.set_u32(iovs + 4, len);
  const out = guest.alloc(4, 4);
  guest.set_u32(out, 0xffffffff);
  const errno = guest.call("sock_send", fd, iovs, 1, 0, out);
  return [errno, guest.u32(out)];
}

describe("sockets", () => {
  test("listening sockets come after the preopens, as sockets wasi-libc's preopen scan stops at", () => {
    const { guest } = start(["127.0.0.1:7000", "127.0.0.1:7001"]);
    const stat = guest.alloc(Fdstat.size, 8);
    assert.equal(guest.call("fd_fdstat_get", 3, stat), Errno.success);
    assert.equal(guest.u8(stat + Fdstat.filetype), Filetype.socket_stream);
    assert.equal(guest.call("fd_fdstat_get", 4, stat), Errno.success);
    assert.equal(guest.call("fd_prestat_get", 3, guest.alloc(8, 4)), Errno.badf);
    assert.deepEqual(guest.read(3, 4), [Errno.notconn, ""]);
    assert.equal(guest.seek(3, 0n, 0)[0], Errno.spipe);
  });

  test("listeners need a relay", () => {
    const fakes = fake_deps();
    assert.throws(() => new WasiHost({ args: [], env: [], preopens: [], listeners: ["127.0.0.1:1"] }, fakes.deps), /NetPort/);
  });

  test("accept takes connections in arrival order; waits, or says again when non-blocking", () => {
    const { guest, net, fakes } = start();
    assert.equal(guest.call("fd_fdstat_set_flags", 3, FdFlags.nonblock), Errno.success);
    assert.deepEqual(accept(guest, 3), [Errno.again, 0xffffffff]);
    assert.equal(guest.call("fd_fdstat_set_flags", 3, 0), Errno.success);
    // A suspend while waiting: nothing happens, the runtime repeats the call.
    fakes.blocker.script.push("suspend");
    assert.deepEqual(accept(guest, 3), [Errno.success, 0xffffffff]);
    fakes.blocker.script.push(() => {
      net.arrive(0);
      return "ready";
    });
    assert.deepEqual(accept(guest, 3), [Errno.success, 4]);
    net.arrive(0);
    assert.deepEqual(accept(guest, 3, FdFlags.nonblock), [Errno.success, 5]);
    assert.deepEqual(accept(guest, 4), [Errno.inval, 0xffffffff]);
    assert.deepEqual(accept(guest, 0), [Errno.notsock, 0xffffffff]);
    const state = guest.host.capture();
    const { listeners, conns } = socket_positions(parse_wasi_state(state));
    assert.deepEqual(listeners.map((l) => [l.fd, l.accepted]), [[3, 2]]);
    assert.deepEqual(conns.map((c) => [c.fd, c.seq, c.fdflags]), [[4, 0, 0], [5, 1, FdFlags.nonblock]]);
  });

  test("recv reads what arrived, peeks, waits, and sees the end; fd_read reads the same stream", () => {
    const { guest, net, fakes } = start();
    net.arrive(0);
    const [, fd] = accept(guest, 3);
    net.give(0, 0, "hello world");
    assert.deepEqual(recv(guest, fd, 5, 1), [Errno.success, "hello"]);
    assert.deepEqual(recv(guest, fd, 5), [Errno.success, "hello"]);
    assert.deepEqual(guest.read(fd, 100), [Errno.success, " world"]);
    fakes.blocker.script.push("suspend");
    assert.deepEqual(recv(guest, fd, 5), [Errno.success, ""]);
    fakes.blocker.script.push(() => {
      net.give(0, 0, "!", "eof");
      return "ready";
    });
    assert.deepEqual(recv(guest, fd, 5), [Errno.success, "!"]);
    assert.deepEqual(recv(guest, fd, 5), [Errno.success, ""]);
    assert.deepEqual(recv(guest, fd, 5, 2), [Errno.notsup, ""]);
    const conn = socket_positions(parse_wasi_state(guest.host.capture())).conns[0];
    assert.equal(conn?.received, 12);
  });

  test("a reset connection: recv says connreset, send says pipe", () => {
    const { guest, net } = start();
    net.arrive(0);
    const [, fd] = accept(guest, 3);
    net.give(0, 0, "x", "reset");
    assert.deepEqual(recv(guest, fd, 5), [Errno.success, "x"]);
    assert.deepEqual(recv(guest, fd, 5), [Errno.connreset, ""]);
    assert.equal(send(guest, fd, "y")[0], Errno.pipe);
  });

  test("send hands out what the window allows, at the stream's offsets; shutdown and close are told where the stream ends", () => {
    const { guest, net, fakes } = start();
    net.arrive(0);
    const [, fd] = accept(guest, 3);
    net.window = 4;
    assert.deepEqual(send(guest, fd, "abcdef"), [Errno.success, 4]);
    fakes.blocker.script.push("suspend");
    assert.deepEqual(send(guest, fd, "ef"), [Errno.success, 0xffffffff]);
    fakes.blocker.script.push(() => {
      net.window = 10;
      return "ready";
    });
    assert.deepEqual(send(guest, fd, "ef"), [Errno.success, 2]);
    assert.deepEqual(guest.write(fd, "gh"), [Errno.success, 2]);
    // fd_write on a socket is a safe point too: a suspend while the window is full writes nothing.
    net.window = 0;
    fakes.blocker.script.push("suspend");
    const [ptr, len] = guest.str("ij");
    const iovs = guest.alloc(8, 4);
    guest.set_u32(iovs, ptr);
    guest.set_u32(iovs + 4, len);
    const nwritten = guest.alloc(4, 4);
    guest.set_u32(nwritten, 0xffffffff);
    assert.equal(guest.call("fd_write", fd, iovs, 1, nwritten), Errno.success);
    assert.equal(guest.u32(nwritten), 0xffffffff);
    net.window = 10;
    assert.deepEqual(net.out, [
      { key: "0.0", offset: 0, text: "abcd" },
      { key: "0.0", offset: 4, text: "ef" },
      { key: "0.0", offset: 6, text: "gh" },
    ]);
    assert.equal(guest.call("sock_shutdown", fd, 2), Errno.success);
    assert.equal(send(guest, fd, "z")[0], Errno.pipe);
    assert.equal(guest.call("sock_shutdown", fd, 0), Errno.inval);
    assert.equal(guest.call("sock_shutdown", 3, 1), Errno.notconn);
    assert.equal(guest.call("fd_close", fd), Errno.success);
    assert.equal(guest.call("fd_close", 3), Errno.success);
    assert.deepEqual(net.events, ["shutdown 0.0 at 8", "close 0.0 at 8", "unlisten 0"]);
  });

  test("poll: a listener is readable once a connection arrived, a connection once data or its end did", () => {
    const { guest, net, fakes } = start();
    const subs = guest.alloc(2 * Subscription.size, 8);
    const events = guest.alloc(2 * Event.size, 8);
    const nevents = guest.alloc(4, 4);
    const subscribe = (i: number, fd: number, type: number): void => {
      const base = subs + i * Subscription.size;
      guest.set_u64(base, BigInt(100 + i));
      new DataView(guest.memory.buffer).setUint8(base + Subscription.tag, type);
      guest.set_u32(base + Subscription.fd, fd);
    };
    subscribe(0, 3, EventType.fd_read);
    fakes.blocker.script.push(() => {
      net.arrive(0);
      return "ready";
    });
    assert.equal(guest.call("poll_oneoff", subs, events, 1, nevents), Errno.success);
    assert.equal(guest.u32(nevents), 1);
    assert.equal(guest.u64(events + Event.userdata), 100n);
    const [, fd] = accept(guest, 3);
    subscribe(0, fd, EventType.fd_read);
    subscribe(1, fd, EventType.fd_write);
    assert.equal(guest.call("poll_oneoff", subs, events, 2, nevents), Errno.success);
    assert.equal(guest.u32(nevents), 1, "writable at once, not readable");
    assert.equal(guest.u64(events + Event.userdata), 101n);
    fakes.blocker.script.push(() => {
      net.give(0, 0, "abc");
      return "ready";
    });
    assert.equal(guest.call("poll_oneoff", subs, events, 1, nevents), Errno.success);
    assert.equal(guest.u32(nevents), 1);
    assert.equal(guest.u64(events + Event.nbytes), 3n);
    assert.ok(fakes.blocker.calls.every((c) => c.stdin === false));
  });

  test("capture and restore keep each stream's offsets; a host without a relay refuses sockets", () => {
    const { guest, net } = start();
    net.arrive(0);
    const [, fd] = accept(guest, 3);
    net.give(0, 0, "12345");
    recv(guest, fd, 3);
    send(guest, fd, "abc");
    guest.call("sock_shutdown", fd, 1);
    const state = guest.host.capture();
    const fakes = fake_deps();
    const restored = WasiHost.restore(state, { ...fakes.deps, net: new FakeNet() }, { preopens: state.preopens });
    assert.deepEqual(restored.capture().fds, state.fds);
    const conn = socket_positions(parse_wasi_state(state)).conns[0];
    assert.deepEqual(conn && [conn.received, conn.sent, conn.shut_rd, conn.shut_wr], [3, 3, true, false]);
    assert.throws(() => WasiHost.restore(state, fakes.deps, { preopens: state.preopens }), /sockets/);
    const broken = structuredClone(state) as unknown as { fds: Record<string, unknown>[] };
    (broken.fds.find((f) => f["kind"] === "conn") as Record<string, unknown>)["sent"] = -1;
    assert.throws(() => parse_wasi_state(broken), /sent/);
  });
});

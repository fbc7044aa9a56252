import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FerryError } from "../errors.js";
import { DashboardSessions, LOGIN_TOKEN_TTL_MS, SESSION_IDLE_MS, SESSION_LIFETIME_MS, SESSIONS_MAX } from "./dashboard_sessions.js";

function clock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

function refused(f: () => unknown): void {
  assert.throws(f, (err: unknown) => err instanceof FerryError && err.code === "ERR_SESSION");
}

describe("dashboard sessions", () => {
  it("redeems a login token once, for a session of the user who asked", () => {
    // A fixed clock: check() renews the idle expiry, which a real clock may move by a millisecond.
    const store = new DashboardSessions(clock().now);
    const { token } = store.createLogin({ name: "alice" });
    const { id, session } = store.redeem(token);
    assert.equal(session.user, "alice");
    assert.match(id, /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(store.check(id), session);
    refused(() => store.redeem(token));
    assert.equal(store.counts.sessions, 1);
  });

  it("refuses malformed and unknown tokens, and an expired one", () => {
    const c = clock();
    const store = new DashboardSessions(c.now);
    refused(() => store.redeem("fdl1.short"));
    refused(() => store.redeem(`fdl1.${"A".repeat(43)}`));
    refused(() => store.redeem(""));
    const { token } = store.createLogin({ name: "bob" });
    c.advance(LOGIN_TOKEN_TTL_MS);
    refused(() => store.redeem(token));
  });

  it("ends a session after it idles, and after its lifetime however busy", () => {
    const c = clock();
    const store = new DashboardSessions(c.now);
    const idle = store.redeem(store.createLogin({ name: "a" }).token).id;
    c.advance(SESSION_IDLE_MS - 1);
    assert.notEqual(store.check(idle), null);
    c.advance(SESSION_IDLE_MS);
    assert.equal(store.check(idle), null);
    const busy = store.redeem(store.createLogin({ name: "b" }).token).id;
    for (let t = 0; t < SESSION_LIFETIME_MS - 60_000; t += 60_000) {
      c.advance(60_000);
      assert.notEqual(store.check(busy), null, `at ${t} ms`);
    }
    c.advance(60_000);
    assert.equal(store.check(busy), null);
  });

  it("keeps at most SESSIONS_MAX, dropping the least recently used", () => {
    const store = new DashboardSessions();
    const ids = Array.from({ length: SESSIONS_MAX }, () => store.redeem(store.createLogin({ name: "u" }).token).id);
    assert.notEqual(store.check(ids[0]), null); // the first is now the most recently used
    store.redeem(store.createLogin({ name: "u" }).token);
    assert.notEqual(store.check(ids[0]), null);
    assert.equal(store.check(ids[1]), null);
    assert.equal(store.counts.sessions, SESSIONS_MAX);
  });

  it("matches the CSRF token exactly, and logs out", () => {
    const store = new DashboardSessions();
    const { id, session } = store.redeem(store.createLogin({ name: "a" }).token);
    assert.equal(DashboardSessions.csrfMatches(session, session.csrf), true);
    assert.equal(DashboardSessions.csrfMatches(session, undefined), false);
    assert.equal(DashboardSessions.csrfMatches(session, session.csrf.slice(1)), false);
    assert.equal(DashboardSessions.csrfMatches(session, `${session.csrf.slice(0, -1)}${session.csrf.endsWith("A") ? "B" : "A"}`), false);
    store.end(id);
    assert.equal(store.check(id), null);
    assert.equal(store.check(undefined), null);
    assert.equal(store.check("not an id"), null);
  });
});

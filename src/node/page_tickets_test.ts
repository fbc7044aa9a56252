import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeGrant, encodeGrant, PAGE_GRANT_BYTES, PageTickets, TICKET_BYTES, TICKET_TTL_MS } from "./_page_tickets.js";

const same = (a: Uint8Array | undefined, b: Uint8Array): boolean => a !== undefined && Buffer.compare(a, b) === 0;

/** A clock the test moves by hand. */
function clock(): { now: () => number; advance(ms: number): void } {
  let t = 1000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe("page-channel tickets", () => {
  it("a ticket opens its own session once, with the keys granted with it", () => {
    const tickets = new PageTickets();
    const grant = tickets.issue("s1");
    assert.equal(grant.ticket.length, TICKET_BYTES);
    const got = tickets.redeem(Buffer.from(grant.ticket));
    assert.equal(got?.session, "s1");
    assert.ok(same(got?.keys.to_destination, grant.keys.to_destination) && same(got?.keys.to_source, grant.keys.to_source));
    assert.equal(tickets.redeem(grant.ticket), null, "a ticket is spent on first use");
  });

  it("each session's ticket gives that session and no other; a new grant voids the session's older ticket", () => {
    const tickets = new PageTickets();
    const a = tickets.issue("a");
    const b = tickets.issue("b");
    assert.ok(!same(a.keys.to_destination, b.keys.to_destination) && !same(a.keys.to_source, a.keys.to_destination), "keys are fresh for each grant and each direction");
    const a2 = tickets.issue("a");
    assert.equal(tickets.redeem(a.ticket), null, "the older ticket of a session is void");
    assert.equal(tickets.redeem(b.ticket)?.session, "b");
    assert.equal(tickets.redeem(a2.ticket)?.session, "a");
  });

  it("a ticket dies after its time to live", () => {
    const c = clock();
    const tickets = new PageTickets({ now: c.now });
    const early = tickets.issue("s");
    c.advance(TICKET_TTL_MS - 1);
    assert.equal(tickets.redeem(early.ticket)?.session, "s");
    const late = tickets.issue("s");
    c.advance(TICKET_TTL_MS);
    assert.equal(tickets.redeem(late.ticket), null);
    assert.equal(tickets.size, 0, "expired tickets are dropped");
  });

  it("refuses unknown bytes, a ticket one bit off, and any other length", () => {
    const tickets = new PageTickets();
    const grant = tickets.issue("s");
    const off = Buffer.from(grant.ticket);
    off[TICKET_BYTES - 1] = (off[TICKET_BYTES - 1] as number) ^ 1;
    assert.equal(tickets.redeem(off), null);
    assert.equal(tickets.redeem(Buffer.alloc(TICKET_BYTES)), null);
    assert.equal(tickets.redeem(grant.ticket.subarray(0, TICKET_BYTES - 1)), null);
    assert.equal(tickets.redeem(Buffer.concat([grant.ticket, Buffer.alloc(1)])), null);
    assert.equal(tickets.redeem(grant.ticket)?.session, "s", "failed guesses do not spend the real ticket");
  });

  it("keeps a bounded number of tickets, dropping the oldest first", () => {
    const tickets = new PageTickets();
    const first = tickets.issue("s0");
    for (let i = 1; i <= 300; i += 1) tickets.issue(`s${i}`);
    assert.ok(tickets.size <= 256);
    assert.equal(tickets.redeem(first.ticket), null);
  });

  it("a grant travels as 96 bytes: ticket, key to the destination, key to the source", () => {
    const grant = new PageTickets().issue("s");
    const bytes = encodeGrant(grant);
    assert.equal(bytes.length, PAGE_GRANT_BYTES);
    assert.ok(same(bytes.subarray(0, 32), grant.ticket) && same(bytes.subarray(32, 64), grant.keys.to_destination) && same(bytes.subarray(64), grant.keys.to_source));
    const back = decodeGrant(bytes);
    assert.ok(same(back.ticket, grant.ticket) && same(back.keys.to_destination, grant.keys.to_destination) && same(back.keys.to_source, grant.keys.to_source));
    assert.throws(() => decodeGrant(bytes.subarray(1)), RangeError);
  });
});

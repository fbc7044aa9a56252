/** Reading a node's event stream in tests: every event kept, and a wait for one that matches. */
import type http from "node:http";
import { toolDialer, type Dialer } from "../src/node/mod.js";
import { SseParser, type SseEvent } from "../src/sse.js";

/** An open event stream. */
export interface EventTap {
  readonly events: SseEvent[];
  /**
   * Resolves with the first event (seen so far or later) that `match`
   * accepts; rejects if the stream ends first, or after `timeout_ms`
   * (default EVENT_WAIT_MS_DEFAULT) saying what the stream brought.
   */
  until(match: (e: SseEvent, data: Record<string, unknown>) => boolean, timeout_ms?: number): Promise<Record<string, unknown>>;
  close(): void;
}

/** How long {@link EventTap.until} waits by default: far past any event a test waits for, short of hanging the run. */
export const EVENT_WAIT_MS_DEFAULT = 120_000;

/** Opens `GET path` at `address` as this machine's client (or with `dialer`) and collects its events. */
export function tapEvents(address: string, path: string, options: { method?: string; body?: object; dialer?: Dialer } = {}): Promise<EventTap> {
  return new Promise((resolve, reject) => {
    const events: SseEvent[] = [];
    const waiters: { match: (e: SseEvent, d: Record<string, unknown>) => boolean; resolve: (d: Record<string, unknown>) => void; reject: (e: Error) => void }[] = [];
    let ended: Error | null = null;
    const data = (e: SseEvent): Record<string, unknown> => JSON.parse(e.data) as Record<string, unknown>;
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const req = (options.dialer ?? toolDialer()).request(address, {
      method: options.method ?? "GET",
      path,
      agent: false,
      headers: payload === undefined ? {} : { "content-type": "application/json", "content-length": payload.length },
    });
    req.on("response", (res: http.IncomingMessage) => {
      if (res.statusCode !== 200) {
        reject(new Error(`${path}: ${res.statusCode}`));
        res.resume();
        return;
      }
      const parser = new SseParser();
      res.on("data", (chunk: Buffer) => {
        for (const e of parser.push(chunk)) {
          events.push(e);
          for (const w of [...waiters]) {
            if (w.match(e, data(e))) {
              waiters.splice(waiters.indexOf(w), 1);
              w.resolve(data(e));
            }
          }
        }
      });
      const end = (): void => {
        ended = new Error(`the stream ${path} ended`);
        for (const w of waiters.splice(0)) w.reject(ended);
      };
      res.on("end", end);
      res.on("close", end);
      resolve({
        events,
        until(match, timeout_ms = EVENT_WAIT_MS_DEFAULT) {
          const seen = events.find((e) => match(e, data(e)));
          if (seen !== undefined) return Promise.resolve(data(seen));
          if (ended !== null) return Promise.reject(ended);
          return new Promise((res2, rej2) => {
            const timer = setTimeout(() => {
              const i = waiters.indexOf(w);
              if (i >= 0) waiters.splice(i, 1);
              const last = events.slice(-5).map((e) => e.event).join(", ");
              rej2(new Error(`no matching event on ${path} within ${timeout_ms} ms (${events.length} events came, the last: ${last || "none"})`));
            }, timeout_ms);
            const w = {
              match,
              resolve: (d: Record<string, unknown>) => {
                clearTimeout(timer);
                res2(d);
              },
              reject: (e: Error) => {
                clearTimeout(timer);
                rej2(e);
              },
            };
            waiters.push(w);
          });
        },
        close() {
          req.destroy();
        },
      });
    });
    req.on("error", reject);
    req.end(payload);
  });
}

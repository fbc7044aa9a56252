/** Reading a node's event stream in tests: every event kept, and a wait for one that matches. */
import type http from "node:http";
import { toolDialer, type Dialer } from "../src/node/mod.js";
import { SseParser, type SseEvent } from "../src/sse.js";

/** An open event stream. */
export interface EventTap {
  readonly events: SseEvent[];
  /** Resolves with the first event (seen so far or later) that `match` accepts; rejects if the stream ends first. */
  until(match: (e: SseEvent, data: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  close(): void;
}

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
        until(match) {
          const seen = events.find((e) => match(e, data(e)));
          if (seen !== undefined) return Promise.resolve(data(seen));
          if (ended !== null) return Promise.reject(ended);
          return new Promise((res2, rej2) => waiters.push({ match, resolve: res2, reject: rej2 }));
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

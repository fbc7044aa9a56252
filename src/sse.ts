/**
 * A parser for `text/event-stream` (Server-Sent Events, as the WHATWG HTML
 * standard defines them): fed the response body's bytes in whatever pieces the
 * network delivers, it returns the complete events. It does no I/O, so it is
 * tested by splitting a stream at every byte. The CLI reads the control API's
 * streams with it, and a node reads its peers' event streams (`GET /v1/events`).
 */
import { FerryError } from "./errors.js";

/** One dispatched event: its type (`message` unless named) and its data lines joined by `\n`. */
export interface SseEvent {
  event: string;
  data: string;
}

/**
 * Longest line the parser buffers. A control-API event is one output chunk
 * (at most 64 KiB of output, ~88 KiB as base64 in JSON); this leaves room for
 * much larger ones while keeping a broken or hostile server from growing the
 * client's memory without bound.
 */
export const SSE_LINE_CHARS_MAX = 16 * 1024 * 1024;

/** Largest data of one event (the sum of its data lines), for the same reason. */
export const SSE_EVENT_CHARS_MAX = 16 * 1024 * 1024;

/** Incremental SSE parser. */
export class SseParser {
  readonly #decoder = new TextDecoder("utf-8");
  #line = "";
  /** The last piece ended in CR: a LF starting the next piece belongs to that line end. */
  #after_cr = false;
  #first = true;
  #event = "";
  #data: string[] = [];
  #data_chars = 0;

  /** Feeds the next piece of the body; returns the events it completed. */
  push(chunk: Uint8Array): SseEvent[] {
    let text = this.#decoder.decode(chunk, { stream: true });
    if (this.#first && text.length > 0) {
      // A byte-order mark may start the stream; it is not part of the first line.
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      this.#first = false;
    }
    return this.#feed(text);
  }

  /**
   * The body ended. An event without its closing blank line is incomplete and
   * is dropped, as the standard says.
   */
  end(): SseEvent[] {
    const events = this.#feed(this.#decoder.decode());
    this.#line = "";
    this.#event = "";
    this.#data = [];
    this.#data_chars = 0;
    return events;
  }

  #feed(text: string): SseEvent[] {
    const events: SseEvent[] = [];
    let start = 0;
    if (this.#after_cr && text.length > 0) {
      if (text.charCodeAt(0) === 0x0a) start = 1;
      this.#after_cr = false;
    }
    for (let i = start; i < text.length; i += 1) {
      const c = text.charCodeAt(i);
      if (c !== 0x0a && c !== 0x0d) continue;
      const line = this.#line + text.slice(start, i);
      this.#line = "";
      if (c === 0x0d) {
        if (i + 1 < text.length) {
          if (text.charCodeAt(i + 1) === 0x0a) i += 1;
        } else {
          this.#after_cr = true;
        }
      }
      start = i + 1;
      const event = this.#takeLine(line);
      if (event !== null) events.push(event);
    }
    this.#line += text.slice(start);
    if (this.#line.length > SSE_LINE_CHARS_MAX) {
      throw new FerryError("ERR_CLUSTER_PROTOCOL", `an event-stream line is longer than ${SSE_LINE_CHARS_MAX} characters`);
    }
    return events;
  }

  #takeLine(line: string): SseEvent | null {
    if (line === "") return this.#dispatch();
    if (line.startsWith(":")) return null; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon >= 0 ? line.slice(0, colon) : line;
    let value = colon >= 0 ? line.slice(colon + 1) : "";
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.#event = value;
    else if (field === "data") {
      this.#data_chars += value.length + 1;
      if (this.#data_chars > SSE_EVENT_CHARS_MAX) {
        throw new FerryError("ERR_CLUSTER_PROTOCOL", `an event's data is longer than ${SSE_EVENT_CHARS_MAX} characters`);
      }
      this.#data.push(value);
    }
    // `id` and `retry` matter to a browser's automatic reconnection; ours
    // reconnects by output offsets instead, so they are ignored like unknown fields.
    return null;
  }

  #dispatch(): SseEvent | null {
    const had_data = this.#data.length > 0;
    const event: SseEvent = { event: this.#event === "" ? "message" : this.#event, data: this.#data.join("\n") };
    this.#event = "";
    this.#data = [];
    this.#data_chars = 0;
    return had_data ? event : null;
  }
}

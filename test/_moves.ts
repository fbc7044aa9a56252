/**
 * Moving a guest between processes in one test: its output collected, then
 * suspended, carried through an encoded image and restored.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { decodeImage, encodeImage, trustKeys } from "../src/image/mod.js";
import { GuestProcess, type ProcessIo } from "../src/runtime/mod.js";

/** Collects a process's output, and resolves `seen(text)` once stdout holds `text`. */
export function collector(stdin: ProcessIo["stdin"]): { io: ProcessIo; out: () => string; seen: (text: string) => Promise<void> } {
  const out: Uint8Array[] = [];
  const waiters: { text: string; resolve: () => void }[] = [];
  const text = (): string => Buffer.concat(out).toString();
  const check = (): void => {
    for (const w of waiters.splice(0)) {
      if (text().includes(w.text)) w.resolve();
      else waiters.push(w);
    }
  };
  return {
    io: {
      stdin,
      stdout: {
        kind: "callback",
        write: (b) => {
          out.push(b);
          check();
        },
      },
      stderr: { kind: "callback", write: () => undefined },
    },
    out: text,
    seen: (wanted) =>
      new Promise((resolve) => {
        waiters.push({ text: wanted, resolve });
        check();
      }),
  };
}

const signer = { key: generateKeyPairSync("ed25519").privateKey };

/** Suspends `proc`, moves it through an encoded, signed image into a new process of `wasm`, and returns that one. */
export async function moveThroughImage(proc: GuestProcess, io: ProcessIo, wasm: Uint8Array): Promise<GuestProcess> {
  const suspension = await proc.suspend();
  assert.ok(suspension !== null, "the guest ended before the suspend");
  const chunks = [...encodeImage(proc.image(suspension), { signer })].map((c) => Buffer.from(c));
  await proc.terminate();
  const image = decodeImage(Buffer.concat(chunks), { trust: trustKeys([signer.key]) });
  return GuestProcess.restore(image, wasm, io, { preopens: [] });
}


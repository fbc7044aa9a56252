/**
 * A guest whose module holds 320 KiB of data segments: enough that the
 * runtime, not the instantiation, writes them (src/runtime/_compiled.ts,
 * HELD_DATA_BYTES_MIN), and a standby (a move's destination, a restore, a
 * wake) starts from zero memory. It changes its first data byte ("f" to
 * "Z"), runs `wait` (where the test moves or hibernates it), then sums its
 * data and exits 0 only if every byte is as it left it, else 1.
 */
import { wat } from "../src/instrument/_wat.js";

/** Where the data starts; below it the waits keep their scratch. */
const DATA_AT = 4096;
const TAIL_AT = 400_000;

/** `imports` and `fields` are module fields (imports first); `wait` is code run between the change and the sum. */
export function dataGuest(wait: { imports: string; fields?: string; code: string }): Uint8Array {
  const text = "ferry-data".repeat(32 * 1024);
  const sum = (s: string): number => Buffer.from(s, "latin1").reduce((n, x) => n + x, 0);
  const expected = sum(text) - 0x66 + 0x5a + sum("tail");
  return wat(`(module
    ${wait.imports}
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 8)
    ${wait.fields ?? ""}
    (data (i32.const ${DATA_AT}) "${text}")
    (data (i32.const ${TAIL_AT}) "tail")
    (func (export "_start") (local $i i32) (local $s i32)
      (i32.store8 (i32.const ${DATA_AT}) (i32.const 0x5a))
      ${wait.code}
      (local.set $i (i32.const ${DATA_AT}))
      (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $i) (i32.const ${TAIL_AT + 4})))
        (local.set $s (i32.add (local.get $s) (i32.load8_u (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (call $exit (i32.ne (local.get $s) (i32.const ${expected})))))`);
}

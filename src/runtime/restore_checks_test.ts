/** imageMisfit: every way an image's state can fail to fit its module is named before the worker sees it. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { GlobalValue } from "../image/mod.js";
import type { InstrumentInfo } from "../instrument/mod.js";
import { imageMisfit } from "./_restore_checks.js";

const INFO = {
  instrumenter: "ferry-instrument/6",
  globals: [
    { export_name: "__ferry_global_0", type: "i32" },
    { export_name: "__ferry_global_1", type: "f64" },
  ],
} as InstrumentInfo;

const GLOBALS: GlobalValue[] = [
  { name: "__ferry_global_0", type: "i32", bits: 0xffff_ffffn },
  { name: "__ferry_global_1", type: "f64", bits: 0x7ff8_0000_0000_0001n },
];

function image(change: Partial<{ instrumenter: string; globals: GlobalValue[]; entry: string; stack_bytes: number }> = {}): Parameters<typeof imageMisfit>[0] {
  return {
    instrumenter: change.instrumenter ?? INFO.instrumenter,
    globals: change.globals ?? GLOBALS,
    stack: { entry: change.entry ?? "_start", asyncify: new Uint8Array(change.stack_bytes ?? 100) },
    memory: { size_bytes: 65536, pages: () => [] },
  };
}

test("an image that fits is accepted", () => {
  assert.equal(imageMisfit(image(), INFO, "_start"), null);
  assert.equal(imageMisfit(image({ globals: [...GLOBALS].reverse() }), INFO, "_start"), null, "order does not matter");
});

test("each misfit is named", () => {
  const [g0, g1] = GLOBALS as [GlobalValue, GlobalValue];
  const cases: Array<[string, ReturnType<typeof image>, RegExp]> = [
    ["another instrumenter", image({ instrumenter: "ferry-instrument/5" }), /instrumenter/],
    ["another entry", image({ entry: "main" }), /started through/],
    ["a stack larger than memory", image({ stack_bytes: 65536 }), /larger than its memory/],
    ["a global the module lacks", image({ globals: [g0, g1, { name: "x", type: "i32", bits: 0n }] }), /lacks/],
    ["a global missing", image({ globals: [g0] }), /lacks the module's global "__ferry_global_1"/],
    ["a global twice", image({ globals: [g0, g0, g1] }), /twice/],
    ["a global of another type", image({ globals: [{ ...g0, type: "i64" }, g1] }), /is i64; the module's is i32/],
    ["i32 bits over 32", image({ globals: [{ ...g0, bits: 1n << 32n }, g1] }), /not a i32 value/],
    ["negative bits", image({ globals: [g0, { ...g1, bits: -1n }] }), /not a f64 value/],
  ];
  for (const [what, img, message] of cases) assert.match(imageMisfit(img, INFO, "_start") ?? "(accepted)", message, what);
});

// mandel.ts - AssemblyScript example guest for Ferry: Mandelbrot zoom (f64).
//
// Usage: mandel [FRAMES]
//   FRAMES  number of frames, 1..1000 (default 30)
//
// Frame f renders a 320x240 grid zooming into the seahorse valley
// (scale 3 * 0.85^f, max iterations 200 + 20*f) and prints one line with the
// total iteration count, the number of escaped points and a running checksum
// (which also folds in the raw bits of f64 values, so floating-point state
// must survive a migration exactly). At the end it prints a 64x24 ASCII
// rendering of the last frame. stderr: one summary line. Exit status 0.
import { STDOUT, STDERR, put, putU64, putHex64, endLine, argU64, mix64 } from "./wasi";

const W: i32 = 320;
const H: i32 = 240;
const CX: f64 = -0.743643887037151;
const CY: f64 = 0.13182590420533;

const frames = <u32>argU64(1, 30, 1000);

function iterate(x0: f64, y0: f64, maxIter: i32): i32 {
  let x: f64 = 0, y: f64 = 0;
  let i = 0;
  while (i < maxIter) {
    const x2 = x * x, y2 = y * y;
    if (x2 + y2 > 4.0) break;
    y = 2.0 * x * y + y0;
    x = x2 - y2 + x0;
    i++;
  }
  return i;
}

put("mandel: frames=");
putU64(frames);
put(" size=");
putU64(W);
put("x");
putU64(H);
endLine(STDOUT);

let checksum: u64 = 0x9e3779b97f4a7c15;
let scale: f64 = 3.0;
let grand: u64 = 0;
for (let f: u32 = 1; f <= frames; f++) {
  scale *= 0.85;
  const maxIter = 200 + 20 * <i32>f;
  const step = scale / <f64>W;
  let iters: u64 = 0;
  let escaped: u32 = 0;
  let h: u64 = <u64>f;
  for (let py = 0; py < H; py++) {
    const y0 = CY + (<f64>py - <f64>H / 2) * step;
    let row: u64 = 0;
    for (let px = 0; px < W; px++) {
      const n = iterate(CX + (<f64>px - <f64>W / 2) * step, y0, maxIter);
      iters += <u64>n;
      if (n < maxIter) escaped++;
      row = row * 31 + <u64>n;
    }
    h = mix64(h ^ row ^ reinterpret<u64>(y0));
  }
  grand += iters;
  checksum = mix64(checksum ^ h ^ reinterpret<u64>(scale));
  put("frame ");
  putU64(f);
  put("/");
  putU64(frames);
  put(" iterations=");
  putU64(iters);
  put(" escaped=");
  putU64(escaped);
  put(" checksum=");
  putHex64(checksum);
  endLine(STDOUT);
}

// ASCII rendering of the last frame, 64x24 characters.
const shades = " .:-=+*#%@";
const maxIter = 200 + 20 * <i32>frames;
for (let row = 0; row < 24; row++) {
  for (let col = 0; col < 64; col++) {
    const x0 = CX + (<f64>col - 32) * (scale / 64);
    const y0 = CY + (<f64>row - 12) * (scale / 48);
    const n = iterate(x0, y0, maxIter);
    put(n >= maxIter ? "@" : shades.charAt(n % 9));
  }
  endLine(STDOUT);
}
put("done frames=");
putU64(frames);
put(" checksum=");
putHex64(checksum);
endLine(STDOUT);
put("mandel: summary frames=");
putU64(frames);
put(" iterations=");
putU64(grand);
put(" checksum=");
putHex64(checksum);
endLine(STDERR);

#!/bin/sh
# Rebuild every example guest module next to its source:
#   examples/c/NAME.c   -> examples/c/NAME.wasm   (clang, wasm32-wasi, wasi-libc)
#   examples/as/NAME.ts -> examples/as/NAME.wasm  (AssemblyScript, via npx asc)
# The built .wasm files are committed, so this is only needed after changing a
# source. Fails loudly if a tool is missing or a build fails.
#
# Environment overrides: CLANG (default clang), WASI_SYSROOT (default /usr,
# Debian's wasi-libc layout; use e.g. /opt/wasi-sdk/share/wasi-sysroot).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
CLANG=${CLANG:-clang}
WASI_SYSROOT=${WASI_SYSROOT:-/usr}

die() { echo "build.sh: error: $*" >&2; exit 1; }

command -v "$CLANG" >/dev/null 2>&1 ||
  die "'$CLANG' not found: install clang, lld and wasi-libc (Debian: clang lld wasi-libc libclang-rt-dev-wasm32) or set CLANG"
[ -e "$WASI_SYSROOT/lib/wasm32-wasi/libc.a" ] || [ -e "$WASI_SYSROOT/lib/wasm32-wasi/crt1-command.o" ] ||
  [ -e "$WASI_SYSROOT/lib/libc.a" ] ||
  die "no wasi-libc under WASI_SYSROOT=$WASI_SYSROOT (Debian: apt-get install wasi-libc)"
command -v npx >/dev/null 2>&1 || die "npx not found (needed for AssemblyScript)"
[ -e "$root/node_modules/assemblyscript/package.json" ] || die "assemblyscript missing: run 'npm install' in $root"

# -O2; debug info stripped (the name section is kept for readable traps);
# stack size only matters for recursion; --max-memory lets memhog reach 3 GiB.
CFLAGS="--target=wasm32-wasi --sysroot=$WASI_SYSROOT -O2 -Wall -Wextra -Wl,--strip-debug"

cc_wasm() { # name, extra flags...
  name=$1; shift
  echo "clang  c/$name.c -> c/$name.wasm"
  # shellcheck disable=SC2086
  "$CLANG" $CFLAGS "$@" -o "$here/c/$name.wasm" "$here/c/$name.c" || die "building c/$name.c failed"
}

cc_wasm compute
cc_wasm fileproc
cc_wasm memhog -Wl,--max-memory=4294967296
cc_wasm recurse -Wl,-z,stack-size=16777216 -Wl,--stack-first
cc_wasm sleeper
cc_wasm streams
cc_wasm pingpong
cc_wasm pipeline
cc_wasm selfmove
cc_wasm kvserver
cc_wasm flood
cc_wasm dirtier
cc_wasm dispatch
cc_wasm lookup
cc_wasm pause -Wl,--max-memory=4294967296

# AssemblyScript: stub runtime (no GC), top-level code exported as _start,
# custom abort so the only imports are wasi_snapshot_preview1.
as_wasm() { # name
  name=$1
  echo "asc    as/$name.ts -> as/$name.wasm"
  (cd "$here/as" && npx --no-install asc "$name.ts" -O2 --runtime stub --exportStart _start \
    --use abort=wasi/ferryAbort -o "$name.wasm") || die "building as/$name.ts failed"
}

as_wasm sieve
as_wasm mandel
as_wasm ponger

# Every module must import only wasi_snapshot_preview1 (and Ferry's own `ferry`
# module: pid, send, recv, migrate) and export _start + memory.
node --input-type=module - "$here"/c/*.wasm "$here"/as/*.wasm <<'JS' || die "module check failed"
import { readFileSync } from "node:fs";
let bad = 0;
for (const f of process.argv.slice(2)) {
  const m = new WebAssembly.Module(readFileSync(f));
  const imports = WebAssembly.Module.imports(m);
  const exports = WebAssembly.Module.exports(m).map((e) => `${e.name}:${e.kind}`);
  const ferry = ["pid", "send", "recv", "migrate"];
  const foreign = imports.filter((i) => i.module !== "wasi_snapshot_preview1" && !(i.module === "ferry" && ferry.includes(i.name)));
  const missing = ["_start:function", "memory:memory"].filter((e) => !exports.includes(e));
  if (foreign.length || missing.length) {
    bad++;
    console.error(`${f}: foreign imports ${JSON.stringify(foreign)}, missing exports ${missing}`);
  }
}
process.exit(bad ? 1 : 0);
JS
echo "build.sh: all examples built"

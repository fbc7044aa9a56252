/**
 * The `ferry` imports a benchmark gives a module it runs under node:wasi:
 * Ferry's own calls answered as `ferry exec` answers them outside a cluster
 * (examples that a test can hold, examples/c/hold.h, import them and find
 * nothing to wait for), and an instrumented module's polls answered with a
 * fixed budget that never asks for a safe point, so that the guest's own
 * code is measured, not Ferry's host.
 */

/** Units between two polls: about a quarter of a millisecond of a tight loop, as Ferry's host settles on. */
export const STUB_BUDGET = 50_000;

const ENOSYS = 52;

export function ferryStub(): Record<string, () => number> {
  return {
    pid: () => 0,
    send: () => ENOSYS,
    recv: () => ENOSYS,
    migrate: () => ENOSYS,
    poll: () => STUB_BUDGET,
    poll_restartable: () => STUB_BUDGET,
  };
}

/**
 * Looking at the first bytes of a socket without reading them, through the
 * native addon (recv with MSG_PEEK). It lives with the other memory-layer users
 * of the addon; the node's front uses it to sort connections.
 */
import { nativeAddon } from "../native.js";

/** Bytes waiting on socket `fd`, left in place: empty if none yet, null if the peer closed. */
export type SocketPeek = (fd: number, max_bytes: number) => Buffer | null;

/** The peek of the native addon, or null where the addon is not built. */
export function socketPeek(): SocketPeek | null {
  const n = nativeAddon();
  if (!("addon" in n)) return null;
  const addon = n.addon;
  return (fd, max_bytes) => addon.peek(fd, max_bytes);
}

/** Client side of the node's HTTP upgrades (migration data, page channels, links, connections). */
import { FerryError } from "../errors.js";
import type { PageChannel } from "../migration/mod.js";
import type { ExpectedPeer } from "../trust/mod.js";
import { ANY_NODE, type Dialer } from "./_dialer.js";
import { requestError, StaleConnection } from "./_http.js";

/**
 * Longest wait for a node's answer to an upgrade (connecting is timed by the
 * dialer): a page channel's upgrade may wait up to 30 s for its session to be
 * set up at the destination (`_postcopy.ts`), so a little more than that.
 */
export const UPGRADE_TIMEOUT_MS = 35_000;

/**
 * Opens an upgraded connection to the node at `address`, which must be
 * `expect`. It is made of a kept-alive connection to that peer when one is
 * idle (the upgrade takes it out of the pool): a move then opens no TLS
 * connection of its own, whose handshake cost both busy nodes 20-90 ms of
 * a skewed batch's first moves. A kept-alive connection closed under the
 * upgrade before any answer is left for a new one, once; `fresh` asks for a
 * new one at once (a socket handed to a native thread).
 */
export async function upgrade(dialer: Dialer, address: string, path: string, protocol: string, expect: ExpectedPeer = ANY_NODE, fresh = false): Promise<PageChannel> {
  if (fresh) return await upgradeOn(dialer, address, path, protocol, expect, false);
  try {
    return await upgradeOn(dialer, address, path, protocol, expect, undefined);
  } catch (err: unknown) {
    if (!(err instanceof StaleConnection)) throw err;
    // Nothing reached the peer's upgrade handler on a connection it had closed: asking again on a new one is safe.
    return await upgradeOn(dialer, address, path, protocol, expect, false);
  }
}

function upgradeOn(dialer: Dialer, address: string, path: string, protocol: string, expect: ExpectedPeer, agent: false | undefined): Promise<PageChannel> {
  return new Promise((resolve, reject) => {
    const req = dialer.request(address, { path, agent, headers: { connection: "Upgrade", upgrade: protocol } }, expect);
    const deadline = setTimeout(() => req.destroy(new Error(`no answer to the ${protocol} upgrade within ${UPGRADE_TIMEOUT_MS} ms`)), UPGRADE_TIMEOUT_MS);
    req.on("close", () => clearTimeout(deadline));
    req.on("upgrade", (_res, socket, head) => {
      clearTimeout(deadline);
      socket.setNoDelay(true);
      // A pooled connection keeps the pool's idle timeout; an upgraded one is idle as long as its owner likes.
      socket.setTimeout(0);
      resolve({ socket, head });
    });
    let answered = false;
    req.on("response", (res) => {
      answered = true;
      res.resume();
      if (res.statusCode === 404) reject(new FerryError("ERR_NO_SUCH_SESSION", `node ${address} has no ${path}`));
      else reject(new FerryError("ERR_PEER", `node ${address} refused a ${protocol} connection (HTTP ${res.statusCode})`));
    });
    req.on("error", (err: NodeJS.ErrnoException) => reject(requestError(req, answered, address, err)));
    req.end();
  });
}

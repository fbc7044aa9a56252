/** Client side of the node's HTTP upgrades (migration data, page channels, links, connections). */
import { FerryError } from "../errors.js";
import type { PageChannel } from "../migration/mod.js";
import type { ExpectedPeer } from "../trust/mod.js";
import { ANY_NODE, type Dialer } from "./_dialer.js";
import { peerError } from "./_http.js";

/**
 * Longest wait for a node's answer to an upgrade (connecting is timed by the
 * dialer): a page channel's upgrade may wait up to 30 s for its session to be
 * set up at the destination (`_postcopy.ts`), so a little more than that.
 */
export const UPGRADE_TIMEOUT_MS = 35_000;

/** Opens an upgraded connection to the node at `address`, which must be `expect`. */
export function upgrade(dialer: Dialer, address: string, path: string, protocol: string, expect: ExpectedPeer = ANY_NODE): Promise<PageChannel> {
  return new Promise((resolve, reject) => {
    const req = dialer.request(address, { path, agent: false, headers: { connection: "Upgrade", upgrade: protocol } }, expect);
    const deadline = setTimeout(() => req.destroy(new Error(`no answer to the ${protocol} upgrade within ${UPGRADE_TIMEOUT_MS} ms`)), UPGRADE_TIMEOUT_MS);
    req.on("close", () => clearTimeout(deadline));
    req.on("upgrade", (_res, socket, head) => {
      clearTimeout(deadline);
      socket.setNoDelay(true);
      resolve({ socket, head });
    });
    req.on("response", (res) => {
      res.resume();
      if (res.statusCode === 404) reject(new FerryError("ERR_NO_SUCH_SESSION", `node ${address} has no ${path}`));
      else reject(new FerryError("ERR_PEER", `node ${address} refused a ${protocol} connection (HTTP ${res.statusCode})`));
    });
    req.on("error", (err) => reject(peerError(address, err)));
    req.end();
  });
}

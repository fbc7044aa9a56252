/** Client side of the node's HTTP upgrades (migration data, page channels, links, connections). */
import { FerryError } from "../errors.js";
import type { PageChannel } from "../migration/mod.js";
import type { ExpectedPeer } from "../trust/mod.js";
import { ANY_NODE, type Dialer } from "./_dialer.js";
import { peerError } from "./_http.js";

/** Opens an upgraded connection to the node at `address`, which must be `expect`. */
export function upgrade(dialer: Dialer, address: string, path: string, protocol: string, expect: ExpectedPeer = ANY_NODE): Promise<PageChannel> {
  return new Promise((resolve, reject) => {
    const req = dialer.request(address, { path, agent: false, headers: { connection: "Upgrade", upgrade: protocol } }, expect);
    req.on("upgrade", (_res, socket, head) => {
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

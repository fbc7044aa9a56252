/** Client side of the node's HTTP upgrades (migration data, page channels, links, connections). */
import http from "node:http";
import { FerryError } from "../errors.js";
import type { PageChannel } from "../migration/mod.js";

/** Opens an upgraded connection to the node at `address`. */
export function upgrade(address: string, path: string, protocol: string): Promise<PageChannel> {
  const i = address.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: address.slice(0, i),
      port: Number(address.slice(i + 1)),
      path,
      agent: false,
      headers: { connection: "Upgrade", upgrade: protocol },
    });
    req.on("upgrade", (_res, socket, head) => {
      socket.setNoDelay(true);
      resolve({ socket, head });
    });
    req.on("response", (res) => {
      res.resume();
      if (res.statusCode === 404) reject(new FerryError("ERR_NO_SUCH_SESSION", `node ${address} has no ${path}`));
      else reject(new FerryError("ERR_PEER", `node ${address} refused a ${protocol} connection (HTTP ${res.statusCode})`));
    });
    req.on("error", (err) => reject(new FerryError("ERR_PEER_UNREACHABLE", `node ${address} is unreachable: ${err.message}`, { cause: err })));
    req.end();
  });
}

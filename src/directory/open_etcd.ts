/**
 * The etcd backend, loaded only when asked for: the etcd3 client and its
 * gRPC stack take a second or more to load on a busy machine, which every
 * node daemon and CLI command would otherwise pay without using etcd.
 */
import type { EtcdDirectory, EtcdOptions } from "./etcd.js";

/** A directory on etcd (see etcd.ts); the client is loaded on the first call. */
export async function openEtcdDirectory(options: EtcdOptions): Promise<EtcdDirectory> {
  const { EtcdDirectory: Etcd } = await import("./etcd.js");
  return new Etcd(options);
}

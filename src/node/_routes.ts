/** The control API's routes (docs/cluster.md). */
import type http from "node:http";
import * as v from "valibot";
import { FerryError } from "../errors.js";
import { parse } from "../validate.js";
import { pidHome } from "./names.js";
import type { FerryNode } from "./node.js";
import { describeProcess, type HomeRecord } from "./process_table.js";
import { bodyChunks, forward, FORWARD_TIMEOUT_MS, readJson, readRequest, requestJson, sendError, sendJson } from "./_http.js";
import { parseBatch } from "./_links.js";
import { nodeNamed } from "./_dialer.js";
import { createToken, join } from "./_join.js";
import { PeerAnnounceSchema } from "./_join_schemas.js";
import { peerIdentity, type Identity } from "../trust/mod.js";
import { admitRun } from "./_admission.js";
import { ListQuerySchema, MetricsQuerySchema, MigrateQuerySchema, MigrateRequestSchema, OutputQuerySchema, queryOf, RunRequestSchema, SendRequestSchema } from "./_api_schemas.js";
import { ExitReportSchema, LocationSchema, OutputChunksSchema } from "./_internal_schemas.js";
import { serveEvents } from "./_event_stream.js";
import { errorField } from "../log/mod.js";
import { checkMigrationTarget, checkStartHere, loadRoute, placeRun } from "./_load_routes.js";
import { isDashboardPath, serveDashboard } from "./dashboard.js";
import { answerFromDirectory, fromDirectory, killWithoutHome } from "./_directory_routes.js";
import { checkpointInternalRoute, checkpointProcessRoute } from "./_checkpoint_routes.js";
import { movedHome } from "./_home_failover.js";
import { replicaRoute } from "./_output_replica.js";
import { refusesOutput } from "./_fence.js";
import { relayLog, sseEvent, startOutputStream } from "./_output_stream.js";
import { outputWithoutHome, serveReplicaOutput } from "./_replica_logs.js";

/** How long a node waits for a peer to start a process it forwarded (the peer may instrument the module first). */
const START_TIMEOUT_MS = 120_000;

/** Refusals of a placed run that say the view was stale, not that the request is wrong: it is started on the node asked instead. */
const PLACE_RETRY_HERE = new Set(["ERR_PEER_UNREACHABLE", "ERR_NODE_DRAINING", "ERR_QUOTA", "ERR_NO_SUCH_NODE"]);

/** Entries of one peer's answer to `GET /v1/processes?local=1` or `GET /v1/links?local=1`: more than any node holds. */
const PEER_ENTRIES_MAX = 100_000;

/** A peer's list, passed on as it is (the client reads it), but a list of bounded length. */
const PeerList = v.pipe(v.array(v.unknown()), v.maxLength(PEER_ENTRIES_MAX));

/**
 * Handles one control request. `as`: who makes it when that is not the
 * certificate of the connection (a dashboard session, `dashboard.ts`).
 */
export async function route(node: FerryNode, req: http.IncomingMessage, res: http.ServerResponse, as?: Identity | null): Promise<void> {
  try {
    const url = requestUrl(req);
    // The dashboard checks its own sessions, then comes back here for the control API requests it allows.
    if (as === undefined && isDashboardPath(url.pathname)) return await serveDashboard(node, url, req, res, (r, s, who) => route(node, r, s, who));
    const parts = url.pathname.split("/").filter((p) => p !== "");
    const method = req.method ?? "GET";
    const metrics = parts.length === 1 && parts[0] === "metrics";
    if (parts[0] !== "v1" && !metrics) throw new FerryError("ERR_NOT_FOUND", `no such path ${url.pathname}`);
    const [, what, id, sub] = parts;
    // A joiner has no certificate yet: its token is its credential.
    if (what === "join" && method === "POST" && id === undefined) return await join(node, req, res);
    const peer = as !== undefined ? as : node.tls === null ? null : peerIdentity(req.socket);
    if (node.tls !== null && peer === null) {
      throw new FerryError(
        "ERR_UNAUTHENTICATED",
        "this node serves only members of its cluster: connect with a certificate its CA signed (`ferry up` writes one for this machine's user; elsewhere, `ferry token create --client` on a member, then `ferry login TOKEN`)",
      );
    }
    // A scraper reads metrics, and nothing else (docs/trust.md).
    if (peer?.role === "scrape" && !(metrics && method === "GET")) throw new FerryError("ERR_FORBIDDEN", `scrape ${peer.name} may read GET /metrics only, not ${method} ${url.pathname}`);
    if (metrics) {
      if (method !== "GET") throw new FerryError("ERR_NOT_FOUND", `no ${method} on /metrics`);
      return await serveMetrics(node, url, req, res);
    }
    if (what === "events" && method === "GET" && id === undefined) return await serveEvents(node, url, req, res);
    if (what === "internal" && peer !== null && peer.role !== "node") throw new FerryError("ERR_FORBIDDEN", `${url.pathname} is for the cluster's nodes only, not for ${peer.role} ${peer.name}`);
    if (await loadRoute(node, { method, what, id, sub }, req, res, peer)) return;
    if (what === "tokens" && method === "POST" && id === undefined) return await createToken(node, req, res);
    if (what === "node" && method === "GET" && id === undefined) return sendJson(res, 200, node.info());
    if (what === "nodes" && method === "GET" && id === undefined) return await nodes(node, res);
    if (what === "modules" && id !== undefined && sub === undefined) return await modules(node, method, id, req, res);
    if (what === "processes" && id === undefined) {
      if (method === "GET") return await listProcesses(node, url, res);
      if (method === "POST") return await run(node, req, res);
    }
    if (what === "processes" && id !== undefined && sub === "send" && method === "POST") return await sendMessage(node, id, req, res);
    if (what === "processes" && id !== undefined) return await processRoute(node, method, id, sub, url, req, res);
    if (what === "links" && method === "GET" && id === undefined) return await listLinks(node, url, res);
    if (what === "internal" && id === "peers" && method === "POST" && parts[3] === undefined) return await addPeer(node, req, res);
    if (what === "internal" && id !== undefined) return await internalRoute(node, method, id, parts[3], req, res, peer);
    throw new FerryError("ERR_NOT_FOUND", `no such path ${method} ${url.pathname}`);
  } catch (err: unknown) {
    sendError(res, err);
  }
}

/** The request's URL; one that does not parse is the client's fault, not the node's. */
function requestUrl(req: http.IncomingMessage): URL {
  try {
    return new URL(req.url ?? "/", "http://node");
  } catch (err: unknown) {
    throw new FerryError("ERR_BAD_REQUEST", `cannot read the request's path ${JSON.stringify(req.url)}`, { cause: err });
  }
}

async function nodes(node: FerryNode, res: http.ServerResponse): Promise<void> {
  const self = { ...node.info(), up: true };
  // With a directory, each node's state is its verdict (alive: it holds its lease); without one, null.
  const members = node.cluster?.membership.members() ?? [];
  // Load as this node's view has it (load.ts): measured here, gossiped for the others, with its age.
  const loads = node.load.rows();
  const stateOf = (name: string | null, address: string): "alive" | "dead" | null =>
    node.cluster === null ? null : (members.find((m) => (name !== null ? m.name === name : m.address === address))?.state ?? null);
  const peers = (await node.peerInfos()).map((p) => {
    if (p.up) return { name: p.name, address: p.address, up: true, state: stateOf(p.name, p.address), processes: p.processes, page_tracker: p.page_tracker?.name ?? null, post_copy: p.post_copy?.available ?? null, os_pid: p.os_pid ?? null, load: loads.get(p.name) ?? null };
    const name = members.find((m) => m.address === p.address)?.name ?? null;
    return { name, address: p.address, up: false, state: stateOf(name, p.address), processes: null, page_tracker: null, post_copy: null, os_pid: null };
  });
  const listed = new Set([self.name, ...peers.map((p) => p.name)]);
  // Members the directory knows that are not among the peers (none answered for them): listed with their state.
  const others = members
    .filter((m) => !listed.has(m.name))
    .map((m) => ({ name: m.name, address: m.address, up: false, state: m.state, processes: null, page_tracker: null, post_copy: null, os_pid: null, load: null }));
  sendJson(res, 200, [
    { name: self.name, address: self.address, up: true, state: node.cluster === null ? null : "alive", processes: self.processes, page_tracker: self.page_tracker.name, post_copy: self.post_copy.available, os_pid: self.os_pid, load: loads.get(self.name) ?? null },
    ...peers,
    ...others,
  ]);
}

async function modules(node: FerryNode, method: string, sha256: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (method === "HEAD") {
    res.writeHead(node.modules.has(sha256) ? 200 : 404).end();
    return;
  }
  if (method === "PUT") {
    // Streamed to disk while hashed: a module is never held in memory whole.
    const created = await node.modules.putStream(sha256, bodyChunks(req, node.limits.module_bytes_max, "ERR_MODULE_TOO_LARGE"), node.limits.module_bytes_max);
    sendJson(res, created ? 201 : 200, { module_sha256: sha256 });
    return;
  }
  if (method === "GET") {
    const bytes = node.modules.get(sha256);
    res.writeHead(200, { "content-type": "application/wasm", "content-length": bytes.length }).end(bytes);
    return;
  }
  throw new FerryError("ERR_NOT_FOUND", `no ${method} on modules`);
}

async function run(node: FerryNode, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const body = await readRequest(req, RunRequestSchema);
  const placed = await placeRun(node, body);
  if (placed !== null) {
    try {
      const answer = (await requestJson(node.dialer, await node.addressOf(placed.node), "POST", "/v1/processes", { body: { ...body, node: placed.node }, timeout_ms: START_TIMEOUT_MS, expect: nodeNamed(placed.node), once: true })) as { pid?: unknown };
      node.events.publish({ type: "load.placed", pid: String(answer.pid), to: placed.node, detail: placed.detail });
      sendJson(res, 201, answer);
      return;
    } catch (err: unknown) {
      // The view was stale (the node went down, was drained, is full): start it here if it may.
      if (!(err instanceof FerryError && PLACE_RETRY_HERE.has(err.code))) throw err;
      node.log.info({ to: placed.node, err: errorField(err) }, `placed a process on ${placed.node}, which did not take it: starting it here`);
    }
  }
  if (body.node !== undefined && body.node !== node.name) {
    const address = await node.addressOf(body.node);
    // The peer may have to instrument the module first: seconds for a large one. It applies its own limits and policy.
    sendJson(res, 201, await requestJson(node.dialer, address, "POST", "/v1/processes", { body, timeout_ms: START_TIMEOUT_MS, expect: nodeNamed(body.node), once: true }));
    return;
  }
  checkStartHere(node, body.requires);
  // A node that has not joined its directory yet starts nothing: its new processes must not be taken for its old ones.
  await node.joined;
  const { request, preopens } = admitRun(node, body);
  const record = await node.table.start(request, preopens);
  // Answered once the directory has its record: a node that dies right after leaves its process known to the cluster.
  await node.cluster?.written(record.pid);
  sendJson(res, 201, { pid: record.pid, node: record.node, listen: record.net?.addresses ?? [] });
}

async function listProcesses(node: FerryNode, url: URL, res: http.ServerResponse): Promise<void> {
  const query = parse(ListQuerySchema, queryOf(url), "query");
  const local = node.table.homes().map(describeProcess);
  if (query.local === "1") return sendJson(res, 200, local);
  const remote = await Promise.all(
    node.peers.map(async (address) => {
      try {
        return parse(PeerList, await requestJson(node.dialer, address, "GET", "/v1/processes?local=1"), `node ${address}'s process list`);
      } catch (err: unknown) {
        // A peer that is down (or answers nonsense) has no processes to list; `ferry nodes` says which are down.
        node.log.debug({ address, err: errorField(err) }, "a peer did not list its processes");
        return [];
      }
    }),
  );
  const listed = [...local, ...remote.flat()];
  sendJson(res, 200, [...listed, ...(await fromDirectory(node, listed))]);
}

/** Per-pair link traffic across the cluster (`?local=1`: this node's processes only). */
async function listLinks(node: FerryNode, url: URL, res: http.ServerResponse): Promise<void> {
  const query = parse(ListQuerySchema, queryOf(url), "query");
  const local = node.links.report();
  if (query.inspect === "1") return sendJson(res, 200, node.links.inspect());
  if (query.local === "1") return sendJson(res, 200, local);
  // A peer that is down (or answers nonsense) has no links to list.
  const remote = await Promise.all(
    node.peers.map((address) =>
      requestJson(node.dialer, address, "GET", "/v1/links?local=1").then(
        (r) => parse(PeerList, r, `node ${address}'s links`),
        (err: unknown) => {
          node.log.debug({ address, err: errorField(err) }, "a peer did not list its links");
          return [];
        },
      ),
    ),
  );
  sendJson(res, 200, [...local, ...remote.flat()]);
}

/** `ferry send`: one message to a process from outside, delivered exactly once. */
async function sendMessage(node: FerryNode, pid: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const body = await readRequest(req, SendRequestSchema);
  const data = body.data !== undefined ? Buffer.from(body.data, "utf8") : Buffer.from(body.data_base64 ?? "", "base64");
  await node.links.sendFromClient(pid, data);
  sendJson(res, 200, { pid, bytes: data.length });
}

async function processRoute(
  node: FerryNode,
  method: string,
  pid: string,
  sub: string | undefined,
  url: URL,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const record = node.table.home(pid);
  if (sub === "migrate" && method === "POST") {
    if (node.table.running(pid) !== undefined) {
      const query = parse(MigrateQuerySchema, queryOf(url), "query");
      // Checked before anything is answered: a bad request is a 400, not an error event.
      const body = await readRequest(req, MigrateRequestSchema);
      await checkMigrationTarget(node, pid, body.to);
      if (query.progress !== "1") return sendJson(res, 200, await node.migrateOut(pid, body));
      // Progress as server-sent events, then the result (or the error) as the last event.
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      try {
        sseEvent(res, "result", await node.migrateOut(pid, body, (p) => sseEvent(res, "progress", p)));
      } catch (err: unknown) {
        sseEvent(res, "error", { code: err instanceof FerryError ? err.code : "ERR_INTERNAL", message: err instanceof Error ? err.message : String(err) });
      }
      res.end();
      return;
    }
    if (record !== undefined) {
      if (record.exit !== null) throw new FerryError("ERR_PROCESS_STATE", `${pid} has ended (${record.state}); there is nothing to move`);
      // Loop guard: a home that thinks the process runs here, but it does not.
      if (record.node === node.name) throw new FerryError("ERR_PROCESS_STATE", `${pid} is ${record.state}, not running on ${node.name}`);
      return forward(node.dialer, req, res, await node.addressOf(record.node), nodeNamed(record.node), null);
    }
  }
  if (await checkpointProcessRoute(node, method, pid, sub, req, res)) return;
  if (record === undefined) {
    const home = pidHome(pid);
    if (home === undefined || home === node.name) throw new FerryError("ERR_NO_SUCH_PROCESS", `no process ${pid}`);
    // Its home is dead and failover gave it a new one: that node answers for it.
    const moved = node.cluster !== null && node.cluster.isDead(home) ? await movedHome(node, pid, home) : null;
    // Claimed by this node, which has not taken the home over yet: answered here as for a dead home (never forwarded to itself).
    if (moved !== null && moved !== node.name) return forward(node.dialer, req, res, await node.addressOf(moved), nodeNamed(moved), sub === undefined && method === "GET" ? FORWARD_TIMEOUT_MS : null);
    // Its home is dead: what the directory records answers a look and a wait (the rest needs the home).
    if (node.cluster !== null && node.cluster.isDead(home) && method === "GET" && (sub === undefined || sub === "wait")) {
      return await answerFromDirectory(node, pid, sub, res);
    }
    if (sub === "output" && method === "GET" && node.cluster !== null) {
      // Its home is dead, or does not answer: the keeper of its checkpoints holds a replica of its output.
      if (node.cluster.isDead(home)) return await outputWithoutHome(node, pid, home, url, req, res);
      return forward(node.dialer, req, res, await node.addressOf(home), nodeNamed(home), null, () => outputWithoutHome(node, pid, home, url, req, res));
    }
    if (sub === undefined && method === "DELETE" && node.cluster !== null) {
      // A kill with its home dead or not answering: the home that took its place, or its runner (docs/directory.md).
      if (node.cluster.isDead(home)) return await killWithoutHome(node, pid, req, res);
      return forward(node.dialer, req, res, await node.addressOf(home), nodeNamed(home), null, () => killWithoutHome(node, pid, req, res));
    }
    // Only a look at the process is a short exchange; wait, output, kill and migrate last as long as they must.
    const timeout_ms = sub === undefined && method === "GET" ? FORWARD_TIMEOUT_MS : null;
    // A home that does not answer (or dies before it answers a wait): the directory answers a look and a wait, as once it is declared dead.
    const unreachable = node.cluster !== null && method === "GET" && (sub === undefined || sub === "wait") ? () => answerFromDirectory(node, pid, sub, res) : undefined;
    forward(node.dialer, req, res, await node.addressOf(home), nodeNamed(home), timeout_ms, unreachable);
    return;
  }
  if (sub === undefined && method === "GET") return sendJson(res, 200, describeProcess(record));
  if (sub === undefined && method === "DELETE") {
    if (record.exit === null) {
      // It may be arriving here (a restore after a failover, a move's last step): killed the moment it starts.
      if (record.node === node.name) await node.table.killArriving(pid, record.done, ARRIVAL_WAIT_MS);
      else await requestJson(node.dialer, await node.addressOf(record.node), "DELETE", `/v1/internal/processes/${pid}`, { expect: nodeNamed(record.node) });
    }
    return sendJson(res, 200, { pid, status: await record.done });
  }
  if (sub === "wait" && method === "GET") return sendJson(res, 200, { status: await record.done });
  if (sub === "output" && method === "GET") return streamOutput(record, url, req, res);
  throw new FerryError("ERR_NOT_FOUND", `no such path ${method} ${url.pathname}`);
}

/** How long a kill at a home waits for the process to start on the node the home names (a restore takes a whole image's rebuild). */
const ARRIVAL_WAIT_MS = 60_000;

/** Node-to-node endpoints: output relay, exit and location reports, kill. */
async function internalRoute(
  node: FerryNode,
  method: string,
  what: string,
  pid: string | undefined,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  peer: Identity | null,
): Promise<void> {
  if (pid === undefined) throw new FerryError("ERR_NOT_FOUND", "no pid");
  if (what === "processes" && method === "DELETE") {
    await node.table.kill(pid);
    return sendJson(res, 200, { pid });
  }
  if (what === "running" && method === "GET") return sendJson(res, 200, { pid, running: node.table.running(pid) !== undefined });
  if (await checkpointInternalRoute(node, method, what, pid, req, res, peer)) return;
  if (what === "output-replica" && method === "GET") return await serveReplicaOutput(node, pid, requestUrl(req), req, res);
  if (await replicaRoute(node, method, what, pid, req, res, peer)) return;
  if (what === "lanes" && method === "POST") {
    // Lanes are plain TCP through the front, with keys handed over here: nodes with TLS only (docs/links.md, "Lanes").
    if (node.tls === null) throw new FerryError("ERR_BAD_REQUEST", `node ${node.name} has no TLS: it takes no lanes`);
    return sendJson(res, 200, node.links.laneDoors.issue(pid, peer?.name ?? null));
  }
  if (what === "deliver" && method === "POST") {
    const batch = parseBatch(await readJson(req));
    node.metrics.linkReceived(peer?.name ?? "unknown", batch.messages.length, batch.messages.reduce((n, m) => n + m.data.length, 0));
    return sendJson(res, 200, await node.links.receive(pid, batch));
  }
  const record = node.table.home(pid);
  if (record === undefined) throw new FerryError("ERR_NO_SUCH_PROCESS", `node ${node.name} is not home to ${pid}`);
  if (what === "output" && method === "POST") {
    // A runner a failover took the process from (cut off, not dead) writes nothing more into its log.
    if (peer !== null && refusesOutput(record, peer.name)) throw new FerryError("ERR_NOT_RUNNER", `${pid} was resumed on ${record.node}; output from ${peer.name} is refused`);
    for (const c of await readRequest(req, OutputChunksSchema)) {
      if (!record.output.append({ stream: c.stream, offset: c.offset, data: Buffer.from(c.data, "base64") })) {
        throw new FerryError("ERR_OUTPUT_GAP", `output of ${pid} at ${c.stream} offset ${c.offset} arrived before what precedes it`);
      }
    }
    return sendJson(res, 200, { stdout: record.output.size("stdout"), stderr: record.output.size("stderr") });
  }
  if (what === "exit" && method === "POST") {
    const report = await readRequest(req, ExitReportSchema);
    // A node reports only its own processes' ends: it cannot speak for another.
    if (peer !== null && peer.name !== report.node) throw new FerryError("ERR_FORBIDDEN", `node ${peer.name} cannot report an end on behalf of node ${report.node}`);
    node.table.acceptExit(record, report.node, report.moves, report.status);
    return sendJson(res, 200, { pid });
  }
  if (what === "location" && method === "POST") {
    const location = await readRequest(req, LocationSchema);
    // Durable before the answer: the mover drops its copy once it has it.
    await node.table.acceptLocation(record, peer?.name ?? null, location.node, location.moves);
    return sendJson(res, 200, { pid, node: record.node, moves: record.moves });
  }
  throw new FerryError("ERR_NOT_FOUND", `no internal ${method} ${what}`);
}

/**
 * `GET /metrics`: this node's metrics in Prometheus' text format; with
 * `?node=NAME`, that node's (forwarded, as any request about another node).
 */
async function serveMetrics(node: FerryNode, url: URL, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const query = parse(MetricsQuerySchema, queryOf(url), "query");
  if (query.node !== undefined && query.node !== node.name) {
    // Only this one node's answer goes back: the peer is asked for its own.
    req.url = "/metrics";
    return forward(node.dialer, req, res, await node.addressOf(query.node), nodeNamed(query.node));
  }
  const body = await node.metrics.text();
  res.writeHead(200, { "content-type": node.metrics.contentType, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** A peer tells where it answers (a node that joined after this one started). */
async function addPeer(node: FerryNode, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  node.addPeers([(await readRequest(req, PeerAnnounceSchema)).address]);
  sendJson(res, 200, { peers: node.peers });
}


/** `GET /v1/processes/PID/output` at its home: its log from the offsets asked for; with follow, live until it ends. */
function streamOutput(record: HomeRecord, url: URL, req: http.IncomingMessage, res: http.ServerResponse): void {
  // Whole, non-negative offsets only: a fractional one once made the relay spin for ever.
  const query = parse(OutputQuerySchema, queryOf(url), "query");
  startOutputStream(res);
  relayLog(record.output, () => record.exit, { stdout: query.stdout, stderr: query.stderr }, query.follow === "1", req, res);
}

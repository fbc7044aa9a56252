/**
 * Ferry's dashboard page. It logs in with the one-time token in the URL's
 * fragment (`ferry dashboard` prints it; the fragment never reaches a server
 * log), then polls its node only while it is visible and follows the
 * cluster's events while it is open: a node whose dashboard nobody has open
 * does nothing for it.
 */
import { render } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, setCsrf, type ClusterEvent, type LinkPair, type NodeStats, type Overview, type ProcessPage, type ProcessRow, type Session } from "./api.js";
import { Nodes, SAMPLES_MAX, type Sample } from "./nodes.js";
import { Processes } from "./processes.js";
import { foldMigration, Migrations, type Migration } from "./migrations.js";
import { graphPids, LinkGraph } from "./links.js";
import { MigrateDialog } from "./dialog.js";

/** Time between polls while the page is visible. */
const POLL_MS = 2000;
/** Events listed at the bottom of the page. */
const EVENTS_SHOWN_MAX = 8;
/** Events gathered before the page folds them in: one render for a burst, still well under a glance. */
const EVENT_BATCH_MS = 100;

type LoginState = { kind: "checking" } | { kind: "out"; why: string } | { kind: "in"; session: Session };

/** Trades the fragment's token for a session cookie, once, and takes the token out of the address bar and history. */
async function login(): Promise<Session> {
  const token = location.hash.startsWith("#fdl1.") ? location.hash.slice(1) : null;
  if (token !== null) {
    history.replaceState(null, "", "/");
    const s = await api<Session>("POST", "/dashboard/session", { token });
    setCsrf(s.csrf);
    return s;
  }
  const s = await api<Session>("GET", "/dashboard/api/session");
  setCsrf(s.csrf);
  return s;
}

function App() {
  const [state, setState] = useState<LoginState>({ kind: "checking" });
  useEffect(() => {
    login().then(
      (session) => setState({ kind: "in", session }),
      (err: unknown) => setState({ kind: "out", why: err instanceof Error ? err.message : String(err) }),
    );
  }, []);
  if (state.kind === "checking") return <p class="boot">Logging in…</p>;
  if (state.kind === "out") {
    return (
      <main class="login">
        <h1>Ferry</h1>
        <p data-testid="logged-out">Not logged in: {state.why}</p>
        <p>
          Run <code>ferry dashboard</code> on a machine with this cluster's client credential, and open the URL it prints.
        </p>
      </main>
    );
  }
  return <Dashboard session={state.session} onLoggedOut={(why) => setState({ kind: "out", why })} />;
}

/** Whether the page is on screen now (a hidden tab stops polling). */
function useVisible(): boolean {
  const [visible, setVisible] = useState(document.visibilityState === "visible");
  useEffect(() => {
    const on = (): void => setVisible(document.visibilityState === "visible");
    document.addEventListener("visibilitychange", on);
    return () => document.removeEventListener("visibilitychange", on);
  }, []);
  return visible;
}

function Dashboard(props: { session: Session; onLoggedOut: (why: string) => void }) {
  const visible = useVisible();
  const [nodes, setNodes] = useState<NodeStats[]>([]);
  const history = useRef(new Map<string, Sample[]>());
  const [tick, setTick] = useState(0);
  const [now, setNow] = useState(Date.now());
  const [pairs, setPairs] = useState<LinkPair[]>([]);
  const [where, setWhere] = useState(new Map<string, ProcessRow>());
  const migrations = useRef(new Map<string, Migration>());
  const [migrationList, setMigrationList] = useState<Migration[]>([]);
  const [events, setEvents] = useState<ClusterEvent[]>([]);
  const [dialog, setDialog] = useState<{ pid: string; from: string; to?: string } | null>(null);
  const [notice, setNotice] = useState<{ text: string; bad: boolean } | null>(null);

  const fail = useCallback(
    (err: unknown) => {
      if (err instanceof ApiError && err.code === "ERR_SESSION") props.onLoggedOut(err.message);
      else setNotice({ text: err instanceof Error ? err.message : String(err), bad: true });
    },
    [props],
  );

  // Polling, only while visible: the node's stats (kept here as history) and the links.
  useEffect(() => {
    if (!visible) return;
    let stop = false;
    const poll = async (): Promise<void> => {
      try {
        const [o, l] = await Promise.all([api<Overview>("GET", "/dashboard/api/overview"), api<LinkPair[]>("GET", "/dashboard/api/v1/links")]);
        if (stop) return;
        for (const n of o.nodes) {
          if (!n.up) continue;
          const samples = history.current.get(n.name) ?? [];
          samples.push({ t: n.time_unix_ms, load_per_cpu: n.runnable / n.node_cpus, used_per_cpu: n.cpu_used / n.node_cpus, rss_bytes: n.rss_bytes, guest_memory_bytes: n.guest_memory_bytes, processes: n.processes });
          if (samples.length > SAMPLES_MAX) samples.shift();
          history.current.set(n.name, samples);
        }
        setNodes(o.nodes);
        setPairs(l);
        const pids = graphPids(l);
        if (pids.length > 0) {
          const page = await api<ProcessPage>("GET", `/dashboard/api/processes?pids=${pids.join(",")}&limit=${pids.length}`);
          if (!stop) setWhere(new Map(page.rows.map((r) => [r.pid, r])));
        }
        setNow(Date.now());
        setTick((t) => t + 1);
      } catch (err: unknown) {
        if (!stop) fail(err);
      }
    };
    // The next poll is set when this one is done: a slow node (a peer that does not answer) is never asked twice at once.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const loop = async (): Promise<void> => {
      await poll();
      if (!stop) timer = setTimeout(() => void loop(), POLL_MS);
    };
    void loop();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [visible, fail]);

  // The cluster's events, while the page is open. Folded in batches, one render a batch: a stream opens with
  // each node's recent events (hundreds on a busy cluster), which one render each made the page crawl through.
  useEffect(() => {
    const source = new EventSource("/dashboard/api/v1/events?follow=1");
    let batch: ClusterEvent[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = (): void => {
      timer = undefined;
      const got = batch;
      batch = [];
      let moved = false;
      let changed = false;
      for (const e of got) {
        if (foldMigration(migrations.current, e) !== null) moved = true;
        // What changes the process list asks for it again now rather than at the next poll.
        if (e.type === "migration.succeeded" || e.type === "migration.failed" || e.type.startsWith("process.")) changed = true;
      }
      if (moved) setMigrationList([...migrations.current.values()]);
      // Peers' events arrive interleaved with this node's: shown newest first by their time.
      // A migration's bytes within a phase move its bar only; the list would show little else during a move.
      const listed = got.filter((e) => e.type !== "migration.progress");
      if (listed.length > 0) setEvents((list) => [...listed, ...list].sort((a, b) => b.time_unix_ms - a.time_unix_ms).slice(0, EVENTS_SHOWN_MAX));
      if (changed) setTick((t) => t + 1);
    };
    const on = (m: MessageEvent<string>): void => {
      let e: ClusterEvent;
      try {
        e = JSON.parse(m.data) as ClusterEvent;
      } catch {
        return; // a gap notice or a malformed line: nothing to show
      }
      if (typeof e.type !== "string") return;
      batch.push(e);
      timer ??= setTimeout(flush, EVENT_BATCH_MS);
    };
    for (const type of ["process.started", "process.ended", "migration.started", "migration.phase", "migration.progress", "migration.succeeded", "migration.failed", "migration.stalled", "node.up", "node.down", "node.started", "node.stopping"]) {
      source.addEventListener(type, on as EventListener);
    }
    return () => {
      source.close();
      clearTimeout(timer);
    };
  }, []);

  const onMigrate = useCallback((row: ProcessRow) => setDialog({ pid: row.pid, from: row.node }), []);
  const onDrop = useCallback((pid: string, to: string) => setDialog({ pid, from: "", to }), []);
  const onKill = useCallback(
    async (row: ProcessRow) => {
      try {
        await api("DELETE", `/dashboard/api/v1/processes/${row.pid}`);
        setNotice({ text: `${row.pid} killed`, bad: false });
        setTick((t) => t + 1);
      } catch (err: unknown) {
        fail(err);
      }
    },
    [fail],
  );
  const migrate = async (pid: string, to: string, strategy: string): Promise<void> => {
    setDialog(null);
    try {
      await api("POST", `/dashboard/api/v1/processes/${pid}/migrate`, { to, strategy });
      setNotice({ text: `${pid} moved to ${to}`, bad: false });
      setTick((t) => t + 1);
    } catch (err: unknown) {
      fail(err);
    }
  };
  const drain = async (name: string, on: boolean): Promise<void> => {
    try {
      await api("POST", `/dashboard/api/v1/nodes/${name}/${on ? "drain" : "undrain"}`);
      setNotice({ text: on ? `${name} drained: its processes move off, nothing new lands there` : `${name} takes processes again`, bad: false });
      setTick((t) => t + 1);
    } catch (err: unknown) {
      fail(err);
    }
  };
  const logout = async (): Promise<void> => {
    await api("DELETE", "/dashboard/session").catch(fail);
    props.onLoggedOut("you logged out");
  };

  const up = nodes.filter((n): n is Extract<NodeStats, { up: true }> => n.up);
  return (
    <main>
      <header class="top">
        <h1>Ferry</h1>
        <span class="muted">
          node <b data-testid="session-node">{props.session.node}</b> · {up.length} of {nodes.length} nodes up · {props.session.user ?? "no login"}
        </span>
        <button type="button" onClick={() => void logout()}>
          Log out
        </button>
      </header>
      {notice !== null && (
        <p class={notice.bad ? "notice bad" : "notice"} data-testid="notice" onClick={() => setNotice(null)}>
          {notice.text}
        </p>
      )}
      <Nodes nodes={nodes} history={history.current} onDropProcess={onDrop} onDrain={(name, on) => void drain(name, on)} />
      <div class="columns">
        <Processes refresh={tick} now={now} onMigrate={onMigrate} onKill={onKill} />
        <div class="side">
          <Migrations migrations={migrationList} now={now} />
          <LinkGraph pairs={pairs} where={where} />
        </div>
      </div>
      <section class="panel events" aria-label="Events">
        <header>
          <h2>Events</h2>
        </header>
        <ul>
          {events.map((e) => (
            <li key={`${e.node}-${e.seq}`}>
              <time>{new Date(e.time_unix_ms).toLocaleTimeString()}</time> <b>{e.node}</b> {e.type} {e.pid ?? e.peer ?? ""} {e.to !== undefined ? `→ ${e.to}` : ""} {e.phase ?? ""}
            </li>
          ))}
        </ul>
      </section>
      {dialog !== null && <MigrateDialog pid={dialog.pid} from={dialog.from} to={dialog.to} nodes={up} onCancel={() => setDialog(null)} onMigrate={(to, strategy) => void migrate(dialog.pid, to, strategy)} />}
    </main>
  );
}

const root = document.getElementById("app");
if (root !== null) {
  root.textContent = "";
  render(<App />, root);
}

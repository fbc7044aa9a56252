/**
 * The processes: a virtualised list. Only the rows in view (and a margin)
 * are in the page, and only they are asked of the node, one window at a
 * time; filtering and sorting happen at the node. So ten or a hundred
 * thousand processes cost the page what a screenful does.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { api, type ProcessPage, type ProcessRow } from "./api.js";
import { formatBytes, formatCount, formatDuration, nodeColour } from "./format.js";

/** Height of a row, px (the CSS says the same): the list computes what is in view from it. */
export const ROW_PX = 30;
/** Rows asked beyond the ones in view, above and below, so a short scroll shows rows at once. */
const MARGIN_ROWS = 30;
/** Pause after the last scroll or keystroke before asking the node. */
const ASK_DELAY_MS = 80;

/** What the list shows. */
export interface ProcessFilter {
  q: string;
  state: string;
  sort: string;
}

/** The list, its filter, and each row's actions. */
export function Processes(props: {
  refresh: number;
  now: number;
  onMigrate: (row: ProcessRow) => void;
  onKill: (row: ProcessRow) => Promise<void>;
}) {
  const [filter, setFilter] = useState<ProcessFilter>({ q: "", state: "", sort: "pid" });
  const [page, setPage] = useState<(ProcessPage & { filter: ProcessFilter }) | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [scroll, setScroll] = useState({ top: 0, height: 480 });
  const box = useRef<HTMLDivElement>(null);
  const first = Math.floor(scroll.top / ROW_PX);
  const visible = Math.ceil(scroll.height / ROW_PX) + 1;
  const offset = Math.max(0, first - MARGIN_ROWS);
  const limit = visible + 2 * MARGIN_ROWS;

  // What the list wants now, read by an answer that comes back: the newest wish wins, whatever was asked meanwhile.
  const wanted = useRef({ filter, offset, limit });
  wanted.current = { filter, offset, limit };
  const asking = useRef<{ busy: boolean; again: boolean; abort: AbortController }>({ busy: false, again: false, abort: new AbortController() });

  useEffect(() => () => asking.current.abort.abort(), []);

  useEffect(() => {
    // One request in flight at most, never cancelled by a newer wish: a node slower to answer than the page
    // polls (2 s) still gets its answer shown (each poll cancelling the last left the list empty), and a newer
    // wish is asked as soon as the answer in flight is in.
    const ask = (): void => {
      const a = asking.current;
      if (a.busy) {
        a.again = true;
        return;
      }
      a.busy = true;
      a.again = false;
      const w = wanted.current;
      const q = new URLSearchParams({ q: w.filter.q, state: w.filter.state, sort: w.filter.sort, offset: String(w.offset), limit: String(w.limit) });
      api<ProcessPage>("GET", `/dashboard/api/processes?${q}`, undefined, a.abort.signal).then(
        (p) => {
          if (a.abort.signal.aborted) return;
          setPage({ ...p, filter: w.filter });
          setError(null);
        },
        (err: unknown) => !a.abort.signal.aborted && setError(err instanceof Error ? err.message : String(err)),
      ).finally(() => {
        a.busy = false;
        if (a.again && !a.abort.signal.aborted) ask();
      });
    };
    const t = setTimeout(ask, ASK_DELAY_MS);
    return () => clearTimeout(t);
  }, [filter, offset, limit, props.refresh]);

  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const measure = (): void => setScroll({ top: el.scrollTop, height: el.clientHeight });
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  const total = page?.total ?? 0;
  const rows: (ProcessRow | null)[] = [];
  // Rows of an answer to another filter are not shown as this one's: they wait for theirs.
  const current = page !== null && page.filter === filter ? page : null;
  for (let i = first; i < Math.min(first + visible, total); i += 1) {
    const at = current === null ? -1 : i - current.offset;
    rows.push(current !== null && at >= 0 && at < current.rows.length ? (current.rows[at] as ProcessRow) : null);
  }
  const states = page?.states ?? {};
  return (
    <section class="panel processes" aria-label="Processes">
      <header>
        <h2>
          Processes <small data-testid="process-count">{page === null ? "" : `${formatCount(total)} of ${formatCount(page.all)}`}</small>
        </h2>
        <div class="filters">
          <input
            type="search"
            placeholder="Filter: pid, program, argument, node"
            aria-label="Filter processes"
            value={filter.q}
            onInput={(e) => {
              setFilter({ ...filter, q: (e.currentTarget as HTMLInputElement).value });
              if (box.current) box.current.scrollTop = 0;
            }}
          />
          <select aria-label="State" value={filter.state} onChange={(e) => setFilter({ ...filter, state: (e.currentTarget as HTMLSelectElement).value })}>
            <option value="">every state</option>
            {["running", "migrating", "exited", "killed", "failed", "lost"].map((s) => (
              <option value={s} key={s}>
                {s} ({states[s] ?? 0})
              </option>
            ))}
          </select>
          <select aria-label="Sort" value={filter.sort} onChange={(e) => setFilter({ ...filter, sort: (e.currentTarget as HTMLSelectElement).value })}>
            <option value="pid">by pid</option>
            <option value="node">by node</option>
            <option value="state">by state</option>
            <option value="memory">by memory</option>
            <option value="uptime">oldest first</option>
          </select>
        </div>
      </header>
      {error !== null && <p class="error">{error}</p>}
      <div class="row head" role="row">
        <span>pid</span>
        <span>program</span>
        <span>node</span>
        <span>state</span>
        <span class="num">memory</span>
        <span class="num">uptime</span>
        <span />
      </div>
      <div class="rows" ref={box} data-testid="process-rows" onScroll={(e) => setScroll({ top: (e.currentTarget as HTMLElement).scrollTop, height: (e.currentTarget as HTMLElement).clientHeight })}>
        <div style={{ height: `${total * ROW_PX}px`, position: "relative" }}>
          {rows.map((r, k) => (
            <div class="row" role="row" key={first + k} style={{ top: `${(first + k) * ROW_PX}px` }} data-testid={r === null ? "process-row-pending" : "process-row"} data-pid={r?.pid}>
              {r === null ? <span class="muted">…</span> : <Row row={r} now={props.now} onMigrate={props.onMigrate} onKill={props.onKill} />}
            </div>
          ))}
        </div>
      </div>
    </section>
  );
}

function Row(props: { row: ProcessRow; now: number; onMigrate: (row: ProcessRow) => void; onKill: (row: ProcessRow) => Promise<void> }) {
  const { row } = props;
  const [confirm, setConfirm] = useState(false);
  const live = row.state === "running";
  return (
    <>
      <span
        class="pid"
        draggable={live}
        title={live ? "Drag onto a node to move it there" : undefined}
        onDragStart={(e) => {
          e.dataTransfer?.setData("application/x-ferry-pid", row.pid);
          e.dataTransfer?.setData("text/plain", row.pid);
        }}
      >
        {row.pid}
      </span>
      <span class="prog" title={[row.module_name, ...row.args].join(" ")}>
        {row.module_name} <span class="muted">{row.args.join(" ")}</span>
      </span>
      <span data-testid="process-node">
        <i class="dot" style={{ background: nodeColour(row.node) }} />
        {row.node}
      </span>
      <span class={`state ${row.state}`} data-testid="process-state">
        {row.state}
      </span>
      <span class="num">{formatBytes(row.memory_bytes)}</span>
      <span class="num">{live || row.state === "migrating" ? formatDuration(props.now - row.started_unix_ms) : ""}</span>
      <span class="actions">
        {live && (
          <button type="button" data-testid="migrate-button" onClick={() => props.onMigrate(row)}>
            Move…
          </button>
        )}
        {live &&
          (confirm ? (
            <button
              type="button"
              class="danger"
              data-testid="kill-confirm"
              onClick={() => {
                setConfirm(false);
                void props.onKill(row);
              }}
              onBlur={() => setConfirm(false)}
            >
              Really kill
            </button>
          ) : (
            <button type="button" data-testid="kill-button" onClick={() => setConfirm(true)}>
              Kill
            </button>
          ))}
      </span>
    </>
  );
}

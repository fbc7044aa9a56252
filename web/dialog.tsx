/** Moving a process: where to, and how. */
import { useState } from "preact/hooks";
import type { NodeStats } from "./api.js";

/** Strategies, and what each needs of the destination. */
const STRATEGIES = [
  { name: "pre-copy", note: "copies memory while it runs, then a short stop", post_copy: false },
  { name: "stop-copy", note: "stops it, copies everything, resumes it there", post_copy: false },
  { name: "post-copy", note: "resumes it there at once; pages follow on demand", post_copy: true },
  { name: "hybrid", note: "one pre-copy round, then post-copy", post_copy: true },
] as const;

/** The migrate dialog. `from`: where it runs (empty if unknown: a drag-and-drop). */
export function MigrateDialog(props: {
  pid: string;
  from: string;
  to: string | undefined;
  nodes: Extract<NodeStats, { up: true }>[];
  onCancel: () => void;
  onMigrate: (to: string, strategy: string) => void;
}) {
  const targets = props.nodes.filter((n) => n.name !== props.from);
  const [to, setTo] = useState(props.to ?? targets[0]?.name ?? "");
  const [strategy, setStrategy] = useState("pre-copy");
  const target = targets.find((n) => n.name === to);
  return (
    <div class="backdrop" onClick={props.onCancel}>
      <form
        class="dialog"
        aria-label={`Move ${props.pid}`}
        data-testid="migrate-dialog"
        onClick={(e) => e.stopPropagation()}
        onSubmit={(e) => {
          e.preventDefault();
          if (to !== "") props.onMigrate(to, strategy);
        }}
      >
        <h2>Move {props.pid}</h2>
        <label>
          to node
          <select data-testid="migrate-to" value={to} onChange={(e) => setTo((e.currentTarget as HTMLSelectElement).value)}>
            {targets.map((n) => (
              <option value={n.name} key={n.name}>
                {n.name} ({n.processes} processes)
              </option>
            ))}
          </select>
        </label>
        <fieldset>
          <legend>strategy</legend>
          {STRATEGIES.map((s) => {
            const unavailable = s.post_copy && target !== undefined && !target.post_copy;
            return (
              <label key={s.name} class={unavailable ? "muted" : ""}>
                <input type="radio" name="strategy" value={s.name} data-testid={`strategy-${s.name}`} checked={strategy === s.name} disabled={unavailable} onChange={() => setStrategy(s.name)} />
                <b>{s.name}</b> <small>{unavailable ? "not on this node (no userfaultfd)" : s.note}</small>
              </label>
            );
          })}
        </fieldset>
        <footer>
          <button type="button" onClick={props.onCancel}>
            Cancel
          </button>
          <button type="submit" class="primary" data-testid="migrate-submit" disabled={to === ""}>
            Move
          </button>
        </footer>
      </form>
    </div>
  );
}

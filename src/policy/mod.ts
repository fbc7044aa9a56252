/**
 * The load module's pure half (DESIGN.md layer 10): load vectors and their
 * exchange, decisions (balance, co-locate, capabilities, memory ushering,
 * drain, pack, pin), strategy choice and placement at start. No I/O, no
 * clock, no randomness but the injected generator: the daemon and the
 * simulator run this code unchanged. See docs/load.md.
 */
export { LABELS_MAX, parseLabels, satisfies, slowdown, type Labels, type LinkPeer, type NodeLoad, type ProcessInfo } from "./load.js";
export { ageOf, loadCopy, LoadView, VIEW_ENTRIES_MAX_DEFAULT, WINDOW_ENTRIES_DEFAULT, type LoadEntry, type ViewRecord } from "./exchange.js";
export { chooseStrategy, estimateMigration, MIGRATION_MODEL_DEFAULT, type MigrationEstimate, type MigrationModel, type Strategy } from "./cost.js";
export { policyParams, POLICY_PARAMS_DEFAULT, type PolicyMode, type PolicyParams } from "./params.js";
export { decide, wantsToAct, type DecideInput } from "./decide.js";
export { memoryFloor, type Decision, type Move, type MoveReason } from "./_round.js";
export { balanceGain_ms } from "./balance.js";
export { idleNodes } from "./pack.js";
export { acceptMove, avoidAfter_ms, moveOffer, MOVE_ASKS_MAX, REFUSED_AVOID_MS, REFUSED_ON_LOAD_AVOID_MS, retarget, type Acceptance, type MoveOffer, type RetargetInput } from "./accept.js";
export { place, type NewProcess, type Placement, type PlaceInput } from "./place.js";

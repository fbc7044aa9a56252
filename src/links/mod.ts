/** Links between processes (issue 5): exactly-once, per-sender-ordered messages that follow processes as they move. */
export {
  BATCH_BYTES_MAX,
  BATCH_MESSAGES_MAX,
  BATCHES_IN_FLIGHT_MAX,
  KEPT_BYTES_MAX,
  KEPT_REOFFER_MS,
  emptyLinkState,
  Endpoint,
  INBOX_QUEUE_MAX,
  parseLinkState,
  type Batch,
  type DeliverAnswer,
  type LinkState,
  type LinkTransport,
  type PairStats,
} from "./endpoint.js";

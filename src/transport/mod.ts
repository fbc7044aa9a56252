/**
 * Ferry's data protocol between nodes (DESIGN.md layer 5): length-prefixed
 * frames, every length checked against FRAME_BYTES_MAX before anything is
 * allocated, and backpressure end to end. This is the folder's only public
 * entry; errors are TransportErrors from src/errors.ts.
 */
export { FRAME_BYTES_MAX, FRAME_HEADER_BYTES, FrameParser, encodeFrame, type Frame, type FrameParserOptions } from "./frame.js";
export {
  FramedConnection,
  RECEIVE_QUEUE_BYTES_MAX,
  SEND_HIGH_WATER_BYTES,
  type FramedConnectionOptions,
  type ReceiveOptions,
} from "./connection.js";
export { yieldIfDue } from "./turns.js";

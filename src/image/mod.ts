/**
 * Ferry's process image format, v2: a versioned, sectioned, checksummed and
 * signed binary encoding of a suspended process, and the envelope that
 * encrypts one at rest (docs/image-format.md). Codec only: bytes in and out,
 * no I/O. This is the folder's only public entry.
 */
export { IMAGE_VERSION, PAGE_BYTES, ImageLimits } from "./format.js";
export type {
  DecodedImage,
  DecodedMemory,
  GlobalType,
  GlobalValue,
  ImageMeta,
  MemoryPage,
  MemoryRun,
  MemorySource,
  ProcessImage,
  StreamPositions,
} from "./types.js";
export { sparsePages, writeMemory } from "./pages.js";
export { encodeImage, encodeImageAsync, type EncodeOptions } from "./encode.js";
export { offThreadSha256, warmHashThreads, type AsyncHash } from "./_hash_pool.js";
export { ImageDecoder, decodeImage, type ImageDecoderOptions } from "./decode.js";
export { imageKeyId, trustKeys, type ImageSigner, type ImageTrust } from "./_signature.js";
export {
  ENVELOPE_KEY_BYTES,
  ENVELOPE_MAGIC,
  EnvelopeOpener,
  envelopeKeyId,
  isEnvelope,
  sealImage,
  type EnvelopeKeys,
} from "./envelope.js";

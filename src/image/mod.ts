/**
 * Ferry's process image format, v1: a versioned, sectioned, checksummed
 * binary encoding of a suspended process (docs/image-format.md). Codec only:
 * bytes in and out, no I/O. This is the folder's only public entry.
 */
export { IMAGE_VERSION, PAGE_BYTES, ImageLimits } from "./format.js";
export type {
  DecodedImage,
  DecodedMemory,
  GlobalType,
  GlobalValue,
  ImageMeta,
  MemoryPage,
  MemorySource,
  ProcessImage,
  StreamPositions,
} from "./types.js";
export { sparsePages, writeMemory } from "./pages.js";
export { encodeImage } from "./encode.js";
export { ImageDecoder, decodeImage, type ImageDecoderOptions } from "./decode.js";

/** The pixel layer: decode, encode and transcode frames (WASM codecs), in this thread or in the worker pool. */
export { DECODABLE_SYNTAXES, decodeFrame } from "./decode.js";
export { type EncodedFrame, type EncodeOptions, ENCODABLE_SYNTAXES, encodeFrame, encodeProblem } from "./encode.js";
export { CodecError, type CodecErrorCode } from "./errors.js";
export { frameInfoOf } from "./frame-info.js";
export { closeCodecPool, CodecPool, type CodecPoolOptions, codecPool } from "./pool.js";
export {
  canTranscode,
  frameIsLossy,
  frameMediaTypeOf,
  isLossy,
  sniffSyntax,
  type TranscodeDatasetOptions,
  transcodeDataset,
  type TranscodedFrame,
  transcodeFrame,
  type TranscodeOptions,
} from "./transcode.js";
export type { DecodedFrame, FrameInfo } from "./types.js";

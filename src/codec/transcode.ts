/**
 * Transcoding: a frame, or every frame of a dataset, from one transfer syntax to another, with the
 * Image Pixel attributes that describe the result. What can be planned (`canTranscode`,
 * `isLossy`) is reported here; whether a lossy result is acceptable is WADO's decision.
 */
import { availableParallelism } from "node:os";
import {
  Dataset,
  type Element,
  encapsulateFrames,
  frameBytes,
  locateFrames,
  lookupTransferSyntax,
  stringValues,
  swapBytesForVr,
  type Tag,
  Tags,
  TransferSyntaxUids as TS,
  type Vr,
} from "../dicom/index.js";
import { DECODABLE_SYNTAXES, decodeFrame } from "./decode.js";
import { ENCODABLE_SYNTAXES, encodeFrame, encodeProblem } from "./encode.js";
import { CodecError } from "./errors.js";
import { frameInfoOf } from "./frame-info.js";
import { readJ2kHeader } from "./j2k-header.js";
import { scanJpeg } from "./jpeg-markers.js";
import { bigEndianToLittle, nativeFrameLength } from "./pixels.js";
import type { FrameInfo } from "./types.js";

const NATIVE = new Set<string>([
  TS.ImplicitVRLittleEndian,
  TS.ExplicitVRLittleEndian,
  TS.DeflatedExplicitVRLittleEndian,
  TS.ExplicitVRBigEndian,
]);

/** Syntaxes whose pixel data may have lost information (JPEG 2000 / HTJ2K "may be lossy" ones included). */
const LOSSY = new Set<string>([
  TS.JPEGBaseline8Bit,
  TS.JPEGExtended12Bit,
  "1.2.840.10008.1.2.4.52",
  "1.2.840.10008.1.2.4.53",
  "1.2.840.10008.1.2.4.55",
  TS.JPEGLSNearLossless,
  TS.JPEG2000,
  "1.2.840.10008.1.2.4.93",
  TS.HTJ2K,
  "1.2.840.10008.1.2.4.100",
  "1.2.840.10008.1.2.4.101",
  "1.2.840.10008.1.2.4.102",
  "1.2.840.10008.1.2.4.103",
  "1.2.840.10008.1.2.4.104",
  "1.2.840.10008.1.2.4.105",
  "1.2.840.10008.1.2.4.106",
  "1.2.840.10008.1.2.4.107",
  "1.2.840.10008.1.2.4.108",
  "1.2.840.10008.1.2.4.111",
  "1.2.840.10008.1.2.4.112",
]);

/** True when pixel data in this syntax is (or may be) lossy compressed. */
export const isLossy = (transferSyntaxUid: string): boolean => LOSSY.has(transferSyntaxUid);

/**
 * Whether frames of `from` can be turned into `to`. Syntax level only: a particular pixel format
 * may still be refused (`encodeProblem`, e.g. 16-bit samples to JPEG baseline). A lossy target for
 * a lossless source is possible here; the caller decides whether it was asked for.
 */
export function canTranscode(from: string, to: string): boolean {
  if (from === to) return lookupTransferSyntax(from) !== undefined || DECODABLE_SYNTAXES.has(from);
  return DECODABLE_SYNTAXES.has(from) && ENCODABLE_SYNTAXES.has(to);
}

const MEDIA_TYPES: ReadonlyArray<[string, string[]]> = [
  ["image/jpeg", [TS.JPEGBaseline8Bit, TS.JPEGExtended12Bit, TS.JPEGLossless, TS.JPEGLosslessSV1]],
  ["image/jls", [TS.JPEGLSLossless, TS.JPEGLSNearLossless]],
  ["image/jp2", [TS.JPEG2000Lossless, TS.JPEG2000]],
  ["image/jphc", [TS.HTJ2KLossless, TS.HTJ2KLosslessRPCL, TS.HTJ2K]],
  ["image/dicom-rle", [TS.RLELossless]],
];
const MEDIA_TYPE = new Map(MEDIA_TYPES.flatMap(([type, uids]) => uids.map((uid) => [uid, type] as const)));

/** The media type a single frame of this syntax is sent with (PS3.18 Table 8.7.3-2); native: application/octet-stream. */
export const frameMediaTypeOf = (transferSyntaxUid: string): string => MEDIA_TYPE.get(transferSyntaxUid) ?? "application/octet-stream";

export interface TranscodedFrame {
  bytes: Uint8Array;
  /** Image Pixel attributes of `bytes` (for a native result: of the little endian samples). */
  info: FrameInfo;
  mediaType: string;
  /** This transcoding lost information (a lossy encode). */
  lossy: boolean;
  lossyRatio?: number;
  method?: string;
}

export interface TranscodeOptions {
  /** JPEG baseline quality, 1–100 (default 90). */
  quality?: number;
}

/**
 * One frame from `fromSyntax` to `toSyntax`. Same syntax: the bytes as they are. Native to native:
 * no decoding, only byte order (a native result is little endian unless the target is big endian).
 */
export async function transcodeFrame(
  bytes: Uint8Array,
  fromSyntax: string,
  info: FrameInfo,
  toSyntax: string,
  options: TranscodeOptions = {},
): Promise<TranscodedFrame> {
  if (!canTranscode(fromSyntax, toSyntax)) {
    throw new CodecError("UNSUPPORTED", `cannot transcode from ${fromSyntax} to ${toSyntax}`);
  }
  const mediaType = frameMediaTypeOf(toSyntax);
  if (fromSyntax === toSyntax) return { bytes, info, mediaType, lossy: false };
  if (NATIVE.has(fromSyntax) && NATIVE.has(toSyntax)) {
    const length = nativeFrameLength(info);
    if (bytes.length < length) throw new CodecError("MISMATCH", `native frame holds ${bytes.length} bytes, ${length} expected`);
    const frame = bytes.subarray(0, length);
    const swap = (fromSyntax === TS.ExplicitVRBigEndian) !== (toSyntax === TS.ExplicitVRBigEndian);
    return { bytes: swap ? bigEndianToLittle(frame, info) : frame, info, mediaType, lossy: false };
  }
  const problem = encodeProblem(info, toSyntax);
  if (problem && !DECODE_CHANGES_FORMAT.has(fromSyntax)) throw new CodecError("UNSUPPORTED", problem);
  const decoded = await decodeFrame(bytes, fromSyntax, info);
  const encoded = await encodeFrame(decoded, toSyntax, options);
  return { ...encoded, mediaType };
}

/** Sources whose decoded format may differ from the dataset's (colour conversion), so the target check waits for the decode. */
const DECODE_CHANGES_FORMAT = new Set<string>([
  TS.JPEGBaseline8Bit,
  TS.JPEGExtended12Bit,
  TS.JPEG2000Lossless,
  TS.JPEG2000,
  TS.HTJ2KLossless,
  TS.HTJ2KLosslessRPCL,
  TS.HTJ2K,
]);

/** Whether this frame, in this syntax, holds lossy compressed data (decided from the codestream where the syntax allows both). */
export function frameIsLossy(bytes: Uint8Array, transferSyntaxUid: string): boolean {
  try {
    switch (transferSyntaxUid) {
      case TS.JPEGLSNearLossless:
        return (scanJpeg(bytes).scan?.ss ?? 1) !== 0;
      case TS.JPEG2000:
      case TS.HTJ2K:
        return !readJ2kHeader(bytes).reversible;
      default:
        return isLossy(transferSyntaxUid);
    }
  } catch {
    return isLossy(transferSyntaxUid);
  }
}

export type FrameTranscoder = (
  bytes: Uint8Array,
  fromSyntax: string,
  info: FrameInfo,
  toSyntax: string,
  options?: TranscodeOptions,
) => Promise<TranscodedFrame>;

export interface TranscodeDatasetOptions extends TranscodeOptions {
  /** The syntax the dataset's pixel data is in; default: found from the pixel data (native byte order, codestream markers). */
  fromSyntax?: string;
  /** Runs the frames, e.g. `codecPool().transcodeFrame` to use the worker pool; default: in this thread. */
  transcodeFrame?: FrameTranscoder;
  /** Frames in flight at once with `transcodeFrame` (default: available parallelism). */
  concurrency?: number;
}

/**
 * A copy of the dataset with every frame in `toSyntax` and its Image Pixel attributes fixed:
 * Photometric Interpretation, Planar Configuration, High Bit; for a lossy result Lossy Image
 * Compression "01" and the ratio and method appended to those already there (PS3.3 C.7.6.1.1.5).
 * Encapsulated results have one fragment per frame and a Basic Offset Table. The input is not
 * changed; elements are shared with it. Write it with `writePart10(result, { transferSyntaxUid: toSyntax })`.
 */
export async function transcodeDataset(ds: Dataset, toSyntax: string, options: TranscodeDatasetOptions = {}): Promise<Dataset> {
  const target = lookupTransferSyntax(toSyntax);
  if (!target) throw new CodecError("UNSUPPORTED", `unknown transfer syntax ${toSyntax}`);
  const pixelElement = ds.get(Tags.PixelData) ?? ds.get(Tags.FloatPixelData) ?? ds.get(Tags.DoubleFloatPixelData);
  const out = new Dataset(ds.littleEndian, ds.parent);
  for (const el of ds.elements()) out.set(el);
  if (!pixelElement) return out;
  const located = locateFrames(ds);
  const frames = located.frames.map(frameBytes);
  const fromSyntax = options.fromSyntax ?? sniffSyntax(ds, frames[0]);
  if (fromSyntax === toSyntax) return out;
  const source = lookupTransferSyntax(fromSyntax);
  // Native to native: the bytes stay; the writer changes the byte order.
  if (source && !source.encapsulated && !target.encapsulated) return out;
  if (!canTranscode(fromSyntax, toSyntax)) throw new CodecError("UNSUPPORTED", `cannot transcode from ${fromSyntax} to ${toSyntax}`);
  if (pixelElement.tag !== Tags.PixelData) throw new CodecError("UNSUPPORTED", "float pixel data cannot be compressed");

  const info = frameInfoOf(ds);
  // Native frames reach the codecs little endian.
  const sourceSyntax = source && !source.encapsulated ? TS.ExplicitVRLittleEndian : fromSyntax;
  const inputs = source && !source.encapsulated && !ds.littleEndian ? frames.map((f) => bigEndianToLittle(f, info)) : frames;
  const frameInfo: FrameInfo = { ...info };
  delete frameInfo.pixelDataVr;
  const run = options.transcodeFrame ?? transcodeFrame;
  const limit = options.transcodeFrame ? Math.max(1, options.concurrency ?? availableParallelism()) : 1;
  const results = await mapLimited(inputs, limit, (bytes) => run(bytes, sourceSyntax, frameInfo, toSyntax, { quality: options.quality }));
  const first = results[0];
  if (!first) throw new CodecError("MISMATCH", "the pixel data has no frames");

  const resultInfo = first.info;
  if (target.encapsulated) {
    out.set({ tag: Tags.PixelData, vr: "OB", encapsulated: encapsulateFrames(results.map((r) => r.bytes)), position: -1 });
  } else {
    const vr: Vr = resultInfo.bitsAllocated > 8 ? "OW" : "OB";
    let bytes: Uint8Array = results.length === 1 ? first.bytes : Buffer.concat(results.map((r) => r.bytes));
    if (!out.littleEndian) bytes = swapBytesForVr(bytes, vr);
    out.set({ tag: Tags.PixelData, vr, bytes, position: -1 });
  }
  out.delete(Tags.ExtendedOffsetTable);
  out.delete(Tags.ExtendedOffsetTableLengths);

  if (resultInfo.photometricInterpretation !== info.photometricInterpretation) {
    setStrings(out, Tags.PhotometricInterpretation, "CS", [resultInfo.photometricInterpretation]);
  }
  if (resultInfo.samplesPerPixel > 1) setUs(out, Tags.PlanarConfiguration, resultInfo.planarConfiguration);
  if (resultInfo.highBit !== info.highBit) setUs(out, Tags.HighBit, resultInfo.highBit);

  const lossy = results.filter((r) => r.lossy);
  const sourceLossy = frames.some((f) => frameIsLossy(f, fromSyntax));
  if (lossy.length > 0 || sourceLossy) setStrings(out, LossyImageCompression, "CS", ["01"]);
  if (lossy.length > 0) {
    const ratio = lossy.reduce((sum, r) => sum + (r.lossyRatio ?? 1), 0) / lossy.length;
    const ratios = existing(out, LossyImageCompressionRatio);
    const methods = existing(out, LossyImageCompressionMethod);
    setStrings(out, LossyImageCompressionRatio, "DS", [...ratios, formatDs(ratio)]);
    setStrings(out, LossyImageCompressionMethod, "CS", [...methods, lossy[0]?.method ?? "ISO_10918_1"]);
  }
  return out;
}

const LossyImageCompression = 0x00282110;
const LossyImageCompressionRatio = 0x00282112;
const LossyImageCompressionMethod = 0x00282114;

async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The transfer syntax of the dataset's pixel data, from the data itself: byte order for native, markers for encapsulated. */
export function sniffSyntax(ds: Dataset, firstFrame: Uint8Array | undefined): string {
  const el = ds.get(Tags.PixelData);
  if (!el?.encapsulated) return ds.littleEndian ? TS.ExplicitVRLittleEndian : TS.ExplicitVRBigEndian;
  const b = firstFrame ?? new Uint8Array(0);
  if (b[0] === 0xff && b[1] === 0xd8) {
    const header = scanJpeg(b);
    if (header.sof === 0xf7) return header.scan?.ss ? TS.JPEGLSNearLossless : TS.JPEGLSLossless;
    if (header.sof === 3) return header.scan?.ss === 1 ? TS.JPEGLosslessSV1 : TS.JPEGLossless;
    return header.precision > 8 ? TS.JPEGExtended12Bit : TS.JPEGBaseline8Bit;
  }
  if ((b[0] === 0xff && b[1] === 0x4f) || (b[4] === 0x6a && b[5] === 0x50)) {
    const header = readJ2kHeader(b);
    if (header.highThroughput) return header.reversible ? TS.HTJ2KLossless : TS.HTJ2K;
    return header.reversible ? TS.JPEG2000Lossless : TS.JPEG2000;
  }
  if (b.length >= 64) {
    const segments = new DataView(b.buffer, b.byteOffset, 64).getUint32(0, true);
    if (segments >= 1 && segments <= 15 && new DataView(b.buffer, b.byteOffset, 64).getUint32(4, true) === 64) return TS.RLELossless;
  }
  throw new CodecError("UNSUPPORTED", "cannot tell the transfer syntax of the encapsulated pixel data; pass fromSyntax");
}

function existing(ds: Dataset, tag: Tag): string[] {
  const el = ds.get(tag);
  return el ? stringValues(ds, el).filter((v) => v !== "") : [];
}

/** A DS value of at most 16 characters. */
function formatDs(v: number): string {
  for (let digits = 6; digits > 0; digits--) {
    const text = String(Number(v.toPrecision(digits)));
    if (text.length <= 16) return text;
  }
  return String(Math.round(v));
}

function setStrings(ds: Dataset, tag: Tag, vr: Vr, values: string[]): void {
  let bytes: Uint8Array = Buffer.from(values.join("\\"), "latin1");
  if (bytes.length % 2) bytes = Buffer.concat([bytes, Buffer.from(" ")]);
  ds.set({ tag, vr, bytes, position: -1 } satisfies Element);
}

function setUs(ds: Dataset, tag: Tag, value: number): void {
  const bytes = Buffer.alloc(2);
  if (ds.littleEndian) bytes.writeUInt16LE(value);
  else bytes.writeUInt16BE(value);
  ds.set({ tag, vr: "US", bytes, position: -1 });
}

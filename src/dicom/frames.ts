/**
 * Frame locator: where every frame of a pixel data element lies, for native and encapsulated
 * pixel data (PS3.5 §8.2, A.4), so frames can be served as byte ranges of the stored file.
 */
import type { Dataset, Element, Fragment } from "./dataset.js";
import { DicomError } from "./errors.js";
import { Tags } from "./tag.js";
import { firstInteger, firstString } from "./values.js";

export interface PixelLayout {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  bitsAllocated: number;
  numberOfFrames: number;
}

export interface NativeFrame {
  kind: "native";
  /** Offset in the source of the first byte holding the frame. */
  position: number;
  /** Bytes spanned by the frame (from `position`). */
  length: number;
  /** Bit at which the frame starts inside its first byte: non-zero only for 1-bit frames that are not byte aligned. */
  bitOffset: number;
  /** Exact size of the frame in bits. */
  bits: number;
  bytes: Uint8Array;
}

export interface EncapsulatedFrame {
  kind: "encapsulated";
  /** The fragments that make up the frame, in order. */
  fragments: Fragment[];
}

export type FrameLocation = NativeFrame | EncapsulatedFrame;

/** How the frame boundaries of encapsulated pixel data were found. */
export type FrameIndexSource = "extended-offset-table" | "basic-offset-table" | "one-fragment-per-frame" | "single-frame" | "markers";

export interface LocatedFrames {
  layout: PixelLayout;
  frames: FrameLocation[];
  /** For encapsulated pixel data. */
  indexSource?: FrameIndexSource;
}

const PIXEL_TAGS = [Tags.PixelData, Tags.FloatPixelData, Tags.DoubleFloatPixelData];

export function pixelLayout(ds: Dataset): PixelLayout {
  const need = (tag: number, name: string): number => {
    const v = firstInteger(ds, tag);
    if (v === undefined || v < 0) throw new DicomError("INVALID_LENGTH", `pixel data needs ${name}`);
    return v;
  };
  const bitsAllocated = ds.has(Tags.FloatPixelData)
    ? 32
    : ds.has(Tags.DoubleFloatPixelData)
      ? 64
      : need(Tags.BitsAllocated, "Bits Allocated");
  const layout = {
    rows: need(Tags.Rows, "Rows"),
    columns: need(Tags.Columns, "Columns"),
    samplesPerPixel: firstInteger(ds, Tags.SamplesPerPixel) ?? 1,
    bitsAllocated,
    numberOfFrames: Math.max(1, firstInteger(ds, Tags.NumberOfFrames) ?? 1),
  };
  // Hostile-input guards: a frame of no pixels, or a frame count that would cost gigabytes of bookkeeping.
  if (layout.rows * layout.columns * layout.samplesPerPixel * layout.bitsAllocated === 0) {
    throw new DicomError("INVALID_LENGTH", "Rows, Columns, Samples per Pixel and Bits Allocated must all be non-zero");
  }
  if (layout.numberOfFrames > MAX_FRAMES) {
    throw new DicomError("INVALID_LENGTH", `Number of Frames ${layout.numberOfFrames} is more than the ${MAX_FRAMES} supported`);
  }
  return layout;
}

/** Far above any real multi-frame object (whole-slide image levels reach a few hundred thousand tiles). */
const MAX_FRAMES = 1_000_000;

/** Locates every frame of the dataset's pixel data; throws a DicomError when it cannot. */
export function locateFrames(ds: Dataset): LocatedFrames {
  const el = PIXEL_TAGS.map((t) => ds.get(t)).find((e) => e !== undefined);
  if (!el) throw new DicomError("INVALID_LENGTH", "the dataset has no pixel data");
  const layout = pixelLayout(ds);
  if (el.encapsulated) {
    const { frames, source } = locateEncapsulated(ds, el, layout.numberOfFrames);
    return { layout, frames, indexSource: source };
  }
  // Uncompressed YBR_FULL_422 / YBR_PARTIAL_422 store two pixels as Y Y Cb Cr: two samples per pixel (PS3.3 C.7.6.3.1.2).
  const pi = firstString(ds, Tags.PhotometricInterpretation)?.trim();
  const subsampled = (pi === "YBR_FULL_422" || pi === "YBR_PARTIAL_422") && layout.samplesPerPixel === 3;
  return { layout, frames: locateNative(el, layout, subsampled ? 2 : layout.samplesPerPixel) };
}

function locateNative(el: Element, layout: PixelLayout, storedSamples: number): NativeFrame[] {
  const bytes = el.bytes ?? new Uint8Array(0);
  const frameBits = layout.rows * layout.columns * storedSamples * layout.bitsAllocated;
  const needed = Math.ceil((frameBits * layout.numberOfFrames) / 8);
  if (bytes.length < needed) {
    throw new DicomError(
      "TRUNCATED",
      `pixel data holds ${bytes.length} bytes but ${layout.numberOfFrames} frame(s) of ${layout.rows}×${layout.columns}×${layout.samplesPerPixel} at ${layout.bitsAllocated} bits need ${needed}`,
    );
  }
  const frames: NativeFrame[] = [];
  for (let i = 0; i < layout.numberOfFrames; i++) {
    const startBit = i * frameBits;
    const first = Math.floor(startBit / 8);
    const bitOffset = startBit % 8;
    const length = Math.ceil((bitOffset + frameBits) / 8);
    frames.push({
      kind: "native",
      position: el.position < 0 ? -1 : el.position + first,
      length,
      bitOffset,
      bits: frameBits,
      bytes: bytes.subarray(first, first + length),
    });
  }
  return frames;
}

function locateEncapsulated(ds: Dataset, el: Element, numberOfFrames: number): { frames: EncapsulatedFrame[]; source: FrameIndexSource } {
  const enc = el.encapsulated;
  const fragments = enc?.fragments ?? [];
  if (fragments.length === 0) throw new DicomError("INVALID_ITEM", "encapsulated pixel data has no fragments");
  // Offsets in the tables count from the first byte of the first fragment's item tag.
  const itemOffsets: number[] = [];
  let offset = 0;
  for (const f of fragments) {
    itemOffsets.push(offset);
    offset += 8 + f.bytes.length;
  }
  const fromTable = (table: number[]): EncapsulatedFrame[] | undefined => {
    if (table.length !== numberOfFrames) return undefined;
    const index = new Map(itemOffsets.map((o, i) => [o, i]));
    const starts = table.map((o) => index.get(o));
    if (starts.some((s, i) => s === undefined || (i > 0 && s <= (starts[i - 1] as number)))) return undefined;
    return starts.map((s, i) => ({ kind: "encapsulated", fragments: fragments.slice(s, starts[i + 1] ?? fragments.length) }));
  };

  const eot = ds.get(Tags.ExtendedOffsetTable);
  if (eot?.bytes && eot.bytes.length > 0) {
    const view = new DataView(eot.bytes.buffer, eot.bytes.byteOffset, eot.bytes.byteLength);
    const table: number[] = [];
    for (let i = 0; i + 8 <= eot.bytes.length; i += 8) table.push(Number(view.getBigUint64(i, ds.littleEndian)));
    const frames = fromTable(table);
    if (frames) return { frames, source: "extended-offset-table" };
  }
  if (enc && enc.basicOffsetTable.length > 0) {
    const frames = fromTable(enc.basicOffsetTable);
    if (frames) return { frames, source: "basic-offset-table" };
  }
  if (fragments.length === numberOfFrames) {
    return { frames: fragments.map((f) => ({ kind: "encapsulated", fragments: [f] })), source: "one-fragment-per-frame" };
  }
  if (numberOfFrames === 1) return { frames: [{ kind: "encapsulated", fragments }], source: "single-frame" };
  // No usable table and several fragments per frame: a frame starts with a codestream start marker.
  const starts = fragments.map((f, i) => (startsCodestream(f.bytes) ? i : -1)).filter((i) => i >= 0);
  if (starts.length === numberOfFrames && starts[0] === 0) {
    return {
      frames: starts.map((s, i) => ({ kind: "encapsulated", fragments: fragments.slice(s, starts[i + 1] ?? fragments.length) })),
      source: "markers",
    };
  }
  throw new DicomError(
    "INVALID_ITEM",
    `cannot find the boundaries of ${numberOfFrames} frames in ${fragments.length} fragments (no usable offset table, ${starts.length} codestream starts)`,
  );
}

/** JPEG / JPEG-LS SOI (FFD8), JPEG 2000 codestream SOC+SIZ (FF4F FF51), or a JP2 signature box. */
function startsCodestream(b: Uint8Array): boolean {
  if (b.length < 4) return false;
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return true;
  if (b[0] === 0xff && b[1] === 0x4f && b[2] === 0xff && b[3] === 0x51) return true;
  return b.length >= 12 && b[4] === 0x6a && b[5] === 0x50 && b[6] === 0x20 && b[7] === 0x20;
}

/** The frame's bytes as one contiguous array: a view where possible, a copy when fragments or bit offsets force it. */
export function frameBytes(frame: FrameLocation): Uint8Array {
  if (frame.kind === "encapsulated") {
    if (frame.fragments.length === 1) return (frame.fragments[0] as Fragment).bytes;
    return Buffer.concat(frame.fragments.map((f) => f.bytes));
  }
  if (frame.bitOffset === 0) return frame.bytes.subarray(0, Math.ceil(frame.bits / 8));
  // 1-bit frames packed without byte alignment: shift so the frame starts at bit 0 (LSB first, PS3.5 §8.1.1).
  const out = new Uint8Array(Math.ceil(frame.bits / 8));
  const src = frame.bytes;
  const shift = frame.bitOffset;
  for (let i = 0; i < out.length; i++) {
    out[i] = (((src[i] ?? 0) >>> shift) | ((src[i + 1] ?? 0) << (8 - shift))) & 0xff;
  }
  const tail = frame.bits % 8;
  if (tail) out[out.length - 1] = (out[out.length - 1] as number) & ((1 << tail) - 1);
  return out;
}

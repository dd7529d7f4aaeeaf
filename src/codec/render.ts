/**
 * Rendering (WADO-RS Retrieve Rendered, thumbnails): a decoded frame plus the dataset's
 * presentation attributes → an 8-bit grey or RGB image → viewport → JPEG, PNG or GIF.
 *
 * Grey pipeline (PS3.4 N.2, PS3.3 C.11), per stored value:
 *   stored bits: shifted down so HighBit is bit BitsStored-1, masked to BitsStored bits (garbage
 *     in the unused high bits is dropped), sign-extended when PixelRepresentation is 1;
 *   Modality LUT: the Modality LUT Sequence when present, else Rescale Slope/Intercept (the
 *     enhanced multi-frame Pixel Value Transformation functional group overrides both);
 *   VOI: the request's `window` if given, else the dataset's first Window Center/Width pair with
 *     its VOI LUT Function (a per-frame Frame VOI LUT functional group overrides), else the first
 *     VOI LUT Sequence item, else an automatic window: min to max of the frame's modality-LUT
 *     values (linear-exact, so the smallest value is black and the largest white), except for
 *     images of ≤ 8 unsigned stored bits without any modality transform, shown as stored (0 black,
 *     2^BitsStored-1 white: what an 8-bit secondary capture means). Window functions are exactly
 *     PS3.3 C.11.2.1.2.1 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT) and C.11.2.1.3.1 (SIGMOID) with
 *     ymin 0 and ymax 255, rounded to the nearest integer;
 *   Presentation LUT: inverted when Photometric Interpretation is MONOCHROME1 or Presentation LUT
 *     Shape is INVERSE (once: for MONOCHROME1 images the standard's INVERSE means the same thing).
 * The whole chain is folded into one lookup table over the raw 8- or 16-bit sample patterns (kept
 * per presentation, so the slices of a series share one), so a pixel costs one table read; 32-bit
 * samples use a table over the values that occur, float pixel data is computed pixel by pixel.
 *
 * Colour: RGB as stored (samples of more than 8 bits scaled to 8); YBR_FULL and YBR_FULL_422
 * (also subsampled, as native 4:2:2 is stored) → RGB with PS3.3 C.7.6.3.1.2's equations;
 * YBR_PARTIAL_422/420 → RGB with the ITU-R BT.601 partial-range equations; YBR_ICT/YBR_RCT are
 * treated as RGB (JPEG 2000 decoders undo the component transform); planar configuration 1 is
 * interleaved; PALETTE COLOR through the Red/Green/Blue Palette Color LUTs (8- or 16-bit entries,
 * 16-bit entries scaled to 8 bits). `window` does not apply to colour images and is ignored.
 *
 * Then the viewport (PS3.18 §8.3.5.1.3, parsed in render-params.ts): crop to the source region,
 * flip, scale to fit vw×vh keeping the aspect ratio (sharp, Lanczos 3), centred on black; and
 * encode with sharp: JPEG at `quality` (default 90), PNG, GIF (256 colours, no dithering for
 * grey). Annotations are never burned in.
 *
 * Everything here takes and returns plain data (typed arrays, numbers, strings), so a worker
 * thread can run it: see render-worker.ts.
 */
import sharp, { type Sharp } from "sharp";
import type { Dataset, Element } from "../dicom/dataset.js";
import { binaryNumbers, stringValues } from "../dicom/values.js";
import {
  RenderParamError,
  type RenderMediaType,
  type RenderParams,
  thumbnailParams,
  type ViewportParams,
  type WindowFunction,
  type WindowParams,
} from "./render-params.js";
import type { DecodedFrame, FrameInfo } from "./types.js";

// ---------------------------------------------------------------------------------------------
// Presentation: what the dataset says about how to show its pixels

/** A lookup table (LUT Descriptor + LUT Data, PS3.3 C.11.1.1). */
export interface Lut {
  /** First input value mapped (inputs below map to entry 0, above to the last entry). */
  firstMapped: number;
  /** Bits per entry (from the descriptor, raised when the data holds larger values). */
  bits: number;
  data: Uint16Array;
}

export interface Presentation {
  rescaleSlope: number;
  rescaleIntercept: number;
  /** Modality LUT Sequence, first item (replaces slope/intercept). */
  modalityLut?: Lut;
  /** First Window Center/Width pair and its VOI LUT Function. */
  window?: WindowParams;
  /** VOI LUT Sequence, first item (used when there is no window). */
  voiLut?: Lut;
  presentationLutShape?: "IDENTITY" | "INVERSE";
  /** Red, green, blue Palette Color LUTs (PALETTE COLOR). */
  palette?: { red: Lut; green: Lut; blue: Lut };
  /** How long this frame shows in a cine loop, ms (Frame Time, Frame Time Vector, Cine Rate, Recommended Display Frame Rate). */
  frameTimeMs?: number;
}

/** The image cannot be rendered (a pixel format or attribute this renderer does not handle, or pixels that do not match their description). */
export class RenderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RenderError";
  }
}

const T = {
  FrameTime: 0x00181063,
  FrameTimeVector: 0x00181065,
  CineRate: 0x00180040,
  RecommendedDisplayFrameRate: 0x00082144,
  PixelRepresentation: 0x00280103,
  WindowCenter: 0x00281050,
  WindowWidth: 0x00281051,
  RescaleIntercept: 0x00281052,
  RescaleSlope: 0x00281053,
  VOILUTFunction: 0x00281056,
  RedPaletteColorLutDescriptor: 0x00281101,
  GreenPaletteColorLutDescriptor: 0x00281102,
  BluePaletteColorLutDescriptor: 0x00281103,
  RedPaletteColorLutData: 0x00281201,
  GreenPaletteColorLutData: 0x00281202,
  BluePaletteColorLutData: 0x00281203,
  SegmentedRedPaletteColorLutData: 0x00281221,
  ModalityLUTSequence: 0x00283000,
  LUTDescriptor: 0x00283002,
  LUTData: 0x00283006,
  VOILUTSequence: 0x00283010,
  FrameVOILUTSequence: 0x00289132,
  PixelValueTransformationSequence: 0x00289145,
  PresentationLUTShape: 0x20500020,
  SharedFunctionalGroupsSequence: 0x52009229,
  PerFrameFunctionalGroupsSequence: 0x52009230,
} as const;

function decimals(ds: Dataset, tag: number): number[] {
  const el = ds.get(tag);
  if (!el) return [];
  if (el.vr === "DS" || el.vr === "IS") {
    return stringValues(ds, el)
      .map((s) => (s.trim() === "" ? Number.NaN : Number(s)))
      .filter(Number.isFinite);
  }
  return binaryNumbers(ds, el).map(Number).filter(Number.isFinite);
}

const firstDecimal = (ds: Dataset, tag: number): number | undefined => decimals(ds, tag)[0];

function text(ds: Dataset, tag: number): string | undefined {
  const el = ds.get(tag);
  return el ? stringValues(ds, el)[0]?.trim().toUpperCase() : undefined;
}

const firstItem = (ds: Dataset | undefined, tag: number): Dataset | undefined => ds?.get(tag)?.items?.[0];

/** 16-bit words of an OW/US value in the dataset's byte order. */
function words(ds: Dataset, el: Element | undefined): Uint16Array {
  const bytes = el?.bytes;
  if (!bytes) return new Uint16Array(0);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint16Array(bytes.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint16(i * 2, ds.littleEndian);
  return out;
}

/** LUT Descriptor: entries (0 means 65536), first mapped value (signed when the pixels are), bits. */
function descriptor(ds: Dataset, el: Element | undefined, signedPixels: boolean): [number, number, number] | undefined {
  if (!el) return undefined;
  // US or SS as declared; OW/UN (implicit VR files, unknown VR) read as 16-bit words.
  const values = el.vr === "US" || el.vr === "SS" ? binaryNumbers(ds, el).map(Number) : Array.from(words(ds, el));
  if (values.length < 3) return undefined;
  const entries = (values[0] as number) === 0 ? 65536 : (values[0] as number);
  let first = values[1] as number;
  // "US or SS": a first mapped value read as US is signed when the pixel values are (PS3.3 C.11.1.1.1).
  if (signedPixels && el.vr !== "SS" && first >= 0x8000) first -= 0x10000;
  return [entries, first, values[2] as number];
}

function readLut(item: Dataset, signedPixels: boolean): Lut | undefined {
  const d = descriptor(item, item.get(T.LUTDescriptor), signedPixels);
  const data = words(item, item.get(T.LUTData));
  if (!d || data.length === 0) return undefined;
  const [entries, firstMapped, descriptorBits] = d;
  const table = data.length > entries ? data.subarray(0, entries) : data;
  return { firstMapped, bits: lutBits(descriptorBits, table), data: table };
}

/** Bits per entry: the descriptor's, unless the data holds larger values (a known encoder error). */
function lutBits(declared: number, data: Uint16Array): number {
  let max = 0;
  for (let i = 0; i < data.length; i++) if ((data[i] as number) > max) max = data[i] as number;
  let bits = declared >= 1 && declared <= 16 ? declared : 16;
  while (bits < 16 && max >= 1 << bits) bits++;
  return bits;
}

function readPalette(ds: Dataset): Presentation["palette"] {
  if (ds.has(T.SegmentedRedPaletteColorLutData) && !ds.has(T.RedPaletteColorLutData)) {
    throw new RenderError("segmented palette color lookup tables are not supported");
  }
  const channel = (descTag: number, dataTag: number): Lut | undefined => {
    const d = descriptor(ds, ds.get(descTag), false);
    const el = ds.get(dataTag);
    if (!d || !el?.bytes) return undefined;
    const [entries, firstMapped, bits] = d;
    let data: Uint16Array;
    if (bits === 8 && el.bytes.length === entries) {
      // 8-bit entries packed two per word (PS3.3 C.7.6.3.1.6): the bytes are the entries.
      data = Uint16Array.from(el.bytes);
    } else {
      data = words(ds, el).subarray(0, entries);
      // Some writers put 8-bit entries in the high byte of each word.
      if (bits === 8 && data.some((v) => v > 0xff)) data = data.map((v) => v >> 8);
    }
    return { firstMapped, bits: bits === 8 ? 8 : 16, data };
  };
  const red = channel(T.RedPaletteColorLutDescriptor, T.RedPaletteColorLutData);
  const green = channel(T.GreenPaletteColorLutDescriptor, T.GreenPaletteColorLutData);
  const blue = channel(T.BluePaletteColorLutDescriptor, T.BluePaletteColorLutData);
  return red && green && blue ? { red, green, blue } : undefined;
}

const VOI_FUNCTIONS: Record<string, WindowFunction> = { LINEAR: "linear", LINEAR_EXACT: "linear-exact", SIGMOID: "sigmoid" };

function readWindow(ds: Dataset): WindowParams | undefined {
  const center = firstDecimal(ds, T.WindowCenter);
  const width = firstDecimal(ds, T.WindowWidth);
  if (center === undefined || width === undefined) return undefined;
  const fn = VOI_FUNCTIONS[text(ds, T.VOILUTFunction) ?? "LINEAR"] ?? "linear";
  // A window the standard forbids (PS3.3 C.11.2.1.2) is no window: fall back to the next choice.
  if (fn === "linear" ? width < 1 : width <= 0) return undefined;
  return { center, width, function: fn };
}

/** Frame display time, ms, from the cine attributes (undefined when there are none). */
function frameTime(ds: Dataset, frameIndex: number): number | undefined {
  const ft = firstDecimal(ds, T.FrameTime);
  if (ft !== undefined && ft > 0) return ft;
  const vector = decimals(ds, T.FrameTimeVector);
  // Entry i is the time from frame i-1 to frame i: frame i shows for entry i+1 (the last for the last frame).
  const fromVector = vector[frameIndex + 1] ?? vector[vector.length - 1];
  if (fromVector !== undefined && fromVector > 0) return fromVector;
  for (const tag of [T.CineRate, T.RecommendedDisplayFrameRate]) {
    const rate = firstDecimal(ds, tag);
    if (rate !== undefined && rate > 0) return 1000 / rate;
  }
  return undefined;
}

/**
 * The presentation attributes of one frame (0-based `frameIndex`): Modality LUT, VOI, Presentation
 * LUT Shape, palette and frame time. For enhanced multi-frame objects, the Pixel Value
 * Transformation and Frame VOI LUT functional groups of the frame (Per-Frame, else Shared)
 * override the top-level attributes.
 */
export function presentationOf(ds: Dataset, frameIndex = 0): Presentation {
  const signedPixels = (firstDecimal(ds, T.PixelRepresentation) ?? 0) === 1;
  const p: Presentation = {
    rescaleSlope: firstDecimal(ds, T.RescaleSlope) ?? 1,
    rescaleIntercept: firstDecimal(ds, T.RescaleIntercept) ?? 0,
  };
  if (p.rescaleSlope === 0) p.rescaleSlope = 1; // a zero slope would make every pixel one value: an encoding error
  const modalityItem = firstItem(ds, T.ModalityLUTSequence);
  if (modalityItem) {
    const lut = readLut(modalityItem, signedPixels);
    if (lut) p.modalityLut = lut;
  }
  const window = readWindow(ds);
  if (window) p.window = window;
  const voiItem = firstItem(ds, T.VOILUTSequence);
  if (voiItem) {
    const lut = readLut(voiItem, signedPixels);
    if (lut) p.voiLut = lut;
  }
  const shape = text(ds, T.PresentationLUTShape);
  if (shape === "INVERSE" || shape === "IDENTITY") p.presentationLutShape = shape;

  // Enhanced multi-frame: the frame's functional groups.
  const perFrame = ds.get(T.PerFrameFunctionalGroupsSequence)?.items?.[frameIndex];
  const shared = firstItem(ds, T.SharedFunctionalGroupsSequence);
  for (const group of [shared, perFrame]) {
    const pvt = firstItem(group, T.PixelValueTransformationSequence);
    if (pvt) {
      const slope = firstDecimal(pvt, T.RescaleSlope);
      const intercept = firstDecimal(pvt, T.RescaleIntercept);
      if (slope !== undefined && slope !== 0) p.rescaleSlope = slope;
      if (intercept !== undefined) p.rescaleIntercept = intercept;
      if (slope !== undefined || intercept !== undefined) delete p.modalityLut;
    }
    const voi = firstItem(group, T.FrameVOILUTSequence);
    if (voi) {
      const w = readWindow(voi);
      if (w) p.window = w;
    }
  }

  if (ds.has(T.RedPaletteColorLutDescriptor)) {
    const palette = readPalette(ds);
    if (palette) p.palette = palette;
  }
  const ms = frameTime(ds, frameIndex);
  if (ms !== undefined) p.frameTimeMs = ms;
  return p;
}

// ---------------------------------------------------------------------------------------------
// Window functions (PS3.3 C.11.2.1.2.1, C.11.2.1.3.1, C.11.2.1.3.2)

/** The VOI window function of PS3.3 for one input value, output in [ymin, ymax] (not rounded). */
export function applyWindow(x: number, window: WindowParams, ymin = 0, ymax = 255): number {
  const { center: c, width: w } = window;
  switch (window.function) {
    case "linear": {
      if (x <= c - 0.5 - (w - 1) / 2) return ymin;
      if (x > c - 0.5 + (w - 1) / 2) return ymax;
      return ((x - (c - 0.5)) / (w - 1) + 0.5) * (ymax - ymin) + ymin;
    }
    case "linear-exact": {
      if (x <= c - w / 2) return ymin;
      if (x > c + w / 2) return ymax;
      return ((x - c) / w + 0.5) * (ymax - ymin) + ymin;
    }
    case "sigmoid":
      return (ymax - ymin) / (1 + Math.exp((-4 * (x - c)) / w)) + ymin;
  }
}

/** Output of a LUT for an input value, scaled to [0, 255] (not rounded). */
function lutOutput(lut: Lut, x: number): number {
  const n = lut.data.length;
  let i = Math.round(x) - lut.firstMapped;
  if (i < 0) i = 0;
  else if (i >= n) i = n - 1;
  return ((lut.data[i] as number) * 255) / ((1 << lut.bits) - 1);
}

/** Raw output of a LUT (not scaled): a Modality LUT's output is the modality value itself. */
function lutValue(lut: Lut, x: number): number {
  const n = lut.data.length;
  let i = Math.round(x) - lut.firstMapped;
  if (i < 0) i = 0;
  else if (i >= n) i = n - 1;
  return lut.data[i] as number;
}

// ---------------------------------------------------------------------------------------------
// Pixels

const clamp8 = (v: number): number => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/** An 8-bit image: grey (1 channel) or interleaved RGB (3 channels). */
export interface Raster {
  width: number;
  height: number;
  channels: 1 | 3;
  data: Uint8Array;
}

/** How the grey values of a frame are mapped: from the request, the dataset, or computed. */
export type VoiChoice = { kind: "window"; window: WindowParams } | { kind: "lut"; lut: Lut } | { kind: "auto" };

const isGrey = (info: FrameInfo): boolean => info.samplesPerPixel === 1 && !info.photometricInterpretation.startsWith("PALETTE");

/** Float or Double Float Pixel Data (PS3.3 C.7.6.24): samples are IEEE floats, not bit patterns. */
const isFloat = (info: FrameInfo): boolean => {
  const vr = (info as { pixelDataVr?: string }).pixelDataVr;
  return vr === "OF" || vr === "OD";
};

/** Samples of the frame as an array of the allocated width (1-bit frames unpacked to 0/1; float pixel data as floats). */
function samples(frame: DecodedFrame): Uint8Array | Uint16Array | Uint32Array | Float32Array | Float64Array {
  const { info, pixels } = frame;
  const count = info.rows * info.columns * info.samplesPerPixel;
  const bytesNeeded = info.bitsAllocated === 1 ? Math.ceil(count / 8) : count * (info.bitsAllocated / 8);
  if (pixels.length < bytesNeeded) {
    throw new RenderError(
      `the frame holds ${pixels.length} bytes but ${info.rows}×${info.columns}×${info.samplesPerPixel} samples of ${info.bitsAllocated} bits need ${bytesNeeded}`,
    );
  }
  switch (info.bitsAllocated) {
    case 1: {
      const out = new Uint8Array(count);
      for (let i = 0; i < count; i++) out[i] = ((pixels[i >> 3] as number) >> (i & 7)) & 1;
      return out;
    }
    case 8:
      return pixels.subarray(0, count);
    case 16:
      return pixels.byteOffset % 2 === 0
        ? new Uint16Array(pixels.buffer, pixels.byteOffset, count)
        : new Uint16Array(pixels.slice(0, count * 2).buffer);
    case 32:
      if (isFloat(info)) {
        return pixels.byteOffset % 4 === 0
          ? new Float32Array(pixels.buffer, pixels.byteOffset, count)
          : new Float32Array(pixels.slice(0, count * 4).buffer);
      }
      return pixels.byteOffset % 4 === 0
        ? new Uint32Array(pixels.buffer, pixels.byteOffset, count)
        : new Uint32Array(pixels.slice(0, count * 4).buffer);
    case 64:
      if (!isFloat(info)) break;
      return pixels.byteOffset % 8 === 0
        ? new Float64Array(pixels.buffer, pixels.byteOffset, count)
        : new Float64Array(pixels.slice(0, count * 8).buffer);
  }
  throw new RenderError(`Bits Allocated ${info.bitsAllocated} cannot be rendered (1, 8, 16 or 32; 32 or 64 for float pixel data)`);
}

/** Extracts stored values: shift so HighBit lands on bit BitsStored-1, mask, sign-extend. */
function storedBits(info: FrameInfo): { shift: number; bits: number; signed: boolean } {
  const allocated = info.bitsAllocated;
  const bits = info.bitsStored >= 1 && info.bitsStored <= allocated ? info.bitsStored : allocated;
  const high = info.highBit;
  const shift = high >= bits - 1 && high < allocated ? high - (bits - 1) : 0;
  return { shift, bits, signed: info.pixelRepresentation === 1 };
}

/** The modality value of a stored value (already shifted, masked and sign-extended). */
const modalityOf = (p: Presentation, v: number): number =>
  p.modalityLut ? lutValue(p.modalityLut, v) : v * p.rescaleSlope + p.rescaleIntercept;

type IntSamples = Uint8Array | Int8Array | Uint16Array | Int16Array | Int32Array | Uint32Array;

/**
 * Stored values of an integer frame: shifted down to bit 0, masked to BitsStored bits and
 * sign-extended. A view of the samples when nothing needs doing (8 or 16 bits stored in as many
 * allocated, the common case), else a new array. 32-bit values come back unsigned or signed as
 * PixelRepresentation says.
 */
function storedValues(frame: DecodedFrame): IntSamples {
  const src = samples(frame) as Uint8Array | Uint16Array | Uint32Array;
  const { shift, bits, signed } = storedBits(frame.info);
  const allocated = frame.info.bitsAllocated;
  if (shift === 0 && bits === allocated) {
    if (!signed) return src;
    if (src instanceof Uint16Array) return new Int16Array(src.buffer, src.byteOffset, src.length);
    if (src instanceof Uint32Array) return new Int32Array(src.buffer, src.byteOffset, src.length);
    if (allocated === 8) return new Int8Array(src.buffer, src.byteOffset, src.length);
  }
  const out = new Int32Array(src.length);
  const mask = bits >= 32 ? 0xffffffff : 2 ** bits - 1;
  const up = 32 - bits;
  for (let i = 0; i < src.length; i++) {
    const pattern = ((src[i] as number) >>> shift) & mask;
    out[i] = signed ? (pattern << up) >> up : pattern;
  }
  return out;
}

function minMax(values: IntSamples): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

/** Largest range of stored values mapped through one lookup table (beyond it, each pixel is computed). */
const MAX_LUT = 1 << 16;

/** Smallest and largest modality value in the frame (over the values that occur). */
export function modalityRange(frame: DecodedFrame, p: Presentation): { min: number; max: number } {
  if (isFloat(frame.info)) {
    const src = samples(frame);
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < src.length; i++) {
      const v = src[i] as number;
      if (!Number.isFinite(v)) continue;
      const m = modalityOf(p, v);
      if (m < min) min = m;
      if (m > max) max = m;
    }
    return { min, max };
  }
  const values = storedValues(frame);
  const range = minMax(values);
  if (!p.modalityLut) {
    const a = modalityOf(p, range.min);
    const b = modalityOf(p, range.max);
    return { min: Math.min(a, b), max: Math.max(a, b) };
  }
  // A modality LUT need not be monotonic: look at every value that occurs.
  let min = Infinity;
  let max = -Infinity;
  if (range.max - range.min < MAX_LUT) {
    const seen = new Uint8Array(range.max - range.min + 1);
    for (let i = 0; i < values.length; i++) seen[(values[i] as number) - range.min] = 1;
    for (let v = 0; v < seen.length; v++) {
      if (!seen[v]) continue;
      const m = modalityOf(p, v + range.min);
      if (m < min) min = m;
      if (m > max) max = m;
    }
  } else {
    for (let i = 0; i < values.length; i++) {
      const m = modalityOf(p, values[i] as number);
      if (m < min) min = m;
      if (m > max) max = m;
    }
  }
  return { min, max };
}

/** The automatic window for a modality range: linear-exact from min (black) to max (white). */
export function autoWindow(range: { min: number; max: number }): WindowParams {
  return { center: (range.min + range.max) / 2, width: Math.max(range.max - range.min, Number.MIN_VALUE), function: "linear-exact" };
}

/** True when the frame's values are meant as they are stored: ≤ 8 unsigned bits, no modality transform. */
function shownAsStored(info: FrameInfo, p: Presentation): boolean {
  return (
    !isFloat(info) &&
    info.bitsStored <= 8 &&
    info.pixelRepresentation === 0 &&
    !p.modalityLut &&
    p.rescaleSlope === 1 &&
    p.rescaleIntercept === 0
  );
}

/** Which VOI applies to this frame (request, dataset window, dataset VOI LUT, or automatic). */
export function voiChoice(p: Presentation, params: Pick<RenderParams, "window">): VoiChoice {
  if (params.window) return { kind: "window", window: params.window };
  if (p.window) return { kind: "window", window: p.window };
  if (p.voiLut) return { kind: "lut", lut: p.voiLut };
  return { kind: "auto" };
}

/** Resolves an automatic VOI to a window for this frame. */
function resolveVoi(frame: DecodedFrame, p: Presentation, voi: VoiChoice): Exclude<VoiChoice, { kind: "auto" }> {
  if (voi.kind !== "auto") return voi;
  if (shownAsStored(frame.info, p)) {
    const top = 2 ** Math.max(1, frame.info.bitsStored) - 1;
    return { kind: "window", window: { center: top / 2, width: top, function: "linear-exact" } };
  }
  const range = modalityRange(frame, p);
  if (range.max <= range.min) {
    // One value everywhere: nothing to contrast; show it black.
    return { kind: "window", window: { center: range.min + 1, width: 1, function: "linear-exact" } };
  }
  return { kind: "window", window: autoWindow(range) };
}

/**
 * Display tables over raw sample patterns (every 8- or 16-bit pattern a sample can hold: shifting,
 * masking, sign extension, Modality LUT, VOI and inversion folded in), by everything that decides
 * them. The slices of a series share their presentation, so a series costs one table; a cold
 * render then costs one read per pixel and no pass to find the range of values.
 */
const patternLuts = new Map<string, Uint8Array>();
const PATTERN_LUTS = 16;

function patternLut(info: FrameInfo, p: Presentation, window: WindowParams | undefined, display: (m: number) => number): Uint8Array {
  const { shift, bits, signed } = storedBits(info);
  // Presentations with tables of their own (Modality or VOI LUT) are built each time: rare, and their keys would be long.
  const key =
    window && !p.modalityLut
      ? `${info.bitsAllocated}/${shift}/${bits}/${signed}/${p.rescaleSlope}/${p.rescaleIntercept}/${window.center}/${window.width}/${window.function}/${info.photometricInterpretation}/${p.presentationLutShape}`
      : undefined;
  const cached = key === undefined ? undefined : patternLuts.get(key);
  if (cached && key !== undefined) {
    patternLuts.delete(key);
    patternLuts.set(key, cached);
    return cached;
  }
  const lut = new Uint8Array(info.bitsAllocated <= 8 ? 256 : 65536);
  const mask = 2 ** bits - 1;
  const up = 32 - bits;
  for (let pattern = 0; pattern < lut.length; pattern++) {
    const s = (pattern >>> shift) & mask;
    lut[pattern] = display(modalityOf(p, signed ? (s << up) >> up : s));
  }
  if (key !== undefined) {
    patternLuts.set(key, lut);
    if (patternLuts.size > PATTERN_LUTS) patternLuts.delete(patternLuts.keys().next().value as string);
  }
  return lut;
}

// One function per array type, so each loop stays monomorphic.
function lookUp16(raw: Uint16Array, lut: Uint8Array, out: Uint8Array): void {
  let done = 0;
  if (raw.byteOffset % 4 === 0 && out.byteOffset % 4 === 0) {
    // Four pixels a step (two 32-bit reads, one 32-bit write; little endian, as the samples are):
    // about three times faster than one at a time.
    const words = new Uint32Array(raw.buffer, raw.byteOffset, out.length >> 1);
    const quads = new Uint32Array(out.buffer, out.byteOffset, out.length >> 2);
    for (let i = 0, j = 0; i < quads.length; i++, j += 2) {
      const a = words[j] as number;
      const b = words[j + 1] as number;
      quads[i] =
        (lut[a & 0xffff] as number) |
        ((lut[a >>> 16] as number) << 8) |
        ((lut[b & 0xffff] as number) << 16) |
        ((lut[b >>> 16] as number) << 24);
    }
    done = quads.length * 4;
  }
  for (let i = done; i < out.length; i++) out[i] = lut[raw[i] as number] as number;
}

function lookUp8(raw: Uint8Array, lut: Uint8Array, out: Uint8Array): void {
  for (let i = 0; i < out.length; i++) out[i] = lut[raw[i] as number] as number;
}

/**
 * One reusable buffer per thread, for the bytes of one image at a time (a frame read from its file,
 * the display raster): a fresh buffer of hundreds of KiB per image costs more in page faults,
 * zeroing and garbage collection than the work done in it. A second taker while it is taken (never,
 * in a pool worker, which runs one task at a time) gets a buffer of its own.
 */
export class ScratchBuffer {
  #bytes = new Uint8Array(0);
  #taken = false;

  take(size: number): Uint8Array {
    if (this.#taken) return new Uint8Array(size);
    this.#taken = true;
    if (this.#bytes.length < size) this.#bytes = new Uint8Array(size);
    return this.#bytes.subarray(0, size);
  }

  /** Gives the buffer back (a buffer `take` made on the side is simply dropped). */
  give(bytes: Uint8Array): void {
    if (bytes.buffer === this.#bytes.buffer) this.#taken = false;
  }
}

const rasterBuffer = new ScratchBuffer();

function greyToRaster(frame: DecodedFrame, p: Presentation, voi: VoiChoice, scratch?: ScratchBuffer): Raster {
  const { info } = frame;
  const chosen = resolveVoi(frame, p, voi);
  const invert = info.photometricInterpretation === "MONOCHROME1" || p.presentationLutShape === "INVERSE";
  /** Display value (0–255) of a modality value. */
  const display = (m: number): number => {
    if (Number.isNaN(m)) return invert ? 255 : 0;
    let y = chosen.kind === "window" ? applyWindow(m, chosen.window) : lutOutput(chosen.lut, m);
    if (invert) y = 255 - y;
    return clamp8(y);
  };
  const count = info.rows * info.columns;
  // Every byte is written below: no need to zero it first (a quarter of a millisecond for 512²).
  const out: Uint8Array = scratch ? scratch.take(count) : Buffer.allocUnsafeSlow(count);
  if (isFloat(info)) {
    const src = samples(frame);
    for (let i = 0; i < count; i++) out[i] = display(modalityOf(p, src[i] as number));
    return { width: info.columns, height: info.rows, channels: 1, data: out };
  }
  if (info.bitsAllocated <= 16) {
    const lut = patternLut(info, p, chosen.kind === "window" ? chosen.window : undefined, display);
    const raw = samples(frame);
    if (raw instanceof Uint16Array) lookUp16(raw, lut, out);
    else lookUp8(raw as Uint8Array, lut, out);
    return { width: info.columns, height: info.rows, channels: 1, data: out };
  }
  const values = storedValues(frame);
  const { min, max } = minMax(values);
  if (max - min < MAX_LUT) {
    // One table over the values that occur: a pixel costs one read.
    const lut = new Uint8Array(max - min + 1);
    for (let v = 0; v < lut.length; v++) lut[v] = display(modalityOf(p, v + min));
    for (let i = 0; i < count; i++) out[i] = lut[(values[i] as number) - min] as number;
  } else {
    for (let i = 0; i < count; i++) out[i] = display(modalityOf(p, values[i] as number));
  }
  return { width: info.columns, height: info.rows, channels: 1, data: out };
}

function colorToRaster(frame: DecodedFrame, p: Presentation): Raster {
  const { info } = frame;
  const pi = info.photometricInterpretation;
  const count = info.rows * info.columns;
  const out = new Uint8Array(count * 3);
  const { shift, bits } = storedBits(info);
  const mask = 2 ** bits - 1;
  // The stored bit pattern of a sample (>>> 0 keeps 32-bit patterns unsigned).
  const stored = bits >= 32 ? (raw: number): number => raw >>> 0 : (raw: number): number => (raw >>> shift) & mask;

  if (pi === "PALETTE COLOR") {
    if (!p.palette) throw new RenderError("PALETTE COLOR without Red, Green and Blue Palette Color Lookup Tables");
    const src = samples(frame);
    const { red, green, blue } = p.palette;
    const to8 = (lut: Lut): Uint8Array => {
      const max = (1 << lut.bits) - 1;
      return Uint8Array.from(lut.data, (v) => clamp8((v * 255) / max));
    };
    const r8 = to8(red);
    const g8 = to8(green);
    const b8 = to8(blue);
    const entry = (lut: Lut, v: number): number => {
      const i = v - lut.firstMapped;
      return i < 0 ? 0 : i >= lut.data.length ? lut.data.length - 1 : i;
    };
    for (let i = 0; i < count; i++) {
      const v = stored(src[i] as number);
      out[i * 3] = r8[entry(red, v)] as number;
      out[i * 3 + 1] = g8[entry(green, v)] as number;
      out[i * 3 + 2] = b8[entry(blue, v)] as number;
    }
    return { width: info.columns, height: info.rows, channels: 3, data: out };
  }

  if (info.samplesPerPixel !== 3) throw new RenderError(`${info.samplesPerPixel} samples per pixel with ${pi} cannot be rendered`);

  // YBR_FULL_422 / YBR_PARTIAL_422 as stored natively: Y1 Y2 Cb Cr for each pair of pixels.
  const subsampled =
    (pi === "YBR_FULL_422" || pi === "YBR_PARTIAL_422") &&
    info.bitsAllocated === 8 &&
    info.columns % 2 === 0 &&
    frame.pixels.length < count * 3 &&
    frame.pixels.length >= count * 2;
  let a: Uint8Array; // first, second and third component of every pixel, interleaved, 8-bit
  if (subsampled) {
    a = new Uint8Array(count * 3);
    const s = frame.pixels;
    for (let i = 0, o = 0; o < count * 3; i += 4, o += 6) {
      const cb = s[i + 2] as number;
      const cr = s[i + 3] as number;
      a[o] = s[i] as number;
      a[o + 1] = cb;
      a[o + 2] = cr;
      a[o + 3] = s[i + 1] as number;
      a[o + 4] = cb;
      a[o + 5] = cr;
    }
  } else {
    const src = samples(frame);
    const planar = info.planarConfiguration === 1;
    a = new Uint8Array(count * 3);
    const scale = bits > 8 ? 255 / mask : 1;
    for (let i = 0; i < count; i++) {
      for (let c = 0; c < 3; c++) {
        let v = stored(planar ? (src[c * count + i] as number) : (src[i * 3 + c] as number));
        if (bits > 8) v = Math.round(v * scale);
        a[i * 3 + c] = v;
      }
    }
  }

  if (pi === "YBR_FULL" || pi === "YBR_FULL_422") {
    for (let o = 0; o < count * 3; o += 3) {
      const y = a[o] as number;
      const cb = (a[o + 1] as number) - 128;
      const cr = (a[o + 2] as number) - 128;
      out[o] = clamp8(y + 1.402 * cr);
      out[o + 1] = clamp8(y - 0.344136 * cb - 0.714136 * cr);
      out[o + 2] = clamp8(y + 1.772 * cb);
    }
  } else if (pi === "YBR_PARTIAL_422" || pi === "YBR_PARTIAL_420") {
    for (let o = 0; o < count * 3; o += 3) {
      const y = 1.164383 * ((a[o] as number) - 16);
      const cb = (a[o + 1] as number) - 128;
      const cr = (a[o + 2] as number) - 128;
      out[o] = clamp8(y + 1.596027 * cr);
      out[o + 1] = clamp8(y - 0.391762 * cb - 0.812968 * cr);
      out[o + 2] = clamp8(y + 2.017232 * cb);
    }
  } else if (pi === "RGB" || pi === "YBR_ICT" || pi === "YBR_RCT") {
    return { width: info.columns, height: info.rows, channels: 3, data: a };
  } else {
    throw new RenderError(`Photometric Interpretation ${pi} cannot be rendered`);
  }
  return { width: info.columns, height: info.rows, channels: 3, data: out };
}

/** The frame as displayed (full size, before the viewport): 8-bit grey or RGB. */
export function displayRaster(frame: DecodedFrame, p: Presentation, voi: VoiChoice, scratch?: ScratchBuffer): Raster {
  if (frame.info.rows < 1 || frame.info.columns < 1) throw new RenderError("the frame has no pixels");
  return isGrey(frame.info) ? greyToRaster(frame, p, voi, scratch) : colorToRaster(frame, p);
}

// ---------------------------------------------------------------------------------------------
// Viewport

/** The source region of the viewport (clamped to the image), flipped as asked; the raster itself when there is nothing to do. */
export function sourceRegion(raster: Raster, viewport: ViewportParams | undefined): Raster {
  if (!viewport) return raster;
  const { width, height, channels } = raster;
  const { sx, sy } = viewport;
  if (sx >= width || sy >= height) {
    throw new RenderParamError("viewport", `the source region starts at ${sx},${sy}, outside the ${width}×${height} image`);
  }
  const w = Math.min(viewport.sw ?? width - sx, width - sx);
  const h = Math.min(viewport.sh ?? height - sy, height - sy);
  if (sx === 0 && sy === 0 && w === width && h === height && !viewport.flipX && !viewport.flipY) return raster;
  const out = new Uint8Array(w * h * channels);
  for (let y = 0; y < h; y++) {
    const srcRow = sy + (viewport.flipY ? h - 1 - y : y);
    const srcStart = (srcRow * width + sx) * channels;
    const dstStart = y * w * channels;
    if (!viewport.flipX) {
      out.set(raster.data.subarray(srcStart, srcStart + w * channels), dstStart);
    } else {
      for (let x = 0; x < w; x++) {
        const s = srcStart + (w - 1 - x) * channels;
        const d = dstStart + x * channels;
        for (let c = 0; c < channels; c++) out[d + c] = raster.data[s + c] as number;
      }
    }
  }
  return { width: w, height: h, channels, data: out };
}

export interface ViewportLayout {
  /** Size the region is scaled to. */
  width: number;
  height: number;
  /** Black bars around it (letterbox): the output is width+left+right × height+top+bottom. */
  left: number;
  top: number;
  right: number;
  bottom: number;
}

/**
 * Viewport scaling (PS3.18 §8.3.5.1.3): as large as possible inside vw×vh without distortion; with
 * `letterbox` the output is vw×vh, the image centred. Without a viewport: the region's own size.
 */
export function viewportLayout(regionWidth: number, regionHeight: number, viewport: ViewportParams | undefined): ViewportLayout {
  if (!viewport) return { width: regionWidth, height: regionHeight, left: 0, top: 0, right: 0, bottom: 0 };
  let scale = Math.min(viewport.vw / regionWidth, viewport.vh / regionHeight);
  if (!viewport.enlarge) scale = Math.min(scale, 1);
  const width = Math.max(1, Math.min(viewport.vw, Math.round(regionWidth * scale)));
  const height = Math.max(1, Math.min(viewport.vh, Math.round(regionHeight * scale)));
  if (!viewport.letterbox) return { width, height, left: 0, top: 0, right: 0, bottom: 0 };
  const left = Math.floor((viewport.vw - width) / 2);
  const top = Math.floor((viewport.vh - height) / 2);
  return { width, height, left, top, right: viewport.vw - width - left, bottom: viewport.vh - height - top };
}

/** A sharp pipeline from a raster through the viewport's scaling and bars. */
function scaled(raster: Raster, viewport: ViewportParams | undefined): Sharp {
  const layout = viewportLayout(raster.width, raster.height, viewport);
  let img = sharp(raster.data, { raw: { width: raster.width, height: raster.height, channels: raster.channels } });
  if (layout.width !== raster.width || layout.height !== raster.height) {
    img = img.resize(layout.width, layout.height, { fit: "fill", kernel: "lanczos3" });
  }
  if (layout.left || layout.top || layout.right || layout.bottom) {
    const { left, top, right, bottom } = layout;
    img = img.extend({ left, top, right, bottom, background: { r: 0, g: 0, b: 0, alpha: 1 } });
  }
  // Grey stays one channel (sharp would otherwise write sRGB): smaller, faster JPEG and PNG.
  return raster.channels === 1 ? img.toColourspace("b-w") : img;
}

function checkIcc(params: RenderParams, mediaType: RenderMediaType): boolean {
  const icc = params.iccProfile !== undefined && params.iccProfile !== "no";
  if (icc && mediaType === "image/gif")
    throw new RenderParamError("iccprofile", "image/gif cannot carry an ICC profile: use iccprofile=no, or PNG or JPEG");
  return icc;
}

/**
 * GIF: a fresh 256-colour palette per frame, never approximated by the previous frame's (so up to
 * 256 greys are exact), every frame kept (a cine loop keeps its timing), dithering for colour only.
 */
const gifOptions = (channels: 1 | 3) => ({
  colours: 256,
  dither: channels === 1 ? 0 : 1,
  reuse: false,
  interPaletteMaxError: 0,
  keepDuplicateFrames: true,
});

function encode(img: Sharp, raster: Pick<Raster, "channels">, params: RenderParams, mediaType: RenderMediaType): Promise<Buffer> {
  if (checkIcc(params, mediaType)) img = img.withIccProfile("srgb");
  switch (mediaType) {
    case "image/jpeg":
      // No Huffman optimisation: it doubles the encode time of a 512² CT for about 1 % fewer bytes.
      return img.jpeg({ quality: params.quality, optimiseCoding: false }).toBuffer();
    case "image/png":
      return img.png({ compressionLevel: 6 }).toBuffer();
    case "image/gif":
      return img.gif(gifOptions(raster.channels)).toBuffer();
  }
}

// ---------------------------------------------------------------------------------------------
// Public API

/** The image `renderFrame` encodes, as raw 8-bit pixels before viewport scaling (source region and flips applied). */
export function renderRaster(frame: DecodedFrame, presentation: Presentation, params: Pick<RenderParams, "window" | "viewport">): Raster {
  const raster = displayRaster(frame, presentation, voiChoice(presentation, params));
  return sourceRegion(raster, params.viewport);
}

/** Renders one frame: presentation, viewport, encode. Throws RenderParamError (400) or RenderError. */
export async function renderFrame(
  frame: DecodedFrame,
  presentation: Presentation,
  params: RenderParams,
  mediaType: RenderMediaType,
): Promise<Buffer> {
  checkIcc(params, mediaType);
  const display = displayRaster(frame, presentation, voiChoice(presentation, params), rasterBuffer);
  try {
    const raster = sourceRegion(display, params.viewport);
    // Awaited here: sharp reads the raster until the image is encoded, then it can be reused.
    return await encode(scaled(raster, params.viewport), raster, params, mediaType);
  } finally {
    rasterBuffer.give(display.data);
  }
}

/** Default display time of a frame when the dataset has no cine attributes: 10 frames per second. */
export const DEFAULT_FRAME_TIME_MS = 100;
/** Largest raw size (all frames after the viewport) of an animated GIF. */
export const MAX_ANIMATION_BYTES = 512 * 1024 * 1024;
/** Browsers show GIF frames of under 20 ms for 100 ms: never ask for less. */
const MIN_FRAME_TIME_MS = 20;

/**
 * Renders frames as an animated GIF (or, for JPEG/PNG, the first frame alone: those media types
 * hold one image). Each frame shows for its presentation's frame time (DEFAULT_FRAME_TIME_MS
 * without cine attributes). When neither the request nor the dataset gives a window, one
 * automatic window spans all frames (min to max over all of them), so the loop does not flicker.
 */
export async function renderFrames(
  frames: DecodedFrame[],
  presentations: Presentation | Presentation[],
  params: RenderParams,
  mediaType: RenderMediaType = "image/gif",
): Promise<Buffer> {
  if (frames.length === 0) throw new RenderError("no frames to render");
  const presentationAt = (i: number): Presentation =>
    Array.isArray(presentations) ? ((presentations[i] ?? presentations[presentations.length - 1]) as Presentation) : presentations;
  if (mediaType !== "image/gif" || frames.length === 1) {
    return renderFrame(frames[0] as DecodedFrame, presentationAt(0), params, mediaType);
  }
  checkIcc(params, mediaType);

  // One automatic window for the whole loop.
  let shared: VoiChoice | undefined;
  const first = frames[0] as DecodedFrame;
  if (isGrey(first.info) && voiChoice(presentationAt(0), params).kind === "auto" && !shownAsStored(first.info, presentationAt(0))) {
    let min = Infinity;
    let max = -Infinity;
    frames.forEach((f, i) => {
      const r = modalityRange(f, presentationAt(i));
      min = Math.min(min, r.min);
      max = Math.max(max, r.max);
    });
    if (max > min) shared = { kind: "window", window: autoWindow({ min, max }) };
  }

  // Every page is held raw before the GIF is encoded: bound that memory.
  const rows = params.viewport?.sh ?? first.info.rows;
  const columns = params.viewport?.sw ?? first.info.columns;
  const page = viewportLayout(Math.min(columns, first.info.columns), Math.min(rows, first.info.rows), params.viewport);
  const pageBytes = (page.width + page.left + page.right) * (page.height + page.top + page.bottom) * (isGrey(first.info) ? 1 : 3);
  if (pageBytes * frames.length > MAX_ANIMATION_BYTES) {
    const message = `${frames.length} frames of ${page.width + page.left + page.right}×${page.height + page.top + page.bottom} are more than the ${MAX_ANIMATION_BYTES >> 20} MiB an animated GIF may hold raw`;
    if (params.viewport) throw new RenderParamError("viewport", `${message}: ask for a smaller viewport`);
    throw new RenderError(`${message}: ask with a viewport that scales it down`);
  }

  const pages: Buffer[] = [];
  const delays: number[] = [];
  let size: { width: number; height: number; channels: 1 | 3 } | undefined;
  for (let i = 0; i < frames.length; i++) {
    const frame = frames[i] as DecodedFrame;
    const p = presentationAt(i);
    const raster = sourceRegion(displayRaster(frame, p, shared ?? voiChoice(p, params)), params.viewport);
    const { data, info } = await scaled(raster, params.viewport).raw().toBuffer({ resolveWithObject: true });
    const page = { width: info.width, height: info.height, channels: raster.channels };
    if (size && (size.width !== page.width || size.height !== page.height || size.channels !== page.channels)) {
      throw new RenderError(
        `frame ${i + 1} renders to ${page.width}×${page.height}×${page.channels}, unlike frame 1 (${size.width}×${size.height}×${size.channels})`,
      );
    }
    size = page;
    pages.push(data);
    delays.push(Math.max(MIN_FRAME_TIME_MS, Math.round(p.frameTimeMs ?? DEFAULT_FRAME_TIME_MS)));
  }
  const { width, height, channels } = size as { width: number; height: number; channels: 1 | 3 };
  return sharp(Buffer.concat(pages), { raw: { width, height: height * frames.length, channels, pageHeight: height } })
    .gif({ ...gifOptions(channels), delay: delays, loop: 0 })
    .toBuffer();
}

/**
 * A thumbnail of one frame (PS3.18 §8.3.5.2): `params` from parseThumbnailParams, or by default
 * thumbnailParams() — fitted into 128×128, aspect kept, never enlarged. The dataset's window (or
 * the automatic one) applies. Choosing the frame (the middle one of a multi-frame) or the instance
 * (the middle one of a series) is the caller's decision.
 */
export function renderThumbnail(
  frame: DecodedFrame,
  presentation: Presentation,
  mediaType: RenderMediaType = "image/jpeg",
  params: RenderParams = thumbnailParams(),
): Promise<Buffer> {
  return renderFrame(frame, presentation, params, mediaType);
}

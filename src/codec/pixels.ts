/** Sample-level helpers shared by the decoders and encoders: byte order, bit cleanup, layout. */
import { swapBytesForVr, type Vr } from "../dicom/index.js";
import { CodecError } from "./errors.js";
import type { FrameInfo } from "./types.js";

/** Whole bytes per sample for a Bits Allocated value (1-bit frames have no whole-byte samples). */
export const bytesPerSample = (bitsAllocated: number): number => Math.ceil(bitsAllocated / 8);

/** Subsampled YBR (two luma samples share one Cb and one Cr): only native frames store it this way. */
export const isSubsampledYbr = (pi: string): boolean => pi === "YBR_FULL_422" || pi === "YBR_PARTIAL_422";

export const isYbr = (pi: string): boolean => pi.startsWith("YBR_");

/** Bytes of one native frame: rows × columns × samples × bits, 1-bit frames rounded up; 4:2:2 YBR takes two samples per pixel. */
export function nativeFrameLength(info: FrameInfo): number {
  const samples = info.samplesPerPixel === 3 && isSubsampledYbr(info.photometricInterpretation) ? 2 : info.samplesPerPixel;
  return Math.ceil((info.rows * info.columns * samples * info.bitsAllocated) / 8);
}

/** Bytes of the frame once decoded by a codec (always one value per sample). */
export const decodedFrameLength = (info: FrameInfo): number =>
  info.rows * info.columns * info.samplesPerPixel * bytesPerSample(info.bitsAllocated);

const SWAP_UNIT: Readonly<Record<string, number>> = { OB: 1, UN: 1, OW: 2, OF: 4, OL: 4, OD: 8, OV: 8 };

/** Big endian native frame bytes to little endian (or back), swapped in the unit of the pixel element's VR (a copy). */
export function bigEndianToLittle(bytes: Uint8Array, info: FrameInfo): Uint8Array {
  const vr = info.pixelDataVr ?? (info.bitsAllocated > 8 ? "OW" : "OB");
  const unit = SWAP_UNIT[vr];
  if (unit === undefined) return swapBytesForVr(bytes, vr as Vr);
  const copy = Buffer.alloc(bytes.length);
  copy.set(bytes);
  // Node's native swaps; a trailing odd byte (never in valid pixel data) stays where it is.
  const whole = copy.subarray(0, bytes.length - (bytes.length % unit));
  if (unit === 2) whole.swap16();
  else if (unit === 4) whole.swap32();
  else if (unit === 8) whole.swap64();
  return copy;
}

/**
 * GDCM's "overlay cleanup" of 16-bit samples whose Bits Stored is less than Bits Allocated, done in
 * place: the stored bits are moved down to bit 0 (High Bit + 1 − Bits Stored), then signed
 * samples are sign-extended from their top stored bit and unsigned ones masked. GDCM applies it
 * when it decodes RLE and JPEG (not JPEG-LS, not JPEG 2000) and before it encodes; 32-bit samples
 * are left alone (GDCM's own 32-bit branch masks with 16-bit masks).
 */
export function cleanupUnusedBits(pixels: Uint8Array, info: FrameInfo): void {
  if (info.bitsAllocated !== 16 || info.bitsStored >= 16 || info.bitsStored <= 0) return;
  const words = pixels.byteOffset % 2 === 0 ? new Uint16Array(pixels.buffer, pixels.byteOffset, pixels.byteLength >> 1) : undefined;
  const shift = Math.max(0, info.highBit + 1 - info.bitsStored);
  const mask = (1 << info.bitsStored) - 1;
  const sign = 1 << (info.bitsStored - 1);
  const extend = 0xffff & ~mask;
  const signed = info.pixelRepresentation === 1;
  if (words) {
    for (let i = 0; i < words.length; i++) {
      const v = ((words[i] as number) >>> shift) & mask;
      words[i] = signed && v & sign ? v | extend : v;
    }
    return;
  }
  for (let i = 0; i + 1 < pixels.length; i += 2) {
    const v = ((((pixels[i] as number) | ((pixels[i + 1] as number) << 8)) >>> shift) & mask) >>> 0;
    const w = signed && v & sign ? v | extend : v;
    pixels[i] = w & 0xff;
    pixels[i + 1] = w >>> 8;
  }
}

/** The frame's info after cleanup: High Bit is Bits Stored − 1. */
export const cleanedInfo = (info: FrameInfo): FrameInfo =>
  info.bitsAllocated === 16 && info.bitsStored < 16 ? { ...info, highBit: info.bitsStored - 1 } : info;

/** Planar (RR…GG…BB…) to interleaved (RGBRGB…), for samples of `bytes` bytes (a copy). */
export function planarToInterleaved(pixels: Uint8Array, samples: number, pixelCount: number, bytes: number): Uint8Array {
  const out = new Uint8Array(pixelCount * samples * bytes);
  for (let s = 0; s < samples; s++) {
    for (let p = 0; p < pixelCount; p++) {
      const from = (s * pixelCount + p) * bytes;
      const to = (p * samples + s) * bytes;
      for (let b = 0; b < bytes; b++) out[to + b] = pixels[from + b] as number;
    }
  }
  return out;
}

/** Interleaved to planar (a copy). */
export function interleavedToPlanar(pixels: Uint8Array, samples: number, pixelCount: number, bytes: number): Uint8Array {
  const out = new Uint8Array(pixelCount * samples * bytes);
  for (let s = 0; s < samples; s++) {
    for (let p = 0; p < pixelCount; p++) {
      const from = (p * samples + s) * bytes;
      const to = (s * pixelCount + p) * bytes;
      for (let b = 0; b < bytes; b++) out[to + b] = pixels[from + b] as number;
    }
  }
  return out;
}

/** 8-bit samples widened to 16-bit little endian words (sign-extended when `signed`). */
export function widen8to16(pixels: Uint8Array, signed: boolean): Uint8Array {
  const out = new Uint8Array(pixels.length * 2);
  for (let i = 0; i < pixels.length; i++) {
    const v = pixels[i] as number;
    out[2 * i] = v;
    out[2 * i + 1] = signed && v & 0x80 ? 0xff : 0;
  }
  return out;
}

/** 16-bit samples narrowed to 8 bits; throws when a value does not fit (the data is not 8-bit). */
export function narrow16to8(pixels: Uint8Array, signed: boolean): Uint8Array {
  const out = new Uint8Array(pixels.length >> 1);
  for (let i = 0; i < out.length; i++) {
    const lo = pixels[2 * i] as number;
    const hi = pixels[2 * i + 1] as number;
    if (!(hi === 0 || (signed && hi === 0xff && lo & 0x80)))
      throw new CodecError("MISMATCH", "decoded samples do not fit the 8 bits allocated");
    out[i] = lo;
  }
  return out;
}

/**
 * 4:2:2 subsampled YBR (Y1 Y2 Cb Cr per pixel pair, native frames only) to full YBR, interleaved:
 * each chroma pair is repeated for both pixels of the pair, as GDCM does. 8-bit only.
 */
export function expandYbr422(pixels: Uint8Array, rows: number, columns: number): Uint8Array {
  const out = new Uint8Array(rows * columns * 3);
  let i = 0;
  let o = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c += 2) {
      const y1 = pixels[i] as number;
      const y2 = pixels[i + 1] as number;
      const cb = pixels[i + 2] as number;
      const cr = pixels[i + 3] as number;
      i += 4;
      out[o++] = y1;
      out[o++] = cb;
      out[o++] = cr;
      if (c + 1 < columns) {
        out[o++] = y2;
        out[o++] = cb;
        out[o++] = cr;
      }
    }
  }
  return out;
}

const clamp8 = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

/** YBR_FULL (8-bit, interleaved) to RGB with the PS3.3 C.7.6.3.1.2 equations (lossy: rounding). */
export function ybrFullToRgb(pixels: Uint8Array): Uint8Array {
  const out = new Uint8Array(pixels.length);
  for (let i = 0; i + 2 < pixels.length; i += 3) {
    const y = pixels[i] as number;
    const cb = (pixels[i + 1] as number) - 128;
    const cr = (pixels[i + 2] as number) - 128;
    out[i] = clamp8(y + 1.402 * cr);
    out[i + 1] = clamp8(y - 0.344136 * cb - 0.714136 * cr);
    out[i + 2] = clamp8(y + 1.772 * cb);
  }
  return out;
}

/** A Uint8Array over exactly its own ArrayBuffer (so it can be transferred), copying only when it is a view of something larger. */
export function ownBuffer(bytes: Uint8Array): Uint8Array {
  if (
    bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength &&
    bytes.buffer instanceof ArrayBuffer &&
    !Buffer.isBuffer(bytes)
  )
    return bytes;
  const own = new Uint8Array(bytes.byteLength);
  own.set(bytes);
  return own;
}

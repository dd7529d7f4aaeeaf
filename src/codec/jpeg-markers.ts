/**
 * JPEG (ITU-T T.81) and JPEG-LS (T.87) marker scanning: the frame header a codec will see, and the
 * colour-space markers that decide whether libjpeg converts YCbCr to RGB.
 *
 * libjpeg guesses the colour space of a 3-component stream from its markers (JFIF: YCbCr; Adobe
 * APP14: its transform flag; neither: the component IDs). DICOM says it with Photometric
 * Interpretation instead, and DCMTK and GDCM follow the DICOM header: an RGB JPEG is never
 * colour-converted. Every libjpeg-based WASM decoder follows the markers and turns RGB streams
 * without markers magenta (notes/libraries.md T10), so the stream is patched to say what DICOM says.
 */
import { CodecError } from "./errors.js";

export interface JpegComponent {
  id: number;
  h: number;
  v: number;
}

export interface JpegHeader {
  /** SOF marker number: 0 baseline, 1 extended, 2 progressive, 3 lossless; 0xF7 (SOF55) JPEG-LS. */
  sof: number;
  precision: number;
  rows: number;
  columns: number;
  components: JpegComponent[];
  /** Offset of the JFIF APP0 segment's marker, or -1. */
  jfif: number;
  /** Offset of the Adobe APP14 segment's marker, or -1. */
  adobe: number;
  /** Adobe transform flag (0 none/RGB, 1 YCbCr, 2 YCCK); -1 without the segment. */
  adobeTransform: number;
  /** First scan's interleave/NEAR (JPEG-LS: NEAR in Ss, ILV in Se). */
  scan?: { ss: number; se: number };
}

const u16 = (b: Uint8Array, at: number): number => ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);

/** Reads the markers up to the first scan. Throws a CodecError when the stream is not JPEG. */
export function scanJpeg(b: Uint8Array): JpegHeader {
  if (b[0] !== 0xff || b[1] !== 0xd8) throw new CodecError("CORRUPT", "not a JPEG stream: it does not start with SOI (FFD8)");
  const header: JpegHeader = { sof: -1, precision: 0, rows: 0, columns: 0, components: [], jfif: -1, adobe: -1, adobeTransform: -1 };
  let at = 2;
  while (at + 4 <= b.length) {
    if (b[at] !== 0xff) throw new CodecError("CORRUPT", `JPEG marker expected at byte ${at}`);
    const marker = b[at + 1] as number;
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      at += 2;
      continue;
    }
    const length = u16(b, at + 2);
    if (length < 2 || at + 2 + length > b.length)
      throw new CodecError("CORRUPT", `JPEG segment FF${marker.toString(16)} at byte ${at} is truncated`);
    const body = at + 4;
    const isSof = (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) || marker === 0xf7;
    if (isSof) {
      header.sof = marker === 0xf7 ? 0xf7 : marker - 0xc0;
      header.precision = b[body] ?? 0;
      header.rows = u16(b, body + 1);
      header.columns = u16(b, body + 3);
      const n = b[body + 5] ?? 0;
      for (let i = 0; i < n; i++) {
        const c = body + 6 + i * 3;
        const sampling = b[c + 1] ?? 0;
        header.components.push({ id: b[c] ?? 0, h: sampling >> 4, v: sampling & 15 });
      }
    } else if (
      marker === 0xe0 &&
      length >= 7 &&
      b[body] === 0x4a &&
      b[body + 1] === 0x46 &&
      b[body + 2] === 0x49 &&
      b[body + 3] === 0x46 &&
      b[body + 4] === 0
    ) {
      header.jfif = at;
    } else if (marker === 0xee && length >= 12 && String.fromCharCode(...b.subarray(body, body + 5)) === "Adobe") {
      header.adobe = at;
      header.adobeTransform = b[body + 11] ?? 0;
    } else if (marker === 0xda) {
      const n = b[body] ?? 0;
      header.scan = { ss: b[body + 1 + n * 2] ?? 0, se: b[body + 2 + n * 2] ?? 0 };
      break;
    } else if (marker === 0xd9) {
      break;
    }
    at += 2 + length;
  }
  if (header.sof < 0) throw new CodecError("CORRUPT", "JPEG stream without a frame header (SOF)");
  return header;
}

/** Adobe APP14 with the given transform flag (0: the components are RGB; 1: YCbCr). */
const adobeSegment = (transform: number): Uint8Array =>
  Uint8Array.of(0xff, 0xee, 0x00, 0x0e, 0x41, 0x64, 0x6f, 0x62, 0x65, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, transform);

/**
 * The stream, changed (a copy) when needed so that libjpeg sees the colour space DICOM declares:
 * `rgb` true: no colour conversion (the JFIF marker, which implies YCbCr, is renamed; APP14 says
 * transform 0); false: YCbCr (APP14 transform 1 when libjpeg would otherwise guess RGB).
 * Only 3-component streams are touched.
 */
export function withColourSpace(b: Uint8Array, header: JpegHeader, rgb: boolean): Uint8Array {
  if (header.components.length !== 3) return b;
  const want = rgb ? 0 : 1;
  const guessedRgb = header.components[0]?.id === 0x52 && header.components[1]?.id === 0x47 && header.components[2]?.id === 0x42;
  const libjpegRgb = header.jfif >= 0 ? false : header.adobe >= 0 ? header.adobeTransform === 0 : guessedRgb;
  if (libjpegRgb === rgb) return b;
  if (header.adobe >= 0 && !(rgb && header.jfif >= 0)) {
    const out = Uint8Array.from(b);
    out[header.adobe + 4 + 11] = want;
    return out;
  }
  if (header.adobe >= 0) {
    // RGB wanted, JFIF present and an Adobe segment: rename JFIF, fix the flag.
    const out = Uint8Array.from(b);
    out[header.jfif + 4 + 3] = 0x58; // "JFIX": no longer a JFIF marker
    out[header.adobe + 4 + 11] = 0;
    return out;
  }
  const out = new Uint8Array(b.length + 16);
  out.set(b.subarray(0, 2));
  out.set(adobeSegment(want), 2);
  out.set(b.subarray(2), 18);
  if (rgb && header.jfif >= 0) out[header.jfif + 16 + 4 + 3] = 0x58;
  return out;
}

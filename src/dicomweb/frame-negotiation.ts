/**
 * Which representation of a frame to send (PS3.18 §8.7.3.5 and Table 8.7.3-2): walk the Accept
 * ranges by preference and take the first one that can be produced, as stored first.
 *   - application/octet-stream: uncompressed (Explicit VR LE) unless transfer-syntax names another
 *     syntax or is `*` (then the stored bytes, compressed or not: what OHIF asks for);
 *   - a compressed media type (image/jpeg, image/jls, image/jp2, image/jphc, image/dicom-rle): the
 *     stored frame when it is of that family, else the family's lossless syntax, transcoded;
 *   - a lossy syntax for a lossless source only when the client names it.
 */
import { TransferSyntaxUids as TS } from "../dicom/index.js";
import { frameMediaType, NATIVE_SYNTAXES, OCTET_STREAM, syntaxesForMediaType } from "./media-types.js";
import { lossyAllowed, PixelService } from "./pixels.js";

/** An Accept range as the HTTP layer parsed it. */
export interface AcceptRange {
  mediaType: string;
  params: Readonly<Record<string, string>>;
  q: number;
}

export interface FrameChoice {
  multipart: boolean;
  /** Media type of each frame part. */
  mediaType: string;
  transferSyntaxUid: string;
}

/** Lossless syntax of each compressed family, used when the family is asked for without a syntax. */
const LOSSLESS_OF: Record<string, string> = {
  "image/jpeg": TS.JPEGLosslessSV1,
  "image/jls": TS.JPEGLSLossless,
  "image/jp2": TS.JPEG2000Lossless,
  "image/jphc": TS.HTJ2KLossless,
  "image/dicom-rle": TS.RLELossless,
};

function candidate(stored: string, partType: string, asked: string | undefined): { syntax: string; named: boolean } | undefined {
  const native = NATIVE_SYNTAXES.has(stored);
  if (partType === OCTET_STREAM) {
    if (asked === "*") return { syntax: native ? TS.ExplicitVRLittleEndian : stored, named: false };
    if (asked) return { syntax: asked, named: true };
    return { syntax: TS.ExplicitVRLittleEndian, named: false };
  }
  const family = syntaxesForMediaType(partType);
  if (family.length === 0) return undefined;
  if (asked === "*" || asked === undefined) {
    if (family.includes(stored)) return { syntax: stored, named: false };
    const lossless = LOSSLESS_OF[partType];
    return lossless ? { syntax: lossless, named: false } : undefined;
  }
  return family.includes(asked) ? { syntax: asked, named: true } : undefined;
}

export function chooseFrameRepresentation(ranges: readonly AcceptRange[], stored: string): FrameChoice | undefined {
  const ordered = ranges.length > 0 ? [...ranges].filter((r) => r.q > 0).sort((a, b) => b.q - a.q) : [];
  if (ranges.length === 0) ordered.push({ mediaType: "*/*", params: {}, q: 1 });
  for (const range of ordered) {
    const type = range.mediaType.toLowerCase();
    // (multipart?, part type) pairs this range allows, in order; */* means the default, uncompressed, then as stored.
    const attempts: Array<[boolean, string]> =
      type === "multipart/related" || type === "multipart/*"
        ? [[true, (range.params.type ?? OCTET_STREAM).toLowerCase()]]
        : type === "*/*"
          ? [
              [true, OCTET_STREAM],
              [true, frameMediaType(stored)],
            ]
          : [[false, type]];
    for (const [multipart, partType] of attempts) {
      const pick = candidate(stored, partType, range.params["transfer-syntax"]);
      if (!pick) continue;
      if (!PixelService.canProduce(stored, pick.syntax) || !lossyAllowed(stored, pick.syntax, pick.named)) continue;
      return { multipart, mediaType: partType, transferSyntaxUid: pick.syntax };
    }
  }
  return undefined;
}

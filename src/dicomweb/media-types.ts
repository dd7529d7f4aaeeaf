/**
 * Media types of DICOMweb payloads (PS3.18 §8.7.3, Table 8.7.3-2..5): which transfer syntaxes a
 * frame or bulk data media type may carry, and the default one of each.
 */
import { TransferSyntaxUids as TS } from "../dicom/index.js";

export const DICOM = "application/dicom";
export const DICOM_JSON = "application/dicom+json";
export const DICOM_XML = "application/dicom+xml";
export const OCTET_STREAM = "application/octet-stream";
export const ZIP = "application/zip";
export const MULTIPART_RELATED = "multipart/related";

/** Transfer syntaxes whose frames are sent as a compressed-image media type, with that type. */
const FRAME_MEDIA_TYPES: ReadonlyArray<[string, string[]]> = [
  ["image/jpeg", ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"]],
  ["image/jls", ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"]],
  ["image/jp2", ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"]],
  ["image/jpx", ["1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"]],
  ["image/jphc", ["1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"]],
  ["image/jxl", ["1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112"]],
  ["image/dicom-rle", [TS.RLELossless]],
  ["video/mpeg", ["1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101"]],
  [
    "video/mp4",
    ["1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.106"],
  ],
  ["video/H265", ["1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108"]],
];

const MEDIA_TYPE_OF_SYNTAX = new Map<string, string>();
for (const [mediaType, uids] of FRAME_MEDIA_TYPES) for (const uid of uids) MEDIA_TYPE_OF_SYNTAX.set(uid, mediaType);

/** Syntaxes whose frames are uncompressed bytes (application/octet-stream). */
export const NATIVE_SYNTAXES = new Set<string>([
  TS.ImplicitVRLittleEndian,
  TS.ExplicitVRLittleEndian,
  TS.ExplicitVRBigEndian,
  TS.DeflatedExplicitVRLittleEndian,
  TS.EncapsulatedUncompressedExplicitVRLittleEndian,
]);

/** The media type a frame of this transfer syntax is sent with. */
export function frameMediaType(transferSyntaxUid: string): string {
  if (NATIVE_SYNTAXES.has(transferSyntaxUid)) return OCTET_STREAM;
  return MEDIA_TYPE_OF_SYNTAX.get(transferSyntaxUid) ?? OCTET_STREAM;
}

/** Transfer syntaxes a frame media type may carry (its default first). */
export function syntaxesForMediaType(mediaType: string): string[] {
  if (mediaType === OCTET_STREAM) return [TS.ExplicitVRLittleEndian];
  return FRAME_MEDIA_TYPES.find(([m]) => m.toLowerCase() === mediaType.toLowerCase())?.[1] ?? [];
}

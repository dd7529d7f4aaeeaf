/** Transfer syntaxes (PS3.5 §10, PS3.6 Annex A) and how each encodes a dataset. */
export interface TransferSyntax {
  uid: string;
  name: string;
  explicitVr: boolean;
  littleEndian: boolean;
  deflated: boolean;
  /** Pixel data is a sequence of fragments (PS3.5 A.4). */
  encapsulated: boolean;
  retired?: boolean;
}

export const TransferSyntaxUids = {
  ImplicitVRLittleEndian: "1.2.840.10008.1.2",
  ExplicitVRLittleEndian: "1.2.840.10008.1.2.1",
  EncapsulatedUncompressedExplicitVRLittleEndian: "1.2.840.10008.1.2.1.98",
  DeflatedExplicitVRLittleEndian: "1.2.840.10008.1.2.1.99",
  ExplicitVRBigEndian: "1.2.840.10008.1.2.2",
  JPEGBaseline8Bit: "1.2.840.10008.1.2.4.50",
  JPEGExtended12Bit: "1.2.840.10008.1.2.4.51",
  JPEGLossless: "1.2.840.10008.1.2.4.57",
  JPEGLosslessSV1: "1.2.840.10008.1.2.4.70",
  JPEGLSLossless: "1.2.840.10008.1.2.4.80",
  JPEGLSNearLossless: "1.2.840.10008.1.2.4.81",
  JPEG2000Lossless: "1.2.840.10008.1.2.4.90",
  JPEG2000: "1.2.840.10008.1.2.4.91",
  HTJ2KLossless: "1.2.840.10008.1.2.4.201",
  HTJ2KLosslessRPCL: "1.2.840.10008.1.2.4.202",
  HTJ2K: "1.2.840.10008.1.2.4.203",
  RLELossless: "1.2.840.10008.1.2.5",
} as const;

const native = (uid: string, name: string, explicitVr: boolean, littleEndian: boolean, deflated = false): TransferSyntax => ({
  uid,
  name,
  explicitVr,
  littleEndian,
  deflated,
  encapsulated: false,
});
const compressed = (uid: string, name: string, retired = false): TransferSyntax => ({
  uid,
  name,
  explicitVr: true,
  littleEndian: true,
  deflated: false,
  encapsulated: true,
  ...(retired ? { retired } : {}),
});

const ALL: TransferSyntax[] = [
  native("1.2.840.10008.1.2", "Implicit VR Little Endian", false, true),
  native("1.2.840.10008.1.2.1", "Explicit VR Little Endian", true, true),
  native("1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", true, true, true),
  { ...native("1.2.840.10008.1.2.2", "Explicit VR Big Endian", true, false), retired: true },
  compressed("1.2.840.10008.1.2.1.98", "Encapsulated Uncompressed Explicit VR Little Endian"),
  compressed("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)"),
  compressed("1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)"),
  compressed("1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)"),
  compressed("1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])"),
  compressed("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless Image Compression"),
  compressed("1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless) Image Compression"),
  compressed("1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)"),
  compressed("1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression"),
  compressed("1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)"),
  compressed("1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component Image Compression"),
  compressed("1.2.840.10008.1.2.4.94", "JPIP Referenced"),
  compressed("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level"),
  compressed("1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level"),
  compressed("1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1"),
  compressed("1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1"),
  compressed("1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video"),
  compressed("1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video"),
  compressed("1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2"),
  compressed("1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1"),
  compressed("1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1"),
  compressed("1.2.840.10008.1.2.4.110", "JPEG XL Lossless"),
  compressed("1.2.840.10008.1.2.4.111", "JPEG XL JPEG Recompression"),
  compressed("1.2.840.10008.1.2.4.112", "JPEG XL"),
  compressed("1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Image Compression (Lossless Only)"),
  compressed("1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)"),
  compressed("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000 Image Compression"),
  compressed("1.2.840.10008.1.2.5", "RLE Lossless"),
  compressed("1.2.840.10008.1.2.4.52", "JPEG Extended (Process 3 & 5)", true),
  compressed("1.2.840.10008.1.2.4.53", "JPEG Spectral Selection, Non-Hierarchical (Process 6 & 8)", true),
  compressed("1.2.840.10008.1.2.4.55", "JPEG Full Progression, Non-Hierarchical (Process 10 & 12)", true),
];

const BY_UID = new Map(ALL.map((ts) => [ts.uid, ts]));

export const lookupTransferSyntax = (uid: string): TransferSyntax | undefined => BY_UID.get(uid);
export const allTransferSyntaxes = (): readonly TransferSyntax[] => ALL;

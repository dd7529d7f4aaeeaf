/**
 * Frame encoding: native little endian samples (a DecodedFrame) to one frame of a target transfer
 * syntax. Which library, and what the result's Image Pixel attributes become:
 *
 * | Target | Library | Result |
 * |---|---|---|
 * | explicit / implicit VR LE, deflated, encapsulated uncompressed | none | the samples as given |
 * | explicit VR BE | none | swapped by the pixel element's VR |
 * | RLE | dcmjs-codecs | PI as given, planar 0 |
 * | JPEG baseline (4.50), 8-bit unsigned only | libjpeg-turbo (cornerstone); IJG (dcmjs-codecs) if turbo fails | colour: YCbCr 4:2:2 with JFIF, PI YBR_FULL_422 (T9); grey: PI as given; lossy |
 * | JPEG lossless SV1 (4.70) | dcmjs-codecs (IJG) | PI as given, no colour transform |
 * | JPEG-LS lossless (4.80) | CharLS (cornerstone) | PI as given, sample interleaved |
 * | JPEG 2000 lossless (4.90) | OpenJPEG (cornerstone); dcmjs-codecs if it fails | colour: RCT, PI YBR_RCT |
 * | HTJ2K lossless (4.201), HTJ2K RPCL (4.202) | OpenJPH (cornerstone) | colour: RCT, PI YBR_RCT; 4.202: RPCL, TLM, tile-parts per resolution |
 * | JPEG 2000 (4.91), HTJ2K (4.203) | as 4.90 / 4.201 | a reversible codestream: these syntaxes allow lossless ones; not lossy |
 *
 * Before a compressed encode the samples go through GDCM's cleanup (Bits Stored < Bits Allocated:
 * sign-extended or masked), planar data is interleaved, and 4:2:2 YBR is expanded to YBR_FULL.
 * Signed samples narrower than 16 bits are coded at 16 bits in JPEG lossless and JPEG-LS (neither
 * has signed samples; this is what DCMTK and GDCM do), at Bits Stored as signed components in
 * JPEG 2000. A lossless result is checked never to be empty; DCMTK and GDCM decode it back to the
 * cleaned input exactly (tests).
 */
import dcmjsCodecs from "dcmjs-codecs";
import { TransferSyntaxUids as TS } from "../dicom/index.js";
import { contextOf } from "./decode.js";
import { asCodecError, CodecError } from "./errors.js";
import { readJ2kHeader } from "./j2k-header.js";
import {
  bigEndianToLittle,
  bytesPerSample,
  cleanedInfo,
  cleanupUnusedBits,
  decodedFrameLength,
  expandYbr422,
  isSubsampledYbr,
  nativeFrameLength,
  ownBuffer,
  planarToInterleaved,
  ybrFullToRgb,
} from "./pixels.js";
import type { DecodedFrame, FrameInfo } from "./types.js";
import { charls, dcmjs, openjpeg, openjph, fromWasm, printed, turbojpeg, using, withLibrary } from "./wasm.js";

export interface EncodeOptions {
  /** JPEG baseline quality, 1–100 (default 90). */
  quality?: number;
}

export interface EncodedFrame {
  bytes: Uint8Array;
  /** The Image Pixel attributes of the encoded frame (PI and planar configuration may change). */
  info: FrameInfo;
  /** True when this encoding lost information. */
  lossy: boolean;
  /** Uncompressed size ÷ compressed size, for lossy results (Lossy Image Compression Ratio). */
  lossyRatio?: number;
  /** Lossy Image Compression Method (0028,2114) term, e.g. ISO_10918_1. */
  method?: string;
}

const { JpegSampleFactor } = dcmjsCodecs.constants;

const NATIVE_LE = new Set<string>([
  TS.ImplicitVRLittleEndian,
  TS.ExplicitVRLittleEndian,
  TS.DeflatedExplicitVRLittleEndian,
  TS.EncapsulatedUncompressedExplicitVRLittleEndian,
]);

/** Transfer syntaxes `encodeFrame` writes. */
export const ENCODABLE_SYNTAXES: ReadonlySet<string> = new Set<string>([
  ...NATIVE_LE,
  TS.ExplicitVRBigEndian,
  TS.RLELossless,
  TS.JPEGBaseline8Bit,
  TS.JPEGLosslessSV1,
  TS.JPEGLSLossless,
  TS.JPEG2000Lossless,
  TS.HTJ2KLossless,
  TS.HTJ2KLosslessRPCL,
  // "Lossless or lossy" syntaxes, written with a reversible (lossless) codestream.
  TS.JPEG2000,
  TS.HTJ2K,
]);

/**
 * Why this frame cannot be encoded in the syntax, or undefined when it can. Lets a caller (WADO)
 * refuse before decoding anything.
 */
export function encodeProblem(info: FrameInfo, transferSyntaxUid: string): string | undefined {
  if (!ENCODABLE_SYNTAXES.has(transferSyntaxUid)) return `frames cannot be encoded in transfer syntax ${transferSyntaxUid}`;
  if (NATIVE_LE.has(transferSyntaxUid) || transferSyntaxUid === TS.ExplicitVRBigEndian) return undefined;
  const spp = info.samplesPerPixel;
  if (spp !== 1 && spp !== 3) return `${spp} samples per pixel cannot be compressed`;
  const ba = info.bitsAllocated;
  if (transferSyntaxUid === TS.RLELossless)
    return ba === 8 || ba === 16 || ba === 32 ? undefined : `RLE needs 8, 16 or 32 bits allocated, not ${ba}`;
  if (ba !== 8 && ba !== 16) return `${ba}-bit samples cannot be compressed in ${transferSyntaxUid}`;
  if (transferSyntaxUid === TS.JPEGBaseline8Bit) {
    if (ba !== 8 || info.bitsStored !== 8) return "JPEG baseline needs 8-bit samples";
    if (info.pixelRepresentation === 1) return "JPEG baseline needs unsigned samples";
    if (info.photometricInterpretation === "PALETTE COLOR") return "palette indices must not be compressed lossily";
    return undefined;
  }
  const j2k =
    transferSyntaxUid === TS.JPEG2000Lossless ||
    transferSyntaxUid === TS.JPEG2000 ||
    transferSyntaxUid === TS.HTJ2KLossless ||
    transferSyntaxUid === TS.HTJ2KLosslessRPCL ||
    transferSyntaxUid === TS.HTJ2K;
  if (spp === 3 && ba === 16 && j2k) return "16-bit colour cannot be encoded in JPEG 2000 by the available codecs";
  const classic = transferSyntaxUid === TS.JPEG2000Lossless || transferSyntaxUid === TS.JPEG2000;
  if (spp === 3 && !classic && j2k && info.photometricInterpretation !== "RGB") {
    return `HTJ2K colour encoding needs RGB samples (OpenJPH's wrapper reads colour lines only through the RCT), not ${info.photometricInterpretation}`;
  }
  return undefined;
}

/** Encodes one frame. The input's samples are not modified. */
export async function encodeFrame(frame: DecodedFrame, transferSyntaxUid: string, options: EncodeOptions = {}): Promise<EncodedFrame> {
  const problem = encodeProblem(frame.info, transferSyntaxUid);
  if (problem) throw new CodecError("UNSUPPORTED", problem);
  const expected = nativeFrameLength(frame.info);
  if (frame.pixels.length < expected) throw new CodecError("MISMATCH", `frame holds ${frame.pixels.length} bytes, ${expected} expected`);
  if (NATIVE_LE.has(transferSyntaxUid)) return { bytes: frame.pixels.subarray(0, expected), info: frame.info, lossy: false };
  if (transferSyntaxUid === TS.ExplicitVRBigEndian) {
    return { bytes: bigEndianToLittle(frame.pixels.subarray(0, expected), frame.info), info: frame.info, lossy: false };
  }
  const { pixels, info } = prepare(frame);
  switch (transferSyntaxUid) {
    case TS.RLELossless:
      return encodeRle(pixels, info);
    case TS.JPEGBaseline8Bit:
      return encodeJpegBaseline(pixels, info, options.quality ?? 90);
    case TS.JPEGLosslessSV1:
      return encodeJpegLossless(pixels, info);
    case TS.JPEGLSLossless:
      return encodeJpegLs(pixels, info);
    case TS.JPEG2000Lossless:
    case TS.JPEG2000:
      return encodeJ2k(pixels, info);
    default:
      return encodeHtj2k(pixels, info, transferSyntaxUid === TS.HTJ2KLosslessRPCL);
  }
}

/** Interleaved, cleaned samples (a private copy, so the caller's frame is untouched). */
function prepare(frame: DecodedFrame): DecodedFrame {
  let info = frame.info;
  let pixels: Uint8Array;
  if (info.samplesPerPixel === 3 && isSubsampledYbr(info.photometricInterpretation)) {
    if (info.bitsAllocated !== 8) throw new CodecError("UNSUPPORTED", "4:2:2 YBR frames must be 8-bit");
    pixels = expandYbr422(frame.pixels, info.rows, info.columns);
    info = { ...info, photometricInterpretation: "YBR_FULL", planarConfiguration: 0 };
  } else if (info.samplesPerPixel > 1 && info.planarConfiguration === 1) {
    pixels = planarToInterleaved(frame.pixels, info.samplesPerPixel, info.rows * info.columns, bytesPerSample(info.bitsAllocated));
    info = { ...info, planarConfiguration: 0 };
  } else {
    pixels = Uint8Array.from(frame.pixels.subarray(0, decodedFrameLength(info)));
  }
  cleanupUnusedBits(pixels, info);
  info = cleanedInfo(info);
  const out: FrameInfo = { ...info, planarConfiguration: 0 };
  delete out.pixelDataVr;
  return { pixels, info: out };
}

function nonEmpty(bytes: Uint8Array | undefined, what: string): Uint8Array {
  if (!bytes || bytes.length === 0) throw new CodecError("CORRUPT", `${what} produced no data`);
  return ownBuffer(bytes);
}

// ---------------------------------------------------------------------------------------------

async function encodeRle(pixels: Uint8Array, info: FrameInfo): Promise<EncodedFrame> {
  const bytes = await withLibrary(dcmjs, ({ NativeCodecs, Context }) => {
    try {
      return NativeCodecs.encodeRle(new Context({ ...contextOf(info), decodedBuffer: pixels })).getEncodedBuffer();
    } catch (e) {
      throw asCodecError(e, "RLE encode");
    }
  });
  return { bytes: nonEmpty(bytes, "RLE encode"), info, lossy: false };
}

async function encodeJpegLossless(pixels: Uint8Array, info: FrameInfo): Promise<EncodedFrame> {
  // Signed samples: all 16 bits are coded (JPEG has no signed samples; the two's complement words round-trip).
  const precision = info.pixelRepresentation === 1 ? info.bitsAllocated : info.bitsStored;
  const bytes = await withLibrary(dcmjs, ({ NativeCodecs, Context }) => {
    try {
      const ctx = new Context({
        ...contextOf(info),
        bitsStored: precision,
        pixelRepresentation: 0,
        photometricInterpretation: "MONOCHROME2",
        decodedBuffer: pixels,
      });
      if (info.samplesPerPixel === 3) ctx.setPhotometricInterpretation("RGB");
      return NativeCodecs.encodeJpeg(ctx, { lossy: false, predictor: 1, pointTransform: 0 }).getEncodedBuffer();
    } catch (e) {
      throw asCodecError(e, "JPEG lossless encode");
    }
  });
  return { bytes: nonEmpty(bytes, "JPEG lossless encode"), info, lossy: false };
}

async function encodeJpegBaseline(pixels: Uint8Array, info: FrameInfo, quality: number): Promise<EncodedFrame> {
  const colour = info.samplesPerPixel === 3;
  // libjpeg takes RGB in and writes YCbCr: a YBR_FULL input goes back to RGB first.
  const input = colour && info.photometricInterpretation.startsWith("YBR") ? ybrFullToRgb(pixels) : pixels;
  const q = Math.max(1, Math.min(100, Math.round(quality)));
  let bytes: Uint8Array;
  try {
    bytes = await withLibrary(turbojpeg, (m) =>
      using(new m.JPEGEncoder(), (encoder) => {
        try {
          encoder
            .getDecodedBuffer({
              width: info.columns,
              height: info.rows,
              bitsPerSample: 8,
              componentCount: info.samplesPerPixel,
              isSigned: false,
            })
            .set(input);
          encoder.setProgressive(0);
          encoder.setQuality(q);
          encoder.setSubSampling(1); // 4:2:2
          encoder.encode();
          return fromWasm(encoder.getEncodedBuffer());
        } catch (e) {
          throw asCodecError(e, "JPEG baseline encode (libjpeg-turbo)");
        }
      }),
    );
  } catch {
    // Its output buffer is the size of the input: a tiny frame does not fit. IJG has no such limit.
    bytes = await withLibrary(dcmjs, ({ NativeCodecs, Context }) => {
      try {
        const ctx = new Context({ ...contextOf(info), photometricInterpretation: colour ? "RGB" : "MONOCHROME2", decodedBuffer: input });
        return (
          NativeCodecs.encodeJpeg(ctx, {
            lossy: true,
            quality: q,
            sampleFactor: colour ? JpegSampleFactor.Sf422 : JpegSampleFactor.Sf444,
          }).getEncodedBuffer() ?? new Uint8Array(0)
        );
      } catch (e) {
        throw asCodecError(e, "JPEG baseline encode (IJG)");
      }
    });
  }
  const out = nonEmpty(bytes, "JPEG baseline encode");
  return {
    bytes: out,
    info: { ...info, photometricInterpretation: colour ? "YBR_FULL_422" : info.photometricInterpretation },
    lossy: true,
    lossyRatio: decodedFrameLength(info) / out.length,
    method: "ISO_10918_1",
  };
}

async function encodeJpegLs(pixels: Uint8Array, info: FrameInfo): Promise<EncodedFrame> {
  const precision = info.pixelRepresentation === 1 ? info.bitsAllocated : info.bitsStored;
  const bytes = await withLibrary(charls, (m) =>
    using(new m.JpegLSEncoder(), (encoder) => {
      try {
        encoder
          .getDecodedBuffer({
            width: info.columns,
            height: info.rows,
            bitsPerSample: precision,
            componentCount: info.samplesPerPixel,
            isSigned: false,
          })
          .set(pixels);
        encoder.setNearLossless(0);
        encoder.setInterleaveMode(info.samplesPerPixel > 1 ? 2 : 0); // sample interleaved
        encoder.encode();
        return fromWasm(encoder.getEncodedBuffer()); // a view of WASM memory
      } catch (e) {
        throw asCodecError(e, "JPEG-LS encode (CharLS)");
      }
    }),
  );
  return { bytes: nonEmpty(bytes, "JPEG-LS encode"), info, lossy: false };
}

/** Wavelet levels: at most 5, and no more than the smaller side allows. */
const decompositionsFor = (info: FrameInfo): number => Math.max(0, Math.min(5, Math.floor(Math.log2(Math.min(info.rows, info.columns)))));

/** JPEG 2000 component description: signed samples at Bits Stored; signed 8-bit as unsigned bit patterns (the codecs' 8-bit paths are unsigned). */
function j2kComponents(info: FrameInfo): { bitsPerSample: number; isSigned: boolean } {
  if (info.pixelRepresentation === 1 && info.bitsAllocated === 8) return { bitsPerSample: 8, isSigned: false };
  return { bitsPerSample: info.bitsStored, isSigned: info.pixelRepresentation === 1 };
}

const colourInfo = (info: FrameInfo): FrameInfo =>
  info.samplesPerPixel === 3 && info.photometricInterpretation === "RGB" ? { ...info, photometricInterpretation: "YBR_RCT" } : info;

async function encodeJ2k(pixels: Uint8Array, info: FrameInfo): Promise<EncodedFrame> {
  const component = j2kComponents(info);
  // The cornerstone encoder applies the RCT to every 3-component image; only RGB may go through it.
  const mctOk = info.samplesPerPixel === 1 || info.photometricInterpretation === "RGB";
  let bytes: Uint8Array | undefined;
  if (mctOk) {
    bytes = await withLibrary(openjpeg, (m) =>
      using(new m.J2KEncoder(), (encoder) => {
        printed.length = 0;
        try {
          encoder
            .getDecodedBuffer({ width: info.columns, height: info.rows, componentCount: info.samplesPerPixel, ...component })
            .set(pixels);
          encoder.setDecompositions(decompositionsFor(info));
          encoder.setQuality(true, 0);
          encoder.encode();
        } catch (e) {
          throw asCodecError(e, "JPEG 2000 encode (OpenJPEG)");
        }
        // Failures are only printed; its output buffer is the input's size, so a frame that does not compress fails.
        const failed = printed.some((line) => line.includes("[ERROR]") || line.includes("failed"));
        printed.length = 0;
        return failed ? undefined : fromWasm(encoder.getEncodedBuffer());
      }),
    );
    if (bytes && !validJ2k(bytes, info)) bytes = undefined;
  }
  if (!bytes) {
    bytes = await withLibrary(dcmjs, ({ NativeCodecs, Context }) => {
      try {
        const ctx = new Context({ ...contextOf(info), decodedBuffer: pixels });
        return NativeCodecs.encodeJpeg2000(ctx, { lossy: false }).getEncodedBuffer();
      } catch (e) {
        throw asCodecError(e, "JPEG 2000 encode (dcmjs-codecs)");
      }
    });
  }
  const out = nonEmpty(bytes, "JPEG 2000 encode");
  return { bytes: out, info: readJ2kHeader(out).mct ? colourInfo(info) : info, lossy: false };
}

/** A codestream that says what was asked for (a truncated or foreign buffer does not). */
function validJ2k(bytes: Uint8Array, info: FrameInfo): boolean {
  try {
    const h = readJ2kHeader(bytes);
    return (
      h.width === info.columns &&
      h.height === info.rows &&
      h.components.length === info.samplesPerPixel &&
      bytes[bytes.length - 2] === 0xff &&
      bytes[bytes.length - 1] === 0xd9
    );
  } catch {
    return false;
  }
}

async function encodeHtj2k(pixels: Uint8Array, info: FrameInfo, rpcl: boolean): Promise<EncodedFrame> {
  const component = j2kComponents(info);
  const colour = info.samplesPerPixel === 3;
  const bytes = await withLibrary(openjph, (m) =>
    using(new m.HTJ2KEncoder(), (encoder) => {
      try {
        encoder
          .getDecodedBuffer({
            width: info.columns,
            height: info.rows,
            componentCount: info.samplesPerPixel,
            isUsingColorTransform: colour,
            ...component,
          })
          .set(pixels);
        encoder.setDecompositions(decompositionsFor(info));
        encoder.setQuality(true, 0);
        encoder.setProgressionOrder(2); // RPCL
        if (rpcl) {
          encoder.setTLMMarker(true);
          encoder.setTilePartDivisionsAtResolutions(true);
        }
        encoder.encode();
        return fromWasm(encoder.getEncodedBuffer()); // a view of WASM memory
      } catch (e) {
        throw asCodecError(e, "HTJ2K encode (OpenJPH)");
      }
    }),
  );
  const out = nonEmpty(bytes, "HTJ2K encode");
  if (!validJ2k(out, info) || !readJ2kHeader(out).highThroughput)
    throw new CodecError("CORRUPT", "OpenJPH produced no valid HTJ2K codestream");
  return { bytes: out, info: colour ? colourInfo(info) : info, lossy: false };
}

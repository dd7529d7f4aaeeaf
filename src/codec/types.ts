/**
 * Shared shapes of the pixel layer: what a frame is (from the dataset's Image Pixel module) and
 * what decoding gives. Codecs, the transcoder and the renderer all speak these.
 */

/** Image Pixel module attributes that describe one frame's encoding (PS3.3 C.7.6.3). */
export interface FrameInfo {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  /** 0 unsigned, 1 two's complement. */
  pixelRepresentation: number;
  photometricInterpretation: string;
  /** 0 interleaved (RGBRGB…), 1 planar (RR…GG…BB…); only meaningful when samplesPerPixel > 1. */
  planarConfiguration: number;
  /**
   * VR of the stored pixel data element (OB, OW, OF, OD, OL). Only native big endian frames need
   * it: they are byte-swapped by this VR (OW swaps 16-bit words, even for 8- or 32-bit samples).
   * Absent: OW when bitsAllocated > 8, else OB.
   */
  pixelDataVr?: string;
}

/**
 * Uncompressed pixels of one frame, as Explicit VR Little Endian would hold them: little endian
 * samples of `bitsAllocated` bits (1-bit frames packed LSB first), in `info.planarConfiguration`
 * order. `info` describes these bytes, which may differ from the source (e.g. a YBR_FULL_422 JPEG
 * decodes to RGB or YBR_FULL, interleaved).
 */
export interface DecodedFrame {
  info: FrameInfo;
  pixels: Uint8Array;
}

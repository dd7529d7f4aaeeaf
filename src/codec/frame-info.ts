/** The frame description of a dataset's Image Pixel module (PS3.3 C.7.6.3). */
import { type Dataset, firstInteger, firstString, Tags } from "../dicom/index.js";
import { CodecError } from "./errors.js";
import type { FrameInfo } from "./types.js";

/**
 * Describes one frame of the dataset's pixel data. Absent optional attributes take their usual
 * meaning: Samples per Pixel 1, Bits Stored = Bits Allocated, High Bit = Bits Stored − 1, unsigned,
 * interleaved, MONOCHROME2 (RGB for three samples). Float and Double Float Pixel Data are 32/64-bit.
 */
export function frameInfoOf(ds: Dataset): FrameInfo {
  const pixel = ds.get(Tags.PixelData) ?? ds.get(Tags.FloatPixelData) ?? ds.get(Tags.DoubleFloatPixelData);
  const rows = firstInteger(ds, Tags.Rows);
  const columns = firstInteger(ds, Tags.Columns);
  if (!rows || !columns || rows < 0 || columns < 0) throw new CodecError("MISMATCH", "the dataset needs Rows and Columns");
  const samplesPerPixel = firstInteger(ds, Tags.SamplesPerPixel) ?? 1;
  const bitsAllocated = ds.has(Tags.FloatPixelData)
    ? 32
    : ds.has(Tags.DoubleFloatPixelData)
      ? 64
      : (firstInteger(ds, Tags.BitsAllocated) ?? 0);
  if (samplesPerPixel < 1 || bitsAllocated < 1) throw new CodecError("MISMATCH", "the dataset needs Samples per Pixel and Bits Allocated");
  const bitsStored = Math.min(firstInteger(ds, Tags.BitsStored) ?? bitsAllocated, bitsAllocated);
  const highBit = firstInteger(ds, Tags.HighBit) ?? bitsStored - 1;
  const info: FrameInfo = {
    rows,
    columns,
    samplesPerPixel,
    bitsAllocated,
    bitsStored: bitsStored > 0 ? bitsStored : bitsAllocated,
    highBit,
    pixelRepresentation: firstInteger(ds, Tags.PixelRepresentation) === 1 ? 1 : 0,
    photometricInterpretation:
      (firstString(ds, Tags.PhotometricInterpretation) ?? "").toUpperCase() || (samplesPerPixel === 3 ? "RGB" : "MONOCHROME2"),
    planarConfiguration: samplesPerPixel > 1 && firstInteger(ds, Tags.PlanarConfiguration) === 1 ? 1 : 0,
  };
  if (pixel && !pixel.encapsulated) info.pixelDataVr = pixel.vr;
  return info;
}

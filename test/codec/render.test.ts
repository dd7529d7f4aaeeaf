/**
 * Rendering against DCMTK's dcmj2pnm (same window, same frame) on CT, MR, MONOCHROME1, Presentation
 * LUT INVERSE, BitsStored with garbage high bits, VOI LUT Sequence, RGB (planar 0 and 1), YBR_FULL,
 * YBR_FULL_422, 16- and 32-bit RGB, PALETTE COLOR (8- and 16-bit entries) and multi-frame; plus the
 * window functions against hand-computed values, viewport math, encoders (JPEG quality, PNG, GIF
 * pages), enhanced multi-frame functional groups, thumbnails and the piscina task.
 *
 * Fixtures come from pydicom's test files and from a pydicom script below (Debian python3-pydicom).
 * Both renderings of every comparison are written to test-artifacts/render/ for a reviewer.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Piscina } from "piscina";
import sharp from "sharp";
import { parseRenderParams, RenderParamError, type RenderParams, thumbnailParams } from "../../src/codec/render-params.js";
import {
  applyWindow,
  type Presentation,
  presentationOf,
  RenderError,
  renderFrame,
  renderFrames,
  renderRaster,
  renderThumbnail,
  sourceRegion,
  viewportLayout,
} from "../../src/codec/render.js";
import { type RenderTask, renderTask } from "../../src/codec/render-worker.js";
import type { DecodedFrame, FrameInfo } from "../../src/codec/types.js";
import {
  type Dataset,
  firstInteger,
  firstString,
  frameBytes,
  jsonToDataset,
  locateFrames,
  readDicomStrict,
  Tags,
} from "../../src/dicom/index.js";
import { PYDICOM_DATA, PYTHON, requireTools, run, TOOLS, toolsAvailable } from "../helpers/tools.js";
import { seededRandom } from "../../bench/seeded-random.js";

const work = mkdtempSync(join(tmpdir(), "voxelgate-render-"));
after(() => rmSync(work, { recursive: true, force: true }));
const artifacts = new URL("../../../test-artifacts/render/", import.meta.url).pathname;
mkdirSync(artifacts, { recursive: true });
const pydicomFile = (name: string): string => join(PYDICOM_DATA, "test_files", name);
const fixture = (name: string): string => join(work, `${name}.dcm`);

const params = (query = ""): RenderParams => parseRenderParams(new URLSearchParams(query));

// ---------------------------------------------------------------------------------------------
// Fixtures

/** Writes the synthetic fixtures with pydicom (deterministic seed). */
const FIXTURES_PY = String.raw`
import os, sys
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

out = sys.argv[1]
rng = np.random.default_rng(11)

def base(rows, cols, spp=1, pi="MONOCHROME2", bits=16, stored=None, signed=0, frames=None):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = spp
    ds.PhotometricInterpretation = pi
    if spp > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits
    ds.BitsStored = stored or bits
    ds.HighBit = (stored or bits) - 1
    ds.PixelRepresentation = signed
    if frames:
        ds.NumberOfFrames = frames
    ds.is_little_endian, ds.is_implicit_VR = True, False
    return ds

def save(ds, name):
    ds.save_as(os.path.join(out, name + ".dcm"), write_like_original=False)

def phantom(rows, cols, lo, hi):
    y, x = np.mgrid[0:rows, 0:cols]
    r = np.hypot(x - cols / 2, y - rows / 2) / (min(rows, cols) / 2)
    img = lo + (hi - lo) * np.clip(1 - r, 0, 1) + rng.normal(0, (hi - lo) * 0.03, (rows, cols))
    img += (hi - lo) * 0.2 * (x / cols)
    return np.clip(np.round(img), lo, hi)

ds = base(512, 512, signed=1)
ds.Modality = "CT"
ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
ds.WindowCenter, ds.WindowWidth = [40, -600], [400, 1500]
ds.PixelData = phantom(512, 512, -1000, 2000).astype(np.int16).tobytes()
save(ds, "ct512")

ds = base(96, 80, pi="MONOCHROME1", stored=12)
ds.WindowCenter, ds.WindowWidth = 2000, 3000
ds.PixelData = phantom(96, 80, 0, 4095).astype(np.uint16).tobytes()
save(ds, "mono1")

ds = base(64, 72, stored=12)
ds.WindowCenter, ds.WindowWidth = 1500, 2500
ds.PresentationLUTShape = "INVERSE"
ds.PixelData = phantom(64, 72, 0, 4095).astype(np.uint16).tobytes()
save(ds, "inverse")

vals = phantom(70, 60, 0, 4095).astype(np.uint16)
ds = base(70, 60, stored=12)
ds.WindowCenter, ds.WindowWidth = 2048, 4096
ds.PixelData = (vals | (rng.integers(0, 16, vals.shape).astype(np.uint16) << 12)).tobytes()
save(ds, "garbage12")
svals = phantom(70, 60, -2048, 2047).astype(np.int16)
ds = base(70, 60, stored=12, signed=1)
ds.WindowCenter, ds.WindowWidth = 0, 4096
ds.PixelData = ((svals.view(np.uint16) & 0x0FFF) | (rng.integers(0, 16, svals.shape).astype(np.uint16) << 12)).tobytes()
save(ds, "garbage12signed")

ds = base(64, 64, stored=12)
item = Dataset()
item.LUTDescriptor = [4096, 0, 16]
item.LUTExplanation = "gamma 0.5"
item.add_new(0x00283006, "OW", np.round(65535 * (np.arange(4096) / 4095) ** 0.5).astype(np.uint16).tobytes())
ds.VOILUTSequence = Sequence([item])
ds.PixelData = phantom(64, 64, 0, 4095).astype(np.uint16).tobytes()
save(ds, "voilut")

y, x = np.mgrid[0:48, 0:64]
rgb = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
ds = base(48, 64, spp=3, pi="RGB", bits=8)
ds.PixelData = rgb.tobytes()
save(ds, "rgb_planar0")
ds = base(48, 64, spp=3, pi="RGB", bits=8)
ds.PlanarConfiguration = 1
ds.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()
save(ds, "rgb_planar1")
r, g, b = [rgb[..., i].astype(float) for i in range(3)]
ybr = np.stack([0.299 * r + 0.587 * g + 0.114 * b,
                -0.168736 * r - 0.331264 * g + 0.5 * b + 128,
                0.5 * r - 0.418688 * g - 0.081312 * b + 128], axis=-1).round().clip(0, 255).astype(np.uint8)
ds = base(48, 64, spp=3, pi="YBR_FULL", bits=8)
ds.PixelData = ybr.tobytes()
save(ds, "ybr_full")

idx = phantom(50, 40, 0, 255).astype(np.uint8)
t = np.arange(256) / 255
for bits in (16, 8):
    ds = base(50, 40, pi="PALETTE COLOR", bits=8)
    top = 65535 if bits == 16 else 255
    luts = {"Red": top * t, "Green": top * (1 - np.abs(2 * t - 1)), "Blue": top * (1 - t)}
    for name, data in luts.items():
        data = np.round(data).astype(np.uint16)
        setattr(ds, name + "PaletteColorLookupTableDescriptor", [256, 0, bits])
        setattr(ds, name + "PaletteColorLookupTableData", data.astype(np.uint8).tobytes() if bits == 8 else data.tobytes())
    ds.PixelData = idx.tobytes()
    save(ds, "palette%d" % bits)

frames = np.stack([phantom(64, 64, 0, 1000 + 500 * k) for k in range(5)]).astype(np.uint16)
ds = base(64, 64, frames=5)
ds.WindowCenter, ds.WindowWidth = 1200, 2400
ds.FrameTime = 50
ds.PixelData = frames.tobytes()
save(ds, "multiframe")
`;

let fixturesReady = false;
before(() => {
  if (!toolsAvailable(TOOLS.pydicom, TOOLS.dcmconv)) return;
  const script = join(work, "fixtures.py");
  writeFileSync(script, FIXTURES_PY);
  run(PYTHON, [script, work]);
  // Native copies of pydicom's RLE colour files.
  run("dcmdrle", [pydicomFile("SC_rgb_rle_16bit.dcm"), fixture("rgb16")]);
  run("dcmdrle", [pydicomFile("SC_rgb_rle_32bit.dcm"), fixture("rgb32")]);
  fixturesReady = true;
});

/** The Image Pixel module of a dataset as FrameInfo. */
function frameInfo(ds: Dataset): FrameInfo {
  const samplesPerPixel = firstInteger(ds, Tags.SamplesPerPixel) ?? 1;
  const bitsAllocated = firstInteger(ds, Tags.BitsAllocated) ?? 16;
  const bitsStored = firstInteger(ds, Tags.BitsStored) ?? bitsAllocated;
  return {
    rows: firstInteger(ds, Tags.Rows) ?? 0,
    columns: firstInteger(ds, Tags.Columns) ?? 0,
    samplesPerPixel,
    bitsAllocated,
    bitsStored,
    highBit: firstInteger(ds, Tags.HighBit) ?? bitsStored - 1,
    pixelRepresentation: firstInteger(ds, Tags.PixelRepresentation) ?? 0,
    photometricInterpretation: firstString(ds, Tags.PhotometricInterpretation) ?? "MONOCHROME2",
    planarConfiguration: firstInteger(ds, Tags.PlanarConfiguration) ?? 0,
  };
}

/** Frame `index` (0-based) of a little endian native file, and its presentation. */
function load(path: string, index = 0): { frame: DecodedFrame; presentation: Presentation; ds: Dataset } {
  const { dataset } = readDicomStrict(readFileSync(path));
  const info = frameInfo(dataset);
  // Native 4:2:2 holds two bytes per pixel, which the frame locator does not expect: take the value as it is.
  const pixels = /_422$/.test(info.photometricInterpretation)
    ? (dataset.get(Tags.PixelData)?.bytes as Uint8Array)
    : frameBytes(locateFrames(dataset).frames[index] as Parameters<typeof frameBytes>[0]);
  return { frame: { info, pixels }, presentation: presentationOf(dataset, index), ds: dataset };
}

/** Decodes a PNG as it is stored: grey stays one channel (sharp's raw output is sRGB otherwise). */
async function decodePng(png: Buffer | string): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const stored = (await sharp(png).metadata()).channels;
  const img = stored === 1 ? sharp(png).extractChannel(0) : sharp(png);
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

/** Max and mean absolute difference per channel; DCMTK writes grey as grey or RGB PNG, compare the first channels. */
function difference(
  ours: { data: Uint8Array; width: number; height: number; channels: number },
  ref: { data: Uint8Array; width: number; height: number; channels: number },
) {
  assert.deepEqual([ours.width, ours.height], [ref.width, ref.height], "image size");
  let max = 0;
  let sum = 0;
  let n = 0;
  for (let i = 0; i < ours.width * ours.height; i++) {
    for (let c = 0; c < ours.channels; c++) {
      const d = Math.abs((ours.data[i * ours.channels + c] as number) - (ref.data[i * ref.channels + c] as number));
      if (d > max) max = d;
      sum += d;
      n++;
    }
  }
  return { max, mean: sum / n };
}

interface Comparison {
  name: string;
  file: () => string;
  frame?: number;
  /** dcmj2pnm options selecting the same VOI. */
  dcmtk: string[];
  query?: string;
  tolerance: number;
}

const COMPARISONS: Comparison[] = [
  {
    name: "CT_small window 40/400",
    file: () => pydicomFile("CT_small.dcm"),
    dcmtk: ["+Ww", "40", "400"],
    query: "window=40,400,linear",
    tolerance: 1,
  },
  { name: "CT_small min-max (no window in file)", file: () => pydicomFile("CT_small.dcm"), dcmtk: ["+Wm"], tolerance: 1 },
  { name: "CT 512 signed, rescale, file window", file: () => fixture("ct512"), dcmtk: ["+Wi", "1"], tolerance: 1 },
  { name: "MR_small file window", file: () => pydicomFile("MR_small.dcm"), dcmtk: ["+Wi", "1"], tolerance: 1 },
  {
    name: "MR_small sigmoid",
    file: () => pydicomFile("MR_small.dcm"),
    dcmtk: ["+Ww", "600", "1600", "+Wfs"],
    query: "window=600,1600,sigmoid",
    tolerance: 1,
  },
  { name: "MONOCHROME1", file: () => fixture("mono1"), dcmtk: ["+Wi", "1"], tolerance: 1 },
  { name: "Presentation LUT Shape INVERSE", file: () => fixture("inverse"), dcmtk: ["+Wi", "1"], tolerance: 1 },
  { name: "12 of 16 bits, garbage high bits", file: () => fixture("garbage12"), dcmtk: ["+Wi", "1"], tolerance: 1 },
  { name: "12 of 16 bits signed, garbage high bits", file: () => fixture("garbage12signed"), dcmtk: ["+Wi", "1"], tolerance: 1 },
  { name: "VOI LUT Sequence", file: () => fixture("voilut"), dcmtk: ["+Wl", "1"], tolerance: 1 },
  { name: "RGB planar 0", file: () => fixture("rgb_planar0"), dcmtk: [], tolerance: 0 },
  { name: "RGB planar 1", file: () => fixture("rgb_planar1"), dcmtk: [], tolerance: 0 },
  // DCMTK converts YCbCr with truncating integer tables; we round the exact PS3.3 equations.
  { name: "YBR_FULL", file: () => fixture("ybr_full"), dcmtk: [], tolerance: 2 },
  { name: "YBR_FULL_422 uncompressed", file: () => pydicomFile("SC_ybr_full_422_uncompressed.dcm"), dcmtk: [], tolerance: 2 },
  { name: "RGB 16-bit", file: () => fixture("rgb16"), dcmtk: [], tolerance: 1 },
  { name: "RGB 32-bit", file: () => fixture("rgb32"), dcmtk: [], tolerance: 1 },
  { name: "PALETTE COLOR 16-bit entries", file: () => fixture("palette16"), dcmtk: [], tolerance: 1 },
  { name: "PALETTE COLOR 8-bit entries", file: () => fixture("palette8"), dcmtk: [], tolerance: 1 },
  { name: "multi-frame, frame 3", file: () => fixture("multiframe"), frame: 2, dcmtk: ["+Wi", "1"], tolerance: 1 },
  { name: "RT dose 32-bit, frame 5, min-max", file: () => pydicomFile("rtdose.dcm"), frame: 4, dcmtk: ["+Wm"], tolerance: 1 },
];

test("renders like DCMTK dcmj2pnm (same window, same frame)", async (t) => {
  if (!requireTools(t, TOOLS.dcmj2pnm, TOOLS.pydicom, TOOLS.dcmconv)) return;
  assert.ok(fixturesReady, "fixtures were built");
  const report: string[] = [];
  for (const c of COMPARISONS) {
    await t.test(c.name, async () => {
      const file = c.file();
      const slug = c.name.replace(/[^A-Za-z0-9]+/g, "_");
      const refPath = join(artifacts, `${slug}.dcmtk.png`);
      run("dcmj2pnm", ["--write-png", "+F", String((c.frame ?? 0) + 1), ...c.dcmtk, file, refPath]);
      const { frame, presentation } = load(file, c.frame);
      const png = await renderFrame(frame, presentation, params(c.query), "image/png");
      writeFileSync(join(artifacts, `${slug}.ours.png`), png);
      const diff = difference(await decodePng(png), await decodePng(refPath));
      report.push(`${c.name}: max ${diff.max}, mean ${diff.mean.toFixed(3)}`);
      assert.ok(diff.max <= c.tolerance, `${c.name}: max abs difference ${diff.max} > ${c.tolerance} (mean ${diff.mean.toFixed(3)})`);
    });
  }
  t.diagnostic(`dcmj2pnm differences (max abs per channel): ${report.join("; ")}`);
});

// ---------------------------------------------------------------------------------------------
// Window functions, hand-computed (PS3.3 C.11.2.1.2.1, C.11.2.1.3.1, C.11.2.1.3.2)

const near = (actual: number, expected: number, message?: string) =>
  assert.ok(Math.abs(actual - expected) < 1e-3, `${message ?? ""} ${actual} ≠ ${expected}`);

test("LINEAR window: PS3.3 C.11.2.1.2.1 by hand", () => {
  const w = { center: 40, width: 400, function: "linear" as const };
  // Bottom edge: x <= c - 0.5 - (w-1)/2 = -160.
  assert.equal(applyWindow(-160, w), 0);
  near(applyWindow(-159, w), ((-159 - 39.5) / 399 + 0.5) * 255); // 0.639…
  near(applyWindow(40, w), (0.5 / 399 + 0.5) * 255); // 127.82
  near(applyWindow(239, w), 255); // top of the ramp: ((239-39.5)/399+0.5)*255 = 255
  assert.equal(applyWindow(239.5, w), 255); // x > c - 0.5 + (w-1)/2 = 239
  // Width 1: a threshold at c - 0.5.
  const t1 = { center: 100, width: 1, function: "linear" as const };
  assert.equal(applyWindow(99, t1), 0);
  assert.equal(applyWindow(99.5, t1), 0);
  assert.equal(applyWindow(100, t1), 255);
  // Other output ranges.
  near(applyWindow(40, w, 10, 20), (0.5 / 399 + 0.5) * 10 + 10);
});

test("LINEAR_EXACT window: PS3.3 C.11.2.1.3.2 by hand", () => {
  const w = { center: 0, width: 100, function: "linear-exact" as const };
  assert.equal(applyWindow(-50, w), 0);
  near(applyWindow(-49, w), 2.55);
  near(applyWindow(0, w), 127.5);
  near(applyWindow(25, w), 191.25);
  near(applyWindow(50, w), 255);
  assert.equal(applyWindow(51, w), 255);
  // Width below 1 is allowed for linear-exact.
  near(applyWindow(0.1, { center: 0, width: 0.5, function: "linear-exact" }), 178.5);
});

test("SIGMOID window: PS3.3 C.11.2.1.3.1 by hand", () => {
  const w = { center: 0, width: 100, function: "sigmoid" as const };
  near(applyWindow(0, w), 127.5);
  near(applyWindow(25, w), 255 / (1 + Math.exp(-1))); // 186.397
  near(applyWindow(-25, w), 255 / (1 + Math.exp(1))); // 68.603
  near(applyWindow(25, w) + applyWindow(-25, w), 255, "symmetric");
  assert.ok(applyWindow(1e6, w) <= 255 && applyWindow(1e6, w) > 254.99);
});

// ---------------------------------------------------------------------------------------------
// Grey pipeline on hand-made frames

const greyInfo = (over: Partial<FrameInfo> = {}): FrameInfo => ({
  rows: 1,
  columns: 4,
  samplesPerPixel: 1,
  bitsAllocated: 16,
  bitsStored: 16,
  highBit: 15,
  pixelRepresentation: 0,
  photometricInterpretation: "MONOCHROME2",
  planarConfiguration: 0,
  ...over,
});
const frame16 = (values: number[], over: Partial<FrameInfo> = {}): DecodedFrame => {
  const info = greyInfo({ columns: values.length, ...over });
  return { info, pixels: new Uint8Array(Uint16Array.from(values.map((v) => v & 0xffff)).buffer) };
};
const identity: Presentation = { rescaleSlope: 1, rescaleIntercept: 0 };
const grey = (frame: DecodedFrame, presentation: Presentation, query = ""): number[] =>
  Array.from(renderRaster(frame, presentation, params(query)).data);

test("modality LUT (slope/intercept), window, rounding: one pixel at a time", () => {
  // HU = 2·stored − 1000; window 0/100 linear-exact: HU −50 → 0, 0 → 127.5 → 128, 26 → 193.8 → 194, 50 → 255.
  const p: Presentation = { rescaleSlope: 2, rescaleIntercept: -1000 };
  assert.deepEqual(grey(frame16([475, 500, 513, 525]), p, "window=0,100,linear-exact"), [0, 128, 194, 255]);
});

test("Presentation LUT Shape INVERSE and MONOCHROME1 invert once, after the VOI", () => {
  const values = [0, 1000, 2000, 3000, 4095];
  const normal = grey(frame16(values), identity, "window=2048,4096,linear");
  const inverse = grey(frame16(values), { ...identity, presentationLutShape: "INVERSE" }, "window=2048,4096,linear");
  const mono1 = grey(frame16(values, { photometricInterpretation: "MONOCHROME1" }), identity, "window=2048,4096,linear");
  const both = grey(
    frame16(values, { photometricInterpretation: "MONOCHROME1" }),
    { ...identity, presentationLutShape: "INVERSE" },
    "window=2048,4096,linear",
  );
  assert.deepEqual(
    inverse,
    normal.map((v) => 255 - v),
  );
  assert.deepEqual(mono1, inverse);
  assert.deepEqual(both, inverse, "INVERSE on a MONOCHROME1 image says the same thing: no double inversion");
  assert.equal(normal[0], 0);
  assert.equal(inverse[0], 255);
});

test("BitsStored: garbage in the high bits is masked, signed values are sign-extended from the high bit", () => {
  const clean = [0, 100, 2047, 4095];
  const dirty = clean.map((v, i) => v | ((i * 5 + 3) << 12)); // garbage in bits 12–15
  const info = { bitsStored: 12, highBit: 11 };
  assert.deepEqual(
    grey(frame16(dirty, info), identity, "window=2048,4096,linear"),
    grey(frame16(clean, info), identity, "window=2048,4096,linear"),
  );
  // Signed 12-bit: 0xFFF is −1, 0x800 is −2048; garbage above bit 11 must not change that.
  const signed = { bitsStored: 12, highBit: 11, pixelRepresentation: 1 };
  const patterns = [0xfff | 0xa000, 0x800 | 0x5000, 0x7ff | 0xf000, 0x000 | 0x3000];
  // Window 0/2 linear-exact: −1 → ((−1/2)+0.5)·255 = 0; −2048 → 0; 2047 → 255; 0 → 127.5 → 128.
  assert.deepEqual(grey(frame16(patterns, signed), identity, "window=0,2,linear-exact"), [0, 0, 255, 128]);
  // High bit not at BitsStored−1 (legacy): bits 4–15 hold the value.
  assert.deepEqual(
    grey(frame16([0x0010, 0xfff0, 0x800f], { bitsStored: 12, highBit: 15 }), identity, "window=2048,4096,linear-exact"),
    [0, 255, 128],
  );
});

test("16-bit frames of any length and alignment, signed or not: every pixel as the window function says", () => {
  const seeded = (n: number, seed: number) => {
    const random = seededRandom(seed);
    return Array.from({ length: n }, () => Math.floor(random() * 65536));
  };
  for (const [n, offset, signed] of [
    [512 * 3, 0, false],
    [1027, 0, true],
    [1030, 2, false], // the samples start 2 bytes into their buffer: not 32-bit aligned
    [7, 6, true],
  ] as Array<[number, number, boolean]>) {
    const patterns = seeded(n, n + offset);
    const bytes = new Uint8Array(offset + n * 2);
    new Uint16Array(bytes.buffer, offset, n).set(patterns);
    const info = greyInfo({ columns: n, pixelRepresentation: signed ? 1 : 0 });
    const p: Presentation = { rescaleSlope: 1.5, rescaleIntercept: -1024 };
    const window = { center: 40, width: 400, function: "linear" as const };
    const got = Array.from(renderRaster({ info, pixels: bytes.subarray(offset) }, p, { window }).data);
    const want = patterns.map((v) => {
      const stored = signed && v >= 0x8000 ? v - 0x10000 : v;
      const y = applyWindow(stored * 1.5 - 1024, window);
      return y <= 0 ? 0 : y >= 255 ? 255 : Math.round(y);
    });
    assert.deepEqual(got, want, `${n} pixels at byte offset ${offset}, ${signed ? "signed" : "unsigned"}`);
  }
});

test("renders running at the same time in one thread each get their own raster (the reused one is never shared)", async () => {
  const frames = [0, 1, 2].map((k) =>
    frame16(
      Array.from({ length: 64 * 64 }, (_, i) => (i * (k + 3)) % 4096),
      { rows: 64, columns: 64 },
    ),
  );
  const png = params("window=2048,4096,linear");
  const one = async (f: DecodedFrame) =>
    (
      await sharp(await renderFrame(f, identity, png, "image/png"))
        .raw()
        .toBuffer()
    ).toString("hex");
  const alone: string[] = [];
  for (const f of frames) alone.push(await one(f));
  assert.equal(new Set(alone).size, 3, "three different images");
  assert.deepEqual(await Promise.all(frames.map(one)), alone);
});

test("VOI choice: the request's window, else the dataset's, else its VOI LUT, else min–max", () => {
  const f = frame16([100, 200, 300]);
  const withWindow: Presentation = { ...identity, window: { center: 200, width: 100, function: "linear-exact" } };
  assert.deepEqual(grey(f, withWindow), [0, 128, 255]);
  assert.deepEqual(grey(f, withWindow, "window=300,400,linear-exact"), [0, 64, 128]);
  const lut = { firstMapped: 100, bits: 8, data: Uint16Array.from([255, 0, 10]) }; // 100 → 255, 101 → 0, ≥102 → 10
  assert.deepEqual(grey(f, { ...identity, voiLut: lut }), [255, 10, 10]);
  // Min–max: 100 black, 300 white.
  assert.deepEqual(grey(f, identity), [0, 128, 255]);
  // 8-bit unsigned images without rescale are shown as stored.
  const f8: DecodedFrame = {
    info: greyInfo({ columns: 3, bitsAllocated: 8, bitsStored: 8, highBit: 7 }),
    pixels: Uint8Array.from([10, 20, 30]),
  };
  assert.deepEqual(grey(f8, identity), [10, 20, 30]);
  // A uniform image has nothing to stretch: black.
  assert.deepEqual(grey(frame16([7, 7, 7]), identity), [0, 0, 0]);
});

test("1-bit frames: 0 black, 1 white", () => {
  const f: DecodedFrame = {
    info: greyInfo({ columns: 8, bitsAllocated: 1, bitsStored: 1, highBit: 0 }),
    pixels: Uint8Array.from([0b10100101]),
  };
  assert.deepEqual(grey(f, identity), [255, 0, 255, 0, 0, 255, 0, 255]);
});

test("wide value ranges (32-bit) and float pixel data are computed pixel by pixel", () => {
  const u32: DecodedFrame = {
    info: greyInfo({ columns: 3, bitsAllocated: 32, bitsStored: 32, highBit: 31 }),
    pixels: new Uint8Array(Uint32Array.from([0, 2_000_000_000, 4_000_000_000]).buffer),
  };
  assert.deepEqual(grey(u32, identity), [0, 128, 255], "min–max over 0 … 4e9");
  const s32: DecodedFrame = {
    info: greyInfo({ columns: 3, bitsAllocated: 32, bitsStored: 32, highBit: 31, pixelRepresentation: 1 }),
    pixels: new Uint8Array(Int32Array.from([-1_000_000, 0, 1_000_000]).buffer),
  };
  assert.deepEqual(grey(s32, identity), [0, 128, 255], "signed 32-bit");
  const f32: DecodedFrame = {
    info: { ...greyInfo({ columns: 4, bitsAllocated: 32, bitsStored: 32, highBit: 31 }), pixelDataVr: "OF" } as FrameInfo,
    pixels: new Uint8Array(Float32Array.from([-0.5, 0, 0.25, 0.5]).buffer),
  };
  assert.deepEqual(grey(f32, identity), [0, 128, 191, 255], "Float Pixel Data, min–max");
  assert.deepEqual(grey(f32, identity, "window=0,0.5,linear-exact"), [0, 128, 255, 255]);
});

test("an animated GIF too large to hold raw is refused before any work", async () => {
  const frames = Array.from({ length: 40 }, () => frame16([1, 2]));
  await assert.rejects(renderFrames(frames, identity, params("viewport=4096,4096")), (e: unknown) => {
    assert.ok(e instanceof RenderParamError);
    assert.match(e.reason, /40 frames of 4096×4096 are more than the 512 MiB/);
    return true;
  });
});

test("a frame shorter than its description is a RenderError, not a crash", () => {
  const f: DecodedFrame = { info: greyInfo({ columns: 10 }), pixels: new Uint8Array(4) };
  assert.throws(() => renderRaster(f, identity, params()), RenderError);
  assert.throws(
    () => renderRaster({ info: greyInfo({ bitsAllocated: 12 }), pixels: new Uint8Array(16) }, identity, params()),
    /Bits Allocated 12/,
  );
});

// ---------------------------------------------------------------------------------------------
// Viewport

test("viewport layout: fit inside vw×vh keeping the aspect ratio, centred bars; thumbnails never enlarge", () => {
  const vp = (q: string) => params(`viewport=${q}`).viewport;
  assert.deepEqual(viewportLayout(512, 256, vp("128,128")), { width: 128, height: 64, left: 0, top: 32, right: 0, bottom: 32 });
  assert.deepEqual(viewportLayout(100, 300, vp("200,200")), { width: 67, height: 200, left: 66, top: 0, right: 67, bottom: 0 });
  assert.deepEqual(viewportLayout(64, 64, vp("64,64")), { width: 64, height: 64, left: 0, top: 0, right: 0, bottom: 0 });
  assert.deepEqual(viewportLayout(640, 480, undefined), { width: 640, height: 480, left: 0, top: 0, right: 0, bottom: 0 });
  const thumb = thumbnailParams().viewport;
  assert.deepEqual(viewportLayout(512, 256, thumb), { width: 128, height: 64, left: 0, top: 0, right: 0, bottom: 0 });
  assert.deepEqual(viewportLayout(64, 32, thumb), { width: 64, height: 32, left: 0, top: 0, right: 0, bottom: 0 });
  assert.deepEqual(viewportLayout(3000, 10, thumb), { width: 128, height: 1, left: 0, top: 0, right: 0, bottom: 0 });
});

test("source region: crop, flip horizontally (negative sw) and vertically (negative sh), clamp to the image", () => {
  // 4×3 grey raster whose value is its index.
  const raster = { width: 4, height: 3, channels: 1 as const, data: Uint8Array.from({ length: 12 }, (_, i) => i) };
  const region = (q: string) => Array.from(sourceRegion(raster, params(`viewport=${q}`).viewport).data);
  assert.deepEqual(region("10,10,1,1,2,2"), [5, 6, 9, 10]);
  assert.deepEqual(region("10,10,1,1,-2,2"), [6, 5, 10, 9]);
  assert.deepEqual(region("10,10,1,1,2,-2"), [9, 10, 5, 6]);
  assert.deepEqual(region("10,10,0,0,-4,-3"), [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
  assert.deepEqual(region("10,10,2,1,,"), [6, 7, 10, 11], "sw, sh elided: to the edges");
  assert.deepEqual(region("10,10,3,2,100,100"), [11], "clamped to the image");
  assert.throws(() => region("10,10,4,0,1,1"), RenderParamError, "starts right of the image");
  // RGB keeps its triplets when flipped.
  const rgb = { width: 2, height: 1, channels: 3 as const, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) };
  assert.deepEqual(Array.from(sourceRegion(rgb, params("viewport=2,1,0,0,-2,1").viewport).data), [4, 5, 6, 1, 2, 3]);
});

test("rendered viewport: the output is vw×vh with the region scaled inside, flips visible in the pixels", async () => {
  const f = frame16(
    Array.from({ length: 8 * 6 }, (_, i) => (i % 8) * 100),
    { rows: 6, columns: 8 },
  ); // a horizontal ramp
  const ramp = params("window=350,800,linear-exact");
  const plain = await decodePng(await renderFrame(f, identity, ramp, "image/png"));
  assert.deepEqual([plain.width, plain.height, plain.channels], [8, 6, 1]);
  assert.ok((plain.data[0] as number) < (plain.data[7] as number), "dark left, bright right");
  const flipped = await decodePng(await renderFrame(f, identity, params("window=350,800,linear-exact&viewport=8,6,0,0,-8,6"), "image/png"));
  assert.deepEqual(Array.from(flipped.data.subarray(0, 8)), Array.from(plain.data.subarray(0, 8)).reverse());
  const boxed = await sharp(await renderFrame(f, identity, params("viewport=200,100,0,0,4,4"), "image/jpeg")).metadata();
  assert.deepEqual([boxed.width, boxed.height], [200, 100]);
  const bars = await decodePng(await renderFrame(f, identity, params("window=350,800,linear-exact&viewport=40,10"), "image/png"));
  assert.deepEqual([bars.width, bars.height], [40, 10]);
  // 8×6 scaled to fit 40×10 → 13×10 centred: columns 0–12 and 26–39 are black bars.
  assert.equal(bars.data[5 * 40 + 2], 0);
  assert.equal(bars.data[5 * 40 + 38], 0);
  assert.ok((bars.data[5 * 40 + 30] as number) === 0 && (bars.data[5 * 40 + 24] as number) > 0, "image between the bars");
  await assert.rejects(renderFrame(f, identity, params("viewport=10,10,50,0,,"), "image/png"), RenderParamError);
});

// ---------------------------------------------------------------------------------------------
// Encoders

test("JPEG quality changes the size; PNG is lossless; iccprofile embeds sRGB; GIF cannot carry one", async (t) => {
  if (!requireTools(t, TOOLS.pydicom, TOOLS.dcmconv)) return;
  const { frame, presentation } = load(fixture("ct512"));
  const q10 = await renderFrame(frame, presentation, params("quality=10"), "image/jpeg");
  const q95 = await renderFrame(frame, presentation, params("quality=95"), "image/jpeg");
  const dflt = await renderFrame(frame, presentation, params(), "image/jpeg");
  t.diagnostic(`512² CT JPEG: quality 10 → ${q10.length} B, 90 → ${dflt.length} B, 95 → ${q95.length} B`);
  assert.ok(q10.length < dflt.length && dflt.length < q95.length, `${q10.length} < ${dflt.length} < ${q95.length}`);
  const meta = await sharp(dflt).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ["jpeg", 512, 512, 1]);
  const raster = renderRaster(frame, presentation, params());
  const png = await decodePng(await renderFrame(frame, presentation, params(), "image/png"));
  assert.deepEqual(Buffer.from(png.data), Buffer.from(raster.data), "PNG holds exactly the rendered pixels");
  const icc = await sharp(await renderFrame(frame, presentation, params("iccprofile=srgb"), "image/png")).metadata();
  assert.ok(icc.icc && icc.icc.length > 0, "an ICC profile is embedded");
  assert.equal((await sharp(await renderFrame(frame, presentation, params(), "image/png")).metadata()).icc, undefined);
  await assert.rejects(renderFrame(frame, presentation, params("iccprofile=yes"), "image/gif"), RenderParamError);
});

test("animated GIF of a multi-frame: one page per frame, Frame Time as the delay, loops", async (t) => {
  if (!requireTools(t, TOOLS.pydicom, TOOLS.dcmconv)) return;
  const loaded = [0, 1, 2, 3, 4].map((i) => load(fixture("multiframe"), i));
  const gif = await renderFrames(
    loaded.map((l) => l.frame),
    loaded.map((l) => l.presentation),
    params(),
  );
  writeFileSync(join(artifacts, "multiframe.gif"), gif);
  const meta = await sharp(gif, { animated: true }).metadata();
  assert.equal(meta.format, "gif");
  assert.equal(meta.pages, 5);
  assert.equal(meta.pageHeight, 64);
  assert.equal(meta.width, 64);
  assert.deepEqual(meta.delay, [50, 50, 50, 50, 50]);
  assert.equal(meta.loop, 0);
  // Each page is the frame rendered alone. A GIF palette has 256 entries, one of them kept for
  // transparency between frames: a page using all 256 greys may merge two neighbours (off by 1).
  const pages = await sharp(gif, { animated: true }).extractChannel(0).raw().toBuffer();
  for (let i = 0; i < 5; i++) {
    const alone = renderRaster(loaded[i]?.frame as DecodedFrame, loaded[i]?.presentation as Presentation, params());
    const page = pages.subarray(i * 64 * 64, (i + 1) * 64 * 64);
    const diff = difference({ ...alone, data: page }, alone);
    assert.ok(diff.max <= 1, `page ${i + 1}: max difference ${diff.max}`);
  }
  // With a viewport every page is scaled alike; JPEG/PNG of several frames is the first frame.
  const small = await sharp(
    await renderFrames(
      loaded.map((l) => l.frame),
      loaded[0]?.presentation as Presentation,
      params("viewport=32,16"),
    ),
    { animated: true },
  ).metadata();
  assert.deepEqual([small.width, small.pageHeight, small.pages], [32, 16, 5]);
  const jpeg = await sharp(
    await renderFrames(
      loaded.map((l) => l.frame),
      loaded[0]?.presentation as Presentation,
      params(),
      "image/jpeg",
    ),
  ).metadata();
  assert.deepEqual([jpeg.format, jpeg.pages ?? 1], ["jpeg", 1]);
});

test("animated GIF without a window: one min–max window for all frames (no flicker)", async () => {
  const frames = [frame16([0, 100]), frame16([100, 200])];
  const gif = await renderFrames(frames, identity, params());
  const pages = await sharp(gif, { animated: true }).extractChannel(0).raw().toBuffer();
  // Over both frames 0 is black and 200 white, so 100 is mid-grey in both.
  assert.deepEqual(Array.from(pages), [0, 128, 128, 255]);
  const meta = await sharp(gif, { animated: true }).metadata();
  assert.deepEqual(meta.delay, [100, 100], "10 frames per second when the dataset has no cine attributes");
});

// ---------------------------------------------------------------------------------------------
// Presentation attributes from datasets

const json = (keyword: string, vr: string, ...values: unknown[]) => ({ [keyword]: values.length ? { vr, Value: values } : { vr } });
const TAG = {
  WindowCenter: "00281050",
  WindowWidth: "00281051",
  VOILUTFunction: "00281056",
  RescaleIntercept: "00281052",
  RescaleSlope: "00281053",
  PixelRepresentation: "00280103",
  SharedFunctionalGroupsSequence: "52009229",
  PerFrameFunctionalGroupsSequence: "52009230",
  PixelValueTransformationSequence: "00289145",
  FrameVOILUTSequence: "00289132",
  FrameTimeVector: "00181065",
  CineRate: "00180040",
  ModalityLUTSequence: "00283000",
  LUTDescriptor: "00283002",
  LUTData: "00283006",
};

test("presentationOf: enhanced multi-frame functional groups (shared, then per frame) override the top level", () => {
  const frameGroup = (center: number, width: number) => ({
    [TAG.FrameVOILUTSequence]: {
      vr: "SQ",
      Value: [
        { ...json(TAG.WindowCenter, "DS", center), ...json(TAG.WindowWidth, "DS", width), ...json(TAG.VOILUTFunction, "CS", "SIGMOID") },
      ],
    },
  });
  const { dataset } = jsonToDataset({
    ...json(TAG.RescaleSlope, "DS", 1),
    ...json(TAG.RescaleIntercept, "DS", 0),
    ...json(TAG.WindowCenter, "DS", 1, 2),
    ...json(TAG.WindowWidth, "DS", 10, 20),
    ...json(TAG.FrameTimeVector, "DS", 0, 40, 60),
    [TAG.SharedFunctionalGroupsSequence]: {
      vr: "SQ",
      Value: [
        {
          [TAG.PixelValueTransformationSequence]: {
            vr: "SQ",
            Value: [{ ...json(TAG.RescaleSlope, "DS", 2.5), ...json(TAG.RescaleIntercept, "DS", -100) }],
          },
        },
      ],
    },
    [TAG.PerFrameFunctionalGroupsSequence]: { vr: "SQ", Value: [frameGroup(100, 200), frameGroup(300, 400), {}] },
  });
  const p0 = presentationOf(dataset, 0);
  assert.equal(p0.rescaleSlope, 2.5);
  assert.equal(p0.rescaleIntercept, -100);
  assert.deepEqual(p0.window, { center: 100, width: 200, function: "sigmoid" });
  assert.equal(p0.frameTimeMs, 40);
  const p1 = presentationOf(dataset, 1);
  assert.deepEqual(p1.window, { center: 300, width: 400, function: "sigmoid" });
  assert.equal(p1.frameTimeMs, 60);
  const p2 = presentationOf(dataset, 2);
  assert.deepEqual(p2.window, { center: 1, width: 10, function: "linear" }, "no per-frame VOI: the first top-level pair");
  assert.equal(p2.rescaleSlope, 2.5);
});

test("presentationOf: Modality LUT Sequence, Cine Rate, invalid windows skipped", () => {
  const lutData = Buffer.from(Uint16Array.from([0, 10, 20, 30]).buffer).toString("base64");
  const { dataset } = jsonToDataset({
    ...json(TAG.PixelRepresentation, "US", 1),
    ...json(TAG.WindowCenter, "DS", 10),
    ...json(TAG.WindowWidth, "DS", 0.5), // not allowed for LINEAR: ignored
    ...json(TAG.CineRate, "IS", 25),
    [TAG.ModalityLUTSequence]: {
      vr: "SQ",
      Value: [{ ...json(TAG.LUTDescriptor, "US", 4, 0xfffe, 16), [TAG.LUTData]: { vr: "OW", InlineBinary: lutData } }],
    },
  });
  const p = presentationOf(dataset, 0);
  assert.equal(p.window, undefined);
  assert.equal(p.frameTimeMs, 40);
  assert.equal(p.modalityLut?.firstMapped, -2, "first mapped value is signed when the pixels are");
  assert.deepEqual(Array.from(p.modalityLut?.data ?? []), [0, 10, 20, 30]);
  assert.equal(p.modalityLut?.bits, 16);
  // −2 → 0, −1 → 10, 0 → 20, 1 → 30; window 15/30 linear-exact: 0 → 0, 10 → 85, 20 → 170, 30 → 255.
  const f = frame16([-2, -1, 0, 1], { pixelRepresentation: 1 });
  assert.deepEqual(grey(f, p, "window=15,30,linear-exact"), [0, 85, 170, 255]);
});

// ---------------------------------------------------------------------------------------------
// Thumbnails and the worker task

test("thumbnails: fitted into 128×128 by default, never enlarged; a viewport gives vw×vh", async (t) => {
  if (!requireTools(t, TOOLS.pydicom, TOOLS.dcmconv)) return;
  const ct = load(fixture("ct512"));
  const big = await sharp(await renderThumbnail(ct.frame, ct.presentation)).metadata();
  assert.deepEqual([big.format, big.width, big.height], ["jpeg", 128, 128]);
  const rgb = load(fixture("rgb_planar0"));
  const small = await sharp(await renderThumbnail(rgb.frame, rgb.presentation, "image/png")).metadata();
  assert.deepEqual([small.width, small.height, small.channels], [64, 48, 3]);
  const wide = frame16(
    Array.from({ length: 400 * 100 }, (_, i) => i % 400),
    { rows: 100, columns: 400 },
  );
  const w = await sharp(await renderThumbnail(wide, identity)).metadata();
  assert.deepEqual([w.width, w.height], [128, 32]);
  const boxed = await sharp(await renderThumbnail(wide, identity, "image/png", thumbnailParams({ vw: 64, vh: 64 }))).metadata();
  assert.deepEqual([boxed.width, boxed.height], [64, 64]);
});

test("the piscina task renders off the event loop and gives the same bytes as a direct call", async (t) => {
  if (!requireTools(t, TOOLS.pydicom, TOOLS.dcmconv)) return;
  const { frame, presentation } = load(fixture("ct512"));
  const p = params("window=40,400,linear&viewport=256,256");
  const direct = await renderFrame(frame, presentation, p, "image/png");
  const task = (): RenderTask => {
    const pixels = new Uint8Array(frame.pixels); // the task owns (and transfers) its own copy (Buffer#slice would not copy)
    return { frames: [{ info: frame.info, pixels: pixels.buffer }], presentations: presentation, params: p, mediaType: "image/png" };
  };
  assert.deepEqual(Buffer.from(await renderTask(task())), direct, "in-thread call");
  const pool = new Piscina({ filename: new URL("../../src/codec/render-worker.js", import.meta.url).href, maxThreads: 2 });
  try {
    const job = task();
    const buffer = job.frames[0]?.pixels as ArrayBuffer;
    const out = (await pool.run(job, { name: "renderTask", transferList: [buffer] })) as ArrayBuffer;
    assert.equal(buffer.byteLength, 0, "the pixels were transferred, not copied");
    assert.ok(out instanceof ArrayBuffer);
    assert.deepEqual(Buffer.from(out), direct, "worker thread");
    const bad = task();
    await assert.rejects(
      pool.run({ ...bad, params: params("viewport=10,10,9999,0") }, { name: "renderTask" }),
      /outside the 512×512 image/,
    );
  } finally {
    await pool.destroy();
  }
});

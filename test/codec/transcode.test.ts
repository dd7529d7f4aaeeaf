/**
 * Dataset and frame transcoding: files written after `transcodeDataset` pass dcmftest and GDCM,
 * keep the pixels, carry one fragment per frame with a Basic Offset Table, and say what the pixels
 * now are (Photometric Interpretation, Planar Configuration, Lossy Image Compression attributes).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  CodecError,
  canTranscode,
  encodeProblem,
  frameInfoOf,
  frameMediaTypeOf,
  isLossy,
  sniffSyntax,
  transcodeDataset,
  transcodeFrame,
} from "../../src/codec/index.js";
import {
  type Dataset,
  firstInteger,
  firstString,
  frameBytes,
  locateFrames,
  readDicom,
  stringValues,
  TransferSyntaxUids as TS,
  writePart10,
} from "../../src/dicom/index.js";
import { requireTools, run, TOOLS } from "../helpers/tools.js";
import { compare, decodeAll, load, pydicomFile, samples, sourcePath } from "./corpus.js";

const work = mkdtempSync(join(tmpdir(), "voxelgate-transcode-"));
after(() => rmSync(work, { recursive: true, force: true }));

const values = (ds: Dataset, tag: number): string[] => {
  const el = ds.get(tag);
  return el ? stringValues(ds, el) : [];
};
const PI = 0x00280004;
const PLANAR = 0x00280006;
const LOSSY = 0x00282110;
const RATIO = 0x00282112;
const METHOD = 0x00282114;

let counter = 0;
/** Transcodes a file, writes it, checks dcmftest (and GDCM when it knows the syntax); returns the written file's path. */
async function transcodeFile(path: string, syntax: string): Promise<string> {
  const { dataset, syntax: from } = load(path);
  const out = await transcodeDataset(dataset, syntax, { fromSyntax: from });
  const file = join(work, `${counter++}.dcm`);
  writeFileSync(file, writePart10(out, { transferSyntaxUid: syntax }));
  assert.match(run("dcmftest", [file]).toString(), /^yes:/);
  if (syntax !== TS.HTJ2KLossless && syntax !== TS.HTJ2KLosslessRPCL) run("gdcmconv", ["--raw", file, `${file}.raw.dcm`]);
  return file;
}

test("compressed, big endian and deflated datasets transcode to every target; the pixels survive and DCMTK and GDCM read the files", async (t) => {
  if (!requireTools(t, TOOLS.pydicom, TOOLS.dcmftest, TOOLS.gdcmconv)) return;
  const sources = [
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",
    "JPGExtended.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
  ];
  const targets = [
    TS.ExplicitVRLittleEndian,
    TS.ImplicitVRLittleEndian,
    TS.RLELossless,
    TS.JPEGLosslessSV1,
    TS.JPEGLSLossless,
    TS.JPEG2000Lossless,
    TS.HTJ2KLossless,
    TS.HTJ2KLosslessRPCL,
  ];
  for (const name of sources) {
    await t.test(name, async () => {
      const original = await decodeAll(pydicomFile(name));
      const info = original[0]?.info;
      assert.ok(info);
      for (const syntax of targets) {
        if (encodeProblem(info, syntax)) continue;
        const file = await transcodeFile(pydicomFile(name), syntax);
        const read = readDicom(readFileSync(file));
        assert.equal(read.transferSyntaxUid, syntax);
        const pixel = read.dataset.get(0x7fe00010);
        if (pixel?.encapsulated) {
          assert.equal(pixel.encapsulated.fragments.length, original.length, `${syntax}: one fragment per frame`);
          assert.equal(pixel.encapsulated.basicOffsetTable.length, original.length, `${syntax}: a Basic Offset Table entry per frame`);
        }
        const back = await decodeAll(file);
        assert.equal(back.length, original.length);
        back.forEach((frame, i) => {
          const before = original[i];
          assert.ok(before);
          assert.equal(frame.info.photometricInterpretation, before.info.photometricInterpretation, `${syntax} PI`);
          assert.deepEqual(compare(samples(frame), samples(before)), { differ: 0, max: 0 }, `${syntax} frame ${i + 1}`);
        });
      }
    });
  }
});

test("Image Pixel attributes follow the pixels: PI, planar configuration, lossy compression (appended)", async (t) => {
  if (!requireTools(t, TOOLS.pydicom, TOOLS.dcmftest, TOOLS.gdcmconv)) return;
  // RGB → JPEG baseline: YBR_FULL_422, lossy, ratio and method.
  const baseline = load(await transcodeFile(sourcePath("rgb8"), TS.JPEGBaseline8Bit)).dataset;
  assert.deepEqual(values(baseline, PI), ["YBR_FULL_422"]);
  assert.equal(firstInteger(baseline, PLANAR), 0);
  assert.deepEqual(values(baseline, LOSSY), ["01"]);
  assert.deepEqual(values(baseline, METHOD), ["ISO_10918_1"]);
  assert.equal(values(baseline, RATIO).length, 1);
  assert.ok(Number(values(baseline, RATIO)[0]) > 2);

  // A lossy JPEG decoded to native keeps its history; compressed again, one more ratio and method.
  const native = await transcodeFile(pydicomFile("SC_rgb_jpeg_dcmtk.dcm"), TS.ExplicitVRLittleEndian);
  const nativeDs = load(native).dataset;
  assert.deepEqual(values(nativeDs, PI), ["RGB"], "YBR_FULL JPEG decodes to RGB");
  assert.deepEqual(values(nativeDs, RATIO), ["17.401"]);
  const again = load(await transcodeFile(native, TS.JPEGBaseline8Bit)).dataset;
  assert.deepEqual(values(again, LOSSY), ["01"]);
  assert.deepEqual(values(again, METHOD), ["ISO_10918_1", "ISO_10918_1"]);
  assert.equal(values(again, RATIO)[0], "17.401");
  assert.equal(values(again, RATIO).length, 2);

  // A lossy source without the attribute gets "01" when decoded (JPEG extended, 12-bit).
  const lossySource = load(pydicomFile("JPGExtended.dcm"));
  lossySource.dataset.delete(LOSSY);
  const decoded = await transcodeDataset(lossySource.dataset, TS.ExplicitVRLittleEndian, { fromSyntax: lossySource.syntax });
  assert.deepEqual(values(decoded, LOSSY), ["01"]);
  assert.deepEqual(values(decoded, RATIO), ["76"], "no ratio invented");

  // Lossless never adds lossy attributes; planar input comes out interleaved; RGB through the RCT is YBR_RCT.
  const rle = load(await transcodeFile(sourcePath("rgb8p"), TS.RLELossless)).dataset;
  assert.equal(firstInteger(rle, PLANAR), 0);
  assert.deepEqual(values(rle, LOSSY), []);
  const j2k = load(await transcodeFile(sourcePath("rgb8"), TS.JPEG2000Lossless)).dataset;
  assert.deepEqual(values(j2k, PI), ["YBR_RCT"]);
  const ht = load(await transcodeFile(sourcePath("rgb8"), TS.HTJ2KLosslessRPCL)).dataset;
  assert.deepEqual(values(ht, PI), ["YBR_RCT"]);
});

test("transcodeDataset leaves its input alone and drops a stale Extended Offset Table", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const { dataset, syntax } = load(sourcePath("rgb3f"));
  dataset.set({ tag: 0x7fe00001, vr: "OV", bytes: new Uint8Array(24), position: -1 });
  dataset.set({ tag: 0x7fe00002, vr: "OV", bytes: new Uint8Array(24), position: -1 });
  const pixelBefore = dataset.get(0x7fe00010);
  const out = await transcodeDataset(dataset, TS.JPEGBaseline8Bit, { fromSyntax: syntax });
  assert.equal(dataset.get(0x7fe00010), pixelBefore);
  assert.equal(firstString(dataset, PI), "RGB");
  assert.equal(firstString(out, PI), "YBR_FULL_422");
  assert.ok(dataset.has(0x7fe00001) && !out.has(0x7fe00001) && !out.has(0x7fe00002));
  assert.equal(out.get(0x7fe00010)?.encapsulated?.fragments.length, 3);
  const same = await transcodeDataset(dataset, TS.ExplicitVRBigEndian, { fromSyntax: syntax });
  assert.equal(same.get(0x7fe00010), pixelBefore, "native to native: the writer changes the byte order, the pixels stay");
  const written = readDicom(writePart10(same, { transferSyntaxUid: TS.ExplicitVRBigEndian }));
  assert.equal(written.transferSyntaxUid, TS.ExplicitVRBigEndian);
  const back = await decodeAll(sourcePath("rgb3f"));
  const info = frameInfoOf(written.dataset);
  const frames = locateFrames(written.dataset).frames.map(frameBytes);
  for (let i = 0; i < 3; i++) {
    const f = await transcodeFrame(frames[i] as Uint8Array, TS.ExplicitVRBigEndian, info, TS.ExplicitVRLittleEndian);
    assert.ok(Buffer.from(f.bytes).equals(Buffer.from(back[i]?.pixels ?? [])), `frame ${i + 1} through big endian`);
  }
});

test("transcodeFrame: same syntax passes through, native to native only swaps, media types follow the target", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const { dataset, syntax, frames } = load(sourcePath("ct16s"));
  const info = frameInfoOf(dataset);
  const frame = frames[0] as Uint8Array;
  const same = await transcodeFrame(frame, syntax, info, syntax);
  assert.equal(same.bytes, frame);
  assert.equal(same.mediaType, "application/octet-stream");
  const big = await transcodeFrame(frame, syntax, info, TS.ExplicitVRBigEndian);
  assert.ok(Buffer.from(big.bytes).equals(Buffer.from(frame).swap16()));
  const implicit = await transcodeFrame(frame, syntax, info, TS.ImplicitVRLittleEndian);
  assert.ok(Buffer.from(implicit.bytes).equals(Buffer.from(frame)));
  const expected: Array<[string, string, boolean]> = [
    [TS.RLELossless, "image/dicom-rle", false],
    [TS.JPEGLosslessSV1, "image/jpeg", false],
    [TS.JPEGLSLossless, "image/jls", false],
    [TS.JPEG2000Lossless, "image/jp2", false],
    [TS.HTJ2KLossless, "image/jphc", false],
    [TS.HTJ2KLosslessRPCL, "image/jphc", false],
    [TS.HTJ2K, "image/jphc", false],
    [TS.JPEG2000, "image/jp2", false],
  ];
  for (const [target, mediaType, lossy] of expected) {
    const out = await transcodeFrame(frame, syntax, info, target);
    assert.equal(out.mediaType, mediaType);
    assert.equal(out.lossy, lossy);
    const back = await transcodeFrame(out.bytes, target, out.info, TS.ExplicitVRLittleEndian);
    assert.ok(Buffer.from(back.bytes).equals(Buffer.from(frame)), `${target} round trip`);
  }
  const mono = load(sourcePath("mono8"));
  const jpeg = await transcodeFrame(mono.frames[0] as Uint8Array, mono.syntax, frameInfoOf(mono.dataset), TS.JPEGBaseline8Bit);
  assert.equal(jpeg.mediaType, "image/jpeg");
  assert.equal(jpeg.lossy, true);
  await assert.rejects(
    transcodeFrame(frame, syntax, info, TS.JPEGBaseline8Bit),
    (e: unknown) => e instanceof CodecError && e.code === "UNSUPPORTED",
  );
  await assert.rejects(
    transcodeFrame(frame, syntax, info, "1.2.840.10008.1.2.4.100"),
    (e: unknown) => e instanceof CodecError && e.code === "UNSUPPORTED",
  );
});

test("planning: canTranscode, isLossy, frame media types, and the syntax found from the pixel data", async (t) => {
  assert.equal(canTranscode(TS.JPEGBaseline8Bit, TS.ExplicitVRLittleEndian), true);
  assert.equal(canTranscode(TS.ExplicitVRLittleEndian, TS.JPEGBaseline8Bit), true, "possible; WADO decides whether it was asked for");
  assert.equal(canTranscode(TS.HTJ2K, TS.HTJ2KLosslessRPCL), true);
  assert.equal(canTranscode(TS.ExplicitVRLittleEndian, TS.JPEG2000), true, "written with a reversible codestream");
  assert.equal(canTranscode(TS.ExplicitVRLittleEndian, TS.JPEGLSNearLossless), false);
  assert.equal(canTranscode(TS.ExplicitVRLittleEndian, TS.JPEGExtended12Bit), false);
  assert.equal(canTranscode("1.2.840.10008.1.2.4.100", TS.ExplicitVRLittleEndian), false, "video is not decoded");
  assert.equal(canTranscode("1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.100"), true, "as stored");
  for (const uid of [TS.JPEGBaseline8Bit, TS.JPEGExtended12Bit, TS.JPEGLSNearLossless, TS.JPEG2000, TS.HTJ2K])
    assert.equal(isLossy(uid), true, uid);
  for (const uid of [
    TS.ExplicitVRLittleEndian,
    TS.RLELossless,
    TS.JPEGLossless,
    TS.JPEGLosslessSV1,
    TS.JPEGLSLossless,
    TS.JPEG2000Lossless,
    TS.HTJ2KLossless,
    TS.HTJ2KLosslessRPCL,
  ]) {
    assert.equal(isLossy(uid), false, uid);
  }
  assert.equal(frameMediaTypeOf(TS.DeflatedExplicitVRLittleEndian), "application/octet-stream");
  if (!requireTools(t, TOOLS.pydicom)) return;
  const cases: Array<[string, string]> = [
    ["MR_small_RLE.dcm", TS.RLELossless],
    ["JPGExtended.dcm", TS.JPEGExtended12Bit],
    ["SC_rgb_jpeg_gdcm.dcm", TS.JPEGLosslessSV1],
    ["SC_rgb_dcmtk_+eb+cr.dcm", TS.JPEGBaseline8Bit],
    ["MR_small_jpeg_ls_lossless.dcm", TS.JPEGLSLossless],
    ["MR_small_jp2klossless.dcm", TS.JPEG2000Lossless],
    ["JPEG2000.dcm", TS.JPEG2000],
    ["MR_small_bigendian.dcm", TS.ExplicitVRBigEndian],
    ["CT_small.dcm", TS.ExplicitVRLittleEndian],
  ];
  for (const [file, uid] of cases) {
    const { dataset, frames } = load(pydicomFile(file));
    assert.equal(sniffSyntax(dataset, frames[0]), uid, file);
  }
});

/**
 * Frame decoding against DCMTK and GDCM: every variant (made by dcmcrle, dcmcjpeg, dcmcjpls,
 * gdcmconv, or shipped with pydicom) decodes to exactly the samples dcmdrle / dcmdjpeg /
 * dcmdjpls / gdcmconv --raw give, with the same photometric interpretation. HTJ2K, which neither
 * tool reads, is checked against the source pixels and across three decoders (OpenJPH, OpenJPEG,
 * dcmjs-codecs' OpenJPH build).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { CodecError, type DecodedFrame, decodeFrame, frameInfoOf } from "../../src/codec/index.js";
import { readJ2kHeader } from "../../src/codec/j2k-header.js";
import { TransferSyntaxUids as TS } from "../../src/dicom/index.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { requireTools, run, TOOLS } from "../helpers/tools.js";
import {
  cleaned,
  codecVariants,
  compare,
  dcmjsHtj2k,
  decodeAll,
  load,
  openjpegDecode,
  pydicomFile,
  samples,
  sourcePath,
} from "./corpus.js";

const work = mkdtempSync(join(tmpdir(), "voxelgate-decode-"));
after(() => rmSync(work, { recursive: true, force: true }));

const ORACLES = [
  TOOLS.pydicom,
  TOOLS.dcmcrle,
  TOOLS.dcmdrle,
  TOOLS.dcmcjpeg,
  TOOLS.dcmdjpeg,
  TOOLS.dcmcjpls,
  TOOLS.dcmdjpls,
  TOOLS.gdcmconv,
];

test("every variant decodes to the samples DCMTK or GDCM give, frame by frame", async (t) => {
  if (!requireTools(t, ...ORACLES)) return;
  const variants = await codecVariants();
  assert.ok(variants.length >= 70, `${variants.length} variants`);
  for (const v of variants) {
    await t.test(`${v.name} (${v.recipe})`, async () => {
      const ours = await decodeAll(v.path);
      const reference = await decodeAll(v.reference);
      assert.equal(ours.length, reference.length, "frame count");
      ours.forEach((frame, i) => {
        const ref = reference[i] as DecodedFrame;
        assert.equal(frame.info.photometricInterpretation, ref.info.photometricInterpretation, `frame ${i + 1} PI`);
        assert.equal(frame.info.planarConfiguration, 0, "compressed frames decode interleaved");
        assert.equal(
          frame.pixels.length,
          frame.info.rows * frame.info.columns * frame.info.samplesPerPixel * Math.ceil(frame.info.bitsAllocated / 8),
        );
        assert.deepEqual(compare(samples(frame), samples(ref)), { differ: 0, max: 0 }, `frame ${i + 1} samples`);
      });
    });
  }
});

test("native frames: little endian as stored, big endian swapped by the pixel element's VR, deflated as inflated", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  if (!requireTools(t, TOOLS.gdcmconv)) return;
  // rtdose_expb: 32-bit samples under OW are swapped in 16-bit words, as GDCM and DCMTK do (pydicom reads 32-bit words).
  for (const file of ["MR_small_bigendian.dcm", "MR_small_implicit.dcm", "rtdose_expb.dcm", "liver_expb_1frame.dcm", "ExplVR_BigEnd.dcm"]) {
    const reference = join(work, file);
    run("gdcmconv", ["--raw", pydicomFile(file), reference]);
    const a = await decodeAll(pydicomFile(file));
    const b = await decodeAll(reference);
    assert.equal(a.length, b.length, file);
    a.forEach((f, i) => assert.ok(Buffer.from(f.pixels).equals(Buffer.from((b[i] as DecodedFrame).pixels)), `${file} frame ${i + 1}`));
  }
  const deflated = await decodeAll(pydicomFile("image_dfl.dcm"));
  assert.equal(deflated[0]?.pixels.length, 512 * 512);
});

test("frameInfoOf reads the Image Pixel module", () => {
  const ct = load(pydicomFile("CT_small.dcm")).dataset;
  assert.deepEqual(frameInfoOf(ct), {
    rows: 128,
    columns: 128,
    samplesPerPixel: 1,
    bitsAllocated: 16,
    bitsStored: 16,
    highBit: 15,
    pixelRepresentation: 1,
    photometricInterpretation: "MONOCHROME2",
    planarConfiguration: 0,
    pixelDataVr: "OW",
  });
  const rgb = frameInfoOf(load(pydicomFile("SC_rgb_jpeg_gdcm.dcm")).dataset);
  assert.equal(rgb.samplesPerPixel, 3);
  assert.equal(rgb.photometricInterpretation, "RGB");
  assert.equal(rgb.pixelDataVr, undefined, "encapsulated pixel data has no VR to swap by");
});

test("HTJ2K from another encoder decodes to the source exactly, and OpenJPEG agrees", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  for (const name of ["ct16s", "ct12s", "ct12u", "mono8", "rgb8"] as const) {
    await t.test(name, async () => {
      const [source] = await decodeAll(sourcePath(name));
      assert.ok(source);
      const stream = await dcmjsHtj2k(source, false, 2);
      const header = readJ2kHeader(stream);
      assert.ok(header.highThroughput && header.reversible && header.tlm);
      for (const syntax of [TS.HTJ2KLossless, TS.HTJ2KLosslessRPCL, TS.HTJ2K]) {
        const ours = await decodeFrame(stream, syntax, source.info);
        assert.equal(ours.info.photometricInterpretation, name === "rgb8" ? "RGB" : "MONOCHROME2");
        assert.deepEqual(compare(samples(ours), cleaned(source)), { differ: 0, max: 0 }, syntax);
      }
      const other = await openjpegDecode(stream);
      assert.ok(
        Buffer.from(other).equals(Buffer.from((await decodeFrame(stream, TS.HTJ2KLossless, source.info)).pixels)),
        "OpenJPEG gives the same bytes",
      );
    });
  }
});

test("lossy HTJ2K (4.203): OpenJPH and OpenJPEG decode to the same samples, within ±1 on < 0.1 % of them", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  for (const name of ["ct16s", "mono8", "rgb8"] as const) {
    const [source] = await decodeAll(sourcePath(name));
    assert.ok(source);
    const stream = await dcmjsHtj2k(source, true, 0);
    assert.equal(readJ2kHeader(stream).reversible, false);
    const ours = await decodeFrame(stream, TS.HTJ2K, source.info);
    const other = await openjpegDecode(stream);
    // Two floating-point 9/7 wavelet implementations: a few samples round the other way.
    const agreement = compare(samples(ours), samples({ info: ours.info, pixels: other }));
    assert.ok(
      agreement.max <= 1 && agreement.differ < ours.pixels.length / 1000,
      `${name}: OpenJPH and OpenJPEG agree (${JSON.stringify(agreement)})`,
    );
    const { max } = compare(samples(ours), samples(source));
    assert.ok(max > 0 && max < (name === "ct16s" ? 400 : 60), `${name}: lossy but close (max ${max})`);
  }
});

test("a classic JPEG 2000 codestream under an HTJ2K UID is decoded by OpenJPEG, not returned empty (T11)", async (t) => {
  if (!requireTools(t, ...ORACLES)) return;
  const variants = await codecVariants();
  for (const name of ["ct16s_j2k", "rgb8_j2k"]) {
    const v = variants.find((x) => x.name === name);
    assert.ok(v);
    const { dataset, frames } = load(v.path);
    const info = frameInfoOf(dataset);
    const asHt = await decodeFrame(frames[0] as Uint8Array, TS.HTJ2KLossless, info);
    const [reference] = await decodeAll(v.reference);
    assert.ok(reference);
    assert.deepEqual(compare(samples(asHt), samples(reference)), { differ: 0, max: 0 });
  }
});

test("bad input is a CodecError, never a short or empty frame, and the codecs keep working after it", async (t) => {
  if (!requireTools(t, ...ORACLES)) return;
  const variants = await codecVariants();
  const picked = ["ct16s_rle", "ct16s_sv1", "ct12u_ext", "ct16s_jls", "ct16s_j2k", "mono8_base", "rgb8_base422", "rgb8_jls_line"];
  for (const name of picked) {
    const v = variants.find((x) => x.name === name);
    assert.ok(v, name);
    const { dataset, syntax, frames } = load(v.path);
    const info = frameInfoOf(dataset);
    const whole = frames[0] as Uint8Array;
    const expected = info.rows * info.columns * info.samplesPerPixel * Math.ceil(info.bitsAllocated / 8);
    const bad: Array<[string, Uint8Array]> = [
      ["empty", new Uint8Array(0)],
      ["garbage", Uint8Array.from({ length: 1000 }, (_, i) => (i * 7919) & 0xff)],
      ["truncated to 60 bytes", whole.subarray(0, 60)],
      ["first half", whole.subarray(0, whole.length >> 1)],
    ];
    for (const [what, bytes] of bad) {
      try {
        const frame = await decodeFrame(bytes, syntax, info);
        // Some decoders fill a truncated scan (as libjpeg does with a warning): then the size must still be right.
        assert.equal(frame.pixels.length, expected, `${name} ${what}: a frame of the right size`);
      } catch (e) {
        assert.ok(e instanceof CodecError, `${name} ${what}: ${String(e)}`);
      }
    }
    await assert.rejects(
      decodeFrame(whole, syntax, { ...info, rows: info.rows + 1 }),
      (e: unknown) => e instanceof CodecError && e.code === "MISMATCH",
    );
    const again = await decodeFrame(whole, syntax, info);
    const [reference] = await decodeAll(v.reference);
    assert.ok(reference);
    assert.deepEqual(compare(samples(again), samples(reference)), { differ: 0, max: 0 }, `${name} decodes after the errors`);
  }
  await assert.rejects(
    decodeFrame(new Uint8Array(10), "1.2.840.10008.1.2.4.100", frameInfoOf(load(sourcePath("mono8")).dataset)),
    (e: unknown) => e instanceof CodecError && e.code === "UNSUPPORTED",
  );
});

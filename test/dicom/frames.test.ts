/**
 * Frame locator against GDCM (gdcmraw: the pixel data value, fragments split) and pydicom
 * (encaps.generate_pixel_data_frame, 1-bit unpacking): same bytes for every frame.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, test } from "node:test";
import { Dataset, type FrameLocation, frameBytes, locateFrames, readDicomStrict } from "../../src/dicom/index.js";
import { dcmtkVariants } from "../helpers/corpus.js";
import { PYDICOM_DATA, PYTHON, requireTools, run, TOOLS } from "../helpers/tools.js";

const sha1 = (b: Uint8Array): string => createHash("sha1").update(b).digest("hex");
const work = mkdtempSync(join(tmpdir(), "voxelgate-frames-"));
after(() => rmSync(work, { recursive: true, force: true }));
const fixture = (name: string): string => new URL(`../../../test/fixtures/${name}`, import.meta.url).pathname;
const testFile = (name: string): string => join(PYDICOM_DATA, "test_files", name);

test("native frames are the byte ranges GDCM extracts, frame by frame", async (t) => {
  if (!requireTools(t, TOOLS.pydicom, TOOLS.gdcmconv, TOOLS.dcmconv)) return;
  const rgb2 = dcmtkVariants().find((v) => v.path.endsWith("rgb2_native.dcm"))?.path as string;
  for (const file of [testFile("CT_small.dcm"), testFile("MR_small.dcm"), testFile("rtdose.dcm"), testFile("liver_1frame.dcm"), rgb2]) {
    await t.test(basename(file), () => {
      const result = readDicomStrict(readFileSync(file));
      const located = locateFrames(result.dataset);
      const raw = join(work, `${basename(file)}.raw`);
      run("gdcmraw", ["-i", file, "-o", raw, "-t", "7fe0,0010"]);
      const whole = readFileSync(raw);
      const { rows, columns, samplesPerPixel, bitsAllocated, numberOfFrames } = located.layout;
      const frameSize = (rows * columns * samplesPerPixel * bitsAllocated) / 8;
      assert.equal(located.frames.length, numberOfFrames);
      located.frames.forEach((frame, i) => {
        assert.equal(frame.kind, "native");
        const expected = whole.subarray(i * frameSize, (i + 1) * frameSize);
        assert.equal(sha1(frameBytes(frame)), sha1(expected), `frame ${i + 1} of ${basename(file)}`);
        if (frame.kind === "native") assert.equal(frame.position, (result.dataset.get(0x7fe00010)?.position ?? 0) + i * frameSize);
      });
    });
  }
});

test("1-bit frames that are not byte aligned unpack to pydicom's pixels", (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const file = join(work, "one-bit.dcm");
  const expected = JSON.parse(run(PYTHON, [fixture("one_bit_multiframe.py"), file]).toString()) as { frames: number[][] };
  const located = locateFrames(readDicomStrict(readFileSync(file)).dataset);
  assert.equal(located.frames.length, 4);
  const bitOffsets = located.frames.map((f) => (f.kind === "native" ? f.bitOffset : -1));
  assert.deepEqual(bitOffsets, [0, 7, 6, 5], "15-bit frames start at bits 0, 15, 30, 45");
  located.frames.forEach((frame, i) => {
    const bytes = frameBytes(frame);
    const pixels = Array.from({ length: 15 }, (_, p) => ((bytes[p >> 3] as number) >> (p & 7)) & 1);
    assert.deepEqual(pixels, expected.frames[i], `frame ${i + 1}`);
  });
});

test("encapsulated frames equal pydicom's frames and GDCM's fragments, with and without offset tables", async (t) => {
  if (!requireTools(t, TOOLS.pydicom, TOOLS.gdcmconv, TOOLS.dcmconv)) return;
  const variants = dcmtkVariants().filter((v) => /jpeg|jpegls|j2k|rle/.test(basename(v.path)));
  const files = [
    ...variants.map((v) => v.path),
    testFile("JPEG2000.dcm"),
    testFile("SC_rgb_rle_2frame.dcm"),
    testFile("SC_rgb_jpeg_gdcm.dcm"),
    testFile("emri_small_jpeg_2k_lossless.dcm"),
  ].filter((f) => {
    try {
      readFileSync(f);
      return true;
    } catch {
      return false;
    }
  });
  const expected = JSON.parse(run(PYTHON, [fixture("pydicom_frames.py"), ...files]).toString()) as Record<string, string[]>;
  const sources = new Set<string>();
  for (const file of files) {
    await t.test(basename(file), () => {
      const result = readDicomStrict(readFileSync(file));
      const located = locateFrames(result.dataset);
      sources.add(located.indexSource ?? "");
      assert.deepEqual(
        located.frames.map((f) => sha1(frameBytes(f))),
        expected[file],
      );
      // The fragments themselves, as GDCM splits them.
      const dir = mkdtempSync(join(work, "frags-"));
      run("gdcmraw", ["-i", file, "-o", join(dir, "f"), "-t", "7fe0,0010", "-S"]);
      const gdcm = readdirSync(dir)
        .sort((a, b) => Number(/\d+/.exec(a)?.[0]) - Number(/\d+/.exec(b)?.[0]))
        .map((f) => sha1(readFileSync(join(dir, f))));
      const ours = located.frames.flatMap((f) => (f.kind === "encapsulated" ? f.fragments.map((x) => sha1(x.bytes)) : []));
      assert.deepEqual(ours, gdcm);
    });
  }
  // The corpus exercises each way of finding frames.
  for (const s of ["basic-offset-table", "markers", "one-fragment-per-frame", "single-frame"]) {
    assert.ok(sources.has(s), `no file was located by ${s}: ${[...sources].join(", ")}`);
  }
});

test("uncompressed YBR_FULL_422 frames hold two samples per pixel (Y Y Cb Cr per pixel pair)", () => {
  const ds = new Dataset(true);
  const us = (tag: number, v: number) => ds.set({ tag, vr: "US", bytes: Buffer.from(Uint16Array.of(v).buffer), position: -1 });
  const cs = (tag: number, v: string) => ds.set({ tag, vr: "CS", bytes: Buffer.from(v.length % 2 ? `${v} ` : v), position: -1 });
  us(0x00280002, 3);
  cs(0x00280004, "YBR_FULL_422");
  cs(0x00280008, "2");
  us(0x00280010, 2);
  us(0x00280011, 4);
  us(0x00280100, 8);
  const pixels = Uint8Array.from({ length: 2 * 4 * 2 * 2 }, (_, i) => i);
  ds.set({ tag: 0x7fe00010, vr: "OB", bytes: pixels, position: -1 });
  const located = locateFrames(ds);
  assert.equal(located.frames.length, 2);
  assert.deepEqual([...frameBytes(located.frames[1] as FrameLocation)], [...pixels.subarray(16, 32)]);
});

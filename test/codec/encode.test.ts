/**
 * Our encodes, decoded by others: every lossless target written as a Part 10 file and decoded back
 * by DCMTK (dcmdrle, dcmdjpeg, dcmdjpls) and GDCM (gdcmconv --raw) to exactly the source samples
 * (after GDCM's cleanup of bits above Bits Stored). HTJ2K, which neither reads, is decoded by
 * OpenJPEG and by dcmjs-codecs' OpenJPH. JPEG baseline: DCMTK decodes it close to the source, with
 * the YBR_FULL_422 interpretation we wrote.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  CodecError,
  type DecodedFrame,
  decodeFrame,
  encodeFrame,
  encodeProblem,
  frameInfoOf,
  transcodeDataset,
} from "../../src/codec/index.js";
import { readJ2kHeader } from "../../src/codec/j2k-header.js";
import { type Dataset, readDicom, TransferSyntaxUids as TS, writePart10 } from "../../src/dicom/index.js";
import { requireTools, run, TOOLS } from "../helpers/tools.js";
import {
  cleaned,
  compare,
  dcmjsHtj2kDecode,
  decodeAll,
  load,
  openjpegDecode,
  pydicomFile,
  samples,
  type SourceName,
  sourcePath,
} from "./corpus.js";

const work = mkdtempSync(join(tmpdir(), "voxelgate-encode-"));
after(() => rmSync(work, { recursive: true, force: true }));

const TOOLSET = [TOOLS.pydicom, TOOLS.dcmdrle, TOOLS.dcmdjpeg, TOOLS.dcmdjpls, TOOLS.gdcmconv, TOOLS.dcmftest];

/** The source transcoded to `syntax` and written; the file path. */
async function writeTranscoded(name: string, path: string, syntax: string): Promise<string> {
  const { dataset, syntax: from } = load(path);
  const out = await transcodeDataset(dataset, syntax, { fromSyntax: from });
  const file = join(work, `${name}.${syntax}.dcm`);
  writeFileSync(file, writePart10(out, { transferSyntaxUid: syntax }));
  assert.match(run("dcmftest", [file]).toString(), /^yes:/, `${file} is a DICOM file`);
  return file;
}

/** The oracle's decode of a file: a native file read back. */
function oracleDecode(file: string, oracle: string): Promise<DecodedFrame[]> {
  const out = `${file}.${oracle}.dcm`;
  if (oracle === "gdcm") run("gdcmconv", ["--raw", file, out]);
  else run(oracle, [file, out]);
  return decodeAll(out);
}

const LOSSLESS: Array<[string, string, string[]]> = [
  ["RLE", TS.RLELossless, ["dcmdrle", "gdcm"]],
  ["JPEG lossless SV1", TS.JPEGLosslessSV1, ["dcmdjpeg", "gdcm"]],
  ["JPEG-LS lossless", TS.JPEGLSLossless, ["dcmdjpls", "gdcm"]],
  ["JPEG 2000 lossless", TS.JPEG2000Lossless, ["gdcm"]],
];
const SOURCES: SourceName[] = ["ct16s", "ct12s", "ct12m", "ct12u", "mono8", "rgb8", "rgb8p"];

test("lossless encodes decode back exactly in DCMTK and GDCM", async (t) => {
  if (!requireTools(t, ...TOOLSET)) return;
  for (const [label, syntax, oracles] of LOSSLESS) {
    await t.test(label, async () => {
      for (const name of SOURCES) {
        const [source] = await decodeAll(sourcePath(name));
        assert.ok(source);
        const file = await writeTranscoded(name, sourcePath(name), syntax);
        const written = load(file);
        assert.equal(written.syntax, syntax);
        for (const oracle of oracles) {
          const [back] = await oracleDecode(file, oracle);
          assert.ok(back, `${name} ${oracle}`);
          assert.equal(
            back.info.photometricInterpretation,
            source.info.samplesPerPixel === 3 ? "RGB" : "MONOCHROME2",
            `${name} ${oracle} PI`,
          );
          assert.deepEqual(compare(samples(back), cleaned(source)), { differ: 0, max: 0 }, `${name} via ${oracle}`);
        }
        // And our own decoder agrees.
        const [ours] = await decodeAll(file);
        assert.ok(ours);
        assert.deepEqual(compare(samples(ours), cleaned(source)), { differ: 0, max: 0 }, `${name} via decodeFrame`);
      }
    });
  }
});

test("HTJ2K lossless and RPCL encodes decode back exactly in OpenJPEG and dcmjs-codecs' OpenJPH", async (t) => {
  if (!requireTools(t, TOOLS.pydicom, TOOLS.dcmftest)) return;
  for (const syntax of [TS.HTJ2KLossless, TS.HTJ2KLosslessRPCL]) {
    for (const name of SOURCES) {
      const [source] = await decodeAll(sourcePath(name));
      assert.ok(source);
      const encoded = await encodeFrame(source, syntax);
      assert.equal(encoded.lossy, false);
      const header = readJ2kHeader(encoded.bytes);
      assert.ok(header.highThroughput && header.reversible, `${name}: HT, reversible`);
      assert.equal(header.progressionOrder, 2, "RPCL");
      assert.equal(header.mct, source.info.samplesPerPixel === 3);
      assert.equal(
        encoded.info.photometricInterpretation,
        source.info.samplesPerPixel === 3 ? "YBR_RCT" : source.info.photometricInterpretation,
      );
      if (syntax === TS.HTJ2KLosslessRPCL) {
        assert.ok(header.tlm, "RPCL syntax: TLM marker segment");
        assert.equal(countMarkers(encoded.bytes, 0xff90), header.decompositions + 1, "one tile-part per resolution");
      }
      const expected = cleaned(source);
      const view = { info: { ...source.info, planarConfiguration: 0 }, pixels: new Uint8Array(0) };
      assert.deepEqual(
        compare(samples({ ...view, pixels: await openjpegDecode(encoded.bytes) }), expected),
        { differ: 0, max: 0 },
        `${name}: OpenJPEG`,
      );
      assert.deepEqual(
        compare(samples({ ...view, pixels: await dcmjsHtj2kDecode(encoded.bytes, source.info) }), expected),
        { differ: 0, max: 0 },
        `${name}: dcmjs-codecs`,
      );
      const ours = await decodeFrame(encoded.bytes, syntax, encoded.info);
      assert.equal(ours.info.photometricInterpretation, source.info.samplesPerPixel === 3 ? "RGB" : "MONOCHROME2");
      assert.deepEqual(compare(samples(ours), expected), { differ: 0, max: 0 }, `${name}: decodeFrame`);
    }
    await writeTranscoded("ct16s", sourcePath("ct16s"), syntax); // a file DCMTK accepts
  }
});

/** Tile-parts (SOT markers) in a codestream, walked by marker lengths and each tile-part's Psot. */
function countMarkers(b: Uint8Array, marker: number): number {
  const u16 = (at: number): number => ((b[at] as number) << 8) | (b[at + 1] as number);
  let count = 0;
  let at = readJ2kHeader(b).offset + 2; // after SOC
  while (at + 4 <= b.length) {
    const m = u16(at);
    if (m === 0xffd9) break;
    if (m === marker) {
      count++;
      const psot = u16(at + 6) * 65536 + u16(at + 8);
      if (psot === 0) break;
      at += psot;
    } else at += 2 + u16(at + 2);
  }
  return count;
}

test("JPEG baseline: YBR_FULL_422 with JFIF, decoded by DCMTK close to the source", async (t) => {
  if (!requireTools(t, ...TOOLSET)) return;
  for (const name of ["rgb8", "rgb8p", "mono8"] as const) {
    const [source] = await decodeAll(sourcePath(name));
    assert.ok(source);
    const file = await writeTranscoded(name, sourcePath(name), TS.JPEGBaseline8Bit);
    const { dataset, frames } = load(file);
    const colour = source.info.samplesPerPixel === 3;
    const pi = dataset.get(0x00280004)?.bytes;
    assert.equal(
      Buffer.from(pi ?? [])
        .toString("latin1")
        .trim(),
      colour ? "YBR_FULL_422" : "MONOCHROME2",
    );
    const stream = frames[0] as Uint8Array;
    assert.equal(Buffer.from(stream.subarray(6, 10)).toString("latin1"), "JFIF", "JFIF APP0: YCbCr for every reader");
    const [back] = await oracleDecode(file, "dcmdjpeg");
    assert.ok(back);
    assert.equal(back.info.photometricInterpretation, colour ? "RGB" : "MONOCHROME2", "DCMTK converts YBR_FULL_422 to RGB");
    const a = samples(back);
    const b = samples(source);
    const mean = a.reduce((sum, v, i) => sum + Math.abs(v - (b[i] as number)), 0) / a.length;
    const { max } = compare(a, b);
    assert.ok(mean < 6 && max < 100, `${name}: mean error ${mean.toFixed(2)}, max ${max}`);
    const [ours] = await decodeAll(file);
    assert.ok(ours);
    assert.deepEqual(compare(samples(ours), a), { differ: 0, max: 0 }, `${name}: decodeFrame gives DCMTK's samples`);
  }
});

test("JPEG baseline reports loss, ratio and method; quality changes the size", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const [source] = await decodeAll(sourcePath("rgb8"));
  assert.ok(source);
  const q95 = await encodeFrame(source, TS.JPEGBaseline8Bit, { quality: 95 });
  const q50 = await encodeFrame(source, TS.JPEGBaseline8Bit, { quality: 50 });
  assert.equal(q95.lossy, true);
  assert.equal(q95.method, "ISO_10918_1");
  assert.ok(q50.bytes.length < q95.bytes.length);
  assert.ok(Math.abs((q50.lossyRatio ?? 0) - (256 * 256 * 3) / q50.bytes.length) < 1e-9);
});

test("frames the codecs cannot hold are refused with UNSUPPORTED before any work", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const [ct] = await decodeAll(sourcePath("ct16s"));
  const [rgb] = await decodeAll(sourcePath("rgb8"));
  assert.ok(ct && rgb);
  const rgb16 = { ...rgb.info, bitsAllocated: 16, bitsStored: 16, highBit: 15 };
  const cases: Array<[DecodedFrame["info"], string]> = [
    [ct.info, TS.JPEGBaseline8Bit],
    [{ ...rgb.info, pixelRepresentation: 1 }, TS.JPEGBaseline8Bit],
    [{ ...rgb.info, photometricInterpretation: "PALETTE COLOR", samplesPerPixel: 1 }, TS.JPEGBaseline8Bit],
    [rgb16, TS.JPEG2000Lossless],
    [rgb16, TS.HTJ2KLossless],
    [{ ...rgb.info, photometricInterpretation: "YBR_FULL" }, TS.HTJ2KLosslessRPCL],
    [{ ...ct.info, bitsAllocated: 1, bitsStored: 1, highBit: 0 }, TS.RLELossless],
    [ct.info, TS.JPEGLSNearLossless],
  ];
  for (const [info, syntax] of cases) {
    assert.ok(encodeProblem(info, syntax), `${syntax} ${JSON.stringify(info)}`);
    await assert.rejects(
      encodeFrame({ info, pixels: new Uint8Array(1 << 20) }, syntax),
      (e: unknown) => e instanceof CodecError && e.code === "UNSUPPORTED",
    );
  }
  assert.equal(encodeProblem(ct.info, TS.HTJ2KLossless), undefined);
  await assert.rejects(
    encodeFrame({ info: ct.info, pixels: new Uint8Array(10) }, TS.RLELossless),
    (e: unknown) => e instanceof CodecError && e.code === "MISMATCH",
  );
});

test("a 3×3 RGB frame (smaller than any codestream header) encodes to every target and back", async (t) => {
  if (!requireTools(t, TOOLS.gdcmconv, TOOLS.dcmftest)) return;
  const [source] = await decodeAll(pydicomFile("SC_rgb_small_odd.dcm"));
  assert.ok(source);
  for (const syntax of [
    TS.RLELossless,
    TS.JPEGLosslessSV1,
    TS.JPEGLSLossless,
    TS.JPEG2000Lossless,
    TS.HTJ2KLossless,
    TS.HTJ2KLosslessRPCL,
    TS.JPEGBaseline8Bit,
  ]) {
    const encoded = await encodeFrame(source, syntax);
    const back = await decodeFrame(encoded.bytes, syntax, encoded.info);
    const { max } = compare(samples(back), samples(source));
    if (syntax === TS.JPEGBaseline8Bit) assert.ok(max < 120, `JPEG baseline max error ${max}`);
    else assert.equal(max, 0, syntax);
  }
  const file = await writeTranscoded("small_odd", pydicomFile("SC_rgb_small_odd.dcm"), TS.JPEG2000Lossless);
  const [gdcm] = await oracleDecode(file, "gdcm");
  assert.ok(gdcm);
  assert.deepEqual(compare(samples(gdcm), samples(source)), { differ: 0, max: 0 });
});

test("the input frame is not modified by encoding", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const [source] = await decodeAll(sourcePath("ct12m"));
  assert.ok(source);
  const before = Buffer.from(source.pixels);
  for (const syntax of [TS.RLELossless, TS.JPEGLSLossless, TS.HTJ2KLossless]) await encodeFrame(source, syntax);
  assert.ok(before.equals(Buffer.from(source.pixels)));
});

test("native YBR_FULL_422 frames (two samples per pixel) expand to YBR_FULL as GDCM does", async (t) => {
  if (!requireTools(t, TOOLS.gdcmconv)) return;
  const file = pydicomFile("SC_ybr_full_422_uncompressed.dcm");
  const { dataset, syntax } = loadHeader(file);
  const info = frameInfoOf(dataset);
  const stored = dataset.get(0x7fe00010)?.bytes;
  assert.ok(stored);
  const frame = await decodeFrame(stored, syntax, info);
  assert.equal(frame.info.photometricInterpretation, "YBR_FULL_422");
  assert.equal(frame.pixels.length, 100 * 100 * 2);
  const rle = await encodeFrame(frame, TS.RLELossless);
  assert.equal(rle.info.photometricInterpretation, "YBR_FULL");
  const ours = await decodeFrame(rle.bytes, TS.RLELossless, rle.info);
  const gdcmRle = join(work, "ybr422.rle.dcm");
  run("gdcmconv", ["--rle", file, gdcmRle]);
  const [gdcm] = await oracleDecode(gdcmRle, "gdcm");
  assert.ok(gdcm);
  assert.equal(gdcm.info.photometricInterpretation, "YBR_FULL");
  assert.deepEqual(compare(samples(ours), samples(gdcm)), { differ: 0, max: 0 });
});

function loadHeader(path: string): { dataset: Dataset; syntax: string } {
  const read = readDicom(readFileSync(path));
  return { dataset: read.dataset, syntax: read.transferSyntaxUid };
}

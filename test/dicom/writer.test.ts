/**
 * Part 10 files we write pass DCMTK's dcmftest, are dumped without complaint by dcmdump and
 * gdcmdump, and read back to the same DICOM JSON as their source.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, test } from "node:test";
import { datasetToJson, frameBytes, locateFrames, readDicomStrict, TransferSyntaxUids, writePart10 } from "../../src/dicom/index.js";
import type { DicomJsonDataset } from "../../src/dicom/json-model.js";
import { isPrivateTag, parseTagHex } from "../../src/dicom/tag.js";
import { dcmtkVariants } from "../helpers/corpus.js";
import { PYDICOM_DATA, requireTools, TOOLS } from "../helpers/tools.js";

const work = mkdtempSync(join(tmpdir(), "voxelgate-writer-"));
after(() => rmSync(work, { recursive: true, force: true }));
const testFile = (dir: string, name: string): string => join(PYDICOM_DATA, dir, name);

const NATIVE_TARGETS = [
  TransferSyntaxUids.ExplicitVRLittleEndian,
  TransferSyntaxUids.ImplicitVRLittleEndian,
  TransferSyntaxUids.DeflatedExplicitVRLittleEndian,
  TransferSyntaxUids.ExplicitVRBigEndian,
];

/** Checks a written file with DCMTK and GDCM; returns their complaints (empty when clean). */
function oracleComplaints(path: string): string[] {
  const complaints: string[] = [];
  const ftest = spawnSync("dcmftest", [path]);
  if (!ftest.stdout.toString().startsWith("yes:")) complaints.push(`dcmftest: ${ftest.stdout}`);
  const dump = spawnSync("dcmdump", ["-q", path]);
  if (dump.status !== 0 || /^[EW]: /m.test(dump.stderr.toString())) complaints.push(`dcmdump: ${dump.stderr}`);
  const gdump = spawnSync("gdcmdump", [path]);
  if (gdump.status !== 0 || /error|warning/i.test(gdump.stderr.toString())) complaints.push(`gdcmdump: ${gdump.stderr}`);
  return complaints;
}

/**
 * Implicit VR carries no VR: private elements without a dictionary entry come back as UN, so for
 * implicit targets only standard attributes are compared, and the OB/OW choice of pixel-like data follows PS3.5 A.1.
 */
function comparable(json: DicomJsonDataset, implicit: boolean): DicomJsonDataset {
  const out: DicomJsonDataset = {};
  for (const [key, attr] of Object.entries(json)) {
    if (implicit && isPrivateTag(parseTagHex(key) ?? 0)) continue;
    const copy = { ...attr };
    if (implicit && (copy.vr === "OB" || copy.vr === "OW")) copy.vr = "OW";
    if (copy.vr === "SQ" && copy.Value) copy.Value = (copy.Value as DicomJsonDataset[]).map((item) => comparable(item, implicit));
    out[key] = copy;
  }
  return out;
}

test("native files written in every native transfer syntax pass dcmftest, dcmdump, gdcmdump and read back equal", async (t) => {
  if (!requireTools(t, TOOLS.dcmftest, TOOLS.dcmdump, TOOLS.gdcmdump, TOOLS.pydicom)) return;
  const sources = [
    testFile("test_files", "CT_small.dcm"),
    testFile("test_files", "MR_small_bigendian.dcm"),
    testFile("test_files", "rtplan.dcm"),
    testFile("test_files", "waveform_ecg.dcm"),
    testFile("test_files", "image_dfl.dcm"),
    testFile("test_files", "test-SR.dcm"),
    testFile("test_files", "liver_1frame.dcm"),
    testFile("charset_files", "chrH31.dcm"),
    testFile("charset_files", "chrX1.dcm"),
  ];
  for (const source of sources) {
    const original = readDicomStrict(readFileSync(source));
    const originalJson = datasetToJson(original.dataset);
    for (const ts of NATIVE_TARGETS) {
      await t.test(`${basename(source)} → ${ts}`, () => {
        const out = join(work, `${basename(source)}.${ts}.dcm`);
        writeFileSync(out, writePart10(original.dataset, { transferSyntaxUid: ts }));
        assert.deepEqual(oracleComplaints(out), []);
        const back = readDicomStrict(readFileSync(out));
        assert.equal(back.transferSyntaxUid, ts);
        assert.deepEqual(back.warnings, []);
        const implicit = ts === TransferSyntaxUids.ImplicitVRLittleEndian;
        assert.deepEqual(comparable(datasetToJson(back.dataset), implicit), comparable(originalJson, implicit));
      });
    }
  }
});

test("encapsulated files are rewritten with one fragment per frame and a Basic Offset Table", async (t) => {
  if (!requireTools(t, TOOLS.dcmftest, TOOLS.dcmdump, TOOLS.gdcmdump, TOOLS.dcmconv, TOOLS.gdcmconv, TOOLS.pydicom)) return;
  const sources = [
    ...dcmtkVariants()
      .map((v) => v.path)
      .filter((p) => /fragments|rle|jpegls|j2k/.test(basename(p))),
    testFile("test_files", "JPEG2000.dcm"),
  ];
  for (const source of sources) {
    await t.test(basename(source), () => {
      const original = readDicomStrict(readFileSync(source));
      const frames = locateFrames(original.dataset).frames.map(frameBytes);
      const out = join(work, `${basename(source)}.rewritten.dcm`);
      writeFileSync(out, writePart10(original.dataset, { transferSyntaxUid: original.transferSyntaxUid }));
      assert.deepEqual(oracleComplaints(out), []);
      const back = readDicomStrict(readFileSync(out));
      const located = locateFrames(back.dataset);
      assert.equal(located.indexSource, "basic-offset-table");
      assert.deepEqual(
        located.frames.map((f) => (f.kind === "encapsulated" ? f.fragments.length : 0)),
        frames.map(() => 1),
        "one fragment per frame",
      );
      located.frames.forEach((f, i) => {
        const expected = frames[i] as Uint8Array;
        const got = frameBytes(f);
        // A fragment is padded to even length with one zero byte (PS3.5 A.4).
        assert.deepEqual(Buffer.from(got.subarray(0, expected.length)), Buffer.from(expected), `frame ${i + 1}`);
        assert.ok(got.length - expected.length <= 1);
      });
      const { [`7FE00010`]: _a, ...headerBack } = datasetToJson(back.dataset);
      const { [`7FE00010`]: _b, ...headerOriginal } = datasetToJson(original.dataset);
      assert.deepEqual(headerBack, headerOriginal);
    });
  }
});

test("writing compressed pixel data as a native syntax is refused with a reason", (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const { dataset } = readDicomStrict(readFileSync(testFile("test_files", "JPEG2000.dcm")));
  assert.throws(
    () => writePart10(dataset, { transferSyntaxUid: TransferSyntaxUids.ExplicitVRLittleEndian }),
    (e: Error & { code?: string }) => e.code === "CANNOT_ENCODE" && /decompression/.test(e.message),
  );
});

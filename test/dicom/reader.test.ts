/** Reader behaviour on legacy and damaged input, with datasets built in memory (no external tools). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { deflateRawSync } from "node:zlib";
import {
  DicomError,
  datasetToJson,
  firstString,
  jsonToDataset,
  readDicom,
  readDicomStrict,
  Tags,
  TransferSyntaxUids,
  writeDataset,
  writePart10,
} from "../../src/dicom/index.js";

const { dataset: sample } = jsonToDataset({
  "00080016": { vr: "UI", Value: ["1.2.840.10008.5.1.4.1.1.7"] },
  "00080018": { vr: "UI", Value: ["2.25.42"] },
  "00100010": { vr: "PN", Value: [{ Alphabetic: "Doe^Jane" }] },
  "00082112": { vr: "SQ", Value: [{ "00081150": { vr: "UI", Value: ["1.2.3"] } }] },
  "00280010": { vr: "US", Value: [2] },
  "00280011": { vr: "US", Value: [2] },
  "00280100": { vr: "US", Value: [16] },
  "7FE00010": { vr: "OW", InlineBinary: Buffer.from([1, 0, 2, 0, 3, 0, 4, 0]).toString("base64") },
});
const expected = datasetToJson(sample);

test("reads Part 10, a file without preamble, and bare datasets in every native encoding", () => {
  const part10 = writePart10(sample, { transferSyntaxUid: TransferSyntaxUids.ExplicitVRLittleEndian });
  assert.deepEqual(datasetToJson(readDicomStrict(part10).dataset), expected);
  const noPreamble = readDicomStrict(part10.subarray(128));
  assert.deepEqual(datasetToJson(noPreamble.dataset), expected);
  assert.match(noPreamble.warnings.join(), /no 128-byte preamble/);
  for (const ts of [
    TransferSyntaxUids.ImplicitVRLittleEndian,
    TransferSyntaxUids.ExplicitVRLittleEndian,
    TransferSyntaxUids.ExplicitVRBigEndian,
  ]) {
    const bare = readDicomStrict(writeDataset(sample, ts));
    assert.equal(bare.transferSyntaxUid, ts, "encoding detected from the first element");
    assert.deepEqual(datasetToJson(bare.dataset), expected, ts);
  }
});

test("a truncated file gives what was read plus a TRUNCATED error naming the element", () => {
  const part10 = writePart10(sample, { transferSyntaxUid: TransferSyntaxUids.ExplicitVRLittleEndian });
  const result = readDicom(part10.subarray(0, part10.length - 3));
  assert.ok(result.error instanceof DicomError);
  assert.equal(result.error.code, "TRUNCATED");
  assert.match(result.error.message, /^in \(7FE00010\): element \(7FE00010\) OW declares 8 bytes but only 5 remain/);
  assert.equal(firstString(result.dataset, 0x00100010), "Doe^Jane", "elements before the cut are kept");
  assert.equal(result.dataset.has(Tags.PixelData), false, "the cut element is not");
  assert.throws(() => readDicomStrict(part10.subarray(0, part10.length - 3)), DicomError);
});

test("a cut inside a sequence names the sequence and the item", () => {
  const bytes = writeDataset(sample, TransferSyntaxUids.ExplicitVRLittleEndian);
  const at = bytes.indexOf(Buffer.from("1.2.3"));
  const result = readDicom(bytes.subarray(0, at + 2));
  assert.match(result.error?.message ?? "", /^in \(00082112\): item 1: in \(00081150\)/);
});

test("a deflate bomb stops at the inflation limit", () => {
  const meta = writePart10(sample, { transferSyntaxUid: TransferSyntaxUids.DeflatedExplicitVRLittleEndian });
  const metaEnd = meta.length - deflateRawSync(writeDataset(sample, TransferSyntaxUids.ExplicitVRLittleEndian)).length;
  const bomb = Buffer.concat([meta.subarray(0, metaEnd), deflateRawSync(Buffer.alloc(8 << 20))]);
  const result = readDicom(bomb, { maxInflatedBytes: 1 << 20 });
  assert.equal(result.error?.code, "DEFLATE_LIMIT");
  assert.deepEqual(datasetToJson(readDicomStrict(meta).dataset), expected, "a normal deflated file reads");
});

test("untilTag stops before pixel data", () => {
  const part10 = writePart10(sample, { transferSyntaxUid: TransferSyntaxUids.ExplicitVRLittleEndian });
  const header = readDicomStrict(part10, { untilTag: Tags.PixelData });
  assert.equal(header.dataset.has(Tags.PixelData), false);
  assert.equal(header.dataset.has(Tags.Rows), true);
});

test("input that is not DICOM is refused", () => {
  assert.equal(readDicom(Buffer.from("hello")).error?.code, "NOT_DICOM");
  assert.equal(readDicom(new Uint8Array(0)).error?.code, "NOT_DICOM");
});

/** DICOM JSON in both directions: the PS3.18 Annex F rules, and JSON → dataset → Part 10 → JSON round trips. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import {
  DicomError,
  datasetToJson,
  jsonToDataset,
  readDicomStrict,
  Tags,
  thresholdBulkDataPolicy,
  writePart10,
} from "../../src/dicom/index.js";
import type { DicomJsonDataset } from "../../src/dicom/json-model.js";
import { PYDICOM_DATA, requireTools, TOOLS } from "../helpers/tools.js";

const roundTrip = (json: DicomJsonDataset): DicomJsonDataset => {
  const { dataset } = jsonToDataset(json);
  return datasetToJson(readDicomStrict(writePart10(dataset, { transferSyntaxUid: "1.2.840.10008.1.2.1" })).dataset);
};

const base: DicomJsonDataset = {
  "00080016": { vr: "UI", Value: ["1.2.840.10008.5.1.4.1.1.2"] },
  "00080018": { vr: "UI", Value: ["2.25.1234"] },
};

test("values follow PS3.18 Annex F through a Part 10 round trip", () => {
  const json: DicomJsonDataset = {
    ...base,
    "00080060": { vr: "CS", Value: ["CT"] },
    "00081030": { vr: "LO" },
    "00100010": { vr: "PN", Value: [{ Alphabetic: "Yamada^Tarou", Ideographic: "山田^太郎", Phonetic: "やまだ^たろう" }, null] },
    "00181310": { vr: "US", Value: [0, 512, 512, 0] },
    "00200037": { vr: "DS", Value: [1, 0, 0, 0, 1, 0.5] },
    "00200013": { vr: "IS", Value: [42] },
    "00080008": { vr: "CS", Value: ["ORIGINAL", null, "AXIAL"] },
    "00209165": { vr: "AT", Value: ["0020000D", "7FE00010"] },
    "00189219": { vr: "SV", Value: [-5, "9007199254740993"] },
    "00082112": { vr: "SQ", Value: [{ "00081150": { vr: "UI", Value: ["1.2.3"] } }, {}] },
    "00081140": { vr: "SQ" },
    "00431028": { vr: "OB", InlineBinary: Buffer.from([1, 2, 3, 4]).toString("base64") },
  };
  const back = roundTrip(json);
  // Non-ASCII text made the character set UTF-8.
  assert.deepEqual(back["00080005"], { vr: "CS", Value: ["ISO_IR 192"] });
  const { "00080005": _cs, ...rest } = back;
  // Big SV values stay strings; everything else comes back exactly.
  assert.deepEqual(rest, json);
  // Keys are 8 upper-case hex digits in ascending order.
  const keys = Object.keys(back);
  assert.deepEqual(keys, [...keys].sort());
  assert.ok(keys.every((k) => /^[0-9A-F]{8}$/.test(k)));
});

test("an empty attribute has no Value, and a DS too long for 16 characters is rounded to fit", () => {
  const back = roundTrip({ ...base, "00280030": { vr: "DS", Value: [0.1 + 0.2, 1 / 3] }, "00100020": { vr: "LO", Value: [""] } });
  assert.deepEqual(back["00100020"], { vr: "LO" });
  const spacing = back["00280030"]?.Value as number[];
  assert.ok(Math.abs((spacing[0] as number) - 0.3) < 1e-14 && Math.abs((spacing[1] as number) - 1 / 3) < 1e-14);
});

test("binary values become BulkDataURI above the threshold and InlineBinary below", () => {
  const { dataset } = jsonToDataset({
    ...base,
    "00431028": { vr: "OB", InlineBinary: Buffer.alloc(2000, 7).toString("base64") },
    "00431029": { vr: "OB", InlineBinary: Buffer.alloc(10, 7).toString("base64") },
  });
  const json = datasetToJson(dataset, { bulkData: thresholdBulkDataPolicy(1024, (c) => `bulk/${c.path.join("/")}`) });
  assert.deepEqual(json["00431028"], { vr: "OB", BulkDataURI: `bulk/${0x00431028}` });
  assert.equal(json["00431029"]?.InlineBinary, Buffer.alloc(10, 7).toString("base64"));
});

test("BulkDataURI parts are resolved when reading JSON for STOW-RS", () => {
  const pixels = Buffer.alloc(16, 9);
  const { dataset } = jsonToDataset(
    { ...base, "7FE00010": { vr: "OW", BulkDataURI: "part-2" } },
    { resolveBulkData: (uri) => (uri === "part-2" ? pixels : undefined) },
  );
  assert.deepEqual(Buffer.from(dataset.get(Tags.PixelData)?.bytes ?? []), pixels);
  assert.throws(
    () => jsonToDataset({ ...base, "7FE00010": { vr: "OW", BulkDataURI: "nowhere" } }),
    (e: unknown) => e instanceof DicomError && e.code === "MISSING_BULK_DATA" && /nowhere/.test(e.message),
  );
});

test("invalid DICOM JSON is refused with the path and the reason", () => {
  const cases: Array<[unknown, RegExp]> = [
    [[], /must be a JSON object/],
    [{ "0010": { vr: "PN" } }, /"0010" is not a tag/],
    [{ "00100010": { vr: "XX" } }, /00100010: missing or unknown vr "XX"/],
    [{ "00100010": { vr: "PN", Value: ["Doe^John"] } }, /PN values must be objects/],
    [{ "00280010": { vr: "US", Value: [70000] } }, /out of range/],
    [{ "00280010": { vr: "US", Value: [1], InlineBinary: "AA==" } }, /only one of Value, InlineBinary/],
    [{ "00082112": { vr: "SQ", Value: [{ "00081150": { vr: "UI", Value: [5] } }] } }, /00082112\[0\]\.00081150: UI values must be strings/],
    [{ "00431028": { vr: "OB", InlineBinary: "not base64!" } }, /base64/],
  ];
  for (const [json, message] of cases) {
    assert.throws(
      () => jsonToDataset(json),
      (e: unknown) => e instanceof DicomError && e.code === "INVALID_JSON" && message.test(e.message),
      String(message),
    );
  }
});

test("JSON → dataset → Part 10 → JSON keeps real files unchanged", (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  for (const name of [
    "test_files/CT_small.dcm",
    "test_files/rtplan.dcm",
    "test_files/waveform_ecg.dcm",
    "charset_files/chrH31.dcm",
    "charset_files/chrX2.dcm",
  ]) {
    const original = datasetToJson(readDicomStrict(readFileSync(join(PYDICOM_DATA, name))).dataset);
    const back = roundTrip(original);
    // Text is now UTF-8, whatever the file's character set was.
    const { "00080005": cs, ...rest } = back;
    const { "00080005": _o, ...originalRest } = original;
    assert.deepEqual(rest, originalRest, name);
    const nonAscii = /[^\x00-\x7f]/.test(JSON.stringify(originalRest));
    assert.deepEqual(cs?.Value, nonAscii ? ["ISO_IR 192"] : original["00080005"]?.Value, name);
  }
});

/**
 * Our DICOM JSON against pydicom's Dataset.to_json_dict(), element by element, on every file of
 * Debian's pydicom test data and on DCMTK/GDCM-made variants. Every difference must be one of the
 * listed kinds, each backed by the PS3.18 rule that makes our output the right one.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { test } from "node:test";
import { swapBytes } from "../../src/dicom/byte-order.js";
import { datasetToJson, readDicom } from "../../src/dicom/index.js";
import type { DicomJsonAttribute, DicomJsonDataset } from "../../src/dicom/json-model.js";
import { isPrivateTag, parseTagHex } from "../../src/dicom/tag.js";
import { swapUnit } from "../../src/dicom/vr.js";
import { dcmtkVariants, pydicomFiles } from "../helpers/corpus.js";
import { PYTHON, requireTools, run, TOOLS, toolsAvailable } from "../helpers/tools.js";

type PyAttribute = DicomJsonAttribute & { pydicomError?: string };
type PyDataset = Record<string, PyAttribute>;

interface Difference {
  path: string;
  kind: DifferenceKind;
  ours: unknown;
  theirs: unknown;
}

/** Differences we accept, each for a reason the standard gives. Anything else fails the test. */
type DifferenceKind =
  // PS3.18 F.2.5: an attribute without values has no "Value"; pydicom writes "Value": [] for a sequence without items.
  | "empty-sequence-has-no-Value"
  // PS3.18 F.2.5: an empty value inside a multi-valued attribute is null; pydicom writes "".
  | "empty-value-is-null"
  // PS3.18 F.2.2: a PN object carries only the component groups that have a value; pydicom writes "Alphabetic": "".
  | "empty-name-group-omitted"
  // PS3.5 Table 6.2-1: leading and trailing spaces of AE, CS, DA, DS, DT, IS, LO, PN, SH, TM, UC values are
  // insignificant; pydicom keeps them inside multi-valued attributes ("DERIVED ").
  | "insignificant-spaces-removed"
  // PS3.5 A.4: encapsulated Pixel Data is OB, even where a file's explicit VR says OW; pydicom repeats the file.
  | "encapsulated-pixel-data-is-OB"
  // Implicit VR private element of unknown VR whose value is an item sequence: we decode the items (a value
  // that is a sequence is not "unknown", PS3.5 §6.2.2); pydicom keeps the bytes as UN.
  | "private-sequence-decoded"
  // A private element whose creator our dictionary (dcmjs's private dictionary) does not list, in a file that says
  // UN: UN is the VR of a value whose VR is not known (PS3.5 §6.2.2); pydicom's larger private dictionary knows it.
  | "private-vr-not-in-dictionary"
  // JSON has no transfer syntax: OW/OF/OD/OL/OV values of a big endian dataset are given in little endian, as bulk
  // data is (PS3.18 §8.7.3.1); pydicom base64-encodes the big endian bytes as they are in the file.
  | "binary-in-little-endian"
  // The input ends inside this element: we leave it out and report the cut (a partial value is not the value);
  // pydicom keeps the bytes that are there.
  | "cut-element-left-out"
  // pydicom could not convert the element at all (it raised); we give its value.
  | "pydicom-failed"
  | "unexplained";

/** Byte order of the file being compared. */
let bigEndian = false;

const sha1 = (b64: string): string => `sha1:${createHash("sha1").update(Buffer.from(b64, "base64")).digest("hex")}`;

function compareDatasets(ours: DicomJsonDataset, theirs: PyDataset, path: string, out: Difference[]): void {
  const keys = new Set([...Object.keys(ours), ...Object.keys(theirs)]);
  for (const key of [...keys].sort()) {
    const p = path ? `${path}.${key}` : key;
    const a = ours[key];
    const b = theirs[key];
    if (!a || !b) {
      out.push({ path: p, kind: b?.pydicomError ? "pydicom-failed" : "unexplained", ours: a, theirs: b });
      continue;
    }
    compareAttributes(a, b, p, out);
  }
}

function compareAttributes(a: DicomJsonAttribute, b: PyAttribute, p: string, out: Difference[]): void {
  if (b.pydicomError) {
    out.push({ path: p, kind: "pydicom-failed", ours: a, theirs: b.pydicomError });
    return;
  }
  if (a.vr !== b.vr) {
    const kind: DifferenceKind =
      p.endsWith("7FE00010") && a.vr === "OB" && b.vr === "OW"
        ? "encapsulated-pixel-data-is-OB"
        : a.vr === "SQ" && b.vr === "UN"
          ? "private-sequence-decoded"
          : a.vr === "UN" && isPrivateTag(parseTagHex(p.slice(-8)) ?? 0)
            ? "private-vr-not-in-dictionary"
            : "unexplained";
    out.push({ path: p, kind, ours: a.vr, theirs: b.vr });
    return;
  }
  if (a.vr === "SQ") {
    const ai = (a.Value ?? []) as DicomJsonDataset[];
    const bi = (b.Value ?? []) as PyDataset[];
    if (a.Value === undefined && Array.isArray(b.Value) && b.Value.length === 0) {
      out.push({ path: p, kind: "empty-sequence-has-no-Value", ours: a, theirs: b });
      return;
    }
    if (ai.length !== bi.length) {
      out.push({ path: p, kind: "unexplained", ours: `${ai.length} items`, theirs: `${bi.length} items` });
      return;
    }
    ai.forEach((item, i) => {
      compareDatasets(item, bi[i] as PyDataset, `${p}[${i}]`, out);
    });
    return;
  }
  if (a.InlineBinary !== undefined || b.InlineBinary !== undefined) {
    const ours = a.InlineBinary === undefined ? undefined : sha1(a.InlineBinary);
    if (ours === b.InlineBinary) return;
    const swapped =
      a.InlineBinary === undefined
        ? undefined
        : sha1(Buffer.from(swapBytes(Buffer.from(a.InlineBinary, "base64"), swapUnit(a.vr))).toString("base64"));
    const kind: DifferenceKind = bigEndian && swapUnit(a.vr) > 1 && swapped === b.InlineBinary ? "binary-in-little-endian" : "unexplained";
    out.push({ path: p, kind, ours, theirs: b.InlineBinary });
    return;
  }
  const av = a.Value ?? [];
  const bv = b.Value ?? [];
  if (av.length !== bv.length) {
    out.push({ path: p, kind: "unexplained", ours: a.Value, theirs: b.Value });
    return;
  }
  av.forEach((x, i) => {
    const y = bv[i];
    if (JSON.stringify(x) === JSON.stringify(y)) return;
    const at = `${p}[${i}]`;
    if (x === null && y === "") out.push({ path: at, kind: "empty-value-is-null", ours: x, theirs: y });
    else if (typeof y === "string" && SPACE_INSIGNIFICANT.has(a.vr) && y.trim() === x) {
      out.push({ path: at, kind: "insignificant-spaces-removed", ours: x, theirs: y });
    } else if (a.vr === "PN" && isPnWithEmptyGroupsRemoved(x, y))
      out.push({ path: at, kind: "empty-name-group-omitted", ours: x, theirs: y });
    else if (typeof x === "number" && typeof y === "number" && Math.abs(x - y) <= Math.abs(y) * 1e-15) return;
    else out.push({ path: at, kind: "unexplained", ours: x, theirs: y });
  });
}

const SPACE_INSIGNIFICANT = new Set(["AE", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UC"]);

function isPnWithEmptyGroupsRemoved(ours: unknown, theirs: unknown): boolean {
  if (typeof theirs !== "object" || theirs === null) return false;
  const kept = Object.fromEntries(Object.entries(theirs).filter(([, v]) => v !== ""));
  return JSON.stringify(ours ?? {}) === JSON.stringify(kept) || (ours === null && Object.keys(kept).length === 0);
}

function pydicomJson(paths: string[]): Record<string, { json?: PyDataset; error?: string }> {
  const script = new URL("../../../test/fixtures/pydicom_json.py", import.meta.url).pathname;
  return JSON.parse(run(PYTHON, [script, ...paths]).toString("utf8"));
}

function differencesFor(path: string, reference: PyDataset): { differences: Difference[]; error?: string } {
  const result = readDicom(readFileSync(path));
  bigEndian = !result.dataset.littleEndian;
  const ours = datasetToJson(result.dataset);
  const differences: Difference[] = [];
  compareDatasets(ours, reference, "", differences);
  if (result.error) {
    // Only the top-level element the error names may be missing.
    const cut = /^in \(([0-9A-F]{8})\)/.exec(result.error.detail)?.[1];
    for (const d of differences) {
      if (d.kind === "unexplained" && d.ours === undefined && d.path === cut) d.kind = "cut-element-left-out";
    }
  }
  return { differences, ...(result.error ? { error: result.error.message } : {}) };
}

/** Files pydicom reads only partially, or where it reads more than the bytes hold: the reason for each. */
const READ_ERRORS_EXPECTED: Record<string, string> = {
  // Pixel data declares more bytes than the file has: we keep every complete element and report the cut.
  "MR_truncated.dcm": "TRUNCATED",
  // The sequence is cut inside an item.
  "rtplan_truncated.dcm": "TRUNCATED",
  // Starts with a stray byte, so it reads as one element (0820,0500) of 173 MB in a 38 KB file.
  "no_meta.dcm": "TRUNCATED",
};

test("DICOM JSON equals pydicom's to_json_dict on pydicom's test files and DCMTK/GDCM variants", async (t) => {
  if (!requireTools(t, TOOLS.pydicom, TOOLS.dcmconv, TOOLS.gdcmconv)) return;
  const files = [...pydicomFiles(), ...(toolsAvailable(TOOLS.dcmconv) ? dcmtkVariants().map((v) => v.path) : [])];
  const reference = pydicomJson(files);
  const tally: Record<string, number> = {};
  let compared = 0;
  const failedByPydicom: string[] = [];
  for (const file of files) {
    const ref = reference[file];
    await t.test(basename(file), () => {
      assert.ok(ref, `pydicom gave no result for ${file}`);
      if (!ref.json) {
        assert.fail(`pydicom cannot read ${file}: ${ref.error}`);
      }
      const { differences, error } = differencesFor(file, ref.json);
      const expectedError = READ_ERRORS_EXPECTED[basename(file)];
      if (expectedError) assert.match(error ?? "", /^in \(/, `expected a ${expectedError} error naming the element in ${file}`);
      else assert.equal(error, undefined, `unexpected read error on ${file}`);
      const unexplained = differences.filter((d) => d.kind === "unexplained");
      assert.deepEqual(unexplained, [], `unexplained differences with pydicom in ${file}`);
      for (const d of differences) tally[d.kind] = (tally[d.kind] ?? 0) + 1;
      for (const d of differences.filter((x) => x.kind === "pydicom-failed"))
        failedByPydicom.push(`${basename(file)} ${d.path}: ${String(d.theirs)}`);
      compared++;
    });
  }
  for (const d of failedByPydicom) t.diagnostic(`pydicom failed on ${d}`);
  t.diagnostic(`files compared: ${compared}; accepted differences: ${JSON.stringify(tally)}`);
  assert.ok(compared >= 85, `expected at least 85 files, compared ${compared}`);
});

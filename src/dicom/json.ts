/**
 * Dataset → DICOM JSON (PS3.18 Annex F).
 *
 * Rules that are easy to get wrong, each held here: keys are 8 upper-case hex digits; every
 * attribute has "vr"; an empty attribute has no "Value"; an empty value inside a multi-valued
 * attribute is null (F.2.5); PN values are objects with only the non-empty component groups
 * (F.2.2); IS/DS and binary numbers are JSON numbers, SV/UV beyond 2^53 are strings (F.2.3);
 * AT values are hex strings; OB/OD/OF/OL/OV/OW/UN are InlineBinary or BulkDataURI (F.2.7).
 */
import { swapBytes } from "./byte-order.js";
import type { Dataset, Element } from "./dataset.js";
import type { DicomJsonAttribute, DicomJsonDataset, JsonValue, PersonNameJson } from "./json-model.js";
import { type Tag, tagToHex } from "./tag.js";
import { binaryNumbers, stringValues } from "./values.js";
import { isBinaryVr, numberSize, swapUnit } from "./vr.js";

/** Where a binary value sits, so a policy can name a URI for it. */
export interface BulkDataContext {
  /** Tags from the top-level dataset down to this element, with the item index after each sequence tag. */
  path: Array<Tag | number>;
  element: Element;
  dataset: Dataset;
  /** Length of the value in bytes. */
  length: number;
}

/** Decides, per binary value, between a BulkDataURI (return it) and InlineBinary (return undefined). */
export type BulkDataPolicy = (context: BulkDataContext) => string | undefined;

/** BulkDataURI for values larger than `thresholdBytes`, built by `uriFor`; smaller ones inline. */
export function thresholdBulkDataPolicy(thresholdBytes: number, uriFor: (context: BulkDataContext) => string): BulkDataPolicy {
  return (context) => (context.length > thresholdBytes ? uriFor(context) : undefined);
}

export interface ToJsonOptions {
  /** Default: every binary value inline. */
  bulkData?: BulkDataPolicy;
  /** Leave out group 0002 (file meta) elements found in the dataset. Default true. */
  skipFileMeta?: boolean;
}

/** The DICOM JSON object of a dataset. */
export function datasetToJson(ds: Dataset, options: ToJsonOptions = {}): DicomJsonDataset {
  return convertDataset(ds, options, []);
}

function convertDataset(ds: Dataset, options: ToJsonOptions, path: Array<Tag | number>): DicomJsonDataset {
  const out: DicomJsonDataset = {};
  const skipMeta = options.skipFileMeta ?? true;
  for (const el of ds.elements()) {
    if (skipMeta && el.tag < 0x00030000 && el.tag >= 0x00020000) continue;
    out[tagToHex(el.tag)] = convertElement(ds, el, options, path);
  }
  return out;
}

function convertElement(ds: Dataset, el: Element, options: ToJsonOptions, parentPath: Array<Tag | number>): DicomJsonAttribute {
  const vr = el.vr;
  const attr: DicomJsonAttribute = { vr };
  if (vr === "SQ") {
    const items = el.items ?? [];
    if (items.length > 0) {
      attr.Value = items.map((item, i) => convertDataset(item, options, [...parentPath, el.tag, i]));
    }
    return attr;
  }
  if (el.encapsulated || isBinaryVr(vr)) {
    const bytes = el.encapsulated ? el.encapsulated.encoded : el.bytes;
    const length = bytes?.length ?? 0;
    if (length === 0 && !el.encapsulated) return attr;
    const uri = options.bulkData?.({ path: [...parentPath, el.tag], element: el, dataset: ds, length });
    if (uri !== undefined) attr.BulkDataURI = uri;
    else if (bytes) {
      // JSON has no transfer syntax: binary values are given in little endian, like bulk data (PS3.18 §8.7.3.1).
      const le = ds.littleEndian || el.encapsulated ? bytes : swapBytes(bytes, swapUnit(vr));
      attr.InlineBinary = Buffer.from(le.buffer, le.byteOffset, le.byteLength).toString("base64");
    }
    return attr;
  }
  const values = elementJsonValues(ds, el);
  if (values.length > 0) attr.Value = values;
  return attr;
}

/** The "Value" array of a non-binary, non-sequence element. */
export function elementJsonValues(ds: Dataset, el: Element): JsonValue[] {
  const vr = el.vr;
  if (vr === "AT") return binaryNumbers(ds, el).map((t) => tagToHex(Number(t)));
  if (numberSize(vr)) return binaryNumbers(ds, el).map(jsonNumber);
  const strings = stringValues(ds, el);
  if (strings.length === 0 || (strings.length === 1 && strings[0] === "")) return [];
  switch (vr) {
    case "PN":
      return strings.map(personName);
    case "IS":
    case "DS":
      return strings.map(decimalString);
    default:
      return strings.map((s) => (s === "" ? null : s));
  }
}

function jsonNumber(v: number | bigint): number | string {
  if (typeof v === "number") return v;
  // SV/UV: a JSON number only where a double holds it exactly (PS3.18 F.2.3.1).
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

/** IS/DS as a JSON number; a value that is not a number stays a string rather than being lost. */
function decimalString(s: string): number | string | null {
  if (s === "") return null;
  const n = Number(s);
  return Number.isFinite(n) ? n : s;
}

function personName(s: string): PersonNameJson | null {
  if (s === "") return null;
  const [alphabetic, ideographic, phonetic] = s.split("=");
  const pn: PersonNameJson = {};
  if (alphabetic) pn.Alphabetic = alphabetic;
  if (ideographic) pn.Ideographic = ideographic;
  if (phonetic) pn.Phonetic = phonetic;
  return pn;
}

/**
 * DICOM JSON (PS3.18 Annex F) → Dataset, for STOW-RS of JSON + bulk data. Values are encoded in
 * little endian; text is encoded in UTF-8 and Specific Character Set becomes ISO_IR 192 when any
 * text value needs more than ASCII (JSON is Unicode, whatever character set the sender named).
 */
import { padEven } from "./byte-order.js";
import { Dataset, type Element } from "./dataset.js";
import { DicomError } from "./errors.js";
import type { DicomJsonAttribute, DicomJsonDataset, JsonValue, PersonNameJson } from "./json-model.js";
import { parseTagHex, type Tag, Tags } from "./tag.js";
import { isBinaryVr, isSingleValuedString, isStringVr, isVr, numberSize, paddingByte, type Vr } from "./vr.js";

export interface FromJsonOptions {
  /** Bytes behind a BulkDataURI; undefined when the URI is unknown (that is an error). */
  resolveBulkData?: (uri: string, tag: Tag) => Uint8Array | undefined;
}

export interface FromJsonResult {
  dataset: Dataset;
  /** Coercions made while encoding (e.g. character set replaced): for a STOW-RS WarningReason. */
  warnings: string[];
}

export function jsonToDataset(json: unknown, options: FromJsonOptions = {}): FromJsonResult {
  const warnings: string[] = [];
  const state = { nonAscii: false };
  const dataset = convertDataset(json, options, warnings, state, "", undefined);
  if (state.nonAscii) {
    const current = dataset.get(Tags.SpecificCharacterSet);
    const declared = current?.bytes ? Buffer.from(current.bytes).toString("latin1").trim() : "";
    if (declared !== "ISO_IR 192") {
      if (declared) warnings.push(`Specific Character Set "${declared}" replaced by ISO_IR 192: values were re-encoded as UTF-8`);
      dataset.set(stringElement(Tags.SpecificCharacterSet, "CS", ["ISO_IR 192"]));
    }
  }
  return { dataset, warnings };
}

function fail(path: string, message: string): never {
  throw new DicomError("INVALID_JSON", `${path || "dataset"}: ${message}`);
}

function convertDataset(
  json: unknown,
  options: FromJsonOptions,
  warnings: string[],
  state: { nonAscii: boolean },
  path: string,
  parent: Dataset | undefined,
): Dataset {
  if (typeof json !== "object" || json === null || Array.isArray(json)) fail(path, "a dataset must be a JSON object");
  const ds = new Dataset(true, parent);
  for (const [key, attr] of Object.entries(json as DicomJsonDataset)) {
    const tag = parseTagHex(key);
    if (tag === undefined || key.length !== 8) fail(path, `"${key}" is not a tag of 8 hex digits`);
    const where = `${path}${path ? "." : ""}${key.toUpperCase()}`;
    ds.set(convertAttribute(tag, attr, options, warnings, state, where, ds));
  }
  return ds;
}

function convertAttribute(
  tag: Tag,
  attr: DicomJsonAttribute,
  options: FromJsonOptions,
  warnings: string[],
  state: { nonAscii: boolean },
  path: string,
  ds: Dataset,
): Element {
  if (typeof attr !== "object" || attr === null) fail(path, "an attribute must be an object");
  const vr = attr.vr;
  if (typeof vr !== "string" || !isVr(vr)) fail(path, `missing or unknown vr "${String(vr)}"`);
  const present = ["Value", "InlineBinary", "BulkDataURI"].filter((k) => k in attr);
  if (present.length > 1) fail(path, `only one of ${present.join(", ")} may be present`);

  if (attr.BulkDataURI !== undefined) {
    if (typeof attr.BulkDataURI !== "string") fail(path, "BulkDataURI must be a string");
    const bytes = options.resolveBulkData?.(attr.BulkDataURI, tag);
    if (!bytes) throw new DicomError("MISSING_BULK_DATA", `${path}: no bulk data part for BulkDataURI ${attr.BulkDataURI}`);
    return { tag, vr, bytes: padEven(bytes, 0), position: -1 };
  }
  if (attr.InlineBinary !== undefined) {
    if (typeof attr.InlineBinary !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(attr.InlineBinary)) {
      fail(path, "InlineBinary must be base64 text");
    }
    return { tag, vr, bytes: padEven(Buffer.from(attr.InlineBinary, "base64"), 0), position: -1 };
  }
  const values = attr.Value;
  if (values === undefined) return vr === "SQ" ? { tag, vr, items: [], position: -1 } : { tag, vr, bytes: new Uint8Array(0), position: -1 };
  if (!Array.isArray(values)) fail(path, "Value must be an array");

  if (vr === "SQ") {
    const items = values.map((item, i) => convertDataset(item, options, warnings, state, `${path}[${i}]`, ds));
    return { tag, vr, items, position: -1 };
  }
  if (isBinaryVr(vr)) fail(path, `${vr} values must be InlineBinary or BulkDataURI, not Value`);
  if (vr === "AT") {
    const out = Buffer.alloc(values.length * 4);
    values.forEach((v, i) => {
      const t = typeof v === "string" ? parseTagHex(v) : undefined;
      if (t === undefined) fail(path, `AT value ${JSON.stringify(v)} is not 8 hex digits`);
      out.writeUInt16LE(t >>> 16, i * 4);
      out.writeUInt16LE(t & 0xffff, i * 4 + 2);
    });
    return { tag, vr, bytes: out, position: -1 };
  }
  const size = numberSize(vr);
  if (size) return { tag, vr, bytes: encodeBinaryNumbers(vr, size, values, path), position: -1 };
  if (!isStringVr(vr)) fail(path, `unsupported vr ${vr}`);

  const texts = values.map((v) => valueText(vr, v, path));
  if (isSingleValuedString(vr) && texts.length > 1) fail(path, `${vr} holds a single value, got ${texts.length}`);
  if (texts.some((t) => /[^\x00-\x7f]/.test(t))) state.nonAscii = true;
  return stringElement(tag, vr, texts);
}

function valueText(vr: Vr, v: JsonValue, path: string): string {
  if (v === null) return "";
  if (vr === "PN") {
    if (typeof v !== "object" || Array.isArray(v)) fail(path, "PN values must be objects with Alphabetic/Ideographic/Phonetic");
    const pn = v as PersonNameJson;
    const groups = [pn.Alphabetic ?? "", pn.Ideographic ?? "", pn.Phonetic ?? ""];
    while (groups.length > 0 && groups[groups.length - 1] === "") groups.pop();
    return groups.join("=");
  }
  if (vr === "IS" || vr === "DS") {
    if (typeof v === "number") {
      if (!Number.isFinite(v)) fail(path, `${vr} value ${v} is not finite`);
      if (vr === "IS" && !Number.isInteger(v)) fail(path, `IS value ${v} is not an integer`);
      return vr === "DS" ? formatDecimalString(v) : String(v);
    }
    if (typeof v === "string") return v;
    fail(path, `${vr} values must be numbers`);
  }
  if (typeof v !== "string") fail(path, `${vr} values must be strings`);
  return v;
}

/** A DS value is at most 16 characters (PS3.5 Table 6.2-1): shortest exact form, else rounded to fit. */
export function formatDecimalString(v: number): string {
  const exact = String(v);
  if (exact.length <= 16) return exact;
  for (let digits = 15; digits > 0; digits--) {
    const s = v
      .toPrecision(digits)
      .replace(/(\.\d*?)0+(e|$)/, "$1$2")
      .replace(/\.(e|$)/, "$1");
    if (s.length <= 16) return s;
  }
  return v.toExponential(6);
}

function encodeBinaryNumbers(vr: Vr, size: number, values: JsonValue[], path: string): Uint8Array {
  const out = Buffer.alloc(values.length * size);
  values.forEach((raw, i) => {
    const at = i * size;
    if (vr === "SV" || vr === "UV") {
      if (typeof raw !== "number" && typeof raw !== "string") fail(path, `${vr} values must be numbers or numeric strings`);
      let big: bigint;
      try {
        big = BigInt(raw);
      } catch {
        fail(path, `${vr} value ${JSON.stringify(raw)} is not an integer`);
      }
      if (vr === "SV") out.writeBigInt64LE(big, at);
      else out.writeBigUInt64LE(big, at);
      return;
    }
    if (typeof raw !== "number" || !Number.isFinite(raw)) fail(path, `${vr} values must be finite numbers`);
    const ranges: Partial<Record<Vr, [number, number]>> = {
      US: [0, 0xffff],
      SS: [-0x8000, 0x7fff],
      UL: [0, 0xffffffff],
      SL: [-0x80000000, 0x7fffffff],
    };
    const range = ranges[vr];
    if (range && (!Number.isInteger(raw) || raw < range[0] || raw > range[1])) fail(path, `${vr} value ${raw} is out of range`);
    switch (vr) {
      case "US":
        out.writeUInt16LE(raw, at);
        break;
      case "SS":
        out.writeInt16LE(raw, at);
        break;
      case "UL":
        out.writeUInt32LE(raw, at);
        break;
      case "SL":
        out.writeInt32LE(raw, at);
        break;
      case "FL":
        out.writeFloatLE(raw, at);
        break;
      case "FD":
        out.writeDoubleLE(raw, at);
        break;
    }
  });
  return out;
}

function stringElement(tag: Tag, vr: Vr, values: string[]): Element {
  const text = values.join("\\");
  return { tag, vr, bytes: padEven(Buffer.from(text, "utf8"), paddingByte(vr)), position: -1 };
}

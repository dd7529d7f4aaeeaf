/** Decoding element values from their encoded bytes (PS3.5 §6.2), on demand. */
import { decodeText, parseSpecificCharacterSet } from "./charset.js";
import type { Dataset, Element } from "./dataset.js";
import type { Tag } from "./tag.js";
import { isSingleValuedString, numberSize, usesCharacterSet } from "./vr.js";

const dataView = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** The character sets in force for a dataset, parsed once per dataset. */
const charsetCache = new WeakMap<Dataset, string[]>();
export function charsetsOf(ds: Dataset): string[] {
  let cs = charsetCache.get(ds);
  if (!cs) {
    cs = parseSpecificCharacterSet(ds.characterSetValues());
    charsetCache.set(ds, cs);
  }
  return cs;
}

/** The whole value as text (all values, backslashes included), decoded with the dataset's character set. */
export function elementText(ds: Dataset, el: Element): string {
  const bytes = el.bytes;
  if (!bytes || bytes.length === 0) return "";
  if (usesCharacterSet(el.vr)) return decodeText(bytes, charsetsOf(ds), el.vr);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

/**
 * String values, split at backslashes (except for single-valued VRs) and stripped of padding:
 * trailing spaces always, trailing NULs for UI, leading spaces where the VR makes them insignificant.
 */
export function stringValues(ds: Dataset, el: Element): string[] {
  const text = elementText(ds, el);
  if (text.length === 0) return [];
  const vr = el.vr;
  if (isSingleValuedString(vr)) {
    // LT, ST, UT keep leading spaces (PS3.5 Table 6.2-1); only trailing padding goes.
    const trimmed = vr === "UR" ? text.trim() : text.replace(/[ \0]+$/, "");
    return [trimmed];
  }
  const parts = text.split("\\");
  for (let i = 0; i < parts.length; i++) parts[i] = trimValue(parts[i] as string, vr);
  return parts;
}

function trimValue(value: string, vr: string): string {
  switch (vr) {
    case "UI":
      return value.replace(/[\0 ]+$/, "").replace(/^ +/, "");
    case "PN":
    case "SH":
    case "LO":
    case "UC":
    case "AE":
    case "CS":
    case "DS":
    case "IS":
    case "DA":
    case "DT":
    case "TM":
    case "AS":
      return value.trim().replace(/\0+$/, "");
    default:
      return value.replace(/[ \0]+$/, "");
  }
}

export function firstString(ds: Dataset, tag: Tag): string | undefined {
  const el = ds.get(tag);
  return el ? stringValues(ds, el)[0] : undefined;
}

/** Values of a binary numeric VR (US, SS, UL, SL, FL, FD, SV, UV) or AT (as tag numbers). SV/UV come as bigint. */
export function binaryNumbers(ds: Dataset, el: Element): Array<number | bigint> {
  const bytes = el.bytes;
  const size = numberSize(el.vr);
  if (!bytes || !size) return [];
  const view = dataView(bytes);
  const le = ds.littleEndian;
  const count = Math.floor(bytes.length / size);
  const out: Array<number | bigint> = new Array(count);
  for (let i = 0; i < count; i++) {
    const at = i * size;
    switch (el.vr) {
      case "US":
        out[i] = view.getUint16(at, le);
        break;
      case "SS":
        out[i] = view.getInt16(at, le);
        break;
      case "UL":
        out[i] = view.getUint32(at, le);
        break;
      case "SL":
        out[i] = view.getInt32(at, le);
        break;
      case "FL":
        out[i] = view.getFloat32(at, le);
        break;
      case "FD":
        out[i] = view.getFloat64(at, le);
        break;
      case "SV":
        out[i] = view.getBigInt64(at, le);
        break;
      case "UV":
        out[i] = view.getBigUint64(at, le);
        break;
      case "AT":
        out[i] = ((view.getUint16(at, le) << 16) | view.getUint16(at + 2, le)) >>> 0;
        break;
    }
  }
  return out;
}

/** First value of an integer attribute, whether it is encoded as binary (US, UL…) or as a string (IS). */
export function firstInteger(ds: Dataset, tag: Tag): number | undefined {
  const el = ds.get(tag);
  if (!el) return undefined;
  if (numberSize(el.vr)) {
    const v = binaryNumbers(ds, el)[0];
    return v === undefined ? undefined : Number(v);
  }
  const s = stringValues(ds, el)[0];
  if (s === undefined || s === "") return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? Math.trunc(n) : undefined;
}

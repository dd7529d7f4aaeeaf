/**
 * DICOM JSON Model (PS3.18 Annex F) → Native DICOM Model XML (PS3.19 A.1), the body of
 * application/dicom+xml responses.
 *
 * Choices where the standard leaves room or the input cannot be written as is:
 * - Elements are in the schema's default namespace (PS3.19 A.1.6,
 *   `default namespace="http://dicom.nema.org/PS3.19/models/NativeDICOM"`), so that documents
 *   validate against it; dcmtk's dcm2xml only adds it with +Xn.
 * - Private data elements are written as gggg00ee with privateCreator (PS3.19 A.1.5 "tag"). One
 *   whose creator is not in the dataset keeps its full tag and has no privateCreator: the block
 *   is then the only trace of the creator.
 * - Group Length (gggg,0000) elements are dropped (PS3.19 A.1.1: "shall not be included").
 * - Empty name components are not written, whether trailing or not: each one is named, so no
 *   position is lost (dcmtk and dcm4che do the same). A PN value whose groups are all empty still
 *   gets its <PersonName number="n"/>, because the Value Field is not zero length.
 * - Characters that XML 1.0 cannot carry (C0 controls other than TAB, LF, CR; U+FFFE, U+FFFF;
 *   unpaired surrogates) are replaced by U+FFFD: even as &#n; references they are not allowed,
 *   and a replacement keeps the value's length and shows that something was there.
 * - CR is written as &#13; (and TAB, LF, CR in attribute values as references) so that a parser's
 *   end-of-line and attribute-value normalization gives the original text back.
 */
import { keywordOf } from "./dictionary.js";
import type { DicomJsonAttribute, DicomJsonDataset, JsonValue, PersonNameJson } from "./json-model.js";
import { isPrivateCreatorTag, isPrivateTag, parseTagHex, privateCreatorTagOf, tagElement, tagToHex } from "./tag.js";

export const NATIVE_DICOM_NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM";

const HEADER = `<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel xmlns="${NATIVE_DICOM_NAMESPACE}" xml:space="preserve">\n`;
const FOOTER = "</NativeDicomModel>\n";

export function datasetToXml(dataset: DicomJsonDataset): string {
  const out: string[] = [HEADER];
  writeDataset(dataset, out);
  out.push(FOOTER);
  return out.join("");
}

/** For multipart/related; type="application/dicom+xml" QIDO responses: one XML document per dataset. */
export function datasetsToXmlDocuments(datasets: readonly DicomJsonDataset[]): string[] {
  return datasets.map(datasetToXml);
}

// Everything that needs escaping or replacing; unpaired surrogates cannot be encoded as UTF-8.
const SPECIAL =
  /[&<>"'\r\t\n\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const TEXT_ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&apos;",
  "\r": "&#13;",
  "\t": "\t",
  "\n": "\n",
};
const ATTRIBUTE_ENTITIES: Record<string, string> = { ...TEXT_ENTITIES, "\t": "&#9;", "\n": "&#10;" };

function escapeWith(text: string, entities: Record<string, string>): string {
  SPECIAL.lastIndex = 0;
  // Most values (UIDs, codes, dates) need nothing: skip building a new string for them.
  if (!SPECIAL.test(text)) return text;
  return text.replace(SPECIAL, (c) => entities[c] ?? "\uFFFD");
}

/** Escapes character data for element content; exported for tests. */
export const escapeXmlText = (text: string): string => escapeWith(text, TEXT_ENTITIES);
/** Escapes a value for a double- or single-quoted XML attribute. */
export const escapeXmlAttribute = (text: string): string => escapeWith(text, ATTRIBUTE_ENTITIES);

function writeDataset(dataset: DicomJsonDataset, out: string[]): void {
  for (const key of Object.keys(dataset)) {
    const attribute = dataset[key];
    if (attribute === undefined) continue;
    const tag = parseTagHex(key);
    if (tag === undefined) throw new Error(`DICOM JSON key is not a tag: ${JSON.stringify(key)}`);
    if (tagElement(tag) === 0x0000) continue; // Group Length: PS3.19 A.1.1
    writeAttribute(dataset, tag, attribute, out);
  }
}

/** The value of the creator element that reserves the block of a private data element (gggg,xxee). */
function privateCreatorOf(dataset: DicomJsonDataset, tag: number): string | undefined {
  // Creator elements (gggg,0010-00FF) themselves, and the invalid (gggg,0001-000F), belong to no block.
  if (!isPrivateTag(tag) || isPrivateCreatorTag(tag) || tagElement(tag) < 0x1000) return undefined;
  const value = dataset[tagToHex(privateCreatorTagOf(tag))]?.Value?.[0];
  return typeof value === "string" && value !== "" ? value : undefined;
}

function writeAttribute(dataset: DicomJsonDataset, tag: number, attribute: DicomJsonAttribute, out: string[]): void {
  const vr = attribute.vr;
  const creator = privateCreatorOf(dataset, tag);
  // Private data elements drop their block number: the creator says which block (PS3.19 A.1.5).
  const written = creator === undefined ? tag : (tag & 0xffff00ff) >>> 0;
  let start = `<DicomAttribute tag="${tagToHex(written)}" vr="${escapeXmlAttribute(vr)}"`;
  if (creator !== undefined) {
    start += ` privateCreator="${escapeXmlAttribute(creator)}"`;
  } else if (!isPrivateTag(tag)) {
    const keyword = keywordOf(tag);
    if (keyword !== undefined) start += ` keyword="${keyword}"`;
  }

  const values = attribute.Value;
  if (attribute.InlineBinary !== undefined) {
    out.push(start, ">\n<InlineBinary>", escapeXmlText(attribute.InlineBinary), "</InlineBinary>\n</DicomAttribute>\n");
  } else if (attribute.BulkDataURI !== undefined) {
    out.push(start, `>\n<BulkData uri="${escapeXmlAttribute(attribute.BulkDataURI)}"/>\n</DicomAttribute>\n`);
  } else if (values === undefined || values.length === 0) {
    out.push(start, "/>\n");
  } else {
    out.push(start, ">\n");
    if (vr === "SQ") writeItems(values, out);
    else if (vr === "PN") writePersonNames(values, out);
    else writeValues(values, vr === "AT", out);
    out.push("</DicomAttribute>\n");
  }
}

function writeItems(values: readonly JsonValue[], out: string[]): void {
  for (let i = 0; i < values.length; i++) {
    const item = values[i];
    if (item === null || item === undefined) {
      out.push(`<Item number="${i + 1}"/>\n`);
      continue;
    }
    if (typeof item !== "object") throw new TypeError(`SQ item ${i + 1} is not a dataset: ${JSON.stringify(item)}`);
    out.push(`<Item number="${i + 1}">\n`);
    writeDataset(item as DicomJsonDataset, out);
    out.push("</Item>\n");
  }
}

function writeValues(values: readonly JsonValue[], isAt: boolean, out: string[]): void {
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    let text: string;
    if (value === null || value === undefined) text = "";
    else if (typeof value === "string") text = escapeXmlText(isAt ? value.toUpperCase() : value);
    // AT is "gggg eeee" hex (PS3.19 A.1.5); other numbers as JSON writes them (DS and IS included).
    else if (typeof value === "number") text = isAt ? (value >>> 0).toString(16).toUpperCase().padStart(8, "0") : String(value);
    else throw new TypeError(`value ${i + 1} is an object where a string or number belongs: ${JSON.stringify(value)}`);
    out.push(text === "" ? `<Value number="${i + 1}"/>\n` : `<Value number="${i + 1}">${text}</Value>\n`);
  }
}

const GROUPS = ["Alphabetic", "Ideographic", "Phonetic"] as const;
const COMPONENTS = ["FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix"] as const;

function writePersonNames(values: readonly JsonValue[], out: string[]): void {
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    const name = typeof value === "string" ? parsePersonName(value) : (value as PersonNameJson | null | undefined);
    const groups: string[] = [];
    if (name) {
      for (const group of GROUPS) {
        const text = name[group];
        if (text) writeComponents(group, text, groups);
      }
    }
    if (groups.length === 0) out.push(`<PersonName number="${i + 1}"/>\n`);
    else out.push(`<PersonName number="${i + 1}">\n`, ...groups, "</PersonName>\n");
  }
}

/** A PN value given as DICOM text ("A^B=I^J=P^Q") instead of the JSON object. */
function parsePersonName(text: string): PersonNameJson {
  const [alphabetic, ideographic, phonetic] = text.split("=");
  return { Alphabetic: alphabetic, Ideographic: ideographic, Phonetic: phonetic };
}

function writeComponents(group: string, text: string, out: string[]): void {
  const parts = text.split("^");
  // More than four carets is invalid; keep the surplus in the suffix rather than lose it, as dcmtk does.
  if (parts.length > 5) parts.splice(4, parts.length - 4, parts.slice(4).join("^"));
  const start = out.length;
  for (let c = 0; c < COMPONENTS.length; c++) {
    const part = parts[c];
    if (part) out.push(`<${COMPONENTS[c]}>${escapeXmlText(part)}</${COMPONENTS[c]}>\n`);
  }
  if (out.length === start) return; // "^^^^": an empty group is left out
  out.splice(start, 0, `<${group}>\n`);
  out.push(`</${group}>\n`);
}

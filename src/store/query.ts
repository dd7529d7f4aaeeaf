/**
 * The backend-neutral search model (QIDO-RS, PS3.18 §10.6): what the dicomweb layer asks an
 * Index for, and the matching rules every backend shares (PS3.4 C.2.2.2). A backend turns the
 * conditions it can into its own query language (SQL) and evaluates the rest with
 * `matchDataset` / `matchValue` below, so both paths give the same answer.
 *
 * Matching rules held here:
 * - Universal matching: an empty value, `*` alone, or `""` matches everything (the key is returned).
 * - Single value matching: exact and case-sensitive, except PN: case-insensitive, each query
 *   component group against the stored group (a query without `=` may match any group, so
 *   `山田*` finds `Yamada^Taro=山田^太郎`). Trailing empty name components are ignored.
 * - Wildcards `*` (any run) and `?` (one character) for string VRs (not UI, DA, TM, DT, numbers).
 * - UID list matching; value lists (`any`) for ModalitiesInStudy and `multiplevaluematching`.
 * - Range matching of DA, TM, DT (inclusive; open ends); a single TM/DT value matches at the
 *   precision it was written with (`10` = 10:00:00 to 10:59:59.999999). DT timezone offsets are
 *   ignored (compared as written); DA and TM are matched independently (no combined datetime).
 * - Fuzzy PN matching (`fuzzymatching=true`): case- and accent-insensitive (foldText on both
 *   sides); every word of the query must begin some word of the name, in any order
 *   (`jo do` finds `Doe^John`).
 * - Multi-valued attributes match when any value matches; sequence matching: some item matches
 *   every item key (PS3.4 C.2.2.2.6). Absent or empty attributes match only universally.
 */
import type { DicomJsonAttribute, DicomJsonDataset, JsonValue, PersonNameJson } from "../dicom/index.js";
import type { AccessFilter } from "./access.js";
import { foldText } from "./text-fold.js";

export type Level = "study" | "series" | "instance";

/** 0 for study, 1 for series, 2 for instance: a condition deeper than the query level is relational. */
export const LEVEL_DEPTH: Readonly<Record<Level, number>> = { study: 0, series: 1, instance: 2 };

/** How a value is matched. Range bounds are normalized (see normalizeDateLike) and inclusive. */
export type Matcher =
  | { kind: "universal" }
  | { kind: "single"; value: string }
  | { kind: "wildcard"; pattern: string }
  | { kind: "number"; value: number }
  | { kind: "range"; low?: string; high?: string }
  | { kind: "any"; of: Matcher[] }
  | { kind: "sequence"; items: Condition[] };

export interface Condition {
  /** Tag as 8 upper-case hex digits. */
  tag: string;
  /** How the client named it (keyword, tag or dotted path), for messages. */
  name: string;
  /** VR from the dictionary; undefined for private or unknown tags (the stored VR is used). */
  vr: string | undefined;
  /** Level the attribute belongs to. A condition below the query level matches when any descendant matches. */
  level: Level;
  matcher: Matcher;
}

export interface SearchQuery {
  level: Level;
  /** Search within a study (`/studies/{study}/series`, `/studies/{study}/instances`). */
  studyUid?: string;
  /** Search within a series (`/studies/{study}/series/{series}/instances`). */
  seriesUid?: string;
  /** Matching keys; universal ones only ask for the attribute to be returned. */
  conditions: Condition[];
  /** `includefield=all`. */
  includeAll: boolean;
  /** Top-level tags named by includefield (a dotted path includes its top-level sequence). */
  includeTags: string[];
  fuzzy: boolean;
  /** Most matches to return (already capped by the server maximum). */
  limit: number;
  offset: number;
  /** Only studies (series) the caller may see (gateway policy); undefined: everything. */
  access?: AccessFilter;
}

export interface SearchResult {
  /** Matches in order, each with the attributes to return (RetrieveURL and Specific Character Set are added by the caller). */
  matches: DicomJsonDataset[];
  /** Matches after this page (0 when the page is the last); undefined when more exist but counting them would cost too much. */
  remaining: number | undefined;
  /** True when more matches exist beyond this page (Warning: 299). */
  truncated: boolean;
}

// ---------------------------------------------------------------------------------------------
// Attribute levels (PS3.3 module → Information Entity; PS3.4 C.6 query levels)

const hexSet = (tags: string): ReadonlySet<string> => new Set(tags.split(/\s+/).filter(Boolean));

/**
 * Study level: Patient (C.7.1.1), Clinical Trial Subject (C.7.1.3), General Study (C.7.2.1),
 * Patient Study (C.7.2.2), Clinical Trial Study (C.7.2.3) and the study-level query keys of
 * PS3.4 Table C.3-1. Every element of group 0010 is a patient or patient-study attribute.
 */
const STUDY_TAGS = hexSet(`
  0020000D 00080020 00080030 00080050 00080051 00080090 00080096 0008009C 0008009D 00081030 00081032
  00081048 00081049 00081060 00081062 00081080 00081084 00081110 00081120 00200010 00201070 00321032
  00321033 00321034 00321060 00321064 00321066 00321067 00324000 00380010 00380014 00380060 00380062
  00380064 00380500 00401012 00080061 00080062 00201200 00201202 00201204 00201206 00201208
  00120010 00120020 00120021 00120030 00120031 00120040 00120042 00120050 00120051 00120062 00120063
  00120064 00120081 00120082 00120083 00120084
`);

/**
 * Series level: General Series (C.7.3.1), Clinical Trial Series (C.7.3.2), General Equipment
 * (C.7.5.1), Frame of Reference (C.7.4.1) and the series-level query keys.
 */
const SERIES_TAGS = hexSet(`
  0020000E 00080060 00200011 00200060 00080021 00080031 00081050 00081052 00181030 0008103E 0008103F
  00081070 00081072 00081111 00081250 00180015 00185100 00280108 00280109 00400275 00400253 00400244
  00400245 00400250 00400251 00400254 00400260 00400261 00400280 00102210 300A0700 00201209
  00080070 00080080 00080081 00081010 00081040 00081041 00081090 00181000 00181002 00181020 00181050
  00181200 00181201 00200052 00201040 00120060 00120071 00120072 00120073 00540081 00541000 00541001
`);

/** Attributes every level may carry (PS3.18 Tables 10.6.3-3/4/5): never taken as a lower level. */
const ANY_LEVEL_TAGS = hexSet(`00080005 00080056 00080201 00081190`);

/** Odd groups above 0008 are private (PS3.5 §7.8). */
export const isPrivateTagHex = (tag: string): boolean => {
  const group = Number.parseInt(tag.slice(0, 4), 16);
  return (group & 1) === 1 && group > 0x0008 && group !== 0xffff;
};

/**
 * Level of a top-level attribute; undefined for private tags and the attributes of every level
 * (Specific Character Set, Instance Availability, Timezone Offset From UTC, Retrieve URL):
 * those belong to whatever level is queried.
 */
export function tagLevel(tag: string): Level | undefined {
  if (ANY_LEVEL_TAGS.has(tag) || isPrivateTagHex(tag)) return undefined;
  if (STUDY_TAGS.has(tag) || tag.startsWith("0010")) return "study";
  if (SERIES_TAGS.has(tag)) return "series";
  return "instance";
}

/** (gggg,00xx): the private creator of a private data element (gggg,xxyy). */
export function privateCreatorOf(tag: string): string | undefined {
  if (!isPrivateTagHex(tag)) return undefined;
  const element = Number.parseInt(tag.slice(4), 16);
  if (element < 0x1000) return undefined;
  return `${tag.slice(0, 4)}00${tag.slice(4, 6)}`;
}

// ---------------------------------------------------------------------------------------------
// Return keys (PS3.18 Tables 10.6.3-3, 10.6.3-4, 10.6.3-5)

export interface ReturnKey {
  tag: string;
  vr: string;
  /** Returned with no value when the entity has none; otherwise left out when absent. */
  always: boolean;
}

const key = (tag: string, vr: string, always = true): ReturnKey => ({ tag, vr, always });

/** Study attributes read from the stored study (computed ones are added by the backend). */
export const STUDY_RETURN_KEYS: readonly ReturnKey[] = [
  key("00080020", "DA"),
  key("00080030", "TM"),
  key("00080050", "SH"),
  key("00080090", "PN"),
  key("00080201", "SH", false),
  key("00081030", "LO"),
  key("00100010", "PN"),
  key("00100020", "LO"),
  key("00100030", "DA"),
  key("00100040", "CS"),
  key("0020000D", "UI"),
  key("00200010", "SH"),
];

/** Computed study attributes: ModalitiesInStudy, NumberOfStudyRelatedSeries/Instances (always), SOPClassesInStudy (on request). */
export const STUDY_COMPUTED_TAGS = hexSet(`00080061 00080062 00201206 00201208`);

export const SERIES_RETURN_KEYS: readonly ReturnKey[] = [
  key("00080060", "CS"),
  key("00080201", "SH", false),
  key("0008103E", "LO"),
  key("0020000E", "UI"),
  key("00200011", "IS"),
  key("00400244", "DA", false),
  key("00400245", "TM", false),
  key("00400275", "SQ", false),
];

/** Computed series attribute: NumberOfSeriesRelatedInstances. */
export const SERIES_COMPUTED_TAGS = hexSet(`00201209`);

export const INSTANCE_RETURN_KEYS: readonly ReturnKey[] = [
  key("00080016", "UI"),
  key("00080018", "UI"),
  key("00200013", "IS"),
  key("00280010", "US", false),
  key("00280011", "US", false),
  key("00280100", "US", false),
  key("00280008", "IS", false),
];

/** Attributes a backend computes or the caller adds: never copied from stored data, never matched like others. */
export const SERVER_TAGS = hexSet(`00080005 00080056 00081190 00080061 00080062 00201206 00201208 00201209`);

// ---------------------------------------------------------------------------------------------
// Dates and times

const pad = (text: string, filler: string, length: number): string => text + filler.slice(text.length, length);

/** "HHMMSS.FFFFFF" filled from the left part written; high fills with the latest time the text allows. */
function normalizeTime(text: string, high: boolean): string {
  const t = text.replace(/:/g, "");
  const [main = "", frac = ""] = t.split(".");
  const whole = pad(main, high ? "235959" : "000000", 6);
  return `${whole}.${pad(frac, high ? "999999" : "000000", 6)}`;
}

/** "YYYYMMDDHHMMSS.FFFFFF" (offset dropped). */
function normalizeDateTime(text: string, high: boolean): string {
  const t = text.replace(/[+-]\d{4}$/, "");
  const [main = "", frac = ""] = t.split(".");
  const whole = pad(main, high ? "00001231235959" : "00000101000000", 14);
  return `${whole}.${pad(frac, high ? "999999" : "000000", 6)}`;
}

/** Comparable form of a DA, TM or DT value (a stored value or a range bound). */
export function normalizeDateLike(vr: string, text: string, high = false): string {
  if (vr === "DA") return text.replace(/\./g, "");
  if (vr === "TM") return normalizeTime(text, high);
  return normalizeDateTime(text, high);
}

export const isDateLikeVr = (vr: string | undefined): boolean => vr === "DA" || vr === "TM" || vr === "DT";

// ---------------------------------------------------------------------------------------------
// Matching (the rules every backend shares)

const regexCache = new Map<string, RegExp>();

/** Regular expression of a DICOM wildcard pattern (`*`, `?`), whole value, optionally case-insensitive. */
export function wildcardRegex(pattern: string, caseInsensitive: boolean, prefixOnly = false): RegExp {
  const cacheKey = `${caseInsensitive ? "i" : "s"}${prefixOnly ? "p" : "w"}${pattern}`;
  let re = regexCache.get(cacheKey);
  if (!re) {
    const body = Array.from(pattern, (c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&"))).join("");
    re = new RegExp(`^${body}${prefixOnly ? "" : "$"}`, caseInsensitive ? "isu" : "su");
    if (regexCache.size > 1000) regexCache.clear();
    regexCache.set(cacheKey, re);
  }
  return re;
}

/** Strips trailing empty name components ("Doe^John^^" → "Doe^John"). */
const trimComponents = (group: string): string => group.replace(/\^+$/, "").trim();

/** A PN value as its three component groups. Stored PN text is "Alphabetic=Ideographic=Phonetic". */
export function personNameGroups(value: JsonValue): string[] {
  if (typeof value === "string") return value.split("=");
  if (value !== null && typeof value === "object") {
    const pn = value as PersonNameJson;
    return [pn.Alphabetic ?? "", pn.Ideographic ?? "", pn.Phonetic ?? ""];
  }
  return [];
}

function matchNameGroup(stored: string, matcher: Matcher): boolean {
  const text = trimComponents(stored);
  switch (matcher.kind) {
    case "single":
      return text.toUpperCase() === trimComponents(matcher.value).toUpperCase();
    case "wildcard":
      return wildcardRegex(matcher.pattern, true).test(text);
    default:
      return false;
  }
}

const WORD_SPLIT = /[\^\s,=]+/;

function fuzzyNameMatch(groups: string[], query: string): boolean {
  const words = foldText(query).split(WORD_SPLIT).filter(Boolean);
  if (words.length === 0) return true;
  const nameWords = groups.flatMap((g) => foldText(g).split(WORD_SPLIT)).filter(Boolean);
  return words.every((w) => {
    if (w.includes("*") || w.includes("?")) {
      const re = wildcardRegex(w, false, true);
      return nameWords.some((n) => re.test(n));
    }
    return nameWords.some((n) => n.startsWith(w));
  });
}

function matchPersonName(value: JsonValue, matcher: Matcher, fuzzy: boolean): boolean {
  const groups = personNameGroups(value);
  if (groups.every((g) => g === "")) return false;
  if (matcher.kind === "any") return matcher.of.some((m) => matchPersonName(value, m, fuzzy));
  if (matcher.kind !== "single" && matcher.kind !== "wildcard") return false;
  const query = matcher.kind === "single" ? matcher.value : matcher.pattern;
  if (fuzzy) return fuzzyNameMatch(groups, query);
  if (!query.includes("=")) return groups.some((g) => g !== "" && matchNameGroup(g, matcher));
  const queryGroups = query.split("=");
  return queryGroups.every((q, i) => {
    if (q === "" || q === "*") return true;
    const sub: Matcher = matcher.kind === "single" ? { kind: "single", value: q } : { kind: "wildcard", pattern: q };
    return matchNameGroup(groups[i] ?? "", sub);
  });
}

/** One stored value against a matcher (not PN-specific unless vr is PN). */
export function matchValue(value: JsonValue, vr: string, matcher: Matcher, fuzzy: boolean): boolean {
  if (value === null || value === undefined) return false;
  if (vr === "PN") return matchPersonName(value, matcher, fuzzy);
  switch (matcher.kind) {
    case "universal":
      return true;
    case "any":
      return matcher.of.some((m) => matchValue(value, vr, m, fuzzy));
    case "sequence":
      return typeof value === "object" && matchDataset(value as DicomJsonDataset, matcher.items, fuzzy);
    case "number": {
      const n = typeof value === "number" ? value : typeof value === "string" ? Number(value.trim()) : NaN;
      return n === matcher.value;
    }
    case "range": {
      if (typeof value !== "string" || value.trim() === "") return false;
      const v = normalizeDateLike(vr, value.trim());
      return (matcher.low === undefined || v >= matcher.low) && (matcher.high === undefined || v <= matcher.high);
    }
    case "single":
      return (typeof value === "string" || typeof value === "number") && String(value).trim() === matcher.value;
    case "wildcard":
      return (typeof value === "string" || typeof value === "number") && wildcardRegex(matcher.pattern, false).test(String(value).trim());
  }
}

/** One attribute (absent: undefined) against a condition. */
export function matchAttribute(attribute: DicomJsonAttribute | undefined, condition: Condition, fuzzy: boolean): boolean {
  const matcher = condition.matcher;
  if (matcher.kind === "universal") return true;
  const values = attribute?.Value;
  if (!attribute || !values || values.length === 0) return false;
  const vr = condition.vr ?? attribute.vr;
  if (matcher.kind === "sequence") {
    return values.some((item) => item !== null && typeof item === "object" && matchDataset(item as DicomJsonDataset, matcher.items, fuzzy));
  }
  return values.some((v) => matchValue(v, vr, matcher, fuzzy));
}

/** True when the dataset satisfies every condition. */
export function matchDataset(dataset: DicomJsonDataset, conditions: readonly Condition[], fuzzy: boolean): boolean {
  return conditions.every((c) => matchAttribute(dataset[c.tag], c, fuzzy));
}

// ---------------------------------------------------------------------------------------------
// Results

/** A copy without BulkDataURI values (their URIs hold the storage placeholder) and without file meta. */
export function withoutBulkData(dataset: DicomJsonDataset): DicomJsonDataset {
  const out: DicomJsonDataset = {};
  for (const [tag, attribute] of Object.entries(dataset)) {
    if (attribute.BulkDataURI !== undefined || tag.startsWith("0002")) continue;
    if (attribute.vr === "SQ" && attribute.Value) {
      out[tag] = {
        vr: "SQ",
        Value: attribute.Value.map((item) =>
          item !== null && typeof item === "object" ? withoutBulkData(item as DicomJsonDataset) : item,
        ),
      };
    } else out[tag] = attribute;
  }
  return out;
}

/** Keys in ascending tag order (PS3.18 F.2.1.1). */
export function sortDataset(dataset: DicomJsonDataset): DicomJsonDataset {
  const out: DicomJsonDataset = {};
  for (const tag of Object.keys(dataset).sort()) out[tag] = dataset[tag] as DicomJsonAttribute;
  return out;
}

/**
 * QIDO-RS search (PS3.18 §10.6): query parameters → SearchQuery, and the search result → the
 * response body. No HTTP framework types here: src/http/qido-routes.ts adapts these.
 *
 * Query parameters (PS3.18 §8.3.4):
 * - `{attributeID}={value}`: attributeID is a keyword (`PatientName`), a tag (`00100010`) or a
 *   dotted path into sequences (`RequestAttributesSequence.ScheduledProcedureStepID`,
 *   `00400275.00400009`); several paths into one sequence match one item together. Any attribute
 *   of the dictionary (or a private tag) may be matched; one below the searched level (e.g.
 *   `BodyPartExamined` on /studies) matches when any series/instance of the result matches.
 *   An attribute may appear once; matching rules are in src/store/query.ts.
 * - `includefield`: repeated and/or comma-separated keywords, tags, dotted paths (the top-level
 *   sequence is returned) or `all`.
 * - `fuzzymatching`, `emptyvaluematching`, `multiplevaluematching`: `true` or `false`.
 *   emptyvaluematching=true is not supported: answered with a Warning, literal matching is done.
 * - `limit`, `offset`: unsigned integers. limit defaults to, and is capped at, the server maximum.
 * - `accept`, `charset` (PS3.18 §8.3.3): read by the route for content negotiation.
 * Values are percent-decoded per RFC 3986 (see parseQueryString): "+" is a plus, not a space.
 * Anything else is a 400 naming the parameter, with a suggestion when the case was wrong.
 *
 * Response choices:
 * - Specific Character Set (0008,0005) is never copied from the stored instance (its values were
 *   decoded to Unicode at ingest): a result gets "ISO_IR 192" when one of its text values is not
 *   ASCII, and no Specific Character Set otherwise.
 * - Retrieve URL (0008,1190) at every level, from the public base URL of the request.
 * - Instance Availability (0008,0056) is "ONLINE" at every level.
 */
import dcmjs from "dcmjs";
import {
  type DicomJsonAttribute,
  type DicomJsonDataset,
  datasetsToXmlDocuments,
  lookupTag,
  tagForKeyword,
  uidProblem,
} from "../dicom/index.js";
import {
  type Condition,
  isDateLikeVr,
  isPrivateTagHex,
  type Level,
  type Matcher,
  normalizeDateLike,
  type SearchQuery,
  type SearchResult,
  sortDataset,
  tagLevel,
} from "../store/query.js";

/** A request the client can correct (400) or a media type it cannot get (406). */
export class QidoError extends Error {
  constructor(
    readonly status: 400 | 406,
    readonly error: string,
    readonly detail: string,
  ) {
    super(`${error}: ${detail}`);
  }
}

const bad = (error: string, detail: string): QidoError => new QidoError(400, error, detail);

export const DEFAULT_MAX_RESULTS = 1000;

export interface QidoScope {
  studyUid?: string;
  seriesUid?: string;
}

export interface ParsedQido {
  query: SearchQuery;
  /** Warning texts for the response (without the "299 host:" prefix). */
  warnings: string[];
}

const LEVELS: readonly Level[] = ["study", "series", "instance"];

/** Query parameters that are not attributes. */
const RESERVED = new Set([
  "includefield",
  "fuzzymatching",
  "emptyvaluematching",
  "multiplevaluematching",
  "limit",
  "offset",
  "accept",
  "charset",
]);

const MAX_VALUE_LENGTH = 4096;
const MAX_LIST_VALUES = 1000;
const MAX_PATH_DEPTH = 8;

// ---------------------------------------------------------------------------------------------
// Attribute identifiers

interface PathElement {
  tag: string;
  vr: string | undefined;
  /** Keyword when the dictionary knows the tag, else the tag. */
  keyword: string;
}

let lowerCaseKeywords: Map<string, string> | undefined;

/** "patientname" → "PatientName": the suggestion for a keyword with the wrong case. */
function keywordSuggestion(text: string): string | undefined {
  if (!lowerCaseKeywords) {
    lowerCaseKeywords = new Map();
    const names = (dcmjs as unknown as { data: { DicomMetaDictionary: { nameMap: Record<string, unknown> } } }).data.DicomMetaDictionary
      .nameMap;
    for (const name of Object.keys(names)) {
      const keyword = name.startsWith("RETIRED_") ? name.slice(8) : name;
      lowerCaseKeywords.set(keyword.toLowerCase(), keyword);
    }
  }
  const lower = text.toLowerCase();
  if (RESERVED.has(lower)) return lower;
  return lowerCaseKeywords.get(lower);
}

function parseElement(text: string, whole: string): PathElement {
  if (/^[0-9A-Fa-f]{8}$/.test(text)) {
    const tag = text.toUpperCase();
    const entry = lookupTag(Number.parseInt(tag, 16) >>> 0);
    const group = Number.parseInt(tag.slice(0, 4), 16);
    if (!entry && !isPrivateTagHex(tag)) {
      throw bad("unknown attribute", `"${whole}": tag ${tag} is not in the DICOM data dictionary and is not a private tag`);
    }
    if (group === 0x0002 || group === 0xfffe)
      throw bad("unknown attribute", `"${whole}": ${tag} is not a dataset attribute and cannot be searched`);
    if (tag.endsWith("0000"))
      throw bad("unknown attribute", `"${whole}": ${tag} is a group length, which is not kept and cannot be searched`);
    return { tag, vr: entry?.vr, keyword: entry?.keyword ?? tag };
  }
  const tagNumber = /^[A-Za-z][A-Za-z0-9]*$/.test(text) ? tagForKeyword(text) : undefined;
  if (tagNumber === undefined) {
    const suggestion = keywordSuggestion(text);
    const hint = suggestion && suggestion !== text ? `; did you mean "${suggestion}"?` : "";
    const where = whole === text ? `"${text}"` : `"${text}" in "${whole}"`;
    throw bad(
      "unknown query parameter",
      `${where} is neither a QIDO-RS query parameter (${[...RESERVED].join(", ")}) nor a DICOM keyword or 8-digit hex tag${hint}`,
    );
  }
  const tag = tagNumber.toString(16).toUpperCase().padStart(8, "0");
  return { tag, vr: lookupTag(tagNumber)?.vr, keyword: text };
}

/** A keyword, tag or dotted path; every element but the last must be a sequence. */
export function parseAttributePath(text: string): PathElement[] {
  const parts = text.split(".");
  if (parts.length > MAX_PATH_DEPTH) throw bad("malformed attribute path", `"${text}" is nested deeper than ${MAX_PATH_DEPTH} levels`);
  if (parts.some((p) => p === "")) throw bad("malformed attribute path", `"${text}" has an empty element; write Sequence.Attribute`);
  const path = parts.map((p) => parseElement(p, text));
  path.slice(0, -1).forEach((e) => {
    if (e.vr !== undefined && e.vr !== "SQ")
      throw bad("malformed attribute path", `"${text}": ${e.keyword} is not a sequence, so nothing can be nested in it`);
  });
  return path;
}

// ---------------------------------------------------------------------------------------------
// Values

const NUMERIC_VRS = new Set(["IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "US or SS"]);
const BINARY_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "UN", "AT", "OB or OW", "US or OW"]);
/** Text VRs whose values may hold a backslash (single-valued): never split. */
const TEXT_VRS = new Set(["LT", "ST", "UT", "UR"]);
const COMPUTED_ONLY = new Set(["00201206", "00201208", "00201209", "00081190", "00080005"]);

const isUniversal = (value: string): boolean => value === "" || value === '""' || value === "*";

const DA_RE = /^(\d{4})(\d{2})(\d{2})$/;
const TM_RE = /^([01]\d|2[0-3])(?:([0-5]\d)(?:([0-5]\d|60)(?:\.(\d{1,6}))?)?)?$/;
const DT_RE =
  /^(\d{4})(?:(\d{2})(?:(\d{2})(?:([01]\d|2[0-3])(?:([0-5]\d)(?:([0-5]\d|60)(?:\.\d{1,6})?)?)?)?)?)?(?:[+-](?:[01]\d|2[0-3])[0-5]\d)?$/;

function validDate(text: string): boolean {
  const m = DA_RE.exec(text);
  if (!m) return false;
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (month < 1 || month > 12 || day < 1) return false;
  const days = new Date(Date.UTC(Number(m[1]), month, 0)).getUTCDate();
  return day <= days;
}

function validDateLike(vr: string, text: string): boolean {
  if (vr === "DA") return validDate(text);
  if (vr === "TM") return TM_RE.test(text);
  const m = DT_RE.exec(text);
  if (!m) return false;
  if (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 12)) return false;
  if (m[3] !== undefined && !validDate(`${m[1]}${m[2]}${m[3]}`)) return false;
  return true;
}

const FORMAT: Record<string, string> = {
  DA: "YYYYMMDD",
  TM: "HH, HHMM, HHMMSS or HHMMSS.FFFFFF",
  DT: "YYYY[MM[DD[HH[MM[SS[.FFFFFF]]]]]][&ZZXX]",
};

function dateLikeMatcher(vr: string, value: string, name: string): Matcher {
  const problem = (what: string): QidoError =>
    bad(
      "malformed value",
      `${name}=${value}: ${what}; a ${vr} matching value is a ${vr === "DA" ? "date" : vr === "TM" ? "time" : "date-time"} (${FORMAT[vr]}) or a range low-high, -high or low-`,
    );
  let low: string | undefined;
  let high: string | undefined;
  if (validDateLike(vr, value)) {
    low = value;
    high = value;
  } else {
    // The first "-" that splits the text into two valid (or empty) ends: a DT offset also uses "-".
    let found = false;
    for (let k = value.indexOf("-"); k >= 0; k = value.indexOf("-", k + 1)) {
      const left = value.slice(0, k);
      const right = value.slice(k + 1);
      if (left === "" && right === "") break;
      if ((left === "" || validDateLike(vr, left)) && (right === "" || validDateLike(vr, right))) {
        low = left || undefined;
        high = right || undefined;
        found = true;
        break;
      }
    }
    if (!found) throw problem(value.includes("-") ? "not a valid range" : `"${value}" is not a valid ${vr} value`);
  }
  const matcher: Matcher = {
    kind: "range",
    low: low === undefined ? undefined : normalizeDateLike(vr, low, false),
    high: high === undefined ? undefined : normalizeDateLike(vr, high, true),
  };
  if (matcher.low !== undefined && matcher.high !== undefined && matcher.low > matcher.high)
    throw problem("the start of the range is after its end");
  return matcher;
}

interface ValueOptions {
  multiple: boolean;
}

/** The matcher for one attribute value as the client wrote it (already URL-decoded). */
export function parseMatcher(tag: string, vr: string | undefined, value: string, name: string, options: ValueOptions): Matcher {
  if (value.length > MAX_VALUE_LENGTH) throw bad("malformed value", `${name}: the value is longer than ${MAX_VALUE_LENGTH} characters`);
  if (isUniversal(value)) return { kind: "universal" };
  if (COMPUTED_ONLY.has(tag)) {
    throw bad("not a matching key", `${name} is made by the server and can only be returned (use includefield=${name}), not matched`);
  }
  if (vr === "SQ") throw bad("not a matching key", `${name} is a sequence: match an attribute of its items with ${name}.Keyword=value`);
  if (vr !== undefined && BINARY_VRS.has(vr))
    throw bad("not a matching key", `${name} has binary values (VR ${vr}), which cannot be matched`);

  const listValues = (separators: RegExp): string[] => {
    const parts = value.split(separators).map((p) => p.trim());
    if (parts.length > MAX_LIST_VALUES) throw bad("malformed value", `${name}: more than ${MAX_LIST_VALUES} values`);
    return parts;
  };
  const anyOf = (matchers: Matcher[]): Matcher => (matchers.length === 1 ? (matchers[0] as Matcher) : { kind: "any", of: matchers });

  if (vr === "UI") {
    const uids = listValues(/[,\\]/);
    return anyOf(
      uids.map((uid) => {
        if (uid.includes("*") || uid.includes("?"))
          throw bad(
            "malformed value",
            `${name}=${value}: UIDs are matched exactly or as a list (comma or backslash separated); wildcards are not allowed`,
          );
        const problem = uidProblem(uid);
        if (problem) throw bad("malformed UID", `${name}: "${uid}" is not a valid UID: it ${problem}`);
        return { kind: "single", value: uid } as Matcher;
      }),
    );
  }

  // A backslash separates values; a client asks for any-of matching with multiplevaluematching=true
  // (ModalitiesInStudy always, also with commas: Modality codes hold neither).
  let values: string[];
  if (tag === "00080061") values = listValues(/[,\\]/);
  else if (vr !== undefined && TEXT_VRS.has(vr)) values = [value];
  else if (value.includes("\\")) {
    if (!options.multiple) {
      throw bad(
        "malformed value",
        `${name}=${value}: a backslash separates multiple values; add multiplevaluematching=true to match any of them`,
      );
    }
    values = listValues(/\\/);
  } else values = [value];
  if (values.some((v) => v === "")) throw bad("malformed value", `${name}=${value}: a value of the list is empty`);

  return anyOf(
    values.map((v): Matcher => {
      if (vr !== undefined && isDateLikeVr(vr)) {
        if (v.includes("*") || v.includes("?"))
          throw bad("malformed value", `${name}=${v}: wildcards are not allowed in ${vr} values; use a range low-high`);
        return dateLikeMatcher(vr, v, name);
      }
      if (vr !== undefined && NUMERIC_VRS.has(vr)) {
        const n = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v) ? Number(v) : NaN;
        if (!Number.isFinite(n)) throw bad("malformed value", `${name}=${v}: a ${vr} value must be a number`);
        return { kind: "number", value: n };
      }
      if (v.includes("*") || v.includes("?")) return { kind: "wildcard", pattern: v };
      return { kind: "single", value: v };
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Parameters → SearchQuery

/**
 * The name/value pairs of a URL query string, percent-decoded as RFC 3986 says: "+" stays a plus
 * (it is not a space outside HTML forms), so `accept=application/dicom+json` and a DT offset
 * `+0100` arrive intact. Malformed percent-encoding is a 400.
 */
export function parseQueryString(query: string): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const part of query.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const rawName = eq < 0 ? part : part.slice(0, eq);
    const rawValue = eq < 0 ? "" : part.slice(eq + 1);
    try {
      pairs.push([decodeURIComponent(rawName), decodeURIComponent(rawValue)]);
    } catch {
      throw bad("malformed query", `"${part}" is not valid percent-encoding (RFC 3986 §2.1); write a % sign as %25`);
    }
  }
  return pairs;
}

const flag = (name: string, value: string): boolean => {
  if (value === "true") return true;
  if (value === "false") return false;
  throw bad("malformed value", `${name}=${value}: the value must be true or false`);
};

function unsigned(name: string, value: string): number {
  if (!/^\d{1,15}$/.test(value)) throw bad("malformed value", `${name}=${value}: the value must be an unsigned integer`);
  return Number(value);
}

interface Node {
  element: PathElement;
  name: string;
  /** Value given for this exact path; undefined when only nested paths were given. */
  value?: string;
  children: Map<string, Node>;
}

function toCondition(node: Node, level: Level, options: ValueOptions): Condition {
  const { tag, vr } = node.element;
  let matcher: Matcher;
  if (node.children.size > 0) {
    if (node.value !== undefined && !isUniversal(node.value)) {
      throw bad(
        "not a matching key",
        `${node.name} is a sequence: match attributes of its items (${node.name}.Keyword=value), not the sequence itself`,
      );
    }
    const items = [...node.children.values()].map((child) => toCondition(child, level, options));
    matcher = items.every((i) => i.matcher.kind === "universal") ? { kind: "universal" } : { kind: "sequence", items };
  } else {
    matcher = parseMatcher(tag, vr, node.value ?? "", node.name, options);
  }
  return { tag, name: node.name, vr, level, matcher };
}

export interface QidoOptions {
  /** Most results a response holds (limit is capped to it). Default 1000. */
  maxResults?: number;
  /**
   * A parameter that is neither a QIDO-RS parameter nor an attribute (a misspelt keyword, an
   * unknown tag): "reject" answers 400 naming it (the default: a typo must not silently widen a
   * search); "ignore" drops it with a Warning, as PS3.18 §8.3 describes for unsupported
   * parameters ("The origin server shall ignore any unsupported Query Parameters ... and may
   * return a response containing appropriate warning").
   */
  unknownParameters?: "reject" | "ignore";
}

/** Errors of an attribute parameter's name (as opposed to its value). */
const NAME_ERRORS = new Set(["unknown query parameter", "unknown attribute"]);

/**
 * Parses the query parameters of a search. `params` are the decoded pairs in request order
 * (a repeated parameter appears several times). Throws QidoError (400) on anything invalid.
 */
export function parseQidoQuery(level: string, scope: QidoScope, params: Iterable<[string, string]>, options: QidoOptions = {}): ParsedQido {
  const maxResults = options.maxResults ?? DEFAULT_MAX_RESULTS;
  if (!LEVELS.includes(level as Level)) throw bad("unknown level", `"${level}" is not a search level; use studies, series or instances`);
  const searchLevel = level as Level;
  for (const [name, uid] of [
    ["study", scope.studyUid],
    ["series", scope.seriesUid],
  ] as const) {
    if (uid === undefined) continue;
    const problem = uidProblem(uid);
    if (problem) throw bad("malformed UID", `the ${name} UID in the path, "${uid}", is not a valid UID: it ${problem}`);
  }

  const warnings: string[] = [];
  const once = new Map<string, string>();
  const includes: string[] = [];
  const attributes: Array<[string, string]> = [];
  for (const [rawName, value] of params) {
    const name = rawName.trim();
    if (name === "includefield") {
      includes.push(...value.split(",").map((v) => v.trim()));
      continue;
    }
    // Content negotiation (PS3.18 §8.3.3): the route reads these; they may be repeated.
    if (name === "accept" || name === "charset") continue;
    if (RESERVED.has(name)) {
      if (once.has(name)) throw bad("repeated parameter", `${name} is given more than once`);
      once.set(name, value.trim());
      continue;
    }
    if (name === "") throw bad("malformed query", "a query parameter has no name");
    attributes.push([name, value]);
  }

  const fuzzy = once.has("fuzzymatching") ? flag("fuzzymatching", once.get("fuzzymatching") as string) : false;
  const multiple = once.has("multiplevaluematching") ? flag("multiplevaluematching", once.get("multiplevaluematching") as string) : false;
  if (once.has("emptyvaluematching") && flag("emptyvaluematching", once.get("emptyvaluematching") as string)) {
    warnings.push("The emptyvaluematching parameter is not supported. Empty Value Matching has not been performed.");
  }
  const offset = once.has("offset") ? unsigned("offset", once.get("offset") as string) : 0;
  const requestedLimit = once.has("limit") ? unsigned("limit", once.get("limit") as string) : undefined;
  const limit = Math.min(requestedLimit ?? maxResults, maxResults);

  // Attribute parameters, grouped into trees so that paths into one sequence match one item.
  const roots = new Map<string, Node>();
  const seen = new Set<string>();
  for (const [name, rawValue] of attributes) {
    let path: PathElement[];
    try {
      path = parseAttributePath(name);
    } catch (err) {
      if (options.unknownParameters !== "ignore" || !(err instanceof QidoError) || !NAME_ERRORS.has(err.error)) throw err;
      warnings.push(`The query parameter ${name} is not supported and was ignored (${err.detail}).`);
      continue;
    }
    const canonical = path.map((e) => e.tag).join(".");
    if (seen.has(canonical))
      throw bad(
        "repeated parameter",
        `${name} is given more than once; to match any of several values use a list (UIDs: comma-separated; others: backslash-separated with multiplevaluematching=true)`,
      );
    seen.add(canonical);
    let siblings = roots;
    let node: Node | undefined;
    path.forEach((element, i) => {
      const nodeName = path
        .slice(0, i + 1)
        .map((e) => e.keyword)
        .join(".");
      node = siblings.get(element.tag);
      if (!node) {
        node = { element, name: nodeName, children: new Map() };
        siblings.set(element.tag, node);
      }
      siblings = node.children;
    });
    (node as Node).value = rawValue.trim();
  }
  const valueOptions = { multiple };
  const conditions = [...roots.values()].map((node) => toCondition(node, tagLevel(node.element.tag) ?? searchLevel, valueOptions));

  let includeAll = false;
  const includeTags = new Set<string>();
  for (const item of includes) {
    if (item === "") continue;
    if (item === "all") {
      includeAll = true;
      continue;
    }
    const path = parseAttributePath(item);
    includeTags.add((path[0] as PathElement).tag);
  }

  const query: SearchQuery = {
    level: searchLevel,
    conditions,
    includeAll,
    includeTags: [...includeTags],
    fuzzy,
    limit,
    offset,
  };
  if (scope.studyUid !== undefined) query.studyUid = scope.studyUid;
  if (scope.seriesUid !== undefined) query.seriesUid = scope.seriesUid;
  return { query, warnings };
}

// ---------------------------------------------------------------------------------------------
// Results → response

function hasNonAscii(value: unknown): boolean {
  if (typeof value === "string") return /[^\x00-\x7F]/.test(value);
  if (Array.isArray(value)) return value.some(hasNonAscii);
  if (value !== null && typeof value === "object") return Object.values(value).some(hasNonAscii);
  return false;
}

/** Adds Retrieve URL and, when a value needs it, Specific Character Set "ISO_IR 192". */
export function finishMatch(match: DicomJsonDataset, level: Level, base: string): DicomJsonDataset {
  const uid = (tag: string): string => encodeURIComponent(String(match[tag]?.Value?.[0] ?? ""));
  let url = `${base}/studies/${uid("0020000D")}`;
  if (level !== "study") url += `/series/${uid("0020000E")}`;
  if (level === "instance") url += `/instances/${uid("00080018")}`;
  const out: DicomJsonDataset = { ...match, "00081190": { vr: "UR", Value: [url] } };
  delete out["00080005"];
  const text = Object.values(out).filter((a: DicomJsonAttribute) => a.vr !== "UR" && a.Value !== undefined);
  if (hasNonAscii(text.map((a) => a.Value))) out["00080005"] = { vr: "CS", Value: ["ISO_IR 192"] };
  return sortDataset(out);
}

export function finishResult(result: SearchResult, level: Level, base: string): DicomJsonDataset[] {
  return result.matches.map((m) => finishMatch(m, level, base));
}

/**
 * The Warning header value when results were cut: PS3.18 §8.3.4.4.1 (current editions) with the
 * number left; when it was not counted (see SEARCH_TUNING in sqlite-search.ts), the wording of earlier editions,
 * which has no number.
 */
export function remainingWarning(agent: string, remaining: number | undefined): string {
  if (remaining === undefined) {
    return `299 ${agent} "The number of results exceeded the maximum supported by the server. Additional results can be requested."`;
  }
  return `299 ${agent} "There are ${remaining} additional results that can be requested"`;
}

export function warningHeader(agent: string, text: string): string {
  return `299 ${agent} "${text.replace(/["\\]/g, "\\$&")}"`;
}

/** multipart/related; type="application/dicom+xml": one Native DICOM Model document per match. */
export function xmlMultipart(matches: readonly DicomJsonDataset[], boundary: string): Buffer {
  const parts = datasetsToXmlDocuments(matches).map((doc) => `--${boundary}\r\nContent-Type: application/dicom+xml\r\n\r\n${doc}\r\n`);
  return Buffer.from(`${parts.join("")}--${boundary}--\r\n`, "utf8");
}

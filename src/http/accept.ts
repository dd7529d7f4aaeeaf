/**
 * Media types and content negotiation (RFC 9110 §8.3.1, §12.5.1).
 *
 * `parseMediaType` reads one Content-Type value; `parseAccept` reads an Accept header into media
 * ranges; `negotiate` picks the offer the client prefers. The parsers are lenient where real
 * DICOMweb clients are sloppy: OHIF sends `multipart/related; type=application/octet-stream` with
 * the `/` unquoted, which is not an RFC token, so an unquoted value runs to the next `;` (or `,` in
 * an Accept list) instead of stopping at the first non-token character.
 */

/** A parameter map with lower-cased names. Values keep their case; quotes and escapes are removed. */
export type MediaParams = Record<string, string>;

export interface MediaType {
  /** Lower-cased `type/subtype`, e.g. `multipart/related`. */
  readonly mediaType: string;
  readonly type: string;
  readonly subtype: string;
  /** Parameters in order of appearance; the first of a repeated name wins. */
  readonly params: MediaParams;
  /** Parameter names that appeared more than once (lower-cased). */
  readonly duplicateParams: readonly string[];
}

export interface MediaRange extends MediaType {
  /** Weight from the `q` parameter, 0..1 (1 when absent). */
  readonly q: number;
  /** Parameters after `q` (RFC 9110 accept-ext): not used for matching. */
  readonly extensions: MediaParams;
  /** Position of this range in the Accept header (0-based, malformed elements not counted). */
  readonly index: number;
}

/** What the server can produce. Parameter names are compared case-insensitively. */
export interface Offer {
  readonly mediaType: string;
  readonly params?: Readonly<Record<string, string>>;
}

export interface Negotiated<O extends Offer> {
  readonly offer: O;
  /** Position of the offer in the offers list. */
  readonly offerIndex: number;
  /** The Accept range that decided the weight (the most specific one matching the offer). */
  readonly range: MediaRange;
  readonly q: number;
}

/** An Accept header value (undefined when absent) or the ranges `parseAccept` made of it. */
export type AcceptInput = string | undefined | readonly MediaRange[];

/** RFC 9110 tchar. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const isOws = (c: string | undefined): boolean => c === " " || c === "\t";

interface Cursor {
  readonly text: string;
  pos: number;
}

function skipOws(cur: Cursor): void {
  while (isOws(cur.text[cur.pos])) cur.pos++;
}

/** Reads until one of `stops` (not consumed) and returns the trimmed text. */
function readUntil(cur: Cursor, stops: string): string {
  const start = cur.pos;
  while (cur.pos < cur.text.length && !stops.includes(cur.text[cur.pos] as string)) cur.pos++;
  return cur.text.slice(start, cur.pos).trim();
}

/** Reads a quoted-string starting at the opening quote; undefined when it is not terminated. */
function readQuoted(cur: Cursor): string | undefined {
  let out = "";
  cur.pos++; // opening quote
  while (cur.pos < cur.text.length) {
    const c = cur.text[cur.pos++] as string;
    if (c === '"') return out;
    if (c === "\\" && cur.pos < cur.text.length) out += cur.text[cur.pos++];
    else out += c;
  }
  return undefined;
}

interface RawElement {
  type: string;
  subtype: string;
  params: Array<[string, string]>;
}

/**
 * Parses `type/subtype *( OWS ";" OWS name=value )` at the cursor. In list mode a `,` ends the
 * element. Returns an error string for malformed input; the cursor then sits at the end of the
 * element (the next `,` in list mode) so a list parser can carry on.
 */
function parseElement(cur: Cursor, list: boolean): RawElement | string {
  const stops = list ? ";," : ";";
  skipOws(cur);
  const full = readUntil(cur, stops);
  const slash = full.indexOf("/");
  const type = slash < 0 ? full : full.slice(0, slash).trim();
  const subtype = slash < 0 ? "" : full.slice(slash + 1).trim();
  const fail = (reason: string): string => {
    if (list) readUntilListEnd(cur);
    return reason;
  };
  if (!TOKEN.test(type) || !TOKEN.test(subtype)) return fail(`malformed media type "${full}"`);
  const params: Array<[string, string]> = [];
  while (cur.pos < cur.text.length && cur.text[cur.pos] === ";") {
    cur.pos++;
    skipOws(cur);
    const name = readUntil(cur, list ? "=;," : "=;");
    if (cur.text[cur.pos] !== "=") {
      if (name === "") continue; // tolerate "a/b;" and "a/b;;c=d"
      return fail(`parameter "${name}" has no value`);
    }
    cur.pos++; // "="
    if (!TOKEN.test(name)) return fail(`malformed parameter name "${name}"`);
    skipOws(cur);
    let value: string;
    if (cur.text[cur.pos] === '"') {
      const quoted = readQuoted(cur);
      if (quoted === undefined) return fail(`unterminated quoted value for parameter "${name}"`);
      value = quoted;
      skipOws(cur);
      if (cur.pos < cur.text.length && !stops.includes(cur.text[cur.pos] as string)) {
        return fail(`unexpected text after the quoted value of parameter "${name}"`);
      }
    } else {
      value = readUntil(cur, stops);
    }
    params.push([name.toLowerCase(), value]);
  }
  return { type: type.toLowerCase(), subtype: subtype.toLowerCase(), params };
}

/** Skips to the next top-level `,` (quoted strings may contain commas). */
function readUntilListEnd(cur: Cursor): void {
  while (cur.pos < cur.text.length && cur.text[cur.pos] !== ",") {
    if (cur.text[cur.pos] === '"') {
      if (readQuoted(cur) === undefined) return;
    } else cur.pos++;
  }
}

function toParams(pairs: ReadonlyArray<[string, string]>): { params: MediaParams; duplicateParams: string[] } {
  const params: MediaParams = Object.create(null) as MediaParams;
  const duplicateParams: string[] = [];
  for (const [name, value] of pairs) {
    if (name in params) {
      if (!duplicateParams.includes(name)) duplicateParams.push(name);
    } else params[name] = value;
  }
  return { params, duplicateParams };
}

/** Thrown by `parseMediaType` for a value that is not `type/subtype; params`. */
export class MediaTypeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MediaTypeError";
  }
}

/**
 * Parses one media type with parameters, e.g. a Content-Type header value. Parameter names are
 * lower-cased; values are unquoted. Throws MediaTypeError on malformed input.
 */
export function parseMediaType(value: string): MediaType {
  const cur: Cursor = { text: value, pos: 0 };
  const el = parseElement(cur, false);
  if (typeof el === "string") throw new MediaTypeError(el);
  return { mediaType: `${el.type}/${el.subtype}`, type: el.type, subtype: el.subtype, ...toParams(el.params) };
}

const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/**
 * Parses an Accept header (RFC 9110 §12.5.1) into media ranges, in header order. An absent or
 * blank header accepts anything (one `*` + `/*` range). Malformed elements (bad media range, bad q value) are dropped, so a
 * header made only of garbage yields an empty list: nothing is acceptable.
 */
export function parseAccept(header: string | undefined): MediaRange[] {
  const text = header ?? "";
  if (text.trim() === "") {
    return [{ mediaType: "*/*", type: "*", subtype: "*", params: {}, duplicateParams: [], q: 1, extensions: {}, index: 0 }];
  }
  const ranges: MediaRange[] = [];
  const cur: Cursor = { text, pos: 0 };
  while (cur.pos < text.length) {
    skipOws(cur);
    if (text[cur.pos] === ",") {
      cur.pos++;
      continue;
    }
    const el = parseElement(cur, true);
    if (cur.text[cur.pos] === ",") cur.pos++;
    if (typeof el === "string") continue;
    if (el.type === "*" && el.subtype !== "*") continue; // "*/json" is not a media range
    const qAt = el.params.findIndex(([name]) => name === "q");
    let q = 1;
    if (qAt >= 0) {
      const qText = (el.params[qAt] as [string, string])[1];
      if (!QVALUE.test(qText)) continue;
      q = Number(qText);
    }
    const media = toParams(qAt >= 0 ? el.params.slice(0, qAt) : el.params);
    const extensions = toParams(qAt >= 0 ? el.params.slice(qAt + 1) : []).params;
    ranges.push({
      mediaType: `${el.type}/${el.subtype}`,
      type: el.type,
      subtype: el.subtype,
      ...media,
      q,
      extensions,
      index: ranges.length,
    });
  }
  return ranges;
}

function normalizeOfferParams(offer: Offer): MediaParams {
  const out: MediaParams = Object.create(null) as MediaParams;
  for (const [name, value] of Object.entries(offer.params ?? {})) out[name.toLowerCase()] = value;
  return out;
}

/**
 * Specificity of `range` for `offer`, or -1 when it does not match. Wildcards match any type or
 * subtype. Every range parameter must agree with the offer's parameter of the same name
 * (case-insensitive values; `*` on either side matches any value); a parameter the offer does not
 * declare does not constrain it. So `multipart/related; type="application/octet-stream"` matches
 * `{mediaType: "multipart/related", params: {type: "application/octet-stream"}}` but not an offer
 * whose `type` is `application/dicom`, and `application/json; charset=utf-8` still matches a plain
 * `application/json` offer.
 */
function specificity(range: MediaRange, offerType: string, offerSubtype: string, offerParams: MediaParams): number {
  if (range.type !== "*" && range.type !== offerType) return -1;
  if (range.subtype !== "*" && range.subtype !== offerSubtype) return -1;
  let matched = 0;
  for (const [name, wanted] of Object.entries(range.params)) {
    const offered = offerParams[name];
    if (offered === undefined) continue;
    const a = wanted.trim().toLowerCase();
    const b = offered.trim().toLowerCase();
    if (a !== "*" && b !== "*" && a !== b) return -1;
    matched++;
  }
  if (range.type === "*") return 0;
  if (range.subtype === "*") return 1;
  return 2 + matched;
}

/**
 * All acceptable offers, best first. For each offer the most specific matching range decides its
 * weight (so with "star/star, application/zip;q=0" zip is excluded); q=0 excludes. Ordering: higher q, then the
 * more specific range, then the range that comes first in the Accept header, then offer order.
 */
export function rankOffers<O extends Offer>(accept: AcceptInput, offers: readonly O[]): Negotiated<O>[] {
  const ranges = typeof accept === "object" ? accept : parseAccept(accept);
  const results: Array<Negotiated<O> & { s: number }> = [];
  offers.forEach((offer, offerIndex) => {
    const full = offer.mediaType.trim().toLowerCase();
    const slash = full.indexOf("/");
    const type = slash < 0 ? full : full.slice(0, slash);
    const subtype = slash < 0 ? "" : full.slice(slash + 1);
    const params = normalizeOfferParams(offer);
    let best: MediaRange | undefined;
    let bestS = -1;
    for (const range of ranges) {
      const s = specificity(range, type, subtype, params);
      if (s > bestS) {
        best = range;
        bestS = s;
      }
    }
    if (best !== undefined && best.q > 0) results.push({ offer, offerIndex, range: best, q: best.q, s: bestS });
  });
  results.sort((a, b) => b.q - a.q || b.s - a.s || a.range.index - b.range.index || a.offerIndex - b.offerIndex);
  return results.map(({ offer, offerIndex, range, q }) => ({ offer, offerIndex, range, q }));
}

/** The offer the client prefers, or undefined when none is acceptable (answer 406). */
export function negotiate<O extends Offer>(accept: AcceptInput, offers: readonly O[]): Negotiated<O> | undefined {
  return rankOffers(accept, offers)[0];
}

/** Quotes a parameter value unless it is an RFC 9110 token. */
export function quoteParam(value: string): string {
  if (/[\r\n\0]/.test(value)) throw new MediaTypeError("parameter values cannot contain CR, LF or NUL");
  return TOKEN.test(value) ? value : `"${value.replace(/(["\\])/g, "\\$1")}"`;
}

/** Formats `type/subtype; name=value; ...`, quoting values as needed. */
export function formatMediaType(mediaType: string, params: Readonly<Record<string, string>> = {}): string {
  let out = mediaType;
  for (const [name, value] of Object.entries(params)) {
    if (!TOKEN.test(name)) throw new MediaTypeError(`malformed parameter name "${name}"`);
    out += `; ${name}=${quoteParam(value)}`;
  }
  return out;
}

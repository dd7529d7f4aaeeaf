/**
 * Rendered-resource query parameters (PS3.18 §8.3.5): parsed, validated, and turned into a typed
 * RenderParams with a canonical cache key.
 *
 *   window=center,width,function      function: linear | linear-exact | sigmoid (case-insensitive,
 *                                     as ABNF literals without %s are); linear needs width ≥ 1,
 *                                     the others width > 0 (PS3.3 C.11.2.1.2 / C.11.2.1.3).
 *   viewport=vw,vh[,[sx],[sy],[sw],[sh]]
 *                                     vw, vh: positive integers (≤ MAX_VIEWPORT), the size of the
 *                                     rendered image. sx, sy, sw, sh: decimals whose absolute values
 *                                     give the source region in pixels; a negative sw flips
 *                                     horizontally, a negative sh vertically; elided values take
 *                                     their defaults (0, 0, to the right edge, to the bottom edge);
 *                                     trailing ones may go with their commas ("vw,vh,sx,sy").
 *                                     Decimal region values are rounded to whole pixels. A region
 *                                     of zero width or height is a 400; one that lies outside the
 *                                     image is found at render time (RenderParamError, also a 400).
 *   quality=1..100                    JPEG quality (default 90). Only lossy media types use it:
 *                                     PNG and GIF ignore it and it leaves their cache key alone.
 *   annotation=patient,technique      Voxelgate burns in no annotations. PS3.18 §8.3.5.1.1 lets an
 *                                     origin server ignore values it does not support, with a
 *                                     Warning 299 "The following annotation values are not
 *                                     supported: ..." — that text is in `warnings`. Values that are
 *                                     not keywords, or no values at all, are a 400.
 *   charset=name[;q=x],...            PS3.18 §8.3.3.2: each must be a character set Node can
 *                                     decode (WHATWG label), else 400. A rendered image has no
 *                                     text, so it changes nothing and is not in the cache key.
 *   iccprofile=no|yes|srgb            "yes"/"srgb" embed an sRGB profile (our output is sRGB);
 *                                     "adobergb"/"rommrgb" are not supported: 400. GIF cannot carry
 *                                     a profile: anything but "no" with image/gif is a 400 when
 *                                     rendering.
 *
 * Thumbnails (§8.3.5.2) take only `viewport=vw,vh` (anything more is a 400) and `charset`. Without
 * a viewport the origin server chooses the size: Voxelgate fits the image into 128×128 keeping its
 * aspect ratio, never enlarging it and without letterbox bars (THUMBNAIL_SIZE).
 *
 * Keys other than these (accept, and anything unknown) are the route's business: the parser looks
 * only at the keys it owns (RENDERED_PARAM_KEYS, THUMBNAIL_PARAM_KEYS).
 */

export type WindowFunction = "linear" | "linear-exact" | "sigmoid";

export interface WindowParams {
  center: number;
  width: number;
  function: WindowFunction;
}

export interface ViewportParams {
  /** Width and height of the rendered image, pixels. */
  vw: number;
  vh: number;
  /** Top-left corner of the source region, whole pixels (default 0). */
  sx: number;
  sy: number;
  /** Source region size, whole pixels (absolute value); undefined: to the image's edge. */
  sw?: number;
  sh?: number;
  /** Negative sw / sh. */
  flipX: boolean;
  flipY: boolean;
  /**
   * True (the standard's rule): the rendered image is exactly vw×vh, the region scaled to fit
   * inside it with its aspect ratio and centred on black. False (the default thumbnail): the
   * rendered image is the scaled region alone.
   */
  letterbox: boolean;
  /** False: never scale the region up (the default thumbnail); true: as large as fits. */
  enlarge: boolean;
}

export type IccProfileParam = "no" | "yes" | "srgb";

export interface RenderParams {
  window?: WindowParams;
  viewport?: ViewportParams;
  /** JPEG quality, 1–100. */
  quality: number;
  /** True when `quality` came from the request (not the default). */
  qualityGiven: boolean;
  /** Annotation keywords asked for (none is burned in; see `warnings`). */
  annotation: string[];
  /** Character sets asked for, in order of preference (no effect on an image). */
  charsets: string[];
  iccProfile?: IccProfileParam;
  /** Texts for Warning: 299 headers (the route adds "299 <service>: "). */
  warnings: string[];
  /** Canonical text of everything that changes the pixels, for the rendered cache (media type not included; see renderCacheKey). */
  cacheKey: string;
}

export type RenderMediaType = "image/jpeg" | "image/png" | "image/gif";

/** A query parameter the client can correct: the route answers 400 with `message`. */
export class RenderParamError extends Error {
  readonly status = 400;
  constructor(
    /** The parameter at fault, e.g. "viewport". */
    readonly parameter: string,
    /** Why, in words a person can act on. */
    readonly reason: string,
  ) {
    super(`${parameter}: ${reason}`);
    this.name = "RenderParamError";
  }
}

export const DEFAULT_JPEG_QUALITY = 90;
/** Largest vw or vh accepted (a 16k × 16k RGB image is already 768 MB of raw pixels). */
export const MAX_VIEWPORT = 8192;
/** The default thumbnail fits inside this box (no enlargement, no letterbox). */
export const THUMBNAIL_SIZE = 128;
/** Bumped whenever the renderer's output changes, so cached renderings from an older one are not served. */
export const RENDERER_VERSION = 1;

export const RENDERED_PARAM_KEYS = ["window", "viewport", "quality", "annotation", "charset", "iccprofile"] as const;
export const THUMBNAIL_PARAM_KEYS = ["viewport", "charset"] as const;

const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const KEYWORD = /^[A-Za-z][A-Za-z0-9_-]*$/;
const SUPPORTED_ANNOTATIONS: ReadonlySet<string> = new Set(); // none is burned in

function decimal(parameter: string, name: string, text: string): number {
  const t = text.trim();
  if (!DECIMAL.test(t)) throw new RenderParamError(parameter, `${name} "${text}" is not a decimal number`);
  const n = Number(t);
  if (!Number.isFinite(n)) throw new RenderParamError(parameter, `${name} "${text}" is out of range`);
  return n;
}

function positiveInteger(parameter: string, name: string, text: string, max: number): number {
  const t = text.trim();
  if (!/^\+?\d+$/.test(t)) throw new RenderParamError(parameter, `${name} "${text}" must be a positive integer`);
  const n = Number(t);
  if (n < 1) throw new RenderParamError(parameter, `${name} must be at least 1`);
  if (n > max) throw new RenderParamError(parameter, `${name} ${n} is larger than the ${max} supported`);
  return n;
}

/** "window=center,width,function" (PS3.18 §8.3.5.1.4). */
export function parseWindow(value: string): WindowParams {
  const parts = value.split(",");
  if (parts.length !== 3) {
    throw new RenderParamError("window", `"${value}" must be center,width,function (3 values, got ${parts.length})`);
  }
  const center = decimal("window", "center", parts[0] as string);
  const width = decimal("window", "width", parts[1] as string);
  const fn = (parts[2] as string).trim().toLowerCase();
  if (fn !== "linear" && fn !== "linear-exact" && fn !== "sigmoid") {
    throw new RenderParamError("window", `function "${parts[2]}" must be linear, linear-exact or sigmoid`);
  }
  if (fn === "linear" && width < 1) throw new RenderParamError("window", `width ${width} must be at least 1 for linear (PS3.3 C.11.2.1.2)`);
  if (fn !== "linear" && width <= 0) throw new RenderParamError("window", `width ${width} must be greater than 0 for ${fn}`);
  return { center, width, function: fn };
}

/** "viewport=vw,vh[,[sx],[sy],[sw],[sh]]" (PS3.18 §8.3.5.1.3); `sizeOnly` for thumbnails and presentation states. */
export function parseViewport(value: string, sizeOnly = false): ViewportParams {
  const parts = value.split(",");
  // "If trailing values are elided, then the trailing commas shall be omitted": 2 to 6 values.
  if (parts.length < 2 || parts.length > 6) {
    throw new RenderParamError(
      "viewport",
      sizeOnly ? `"${value}" must be vw,vh` : `"${value}" must be vw,vh[,sx,sy,sw,sh] (inner values may be empty, their commas stay)`,
    );
  }
  if (sizeOnly && parts.length !== 2) throw new RenderParamError("viewport", `"${value}": a thumbnail viewport is vw,vh only`);
  const vw = positiveInteger("viewport", "vw", parts[0] as string, MAX_VIEWPORT);
  const vh = positiveInteger("viewport", "vh", parts[1] as string, MAX_VIEWPORT);
  const optional = (i: number, name: string): number | undefined => {
    const text = parts[i];
    return text === undefined || text.trim() === "" ? undefined : decimal("viewport", name, text);
  };
  const sx = optional(2, "sx");
  const sy = optional(3, "sy");
  const sw = optional(4, "sw");
  const sh = optional(5, "sh");
  const region: ViewportParams = {
    vw,
    vh,
    sx: Math.round(Math.abs(sx ?? 0)),
    sy: Math.round(Math.abs(sy ?? 0)),
    flipX: sw !== undefined && (sw < 0 || Object.is(sw, -0)),
    flipY: sh !== undefined && (sh < 0 || Object.is(sh, -0)),
    letterbox: true,
    enlarge: true,
  };
  if (sw !== undefined) {
    region.sw = Math.round(Math.abs(sw));
    if (region.sw === 0) throw new RenderParamError("viewport", `sw "${parts[4]}" selects no column (|sw| must be at least 0.5)`);
  }
  if (sh !== undefined) {
    region.sh = Math.round(Math.abs(sh));
    if (region.sh === 0) throw new RenderParamError("viewport", `sh "${parts[5]}" selects no row (|sh| must be at least 0.5)`);
  }
  return region;
}

/** "quality=n", n an integer 1–100 (PS3.18 §8.3.5.1.2). */
export function parseQuality(value: string): number {
  const t = value.trim();
  if (!/^\d{1,3}$/.test(t) || Number(t) < 1 || Number(t) > 100) {
    throw new RenderParamError("quality", `"${value}" must be an integer from 1 to 100`);
  }
  return Number(t);
}

/** "annotation=k1,k2": keywords; returns them and the ones not supported (all of them, today). */
export function parseAnnotation(value: string): { keywords: string[]; unsupported: string[] } {
  const keywords = value.split(",").map((k) => k.trim());
  if (value.trim() === "" || keywords.some((k) => !KEYWORD.test(k))) {
    throw new RenderParamError("annotation", `"${value}" must be a comma-separated list of keywords (patient, technique)`);
  }
  const unique = [...new Set(keywords.map((k) => k.toLowerCase()))];
  return { keywords: unique, unsupported: unique.filter((k) => !SUPPORTED_ANNOTATIONS.has(k)) };
}

/** "charset=utf-8,iso-8859-1;q=0.5" (PS3.18 §8.3.3.2): names Node's TextDecoder knows, best first. */
export function parseCharset(value: string): string[] {
  const entries = value.split(",").map((entry, index) => {
    const [name = "", ...rest] = entry.split(";").map((s) => s.trim());
    let q = 1;
    for (const p of rest) {
      const m = /^q=(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/i.exec(p);
      if (!m) throw new RenderParamError("charset", `"${entry.trim()}": "${p}" is not a weight (q=0 to q=1)`);
      q = Number(m[1]);
    }
    if (name === "" || name === "*") throw new RenderParamError("charset", `"${value}" must list character sets (no wildcard)`);
    let canonical: string;
    try {
      canonical = new TextDecoder(name).encoding;
    } catch {
      throw new RenderParamError("charset", `"${name}" is not a supported character set`);
    }
    return { canonical, q, index };
  });
  return entries
    .filter((e) => e.q > 0)
    .sort((a, b) => b.q - a.q || a.index - b.index)
    .map((e) => e.canonical);
}

export function parseIccProfile(value: string): IccProfileParam {
  const values = value.split(",").map((v) => v.trim().toLowerCase());
  if (values.length !== 1) throw new RenderParamError("iccprofile", `"${value}" must be one of no, yes, srgb`);
  const v = values[0] as string;
  if (v === "no" || v === "yes" || v === "srgb") return v;
  if (v === "adobergb" || v === "rommrgb") throw new RenderParamError("iccprofile", `${v} is not supported (no, yes or srgb)`);
  throw new RenderParamError("iccprofile", `"${value}" must be no, yes, srgb, adobergb or rommrgb`);
}

/** Shortest exact text of a number, so 40, 40.0 and 4e1 give one key. */
const num = (n: number): string => (Object.is(n, -0) ? "0" : String(n));

function cacheKeyOf(p: Omit<RenderParams, "cacheKey">): string {
  const parts = [`r${RENDERER_VERSION}`];
  if (p.window) parts.push(`w=${num(p.window.center)},${num(p.window.width)},${p.window.function}`);
  const v = p.viewport;
  if (v) {
    parts.push(
      `v=${v.vw},${v.vh},${v.sx},${v.sy},${v.sw ?? "*"},${v.sh ?? "*"},${v.flipX ? "fx" : ""}${v.flipY ? "fy" : ""}` +
        `${v.letterbox ? "lb" : ""}${v.enlarge ? "" : "ne"}`,
    );
  }
  parts.push(`q=${p.quality}`);
  if (p.iccProfile && p.iccProfile !== "no") parts.push("icc=srgb");
  return parts.join(";");
}

function finish(p: Omit<RenderParams, "cacheKey">): RenderParams {
  return { ...p, cacheKey: cacheKeyOf(p) };
}

/** Groups the pairs by name; names this parser does not own are left alone. */
function collect(params: Iterable<[string, string]>, keys: readonly string[]): Map<string, string[]> {
  const wanted = new Set(keys);
  const values = new Map<string, string[]>();
  for (const [name, value] of params) {
    if (!wanted.has(name)) continue;
    const list = values.get(name) ?? [];
    list.push(value);
    values.set(name, list);
  }
  for (const [name, list] of values) {
    // charset may repeat (its values add up); any other parameter given twice is ambiguous.
    if (name !== "charset" && list.length > 1) throw new RenderParamError(name, `given ${list.length} times; give it once`);
  }
  return values;
}

/**
 * Parses the query of a Retrieve Rendered request (instance, frames, series, study). Takes the
 * decoded name/value pairs (e.g. parseQueryString, or a URLSearchParams); throws RenderParamError.
 */
export function parseRenderParams(params: Iterable<[string, string]>): RenderParams {
  const values = collect(params, RENDERED_PARAM_KEYS);
  const first = (name: string): string | undefined => values.get(name)?.[0];
  const p: Omit<RenderParams, "cacheKey"> = {
    quality: DEFAULT_JPEG_QUALITY,
    qualityGiven: false,
    annotation: [],
    charsets: [],
    warnings: [],
  };
  const window = first("window");
  if (window !== undefined) p.window = parseWindow(window);
  const viewport = first("viewport");
  if (viewport !== undefined) p.viewport = parseViewport(viewport);
  const quality = first("quality");
  if (quality !== undefined) {
    p.quality = parseQuality(quality);
    p.qualityGiven = true;
  }
  const annotation = first("annotation");
  if (annotation !== undefined) {
    const a = parseAnnotation(annotation);
    p.annotation = a.keywords;
    if (a.unsupported.length > 0) p.warnings.push(`The following annotation values are not supported: ${a.unsupported.join(",")}`);
  }
  for (const c of values.get("charset") ?? []) p.charsets.push(...parseCharset(c));
  const icc = first("iccprofile");
  if (icc !== undefined) p.iccProfile = parseIccProfile(icc);
  return finish(p);
}

/** Parses the query of a Retrieve Thumbnail request (PS3.18 §8.3.5.2): viewport=vw,vh and charset. */
export function parseThumbnailParams(params: Iterable<[string, string]>): RenderParams {
  const values = collect(params, THUMBNAIL_PARAM_KEYS);
  const viewport = values.get("viewport")?.[0];
  const charsets = (values.get("charset") ?? []).flatMap(parseCharset);
  return thumbnailParams(viewport === undefined ? undefined : parseViewport(viewport, true), charsets);
}

/**
 * Render parameters for a thumbnail. With a viewport (vw,vh) the standard's rule applies: a vw×vh
 * image, the frame fitted inside it. Without one: the frame fitted into THUMBNAIL_SIZE ×
 * THUMBNAIL_SIZE, keeping its aspect ratio, never enlarged, no bars. The window is the dataset's
 * own (or the auto window). Which frame of a multi-frame or which instance of a series to show is
 * the caller's decision (the middle one is a good choice).
 */
export function thumbnailParams(viewport?: Pick<ViewportParams, "vw" | "vh">, charsets: string[] = []): RenderParams {
  const v: ViewportParams = viewport
    ? { vw: viewport.vw, vh: viewport.vh, sx: 0, sy: 0, flipX: false, flipY: false, letterbox: true, enlarge: true }
    : { vw: THUMBNAIL_SIZE, vh: THUMBNAIL_SIZE, sx: 0, sy: 0, flipX: false, flipY: false, letterbox: false, enlarge: false };
  return finish({ viewport: v, quality: DEFAULT_JPEG_QUALITY, qualityGiven: false, annotation: [], charsets, warnings: [] });
}

/** The rendered-cache key for a media type: quality only counts for JPEG. */
export function renderCacheKey(params: RenderParams, mediaType: RenderMediaType): string {
  const key = mediaType === "image/jpeg" ? params.cacheKey : params.cacheKey.replace(/;q=\d+/, "");
  return `${mediaType.slice("image/".length)};${key}`;
}

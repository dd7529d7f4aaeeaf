/**
 * Files of a single-page app's build folder, as an HTTP answer: the right media type (`.wasm` as
 * application/wasm, which WebAssembly.instantiateStreaming insists on), cache headers by kind of
 * file (hashed bundles forever, the entry points revalidated every time), ETag/304, the `.gz`
 * twin when the client takes gzip, and the SPA fallback (a path that is no file gets index.html,
 * so deep links such as /viewer?StudyInstanceUIDs=… work).
 */
import { createReadStream, type Stats } from "node:fs";
import { stat } from "node:fs/promises";
import { extname, join, resolve, sep } from "node:path";
import type { Readable } from "node:stream";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".gif": "image/gif",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".txt": "text/plain; charset=utf-8",
  ".xml": "application/xml",
  ".webmanifest": "application/manifest+json",
};

/** Names with a content hash (app.bundle.0f6159c501addfe9.js, 0ddf166f7a343eda.wasm) never change. */
const HASHED = /(^|[.-])[0-9a-f]{16,}\.(js|css|wasm|woff2?)$/;
/** The entry points: a new build must be seen at once. */
const ENTRY = new Set(["index.html", "app-config.js", "sw.js", "init-service-worker.js", "manifest.json"]);

export const IMMUTABLE = "public, max-age=31536000, immutable";
export const REVALIDATE = "no-cache";
const SHORT = "public, max-age=3600";

export interface StaticAnswer {
  status: 200 | 304;
  headers: Record<string, string>;
  /** Absent for 304 (Fastify drops the body of a HEAD answer itself, keeping Content-Length). */
  body?: Readable;
}

export function cacheControlFor(name: string): string {
  if (ENTRY.has(name)) return REVALIDATE;
  return HASHED.test(name) ? IMMUTABLE : SHORT;
}

export function mediaTypeFor(name: string): string {
  return TYPES[extname(name).toLowerCase()] ?? "application/octet-stream";
}

async function fileStats(path: string): Promise<Stats | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s : undefined;
  } catch {
    return undefined;
  }
}

/** The file a URL path names inside `root`, or undefined when it would leave `root`. */
export function resolveInside(root: string, urlPath: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (decoded.includes("\0")) return undefined;
  const base = resolve(root);
  const path = resolve(join(base, decoded));
  return path === base || path.startsWith(base + sep) ? path : undefined;
}

/** A path whose last segment looks like a file (has an extension) gets a 404 when missing, not index.html. */
const looksLikeFile = (urlPath: string): boolean => /\.[A-Za-z0-9]{1,12}$/.test(urlPath.slice(urlPath.lastIndexOf("/") + 1));

/**
 * The answer for GET/HEAD `urlPath` (no query string) from `root`, or undefined for a 404.
 * `acceptEncoding` and `ifNoneMatch` are the request's headers.
 */
export async function staticAnswer(
  root: string,
  urlPath: string,
  request: { acceptEncoding?: string; ifNoneMatch?: string },
): Promise<StaticAnswer | undefined> {
  let path = resolveInside(root, urlPath.endsWith("/") ? `${urlPath}index.html` : urlPath);
  let stats = path === undefined ? undefined : await fileStats(path);
  if (!stats) {
    if (looksLikeFile(urlPath)) return undefined;
    path = join(root, "index.html");
    stats = await fileStats(path);
    if (!stats) return undefined;
  }
  if (path === undefined) return undefined;
  const name = path.slice(path.lastIndexOf(sep) + 1);
  const headers: Record<string, string> = {
    "content-type": mediaTypeFor(name),
    "cache-control": cacheControlFor(name),
    "last-modified": stats.mtime.toUTCString(),
    vary: "Accept-Encoding",
  };
  const gzipped = /\bgzip\b/.test(request.acceptEncoding ?? "") ? await fileStats(`${path}.gz`) : undefined;
  const sent = gzipped ?? stats;
  const etag = `"${sent.size.toString(36)}-${Math.floor(stats.mtimeMs).toString(36)}${gzipped ? "-gz" : ""}"`;
  headers.etag = etag;
  if (request.ifNoneMatch !== undefined && request.ifNoneMatch.split(/\s*,\s*/).some((t) => t === etag || t === `W/${etag}`)) {
    return { status: 304, headers };
  }
  if (gzipped) headers["content-encoding"] = "gzip";
  headers["content-length"] = String(sent.size);
  return { status: 200, headers, body: createReadStream(gzipped ? `${path}.gz` : path) };
}

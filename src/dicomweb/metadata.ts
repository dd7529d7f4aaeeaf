/**
 * WADO-RS metadata (PS3.18 §10.4.1.1.2 / §10.4.1.2.?): study, series and instance metadata as a
 * DICOM JSON array, assembled from the per-instance JSON materialized at ingest (never a
 * re-parse), with the public base URL put into the BulkDataURIs. Assembled documents are kept
 * gzipped in a byte-bounded LRU keyed by scope, version and base URL, so a warm request is a
 * cache lookup; the version moves on every store or delete in the study, so a hit is never stale.
 */
import { createHash } from "node:crypto";
import { gunzipSync, gzipSync, inflateRawSync } from "node:zlib";
import { BASE_URL_TOKEN } from "../store/archive.js";
import type { Index, MetadataChunks, Scope } from "../store/types.js";

export interface MetadataDocument {
  /** The JSON array, gzip-compressed. */
  gzip: Buffer;
  /** Uncompressed size in bytes. */
  length: number;
  /** Strong entity tag (without quotes) for the uncompressed representation. */
  etag: string;
}

const BULK_URI_PREFIX = `"BulkDataURI":"${BASE_URL_TOKEN}`;
const FINAL_EMPTY_BLOCK = Buffer.from([0x03, 0x00]);

/** Joins the instance chunks into `[json,json,…]` with the base URL substituted. */
export function assembleMetadata(chunks: MetadataChunks, base: string): Buffer {
  const text = inflateRawSync(Buffer.concat([...chunks.chunks, FINAL_EMPTY_BLOCK]));
  const parts: Buffer[] = [Buffer.from("[")];
  let offset = 0;
  chunks.lengths.forEach((length, i) => {
    if (i > 0) parts.push(Buffer.from(","));
    parts.push(text.subarray(offset, offset + length));
    offset += length;
  });
  parts.push(Buffer.from("]"));
  const joined = Buffer.concat(parts);
  // Only the token right after "BulkDataURI":" is replaced: inside a JSON string value the quotes
  // would be escaped, so a stored text that looks like the token is never rewritten.
  return joined.includes(BULK_URI_PREFIX)
    ? Buffer.from(joined.toString("utf8").replaceAll(BULK_URI_PREFIX, `"BulkDataURI":${JSON.stringify(base).slice(0, -1)}`))
    : joined;
}

export class MetadataService {
  private readonly cache = new Map<string, MetadataDocument>();
  private cachedBytes = 0;
  hits = 0;
  misses = 0;

  constructor(
    private readonly index: Index,
    /** Byte budget of the cache of assembled documents (gzipped sizes). */
    private readonly maxCacheBytes = 256 * 1024 * 1024,
    private readonly onLookup?: (hit: boolean) => void,
  ) {}

  /** The metadata document for a scope, or undefined when the scope does not exist. */
  get(scope: Scope, base: string): MetadataDocument | undefined {
    // The version alone decides a hit: the chunks are read only to assemble a missing document.
    const version = this.index.metadataVersion(scope);
    if (version === undefined) return undefined;
    const key = `${scope.studyUid}/${scope.seriesUid ?? ""}/${scope.sopUid ?? ""}|${version}|${base}`;
    const cached = this.cache.get(key);
    if (cached) {
      // Map order is the LRU order: move to the end.
      this.cache.delete(key);
      this.cache.set(key, cached);
      this.hits++;
      this.onLookup?.(true);
      return cached;
    }
    this.misses++;
    this.onLookup?.(false);
    const chunks = this.index.metadata(scope);
    if (!chunks) return undefined;
    const json = assembleMetadata(chunks, base);
    const etag = createHash("sha1").update(key).digest("base64url");
    const doc: MetadataDocument = { gzip: gzipSync(json, { level: 4 }), length: json.length, etag };
    this.remember(key, doc);
    return doc;
  }

  private readonly warmTimers = new Map<string, NodeJS.Timeout>();

  /**
   * Assembles a series' document in the background once the series has been quiet for `delayMs`
   * (like Orthanc's "stable" series), so the viewer's first metadata request is already warm.
   * Debounced per series: a series stored one instance at a time is assembled once, not n times.
   */
  scheduleWarm(scope: Scope, base: string, delayMs = 1000): void {
    const key = `${scope.studyUid}/${scope.seriesUid ?? ""}|${base}`;
    const previous = this.warmTimers.get(key);
    if (previous) clearTimeout(previous);
    const timer = setTimeout(() => {
      this.warmTimers.delete(key);
      try {
        this.get(scope, base);
        this.get({ studyUid: scope.studyUid }, base);
      } catch {
        // best effort: the request path assembles it anyway
      }
    }, delayMs);
    timer.unref();
    this.warmTimers.set(key, timer);
  }

  /** Stops pending background work (server shutdown). */
  close(): void {
    for (const timer of this.warmTimers.values()) clearTimeout(timer);
    this.warmTimers.clear();
  }

  private remember(key: string, doc: MetadataDocument): void {
    if (doc.gzip.length > this.maxCacheBytes) return;
    this.cache.set(key, doc);
    this.cachedBytes += doc.gzip.length;
    for (const [oldKey, old] of this.cache) {
      if (this.cachedBytes <= this.maxCacheBytes) break;
      this.cache.delete(oldKey);
      this.cachedBytes -= old.gzip.length;
    }
  }
}

/** The uncompressed bytes of a document, for clients that do not accept gzip. */
export const plainMetadata = (doc: MetadataDocument): Buffer => gunzipSync(doc.gzip);

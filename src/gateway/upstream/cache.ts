/**
 * Entries of the proxy caches (src/dicomweb/disk-cache.ts files): a JSON header line (content
 * type, the upstream's ETag, when it was stored) then the body bytes.
 */
export interface EntryMeta {
  contentType: string;
  /** The upstream's ETag, for revalidation (If-None-Match). */
  etag?: string;
  /** Epoch ms when the upstream last confirmed it. */
  storedAt: number;
}

export interface CacheEntry {
  meta: EntryMeta;
  body: Buffer;
}

export function encodeEntry(meta: EntryMeta, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${JSON.stringify(meta)}\n`, "utf8"), body]);
}

export function decodeEntry(bytes: Buffer): CacheEntry | undefined {
  const nl = bytes.indexOf(0x0a);
  if (nl < 0) return undefined;
  try {
    const meta = JSON.parse(bytes.subarray(0, nl).toString("utf8")) as EntryMeta;
    if (typeof meta.contentType !== "string" || typeof meta.storedAt !== "number") return undefined;
    return { meta, body: bytes.subarray(nl + 1) };
  } catch {
    return undefined;
  }
}

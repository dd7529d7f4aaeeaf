/**
 * URL rewriting in DICOM JSON (QIDO results, metadata, STOW responses): RetrieveURL (0008,1190),
 * RetrieveURI (0040,E010) and every BulkDataURI point at the upstream; clients must see the
 * gateway. The JSON is walked once when it arrives and each such URL is stored with a marker in
 * place of the upstream's base; serving then replaces the marker with the public base of the
 * request (which may differ per request: Forwarded headers, several host names). Binary
 * payloads are never touched.
 */
import type { DicomJsonDataset } from "../../dicom/index.js";

/** Stands for the gateway's public DICOMweb base in stored JSON. */
export const BASE_MARKER = "voxelgate:upstream-base";

const URL_TAGS = new Set(["00081190", "0040E010"]);

/**
 * The URL with the upstream's base replaced by the marker. URLs built from another host name of
 * the same upstream are recognised by their DICOMweb path (from `/studies/` on).
 */
export function normalizeUrl(value: string, upstreamRoot: string): string {
  const root = upstreamRoot.replace(/\/+$/, "");
  if (value.startsWith(root + "/") || value === root) return BASE_MARKER + value.slice(root.length);
  const at = value.indexOf("/studies/");
  if (at >= 0 && (/^[a-z][a-z0-9+.-]*:\/\//i.test(value) || value.startsWith("/"))) return BASE_MARKER + value.slice(at);
  return value;
}

function walkDataset(ds: DicomJsonDataset, root: string): void {
  for (const [tag, attribute] of Object.entries(ds)) {
    const a = attribute as { vr?: string; Value?: unknown[]; BulkDataURI?: unknown };
    if (typeof a.BulkDataURI === "string") a.BulkDataURI = normalizeUrl(a.BulkDataURI, root);
    if (!Array.isArray(a.Value)) continue;
    if (URL_TAGS.has(tag.toUpperCase())) {
      a.Value = a.Value.map((v) => (typeof v === "string" ? normalizeUrl(v, root) : v));
    } else if (a.vr === "SQ") {
      for (const item of a.Value) if (item && typeof item === "object") walkDataset(item as DicomJsonDataset, root);
    }
  }
}

/** Normalizes every URL in one dataset or an array of them (in place), returning the same value. */
export function normalizeDicomJson<T extends DicomJsonDataset | DicomJsonDataset[]>(json: T, upstreamRoot: string): T {
  if (Array.isArray(json)) for (const ds of json) walkDataset(ds, upstreamRoot);
  else walkDataset(json, upstreamRoot);
  return json;
}

/** Stored JSON text with the marker replaced by the public base of this request. */
export function withPublicBase(text: string, publicBase: string): string {
  return text.replaceAll(BASE_MARKER, publicBase.replace(/\/+$/, ""));
}

/**
 * What an upstream can do, found out by asking it (at start-up and then periodically): search,
 * includefield=all, study-level metadata, rendered, thumbnail, and the frame media types it
 * produces. The gateway fills what is missing locally. An empty upstream leaves the
 * instance-level answers unknown (null): then the upstream is tried first and the gap filled
 * when it refuses.
 */
import type { DicomJsonDataset } from "../../dicom/index.js";
import type { UpstreamClient, UpstreamResponse } from "./client.js";
import type { CapabilityOverrides } from "./settings.js";

export interface Capabilities {
  /** When the last probe ran (ISO time), and whether the upstream answered it. */
  probedAt: string | null;
  reachable: boolean;
  error?: string;
  qido: boolean | null;
  includefieldAll: boolean | null;
  studyMetadata: boolean | null;
  rendered: boolean | null;
  thumbnail: boolean | null;
  /** Media types of frames the upstream produced (application/octet-stream; transfer-syntax=* as "as stored"). */
  frameMediaTypes: string[] | null;
}

export const UNKNOWN: Capabilities = {
  probedAt: null,
  reachable: false,
  qido: null,
  includefieldAll: null,
  studyMetadata: null,
  rendered: null,
  thumbnail: null,
  frameMediaTypes: null,
};

/** Frame representations probed, as Accept headers keyed by the name reported. */
export const PROBED_FRAME_TYPES: ReadonlyArray<[string, string]> = [
  ["application/octet-stream", 'multipart/related; type="application/octet-stream"'],
  ["application/octet-stream; transfer-syntax=*", 'multipart/related; type="application/octet-stream"; transfer-syntax=*'],
  ["image/jpeg", 'multipart/related; type="image/jpeg"'],
  ["image/jls", 'multipart/related; type="image/jls"'],
  ["image/jp2", 'multipart/related; type="image/jp2"'],
  ["image/jphc", 'multipart/related; type="image/jphc"'],
  ["image/dicom-rle", 'multipart/related; type="image/dicom-rle"'],
];

const PROBE_TIMEOUT_MS = 10_000;

const first = (ds: DicomJsonDataset | undefined, tag: string): string | undefined => {
  const v = (ds?.[tag] as { Value?: unknown[] } | undefined)?.Value?.[0];
  return typeof v === "string" ? v : undefined;
};

/** Attributes of a metadata dataset that a QIDO includefield=all answer should hold (no binary, no sequences). */
const plainKeys = (ds: DicomJsonDataset): string[] =>
  Object.entries(ds)
    .filter(([tag, a]) => {
      const attr = a as { vr?: string; BulkDataURI?: unknown; InlineBinary?: unknown };
      return !tag.startsWith("0002") && attr.vr !== "SQ" && attr.BulkDataURI === undefined && attr.InlineBinary === undefined;
    })
    .map(([tag]) => tag.toUpperCase());

export async function probeUpstream(client: UpstreamClient, overrides: CapabilityOverrides): Promise<Capabilities> {
  const caps: Capabilities = { ...UNKNOWN, probedAt: new Date().toISOString() };
  const get = (path: string, accept: string): Promise<UpstreamResponse> =>
    client.request({ path, headers: { accept }, timeoutMs: PROBE_TIMEOUT_MS });
  const json = async (path: string): Promise<DicomJsonDataset[] | undefined> => {
    const r = await get(path, "application/dicom+json");
    const text = await r.text();
    if (r.status === 204) return [];
    if (r.status !== 200) return undefined;
    try {
      const parsed = JSON.parse(text) as unknown;
      return Array.isArray(parsed) ? (parsed as DicomJsonDataset[]) : undefined;
    } catch {
      return undefined;
    }
  };
  const answers = async (path: string, accept: string, type: (contentType: string) => boolean): Promise<boolean> => {
    const r = await get(path, accept);
    const ok = r.status === 200 && type((r.headers.get("content-type") ?? "").toLowerCase());
    r.discard();
    return ok;
  };
  try {
    const studies = await json("/studies?limit=1");
    caps.reachable = true;
    caps.qido = studies !== undefined;
    const study = first(studies?.[0], "0020000D");
    if (study) {
      caps.studyMetadata = (await json(`/studies/${study}/metadata`)) !== undefined;
      const series = first((await json(`/studies/${study}/series?limit=1`))?.[0], "0020000E");
      const found = series ? await json(`/studies/${study}/series/${series}/instances?limit=1&includefield=all`) : undefined;
      const sop = first(found?.[0], "00080018");
      if (series && sop && found?.[0]) {
        const instance = `/studies/${study}/series/${series}/instances/${sop}`;
        const metadata = (await json(`${instance}/metadata`))?.[0];
        if (metadata) {
          // includefield=all is honoured when the search answer holds (nearly) every plain attribute the metadata has.
          const returned = new Set(Object.keys(found[0]).map((k) => k.toUpperCase()));
          const expected = plainKeys(metadata);
          const missing = expected.filter((k) => !returned.has(k)).length;
          caps.includefieldAll = missing <= Math.max(1, expected.length * 0.05);
        }
        caps.rendered = await answers(`${instance}/rendered`, "image/jpeg", (t) => t.startsWith("image/"));
        caps.thumbnail = await answers(`${instance}/thumbnail`, "image/jpeg", (t) => t.startsWith("image/"));
        const types: string[] = [];
        for (const [name, accept] of PROBED_FRAME_TYPES) {
          // "As stored" may come back in any media type; the others must come back in the type asked for.
          const wanted = name.includes("*") ? "multipart/related" : (name.split(";")[0] as string);
          if (await answers(`${instance}/frames/1`, accept, (t) => t.startsWith("multipart/related") && t.includes(wanted)))
            types.push(name);
        }
        caps.frameMediaTypes = types;
      }
    }
  } catch (err) {
    caps.error = (err as Error).message;
  }
  return applyOverrides(caps, overrides);
}

export function applyOverrides(caps: Capabilities, overrides: CapabilityOverrides): Capabilities {
  return { ...caps, ...overrides };
}

/**
 * One upstream DICOMweb archive as the proxy routes see it: its client (credentials, retries,
 * circuit breaker), its probed capabilities, and the caches in front of it:
 *   - metadata (study/series/instance), keyed by URL path and media type, kept with the upstream's
 *     ETag; younger than metadataMaxAgeSeconds it is served as is, older it is revalidated, and
 *     when the upstream is down it is served stale (with a Warning);
 *   - frames keyed like the archive's native cache (SOP Instance UID, frame, media type/syntax);
 *   - rendered images and thumbnails (never shared with frames).
 * Gaps of the upstream (frames in a syntax it cannot make, rendered, thumbnail, study-level
 * metadata, includefield=all) are filled here from what it can give.
 */
import { join } from "node:path";
import { type CodecPool, type FrameInfo, frameInfoOf } from "../../codec/index.js";
import type { DicomJsonDataset } from "../../dicom/index.js";
import { DiskCache } from "../../dicomweb/disk-cache.js";
import { type AcceptRange, chooseFrameRepresentation } from "../../dicomweb/frame-negotiation.js";
import { NATIVE_SYNTAXES, OCTET_STREAM, syntaxesForMediaType } from "../../dicomweb/media-types.js";
import { DicomwebError } from "../../dicomweb/wado.js";
import { TransferSyntaxUids as TS } from "../../dicom/index.js";
import { type CacheEntry, decodeEntry, encodeEntry } from "./cache.js";
import { UpstreamClient, UpstreamError, type UpstreamResponse } from "./client.js";
import { accessAttributesOf, datasetOfMetadata, mergeIncludeAll } from "./datasets.js";
import { type BodyPart, firstPart, isMultipart, openFirstPart } from "./parts.js";
import { applyOverrides, type Capabilities, probeUpstream, UNKNOWN } from "./probe.js";
import { normalizeDicomJson } from "./rewrite.js";
import type { UpstreamSettings } from "./settings.js";
import { ACCESS_TAGS, type AccessAttributes } from "../../store/access.js";

export interface UpstreamOptions {
  settings: UpstreamSettings;
  pool: CodecPool;
  /** Folder of this upstream's caches. */
  cacheDir: string;
  metadataCacheBytes: number;
  nativeCacheBytes: number;
  renderedCacheBytes: number;
  env?: NodeJS.ProcessEnv;
  onLookup?: (cache: string, hit: boolean) => void;
  log?: (message: string) => void;
}

/** DICOM JSON ready to serve: URLs carry the base marker (see rewrite.ts). */
export interface JsonAnswer {
  text: string;
  /** Served from the cache although the upstream could not confirm it. */
  stale: boolean;
  etag: string;
}

/** Statuses with which an upstream says "I cannot make that representation" rather than "no such thing". */
const CANNOT = new Set([400, 406, 415, 500, 501]);

const JSON_ACCEPT = "application/dicom+json";
/** How long, and for how many studies, the attributes grant rules look at are remembered. */
const ACCESS_ATTRIBUTES_MS = 60_000;
const ACCESS_ATTRIBUTES_KEPT = 10_000;

const AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
const UNCOMPRESSED = 'multipart/related; type="application/octet-stream"';

/** An upstream error answer as a DicomwebError naming the upstream. */
async function failed(label: string, r: UpstreamResponse, what: string): Promise<never> {
  const detail = (await r.text().catch(() => "")).replace(/\s+/g, " ").slice(0, 300);
  const status = r.status >= 400 && r.status < 500 ? r.status : 502;
  throw new DicomwebError(status, `${label} answered HTTP ${r.status} to ${what}${detail ? `: ${detail}` : ""}`);
}

/** The transfer syntax of a frame part, from its Content-Type. */
function syntaxOfPart(contentType: string): string {
  const ts = /transfer-syntax\s*=\s*"?([0-9.]+)"?/i.exec(contentType)?.[1];
  if (ts) return ts;
  const media = (contentType.split(";")[0] ?? "").trim().toLowerCase();
  return media === OCTET_STREAM ? TS.ExplicitVRLittleEndian : (syntaxesForMediaType(media)[0] ?? TS.ExplicitVRLittleEndian);
}

/** Does a part of this Content-Type satisfy one of the client's ranges? */
function partAcceptable(contentType: string, ranges: readonly AcceptRange[]): boolean {
  const media = (contentType.split(";")[0] ?? "").trim().toLowerCase();
  const ts = /transfer-syntax\s*=\s*"?([0-9.]+)"?/i.exec(contentType)?.[1];
  return ranges.some((r) => {
    if (r.q <= 0) return false;
    const type = r.mediaType.toLowerCase();
    const part = type.startsWith("multipart/") ? (r.params.type ?? OCTET_STREAM).toLowerCase() : type;
    if (part === "*/*") return true;
    if (part !== media) return false;
    const asked = r.params["transfer-syntax"];
    if (asked === undefined) return media !== OCTET_STREAM || ts === undefined || ts === TS.ExplicitVRLittleEndian;
    return asked === "*" || asked === ts;
  });
}

/** The client's Accept as the upstream gets it for one frame: single-part ranges become multipart ones (what every DICOMweb server answers). */
export function frameAcceptForUpstream(ranges: readonly AcceptRange[]): string {
  return ranges
    .filter((r) => r.q > 0)
    .map((r) => {
      const type = r.mediaType.toLowerCase();
      if (type.startsWith("multipart/") || type === "*/*") {
        const params = Object.entries(r.params).map(([k, v]) => `; ${k}=${k === "type" ? `"${v}"` : v}`);
        return `${type}${params.join("")}`;
      }
      const ts = r.params["transfer-syntax"];
      return `multipart/related; type="${type}"${ts ? `; transfer-syntax=${ts}` : ""}`;
    })
    .join(", ");
}

/** The Accept a frame is asked of the upstream with, and its frame-cache key (SOP Instance UID, frame, what was asked). */
function frameRequest(sopUid: string, n: number, ranges: readonly AcceptRange[]): { asked: string; key: string } {
  const asked = frameAcceptForUpstream(ranges);
  return { asked, key: `${sopUid}/${n}/${asked}` };
}

export class Upstream {
  readonly client: UpstreamClient;
  readonly name: string;
  private probed: Capabilities = UNKNOWN;
  private readonly metadataCache: DiskCache;
  readonly frameCache: DiskCache;
  private readonly accessAttributes = new Map<string, { value: Promise<AccessAttributes | undefined>; untilMs: number }>();
  readonly renderedCache: DiskCache;
  private timer: NodeJS.Timeout | undefined;
  private probing: Promise<Capabilities> | undefined;

  constructor(private readonly options: UpstreamOptions) {
    this.client = new UpstreamClient(options.settings, options.env);
    this.name = options.settings.name;
    // Recently used entries also stay in memory (a viewer asks the same frames and metadata again).
    const cacheOptions = (cache: string, memoryBytes: number) => ({
      memoryBytes,
      onLookup: (hit: boolean) => options.onLookup?.(cache, hit),
    });
    const MiB = 1024 * 1024;
    this.metadataCache = new DiskCache(
      join(options.cacheDir, "metadata"),
      options.metadataCacheBytes,
      cacheOptions("upstream-metadata", 16 * MiB),
    );
    this.frameCache = new DiskCache(join(options.cacheDir, "frames"), options.nativeCacheBytes, cacheOptions("upstream-frames", 64 * MiB));
    this.renderedCache = new DiskCache(
      join(options.cacheDir, "rendered"),
      options.renderedCacheBytes,
      cacheOptions("upstream-rendered", 16 * MiB),
    );
  }

  get pool(): CodecPool {
    return this.options.pool;
  }

  get label(): string {
    return this.client.label;
  }

  /** What the last probe found, with the configured overrides. */
  get capabilities(): Capabilities {
    return applyOverrides(this.probed, this.options.settings.capabilities);
  }

  /** Probes now (in the background) and then every probeIntervalMs. */
  start(): void {
    void this.probe();
    const every = this.options.settings.probeIntervalMs;
    if (every > 0) {
      this.timer = setInterval(() => void this.probe(), every);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.client.close();
  }

  /** Probes the upstream (one probe at a time); never throws. */
  probe(): Promise<Capabilities> {
    this.probing ??= probeUpstream(this.client, {})
      .then((caps) => {
        // A failed probe keeps what an earlier one found: the upstream did not change, it is down.
        this.probed = caps.reachable || this.probed.probedAt === null ? caps : { ...this.probed, reachable: false, error: caps.error };
        if (caps.error) this.options.log?.(`probing ${this.label} failed: ${caps.error}`);
        return this.capabilities;
      })
      .finally(() => {
        this.probing = undefined;
      });
    return this.probing;
  }

  /** One request to the upstream (pass-through routes). */
  request(...args: Parameters<UpstreamClient["request"]>): Promise<UpstreamResponse> {
    return this.client.request(...args);
  }

  // ---- Search ----

  /** QIDO results (URLs normalized), with includefield=all filled in at instance level when the upstream ignores it. */
  async search(path: string, query: URLSearchParams): Promise<{ results: DicomJsonDataset[]; warnings: string[] }> {
    const qs = query.toString();
    const r = await this.client.request({ path: qs ? `${path}?${qs}` : path, headers: { accept: JSON_ACCEPT } });
    if (r.status === 204) {
      r.discard();
      return { results: [], warnings: [] };
    }
    if (r.status !== 200) return failed(this.label, r, `search ${path}`);
    const warnings = r.headers.get("warning") ? [r.headers.get("warning") as string] : [];
    let results: DicomJsonDataset[];
    try {
      const parsed = JSON.parse(await r.text()) as unknown;
      if (!Array.isArray(parsed)) throw new Error("not an array");
      results = parsed as DicomJsonDataset[];
    } catch (err) {
      throw new UpstreamError(
        502,
        `${this.label} answered search ${path} with something that is not DICOM JSON: ${(err as Error).message}`,
      );
    }
    normalizeDicomJson(results, this.client.root.href);
    const includeAll = query.getAll("includefield").some((v) => v.split(",").some((f) => f.trim().toLowerCase() === "all"));
    if (includeAll && path.endsWith("/instances") && this.capabilities.includefieldAll === false) {
      await mapLimited(results, 4, async (ds) => {
        const uid = (tag: string) => (ds[tag] as { Value?: unknown[] } | undefined)?.Value?.[0];
        const [study, series, sop] = [uid("0020000D"), uid("0020000E"), uid("00080018")];
        if (typeof study !== "string" || typeof series !== "string" || typeof sop !== "string") return;
        const meta = await this.metadata(`/studies/${study}/series/${series}/instances/${sop}/metadata`);
        const full = (JSON.parse(meta.text) as DicomJsonDataset[])[0];
        if (full) mergeIncludeAll(ds, full);
      });
    }
    return { results, warnings };
  }

  // ---- What grant rules look at ----

  /**
   * Patient ID, Issuer of Patient ID and Institution Name of a study, from one of its instances
   * (undefined when the upstream has no such study). Remembered for a minute; concurrent
   * questions about one study share the upstream's answer.
   */
  studyAccessAttributes(studyUid: string): Promise<AccessAttributes | undefined> {
    const hit = this.accessAttributes.get(studyUid);
    if (hit && hit.untilMs > Date.now()) return hit.value;
    const query = new URLSearchParams({ limit: "1" });
    for (const tag of Object.values(ACCESS_TAGS)) query.append("includefield", tag);
    const value = this.search(`/studies/${studyUid}/instances`, query).then(({ results }) =>
      results[0] ? accessAttributesOf(results[0], studyUid) : undefined,
    );
    if (this.accessAttributes.size >= ACCESS_ATTRIBUTES_KEPT)
      this.accessAttributes.delete(this.accessAttributes.keys().next().value as string);
    this.accessAttributes.set(studyUid, { value, untilMs: Date.now() + ACCESS_ATTRIBUTES_MS });
    // A failed question is not remembered: the next request asks again.
    value.catch(() => this.accessAttributes.delete(studyUid));
    return value;
  }

  // ---- Metadata ----

  /** Metadata at study, series or instance level (path ends with /metadata), cached and revalidated. */
  async metadata(path: string): Promise<JsonAnswer> {
    const key = `${path}\n${JSON_ACCEPT}`;
    const cached = await this.metadataCache.peek(key).then((b) => (b ? decodeEntry(b) : undefined));
    const maxAgeMs = this.options.settings.metadataMaxAgeSeconds * 1000;
    if (cached && Date.now() - cached.meta.storedAt < maxAgeMs) {
      this.options.onLookup?.("upstream-metadata", true);
      return this.answer(cached, false);
    }
    this.options.onLookup?.("upstream-metadata", false);
    try {
      const fresh = await this.fetchMetadata(path, cached);
      // The answer does not wait for the disk: the entry is in the memory tier at once.
      void this.metadataCache.put(key, encodeEntry(fresh.meta, fresh.body));
      return this.answer(fresh, false);
    } catch (err) {
      // The upstream is down or broken: what is cached is better than nothing (a 404 is an answer, not a failure).
      if (cached && err instanceof UpstreamError) return this.answer(cached, true);
      throw err;
    }
  }

  private answer(entry: CacheEntry, stale: boolean): JsonAnswer {
    return { text: entry.body.toString("utf8"), stale, etag: entry.meta.etag ?? `${entry.body.length}-${entry.meta.storedAt}` };
  }

  private async fetchMetadata(path: string, cached: CacheEntry | undefined): Promise<CacheEntry> {
    const study = /^\/studies\/([^/]+)\/metadata$/.exec(path);
    if (study && this.capabilities.studyMetadata === false) return this.assembleStudyMetadata(study[1] as string);
    const headers: Record<string, string> = { accept: JSON_ACCEPT };
    if (cached?.meta.etag) headers["if-none-match"] = cached.meta.etag;
    const r = await this.client.request({ path, headers });
    if (r.status === 304 && cached) {
      r.discard();
      return { meta: { ...cached.meta, storedAt: Date.now() }, body: cached.body };
    }
    if (r.status !== 200) {
      if (study && this.capabilities.studyMetadata === null && CANNOT.has(r.status)) {
        r.discard();
        return this.assembleStudyMetadata(study[1] as string);
      }
      return failed(this.label, r, `metadata ${path}`);
    }
    let json: DicomJsonDataset[];
    try {
      json = JSON.parse(await r.text()) as DicomJsonDataset[];
      if (!Array.isArray(json)) throw new Error("not an array");
    } catch (err) {
      throw new UpstreamError(
        502,
        `${this.label} answered metadata ${path} with something that is not DICOM JSON: ${(err as Error).message}`,
      );
    }
    const body = Buffer.from(JSON.stringify(normalizeDicomJson(json, this.client.root.href)), "utf8");
    const etag = r.headers.get("etag") ?? undefined;
    return { meta: { contentType: `${JSON_ACCEPT}; charset=utf-8`, storedAt: Date.now(), ...(etag ? { etag } : {}) }, body };
  }

  /** Study-level metadata for an upstream that has none: the metadata of each of its series, one after the other. */
  private async assembleStudyMetadata(study: string): Promise<CacheEntry> {
    const { results } = await this.search(`/studies/${study}/series`, new URLSearchParams());
    if (results.length === 0) throw new DicomwebError(404, `${this.label} has no study ${study}`);
    const all: string[] = [];
    for (const series of results) {
      const uid = (series["0020000E"] as { Value?: unknown[] } | undefined)?.Value?.[0];
      if (typeof uid !== "string") continue;
      const text = (await this.metadata(`/studies/${study}/series/${uid}/metadata`)).text.trim();
      if (text.length > 2) all.push(text.slice(1, -1));
    }
    return {
      meta: { contentType: `${JSON_ACCEPT}; charset=utf-8`, storedAt: Date.now() },
      body: Buffer.from(`[${all.join(",")}]`, "utf8"),
    };
  }

  // ---- Frames ----

  /**
   * Frame `n` of an instance in a representation the client's Accept allows: from the upstream
   * when it can, else made here from the frame as stored. Cached by (SOP Instance UID, frame, what was asked).
   */
  async frame(instancePath: string, sopUid: string, n: number, ranges: readonly AcceptRange[]): Promise<BodyPart> {
    const { asked, key } = frameRequest(sopUid, n, ranges);
    const bytes = await this.frameCache.get(key, async () => {
      const part = await this.fetchFrame(instancePath, n, ranges, asked);
      return encodeEntry({ contentType: part.contentType, storedAt: Date.now() }, part.bytes);
    });
    const entry = decodeEntry(bytes);
    if (!entry) throw new Error(`unreadable frame cache entry ${key}`);
    return { contentType: entry.meta.contentType, bytes: entry.body };
  }

  /**
   * Like `frame`, but a frame that is not cached yet streams: the upstream's part goes to the
   * client as it arrives (no wait for the whole frame) and into the cache once complete; requests
   * for it meanwhile wait for that cache entry. What the upstream cannot make goes through `frame`.
   */
  async frameStream(
    instancePath: string,
    sopUid: string,
    n: number,
    ranges: readonly AcceptRange[],
  ): Promise<{ contentType: string; body: Buffer | AsyncIterable<Buffer> }> {
    const { asked, key } = frameRequest(sopUid, n, ranges);
    const whole = async () => {
      const part = await this.frame(instancePath, sopUid, n, ranges);
      return { contentType: part.contentType, body: part.bytes };
    };
    if (this.frameCache.holds(key) || !this.upstreamMakes(ranges)) return whole();
    const r = await this.client.request({ path: `${instancePath}/frames/${n}`, headers: { accept: asked } });
    const type = r.headers.get("content-type");
    if (r.status !== 200 && !CANNOT.has(r.status)) return failed(this.label, r, `frame ${n} of ${instancePath}`);
    const part = r.status === 200 && isMultipart(type) && r.body ? await openFirstPart(r.body, type) : undefined;
    if (!part || !partAcceptable(part.contentType, ranges)) {
      await part?.chunks.return(undefined);
      r.discard();
      return whole();
    }
    const { contentType, chunks } = part;
    let settle: (entry: Buffer) => void = () => undefined;
    let fail: (err: unknown) => void = () => undefined;
    const complete = new Promise<Buffer>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    complete.catch(() => undefined);
    void this.frameCache.get(key, () => complete).catch(() => undefined);
    async function* body(): AsyncGenerator<Buffer> {
      const collected: Buffer[] = [];
      try {
        for await (const chunk of chunks) {
          collected.push(chunk);
          yield chunk;
        }
        settle(encodeEntry({ contentType, storedAt: Date.now() }, Buffer.concat(collected)));
      } finally {
        // Cut short (upstream or client gone): nothing is cached. A no-op once settled.
        fail(new Error(`frame ${n} of ${instancePath} was not read to its end`));
      }
    }
    return { contentType, body: body() };
  }

  private upstreamMakes(ranges: readonly AcceptRange[]): boolean {
    const known = this.capabilities.frameMediaTypes;
    if (known === null) return true;
    const preferred = [...ranges].filter((r) => r.q > 0).sort((a, b) => b.q - a.q)[0];
    if (!preferred) return false;
    const type = preferred.mediaType.toLowerCase();
    const part = type.startsWith("multipart/") ? (preferred.params.type ?? OCTET_STREAM).toLowerCase() : type;
    if (part === "*/*") return true;
    const name = part === OCTET_STREAM && preferred.params["transfer-syntax"] === "*" ? `${OCTET_STREAM}; transfer-syntax=*` : part;
    return known.includes(name);
  }

  private async fetchFrame(instancePath: string, n: number, ranges: readonly AcceptRange[], asked: string): Promise<BodyPart> {
    if (this.upstreamMakes(ranges)) {
      const r = await this.client.request({ path: `${instancePath}/frames/${n}`, headers: { accept: asked } });
      const type = r.headers.get("content-type");
      if (r.status === 200 && isMultipart(type) && r.body) {
        const part = await firstPart(r.body, type);
        if (part && partAcceptable(part.contentType, ranges)) return part;
      } else if (!CANNOT.has(r.status)) {
        return failed(this.label, r, `frame ${n} of ${instancePath}`);
      } else r.discard();
    }
    return this.transcodedFrame(instancePath, n, ranges);
  }

  /** The frame as the upstream stores it (or uncompressed when it cannot say), with its syntax. */
  async storedFrame(instancePath: string, n: number): Promise<{ bytes: Buffer; syntax: string }> {
    for (const accept of [AS_STORED, UNCOMPRESSED]) {
      const r = await this.client.request({ path: `${instancePath}/frames/${n}`, headers: { accept } });
      const type = r.headers.get("content-type");
      if (r.status === 200 && isMultipart(type) && r.body) {
        const part = await firstPart(r.body, type);
        if (part) return { bytes: part.bytes, syntax: syntaxOfPart(part.contentType) };
        continue;
      }
      if (!CANNOT.has(r.status)) return failed(this.label, r, `frame ${n} of ${instancePath}`);
      r.discard();
    }
    throw new DicomwebError(502, `${this.label} gives frame ${n} of ${instancePath} neither as stored nor uncompressed`);
  }

  /** Gap filling: the frame as stored, transcoded here into what the client asked for. */
  private async transcodedFrame(instancePath: string, n: number, ranges: readonly AcceptRange[]): Promise<BodyPart> {
    const stored = await this.storedFrame(instancePath, n);
    const choice = chooseFrameRepresentation(ranges, stored.syntax);
    if (!choice)
      throw new DicomwebError(
        406,
        `no frame representation the Accept header allows can be made from frame ${n} of ${instancePath} (stored as ${stored.syntax} at ${this.label})`,
      );
    const contentType = `${choice.mediaType}; transfer-syntax=${choice.transferSyntaxUid}`;
    const native = NATIVE_SYNTAXES.has(stored.syntax);
    if (choice.transferSyntaxUid === stored.syntax || (native && choice.transferSyntaxUid === TS.ExplicitVRLittleEndian))
      return { contentType, bytes: stored.bytes };
    const info = await this.frameInfo(instancePath);
    const out = await this.options.pool.transcodeFrame(
      stored.bytes,
      native ? TS.ExplicitVRLittleEndian : stored.syntax,
      info,
      choice.transferSyntaxUid,
      {
        transfer: true,
      },
    );
    return { contentType, bytes: Buffer.from(out.bytes.buffer, out.bytes.byteOffset, out.bytes.byteLength) };
  }

  /** The instance's metadata as a Dataset (no bulk data): Image Pixel and presentation attributes. */
  async instanceDataset(instancePath: string): Promise<ReturnType<typeof datasetOfMetadata>> {
    const meta = await this.metadata(`${instancePath}/metadata`);
    const first = (JSON.parse(meta.text) as DicomJsonDataset[])[0];
    if (!first) throw new DicomwebError(502, `${this.label} answered metadata of ${instancePath} with no dataset`);
    return datasetOfMetadata(first);
  }

  // ---- Rendered ----

  /**
   * A rendered image or thumbnail (path below the root with its query): from the upstream when it
   * makes them, else from `local()`. Cached by path, query and image type.
   */
  async rendered(pathWithQuery: string, mediaType: string, thumbnail: boolean, local: () => Promise<Buffer>): Promise<BodyPart> {
    const key = `${pathWithQuery}\n${mediaType}`;
    const bytes = await this.renderedCache.get(key, async () => {
      const can = thumbnail ? this.capabilities.thumbnail : this.capabilities.rendered;
      if (can !== false) {
        const r = await this.client.request({ path: pathWithQuery, headers: { accept: mediaType } });
        const type = r.headers.get("content-type") ?? "";
        if (r.status === 200 && (type.toLowerCase().startsWith(mediaType) || isMultipart(type))) {
          return encodeEntry({ contentType: type, storedAt: Date.now() }, await r.bytes());
        }
        // Known to render, a 404 means "no such instance"; otherwise it may mean "no such route".
        if (r.status === 200 || (can === true && r.status === 404) || !(CANNOT.has(r.status) || r.status === 404)) {
          if (r.status === 200) {
            r.discard();
            throw new DicomwebError(
              502,
              `${this.label} answered ${pathWithQuery} with ${type || "no Content-Type"} instead of ${mediaType}`,
            );
          }
          return failed(this.label, r, pathWithQuery);
        }
        r.discard();
      }
      return encodeEntry({ contentType: mediaType, storedAt: Date.now() }, await local());
    });
    const entry = decodeEntry(bytes);
    if (!entry) throw new Error(`unreadable rendered cache entry ${key}`);
    return { contentType: entry.meta.contentType, bytes: entry.body };
  }

  private async frameInfo(instancePath: string): Promise<FrameInfo> {
    return frameInfoOf((await this.instanceDataset(instancePath)).dataset);
  }
}

async function mapLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

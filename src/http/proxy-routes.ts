/**
 * Proxy mode routes: the DICOMweb URL space of the archive, answered by an upstream archive.
 * Search and metadata are DICOM JSON read whole (the authorization filter and the caches need
 * them) with their URLs rewritten to this gateway; frames and rendered images go through the
 * caches and the gap filling; everything else (retrieve of instances, bulk data, STOW, DELETE)
 * streams through with backpressure, binary parts untouched. Every request is classified and
 * noted (noteAccess) like the archive's, so identity, authorization, rate-limit and audit hooks
 * work the same.
 */
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { CodecPool } from "../codec/index.js";
import type { Config } from "../config.js";
import type { DicomJsonDataset } from "../dicom/index.js";
import { DicomwebError, parseFrameList } from "../dicomweb/wado.js";
import { classifyRequest, noteAccess } from "../gateway/request-state.js";
import { accessFor } from "../gateway/http-auth.js";
import { attributeTags, filterSearchResults, proxyAccessGuard } from "../gateway/proxy-access.js";
import { type Upstream, UpstreamSet } from "../gateway/upstream/index.js";
import { firstString } from "../gateway/upstream/datasets.js";
import { renderInstance } from "../gateway/upstream/local-render.js";
import { normalizeDicomJson, normalizeUrl, withPublicBase } from "../gateway/upstream/rewrite.js";
import { imageType, renderParams } from "./rendered-routes.js";
import { negotiate, parseAccept } from "./accept.js";
import { createBoundary, multipartRelatedContentType, multipartRelatedStream, type ResponsePart } from "./multipart-response.js";
import { publicBaseResolver } from "./public-url.js";
import { parseRange } from "./wado-routes.js";

export interface ProxyRouteOptions {
  upstream: Upstream;
  /** Path of this DICOMweb root on the gateway: "/dicomweb" or "/upstreams/<name>/dicomweb" (not `prefix`: Fastify would prefix the routes with it). */
  root: string;
  publicBase(request: FastifyRequest): string;
  /** The configured DICOMweb path (classifying requests below any root). */
  dicomwebPath: string;
  allowDelete: boolean;
}

interface Scope {
  study?: string;
  series?: string;
  instance?: string;
  frames?: string;
}

const DICOM_JSON = "application/dicom+json";
/** Request headers a DICOMweb upstream needs to answer the same question. */
const FORWARDED_REQUEST_HEADERS = ["accept", "range", "if-range", "if-none-match", "if-modified-since", "content-type", "content-length"];
/** Response headers passed back as they are. */
const PASSED_RESPONSE_HEADERS = [
  "content-type",
  "content-length",
  "etag",
  "last-modified",
  "content-range",
  "accept-ranges",
  "warning",
  "retry-after",
];

const acceptOf = (request: FastifyRequest): string => (request.headers.accept?.trim() ? request.headers.accept : "*/*");

/** Path below this root with its query, as the upstream gets it. */
function below(request: FastifyRequest, prefix: string): string {
  return request.url.slice(prefix.length) || "/";
}

/** Notes the study/series/instance the URL names (audit, authorization). */
function noteTarget(request: FastifyRequest, prefix: string): void {
  const target = classifyRequest(request.method, below(request, prefix));
  if (target?.studyUid) noteAccess(request, { studyUid: target.studyUid, seriesUid: target.seriesUid, sopUid: target.sopUid });
}

const etagOf = (text: string): string => `"${createHash("sha1").update(text).digest("base64url")}"`;

function notModified(request: FastifyRequest, etag: string): boolean {
  const header = request.headers["if-none-match"];
  return header !== undefined && (header.trim() === "*" || header.split(",").some((t) => t.trim().replace(/^W\//, "") === etag));
}

export async function proxyRoutes(app: FastifyInstance, options: ProxyRouteOptions): Promise<void> {
  const { upstream, root } = options;
  const lookup = (studyUid: string) => upstream.studyAccessAttributes(studyUid);
  // Per-study authorization with this upstream's answers (encapsulated: these routes only).
  app.addHook("preHandler", proxyAccessGuard(options.dicomwebPath, lookup));
  // STOW bodies stream to the upstream as they arrive.
  app.addContentTypeParser("*", (_request, payload, done) => done(null, payload));

  // ---- Pass-through: retrieve of instances, bulk data, STOW, DELETE ----
  const passThrough = async (request: FastifyRequest, reply: FastifyReply) => {
    const headers: Record<string, string> = { "accept-encoding": "identity" };
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = request.headers[name];
      if (typeof value === "string") headers[name] = value;
    }
    const withBody = request.method === "POST" || request.method === "PUT";
    const r = await upstream.request({
      method: request.method,
      path: below(request, root),
      headers,
      ...(withBody ? { body: request.body as Readable } : {}),
    });
    if (r.status >= 400) {
      const detail = (await r.text().catch(() => "")).replace(/\s+/g, " ").slice(0, 300);
      throw new DicomwebError(r.status < 500 ? r.status : 502, `${upstream.label} answered HTTP ${r.status}${detail ? `: ${detail}` : ""}`);
    }
    noteTarget(request, root);
    const base = options.publicBase(request);
    const type = r.headers.get("content-type") ?? "";
    // A STOW response (DICOM JSON) names the stored instances by their upstream URLs.
    if (withBody && type.toLowerCase().includes("json")) {
      const json = JSON.parse(await r.text()) as DicomJsonDataset;
      normalizeDicomJson(json, upstream.client.root.href);
      const referenced = ((json["00081199"] as { Value?: DicomJsonDataset[] } | undefined)?.Value ?? []).map((item) =>
        firstString(item, "00081155"),
      );
      for (const sopUid of referenced) if (sopUid) noteAccess(request, { sopUid });
      return reply
        .code(r.status)
        .type(type)
        .send(withPublicBase(JSON.stringify(json), base));
    }
    void reply.code(r.status);
    for (const name of PASSED_RESPONSE_HEADERS) {
      const value = r.headers.get(name);
      if (value !== null) void reply.header(name, value);
    }
    const location = r.headers.get("content-location");
    if (location) void reply.header("content-location", withPublicBase(normalizeUrl(location, upstream.client.root.href), base));
    if (!r.body || r.status === 204 || r.status === 304) {
      r.discard();
      return reply.send();
    }
    return reply.send(r.body);
  };
  app.get(`${root}/*`, passThrough);
  app.post(`${root}/studies`, passThrough);
  app.post(`${root}/studies/:study`, passThrough);
  if (options.allowDelete) app.delete(`${root}/*`, passThrough);

  // ---- Search ----
  const search = async (request: FastifyRequest, reply: FastifyReply) => {
    const chosen = negotiate(acceptOf(request), [{ mediaType: DICOM_JSON }, { mediaType: "application/json" }]);
    if (!chosen) throw new DicomwebError(406, `search results are available as ${DICOM_JSON} in proxy mode; the Accept header allows none`);
    const path = below(request, root);
    const q = path.indexOf("?");
    const query = new URLSearchParams(q >= 0 ? path.slice(q + 1) : "");
    const grant = accessFor(request, "search");
    // Rules on patients or institutions: the results must say whose they are to be filtered.
    for (const tag of grant ? attributeTags(grant) : []) query.append("includefield", tag);
    const { results, warnings } = await upstream.search(q >= 0 ? path.slice(0, q) : path, query);
    const visible = await filterSearchResults(request, results, lookup);
    for (const ds of visible) {
      const study = firstString(ds, "0020000D");
      if (study)
        noteAccess(request, {
          studyUid: study,
          seriesUid: firstString(ds, "0020000E"),
          sopUid: firstString(ds, "00080018"),
          patientId: firstString(ds, "00100020"),
        });
    }
    // The upstream's count of further results includes what the grant hides: only say that there are more.
    const told = grant ? warnings.map((w) => w.replace(/\b\d+ additional results\b/i, "additional results")) : warnings;
    if (told.length > 0) void reply.header("Warning", told);
    return reply
      .type(`${chosen.offer.mediaType}; charset=utf-8`)
      .send(withPublicBase(JSON.stringify(visible), options.publicBase(request)));
  };
  for (const path of [
    "/studies",
    "/series",
    "/instances",
    "/studies/:study/series",
    "/studies/:study/instances",
    "/studies/:study/series/:series/instances",
  ])
    app.get(`${root}${path}`, search);

  // ---- Metadata (JSON cached; XML streams through) ----
  const metadata = async (request: FastifyRequest, reply: FastifyReply) => {
    const chosen = negotiate(acceptOf(request), [
      { mediaType: DICOM_JSON },
      { mediaType: "application/json" },
      { mediaType: "multipart/related", params: { type: "application/dicom+xml" } },
    ]);
    if (!chosen) throw new DicomwebError(406, `metadata is available as ${DICOM_JSON} or multipart/related; type="application/dicom+xml"`);
    if (chosen.offer.mediaType === "multipart/related") return passThrough(request, reply);
    const path = below(request, root).split("?")[0] as string;
    const answer = await upstream.metadata(path);
    noteTarget(request, root);
    const text = withPublicBase(answer.text, options.publicBase(request));
    const etag = etagOf(text);
    void reply.header("ETag", etag).header("Cache-Control", "no-cache").header("Vary", "Accept");
    if (answer.stale)
      void reply.header("Warning", [`110 - "Response is stale"`, `111 - "Revalidation failed: ${upstream.name} is unavailable"`]);
    if (notModified(request, etag)) return reply.code(304).send();
    return reply.type(`${chosen.offer.mediaType}; charset=utf-8`).send(text);
  };
  for (const level of ["/studies/:study", "/studies/:study/series/:series", "/studies/:study/series/:series/instances/:instance"])
    app.get(`${root}${level}/metadata`, metadata);

  // ---- Frames ----
  app.get<{ Params: Scope }>(`${root}/studies/:study/series/:series/instances/:instance/frames/:frames`, async (request, reply) => {
    const { study, series, instance } = request.params as Required<Scope>;
    const numbers = parseFrameList(request.params.frames ?? "");
    const ranges = parseAccept(acceptOf(request));
    const preferred = [...ranges].filter((r) => r.q > 0).sort((a, b) => b.q - a.q)[0];
    if (!preferred) throw new DicomwebError(406, "the Accept header allows no frame representation");
    const multipart = preferred.mediaType.startsWith("multipart/") || preferred.mediaType === "*/*";
    if (!multipart && numbers.length > 1)
      throw new DicomwebError(406, `${numbers.length} frames cannot be sent as a single part; accept multipart/related`);
    const instancePath = `/studies/${study}/series/${series}/instances/${instance}`;
    const first = numbers[0] as number;
    if (!multipart) {
      const head = await upstream.frame(instancePath, instance, first, ranges);
      noteTarget(request, root);
      void reply.header("Accept-Ranges", "bytes");
      const range = parseRange(request.headers.range, head.bytes.length);
      if (range === "unsatisfiable") {
        void reply.header("Content-Range", `bytes */${head.bytes.length}`);
        throw new DicomwebError(416, `the Range ${request.headers.range} lies outside the ${head.bytes.length} bytes`);
      }
      if (range) {
        void reply.code(206).header("Content-Range", `bytes ${range.start}-${range.end - 1}/${head.bytes.length}`);
        return reply.type(head.contentType).send(head.bytes.subarray(range.start, range.end));
      }
      return reply.type(head.contentType).send(head.bytes);
    }
    // The first frame is there (or streaming) before any header goes out, so a failure is a proper status.
    const head = await upstream.frameStream(instancePath, instance, first, ranges);
    noteTarget(request, root);
    const base = `${options.publicBase(request)}${instancePath}/frames/`;
    const [partType, ...partParams] = head.contentType.split(";").map((s) => s.trim());
    const params: Record<string, string> = {};
    for (const p of partParams) {
      const eq = p.indexOf("=");
      if (eq > 0) params[p.slice(0, eq).toLowerCase()] = p.slice(eq + 1).replace(/^"|"$/g, "");
    }
    async function* parts(): AsyncGenerator<ResponsePart> {
      yield { contentType: head.contentType, headers: { "Content-Location": base + first }, body: head.body };
      for (const n of numbers.slice(1)) {
        const part = await upstream.frame(instancePath, instance, n, ranges);
        yield { contentType: part.contentType, headers: { "Content-Location": base + n }, body: part.bytes };
      }
    }
    const boundary = createBoundary();
    return reply
      .type(multipartRelatedContentType(boundary, partType as string, params))
      .send(multipartRelatedStream(parts(), { boundary, contentType: head.contentType }));
  });

  // ---- Rendered and thumbnails ----

  /** The instance a study or series thumbnail shows: the middle one (by Instance Number) of the (first) series. */
  const thumbnailInstance = async (study: string, series: string | undefined): Promise<string> => {
    let seriesUid = series;
    if (!seriesUid) {
      const { results } = await upstream.search(`/studies/${study}/series`, new URLSearchParams());
      seriesUid = results.map((ds) => firstString(ds, "0020000E")).find((uid) => uid !== undefined);
      if (!seriesUid) throw new DicomwebError(404, `${upstream.label} has no series in study ${study}`);
    }
    const { results } = await upstream.search(`/studies/${study}/series/${seriesUid}/instances`, new URLSearchParams());
    const number = (ds: DicomJsonDataset) => Number((ds["00200013"] as { Value?: unknown[] } | undefined)?.Value?.[0] ?? 0);
    const sorted = results.sort((a, b) => number(a) - number(b));
    const middle = sorted[Math.floor(sorted.length / 2)];
    const sop = middle ? firstString(middle, "00080018") : undefined;
    if (!sop) throw new DicomwebError(404, `${upstream.label} has no instance in series ${seriesUid}`);
    return `/studies/${study}/series/${seriesUid}/instances/${sop}`;
  };

  const rendered = (thumbnail: boolean) => async (request: FastifyRequest<{ Params: Scope }>, reply: FastifyReply) => {
    const { study, series, instance, frames } = request.params;
    const mediaType = imageType(request);
    const params = renderParams(request, thumbnail);
    const local = async (): Promise<Buffer> => {
      const numbers = frames !== undefined ? parseFrameList(frames) : undefined;
      if (numbers && numbers.length > 1 && !thumbnail)
        throw new DicomwebError(
          406,
          `${upstream.label} cannot render frame lists and the gateway renders one frame at a time here: ask for one frame`,
        );
      if (instance !== undefined) {
        return renderInstance(
          upstream,
          `/studies/${study}/series/${series}/instances/${instance}`,
          numbers?.[0],
          params,
          mediaType,
          thumbnail,
        );
      }
      if (!thumbnail)
        throw new DicomwebError(
          406,
          `${upstream.label} does not render ${series ? "series" : "studies"}; the gateway renders instances, frames and thumbnails`,
        );
      return renderInstance(upstream, await thumbnailInstance(study as string, series), undefined, params, mediaType, true);
    };
    const image = await upstream.rendered(below(request, root), mediaType, thumbnail, local);
    noteTarget(request, root);
    for (const w of params.warnings) void reply.header("Warning", `299 ${request.headers.host ?? "-"} "${w.replace(/"/g, "'")}"`);
    return reply.type(image.contentType).send(image.bytes);
  };
  const levels = ["/studies/:study", "/studies/:study/series/:series", "/studies/:study/series/:series/instances/:instance"];
  for (const level of [...levels, `${levels[2]}/frames/:frames`]) {
    app.get(`${root}${level}/rendered`, rendered(false));
    app.get(`${root}${level}/thumbnail`, rendered(true));
  }
}

/**
 * Proxy mode in buildApp: the upstreams, their routes (the first also at the DICOMweb root) and
 * GET /api/capabilities. Returns the set for /readyz.
 */
export async function registerProxy(
  app: FastifyInstance,
  config: Config,
  deps: { pool: CodecPool; cacheDir: string; onLookup?: (cache: string, hit: boolean) => void },
): Promise<UpstreamSet> {
  const set = new UpstreamSet({
    upstreams: config.upstreams,
    pool: deps.pool,
    cacheDir: deps.cacheDir,
    metadataCacheBytes: config.metadataCacheBytes,
    nativeCacheBytes: config.nativeCacheBytes,
    renderedCacheBytes: config.renderedCacheBytes,
    onLookup: deps.onLookup,
    log: (message) => app.log.warn(message),
  });
  const prefixesOf = (u: Upstream, i: number) => [...(i === 0 ? [config.dicomwebPath] : []), `/upstreams/${u.name}${config.dicomwebPath}`];
  for (const [i, upstream] of set.all.entries()) {
    for (const prefix of prefixesOf(upstream, i)) {
      const publicBase = publicBaseResolver({ publicUrl: config.publicUrl, dicomwebPath: prefix, trustedProxies: config.trustedProxies });
      await app.register(proxyRoutes, {
        upstream,
        root: prefix,
        publicBase,
        dicomwebPath: config.dicomwebPath,
        allowDelete: config.allowDelete,
      });
    }
  }
  app.get("/api/capabilities", async () => ({ mode: "proxy", upstreams: set.report(prefixesOf) }));
  set.start();
  app.addHook("onClose", async () => set.stop());
  return set;
}

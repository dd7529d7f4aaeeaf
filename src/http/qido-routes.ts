/**
 * QIDO-RS routes (PS3.18 §10.6): GET (and HEAD, which Fastify derives from GET) on
 *   {prefix}/studies, /series, /instances,
 *   /studies/{study}/series, /studies/{study}/instances, /studies/{study}/series/{series}/instances.
 *
 * Register with `app.register(qidoRoutes, ctx)` (or await `qidoRoutes(app, ctx)`); `ctx` is the
 * RouteContext, optionally with `qidoMaxResults` (default 1000).
 *
 * Responses:
 * - 200 application/dicom+json (the default; also for Accept application/*, * / * or no Accept;
 *   `application/json` when only that was accepted), `[]` when nothing matches (PS3.18 2024+
 *   §10.6.3 allows 200 with an empty list; clients handle it more uniformly than 204).
 * - 200 multipart/related; type="application/dicom+xml", one part per match; 204 when nothing
 *   matches (a multipart body needs at least one part, RFC 2046 §5.1.1).
 * - Warning: 299 {host} "There are N additional results that can be requested" when the page
 *   was cut by limit or by the server maximum (PS3.18 §8.3.4.4.1); also a 299 Warning when
 *   emptyvaluematching=true is asked (not supported).
 * - 400 / 406 as application/json `{ "error": "<what is wrong>: <what to change>" }`, the shape
 *   every error of the server has (errors.ts).
 * - ETag (weak, from the body) with 304 on If-None-Match; Vary: Accept.
 * The `accept` query parameter (PS3.18 §8.3.3.1) overrides the Accept header; `charset`
 * (§8.3.3.2) must allow UTF-8.
 */
import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  DEFAULT_MAX_RESULTS,
  finishResult,
  parseQidoQuery,
  parseQueryString,
  QidoError,
  remainingWarning,
  warningHeader,
  xmlMultipart,
} from "../dicomweb/qido.js";
import { accessFor } from "../gateway/http-auth.js";
import { noteSearchResults } from "../gateway/audit/note.js";
import type { Level } from "../store/query.js";
import { negotiate, type Offer } from "./accept.js";
import type { RouteContext } from "./context.js";
import { createBoundary, multipartRelatedContentType } from "./multipart-response.js";

export interface QidoRouteOptions extends RouteContext {
  /** Most results one response holds (config qidoMaxResults); a larger or absent limit is cut to this, with a Warning. */
  qidoMaxResults?: number;
  /** Same as qidoMaxResults (either name is read). */
  maxResults?: number;
  /** What to do with a parameter that is neither a QIDO-RS parameter nor an attribute: see QidoOptions. Default "reject" (400). */
  qidoUnknownParameters?: "reject" | "ignore";
}

type Format = { kind: "json"; contentType: string } | { kind: "xml" };

interface QidoOffer extends Offer {
  format: Format;
}

/** Server preference order: DICOM JSON first (the default for * / * and application/*). */
const OFFERS: readonly QidoOffer[] = [
  { mediaType: "application/dicom+json", params: { charset: "utf-8" }, format: { kind: "json", contentType: "application/dicom+json" } },
  { mediaType: "application/json", params: { charset: "utf-8" }, format: { kind: "json", contentType: "application/json" } },
  { mediaType: "multipart/related", params: { type: "application/dicom+xml", charset: "utf-8" }, format: { kind: "xml" } },
];

const utf8Allowed = (charset: string | undefined): boolean =>
  charset === undefined || charset.split(",").some((c) => ["utf-8", "utf8", "*"].includes(c.trim().toLowerCase().replace(/;.*$/, "")));

/** The response format for an Accept value, or undefined when none can be produced (406). */
export function negotiateQido(accept: string | undefined): Format | undefined {
  return negotiate(accept?.trim() ? accept : "*/*", OFFERS)?.offer.format;
}

const SEARCHES: ReadonlyArray<[string, Level]> = [
  ["/studies", "study"],
  ["/series", "series"],
  ["/instances", "instance"],
  ["/studies/:study/series", "series"],
  ["/studies/:study/instances", "instance"],
  ["/studies/:study/series/:series/instances", "instance"],
];

/** The server's error shape (errors.ts): `{ "error": reason }`, the reason saying what to change. */
function sendError(reply: FastifyReply, status: number, error: string, detail: string): FastifyReply {
  return reply
    .code(status)
    .type("application/json; charset=utf-8")
    .send(JSON.stringify({ error: `${error}: ${detail}` }));
}

const etagOf = (body: Buffer | string): string => `W/"${createHash("sha1").update(body).digest("base64url")}"`;

function notModified(request: FastifyRequest, etag: string): boolean {
  const header = request.headers["if-none-match"];
  if (!header) return false;
  return header.split(",").some((t) => {
    const tag = t.trim();
    return tag === "*" || tag === etag || tag.replace(/^W\//, "") === etag.replace(/^W\//, "");
  });
}

export async function qidoRoutes(app: FastifyInstance, ctx: QidoRouteOptions): Promise<void> {
  const prefix = ctx.dicomwebPrefix.replace(/\/+$/, "");
  const maxResults = ctx.qidoMaxResults ?? ctx.maxResults ?? DEFAULT_MAX_RESULTS;

  for (const [path, level] of SEARCHES) {
    app.get(`${prefix}${path}`, async (request, reply) => {
      const q = request.url.indexOf("?");
      let params: Array<[string, string]>;
      try {
        params = parseQueryString(q >= 0 ? request.url.slice(q + 1) : "");
      } catch (err) {
        if (err instanceof QidoError) return sendError(reply, err.status, err.error, err.detail);
        throw err;
      }
      const acceptParam = params.filter(([name]) => name === "accept").map(([, value]) => value);
      const charsetParam = params.find(([name]) => name === "charset")?.[1];
      const accept = acceptParam.length > 0 ? acceptParam.join(",") : request.headers.accept;
      const format = negotiateQido(accept);
      if (!format || !utf8Allowed(charsetParam)) {
        return sendError(
          reply,
          406,
          "not acceptable",
          `QIDO-RS results are available as application/dicom+json (or application/json) and multipart/related; type="application/dicom+xml", in UTF-8; the request accepts only ${JSON.stringify(accept ?? "")}${charsetParam ? ` with charset=${charsetParam}` : ""}`,
        );
      }
      const { study, series } = request.params as { study?: string; series?: string };
      let parsed;
      try {
        parsed = parseQidoQuery(level, { studyUid: study, seriesUid: series }, params, {
          maxResults,
          unknownParameters: ctx.qidoUnknownParameters ?? "reject",
        });
      } catch (err) {
        if (err instanceof QidoError) return sendError(reply, err.status, err.error, err.detail);
        throw err;
      }
      const result = ctx.archive.index.search({ ...parsed.query, access: accessFor(request, "search") });
      const base = ctx.publicBase(request);
      const matches = finishResult(result, level, base);
      noteSearchResults(request, matches);

      let agent: string;
      try {
        agent = new URL(base).host;
      } catch {
        agent = request.host;
      }
      const warnings = parsed.warnings.map((w) => warningHeader(agent, w));
      if (result.truncated) warnings.push(remainingWarning(agent, result.remaining));
      if (warnings.length > 0) reply.header("Warning", warnings);
      reply.header("Vary", "Accept");

      if (format.kind === "xml" && matches.length === 0) return reply.code(204).send();
      let body: Buffer;
      let contentType: string;
      if (format.kind === "xml") {
        const boundary = createBoundary();
        body = xmlMultipart(matches, boundary);
        contentType = multipartRelatedContentType(boundary, "application/dicom+xml");
      } else {
        body = Buffer.from(JSON.stringify(matches), "utf8");
        contentType = format.contentType;
      }
      // The boundary is random: the ETag of a multipart response is that of its documents.
      const etag = etagOf(format.kind === "xml" ? JSON.stringify(matches) + "\nxml" : body);
      reply.header("ETag", etag);
      if (notModified(request, etag)) return reply.code(304).send();
      return reply.code(200).type(contentType).send(body);
    });
  }
}

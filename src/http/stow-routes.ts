/**
 * STOW-RS routes (PS3.18 §10.5): POST {root}/studies[/{study}] with
 *  - multipart/related; type="application/dicom" (streamed part by part),
 *  - multipart/related; type="application/dicom+json" (metadata + bulk data parts),
 *  - a single application/dicom body (one instance).
 * The response dataset comes as DICOM JSON or, when asked, XML.
 */
import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { datasetToXml, isValidUid } from "../dicom/index.js";
import { DICOM, DICOM_JSON, DICOM_XML } from "../dicomweb/media-types.js";
import type { MetadataService } from "../dicomweb/metadata.js";
import type { PixelService } from "../dicomweb/pixels.js";
import { type StowPart, StowRequestError, storeDicomParts, storeJsonParts, stowResponse } from "../dicomweb/stow.js";
import { DicomwebError } from "../dicomweb/wado.js";
import { storeGuard } from "../gateway/http-auth.js";
import { noteStored } from "../gateway/audit/note.js";
import type { IngestResult } from "../store/ingest-result.js";
import { negotiate, parseMediaType } from "./accept.js";
import type { RouteContext } from "./context.js";
import { recordInstancesStored } from "./metrics.js";
import { MultipartError, type Part, readParts } from "./multipart.js";

async function* stowParts(parts: AsyncIterable<Part>): AsyncGenerator<StowPart> {
  for await (const part of parts) {
    let params: Record<string, string> = {};
    try {
      params = { ...parseMediaType(part.contentType).params };
    } catch {
      // an unparseable part type is reported by the service as an unsupported part
    }
    yield { mediaType: part.mediaType, params, contentLocation: part.contentLocation, stream: part.stream };
  }
}

export async function stowRoutes(
  app: FastifyInstance,
  ctx: RouteContext & {
    maxInstanceBytes: number;
    /** Largest whole request (limits.store.maxRequestBytes); a Content-Length above it is refused before the route. */
    maxRequestBytes?: number;
    metadata: MetadataService;
    pixels: PixelService;
    pretranscode?: { modalities: string[]; transferSyntax: string };
  },
): Promise<void> {
  const root = ctx.dicomwebPrefix;
  // Bodies reach the handlers as raw streams: nothing is buffered by Fastify.
  // Every media type reaches the handler as a stream (this plugin's scope only), so an unsupported
  // one gets our 415 with what to send instead, not Fastify's generic answer.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, payload, done) => done(null, payload));

  const store = async (request: FastifyRequest<{ Params: { study?: string } }>, reply: FastifyReply) => {
    const expectedStudyUid = request.params.study;
    if (expectedStudyUid !== undefined && !isValidUid(expectedStudyUid)) {
      throw new DicomwebError(400, `study UID ${JSON.stringify(expectedStudyUid).slice(0, 80)} in the URL is not a valid DICOM UID`);
    }
    const wantsXml = negotiate(request.headers.accept?.trim() ? request.headers.accept : "*/*", [
      { mediaType: DICOM_JSON },
      { mediaType: "application/json" },
      { mediaType: DICOM_XML },
    ]);
    if (!wantsXml)
      throw new DicomwebError(406, `the STOW-RS response is available as ${DICOM_JSON} or ${DICOM_XML}; the Accept header allows neither`);
    const contentType = request.headers["content-type"] ?? "";
    const body = request.body as Readable;
    const ingest = { expectedStudyUid, authorize: storeGuard(request, ctx.archive.index) };
    let results: IngestResult[];
    try {
      const media = parseMediaType(contentType);
      if (media.mediaType === DICOM) {
        results = [await ctx.archive.ingestStream(body, ingest)];
      } else if (media.mediaType === "multipart/related") {
        const type = (media.params["type"] ?? "").toLowerCase();
        const parts = stowParts(readParts(body, contentType, { maxPartBytes: ctx.maxInstanceBytes, maxTotalBytes: ctx.maxRequestBytes }));
        if (type === DICOM || type === "") results = await storeDicomParts(ctx.archive, parts, ingest);
        else if (type === DICOM_JSON) results = await storeJsonParts(ctx.archive, parts, ingest);
        else {
          throw new DicomwebError(
            415,
            `multipart/related type "${type}" is not supported for STOW-RS; use type="application/dicom" or type="application/dicom+json"`,
          );
        }
      } else {
        throw new DicomwebError(
          415,
          `Content-Type ${media.mediaType} cannot be stored; send multipart/related; type="application/dicom" (or application/dicom+json), or a single application/dicom body`,
        );
      }
    } catch (err) {
      // The request could not be read to its end: nothing was stored. Close the connection, the rest of the body is unread.
      reply.header("Connection", "close");
      if (err instanceof MultipartError) {
        const setting = err.code === "BODY_TOO_LARGE" ? " (limits.store.maxRequestBytes)" : "";
        throw new DicomwebError(err.statusCode, `${err.message}${setting}; nothing from this request was stored`);
      }
      if (err instanceof StowRequestError) throw new DicomwebError(err.status, `${err.message}; nothing from this request was stored`);
      if (err instanceof DicomwebError) throw err;
      if ((err as { name?: string }).name === "MediaTypeError")
        throw new DicomwebError(400, `malformed Content-Type ${JSON.stringify(contentType)}`);
      throw err;
    }
    if (results.length === 0) throw new DicomwebError(400, "the request holds no instance to store");
    noteStored(request, results);
    recordInstancesStored(results.filter((r) => r.ok && r.status !== "identical" && r.status !== "ignored").length);
    const base = ctx.publicBase(request);
    const outcome = stowResponse(results, base);
    const series = new Map<string, string>();
    for (const r of results) if (r.ok) series.set(r.seriesUid, r.studyUid);
    for (const [seriesUid, studyUid] of series) ctx.metadata.scheduleWarm({ studyUid, seriesUid }, base);
    const policy = ctx.pretranscode;
    if (policy) {
      const rows = results.flatMap((r) =>
        r.ok && (r.status === "stored" || r.status === "overwritten") ? [ctx.archive.index.instance(r.sopUid)] : [],
      );
      void (async () => {
        for (const row of rows) if (row) await ctx.pixels.pretranscode(row, policy.transferSyntax, policy.modalities).catch(() => 0);
      })();
    }
    reply.code(outcome.status);
    if (wantsXml.offer.mediaType === DICOM_XML) return reply.type(`${DICOM_XML}; charset=utf-8`).send(datasetToXml(outcome.response));
    return reply.type(`${wantsXml.offer.mediaType}; charset=utf-8`).send(JSON.stringify(outcome.response));
  };
  app.post(`${root}/studies`, store);
  app.post(`${root}/studies/:study`, store);
}

/**
 * WADO-RS routes (PS3.18 §10.4): instances (multipart, single part, zip), metadata, frames and
 * bulk data. Content negotiation picks the representation from Accept; the services in
 * src/dicomweb do the work; bodies stream from the stored files.
 */
import { PassThrough } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import yazl from "yazl";
import { type DicomJsonDataset, datasetsToXmlDocuments } from "../dicom/index.js";
import { DICOM, DICOM_JSON, DICOM_XML, frameMediaType, MULTIPART_RELATED, OCTET_STREAM, ZIP } from "../dicomweb/media-types.js";
import { type MetadataService, plainMetadata } from "../dicomweb/metadata.js";
import {
  DicomwebError,
  findBulkData,
  instancePayload,
  notFoundReason,
  parseFrameList,
  planSyntaxes,
  readBulkData,
  type ScopeParams,
  scopeFromPath,
  scopeInstances,
} from "../dicomweb/wado.js";
import { noteInstances } from "../gateway/audit/note.js";
import type { InstanceRow } from "../store/types.js";
import { type MediaRange, type Negotiated, negotiate, type Offer, parseAccept } from "./accept.js";
import type { CodecPool } from "../codec/index.js";
import { chooseFrameRepresentation } from "../dicomweb/frame-negotiation.js";
import type { PixelService } from "../dicomweb/pixels.js";
import type { RouteContext } from "./context.js";
import { createBoundary, multipartRelatedContentType, multipartRelatedStream, type ResponsePart } from "./multipart-response.js";

function choose<O extends Offer>(request: FastifyRequest, offers: O[], what: string): Negotiated<O> {
  const accept = request.headers.accept;
  const chosen = negotiate(accept?.trim() ? accept : "*/*", offers);
  if (!chosen) {
    const list = offers.map((o) => (o.params?.type ? `${o.mediaType}; type="${o.params.type}"` : o.mediaType)).join(", ");
    throw new DicomwebError(406, `cannot answer ${what} in any media type the Accept header allows (${accept}); available: ${list}`);
  }
  return chosen;
}

const requestedSyntax = (range: MediaRange): string | undefined => range.params["transfer-syntax"];

/** Weak comparison of If-None-Match with an entity tag. */
function notModified(request: FastifyRequest, etag: string): boolean {
  const header = request.headers["if-none-match"];
  if (!header) return false;
  return header === "*" || header.split(",").some((t) => t.trim().replace(/^W\//, "") === `"${etag}"`);
}

const acceptsGzip = (request: FastifyRequest): boolean => /\bgzip\b/.test(String(request.headers["accept-encoding"] ?? ""));

export async function wadoRoutes(
  app: FastifyInstance,
  ctx: RouteContext & { metadata: MetadataService; pixels: PixelService; pool: CodecPool },
): Promise<void> {
  const root = ctx.dicomwebPrefix;
  const { archive } = ctx;

  // ---- Instances: study, series, instance ----
  const retrieve = async (request: FastifyRequest<{ Params: ScopeParams }>, reply: FastifyReply) => {
    const scope = scopeFromPath(request.params);
    const instanceLevel = scope.sopUid !== undefined;
    const offers: Offer[] = [{ mediaType: MULTIPART_RELATED, params: { type: DICOM } }, { mediaType: ZIP }];
    if (instanceLevel) offers.push({ mediaType: DICOM });
    const chosen = choose(request, offers, "this retrieve");
    const rows = scopeInstances(archive, scope);
    noteInstances(request, rows);
    const wanted = requestedSyntax(chosen.range);
    const targets = planSyntaxes(rows, wanted);
    const mediaType = chosen.offer.mediaType;
    if (mediaType === DICOM) {
      const payload = await instancePayload(archive, rows[0] as InstanceRow, targets[0] as string, ctx.pool);
      reply.header("Content-Length", payload.size);
      return reply.type(`${DICOM}; transfer-syntax=${payload.transferSyntaxUid}`).send(payload.body());
    }
    if (mediaType === ZIP) {
      const zip = new yazl.ZipFile();
      void (async () => {
        try {
          for (const [i, row] of rows.entries()) {
            const payload = await instancePayload(archive, row, targets[i] as string, ctx.pool);
            zip.addReadStream(payload.body(), `${row.studyUid}/${row.seriesUid}/${row.sopUid}.dcm`, {
              compress: false,
              size: payload.size,
            });
          }
          zip.end();
        } catch (err) {
          (zip.outputStream as unknown as NodeJS.ReadableStream & { destroy(e: Error): void }).destroy(err as Error);
        }
      })();
      reply.header("Content-Disposition", `attachment; filename="${scope.sopUid ?? scope.seriesUid ?? scope.studyUid}.zip"`);
      return reply.type(ZIP).send(zip.outputStream.pipe(new PassThrough()));
    }
    // One transfer-syntax parameter describes every part: when they differ (as stored, mixed) each part carries its own.
    const uniform = targets.every((t) => t === targets[0]);
    const boundary = createBoundary();
    async function* parts(): AsyncGenerator<ResponsePart> {
      for (const [i, row] of rows.entries()) {
        const payload = await instancePayload(archive, row, targets[i] as string, ctx.pool);
        yield {
          contentType: `${DICOM}; transfer-syntax=${payload.transferSyntaxUid}`,
          headers: {
            "Content-Length": String(payload.size),
            "Content-Location": `${ctx.publicBase(request)}/studies/${row.studyUid}/series/${row.seriesUid}/instances/${row.sopUid}`,
          },
          body: payload.body(),
        };
      }
    }
    const typeParams: Record<string, string> = uniform && wanted !== "*" ? { "transfer-syntax": targets[0] as string } : {};
    return reply
      .type(multipartRelatedContentType(boundary, DICOM, typeParams))
      .send(multipartRelatedStream(parts(), { boundary, contentType: DICOM, highWaterMark: 1024 * 1024 }));
  };
  app.get(`${root}/studies/:study`, retrieve);
  app.get(`${root}/studies/:study/series/:series`, retrieve);
  app.get(`${root}/studies/:study/series/:series/instances/:instance`, retrieve);

  // ---- Metadata ----
  const metadata = async (request: FastifyRequest<{ Params: ScopeParams }>, reply: FastifyReply) => {
    const scope = scopeFromPath(request.params);
    const chosen = choose(
      request,
      [{ mediaType: DICOM_JSON }, { mediaType: "application/json" }, { mediaType: MULTIPART_RELATED, params: { type: DICOM_XML } }],
      "metadata",
    );
    const doc = ctx.metadata.get(scope, ctx.publicBase(request));
    if (!doc) throw new DicomwebError(404, notFoundReason(scope));
    noteInstances(request, [scope]);
    if (chosen.offer.mediaType === MULTIPART_RELATED) {
      const boundary = createBoundary();
      const xml = datasetsToXmlDocuments(JSON.parse(plainMetadata(doc).toString("utf8")) as DicomJsonDataset[]);
      const bodies = xml.map((text) => ({ body: Buffer.from(text, "utf8") }));
      return reply
        .type(multipartRelatedContentType(boundary, DICOM_XML))
        .send(multipartRelatedStream(bodies, { boundary, contentType: `${DICOM_XML}; charset=utf-8` }));
    }
    reply.header("ETag", `"${doc.etag}"`);
    reply.header("Cache-Control", "no-cache");
    reply.header("Vary", "Accept, Accept-Encoding");
    if (notModified(request, doc.etag)) return reply.code(304).send();
    reply.type(`${chosen.offer.mediaType === DICOM_JSON ? DICOM_JSON : "application/json"}; charset=utf-8`);
    if (acceptsGzip(request)) {
      reply.header("Content-Encoding", "gzip");
      return reply.send(doc.gzip);
    }
    return reply.send(plainMetadata(doc));
  };
  app.get(`${root}/studies/:study/metadata`, metadata);
  app.get(`${root}/studies/:study/series/:series/metadata`, metadata);
  app.get(`${root}/studies/:study/series/:series/instances/:instance/metadata`, metadata);

  // ---- Frames ----
  app.get<{ Params: ScopeParams & { frames: string } }>(
    `${root}/studies/:study/series/:series/instances/:instance/frames/:frames`,
    async (request, reply) => {
      const scope = scopeFromPath(request.params);
      const numbers = parseFrameList(request.params.frames);
      const row = archive.index.instance(scope.sopUid as string);
      if (!row || row.studyUid !== scope.studyUid || row.seriesUid !== scope.seriesUid) throw new DicomwebError(404, notFoundReason(scope));
      noteInstances(request, [row]);
      const choice = chooseFrameRepresentation(
        parseAccept(request.headers.accept?.trim() ? request.headers.accept : "*/*"),
        row.transferSyntaxUid,
      );
      if (!choice) {
        throw new DicomwebError(
          406,
          `no frame representation the Accept header allows can be made from instance ${row.sopUid} (stored as ${row.transferSyntaxUid}); ` +
            `available: application/octet-stream (uncompressed, or transfer-syntax=* as stored), ${frameMediaType(row.transferSyntaxUid)}, ` +
            `image/jls, image/jp2, image/jphc, image/dicom-rle and image/jpeg (lossless, or a lossy syntax when named)`,
        );
      }
      const count = ctx.pixels.frameTable(row).frames.length;
      const missing = numbers.find((n) => n > count);
      if (missing !== undefined) {
        throw new DicomwebError(404, `instance ${row.sopUid} has ${count} frame${count === 1 ? "" : "s"}; frame ${missing} does not exist`);
      }
      const partType = `${choice.mediaType}; transfer-syntax=${choice.transferSyntaxUid}`;
      if (!choice.multipart) {
        if (numbers.length !== 1)
          throw new DicomwebError(406, `${numbers.length} frames cannot be sent as a single part; accept multipart/related`);
        const bytes = await ctx.pixels.frame(row, numbers[0] as number, choice.transferSyntaxUid);
        return reply.type(partType).send(rangeOf(request, reply, bytes));
      }
      const boundary = createBoundary();
      const base = `${ctx.publicBase(request)}/studies/${row.studyUid}/series/${row.seriesUid}/instances/${row.sopUid}/frames/`;
      const pixels = ctx.pixels;
      async function* parts(): AsyncGenerator<ResponsePart> {
        for (const n of numbers)
          yield {
            contentType: partType,
            headers: { "Content-Location": base + n },
            body: await pixels.frame(row as InstanceRow, n, choice?.transferSyntaxUid as string),
          };
      }
      return reply
        .type(multipartRelatedContentType(boundary, choice.mediaType, { "transfer-syntax": choice.transferSyntaxUid }))
        .send(multipartRelatedStream(parts(), { boundary, contentType: partType }));
    },
  );

  // ---- Bulk data ----
  app.get<{ Params: ScopeParams & { "*": string } }>(
    `${root}/studies/:study/series/:series/instances/:instance/bulk/*`,
    async (request, reply) => {
      const scope = scopeFromPath(request.params);
      const path = request.params["*"];
      if (!/^[0-9A-Fa-f]{8}(\/[0-9]{1,6}\/[0-9A-Fa-f]{8})*$/.test(path)) {
        throw new DicomwebError(
          400,
          `bulk data path ${JSON.stringify(path).slice(0, 80)} is not valid: tags as 8 hex digits, sequence items as numbers, e.g. 7FE00010 or 00540016/0/00181074`,
        );
      }
      const row = archive.index.instance(scope.sopUid as string);
      if (!row || row.studyUid !== scope.studyUid || row.seriesUid !== scope.seriesUid) throw new DicomwebError(404, notFoundReason(scope));
      noteInstances(request, [row]);
      const entry = findBulkData(archive, row, path);
      const chosen = choose(
        request,
        [{ mediaType: MULTIPART_RELATED, params: { type: OCTET_STREAM } }, { mediaType: OCTET_STREAM }],
        "bulk data",
      );
      const bytes = await readBulkData(archive, row, entry);
      // A Range applies to the single-part answer (a part of a multipart body has no Content-Range).
      const body = chosen.offer.mediaType === OCTET_STREAM ? rangeOf(request, reply, bytes) : bytes;
      if (chosen.offer.mediaType === OCTET_STREAM) return reply.type(OCTET_STREAM).send(body);
      const boundary = createBoundary();
      return reply
        .type(multipartRelatedContentType(boundary, OCTET_STREAM))
        .send(multipartRelatedStream([{ body }], { boundary, contentType: OCTET_STREAM }));
    },
  );
}

/** The bytes a Range header asks for (206 + Content-Range), all of them without one; 416 beyond the end. */
function rangeOf(request: FastifyRequest, reply: FastifyReply, bytes: Buffer): Buffer {
  void reply.header("Accept-Ranges", "bytes");
  const range = parseRange(request.headers.range, bytes.length);
  if (range === "unsatisfiable") {
    void reply.header("Content-Range", `bytes */${bytes.length}`);
    throw new DicomwebError(416, `the Range ${request.headers.range} lies outside the ${bytes.length} bytes`);
  }
  if (!range) return bytes;
  void reply.code(206);
  void reply.header("Content-Range", `bytes ${range.start}-${range.end - 1}/${bytes.length}`);
  return bytes.subarray(range.start, range.end);
}

/** A single `bytes=` range (RFC 9110 §14.1.2); undefined when absent or not a single range. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | "unsatisfiable" | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  const [, first, last] = m;
  if (first === "" && last === "") return undefined;
  if (first === "") {
    const n = Number(last);
    if (n === 0) return "unsatisfiable";
    return { start: Math.max(0, size - n), end: size };
  }
  const start = Number(first);
  const end = last === "" ? size : Math.min(size, Number(last) + 1);
  if (start >= size || end <= start) return "unsatisfiable";
  return { start, end };
}

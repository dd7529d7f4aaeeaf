/**
 * Rendered resources and thumbnails (PS3.18 §10.4.1.1.3, §10.4.1.1.4 — "rendered", "thumbnail"):
 * consumer-ready JPEG, PNG or GIF images at study, series, instance and frame level. The
 * transfer-syntax parameter does not apply here; the rendered cache is not the native one.
 *
 * Choices: instance-level JPEG/PNG shows the first frame, GIF animates every frame; study and
 * series level answer multipart/related with one image per instance; a thumbnail of a study or
 * series is the middle instance of its first series with pixels (of a multi-frame: its middle frame).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  parseRenderParams,
  parseThumbnailParams,
  RenderParamError,
  type RenderMediaType,
  type RenderParams,
} from "../codec/render-params.js";
import type { PixelService } from "../dicomweb/pixels.js";
import { frameMediaType } from "../dicomweb/media-types.js";
import {
  DicomwebError,
  notFoundReason,
  parseFrameList,
  readFrames,
  type ScopeParams,
  scopeFromPath,
  scopeInstances,
} from "../dicomweb/wado.js";
import { noteInstances } from "../gateway/audit/note.js";
import type { InstanceRow } from "../store/types.js";
import { negotiate, parseAccept } from "./accept.js";
import type { RouteContext } from "./context.js";
import { createBoundary, multipartRelatedContentType, multipartRelatedStream, type ResponsePart } from "./multipart-response.js";

const IMAGE_TYPES: RenderMediaType[] = ["image/jpeg", "image/png", "image/gif"];

interface Params extends ScopeParams {
  frames?: string;
}

/**
 * Accept headers and query strings seen recently, with what they parse to. A viewer sends the same
 * few again and again, and parsing them (media ranges, render parameters) was a good part of the
 * cost of a cached image. Only successful parses are kept (errors are thrown afresh each time);
 * the results are shared between requests, so nobody may modify them. Bounded: a client sending
 * a new string each time only empties the table now and then.
 */
class ParseMemo<T> {
  private readonly entries = new Map<string, T>();
  constructor(private readonly limit: number) {}
  get(key: string, parse: () => T): T {
    let value = this.entries.get(key);
    if (value === undefined) {
      value = parse();
      if (this.entries.size >= this.limit) this.entries.clear();
      this.entries.set(key, value);
    }
    return value;
  }
}

const imageTypes = new ParseMemo<RenderMediaType>(64);
const renderedParams = new ParseMemo<RenderParams>(256);
const thumbnailParamsOf = new ParseMemo<RenderParams>(256);

/** The image type asked for: a direct image/* range or the type of a multipart/related range (also used by proxy mode). */
export function imageType(request: FastifyRequest): RenderMediaType {
  const accept = request.headers.accept?.trim() ? request.headers.accept : "*/*";
  return imageTypes.get(accept, () => negotiateImageType(accept));
}

function negotiateImageType(accept: string): RenderMediaType {
  const ranges = parseAccept(accept).map((r) =>
    r.mediaType === "multipart/related" && r.params.type
      ? {
          ...r,
          mediaType: r.params.type.toLowerCase(),
          type: r.params.type.toLowerCase().split("/")[0] ?? "",
          subtype: r.params.type.toLowerCase().split("/")[1] ?? "",
          params: {},
        }
      : r,
  );
  const chosen = negotiate(
    ranges,
    IMAGE_TYPES.map((mediaType) => ({ mediaType })),
  );
  if (!chosen)
    throw new DicomwebError(406, `rendered images are available as ${IMAGE_TYPES.join(", ")}; the Accept header allows none of them`);
  return chosen.offer.mediaType as RenderMediaType;
}

/** The render (or thumbnail) parameters of the query string; a bad one is a 400 (also used by proxy mode). */
export function renderParams(request: FastifyRequest, thumbnail: boolean): RenderParams {
  const q = request.url.indexOf("?");
  const query = q >= 0 ? request.url.slice(q + 1) : "";
  return (thumbnail ? thumbnailParamsOf : renderedParams).get(query, () => {
    const entries = [...new URLSearchParams(query)];
    try {
      return thumbnail ? parseThumbnailParams(entries) : parseRenderParams(entries);
    } catch (err) {
      if (err instanceof RenderParamError) throw new DicomwebError(400, err.message);
      throw err;
    }
  });
}

function warn(reply: FastifyReply, request: FastifyRequest, params: RenderParams): void {
  for (const w of params.warnings) void reply.header("Warning", `299 ${request.headers.host ?? "-"} "${w.replace(/"/g, "'")}"`);
}

export async function renderedRoutes(app: FastifyInstance, ctx: RouteContext & { pixels: PixelService }): Promise<void> {
  const root = ctx.dicomwebPrefix;
  const { archive, pixels } = ctx;

  const frameCount = (row: InstanceRow): number => archive.index.frames(row.sopUid)?.frames.length ?? 0;
  const withPixels = (rows: InstanceRow[]): InstanceRow[] => rows.filter((r) => frameCount(r) > 0);

  /**
   * Sends one rendered image. A hit in the memory tier is answered synchronously (no promise, no
   * I/O: the common case of a viewer asking for the same image again); otherwise the image is
   * read from the disk cache or rendered.
   */
  const sendImage = (
    reply: FastifyReply,
    row: InstanceRow,
    frame: number | undefined,
    params: RenderParams,
    mediaType: RenderMediaType,
  ): Promise<FastifyReply> | undefined => {
    const hit = pixels.cachedRendered(row, frame, params, mediaType);
    if (hit !== undefined) {
      void reply.type(mediaType).send(hit);
      return undefined;
    }
    return pixels.rendered(row, frame, params, mediaType).then((bytes) => reply.type(mediaType).send(bytes));
  };

  // Not async: a cached image goes out in the same tick (Fastify takes a promise or a reply already sent).
  const single = (
    request: FastifyRequest<{ Params: Params }>,
    reply: FastifyReply,
    thumbnail: boolean,
  ): Promise<FastifyReply> | undefined => {
    const scope = scopeFromPath(request.params);
    const params = renderParams(request, thumbnail);
    const rows = scopeInstances(archive, scope);
    noteInstances(request, rows);
    const first = rows[0] as InstanceRow;
    // A video object renders as its own video stream (PS3.18 §8.7.4: video/mpeg, video/mp4, video/H265).
    if (scope.sopUid !== undefined && !thumbnail && frameMediaType(first.transferSyntaxUid).startsWith("video/")) {
      const video = frameMediaType(first.transferSyntaxUid);
      if (!negotiate(request.headers.accept?.trim() ? request.headers.accept : "*/*", [{ mediaType: video }])) {
        throw new DicomwebError(406, `instance ${first.sopUid} is a video; it renders as ${video}`);
      }
      return readFrames(archive, first, [1]).then((frames) => reply.type(video).send(frames[0]?.bytes));
    }
    const mediaType = imageType(request);
    warn(reply, request, params);
    if (request.params.frames !== undefined) {
      const row = rows[0] as InstanceRow;
      const numbers = parseFrameList(request.params.frames);
      if (numbers.length === 1 || thumbnail) return sendImage(reply, row, numbers[0], params, mediaType);
      return multipart(
        reply,
        mediaType,
        numbers.map((n) => () => pixels.rendered(row, n, params, mediaType)),
      );
    }
    if (scope.sopUid !== undefined) {
      const row = rows[0] as InstanceRow;

      // A thumbnail of a multi-frame instance shows its middle frame; a rendered GIF animates them all.
      const frame = thumbnail ? Math.max(1, Math.ceil(frameCount(row) / 2)) : mediaType === "image/gif" ? undefined : 1;
      return sendImage(reply, row, frame, params, mediaType);
    }
    const images = withPixels(rows);
    if (images.length === 0)
      throw new DicomwebError(406, `${notFoundReason(scope).replace(/ is not stored.*/, "")} has no instance with pixel data to render`);
    if (thumbnail) {
      const firstSeries = images[0]?.seriesUid;
      const series = images.filter((r) => r.seriesUid === firstSeries);
      const row = series[Math.floor(series.length / 2)] as InstanceRow;
      return sendImage(reply, row, Math.max(1, Math.ceil(frameCount(row) / 2)), params, mediaType);
    }
    return multipart(
      reply,
      mediaType,
      images.map((row) => () => pixels.rendered(row, mediaType === "image/gif" ? undefined : 1, params, mediaType)),
    );
  };

  /** Sends the images as multipart/related, made one after the other as the stream is read. */
  const multipart = (reply: FastifyReply, mediaType: string, images: Array<() => Promise<Buffer>>): undefined => {
    const boundary = createBoundary();
    async function* parts(): AsyncGenerator<ResponsePart> {
      for (const image of images) yield { body: await image() };
    }
    void reply
      .type(multipartRelatedContentType(boundary, mediaType))
      .send(multipartRelatedStream(parts(), { boundary, contentType: mediaType }));
    return undefined;
  };

  const levels = ["/studies/:study", "/studies/:study/series/:series", "/studies/:study/series/:series/instances/:instance"];
  for (const level of levels) {
    app.get<{ Params: Params }>(`${root}${level}/rendered`, (request, reply) => single(request, reply, false));
    app.get<{ Params: Params }>(`${root}${level}/thumbnail`, (request, reply) => single(request, reply, true));
  }
  const frames = `${root}/studies/:study/series/:series/instances/:instance/frames/:frames`;
  app.get<{ Params: Params }>(`${frames}/rendered`, (request, reply) => single(request, reply, false));
  app.get<{ Params: Params }>(`${frames}/thumbnail`, (request, reply) => single(request, reply, true));
}

/**
 * Streaming multipart/related response bodies for WADO-RS (PS3.18 §8.7.1, RFC 2387).
 *
 *   const boundary = createBoundary();
 *   reply.type(multipartRelatedContentType(boundary, "application/dicom", { "transfer-syntax": ts }));
 *   return reply.send(multipartRelatedStream(parts(), { boundary, contentType: "application/dicom" }));
 *
 * The body is produced on demand: the next part (and the next chunk of a streamed part) is only
 * pulled when the HTTP response has room, so a 10 GB study never sits in memory. If a part fails
 * mid-way the stream is destroyed with that error, the response is cut and the client sees a
 * body without its closing delimiter, which is how a truncated retrieve must look.
 *
 * Layout (what dicomweb-client's decoder expects: a body that starts with the first delimiter and
 * a header block on every part):
 *
 *   --B CRLF Content-Type: t CRLF [headers CRLF] CRLF body CRLF --B CRLF ... body CRLF --B-- CRLF
 */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { formatMediaType } from "./accept.js";

export interface ResponsePart {
  /** Content-Type of this part; defaults to a Content-Type in `headers`, then to the body's `contentType` option. */
  readonly contentType?: string;
  /** Extra part headers, e.g. `{ "Content-Location": url }`. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly body: Uint8Array | Readable | AsyncIterable<Uint8Array>;
}

export interface MultipartStreamOptions {
  readonly boundary: string;
  /** Default part Content-Type (normally the `type` parameter of the response Content-Type). */
  readonly contentType: string;
  /** Buffering of the output stream before it stops pulling parts. Default 64 KiB. */
  readonly highWaterMark?: number;
}

/** A random boundary that is an RFC 9110 token, so it never needs quoting. */
export function createBoundary(): string {
  return `voxelgate-${randomBytes(16).toString("hex")}`;
}

/**
 * `multipart/related; type="application/dicom"; boundary=...`, with extra parameters (such as
 * `transfer-syntax`) between type and boundary. Values are quoted when they are not tokens.
 */
export function multipartRelatedContentType(boundary: string, type: string, params: Readonly<Record<string, string>> = {}): string {
  checkBoundary(boundary);
  const all: Record<string, string> = { type };
  for (const [name, value] of Object.entries(params)) {
    const lower = name.toLowerCase();
    if (lower === "type" || lower === "boundary") throw new TypeError(`parameter ${name} is set by multipartRelatedContentType itself`);
    all[name] = value;
  }
  all["boundary"] = boundary;
  return formatMediaType("multipart/related", all);
}

/**
 * Readable body for a multipart/related response, pulling parts as the reader asks for bytes.
 * Bad input (boundary, header names or values with CR/LF) throws here or destroys the stream.
 */
export function multipartRelatedStream(
  parts: AsyncIterable<ResponsePart> | Iterable<ResponsePart>,
  options: MultipartStreamOptions,
): Readable {
  checkBoundary(options.boundary);
  checkHeaderValue("Content-Type", options.contentType);
  return Readable.from(generate(options.boundary, parts, options.contentType), {
    objectMode: false,
    highWaterMark: options.highWaterMark ?? 64 * 1024,
  });
}

async function* generate(
  boundary: string,
  parts: AsyncIterable<ResponsePart> | Iterable<ResponsePart>,
  defaultType: string,
): AsyncGenerator<Buffer> {
  const delimiter = `--${boundary}\r\n`;
  let first = true;
  for await (const part of parts) {
    yield Buffer.from(`${first ? "" : "\r\n"}${delimiter}${partHeaders(part, defaultType)}\r\n`, "utf8");
    first = false;
    const body = part.body;
    if (body instanceof Uint8Array) {
      if (body.length > 0) yield Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    } else {
      // for-await pulls one chunk per read; leaving early (client gone) destroys a Readable body.
      for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
        if (typeof chunk === "string") yield Buffer.from(chunk, "utf8");
        else if (chunk.length > 0) yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      }
    }
  }
  yield Buffer.from(`${first ? "" : "\r\n"}--${boundary}--\r\n`, "latin1");
}

function partHeaders(part: ResponsePart, defaultType: string): string {
  const given = Object.entries(part.headers ?? {}).find(([name]) => name.toLowerCase() === "content-type");
  const type = part.contentType ?? given?.[1] ?? defaultType;
  checkHeaderValue("Content-Type", type);
  let out = `Content-Type: ${type}\r\n`;
  for (const [name, value] of Object.entries(part.headers ?? {})) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new TypeError(`invalid part header name ${JSON.stringify(name)}`);
    if (name.toLowerCase() === "content-type") continue; // set above
    checkHeaderValue(name, value);
    out += `${name}: ${value}\r\n`;
  }
  return out;
}

function checkHeaderValue(name: string, value: string): void {
  if (/[\r\n\0]/.test(value)) throw new TypeError(`part header ${name} contains CR, LF or NUL`);
}

function checkBoundary(boundary: string): void {
  if (!/^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/.test(boundary)) {
    throw new TypeError(`invalid multipart boundary ${JSON.stringify(boundary)} (RFC 2046: 1-70 characters, no trailing space)`);
  }
}

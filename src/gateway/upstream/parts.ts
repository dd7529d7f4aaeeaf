/**
 * Reading an upstream's multipart/related answer to a single-frame request: the first part's
 * Content-Type, then its bytes as they arrive (so a cold frame reaches the client while the
 * upstream is still sending it), ending at the part's closing delimiter; the rest of the answer is
 * not waited for. Delimiters are found with Buffer.indexOf (memchr speed) on each new chunk plus
 * the few bytes before it; the general reader (src/http/multipart.ts) costs about 7 ms per MiB.
 */
import type { Readable } from "node:stream";
// The Content-Type parser lives with the HTTP layer (it parses STOW bodies); it has no HTTP framework types.
import { parseMultipartRelated } from "../../http/multipart.js";

export interface BodyPart {
  contentType: string;
  bytes: Buffer;
}

/** A part being read: its Content-Type, and its body chunk by chunk. */
export interface StreamedPart {
  contentType: string;
  /** The body's bytes in order; throws when the answer ends before the part does. */
  chunks: AsyncGenerator<Buffer>;
}

const CRLF = Buffer.from("\r\n");
const HEADER_END = Buffer.from("\r\n\r\n");
/** Part headers beyond this are not a frame's (a broken or hostile upstream). */
const MAX_HEADER_BYTES = 64 * 1024;

/** The Content-Type among a part's header lines (application/octet-stream when none). */
function partContentType(headerBlock: Buffer): string {
  let type = "application/octet-stream";
  for (const line of headerBlock.toString("latin1").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === "content-type") type = line.slice(colon + 1).trim();
  }
  return type;
}

/**
 * Opens the first part of a multipart/related body: undefined when the body ends before the
 * part's headers do (or has no part, or its Content-Type no boundary). The caller must consume `chunks` (or call its `return`),
 * which destroys `body` when done.
 */
export async function openFirstPart(body: Readable, contentType: string): Promise<StreamedPart | undefined> {
  let boundary: string;
  try {
    boundary = parseMultipartRelated(contentType).boundary;
  } catch {
    body.destroy(); // the upstream's Content-Type names no usable boundary: no part to read
    return undefined;
  }
  const delimiter = Buffer.from(`--${boundary}`);
  const closing = Buffer.concat([CRLF, delimiter]);
  const source = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  // Until the headers are complete: everything so far, joined (a few hundred bytes in practice).
  let head: Buffer = Buffer.alloc(0);
  let bodyStart = -1;
  let type = "";
  while (bodyStart < 0) {
    const next = await source.next();
    if (next.done) {
      body.destroy();
      return undefined;
    }
    head = Buffer.concat([head, next.value]);
    const open = head.indexOf(delimiter);
    if (open < 0 || head.length > MAX_HEADER_BYTES) {
      if (head.length > MAX_HEADER_BYTES) {
        body.destroy();
        return undefined;
      }
      continue;
    }
    const lineEnd = head.indexOf(CRLF, open + delimiter.length);
    if (lineEnd < 0) continue;
    // A part without headers starts right after the delimiter line.
    const headersEnd = head.subarray(lineEnd, lineEnd + 4).equals(HEADER_END) ? lineEnd : head.indexOf(HEADER_END, lineEnd);
    if (headersEnd < 0) continue;
    type = partContentType(head.subarray(lineEnd + 2, Math.max(lineEnd + 2, headersEnd)));
    bodyStart = headersEnd + 4;
  }
  const first = head.subarray(bodyStart);

  async function* chunks(): AsyncGenerator<Buffer> {
    try {
      // Bytes not yet given out: they may be the start of the closing delimiter.
      let pending: Buffer = first;
      // An empty part: its closing delimiter may share the header's last CRLF.
      if (pending.subarray(0, delimiter.length).equals(delimiter) && head.subarray(bodyStart - 2, bodyStart).equals(CRLF)) return;
      for (;;) {
        const end = pending.indexOf(closing);
        if (end >= 0) {
          if (end > 0) yield pending.subarray(0, end);
          return;
        }
        const safe = pending.length - (closing.length - 1);
        if (safe > 0) {
          yield pending.subarray(0, safe);
          pending = pending.subarray(safe);
        }
        const next = await source.next();
        if (next.done) throw new Error("the upstream's answer ended inside the frame");
        pending = pending.length > 0 ? Buffer.concat([pending, next.value]) : next.value;
      }
    } finally {
      body.destroy();
    }
  }
  return { contentType: type, chunks: chunks() };
}

/** The first part of a multipart/related body, whole (undefined when there is none, or it is cut short). */
export async function firstPart(body: Readable, contentType: string): Promise<BodyPart | undefined> {
  const part = await openFirstPart(body, contentType);
  if (!part) return undefined;
  const collected: Buffer[] = [];
  try {
    for await (const chunk of part.chunks) collected.push(chunk);
  } catch {
    return undefined;
  }
  return { contentType: part.contentType, bytes: collected.length === 1 ? (collected[0] as Buffer) : Buffer.concat(collected) };
}

/** True for a multipart/related Content-Type. */
export const isMultipart = (contentType: string | null): contentType is string =>
  contentType !== null && contentType.toLowerCase().startsWith("multipart/related");

/**
 * Reading an upstream's multipart/related answer (frames, rendered frame lists): the first part's
 * Content-Type and bytes. Only single frames are read this way (they are cached whole); larger
 * answers stream through untouched.
 *
 * A single part needs no streaming parser: the body is read until the second delimiter has
 * arrived (the rest is not waited for), then cut with Buffer.indexOf (memchr speed). The general
 * reader (src/http/multipart.ts) costs about 7 ms per MiB, which a cold frame would pay on top of
 * the upstream's own time.
 */
import type { Readable } from "node:stream";
// The Content-Type parser lives with the HTTP layer (it parses STOW bodies); it has no HTTP framework types.
import { parseMultipartRelated } from "../../http/multipart.js";

export interface BodyPart {
  contentType: string;
  bytes: Buffer;
}

const CRLF = Buffer.from("\r\n");
const HEADER_END = Buffer.from("\r\n\r\n");

/** The first part of a multipart/related body (undefined when there is none). */
export async function firstPart(body: Readable, contentType: string): Promise<BodyPart | undefined> {
  const delimiter = Buffer.from(`--${parseMultipartRelated(contentType).boundary}`);
  const chunks: Buffer[] = [];
  let length = 0;
  let found = 0;
  // The last delimiter.length - 1 bytes seen: a delimiter may straddle two chunks.
  let carry: Buffer = Buffer.alloc(0);
  try {
    for await (const chunk of body) {
      const c = chunk as Buffer;
      chunks.push(c);
      length += c.length;
      const window = carry.length > 0 ? Buffer.concat([carry, c]) : c;
      for (let at = window.indexOf(delimiter); at >= 0 && found < 2; at = window.indexOf(delimiter, at + delimiter.length)) found++;
      if (found >= 2) break;
      carry = window.subarray(Math.max(0, window.length - (delimiter.length - 1)));
    }
  } finally {
    body.destroy();
  }
  const all = Buffer.concat(chunks, length);
  const open = all.indexOf(delimiter);
  if (open < 0) return undefined;
  const headersStart = all.indexOf(CRLF, open + delimiter.length);
  if (headersStart < 0) return undefined;
  // Headers end with an empty line; a part without headers starts right after the delimiter line.
  const headersEnd = all.subarray(headersStart, headersStart + 4).equals(HEADER_END) ? headersStart : all.indexOf(HEADER_END, headersStart);
  if (headersEnd < 0) return undefined;
  const start = headersEnd + 4;
  const end = all.indexOf(Buffer.concat([CRLF, delimiter]), headersEnd + 2);
  if (end < 0) return undefined;
  let type = "application/octet-stream";
  for (const line of all
    .subarray(headersStart + 2, headersEnd)
    .toString("latin1")
    .split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === "content-type") type = line.slice(colon + 1).trim();
  }
  return { contentType: type, bytes: all.subarray(start, Math.max(start, end)) };
}

/** True for a multipart/related Content-Type. */
export const isMultipart = (contentType: string | null): contentType is string =>
  contentType !== null && contentType.toLowerCase().startsWith("multipart/related");

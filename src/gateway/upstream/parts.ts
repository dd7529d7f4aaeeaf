/**
 * Reading an upstream's multipart/related answer (frames, rendered frame lists): the first part's
 * Content-Type and bytes. Only single frames are read this way (they are cached whole); larger
 * answers stream through untouched.
 */
import type { Readable } from "node:stream";
// The multipart reader lives with the HTTP layer (it parses STOW bodies); it has no HTTP framework types.
import { readParts } from "../../http/multipart.js";

export interface BodyPart {
  contentType: string;
  bytes: Buffer;
}

/** The first part of a multipart/related body (undefined when there is none). */
export async function firstPart(body: Readable, contentType: string): Promise<BodyPart | undefined> {
  const parts = readParts(body, contentType, { maxParts: 1_000_000 });
  for await (const part of parts) {
    const chunks: Buffer[] = [];
    for await (const chunk of part.stream) chunks.push(chunk as Buffer);
    body.destroy();
    return { contentType: part.contentType, bytes: Buffer.concat(chunks) };
  }
  return undefined;
}

/** The bytes of a part with its content type, as one cache entry. */
export const isMultipart = (contentType: string | null): contentType is string =>
  contentType !== null && contentType.toLowerCase().startsWith("multipart/related");

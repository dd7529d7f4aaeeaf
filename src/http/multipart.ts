/**
 * Streaming multipart/related reader for STOW-RS request bodies (RFC 2046 §5.1, RFC 2387).
 *
 * `readParts(body, contentType)` yields one `Part` at a time; each part's body is a Readable that
 * receives the bytes as they arrive. Memory stays bounded whatever the request size: no part is
 * buffered, and when a part's consumer is slow the request stream is paused (backpressure), so at
 * most one input chunk plus the part stream's highWaterMark is held.
 *
 * Why not multipasta (notes/libraries.md §8): multipasta 0.2.8 decides whether a delimiter is the
 * closing one by looking at the first two bytes of the chunk that follows it, so whether a valid
 * body is accepted depends on how TCP happened to split it: with 3-, 5- or 7-byte chunks it
 * rejects a valid body (BadHeaders + EndNotReached), and an epilogue fed in small chunks is parsed
 * as part headers. It also reports no error when the body ends after a delimiter line or inside
 * part headers (a truncated upload looks complete), and rejects header-less parts and transport
 * padding. The parser below is a small state machine over Buffer.indexOf (native search);
 * it is as fast as multipasta (see the report in the commit log) and correct for every chunking.
 */
import type { Readable } from "node:stream";
import { Readable as ReadableStream } from "node:stream";
import { MediaTypeError, parseMediaType } from "./accept.js";

export type MultipartErrorCode =
  | "NOT_MULTIPART_RELATED"
  | "BAD_CONTENT_TYPE"
  | "MISSING_BOUNDARY"
  | "INVALID_BOUNDARY"
  | "EMPTY_BODY"
  | "NO_PARTS"
  | "TRUNCATED"
  | "BAD_PART_HEADERS"
  | "PART_HEADERS_TOO_LARGE"
  | "TOO_MANY_PARTS"
  | "PART_TOO_LARGE"
  | "BODY_TOO_LARGE"
  | "ABORTED";

/** A malformed or oversized multipart request. `statusCode` is what the HTTP answer should be. */
export class MultipartError extends Error {
  readonly statusCode: 400 | 413 | 415;
  readonly code: MultipartErrorCode;
  constructor(statusCode: 400 | 413 | 415, code: MultipartErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MultipartError";
    this.statusCode = statusCode;
    this.code = code;
  }
}

export interface MultipartRelatedParams {
  readonly boundary: string;
  /** RFC 2387 `type`: media type of the root part, e.g. `application/dicom`. */
  readonly type?: string;
  /** RFC 2387 `start`: Content-ID of the root part. */
  readonly start?: string;
  /** RFC 2387 `start-info`. */
  readonly startInfo?: string;
  /** Every parameter, names lower-cased (e.g. `transfer-syntax`). */
  readonly params: Readonly<Record<string, string>>;
}

/** RFC 2046 bchars: DIGIT / ALPHA / "'()+_,-./:=?" and space (not last). */
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,199}[0-9A-Za-z'()+_,\-./:=?]$/;

/**
 * Reads the parameters of a `multipart/related` Content-Type (quoted or unquoted values,
 * case-insensitive names). Throws MultipartError: 415 when it is not multipart/related, 400 when
 * the boundary is missing, repeated or malformed. Boundaries longer than RFC 2046's 70 characters
 * are tolerated up to 200.
 */
export function parseMultipartRelated(contentTypeHeader: string | undefined): MultipartRelatedParams {
  if (contentTypeHeader === undefined || contentTypeHeader.trim() === "") {
    throw new MultipartError(
      415,
      "NOT_MULTIPART_RELATED",
      'missing Content-Type: expected multipart/related; type="application/dicom"; boundary=...',
    );
  }
  let parsed;
  try {
    parsed = parseMediaType(contentTypeHeader);
  } catch (err) {
    const reason = err instanceof MediaTypeError ? err.message : String(err);
    throw new MultipartError(400, "BAD_CONTENT_TYPE", `malformed Content-Type "${contentTypeHeader}": ${reason}`, { cause: err });
  }
  if (parsed.mediaType !== "multipart/related") {
    throw new MultipartError(415, "NOT_MULTIPART_RELATED", `Content-Type is ${parsed.mediaType}, expected multipart/related`);
  }
  if (parsed.duplicateParams.includes("boundary")) {
    throw new MultipartError(400, "INVALID_BOUNDARY", "the boundary parameter appears more than once in Content-Type");
  }
  const boundary = parsed.params["boundary"];
  if (boundary === undefined)
    throw new MultipartError(400, "MISSING_BOUNDARY", "missing boundary parameter in the multipart/related Content-Type");
  if (!BOUNDARY.test(boundary)) {
    const shown = JSON.stringify(boundary.length > 80 ? `${boundary.slice(0, 80)}...` : boundary);
    const why =
      boundary === ""
        ? "it is empty"
        : boundary.length > 200
          ? "it is longer than 200 characters"
          : "it has characters RFC 2046 does not allow";
    throw new MultipartError(400, "INVALID_BOUNDARY", `invalid boundary ${shown}: ${why}`);
  }
  const p = parsed.params;
  return {
    boundary,
    ...(p["type"] !== undefined ? { type: p["type"] } : {}),
    ...(p["start"] !== undefined ? { start: p["start"] } : {}),
    ...(p["start-info"] !== undefined ? { startInfo: p["start-info"] } : {}),
    params: p,
  };
}

export interface MultipartLimits {
  /** Most parts accepted (413 beyond). Default 50,000. */
  readonly maxParts?: number;
  /** Most bytes in one part's header block (400 beyond). Default 16 KiB. */
  readonly maxHeaderBytes?: number;
  /** Most bytes in one part's body (413 beyond). Default unlimited. */
  readonly maxPartBytes?: number;
  /** Most bytes in the whole request body (413 beyond). Default unlimited. */
  readonly maxTotalBytes?: number;
  /** Bytes a part stream buffers before the request is paused. Default 1 MiB. */
  readonly highWaterMark?: number;
}

export interface Part {
  /** 0-based position in the request. */
  readonly index: number;
  /** Part headers, names lower-cased; a repeated header's values are joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * The part's Content-Type as sent. A part without one gets the multipart `type` parameter
   * (RFC 2387 root type), else `text/plain` (RFC 2046 §5.1); `headers["content-type"]` tells
   * whether it was sent.
   */
  readonly contentType: string;
  /** Lower-cased `type/subtype` of `contentType`, without parameters ("" if unparseable). */
  readonly mediaType: string;
  readonly contentLocation?: string;
  readonly contentId?: string;
  /**
   * The part body. Read it (or destroy it) before asking for the next part; if the iterator is
   * advanced while it is unread it is drained and its bytes discarded. A truncated or oversized
   * request destroys it with the MultipartError. An `error` listener is always attached, so an
   * unobserved failure never crashes the process; the iterator reports the same error.
   */
  readonly stream: Readable;
}

interface ParserSink {
  partBegin(headers: Record<string, string>): void;
  partData(chunk: Buffer): void;
  partEnd(): void;
  done(): void;
}

const enum State {
  Preamble,
  DelimiterTail,
  Headers,
  Body,
  Epilogue,
}

const enum Tail {
  Start,
  Dash,
  Padding,
  CR,
}

const CRLF = Buffer.from("\r\n");
const HEADER_END = Buffer.from("\r\n\r\n");
const MAX_PADDING = 256;

/**
 * Synchronous push parser. `write` and `end` throw MultipartError; the sink is called with part
 * data as views into the written chunks (no copies, except a few bytes held back when a chunk
 * ends with what may be the start of a delimiter).
 */
export class MultipartParser {
  private readonly needle: Buffer;
  private state = State.Preamble;
  /** Bytes held from the previous write (a possible partial delimiter), prepended to the next. */
  private carry: Buffer | undefined = CRLF; // the body may start with "--boundary": RFC 2046 treats the CRLF as part of the delimiter
  private inPart = false;
  private tail = Tail.Start;
  private tailBytes: number[] = [];
  private header = Buffer.alloc(0);
  private headerLen = 0;
  private parts = 0;
  private partBytes = 0;
  private bytesSeen = 0;
  private readonly maxParts: number;
  private readonly maxHeaderBytes: number;
  private readonly maxPartBytes: number;

  constructor(
    boundary: string,
    private readonly sink: ParserSink,
    limits: MultipartLimits = {},
  ) {
    this.needle = Buffer.from(`\r\n--${boundary}`, "latin1");
    this.maxParts = limits.maxParts ?? 50_000;
    this.maxHeaderBytes = limits.maxHeaderBytes ?? 16 * 1024;
    this.maxPartBytes = limits.maxPartBytes ?? Infinity;
  }

  /** Parts begun so far. */
  get partCount(): number {
    return this.parts;
  }

  /** True once the closing delimiter has been read. */
  get complete(): boolean {
    return this.state === State.Epilogue && this.parts > 0;
  }

  write(chunk: Buffer): void {
    this.bytesSeen += chunk.length;
    let buf = chunk;
    if (this.carry !== undefined) {
      buf = Buffer.concat([this.carry, chunk]);
      this.carry = undefined;
    }
    let pos = 0;
    // Body bytes from `seg` on are not emitted yet. Emitting lazily keeps the bytes of a false
    // delimiter in one contiguous view with the data around them.
    let seg = 0;
    // Where the delimiter candidate starts in buf; -1 when it began in an earlier write.
    let cand = -1;
    while (pos < buf.length) {
      switch (this.state) {
        case State.Preamble:
        case State.Body: {
          const at = buf.indexOf(this.needle, pos);
          if (at >= 0) {
            this.inPart = this.state === State.Body;
            this.state = State.DelimiterTail;
            this.tail = Tail.Start;
            this.tailBytes = [];
            cand = at;
            pos = at + this.needle.length;
            break;
          }
          const keep = this.partialNeedleAt(buf, pos);
          const end = buf.length - keep;
          if (this.state === State.Body && end > seg) this.emit(buf.subarray(seg, end));
          if (keep > 0) this.carry = Buffer.from(buf.subarray(end));
          return;
        }
        case State.DelimiterTail: {
          const c = buf[pos] as number;
          const verdict = this.delimiterByte(c);
          if (verdict === "more") {
            this.tailBytes.push(c);
            pos++;
          } else if (verdict === "no") {
            // Not a delimiter line ("--boundary" followed by other text): the needle and the tail
            // were data. The tail holds only "-", SP, HT or a CR not followed by LF, none of which
            // can start a delimiter, so the search resumes at the current byte.
            if (this.inPart && cand < 0) {
              this.emit(Buffer.concat([this.needle, Buffer.from(this.tailBytes)]));
              seg = pos;
            }
            this.state = this.inPart ? State.Body : State.Preamble;
          } else {
            if (this.inPart) {
              if (cand > seg) this.emit(buf.subarray(seg, cand));
              this.sink.partEnd();
            }
            pos++;
            if (verdict === "close") {
              this.state = State.Epilogue;
              if (this.parts > 0) this.sink.done();
            } else {
              this.beginHeaders();
            }
          }
          break;
        }
        case State.Headers:
          pos = this.readHeaders(buf, pos);
          seg = pos;
          break;
        case State.Epilogue:
          return;
      }
    }
    // The buffer ends inside a delimiter candidate: the data before it is data whatever comes next.
    if (this.state === State.DelimiterTail && this.inPart && cand > seg) this.emit(buf.subarray(seg, cand));
  }
  /** Call at the end of the body. Throws if the body was not a complete multipart body. */
  end(): void {
    if (this.state === State.Epilogue && this.parts > 0) return;
    if (this.state === State.Epilogue) throw new MultipartError(400, "NO_PARTS", "multipart body has a closing boundary but no parts");
    if (this.bytesSeen === 0) throw new MultipartError(400, "EMPTY_BODY", "request body is empty: expected multipart/related parts");
    if (this.parts === 0 && (this.state === State.Preamble || (this.state === State.DelimiterTail && !this.inPart))) {
      throw new MultipartError(400, "NO_PARTS", "no part found: is the boundary in the Content-Type header the one used in the body?");
    }
    throw new MultipartError(400, "TRUNCATED", "multipart body ended before the closing boundary (truncated upload?)");
  }

  private emit(data: Buffer): void {
    this.partBytes += data.length;
    if (this.partBytes > this.maxPartBytes) {
      throw new MultipartError(413, "PART_TOO_LARGE", `part ${this.parts} is larger than ${this.maxPartBytes} bytes`);
    }
    this.sink.partData(data);
  }

  /** Length of the longest suffix of buf[from..] that is a proper prefix of the delimiter. */
  private partialNeedleAt(buf: Buffer, from: number): number {
    const needle = this.needle;
    // The delimiter has its only CR at index 0 (a boundary cannot contain CR), so a partial
    // delimiter starts at a CR within the last needle.length - 1 bytes.
    let i = buf.indexOf(13, Math.max(from, buf.length - needle.length + 1));
    while (i >= 0) {
      const n = buf.length - i;
      if (buf.compare(needle, 0, n, i, buf.length) === 0) return n;
      i = buf.indexOf(13, i + 1);
    }
    return 0;
  }

  /** After "CRLF--boundary": "--" closes, LWSP* CRLF starts a part, anything else is data. */
  private delimiterByte(c: number): "more" | "no" | "close" | "part" {
    switch (this.tail) {
      case Tail.Start:
        if (c === 0x2d) return ((this.tail = Tail.Dash), "more");
        if (c === 0x20 || c === 0x09) return ((this.tail = Tail.Padding), "more");
        if (c === 0x0d) return ((this.tail = Tail.CR), "more");
        return "no";
      case Tail.Dash:
        return c === 0x2d ? "close" : "no";
      case Tail.Padding:
        if (c === 0x20 || c === 0x09) return this.tailBytes.length < MAX_PADDING ? "more" : "no";
        if (c === 0x0d) return ((this.tail = Tail.CR), "more");
        return "no";
      case Tail.CR:
        return c === 0x0a ? "part" : "no";
    }
  }

  private beginHeaders(): void {
    this.parts++;
    if (this.parts > this.maxParts) throw new MultipartError(413, "TOO_MANY_PARTS", `request has more than ${this.maxParts} parts`);
    this.state = State.Headers;
    // Seed with CRLF so that an empty header block (the blank line right away) is found too.
    if (this.header.length < 1024) this.header = Buffer.allocUnsafe(1024);
    CRLF.copy(this.header, 0);
    this.headerLen = 2;
  }

  private readHeaders(buf: Buffer, pos: number): number {
    const room = this.maxHeaderBytes + 4 - this.headerLen; // + seed CRLF + blank line CRLF
    const take = Math.min(buf.length - pos, room);
    if (this.headerLen + take > this.header.length) {
      const grown = Buffer.allocUnsafe(Math.min(Math.max(this.header.length * 2, this.headerLen + take), this.maxHeaderBytes + 4));
      this.header.copy(grown, 0, 0, this.headerLen);
      this.header = grown;
    }
    buf.copy(this.header, this.headerLen, pos, pos + take);
    const searchFrom = Math.max(0, this.headerLen - 3);
    this.headerLen += take;
    const at = this.header.subarray(0, this.headerLen).indexOf(HEADER_END, searchFrom);
    if (at < 0) {
      if (take === room) {
        throw new MultipartError(
          400,
          "PART_HEADERS_TOO_LARGE",
          `part ${this.parts - 1}: headers are larger than ${this.maxHeaderBytes} bytes`,
        );
      }
      return pos + take;
    }
    const consumedBefore = this.headerLen - take;
    const next = pos + (at + 4 - consumedBefore);
    const headers = parseHeaderBlock(this.header.subarray(2, at + 2), this.parts - 1);
    this.state = State.Body;
    this.partBytes = 0;
    this.sink.partBegin(headers);
    return next;
  }
}

/** Parses "Name: value CRLF ..." (the block without the blank line); obs-fold lines are joined. */
function parseHeaderBlock(block: Buffer, partIndex: number): Record<string, string> {
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  if (block.length === 0) return headers;
  const lines = block.toString("utf8").split("\r\n");
  let last: string | undefined;
  for (const line of lines) {
    if (line === "") continue;
    if ((line[0] === " " || line[0] === "\t") && last !== undefined) {
      headers[last] = `${headers[last]} ${line.trim()}`.trim();
      continue;
    }
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon).trim().toLowerCase() : "";
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) {
      const shown = JSON.stringify(line.length > 60 ? `${line.slice(0, 60)}...` : line);
      throw new MultipartError(400, "BAD_PART_HEADERS", `part ${partIndex}: malformed header line ${shown}`);
    }
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    last = name;
  }
  return headers;
}

interface PartImpl extends Part {
  ended: boolean;
  delivered: boolean;
}

const noop = (): void => {};

/**
 * Yields the parts of a multipart/related body, one at a time. The iterator rejects with a
 * MultipartError for a malformed, truncated or oversized body (the Content-Type is checked on the
 * first `next()`); the part being read is destroyed with the same error. Parts that were complete
 * before the error are still yielded first; an incomplete part not yet handed out is dropped.
 *
 * The iterator finishes at the closing delimiter; an epilogue is then read and discarded. After an
 * error, or when the consumer stops early (`break`), the body is left paused and no longer read:
 * an HTTP handler should answer with `Connection: close` (or `body.resume()` to discard the rest).
 */
export function readParts(
  body: Readable,
  contentType: string | undefined | MultipartRelatedParams,
  limits: MultipartLimits = {},
): AsyncIterableIterator<Part> {
  return new PartReader(body, contentType, limits);
}

class PartReader implements AsyncIterableIterator<Part> {
  private parser: MultipartParser | undefined;
  private started = false;
  private finished = false; // no more parts will come (done, failed or returned)
  private error: MultipartError | undefined;
  private errorReported = false;
  private queue: PartImpl[] = [];
  private current: PartImpl | undefined; // part receiving bytes
  private previous: PartImpl | undefined; // last part handed out
  private paused = false;
  private totalBytes = 0;
  private wake: (() => void) | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private params: MultipartRelatedParams | undefined;
  private readonly highWaterMark: number;
  private readonly maxTotalBytes: number;

  constructor(
    private readonly body: Readable,
    private readonly contentType: string | undefined | MultipartRelatedParams,
    private readonly limits: MultipartLimits,
  ) {
    this.highWaterMark = limits.highWaterMark ?? 1024 * 1024;
    this.maxTotalBytes = limits.maxTotalBytes ?? Infinity;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Part> {
    return this;
  }

  next(): Promise<IteratorResult<Part>> {
    const result = this.chain.then(() => this.nextPart());
    this.chain = result.catch(noop);
    return result;
  }

  return(): Promise<IteratorResult<Part>> {
    this.stop();
    return Promise.resolve({ done: true, value: undefined });
  }

  private async nextPart(): Promise<IteratorResult<Part>> {
    if (!this.started) this.start();
    const prev = this.previous;
    if (prev !== undefined && !prev.stream.destroyed && !prev.stream.readableEnded) {
      prev.stream.resume(); // no effect when the consumer reads it through 'readable' (async iteration)
      await new Promise<void>((resolve) => prev.stream.once("close", resolve));
    }
    for (;;) {
      const part = this.queue.shift();
      if (part !== undefined) {
        part.delivered = true;
        this.previous = part;
        return { done: false, value: part };
      }
      if (this.error !== undefined && !this.errorReported) {
        this.errorReported = true;
        throw this.error;
      }
      if (this.finished) return { done: true, value: undefined };
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private start(): void {
    this.started = true;
    try {
      this.params = typeof this.contentType === "object" ? this.contentType : parseMultipartRelated(this.contentType);
    } catch (err) {
      this.error = err as MultipartError;
      this.finished = true;
      return;
    }
    this.parser = new MultipartParser(this.params.boundary, this.sink(), this.limits);
    this.body.on("data", this.onData);
    this.body.on("end", this.onEnd);
    this.body.on("error", this.onError);
    this.body.on("close", this.onClose);
    if (this.body.readableEnded) this.onEnd();
    else if (this.body.destroyed) this.onClose();
  }

  private sink(): ParserSink {
    return {
      partBegin: (headers) => {
        const index = (this.parser as MultipartParser).partCount - 1;
        const stream = new ReadableStream({ highWaterMark: this.highWaterMark, read: () => this.onPartRead(part) });
        stream.on("error", noop);
        stream.on("close", () => this.onPartClose(part));
        const sent = headers["content-type"];
        const contentType = sent ?? this.params?.type ?? "text/plain";
        let mediaType = "";
        try {
          mediaType = parseMediaType(contentType).mediaType;
        } catch {
          // leave "" for the caller to reject
        }
        const part: PartImpl = {
          index,
          headers,
          contentType,
          mediaType,
          ...(headers["content-location"] !== undefined ? { contentLocation: headers["content-location"] } : {}),
          ...(headers["content-id"] !== undefined ? { contentId: headers["content-id"] } : {}),
          stream,
          ended: false,
          delivered: false,
        };
        this.current = part;
        this.queue.push(part);
        this.notify();
      },
      partData: (chunk) => {
        const part = this.current as PartImpl;
        if (part.stream.destroyed) return; // the consumer gave up on this part: discard
        if (!part.stream.push(chunk)) this.paused = true;
      },
      partEnd: () => {
        const part = this.current as PartImpl;
        part.ended = true;
        if (!part.stream.destroyed) part.stream.push(null);
        this.current = undefined;
        this.paused = false;
      },
      done: () => {
        this.finished = true;
        this.notify();
      },
    };
  }

  private readonly onData = (chunk: Uint8Array | string): void => {
    if (this.finished) return; // epilogue (or after an error that left the body flowing)
    const buf = typeof chunk === "string" ? Buffer.from(chunk, "latin1") : chunk;
    this.totalBytes += buf.length;
    if (this.totalBytes > this.maxTotalBytes) {
      this.fail(new MultipartError(413, "BODY_TOO_LARGE", `request body is larger than ${this.maxTotalBytes} bytes`));
      return;
    }
    try {
      (this.parser as MultipartParser).write(Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (this.finished) {
      this.detachSoon();
    } else if (this.paused) {
      this.body.pause();
    }
  };

  private onPartRead(part: PartImpl): void {
    if (part === this.current && this.paused) {
      this.paused = false;
      if (!this.finished) this.body.resume();
    }
  }

  private onPartClose(part: PartImpl): void {
    // A consumer that destroys the part it is fed must not leave the request paused forever.
    if (part === this.current && !part.ended) this.onPartRead(part);
  }

  private readonly onEnd = (): void => {
    if (this.finished) return this.detach();
    try {
      (this.parser as MultipartParser).end();
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    this.finished = true;
    this.detach();
    this.notify();
  };

  private readonly onError = (err: Error): void => {
    if (this.finished) return this.detach();
    this.fail(new MultipartError(400, "ABORTED", `request body failed before the closing boundary: ${err.message}`, { cause: err }));
  };

  private readonly onClose = (): void => {
    if (this.finished) return this.detach();
    // 'close' without 'end': the client went away mid-upload.
    this.fail(new MultipartError(400, "TRUNCATED", "multipart body ended before the closing boundary (truncated upload?)"));
  };

  private fail(cause: Error): void {
    if (this.finished) return;
    const err =
      cause instanceof MultipartError
        ? cause
        : new MultipartError(400, "BAD_PART_HEADERS", `malformed multipart body: ${cause.message}`, { cause });
    this.error = err;
    this.finished = true;
    const current = this.current;
    if (current !== undefined && !current.ended) {
      current.stream.destroy(err);
      if (!current.delivered) this.queue = this.queue.filter((p) => p !== current);
    }
    this.current = undefined;
    this.body.pause();
    this.detach();
    this.notify();
  }

  /** After the closing delimiter: keep reading to discard the epilogue, then let go of the body. */
  private detachSoon(): void {
    this.paused = false;
    this.notify();
    if (this.body.isPaused()) this.body.resume();
  }

  private detach(): void {
    this.body.off("data", this.onData);
    this.body.off("end", this.onEnd);
    this.body.off("close", this.onClose);
    this.body.off("error", this.onError);
    // Keep an error listener: a body that fails after we let go must not crash the process.
    if (this.body.listenerCount("error") === 0) this.body.on("error", noop);
  }

  private stop(): void {
    if (!this.started) {
      this.started = true;
      this.finished = true;
      return;
    }
    const wasFinished = this.finished;
    this.finished = true;
    for (const part of this.queue) part.stream.destroy();
    this.queue = [];
    if (this.current !== undefined && !this.current.ended) this.current.stream.destroy();
    this.current = undefined;
    if (!wasFinished) {
      this.body.pause();
      this.detach();
    }
    this.notify();
  }
}

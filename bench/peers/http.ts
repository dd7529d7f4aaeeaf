/**
 * The bench's HTTP client: node:http with a keep-alive agent per server (the same client for
 * Voxelgate and its peer), bodies written as a list of chunks (no copy of a 25 MB STOW body), and
 * a multipart/related reader for checking answers.
 */
import { randomBytes } from "node:crypto";
import { Agent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { performance } from "node:perf_hooks";
import { gunzipSync } from "node:zlib";

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The body as received (still gzip-encoded when the server sent it so); empty when `onData` took it. */
  body: Buffer;
  /** Bytes received. */
  bytes: number;
  /** Milliseconds from sending the request to the last byte of the answer. */
  ms: number;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** Chunks written one after the other; Content-Length is their total. */
  body?: Buffer[];
  /** Takes each chunk of the answer instead of collecting them (for answers of hundreds of MB). */
  onData?: (chunk: Buffer) => void;
  /** Sees the answer's headers before its first chunk. */
  onHeaders?: (headers: Record<string, string | string[] | undefined>) => void;
  timeoutMs?: number;
}

export class Client {
  readonly agent: Agent;
  private readonly send: typeof httpRequest;

  constructor(
    /** Base URL that relative paths are resolved against, e.g. http://127.0.0.1:1234/dicomweb */
    readonly root: string,
    maxSockets = 16,
    /** Sent with every request (e.g. Authorization for --base); a request's own headers win. */
    private readonly defaultHeaders: Record<string, string> = {},
  ) {
    const https = root.startsWith("https:");
    const options = { keepAlive: true, maxSockets, keepAliveMsecs: 10_000 };
    this.agent = https ? new HttpsAgent(options) : new Agent(options);
    this.send = https ? httpsRequest : httpRequest;
  }

  request(path: string, options: RequestOptions = {}): Promise<Response> {
    const url = new URL(this.root + path);
    const body = options.body ?? [];
    const length = body.reduce((n, b) => n + b.length, 0);
    const headers: Record<string, string> = { ...this.defaultHeaders, ...options.headers };
    if (options.body) headers["content-length"] = String(length);
    return new Promise<Response>((resolve, reject) => {
      const started = performance.now();
      const req = this.send(
        url,
        { method: options.method ?? "GET", agent: this.agent, headers, timeout: options.timeoutMs ?? 300_000 },
        (res) => {
          const chunks: Buffer[] = [];
          let bytes = 0;
          options.onHeaders?.(res.headers);
          res.on("data", (chunk: Buffer) => {
            bytes += chunk.length;
            if (options.onData) options.onData(chunk);
            else chunks.push(chunk);
          });
          res.on("error", reject);
          res.on("end", () => {
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks, options.onData ? 0 : bytes),
              bytes,
              ms: performance.now() - started,
            });
          });
        },
      );
      req.on("error", reject);
      req.on("timeout", () =>
        req.destroy(new Error(`${options.method ?? "GET"} ${url.href}: no answer within ${options.timeoutMs ?? 300_000} ms`)),
      );
      for (const chunk of body) req.write(chunk);
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The body with any gzip Content-Encoding undone. */
export function decodedBody(r: Response): Buffer {
  const encoding = String(r.headers["content-encoding"] ?? "identity").toLowerCase();
  if (encoding === "gzip") return gunzipSync(r.body);
  if (encoding === "identity") return r.body;
  throw new Error(`unexpected Content-Encoding ${encoding}`);
}

/** A multipart/related body of application/dicom parts (each file given as its chunks), as chunks: the files are not copied. */
export function multipartBody(files: Buffer[][], type = "application/dicom"): { chunks: Buffer[]; contentType: string; length: number } {
  const boundary = `bench-${randomBytes(16).toString("hex")}`;
  const head = Buffer.from(`--${boundary}\r\nContent-Type: ${type}\r\n\r\n`);
  const crlf = Buffer.from("\r\n");
  const chunks: Buffer[] = [];
  for (const file of files) chunks.push(head, ...file, crlf);
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return {
    chunks,
    contentType: `multipart/related; type="${type}"; boundary=${boundary}`,
    length: chunks.reduce((n, c) => n + c.length, 0),
  };
}

/** The boundary parameter of a multipart Content-Type. */
export function boundaryOf(contentType: string | string[] | undefined): string {
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(String(contentType ?? ""));
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary) throw new Error(`no boundary in Content-Type ${String(contentType)}`);
  return boundary;
}

export interface Part {
  headers: Record<string, string>;
  body: Buffer;
}

/** Splits a multipart body (RFC 2046) into parts. */
export function parseMultipart(body: Buffer, contentType: string | string[] | undefined): Part[] {
  const delimiter = Buffer.from(`--${boundaryOf(contentType)}`);
  const parts: Part[] = [];
  let at = body.indexOf(delimiter);
  if (at < 0) throw new Error("multipart body without a delimiter");
  for (;;) {
    const afterDelimiter = at + delimiter.length;
    if (body[afterDelimiter] === 0x2d && body[afterDelimiter + 1] === 0x2d) break; // closing delimiter
    const next = body.indexOf(Buffer.concat([Buffer.from("\r\n"), delimiter]), afterDelimiter);
    if (next < 0) throw new Error("multipart body without a closing delimiter");
    const start = body.indexOf("\r\n", afterDelimiter) + 2;
    const headerEnd = body.indexOf("\r\n\r\n", start - 2);
    if (headerEnd < 0 || headerEnd > next) throw new Error("multipart part without a header section");
    const headers: Record<string, string> = {};
    for (const line of body.subarray(start, headerEnd).toString("latin1").split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    parts.push({ headers, body: body.subarray(headerEnd + 4, next) });
    at = next + 2;
  }
  return parts;
}

/**
 * Counts the delimiters of a multipart body as it streams by (hundreds of MB are never held):
 * the parts are `count - 1` when the closing delimiter was seen.
 */
export class DelimiterCounter {
  private readonly delimiter: Buffer;
  private tail = Buffer.alloc(0);
  count = 0;
  closed = false;

  constructor(boundary: string) {
    this.delimiter = Buffer.from(`--${boundary}`);
  }

  push(chunk: Buffer): void {
    const data = this.tail.length ? Buffer.concat([this.tail, chunk]) : chunk;
    let at = data.indexOf(this.delimiter);
    let searched = 0;
    while (at >= 0) {
      // A delimiter whose two following bytes are not here yet is counted when they come.
      if (at + this.delimiter.length + 2 > data.length) break;
      this.count++;
      if (data[at + this.delimiter.length] === 0x2d && data[at + this.delimiter.length + 1] === 0x2d) this.closed = true;
      searched = at + this.delimiter.length;
      at = data.indexOf(this.delimiter, searched);
    }
    const keepFrom = at >= 0 ? at : Math.max(searched, data.length - this.delimiter.length - 1);
    this.tail = Buffer.from(data.subarray(keepFrom));
  }
}

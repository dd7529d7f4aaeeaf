/**
 * HTTP client of one upstream DICOMweb archive: credentials on every request, a time limit for
 * the response headers (a body then streams as long as it takes), bounded retries with jitter for
 * idempotent requests, a circuit breaker, and failures turned into 502/504 errors that name the
 * upstream and say what happened.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { pipeline, type Readable, type Transform } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { DicomwebError } from "../../dicomweb/wado.js";
import { CircuitBreaker, type CircuitStatus } from "./breaker.js";
import { type Credentials, CredentialsError, describeFetchError, makeCredentials } from "./credentials.js";
import type { UpstreamSettings } from "./settings.js";

/** An upstream that failed: 502 (refused, bad answer, circuit open) or 504 (timed out). */
export class UpstreamError extends DicomwebError {
  constructor(
    status: 502 | 504,
    message: string,
    /** The upstream's own HTTP status when it answered. */
    readonly upstreamStatus?: number,
  ) {
    super(status, message);
  }
}

export interface UpstreamRequest {
  method?: string;
  /** Path below the upstream's DICOMweb root, with its query string: "/studies?PatientID=1". */
  path: string;
  headers?: Record<string, string>;
  /** A streamed request body (STOW): such a request is never retried. */
  body?: Readable;
  /** Overrides the configured time limit (probes use a short one). */
  timeoutMs?: number;
}

export interface UpstreamResponse {
  status: number;
  headers: Headers;
  /** The body as a Node stream (null for 204/304/HEAD); read it or destroy it. */
  body: Readable | null;
  /** The whole body (for small JSON answers). */
  text(): Promise<string>;
  bytes(): Promise<Buffer>;
  /** Discards the body. */
  discard(): void;
}

/** Statuses that mean "the upstream (or something in front of it) is not well", not "your request is wrong". */
const UNAVAILABLE = new Set([502, 503, 504]);
const BACKOFF_MS = 100;

/** True when the request asks for JSON (search, metadata): the only answers worth compressing. */
function wantsJson(headers: Record<string, string>): boolean {
  const accept = Object.entries(headers).find(([h]) => h.toLowerCase() === "accept")?.[1] ?? "";
  return /json/i.test(accept);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The answer as an UpstreamResponse; a compressed body is inflated (and its length header dropped). */
function wrap(response: IncomingMessage): UpstreamResponse {
  const headers = new Headers();
  for (const [name, value] of Object.entries(response.headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  let body: Readable = response;
  const inflate = DECODERS[(headers.get("content-encoding") ?? "").trim().toLowerCase()];
  if (inflate) {
    body = pipeline(response, inflate(), () => undefined);
    headers.delete("content-encoding");
    headers.delete("content-length");
  }
  const bytes = async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  };
  return {
    status: response.statusCode ?? 0,
    headers,
    body: response.statusCode === 204 || response.statusCode === 304 ? (response.resume(), null) : body,
    bytes,
    text: async () => (await bytes()).toString("utf8"),
    discard: () => {
      body.destroy();
      response.destroy();
    },
  };
}

const DECODERS: Record<string, () => Transform> = {
  gzip: () => createGunzip(),
  "x-gzip": () => createGunzip(),
  deflate: () => createInflate(),
  br: () => createBrotliDecompress(),
};

export class UpstreamClient {
  readonly root: URL;
  readonly breaker: CircuitBreaker;
  private readonly credentials: Credentials;
  private readonly agent: HttpAgent;
  private readonly compressJson: boolean;
  /** How the upstream is named in error messages: `upstream "orthanc" (http://host/dicom-web)`. */
  readonly label: string;

  constructor(
    readonly settings: UpstreamSettings,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.root = new URL(settings.url.replace(/\/+$/, ""));
    this.credentials = makeCredentials(settings.credentials, this.root, settings.timeoutMs, env);
    this.breaker = new CircuitBreaker(settings.breakerFailures, settings.breakerResetMs);
    const loopback = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i.test(this.root.hostname);
    this.compressJson = settings.compressJson === "auto" ? !loopback : settings.compressJson;
    const pool = { keepAlive: true, maxSockets: 64, keepAliveMsecs: 10_000 };
    this.agent = this.root.protocol === "https:" ? new HttpsAgent(pool) : new HttpAgent(pool);
    this.label = `upstream "${settings.name}" (${this.root.origin}${this.root.pathname})`;
  }

  /** Absolute URL of a path below the DICOMweb root. */
  urlOf(path: string): URL {
    return new URL(this.root.href.replace(/\/+$/, "") + path);
  }

  status(): CircuitStatus {
    return this.breaker.status();
  }

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    const method = (req.method ?? "GET").toUpperCase();
    const idempotent = (method === "GET" || method === "HEAD") && req.body === undefined;
    const attempts = idempotent ? 1 + this.settings.retries : 1;
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      if (!this.breaker.allow()) {
        const status = this.breaker.status();
        throw new UpstreamError(
          502,
          `${this.label} is unavailable: ${status.consecutiveFailures} consecutive failures (last: ${status.lastError ?? "unknown"}); ` +
            `the gateway tries it again in ${Math.ceil(this.breaker.retryInMs() / 1000)} s`,
        );
      }
      let response: UpstreamResponse;
      try {
        response = await this.send(method, req);
      } catch (err) {
        if (err instanceof UpstreamError) {
          this.breaker.failure(err.message);
          if (err.status === 502 && attempt + 1 < attempts) {
            await sleep(BACKOFF_MS * 2 ** attempt * (0.5 + Math.random()));
            continue;
          }
        } else this.breaker.release();
        throw err;
      }
      if (response.status === 401 && !refreshed && req.body === undefined && this.credentials.invalidate()) {
        // An expired or revoked token: fetch a new one and ask once more.
        refreshed = true;
        response.discard();
        this.breaker.release();
        attempt--;
        continue;
      }
      if (UNAVAILABLE.has(response.status)) {
        const detail = (await response.text().catch(() => "")).slice(0, 200).replace(/\s+/g, " ");
        const message = `${this.label} answered HTTP ${response.status}${detail ? `: ${detail}` : ""}`;
        this.breaker.failure(message);
        if (attempt + 1 < attempts) {
          await sleep(BACKOFF_MS * 2 ** attempt * (0.5 + Math.random()));
          continue;
        }
        throw new UpstreamError(response.status === 504 ? 504 : 502, message, response.status);
      }
      this.breaker.success();
      return response;
    }
  }

  /**
   * One HTTP exchange over node:http(s) with a keep-alive pool (fetch costs several times the CPU
   * per request, which a gateway pays on every search and metadata call).
   */
  private async send(method: string, req: UpstreamRequest): Promise<UpstreamResponse> {
    const url = this.urlOf(req.path);
    const headers: Record<string, string> = { ...req.headers };
    // JSON may come compressed (compressJson). Pixels barely compress, and an upstream that
    // compresses them anyway spends its CPU on it (Orthanc: 50 ms for a 512 KiB frame).
    if (!Object.keys(headers).some((h) => h.toLowerCase() === "accept-encoding"))
      headers["accept-encoding"] = this.compressJson && wantsJson(headers) ? "gzip, deflate" : "identity";
    let auth: Record<string, string>;
    try {
      auth = await this.credentials.headersFor({ method, url, headers, streamedBody: req.body !== undefined });
    } catch (err) {
      if (err instanceof CredentialsError) throw new UpstreamError(502, `${this.label}: ${err.message}`);
      throw err;
    }
    const timeoutMs = req.timeoutMs ?? this.settings.timeoutMs;
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise<UpstreamResponse>((resolve, reject) => {
      let timedOut = false;
      const request = send(url, { method, headers: { ...headers, ...auth }, agent: this.agent });
      // The time limit covers the response headers only: a body then streams as long as it takes.
      const timer = setTimeout(() => {
        timedOut = true;
        request.destroy();
      }, timeoutMs);
      request.once("response", (response) => {
        clearTimeout(timer);
        resolve(wrap(response));
      });
      request.once("error", (err) => {
        clearTimeout(timer);
        if (timedOut)
          return reject(new UpstreamError(504, `${this.label} did not answer ${method} ${url.pathname} within ${timeoutMs} ms`));
        const why = describeFetchError(err);
        const refused = /ECONNREFUSED/.test(why);
        reject(new UpstreamError(502, `${this.label} ${refused ? "refused the connection" : "could not be reached"}: ${why}`));
      });
      if (req.body) {
        req.body.once("error", (err) => request.destroy(err));
        req.body.pipe(request);
      } else request.end();
    });
  }

  /** Closes idle pooled connections (shutdown). */
  close(): void {
    this.agent.destroy();
  }
}

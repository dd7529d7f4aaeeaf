/**
 * How the gateway proves itself to an upstream: nothing, HTTP basic, a static bearer token, an
 * OAuth 2.0 client-credentials token (fetched, cached until shortly before it expires, fetched
 * again once when the upstream answers 401), or AWS Signature Version 4 (AWS HealthImaging).
 */
import { Sha256 } from "@aws-crypto/sha256-js";
import { SignatureV4 } from "@smithy/signature-v4";
import { resolveSecret, type UpstreamCredentials } from "./settings.js";

/** What is signed: the method, the absolute URL and the headers already set. */
export interface OutgoingRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  /** The body is streamed and not hashed (SigV4 sends UNSIGNED-PAYLOAD). */
  streamedBody?: boolean;
}

export interface Credentials {
  /** Headers to add to the request (Authorization, x-amz-*). */
  headersFor(request: OutgoingRequest): Promise<Record<string, string>>;
  /** After a 401: forget a cached token; true when asking again may help. */
  invalidate(): boolean;
}

/** A token endpoint failure: the upstream cannot be reached as configured. */
export class CredentialsError extends Error {}

const NONE: Credentials = { headersFor: async () => ({}), invalidate: () => false };

/** Seconds before expiry at which a cached token is no longer used. */
const TOKEN_MARGIN_S = 30;

class OAuthClientCredentials implements Credentials {
  private token: { value: string; expiresAt: number } | undefined;
  private pending: Promise<string> | undefined;

  constructor(
    private readonly settings: Extract<UpstreamCredentials, { type: "oauth2" }>,
    private readonly env: NodeJS.ProcessEnv,
    private readonly timeoutMs: number,
  ) {}

  async headersFor(): Promise<Record<string, string>> {
    return { authorization: `Bearer ${await this.current()}` };
  }

  invalidate(): boolean {
    this.token = undefined;
    return true;
  }

  private current(): Promise<string> {
    if (this.token && Date.now() < this.token.expiresAt) return Promise.resolve(this.token.value);
    // Concurrent requests share one token request.
    this.pending ??= this.fetchToken().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async fetchToken(): Promise<string> {
    const { tokenUrl, clientId, scope, audience, clientAuth } = this.settings;
    const secret = resolveSecret(this.settings.clientSecret, this.env);
    const form = new URLSearchParams({ grant_type: "client_credentials" });
    if (scope) form.set("scope", scope);
    if (audience) form.set("audience", audience);
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
    if (clientAuth === "post") {
      form.set("client_id", clientId);
      form.set("client_secret", secret);
    } else {
      // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
      const pair = `${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`;
      headers.authorization = `Basic ${Buffer.from(pair).toString("base64")}`;
    }
    let response: Response;
    try {
      response = await fetch(tokenUrl, { method: "POST", headers, body: form, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new CredentialsError(`token endpoint ${tokenUrl} did not answer: ${describeFetchError(err)}`);
    }
    const text = await response.text();
    if (!response.ok)
      throw new CredentialsError(
        `token endpoint ${tokenUrl} refused the client credentials: HTTP ${response.status} ${text.slice(0, 200)}`,
      );
    let body: { access_token?: unknown; expires_in?: unknown; token_type?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new CredentialsError(`token endpoint ${tokenUrl} answered something that is not JSON`);
    }
    if (typeof body.access_token !== "string" || body.access_token === "")
      throw new CredentialsError(`token endpoint ${tokenUrl} answered without an access_token`);
    const lifetime = typeof body.expires_in === "number" ? body.expires_in : Number(body.expires_in ?? 300) || 300;
    const margin = Math.min(TOKEN_MARGIN_S, lifetime / 10);
    this.token = { value: body.access_token, expiresAt: Date.now() + (lifetime - margin) * 1000 };
    return body.access_token;
  }
}

class AwsSigV4 implements Credentials {
  private readonly signer: SignatureV4;

  constructor(settings: Extract<UpstreamCredentials, { type: "sigv4" }>, env: NodeJS.ProcessEnv, host: string) {
    const pick = (value: Parameters<typeof resolveSecret>[0] | undefined, name: string): string | undefined =>
      value !== undefined ? resolveSecret(value, env) : env[name] || undefined;
    const accessKeyId = pick(settings.accessKeyId, "AWS_ACCESS_KEY_ID");
    const secretAccessKey = pick(settings.secretAccessKey, "AWS_SECRET_ACCESS_KEY");
    const sessionToken = pick(settings.sessionToken, "AWS_SESSION_TOKEN");
    // HealthImaging hosts name their region: dicom-medical-imaging.<region>.amazonaws.com
    const region = settings.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? /\.([a-z]{2}-[a-z]+-\d)\.amazonaws\.com$/.exec(host)?.[1];
    if (!accessKeyId || !secretAccessKey)
      throw new Error("sigv4 credentials need accessKeyId and secretAccessKey (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)");
    if (!region) throw new Error("sigv4 credentials need a region (or AWS_REGION)");
    this.signer = new SignatureV4({
      credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) },
      region,
      service: settings.service,
      sha256: Sha256,
    });
  }

  async headersFor(request: OutgoingRequest): Promise<Record<string, string>> {
    const query: Record<string, string | string[]> = {};
    for (const [k, v] of request.url.searchParams) {
      const seen = query[k];
      query[k] = seen === undefined ? v : Array.isArray(seen) ? [...seen, v] : [seen, v];
    }
    const headers: Record<string, string> = { ...request.headers, host: request.url.host };
    if (request.streamedBody) headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
    const signed = await this.signer.sign({
      method: request.method,
      protocol: request.url.protocol,
      hostname: request.url.hostname,
      ...(request.url.port ? { port: Number(request.url.port) } : {}),
      path: decodeURIComponent(request.url.pathname),
      query,
      headers,
    });
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(signed.headers)) if (k !== "host" && request.headers[k] === undefined) out[k] = v;
    return out;
  }

  invalidate(): boolean {
    return false;
  }
}

export function makeCredentials(
  settings: UpstreamCredentials,
  upstreamUrl: URL,
  timeoutMs: number,
  env: NodeJS.ProcessEnv = process.env,
): Credentials {
  switch (settings.type) {
    case "none":
      return NONE;
    case "basic": {
      const header = `Basic ${Buffer.from(`${settings.username}:${resolveSecret(settings.password, env)}`).toString("base64")}`;
      return { headersFor: async () => ({ authorization: header }), invalidate: () => false };
    }
    case "bearer": {
      const header = `Bearer ${resolveSecret(settings.token, env)}`;
      return { headersFor: async () => ({ authorization: header }), invalidate: () => false };
    }
    case "oauth2":
      return new OAuthClientCredentials(settings, env, timeoutMs);
    case "sigv4":
      return new AwsSigV4(settings, env, upstreamUrl.hostname);
  }
}

/** The useful part of a fetch failure: undici hides the reason (ECONNREFUSED, ...) in `cause`. */
export function describeFetchError(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === "TimeoutError" || e.name === "AbortError") return "timed out";
  if (e.cause?.code) return `${e.cause.code}${e.cause.message ? ` (${e.cause.message})` : ""}`;
  return e.cause?.message ?? e.message ?? String(err);
}

/**
 * OAuth 2.0 / OpenID Connect bearer tokens verified locally with jose: the issuer's discovery
 * document gives `jwks_uri`; the key set is fetched once and kept (createRemoteJWKSet with no
 * expiry), refreshed in the background, and refetched when a token names an unknown `kid` (at most
 * once per cooldown: key rotation). A failing fetch keeps the cached keys (tokens they signed still
 * verify), is reported by `health()` (readyz) and retried.
 *
 * Checked: signature with an allowed asymmetric algorithm, issuer, audience (any accepted),
 * exp (required), nbf and iat with a small clock tolerance.
 */
import { createRemoteJWKSet, errors, type JWTPayload, jwtVerify } from "jose";
import type { AuthConfig } from "../config.js";
import type { Principal } from "./request-state.js";

type OidcConfig = NonNullable<AuthConfig["oidc"]>;

/** A token was refused (401 invalid_token): `reason` tells the caller what was wrong. */
export class InvalidToken extends Error {}

/** The identity provider could not be reached and no keys are cached (503). */
export class IdentityProviderUnavailable extends Error {}

type KeySet = ReturnType<typeof createRemoteJWKSet>;

const isoTime = (seconds: unknown): string =>
  typeof seconds === "number" && Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : String(seconds);

/** The value at a dot path of the claims ("realm_access.roles"). */
function claimAt(payload: JWTPayload, path: string): unknown {
  let v: unknown = payload;
  for (const part of path.split(".")) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

const strings = (v: unknown): string[] =>
  typeof v === "string" ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];

/** Most verified tokens remembered (about 1 KiB each); the oldest is forgotten first. */
const VERIFIED_TOKENS = 10_000;

export class OidcVerifier {
  private keys: KeySet | undefined;
  private discovery: Promise<KeySet> | undefined;
  private lastError: string | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = 1000;
  private closed = false;
  /**
   * Tokens verified lately → their principal, until they expire: a viewer sends the same token with
   * hundreds of frame requests, and a signature check costs more than serving a cached frame. Keyed
   * by the whole token (the signature is part of it, so a tampered token never hits). Emptied when
   * the key set is refreshed, so a key the issuer withdrew stops working within a refresh period.
   */
  private readonly verified = new Map<string, { principal: Principal; untilMs: number }>();

  constructor(private readonly config: OidcConfig) {}

  /** Starts discovery in the background (the server comes up even when the issuer is down). */
  start(): void {
    void this.discover().catch(() => undefined);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.refreshTimer);
    clearTimeout(this.retryTimer);
  }

  /** True once a key set was fetched (tokens can be verified even while the issuer is down). */
  hasKeys(): boolean {
    return this.keys !== undefined;
  }

  /** "ok", or what is failing (for /readyz). */
  health(): string {
    if (this.lastError !== undefined) return this.lastError;
    return this.keys ? "ok" : "discovering the OIDC issuer's keys";
  }

  private get issuer(): string {
    return this.config.issuer.replace(/\/+$/, "");
  }

  /** Discovery → jwks_uri → first key fetch; retried with backoff until it succeeds. */
  private discover(): Promise<KeySet> {
    if (this.keys) return Promise.resolve(this.keys);
    this.discovery ??= (async () => {
      const url = `${this.issuer}/.well-known/openid-configuration`;
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(5000), redirect: "manual", headers: { accept: "application/json" } });
        if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
        const doc = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
        if (typeof doc.jwks_uri !== "string") throw new Error("the document has no jwks_uri");
        if (typeof doc.issuer === "string" && doc.issuer.replace(/\/+$/, "") !== this.issuer) {
          throw new Error(`the document names issuer ${doc.issuer}, not ${this.config.issuer}`);
        }
        const keys = createRemoteJWKSet(new URL(doc.jwks_uri), {
          // Never stale by age: a refresh that fails keeps the cached keys (background refresh below).
          cacheMaxAge: Infinity,
          cooldownDuration: this.config.jwksCooldownSeconds * 1000,
          timeoutDuration: 5000,
        });
        await keys.reload().catch((err: unknown) => {
          throw new Error(`key set ${doc.jwks_uri}: ${(err as Error).message}`);
        });
        this.keys = keys;
        this.lastError = undefined;
        this.retryDelayMs = 1000;
        this.refreshTimer = setInterval(() => void this.refresh(), this.config.jwksRefreshSeconds * 1000);
        this.refreshTimer.unref();
        return keys;
      } catch (err) {
        this.lastError = `OIDC discovery at ${url} failed: ${(err as Error).message}; retrying`;
        this.discovery = undefined;
        if (!this.closed) {
          clearTimeout(this.retryTimer);
          this.retryTimer = setTimeout(() => void this.discover().catch(() => undefined), this.retryDelayMs);
          this.retryTimer.unref();
          this.retryDelayMs = Math.min(this.retryDelayMs * 2, 60_000);
        }
        throw new IdentityProviderUnavailable(this.lastError);
      }
    })();
    return this.discovery;
  }

  private async refresh(): Promise<void> {
    try {
      await this.keys?.reload();
      this.verified.clear();
      this.lastError = undefined;
    } catch (err) {
      this.lastError = `refreshing the OIDC key set failed: ${(err as Error).message}; cached keys are still used`;
    }
  }

  /** Verifies a JWT and makes its Principal; throws InvalidToken with the reason, or IdentityProviderUnavailable. */
  async verify(token: string): Promise<Principal> {
    const hit = this.verified.get(token);
    if (hit) {
      if (Date.now() < hit.untilMs) return hit.principal;
      this.verified.delete(token);
    }
    const keys = await this.discover();
    const c = this.config;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: c.issuer,
        audience: c.audiences,
        algorithms: c.algorithms,
        clockTolerance: c.clockToleranceSeconds,
        requiredClaims: ["exp"],
      }));
    } catch (err) {
      throw this.explain(err, token);
    }
    const scopes = [...strings(payload.scope).flatMap((s) => s.split(" ")), ...strings(payload.scp)].filter(Boolean);
    const clientId = strings(payload.azp)[0] ?? strings(payload.client_id)[0];
    const roles = [...new Set(c.rolesClaims.flatMap((path) => strings(claimAt(payload, path))))];
    const subject = payload.sub ?? clientId ?? "unknown";
    const name = strings(payload.name)[0] ?? strings(payload.preferred_username)[0];
    const patient = strings(claimAt(payload, c.patientClaim))[0];
    const principal: Principal = {
      kind: payload.sub === undefined || payload.sub === clientId ? "service" : "user",
      subject,
      ...(clientId !== undefined ? { clientId } : {}),
      issuer: payload.iss,
      ...(name !== undefined ? { name } : {}),
      roles,
      scopes,
      ...(patient !== undefined ? { patient } : {}),
    };
    // jwtVerify required exp; nbf/iat are in the past (or it would have thrown).
    if (this.verified.size >= VERIFIED_TOKENS) this.verified.delete(this.verified.keys().next().value as string);
    this.verified.set(token, { principal, untilMs: (payload.exp as number) * 1000 });
    return principal;
  }

  /** A jose error as a reason a person can act on. */
  private explain(err: unknown, token: string): Error {
    const c = this.config;
    if (err instanceof errors.JWTExpired) return new InvalidToken(`the token expired at ${isoTime(err.payload.exp)}`);
    if (err instanceof errors.JWTClaimValidationFailed) {
      const p = err.payload;
      switch (err.claim) {
        case "nbf":
          return new InvalidToken(`the token is not valid before ${isoTime(p.nbf)}`);
        case "iat":
          return new InvalidToken(`the token claims to be issued in the future (${isoTime(p.iat)})`);
        case "aud":
          return new InvalidToken(
            `the token's audience ${JSON.stringify(p.aud ?? null)} is not accepted here (expected one of ${c.audiences.join(", ")})`,
          );
        case "iss":
          return new InvalidToken(`the token's issuer ${JSON.stringify(p.iss ?? null)} is not trusted here (expected ${c.issuer})`);
        case "exp":
          return new InvalidToken("the token has no expiry (exp); only expiring tokens are accepted");
        default:
          return new InvalidToken(`the token's ${err.claim} claim is not valid: ${err.reason}`);
      }
    }
    if (err instanceof errors.JOSEAlgNotAllowed || (err instanceof errors.JOSENotSupported && /alg/i.test(err.message))) {
      return new InvalidToken(
        `the token's algorithm ${headerOf(token).alg ?? "(none)"} is not allowed (allowed: ${c.algorithms.join(", ")})`,
      );
    }
    if (err instanceof errors.JWKSNoMatchingKey) {
      return new InvalidToken(
        `no key of the issuer's key set matches the token (kid ${JSON.stringify(headerOf(token).kid ?? null)}): unknown key`,
      );
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) return new InvalidToken("the token's signature does not verify");
    if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported) {
      return new InvalidToken(`the token is malformed: ${(err as Error).message}`);
    }
    if (err instanceof errors.JOSEError && !(err instanceof errors.JWKSTimeout) && err.code !== "ERR_JOSE_GENERIC") {
      return new InvalidToken(`the token was refused: ${err.message}`);
    }
    // A key set fetch failed (a new kid while the issuer is down): the token may be fine.
    this.lastError = `fetching the OIDC key set failed: ${(err as Error).message}; cached keys are still used`;
    return new InvalidToken(
      `no cached key matches the token (kid ${JSON.stringify(headerOf(token).kid ?? null)}) and the issuer's key set cannot be fetched now`,
    );
  }
}

function headerOf(token: string): { alg?: string; kid?: string } {
  try {
    const h = JSON.parse(Buffer.from(token.split(".")[0] ?? "", "base64url").toString("utf8")) as Record<string, unknown>;
    return { alg: typeof h.alg === "string" ? h.alg : undefined, kid: typeof h.kid === "string" ? h.kid : undefined };
  } catch {
    return {};
  }
}

/**
 * Identity and authorization on the HTTP server (hook order: request-state.ts).
 *
 * - onRequest: reads the credentials (`Authorization: Bearer <JWT | share token | API key>`,
 *   `Authorization: ApiKey <key>`, `X-Api-Key`, or `?token=` on DICOMweb GETs), sets
 *   request.principal and request.decision, and refuses a DICOMweb request whose behaviour no scope
 *   grants: 401 (RFC 6750 `WWW-Authenticate`) when credentials are missing or bad, 403
 *   `insufficient_scope` naming the scopes that would do.
 * - preHandler: retrieve, render and delete of a study (series, instance) outside the grant → 404
 *   with the body of a study that is not stored (existence does not leak; 404, not 403).
 * - QIDO filters in SQL (accessFor), STOW refuses instance by instance (storeGuard, 0124).
 *
 * Without any auth setting everything is allowed, as before (the loopback-only rule of startServer).
 */
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { type AuthConfig, authEnabled, type Config } from "../config.js";
import { isValidUid } from "../dicom/index.js";
import { DicomwebError, notFoundReason, scopeFromPath } from "../dicomweb/wado.js";
import { type Access, accessAllows, type AccessFilter, rulesForScope } from "../store/access.js";
import type { StoreCandidate } from "../store/archive.js";
import type { Index } from "../store/types.js";
import { verifyApiKey } from "./api-keys.js";
import { IdentityProviderUnavailable, InvalidToken, OidcVerifier } from "./oidc.js";
import { ALLOW_ALL, type Decision, decide } from "./policy.js";
import { type AccessTarget, type Behaviour, classifyRequest, pathBelowDicomwebRoot, type Principal } from "./request-state.js";
import { scopesFor } from "./scopes.js";
import { InvalidShareToken, isShareToken, type ShareGrant, ShareTokens } from "./share-tokens.js";

declare module "fastify" {
  interface FastifyRequest {
    /** What each behaviour may touch (policy.ts); set by the identity hook. */
    decision: Decision | undefined;
    /** The share token's grant when the caller presented one. */
    shareGrant: ShareGrant | undefined;
  }
  interface FastifyInstance {
    /** Identity and share tokens (viewer launch and FHIR endpoints mint tokens through it). */
    auth: AuthService;
  }
}

export interface AuthService {
  readonly enabled: boolean;
  readonly shareTokens: ShareTokens;
  /** A share token and the URLs that open it; the caller has checked the right to share. */
  mintShareToken(
    request: { studyUid: string; seriesUid?: string; ttlSeconds?: number; issuedBy: string },
    dicomwebBase: string,
  ): ShareTokenReply;
  /** Readiness: failing checks (not ready) and warnings (ready, degraded). */
  health(): { checks: Record<string, string>; warnings: Record<string, string> };
}

export interface ShareTokenReply {
  token: string;
  expiresAt: string;
  studyUid: string;
  seriesUid?: string;
  /** The study (series) on DICOMweb with the token as `?token=`. */
  dicomwebUrl: string;
  viewerUrl: string;
}

// ---------------------------------------------------------------------------------------------
// `?token=` is taken out of the URL before routing and logging (it must never be logged).

const queryTokens = new WeakMap<IncomingMessage, string>();

/** Fastify `rewriteUrl`: removes `token` from the query of DICOMweb GET/HEAD requests and keeps it for the identity hook. */
export function stripTokenParameter(dicomwebPath: string): (req: IncomingMessage) => string {
  return (req) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    if (q < 0 || (req.method !== "GET" && req.method !== "HEAD") || pathBelowDicomwebRoot(url, dicomwebPath) === undefined) return url;
    const params = new URLSearchParams(url.slice(q + 1));
    const token = params.get("token");
    if (token === null) return url;
    queryTokens.set(req, token);
    params.delete("token");
    const rest = params.toString();
    const rewritten = rest === "" ? url.slice(0, q) : `${url.slice(0, q)}?${rest}`;
    (req as IncomingMessage & { originalUrl?: string }).originalUrl = rewritten;
    return rewritten;
  };
}

// ---------------------------------------------------------------------------------------------

/** 401 / 403 / 503 with an RFC 6750 challenge and the `{ error }` body. */
class AuthReply extends Error {
  constructor(
    readonly status: 401 | 403 | 503,
    readonly challenge: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

const quoted = (text: string): string => `"${text.replace(/[^\x20-\x7e]/g, "?").replace(/["\\]/g, "'")}"`;

const challenge = (error?: string, description?: string, scope?: string): string =>
  [
    'Bearer realm="voxelgate"',
    ...(error ? [`error=${quoted(error)}`] : []),
    ...(description ? [`error_description=${quoted(description)}`] : []),
    ...(scope ? [`scope=${quoted(scope)}`] : []),
  ].join(", ");

const invalid = (reason: string): AuthReply => new AuthReply(401, challenge("invalid_token", reason), `invalid credentials: ${reason}`);

interface Credentials {
  kind: "bearer" | "apikey";
  value: string;
}

function credentialsOf(request: FastifyRequest): Credentials | undefined {
  const header = request.headers.authorization;
  if (header !== undefined) {
    const m = /^(\S+)\s+(\S+)\s*$/.exec(header);
    const scheme = m?.[1]?.toLowerCase();
    if (scheme === "bearer") return { kind: "bearer", value: m?.[2] ?? "" };
    if (scheme === "apikey") return { kind: "apikey", value: m?.[2] ?? "" };
    throw new AuthReply(
      401,
      challenge("invalid_request", "use Authorization: Bearer <token> or ApiKey <key>"),
      `the Authorization header is not understood: use "Bearer <token>" (OIDC access token or share token) or "ApiKey <key>"`,
    );
  }
  const apiKey = request.headers["x-api-key"];
  if (typeof apiKey === "string" && apiKey !== "") return { kind: "apikey", value: apiKey };
  const token = queryTokens.get(request.raw);
  if (token !== undefined) return { kind: "bearer", value: token };
  return undefined;
}

const SHARE_SCOPES: readonly string[] = Object.freeze(["dicomweb.search", "dicomweb.retrieve", "dicomweb.render"]);

class Authenticator {
  constructor(
    private readonly auth: AuthConfig,
    private readonly oidc: OidcVerifier | undefined,
    private readonly shareTokens: ShareTokens,
  ) {}

  async authenticate(c: Credentials): Promise<{ principal: Principal; share?: ShareGrant }> {
    if (c.kind === "apikey" || c.value.startsWith("vgk_")) {
      const principal = verifyApiKey(this.auth.apiKeys, c.value);
      if (!principal) throw invalid("the API key is not known here");
      return { principal };
    }
    if (isShareToken(c.value)) {
      let share: ShareGrant;
      try {
        share = this.shareTokens.verify(c.value);
      } catch (err) {
        if (err instanceof InvalidShareToken) throw invalid(err.message);
        throw err;
      }
      return { principal: { kind: "share-token", subject: share.issuedBy, roles: [], scopes: SHARE_SCOPES }, share };
    }
    if (!this.oidc) throw invalid("bearer tokens from an identity provider are not accepted: this server has no OIDC issuer configured");
    try {
      return { principal: await this.oidc.verify(c.value) };
    } catch (err) {
      if (err instanceof InvalidToken) throw invalid(err.message);
      if (err instanceof IdentityProviderUnavailable) {
        throw new AuthReply(503, undefined, `the identity provider cannot be reached to verify the token: ${err.message}`);
      }
      throw err;
    }
  }
}

async function sendAuthReply(reply: FastifyReply, err: AuthReply): Promise<void> {
  if (err.challenge) void reply.header("WWW-Authenticate", err.challenge);
  if (err.status === 503) void reply.header("Retry-After", "5");
  await reply.code(err.status).header("Cache-Control", "no-store").type("application/json; charset=utf-8").send({ error: err.message });
}

/** Filled-in viewer URL template; query parameters left empty (no series) are dropped. */
function viewerUrl(template: string, values: Record<string, string>): string {
  const filled = template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    name === "origin" || name === "dicomweb" ? (values[name] ?? "") : encodeURIComponent(values[name] ?? ""),
  );
  const q = filled.indexOf("?");
  if (q < 0) return filled;
  const kept = filled
    .slice(q + 1)
    .split("&")
    .filter((p) => p !== "" && !p.endsWith("="));
  return kept.length > 0 ? `${filled.slice(0, q)}?${kept.join("&")}` : filled.slice(0, q);
}

export interface AuthOptions {
  config: Config;
  index: Index;
  dataDir: string;
  /** Public DICOMweb root for a request (no trailing slash). */
  publicBase(request: FastifyRequest): string;
}

/** Installs identity and authorization on the root instance (after decorateRequestState). */
export function installAuth(app: FastifyInstance, options: AuthOptions): AuthService {
  const { config, index } = options;
  const auth = config.auth;
  const enabled = authEnabled(auth);
  const shareTokens = new ShareTokens(auth.shareTokens.secretFile ?? join(options.dataDir, "gateway", "share-token.key"));
  const oidc = auth.oidc ? new OidcVerifier(auth.oidc) : undefined;
  if (oidc) {
    oidc.start();
    app.addHook("onClose", async () => oidc.close());
  }
  const authenticator = new Authenticator(auth, oidc, shareTokens);
  const anonymous: Principal = Object.freeze({ kind: "anonymous", subject: "anonymous", roles: [], scopes: auth.anonymousScopes });
  const root = config.dicomwebPath;
  const targets = new WeakMap<FastifyRequest, AccessTarget>();

  const service: AuthService = {
    enabled,
    shareTokens,
    mintShareToken(r, dicomwebBase) {
      const ttl = r.ttlSeconds ?? auth.shareTokens.defaultTtlSeconds;
      const { token, grant } = shareTokens.mint({ studyUid: r.studyUid, seriesUid: r.seriesUid, ttlSeconds: ttl, issuedBy: r.issuedBy });
      const path = `/studies/${grant.studyUid}${grant.seriesUid !== undefined ? `/series/${grant.seriesUid}` : ""}`;
      let origin = "";
      try {
        origin = new URL(dicomwebBase).origin;
      } catch {
        // a relative base: the template's {origin} stays empty
      }
      return {
        token,
        expiresAt: new Date(grant.expiresAt * 1000).toISOString(),
        studyUid: grant.studyUid,
        ...(grant.seriesUid !== undefined ? { seriesUid: grant.seriesUid } : {}),
        dicomwebUrl: `${dicomwebBase}${path}?token=${encodeURIComponent(token)}`,
        viewerUrl: viewerUrl(auth.shareTokens.viewerUrl, {
          origin,
          dicomweb: dicomwebBase,
          studyUid: grant.studyUid,
          seriesUid: grant.seriesUid ?? "",
          token,
        }),
      };
    },
    health(): { checks: Record<string, string>; warnings: Record<string, string> } {
      if (!oidc) return { checks: {}, warnings: {} };
      const state = oidc.health();
      // Cached keys keep verifying while the issuer is down: degraded, still ready.
      if (state === "ok" || oidc.hasKeys()) return { checks: { oidc: "ok" }, warnings: state === "ok" ? {} : { oidc: state } };
      return { checks: { oidc: state }, warnings: {} };
    },
  };
  app.decorate("auth", service);
  app.decorateRequest("decision", undefined);
  app.decorateRequest("shareGrant", undefined);

  // Without authentication everything is allowed: a callback-style hook, no promise per request.
  if (!enabled) {
    app.addHook("onRequest", (request, _reply, done) => {
      request.decision = ALLOW_ALL;
      done();
    });
  } else {
    app.addHook("onRequest", async (request, reply) => {
      const below = pathBelowDicomwebRoot(request.url, root);
      const target = below === undefined ? undefined : classifyRequest(request.method, below);
      const guarded = target !== undefined || request.url.startsWith("/api/share-tokens");
      let principal = anonymous;
      let share: ShareGrant | undefined;
      let presented = false;
      try {
        const credentials = credentialsOf(request);
        if (credentials) {
          presented = true;
          ({ principal, share } = await authenticator.authenticate(credentials));
        }
      } catch (err) {
        if (!(err instanceof AuthReply)) throw err;
        // Bad credentials matter where access is decided; elsewhere (landing page, health) the caller stays anonymous.
        if (guarded) return sendAuthReply(reply, err);
        principal = anonymous;
      }
      request.principal = principal;
      request.shareGrant = share;
      request.decision = decide(auth, principal, share);
      if (!target) return;
      targets.set(request, target);
      if (request.decision.has(target.behaviour)) return;
      const needed = scopesFor(target.behaviour);
      if (!presented) {
        return sendAuthReply(
          reply,
          new AuthReply(
            401,
            challenge(),
            `authentication required to ${target.behaviour} here: send Authorization: Bearer <access token> (or ApiKey <key>)`,
          ),
        );
      }
      const what =
        principal.kind === "share-token"
          ? "a share token only opens its study for search, retrieve and render"
          : `the token does not grant ${target.behaviour}; it needs one of the scopes ${needed.join(", ")}` +
            (principal.patient === undefined && principal.scopes.some((s) => s.startsWith("patient/"))
              ? " (patient/ scopes need a patient launch context)"
              : "");
      return sendAuthReply(reply, new AuthReply(403, challenge("insufficient_scope", what, needed.join(" ")), what));
    });
  }

  // Retrieve, render and delete of what the grant does not cover look like a study that is not stored.
  // In proxy mode the local index does not hold the studies: src/gateway/proxy-access.ts decides there.
  if (enabled && config.upstreams.length === 0)
    app.addHook("preHandler", async (request) => {
      const target = targets.get(request);
      if (!target || target.studyUid === undefined || target.behaviour === "search" || target.behaviour === "store") return;
      const access = request.decision?.get(target.behaviour);
      if (access === undefined || access === "all") return;
      const scope = scopeFromPath({ study: target.studyUid, series: target.seriesUid, instance: target.sopUid });
      if (!index.allows({ studyUid: target.studyUid, seriesUid: target.seriesUid }, rulesForScope(access, target.seriesUid))) {
        throw new DicomwebError(404, notFoundReason(scope));
      }
    });

  // POST /api/share-tokens { studyUid, seriesUid?, ttlSeconds? }: needs retrieve rights on that study (series).
  app.post("/api/share-tokens", async (request, reply) => {
    const body = (request.body ?? {}) as { studyUid?: unknown; seriesUid?: unknown; ttlSeconds?: unknown };
    const { studyUid, seriesUid, ttlSeconds } = body;
    if (typeof studyUid !== "string" || !isValidUid(studyUid)) {
      throw new DicomwebError(
        400,
        'give "studyUid" (a valid DICOM UID) in a JSON body: {"studyUid": "1.2...", "seriesUid"?: "...", "ttlSeconds"?: 3600}',
      );
    }
    if (seriesUid !== undefined && (typeof seriesUid !== "string" || !isValidUid(seriesUid))) {
      throw new DicomwebError(400, '"seriesUid" must be a valid DICOM UID when given');
    }
    const max = auth.shareTokens.maxTtlSeconds;
    if (
      ttlSeconds !== undefined &&
      (typeof ttlSeconds !== "number" || !Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > max)
    ) {
      throw new DicomwebError(400, `"ttlSeconds" must be a whole number of seconds from 1 to ${max} (auth.shareTokens.maxTtlSeconds)`);
    }
    if (request.principal.kind === "share-token") throw new DicomwebError(403, "a share token cannot be used to make share tokens");
    const access: Access | undefined = (request.decision ?? ALLOW_ALL).get("retrieve");
    if (access === undefined) {
      return sendAuthReply(
        reply,
        new AuthReply(
          request.principal.kind === "anonymous" ? 401 : 403,
          challenge(request.principal.kind === "anonymous" ? undefined : "insufficient_scope", undefined, scopesFor("retrieve").join(" ")),
          `sharing a study needs the right to retrieve it: one of the scopes ${scopesFor("retrieve").join(", ")}`,
        ),
      );
    }
    const scope = { studyUid, seriesUid: seriesUid as string | undefined };
    const visible = access === "all" ? index.exists(scope) : index.allows(scope, rulesForScope(access, scope.seriesUid));
    if (!visible) throw new DicomwebError(404, notFoundReason(scope));
    const minted = service.mintShareToken(
      { studyUid, seriesUid: scope.seriesUid, ttlSeconds: ttlSeconds as number | undefined, issuedBy: request.principal.subject },
      options.publicBase(request),
    );
    return reply.code(201).header("Cache-Control", "no-store").send(minted);
  });

  return service;
}

/** The QIDO filter of a request: undefined when everything is allowed. */
export function accessFor(request: FastifyRequest, behaviour: Behaviour): AccessFilter | undefined {
  if (!request.decision) return undefined;
  const access = request.decision.get(behaviour);
  if (access === undefined) return [];
  return access === "all" ? undefined : access;
}

const firstText = (c: StoreCandidate, tag: string): string | undefined => {
  const v = c.metadata[tag]?.Value?.[0];
  return typeof v === "string" ? v : undefined;
};

/**
 * STOW's per-instance check: the instance's patient / study must be inside the store grant, and
 * so must the stored study it would join. Undefined when everything may be stored.
 */
export function storeGuard(request: FastifyRequest, index: Index): ((c: StoreCandidate) => string | undefined) | undefined {
  const access = request.decision?.get("store");
  if (!request.decision || access === "all") return undefined;
  return (c) => {
    const patientId = firstText(c, "00100020");
    const allowed =
      access !== undefined &&
      accessAllows(access, {
        studyUid: c.studyUid,
        seriesUid: c.seriesUid,
        patientId,
        issuerOfPatientId: firstText(c, "00100021"),
        institutionName: firstText(c, "00080080"),
      }) &&
      (!index.exists({ studyUid: c.studyUid }) || index.allows({ studyUid: c.studyUid }, rulesForScope(access, undefined)));
    if (allowed) return undefined;
    return `Refused: not authorized (0124): your grant does not allow storing instances of patient ${JSON.stringify(patientId ?? "")} in study ${c.studyUid}`;
  };
}

/**
 * The contract between the gateway's policies (identity, authorization, rate limits, audit)
 * and the routes: who is asking (the Principal), which DICOMweb behaviour a request is, which
 * study/series/instance it targets, and what patient data it touched.
 *
 * Hook order in buildApp (src/http/server.ts): identity (onRequest, sets request.principal)
 * → rate limits (onRequest, keyed by principal and IP) → authorization (preHandler / inside
 * services) → routes (call noteAccess) → audit (onResponse, reads everything here).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";

/** Each DICOMweb behaviour gets its own policy, limits and audit transaction. */
export type Behaviour = "search" | "retrieve" | "render" | "store" | "delete";

export const BEHAVIOURS: readonly Behaviour[] = ["search", "retrieve", "render", "store", "delete"];

export interface Principal {
  /** How the caller proved who they are. "anonymous" only where the configuration allows it. */
  kind: "anonymous" | "user" | "service" | "share-token";
  /** Stable identifier: the token's `sub`, the API key's id, or "anonymous". */
  subject: string;
  /** OAuth client (`azp` / `client_id`) when known. */
  clientId?: string;
  /** Token issuer when the principal comes from a JWT. */
  issuer?: string;
  /** Display name (`name` / `preferred_username`) for audit records. */
  name?: string;
  roles: readonly string[];
  /** Granted scopes as given (SMART v2 `user/ImagingStudy.rs`, plain `dicomweb.search`, …). */
  scopes: readonly string[];
  /** SMART launch context: every transaction is restricted to this patient's studies. */
  patient?: string;
}

export const ANONYMOUS: Principal = Object.freeze({
  kind: "anonymous",
  subject: "anonymous",
  roles: Object.freeze([]) as readonly string[],
  scopes: Object.freeze([]) as readonly string[],
}) as Principal;

/** What the URL names; UIDs are as given in the path (validated by the routes). */
export interface AccessTarget {
  behaviour: Behaviour;
  studyUid?: string;
  seriesUid?: string;
  sopUid?: string;
}

/** One piece of patient data a request read, stored or deleted (for audit). */
export interface AccessedEntity {
  patientId?: string;
  /** Issuer of Patient ID (0010,0021) when known. */
  patientIdIssuer?: string;
  studyUid?: string;
  seriesUid?: string;
  sopUid?: string;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the identity hook; ANONYMOUS until then (and when anonymous access is allowed). */
    principal: Principal;
    /** Patient data this request touched, added by routes through noteAccess(). */
    accessed: AccessedEntity[];
  }
}

/** Adds the request decorations. Call once on the root instance before any hook reads them. */
export function decorateRequestState(app: FastifyInstance): void {
  // Fastify refuses object defaults on decorators (they would be shared); each request gets its own in onRequest.
  app.decorateRequest("principal", null as unknown as Principal);
  app.decorateRequest("accessed", null as unknown as AccessedEntity[]);
  // Callback-style: no promise per request (this runs on every request, cached images included).
  app.addHook("onRequest", (request, _reply, done) => {
    request.principal = ANONYMOUS;
    request.accessed = [];
    done();
  });
}

/** Records patient data a request touched; audit reads it when the response is done. */
export function noteAccess(request: FastifyRequest, ...entities: AccessedEntity[]): void {
  // Route plugins also run in bare test apps without the decorations.
  (request.accessed ??= []).push(...entities);
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // malformed escape: the router will not match it either
  }
}

/**
 * The DICOMweb behaviour and target of a request, from its method and path below the DICOMweb
 * root (`/studies/1.2/series/3.4/rendered`), or undefined for anything that is not DICOMweb.
 * One place that knows the URL space, so every policy classifies a request the same way.
 */
export function classifyRequest(method: string, pathBelowRoot: string): AccessTarget | undefined {
  const path = pathBelowRoot.split("?", 1)[0] ?? "";
  const segments = path.split("/").filter((s) => s !== "");
  // The router decodes percent-escapes (/%73tudies is served as /studies): classify what it will serve, or a policy is bypassed.
  if (path.includes("%")) for (let k = 0; k < segments.length; k++) segments[k] = decodeSegment(segments[k] as string);
  const verb = method.toUpperCase();
  const [first, ...after] = segments;
  if (first === "series" || first === "instances") {
    return after.length === 0 && (verb === "GET" || verb === "HEAD") ? { behaviour: "search" } : undefined;
  }
  if (first !== "studies") return undefined;
  // Walk studies/{uid}/series/{uid}/instances/{uid}; a level name without a UID is a search.
  const levels = ["studies", "series", "instances"] as const;
  const uids: string[] = [];
  let rest = segments;
  let search = false;
  for (const level of levels) {
    if (rest[0] !== level) break;
    if (rest.length === 1) {
      search = true;
      rest = [];
      break;
    }
    uids.push(rest[1] ?? "");
    rest = rest.slice(2);
  }
  // Study-level instance search: /studies/{uid}/instances
  if (!search && uids.length === 1 && rest.length === 1 && rest[0] === "instances") {
    search = true;
    rest = [];
  }
  const target = { studyUid: uids[0], seriesUid: uids[1], sopUid: uids[2] };
  if (verb === "DELETE") return search || rest.length > 0 ? undefined : { behaviour: "delete", ...target };
  // STOW: POST /studies or /studies/{uid} (the walk above saw "studies" alone as a search).
  if (verb === "POST") return segments.length <= 2 ? { behaviour: "store", ...target } : undefined;
  if (verb !== "GET" && verb !== "HEAD") return undefined;
  if (search) return { behaviour: "search", ...target };
  const last = rest[rest.length - 1];
  if (last === "rendered" || last === "thumbnail") return { behaviour: "render", ...target };
  return { behaviour: "retrieve", ...target };
}

const UPSTREAM_ROOT = /^\/upstreams\/[a-z0-9][a-z0-9_-]{0,62}(?=\/)/;

/**
 * The path below a DICOMweb root for classifyRequest: `/dicomweb/studies/…` and, in proxy mode,
 * `/upstreams/<name>/dicomweb/studies/…` (each upstream's own root) give `/studies/…`; undefined
 * for anything else; percent-escapes decoded. Policies must use it so that no path escapes them.
 */
export function pathBelowDicomwebRoot(url: string, dicomwebPath: string): string | undefined {
  const raw = url.split("?", 1)[0] ?? "";
  // Decoded as the router decodes it: `/%64icomweb/%73tudies` reaches the same route and must be classified alike.
  const path = raw.includes("%") ? decodeSegment(raw) : raw;
  const rest = path.replace(UPSTREAM_ROOT, "");
  if (rest === dicomwebPath || rest.startsWith(`${dicomwebPath}/`)) return rest.slice(dicomwebPath.length) || "/";
  return undefined;
}

/**
 * CORS for browser viewers on another origin (OHIF): off unless origins are configured.
 *
 * - Only listed origins get CORS headers; "*" allows any origin but never with credentials
 *   (the config refuses corsCredentials with "*", browsers would refuse the responses anyway).
 * - Every response to an allowed origin carries them: multipart bodies, errors, 401/429 from
 *   the gateway's hooks (this hook runs first, so later hooks' answers keep the headers).
 * - The headers a viewer reads are exposed (ETag, Warning, Content-Range, Retry-After, …).
 * - A preflight from an origin that is not allowed gets a 403 with the reason and no CORS
 *   headers, instead of a silent 204 the browser then refuses with an opaque console error.
 * - With explicit origins every response says `Vary: Origin`, so a shared cache never serves
 *   one origin's answer to another.
 */
import type { FastifyInstance, FastifyReply } from "fastify";

export interface CorsOptions {
  origins: readonly string[];
  credentials: boolean;
  maxAgeSeconds: number;
}

/** Response headers a DICOMweb viewer needs to read (fetch hides the others from scripts). */
export const EXPOSED_HEADERS = [
  "Content-Type",
  "Content-Length",
  "Content-Location",
  "Content-Range",
  "Accept-Ranges",
  "ETag",
  "Last-Modified",
  "Warning",
  "X-Request-Id",
  "Retry-After",
  "WWW-Authenticate",
].join(", ");

const METHODS = ["GET", "HEAD", "POST", "DELETE", "OPTIONS"];
const METHOD_LIST = METHODS.join(", ");
const DEFAULT_ALLOWED_HEADERS = "Accept, Authorization, Content-Type, If-None-Match, If-Modified-Since, Range, X-Request-Id";

function refuse(reply: FastifyReply, reason: string): void {
  void reply.code(403).type("application/json; charset=utf-8").send({ error: reason });
}

export function installCors(app: FastifyInstance, options: CorsOptions): void {
  const any = options.origins.includes("*");
  const allowed = new Set(options.origins);
  const enabled = options.origins.length > 0;
  const credentials = options.credentials && !any;
  const maxAge = String(options.maxAgeSeconds);

  // Callback-style hooks: no promise per request. Answering early = send without calling done().
  app.addHook("onRequest", (request, reply, done) => {
    const origin = request.headers.origin;
    const ok = enabled && origin !== undefined && (any || allowed.has(origin));
    if (ok) {
      void reply.header("Access-Control-Allow-Origin", any ? "*" : origin);
      if (credentials) void reply.header("Access-Control-Allow-Credentials", "true");
      void reply.header("Access-Control-Expose-Headers", EXPOSED_HEADERS);
    }
    if (request.method !== "OPTIONS") return done();
    const askedMethod = request.headers["access-control-request-method"];
    if (origin !== undefined && askedMethod !== undefined) {
      // A CORS preflight: answer it here (no route has OPTIONS), or say why the browser will block the call.
      if (!enabled) {
        return refuse(
          reply,
          `CORS is off: origin ${origin} may not call this server from a browser; start Voxelgate with --cors-origin ${origin} (config corsOrigins)`,
        );
      }
      if (!ok) {
        return refuse(
          reply,
          `origin ${origin} is not allowed by CORS; add it to corsOrigins (--cors-origin) if this viewer should have access`,
        );
      }
      if (!METHODS.includes(askedMethod.toUpperCase())) {
        return refuse(reply, `method ${askedMethod} is not served here; CORS allows ${METHOD_LIST}`);
      }
      void reply.header("Access-Control-Allow-Methods", METHOD_LIST);
      // The origin is trusted: allow the request headers it asks for (Authorization for a bearer token, Accept, Range…).
      void reply.header("Access-Control-Allow-Headers", request.headers["access-control-request-headers"] ?? DEFAULT_ALLOWED_HEADERS);
      void reply.header("Access-Control-Max-Age", maxAge);
    }
    void reply.header("Allow", METHOD_LIST);
    void reply.code(204).send();
  });

  if (enabled && !any) {
    // After the route: a route's own Vary (e.g. "Accept, Accept-Encoding" on metadata) would replace one set earlier.
    app.addHook("onSend", (_request, reply, payload, done) => {
      const vary = reply.getHeader("vary");
      if (vary === undefined) void reply.header("Vary", "Origin");
      else if (!/\borigin\b/i.test(String(vary))) void reply.header("Vary", `${String(vary)}, Origin`);
      done(null, payload);
    });
  }
}

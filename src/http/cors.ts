/**
 * CORS for browser viewers on another origin (OHIF): off unless origins are configured. Every
 * response to an allowed origin (multipart ones too) carries the headers, preflights are
 * answered, and the headers viewers read (ETag, Warning, Content-Location…) are exposed.
 */
import type { FastifyInstance } from "fastify";

const EXPOSED = ["Content-Type", "Content-Length", "Content-Location", "Content-Range", "ETag", "Last-Modified", "Warning", "X-Request-Id"];
const METHODS = "GET, HEAD, POST, DELETE, OPTIONS";

export function installCors(app: FastifyInstance, origins: string[]): void {
  const any = origins.includes("*");
  const allowed = new Set(origins);
  app.addHook("onRequest", async (request, reply) => {
    const origin = request.headers.origin;
    const ok = origin !== undefined && (any || allowed.has(origin));
    if (ok) {
      void reply.header("Access-Control-Allow-Origin", any ? "*" : origin);
      if (!any) void reply.header("Vary", "Origin");
      void reply.header("Access-Control-Expose-Headers", EXPOSED.join(", "));
    }
    if (request.method === "OPTIONS") {
      if (ok && request.headers["access-control-request-method"]) {
        void reply.header("Access-Control-Allow-Methods", METHODS);
        const asked = request.headers["access-control-request-headers"];
        void reply.header("Access-Control-Allow-Headers", asked ?? "Accept, Authorization, Content-Type, If-None-Match, Range");
        void reply.header("Access-Control-Max-Age", "600");
      }
      void reply.header("Allow", METHODS);
      return reply.code(204).send();
    }
  });
}

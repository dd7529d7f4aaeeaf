/**
 * Security headers on every response. What each one is for:
 *
 * - `X-Content-Type-Options: nosniff`: a browser never guesses HTML/script out of DICOM, JSON or
 *   a bulk data download (stored bytes are attacker-controlled).
 * - `Referrer-Policy: no-referrer`: URLs hold study UIDs (patient data); they must not leak to
 *   other sites through the Referer header.
 * - `Content-Security-Policy`: API answers (JSON, multipart, images) get `default-src 'none'`,
 *   which nothing loading them with fetch or <img> is affected by, but which stops a response
 *   opened as a document from running anything. HTML pages that set no policy themselves (the
 *   landing page) get a strict page policy; a page that needs more (a hosted viewer) sets its
 *   own header in its route, and that one is kept.
 * - `frame-ancestors` / `X-Frame-Options`: no clickjacking; origins may be allowed to frame pages.
 * - `Cross-Origin-Resource-Policy`: same-site, except DICOMweb answers when CORS origins are
 *   configured (a viewer on another site loads thumbnails with <img>, which CORP would block).
 * - `Strict-Transport-Security` when the public URL is https (browsers ignore it over http).
 */
import type { FastifyInstance } from "fastify";
import type { SecurityHeadersConfig } from "../config.js";

export interface SecurityHeadersOptions extends SecurityHeadersConfig {
  publicUrl?: string;
  dicomwebPath: string;
  /** CORS origins: when any, DICOMweb answers are Cross-Origin-Resource-Policy: cross-origin. */
  corsOrigins: readonly string[];
}

/** What the landing page needs: its inline style, links to itself; nothing else. */
export const PAGE_CSP_BASE = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

export function installSecurityHeaders(app: FastifyInstance, options: SecurityHeadersOptions): void {
  if (!options.enabled) return;
  const ancestors = options.frameAncestors.length > 0 ? options.frameAncestors.join(" ") : "'none'";
  const apiCsp = `default-src 'none'; frame-ancestors ${ancestors}`;
  const pageCsp = options.pageContentSecurityPolicy ?? `${PAGE_CSP_BASE}; frame-ancestors ${ancestors}`;
  const denyFraming = options.frameAncestors.length === 0;
  const hsts =
    options.publicUrl?.startsWith("https:") && options.hstsMaxAgeSeconds > 0 ? `max-age=${options.hstsMaxAgeSeconds}` : undefined;
  const crossOriginDicomweb = options.corsOrigins.length > 0;
  const root = options.dicomwebPath;

  app.addHook("onRequest", async (request, reply) => {
    void reply.header("X-Content-Type-Options", "nosniff");
    void reply.header("Referrer-Policy", "no-referrer");
    void reply.header("Content-Security-Policy", apiCsp);
    if (denyFraming) void reply.header("X-Frame-Options", "DENY");
    const dicomweb = crossOriginDicomweb && request.url.startsWith(root) && "/?".includes(request.url.charAt(root.length) || "/");
    void reply.header("Cross-Origin-Resource-Policy", dicomweb ? "cross-origin" : "same-site");
    if (hsts !== undefined) void reply.header("Strict-Transport-Security", hsts);
  });

  // After the route: an HTML page without its own policy gets the page policy (the API one would block its style).
  app.addHook("onSend", async (_request, reply, payload) => {
    if (reply.getHeader("content-security-policy") === apiCsp && String(reply.getHeader("content-type")).startsWith("text/html")) {
      void reply.header("Content-Security-Policy", pageCsp);
    }
    return payload;
  });
}

/**
 * Security headers on every response. What each one is for:
 *
 * - `X-Content-Type-Options: nosniff`: a browser never guesses HTML/script out of DICOM, JSON or
 *   a bulk data download (stored bytes are attacker-controlled).
 * - `Referrer-Policy: no-referrer`: URLs hold study UIDs (patient data); they must not leak to
 *   other sites through the Referer header.
 * - `Content-Security-Policy`: DICOMweb answers (JSON, multipart, images) get `default-src 'none'`,
 *   which nothing loading them with fetch or <img> is affected by, but which stops a response
 *   opened as a document from running anything. Other paths (the landing page) get a strict page
 *   policy (no script at all); a page that needs more (a hosted viewer) sets its own header in
 *   its route, which replaces this one.
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

  // Callback-style and synchronous: no promise per request.
  app.addHook("onRequest", (request, reply, done) => {
    const dicomweb = request.url.startsWith(root) && "/?".includes(request.url.charAt(root.length) || "/");
    void reply.header("X-Content-Type-Options", "nosniff");
    void reply.header("Referrer-Policy", "no-referrer");
    // DICOMweb answers are data; anything else may be a page (landing page). A route that sets its own policy replaces this one.
    void reply.header("Content-Security-Policy", dicomweb ? apiCsp : pageCsp);
    if (denyFraming) void reply.header("X-Frame-Options", "DENY");
    void reply.header("Cross-Origin-Resource-Policy", dicomweb && crossOriginDicomweb ? "cross-origin" : "same-site");
    if (hsts !== undefined) void reply.header("Strict-Transport-Security", hsts);
    done();
  });
}

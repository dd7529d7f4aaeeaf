/**
 * The hosted OHIF viewer on a listener of its own (default: the API port + 1, so 8043).
 *
 * Why a second port rather than a path such as /viewer/ on the API port: the OHIF build assumes
 * the web root of its origin (window.PUBLIC_URL="/", absolute /app-config.js, chunk and wasm URLs,
 * its own /viewer, /callback routes). Rewriting a 17 MB minified bundle is fragile across OHIF
 * versions; a second origin needs nothing of the kind, and its origin joins the CORS origins of
 * the DICOMweb API automatically. Behind a reverse proxy, give it a host name of its own.
 */
import { networkInterfaces } from "node:os";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import type { Config } from "../config.js";
import { findOhifBuild, type OhifBuild } from "./ohif-dist.js";
import { ohifAppConfigScript, ohifWindowConfig } from "./ohif-config.js";
import { REVALIDATE, staticAnswer } from "./static-files.js";

export interface ViewerAppOptions {
  build: OhifBuild;
  /** window.config for the app-config.js asked by this request. */
  windowConfig(request: FastifyRequest): object;
  logLevel?: string;
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function notInstalledPage(reason: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Voxelgate viewer not installed</title>
<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;line-height:1.5}code{background:#f2f2f2;padding:0 .2em}</style></head>
<body><h1>The viewer is not installed</h1><p>${escapeHtml(reason)}.</p>
<p>The DICOMweb API works without it; any OHIF can use it with the configuration at <code>/ohif-config</code> on the API port.</p></body></html>
`;
}

/** The viewer's Fastify app (not listening): generated app-config.js, the build's files, SPA fallback. */
export async function buildViewerApp(options: ViewerAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: !options.logLevel || options.logLevel === "silent" ? false : { level: options.logLevel },
    forceCloseConnections: "idle",
  });
  app.addHook("onRequest", async (_request, reply) => {
    void reply.header("X-Content-Type-Options", "nosniff");
    // Study UIDs are in the viewer's URLs: do not hand them to other sites as Referer.
    void reply.header("Referrer-Policy", "same-origin");
  });
  const { dist, missing } = options.build;
  if (dist === undefined) {
    app.get("/*", async (_request, reply) =>
      reply
        .code(503)
        .type("text/html; charset=utf-8")
        .header("cache-control", REVALIDATE)
        .send(notInstalledPage(missing ?? "the OHIF viewer is not installed")),
    );
    return app;
  }
  app.get("/app-config.js", async (request, reply) =>
    reply
      .type("text/javascript; charset=utf-8")
      .header("cache-control", REVALIDATE)
      .send(ohifAppConfigScript(options.windowConfig(request))),
  );
  app.get("/*", async (request, reply) => {
    const path = request.url.split("?")[0] ?? "/";
    const answer = await staticAnswer(dist, path, {
      acceptEncoding: headerText(request.headers["accept-encoding"]),
      ifNoneMatch: headerText(request.headers["if-none-match"]),
    });
    if (!answer) {
      return reply
        .code(404)
        .type("application/json; charset=utf-8")
        .send({ error: `no file ${path} in the OHIF build` });
    }
    void reply.code(answer.status).headers(answer.headers);
    return answer.body ? reply.send(answer.body) : reply.send();
  });
  return app;
}

const headerText = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(", ") : v);

export interface HostedViewer {
  /** E.g. http://127.0.0.1:8043/ */
  url: string;
  port: number;
  /** Origins the browser may load the viewer from: the DICOMweb API allows them (CORS). */
  origins: string[];
  build: OhifBuild;
  /** The viewer's URL for a page served to this request (same host name the browser used). */
  linkFor(request: FastifyRequest): string;
  /** Tells the viewer where the API listens (its app-config.js points there). */
  setApiPort(port: number): void;
  close(): Promise<void>;
}

const LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"];
const WILDCARD = new Set(["0.0.0.0", "::", "[::]"]);
const SAFE_HOSTNAME = /^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$/;

const bracketed = (host: string): string => (host.includes(":") && !host.startsWith("[") ? `[${host}]` : host);

/** Host names a browser may use to reach a listener bound to `host`. */
function reachableNames(host: string): string[] {
  if (["127.0.0.1", "::1", "localhost"].includes(host)) return LOOPBACK_NAMES;
  if (!WILDCARD.has(host)) return [bracketed(host)];
  const names = new Set(LOOPBACK_NAMES);
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) names.add(bracketed(a.address.split("%")[0] ?? a.address));
  }
  return [...names];
}

/** The port the viewer binds: a number, or "auto" = the API port + 1 (any free port when the API's is 0). */
export function viewerPort(config: Config): number {
  const p = config.viewer.port;
  if (p !== "auto") return p;
  return config.port === 0 || config.port === 65535 ? 0 : config.port + 1;
}

/** Starts the viewer listener; call setApiPort once the API listens. */
export async function startHostedViewer(config: Config): Promise<HostedViewer> {
  const build = findOhifBuild(config.viewer.dist);
  const host = config.viewer.host ?? config.host;
  let apiPort = config.port;
  const dicomwebRoot = (request: FastifyRequest): string => {
    if (config.publicUrl) return config.publicUrl.replace(/\/+$/, "") + config.dicomwebPath;
    // The API on the host name the browser used for the viewer, at the API's port.
    const name = SAFE_HOSTNAME.test(request.hostname) ? request.hostname : (reachableNames(config.host)[0] ?? "127.0.0.1");
    return `http://${name}:${apiPort}${config.dicomwebPath}`;
  };
  const app = await buildViewerApp({
    build,
    logLevel: config.logLevel,
    windowConfig: (request) =>
      ohifWindowConfig(dicomwebRoot(request), { transferSyntax: config.viewer.transferSyntax, oidc: config.viewer.oidc }),
  });
  try {
    await app.listen({ host, port: viewerPort(config) });
  } catch (err) {
    await app.close();
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "EADDRINUSE" ? `port ${viewerPort(config)} is in use` : (err as Error).message;
    throw new Error(`the viewer cannot listen: ${why} (choose another with --viewer-port, or --no-viewer)`);
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : viewerPort(config);
  const origins = reachableNames(host).map((name) => `http://${name}:${port}`);
  if (config.viewer.publicUrl) origins.push(new URL(config.viewer.publicUrl).origin);
  return {
    url: `http://${bracketed(host)}:${port}/`,
    port,
    origins,
    build,
    linkFor: (request) =>
      config.viewer.publicUrl ?? `http://${SAFE_HOSTNAME.test(request.hostname) ? request.hostname : bracketed(host)}:${port}/`,
    setApiPort: (p) => {
      apiPort = p;
    },
    close: () => app.close(),
  };
}

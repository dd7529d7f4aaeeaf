/**
 * The HTTP server: Fastify with JSON logs (request id echoed as X-Request-Id), CORS, the
 * DICOMweb routes under the configured root, health, readiness, metrics and the landing page.
 */
import { randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance } from "fastify";
import { authenticates, type Config } from "../config.js";
import { join } from "node:path";
import { CodecPool } from "../codec/index.js";
import { MetadataService } from "../dicomweb/metadata.js";
import { PixelService } from "../dicomweb/pixels.js";
import type { Archive } from "../store/archive.js";
import { installRateLimits } from "../gateway/rate-limit.js";
import { decorateRequestState } from "../gateway/request-state.js";
import { installAuth, stripTokenParameter } from "../gateway/http-auth.js";
import type { RouteContext } from "./context.js";
import { installAudit } from "./audit-hook.js";
import { installCors } from "./cors.js";
import { deleteRoutes } from "./delete-routes.js";
import { installErrorHandler } from "./errors.js";
import { landingPage } from "./landing-page.js";
import { metricsPlugin, recordCacheLookup, recordRateLimited } from "./metrics.js";
import { registerProxy } from "./proxy-routes.js";
import { publicBaseResolver } from "./public-url.js";
import { installSecurityHeaders } from "./security-headers.js";
import { qidoRoutes } from "./qido-routes.js";
import { renderedRoutes } from "./rendered-routes.js";
import { stowRoutes } from "./stow-routes.js";
import { wadoRoutes } from "./wado-routes.js";
import { type HostedViewer, startHostedViewer } from "../viewer/hosted-viewer.js";
import { ohifConfigRoute } from "../viewer/ohif-config-route.js";

export interface RunningServer {
  app: FastifyInstance;
  /** Base URL of the server, with a trailing slash. */
  url: string;
  /** Base URL of the hosted OHIF viewer, when enabled. */
  viewerUrl?: string;
  /** Why the viewer shows no OHIF (not installed), with what to do. */
  viewerMissing?: string;
  close(): Promise<void>;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export async function buildApp(config: Config, archive: Archive, viewer?: HostedViewer): Promise<FastifyInstance> {
  // The hosted viewer is another origin: the DICOMweb API must let it in.
  const corsOrigins = viewer ? [...config.corsOrigins, ...viewer.origins] : config.corsOrigins;
  const app = Fastify({
    logger: config.logLevel === "silent" ? false : { level: config.logLevel },
    // A caller's request id is kept when it is sane, so logs can be joined across services.
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    trustProxy: config.trustedProxies.length > 0 ? config.trustedProxies : false,
    forceCloseConnections: "idle",
    // Frame lists, UID lists and includefield lists can be long.
    routerOptions: { maxParamLength: 4096 },
    // A share token in `?token=` leaves the URL before routing and logging.
    rewriteUrl: stripTokenParameter(config.dicomwebPath),
  });
  // Callback-style hooks here and in the gateway: no promise per request.
  app.addHook("onRequest", (request, reply, done) => {
    void reply.header("X-Request-Id", request.id);
    done();
  });
  decorateRequestState(app);
  installErrorHandler(app);
  // Hook order matters (onRequest hooks run in registration order, route-level ones after all global ones):
  // 1. security headers (every answer); 2. CORS, so every answer after it (preflights, 401, 429, 503, errors)
  // is readable by a viewer on another origin; 3. identity (sets request.principal: register it here, before
  // the routes); 4. rate limits: route-level hooks on the DICOMweb routes, so they always see the principal.
  installSecurityHeaders(app, {
    ...config.securityHeaders,
    publicUrl: config.publicUrl,
    dicomwebPath: config.dicomwebPath,
    corsOrigins: config.corsOrigins,
  });
  installCors(app, { origins: corsOrigins, credentials: config.corsCredentials, maxAgeSeconds: config.corsMaxAgeSeconds });
  installRateLimits(app, { limits: config.limits, dicomwebPath: config.dicomwebPath, onLimited: recordRateLimited });

  const ctx: RouteContext = {
    archive,
    dicomwebPrefix: config.dicomwebPath,
    publicBase: publicBaseResolver({
      publicUrl: config.publicUrl,
      dicomwebPath: config.dicomwebPath,
      trustedProxies: config.trustedProxies,
    }),
  };
  installAuth(app, { config, index: archive.index, dataDir: archive.dataDir, publicBase: ctx.publicBase });
  const metadata = new MetadataService(archive.index, config.metadataCacheBytes, (hit) => recordCacheLookup("metadata", hit));
  const pool = new CodecPool({ size: config.codecThreads });
  const pixels = new PixelService({
    archive,
    pool,
    cacheDir: join(archive.dataDir, "cache"),
    nativeCacheBytes: config.nativeCacheBytes,
    renderedCacheBytes: config.renderedCacheBytes,
    memoryCacheBytes: config.pixelMemoryCacheBytes,
    onLookup: (cache, hit) => recordCacheLookup(cache, hit),
  });
  app.addHook("onClose", async () => pool.close());
  // The first viewer's images should not wait for the render threads to load their code.
  void pool.warm().catch((err: unknown) => app.log.warn({ err }, "could not warm up the codec threads"));

  await app.register(metricsPlugin, { archive });
  const audit = await installAudit(app, config, archive);
  // Proxy mode (upstreams configured): the DICOMweb routes answer from the upstreams instead of the archive.
  const upstreams =
    config.upstreams.length > 0
      ? await registerProxy(app, config, { pool, cacheDir: join(archive.dataDir, "cache", "upstreams"), onLookup: recordCacheLookup })
      : undefined;
  if (!upstreams) {
    await app.register(qidoRoutes, { ...ctx, qidoMaxResults: config.qidoMaxResults });
    await app.register(wadoRoutes, { ...ctx, metadata, pixels, pool });
    await app.register(renderedRoutes, { ...ctx, pixels });
    await app.register(stowRoutes, {
      ...ctx,
      maxInstanceBytes: config.maxInstanceBytes,
      maxRequestBytes: config.limits.enabled ? config.limits.store.maxRequestBytes : undefined,
      metadata,
      pixels,
      pretranscode: config.pretranscode,
    });
    await app.register(deleteRoutes, { ...ctx, allowDelete: config.allowDelete, pixels });
  }
  app.addHook("onClose", async () => metadata.close());

  await app.register(ohifConfigRoute, { publicBase: ctx.publicBase, transferSyntax: config.viewer.transferSyntax });
  app.get("/", async (request, reply) => {
    const html = landingPage({
      dicomwebRoot: ctx.publicBase(request),
      stats: archive.index.stats(),
      dataDir: archive.dataDir,
      corsOrigins,
      viewer: viewer ? { url: viewer.linkFor(request), missing: viewer.build.missing } : undefined,
    });
    return reply.type("text/html; charset=utf-8").send(html);
  });
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    const checks: Record<string, string> = {};
    try {
      archive.index.check();
      checks.index = "ok";
    } catch (err) {
      checks.index = (err as Error).message;
    }
    try {
      await archive.blobs.check();
      checks.storage = "ok";
    } catch (err) {
      checks.storage = (err as Error).message;
    }
    if (audit) checks.audit = audit.readiness();
    const gateway = app.auth.health();
    Object.assign(checks, gateway.checks, upstreams?.readiness());
    // A degraded audit sink spools to disk: the server stays ready (audit delayed, not lost).
    const ready = Object.values(checks).every((v) => v === "ok" || v.startsWith("degraded"));
    const warnings = Object.keys(gateway.warnings).length > 0 ? { warnings: gateway.warnings } : {};
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "not ready", checks, ...warnings });
  });
  return app;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

export async function startServer(config: Config, archive: Archive): Promise<RunningServer> {
  if (!LOOPBACK.has(config.host) && !config.allowUnauthenticatedRemote && !authenticates(config.auth)) {
    throw new Error(
      `refusing to serve patient data without authentication on ${config.host}: bind 127.0.0.1, configure authentication (--oidc-issuer, or auth.apiKeys), ` +
        `or set "allowUnauthenticatedRemote": true in the config file if something in front of Voxelgate authenticates users`,
    );
  }
  const viewer = config.viewer.enabled ? await startHostedViewer(config) : undefined;
  let app: FastifyInstance;
  try {
    app = await buildApp(config, archive, viewer);
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await viewer?.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  viewer?.setApiPort(port);
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  return {
    app,
    url: `http://${host}:${port}/`,
    viewerUrl: viewer?.url,
    viewerMissing: viewer?.build.missing,
    // Stops accepting, lets in-flight requests (a STOW being stored) finish, then closes the index.
    close: async () => {
      await app.close();
      await viewer?.close();
      await archive.close();
    },
  };
}

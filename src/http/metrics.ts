/**
 * Prometheus metrics: `GET /metrics` in the text exposition format (prom-client).
 *
 * Per server (one registry per registered plugin): requests, latency and bytes by DICOMweb
 * transaction, and the index's study/series/instance counts, read on each scrape. Process-wide
 * (one module registry, shared by every server in the process): default process metrics,
 * instances stored and cache lookups, which services record through the functions exported here
 * without holding a reference to the server.
 */
import { Transform } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Archive } from "../store/archive.js";

export type Transaction =
  "qido" | "wado-instance" | "wado-metadata" | "wado-frames" | "wado-bulkdata" | "wado-rendered" | "stow" | "delete" | "other";

const processRegistry = new Registry();
collectDefaultMetrics({ register: processRegistry });

const instancesStored = new Counter({
  name: "voxelgate_instances_stored_total",
  help: "DICOM instances stored (STOW-RS and import), duplicates not counted",
  registers: [processRegistry],
});

const cacheLookups = new Counter({
  name: "voxelgate_cache_lookups_total",
  help: "Cache lookups by cache and result (hit or miss)",
  labelNames: ["cache", "result"] as const,
  registers: [processRegistry],
});

const rateLimited = new Counter({
  name: "voxelgate_rate_limited_total",
  help: "Requests refused by the gateway's limits, by DICOMweb behaviour and key (principal, ip, concurrency)",
  labelNames: ["behaviour", "key"] as const,
  registers: [processRegistry],
});

/** Counts one request refused by a rate limit (key "principal" or "ip") or a concurrency cap ("concurrency"). */
export function recordRateLimited(behaviour: string, key: "principal" | "ip" | "concurrency"): void {
  rateLimited.inc({ behaviour, key });
}

/** Counts instances newly stored (or overwritten); call it once per STOW request or import batch. */
export function recordInstancesStored(n: number): void {
  if (n > 0) instancesStored.inc(n);
}

/** Counts one lookup in a named cache ("native", "rendered", "metadata", ...). */
export function recordCacheLookup(cache: string, hit: boolean): void {
  cacheLookups.inc({ cache, result: hit ? "hit" : "miss" });
}

const STUDY_LEVELS = new Set(["studies", "series", "instances"]);

/**
 * The DICOMweb transaction a route serves, from its URL pattern (e.g.
 * `/dicomweb/studies/:study/series/:series/metadata`) and method. Unmatched requests (no route) are "other".
 */
export function transactionOf(method: string, routeUrl: string | undefined): Transaction {
  if (!routeUrl) return "other";
  const segments = routeUrl.split("/").filter((s) => s !== "");
  if (!segments.includes("studies")) return "other";
  const literals = new Set(segments.filter((s) => !s.startsWith(":") && s !== "*"));
  const read = method === "GET" || method === "HEAD";
  if (read) {
    if (literals.has("bulkdata")) return "wado-bulkdata";
    if (literals.has("rendered") || literals.has("thumbnail")) return "wado-rendered";
    if (literals.has("frames")) return "wado-frames";
    if (literals.has("metadata")) return "wado-metadata";
  }
  const last = segments[segments.length - 1] ?? "";
  const parent = segments[segments.length - 2] ?? "";
  if (STUDY_LEVELS.has(last)) {
    // A level collection: search it, or store into it.
    if (read) return "qido";
    if (method === "POST") return "stow";
    return "other";
  }
  if (last.startsWith(":") && STUDY_LEVELS.has(parent)) {
    // One study, series or instance.
    if (read) return "wado-instance";
    if (method === "DELETE") return "delete";
    if (method === "POST" && parent === "studies") return "stow";
  }
  return "other";
}

export interface MetricsOptions {
  archive: Archive;
}

interface Meter {
  bytesOut: number;
  bytesIn: number;
}

const meters = new WeakMap<FastifyRequest, Meter>();

function headerBytes(value: unknown): number | undefined {
  const n = Number(Array.isArray(value) ? value[0] : value);
  return value !== undefined && Number.isFinite(n) && n >= 0 ? n : undefined;
}

function chunkLength(chunk: unknown, encoding?: unknown): number {
  if (typeof chunk === "string") return Buffer.byteLength(chunk, typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8");
  if (chunk instanceof Uint8Array) return chunk.byteLength;
  return 0;
}

/** Wraps the raw response's write/end to count body bytes actually sent (streams have no content-length). */
function meterResponse(reply: FastifyReply, meter: Meter): void {
  const res = reply.raw;
  const write = res.write;
  const end = res.end;
  // Some responses' end() calls this.write() (light-my-request's does): count those bytes once.
  let ending = false;
  res.write = function (this: typeof res, chunk: unknown, ...rest: unknown[]) {
    if (!ending) meter.bytesOut += chunkLength(chunk, rest[0]);
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof res.write;
  res.end = function (this: typeof res, ...args: unknown[]) {
    if (args[0] !== undefined && typeof args[0] !== "function") meter.bytesOut += chunkLength(args[0], args[1]);
    ending = true;
    try {
      return (end as (...a: unknown[]) => typeof res).call(this, ...args);
    } finally {
      ending = false;
    }
  } as typeof res.end;
}

/** Body bytes a finished request received and sent (what the metrics count; the audit records it too). */
export function requestBytes(request: FastifyRequest, reply: FastifyReply): { sent: number; received: number } {
  const meter = meters.get(request);
  const declared = request.method === "HEAD" ? undefined : headerBytes(reply.getHeader("content-length"));
  return { sent: meter && meter.bytesOut > 0 ? meter.bytesOut : (declared ?? 0), received: meter?.bytesIn ?? 0 };
}

const serverRegistries = new WeakMap<FastifyInstance, Registry>();

/** The registry behind a server's /metrics, for metrics other plugins own (audit sinks). */
export function serverMetricsRegistry(app: FastifyInstance): Registry | undefined {
  return serverRegistries.get(app);
}

/** Registers GET /metrics and the hooks that measure every request of the server it is registered on. */
export async function metricsPlugin(app: FastifyInstance, options: MetricsOptions): Promise<void> {
  const registry = new Registry();
  serverRegistries.set(app, registry);
  const requests = new Counter({
    name: "voxelgate_http_requests_total",
    help: "HTTP requests by DICOMweb transaction, method and status code",
    labelNames: ["transaction", "method", "status"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "voxelgate_http_request_duration_seconds",
    help: "Time from request received to response sent, by DICOMweb transaction",
    labelNames: ["transaction"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const bytesSent = new Counter({
    name: "voxelgate_http_response_bytes_total",
    help: "Response body bytes sent, by DICOMweb transaction",
    labelNames: ["transaction"] as const,
    registers: [registry],
  });
  const bytesReceived = new Counter({
    name: "voxelgate_http_request_bytes_total",
    help: "Request body bytes received, by DICOMweb transaction",
    labelNames: ["transaction"] as const,
    registers: [registry],
  });
  const archive = options.archive;
  new Gauge({
    name: "voxelgate_archive_objects",
    help: "Studies, series and instances in the index (read at scrape time)",
    labelNames: ["level"] as const,
    registers: [registry],
    collect() {
      // A failing index must not break the scrape: the readiness check reports it.
      try {
        const stats = archive.index.stats();
        this.set({ level: "studies" }, stats.studies);
        this.set({ level: "series" }, stats.series);
        this.set({ level: "instances" }, stats.instances);
      } catch {
        this.reset();
      }
    },
  });

  // Callback-style hooks: they run on every request, and a promise each adds up on a cached image.
  app.addHook("onRequest", (request, reply, done) => {
    const meter: Meter = { bytesOut: 0, bytesIn: headerBytes(request.headers["content-length"]) ?? 0 };
    meters.set(request, meter);
    meterResponse(reply, meter);
    done();
  });

  // A chunked upload (STOW streaming) has no content-length: count the bytes as the body parser reads them.
  app.addHook("preParsing", (request, _reply, payload, done) => {
    const meter = meters.get(request);
    if (!meter || request.headers["content-length"] !== undefined || request.headers["transfer-encoding"] === undefined) {
      return done(null, payload);
    }
    const counter = new Transform({
      transform(chunk: Buffer, _enc, next) {
        meter.bytesIn += chunk.length;
        (counter as unknown as { receivedEncodedLength: number }).receivedEncodedLength = meter.bytesIn;
        next(null, chunk);
      },
    });
    payload.on("error", (e) => counter.destroy(e));
    done(null, payload.pipe(counter));
  });

  // Route URL + method → transaction, worked out once per route rather than per request.
  const transactions = new Map<string, Transaction>();
  app.addHook("onResponse", (request, reply, done) => {
    const routeKey = `${request.method} ${request.routeOptions.url ?? ""}`;
    let transaction = transactions.get(routeKey);
    if (transaction === undefined) {
      transaction = transactionOf(request.method, request.routeOptions.url);
      transactions.set(routeKey, transaction);
    }
    const meter = meters.get(request);
    requests.inc({ transaction, method: request.method, status: String(reply.statusCode) });
    duration.observe({ transaction }, reply.elapsedTime / 1000);
    if (meter) {
      const bytes = requestBytes(request, reply);
      bytesSent.inc({ transaction }, bytes.sent);
      bytesReceived.inc({ transaction }, bytes.received);
    }
    done();
  });

  app.get("/metrics", async (_request, reply) => {
    const [server, process] = await Promise.all([registry.metrics(), processRegistry.metrics()]);
    reply.header("cache-control", "no-store").type(registry.contentType);
    return `${server}\n${process}`;
  });
}

// Like fastify-plugin: the hooks apply to the whole server, not only inside this plugin's scope.
Object.assign(metricsPlugin, {
  [Symbol.for("skip-override")]: true,
  [Symbol.for("fastify.display-name")]: "voxelgate-metrics",
});

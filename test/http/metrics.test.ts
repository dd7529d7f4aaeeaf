/** /metrics: counters by transaction, latency, bytes both ways, index gauge, instance and cache counters. */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { metricsPlugin, recordCacheLookup, recordInstancesStored, transactionOf } from "../../src/http/metrics.js";
import type { Archive } from "../../src/store/archive.js";
import type { IndexStats } from "../../src/store/types.js";

const stats: IndexStats = { studies: 2, series: 3, instances: 7 };
// Only what the plugin reads: index.stats().
const archive = { index: { stats: () => stats } } as unknown as Archive;

async function buildApp(): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(metricsPlugin, { archive });
  // Routes registered outside the plugin's scope, as the server does: the hooks must still see them.
  await app.register(
    async (dicomweb) => {
      dicomweb.get("/studies", async () => []);
      dicomweb.get("/studies/:study/series/:series/metadata", async (_req, reply) => {
        reply.type("application/dicom+json");
        return Buffer.alloc(1000, 0x20);
      });
      dicomweb.get("/studies/:study/series/:series/instances/:instance/frames/:frames", async (_req, reply) => {
        reply.type("application/octet-stream");
        return Readable.from([Buffer.alloc(300), Buffer.alloc(200)]);
      });
      dicomweb.addContentTypeParser("multipart/related", (_req, payload, done) => {
        let n = 0;
        payload.on("data", (c: Buffer) => (n += c.length));
        payload.on("end", () => done(null, n));
        payload.on("error", (e) => done(e));
      });
      dicomweb.post("/studies", async (req, reply) => {
        reply.code(200);
        return { received: req.body };
      });
    },
    { prefix: "/dicomweb" },
  );
  return app;
}

async function scrape(app: FastifyInstance): Promise<string> {
  const r = await app.inject({ method: "GET", url: "/metrics" });
  assert.equal(r.statusCode, 200);
  assert.match(String(r.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
  return r.body;
}

/** The value of one sample line, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^([^{\s]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const found = Object.fromEntries(
      (m[2] ?? "")
        .split(",")
        .filter(Boolean)
        .map((kv) => {
          const [k, v] = kv.split("=");
          return [k, JSON.parse(v ?? '""') as string];
        }),
    );
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(m[3]);
  }
  return 0;
}

test("transactions are named from the route pattern and method", () => {
  const cases: Array<[string, string | undefined, string]> = [
    ["GET", "/dicomweb/studies", "qido"],
    ["GET", "/dicomweb/studies/:study/series", "qido"],
    ["GET", "/dicomweb/studies/:study/series/:series/instances", "qido"],
    ["GET", "/dicomweb/instances", "other"],
    ["GET", "/dicomweb/studies/:study", "wado-instance"],
    ["HEAD", "/dicomweb/studies/:study/series/:series/instances/:instance", "wado-instance"],
    ["GET", "/dicomweb/studies/:study/metadata", "wado-metadata"],
    ["GET", "/dicomweb/studies/:study/series/:series/metadata", "wado-metadata"],
    ["GET", "/dicomweb/studies/:study/series/:series/instances/:instance/frames/:frames", "wado-frames"],
    ["GET", "/dicomweb/studies/:study/series/:series/instances/:instance/frames/:frames/rendered", "wado-rendered"],
    ["GET", "/dicomweb/studies/:study/series/:series/thumbnail", "wado-rendered"],
    ["GET", "/dicomweb/studies/:study/series/:series/instances/:instance/bulkdata/*", "wado-bulkdata"],
    ["POST", "/dicomweb/studies", "stow"],
    ["POST", "/dicomweb/studies/:study", "stow"],
    ["DELETE", "/dicomweb/studies/:study/series/:series", "delete"],
    ["GET", "/healthz", "other"],
    ["GET", undefined, "other"],
  ];
  for (const [method, url, expected] of cases) assert.equal(transactionOf(method, url), expected, `${method} ${url}`);
});

test("requests, latency and bytes are counted per transaction; the index gauge is read on scrape", async () => {
  const app = await buildApp();
  try {
    const before = await scrape(app);
    assert.equal(sample(before, "voxelgate_http_requests_total", { transaction: "qido" }), 0);

    assert.equal((await app.inject({ method: "GET", url: "/dicomweb/studies" })).statusCode, 200);
    assert.equal((await app.inject({ method: "GET", url: "/dicomweb/studies" })).statusCode, 200);
    assert.equal((await app.inject({ method: "GET", url: "/dicomweb/studies/1.2/series/1.3/metadata" })).statusCode, 200);
    const frames = await app.inject({ method: "GET", url: "/dicomweb/studies/1/series/2/instances/3/frames/1" });
    assert.equal(frames.rawPayload.length, 500);
    assert.equal((await app.inject({ method: "GET", url: "/nowhere" })).statusCode, 404);
    const body = Buffer.alloc(4096, 1);
    const fixed = await app.inject({
      method: "POST",
      url: "/dicomweb/studies",
      headers: { "content-type": "multipart/related" },
      payload: body,
    });
    assert.equal(fixed.statusCode, 200);
    // Chunked upload without content-length, as a streaming STOW client sends it.
    const chunked = await app.inject({
      method: "POST",
      url: "/dicomweb/studies",
      headers: { "content-type": "multipart/related", "transfer-encoding": "chunked" },
      payload: Readable.from([Buffer.alloc(1000), Buffer.alloc(24)]),
    });
    assert.deepEqual(chunked.json(), { received: 1024 });

    const text = await scrape(app);
    assert.equal(sample(text, "voxelgate_http_requests_total", { transaction: "qido", method: "GET", status: "200" }), 2);
    assert.equal(sample(text, "voxelgate_http_requests_total", { transaction: "wado-metadata", method: "GET", status: "200" }), 1);
    assert.equal(sample(text, "voxelgate_http_requests_total", { transaction: "wado-frames", status: "200" }), 1);
    assert.equal(sample(text, "voxelgate_http_requests_total", { transaction: "other", status: "404" }), 1);
    assert.equal(sample(text, "voxelgate_http_requests_total", { transaction: "stow", method: "POST", status: "200" }), 2);
    assert.equal(sample(text, "voxelgate_http_request_duration_seconds_count", { transaction: "qido" }), 2);
    assert.equal(sample(text, "voxelgate_http_request_duration_seconds_bucket", { transaction: "qido", le: "+Inf" }), 2);
    assert.equal(sample(text, "voxelgate_http_response_bytes_total", { transaction: "wado-metadata" }), 1000);
    assert.equal(sample(text, "voxelgate_http_response_bytes_total", { transaction: "wado-frames" }), 500, "streamed body counted");
    assert.equal(sample(text, "voxelgate_http_request_bytes_total", { transaction: "stow" }), 4096 + 1024);
    assert.equal(sample(text, "voxelgate_archive_objects", { level: "studies" }), 2);
    assert.equal(sample(text, "voxelgate_archive_objects", { level: "series" }), 3);
    assert.equal(sample(text, "voxelgate_archive_objects", { level: "instances" }), 7);
    assert.ok(sample(text, "process_cpu_user_seconds_total") > 0, "default process metrics");

    stats.instances = 9;
    assert.equal(sample(await scrape(app), "voxelgate_archive_objects", { level: "instances" }), 9, "gauge follows the index");
  } finally {
    await app.close();
  }
});

test("instances stored and cache lookups are recorded by the functions services call", async () => {
  const app = await buildApp();
  try {
    const before = await scrape(app);
    recordInstancesStored(3);
    recordInstancesStored(0);
    recordCacheLookup("rendered", true);
    recordCacheLookup("rendered", false);
    recordCacheLookup("rendered", false);
    const after = await scrape(app);
    const delta = (name: string, labels: Record<string, string> = {}) => sample(after, name, labels) - sample(before, name, labels);
    assert.equal(delta("voxelgate_instances_stored_total"), 3);
    assert.equal(delta("voxelgate_cache_lookups_total", { cache: "rendered", result: "hit" }), 1);
    assert.equal(delta("voxelgate_cache_lookups_total", { cache: "rendered", result: "miss" }), 2);
  } finally {
    await app.close();
  }
});

test("a failing index does not break the scrape", async () => {
  const broken = {
    index: {
      stats: () => {
        throw new Error("database is locked");
      },
    },
  } as unknown as Archive;
  const app = Fastify();
  await app.register(metricsPlugin, { archive: broken });
  try {
    const text = await scrape(app);
    assert.match(text, /# TYPE voxelgate_archive_objects gauge/);
    assert.doesNotMatch(text, /^voxelgate_archive_objects\{/m);
  } finally {
    await app.close();
  }
});

/**
 * Rate limits, concurrency caps and STOW body limits: on the real server (per-IP buckets,
 * per-behaviour independence, 429 + Retry-After, metrics, 413, a streamed study holding its
 * slot), and on a small Fastify app with a test identity plugin (per-principal keys) and a
 * route that blocks until the test lets it go (queue and rejection).
 */
import assert from "node:assert/strict";
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { test, type TestContext } from "node:test";
import Fastify from "fastify";
import { Readable } from "node:stream";
import { type BatchFile, sendBatch } from "../../src/cli/import-stow.js";
import { parseConfig, type ConfigInput } from "../../src/config.js";
import { BucketTable, installRateLimits } from "../../src/gateway/rate-limit.js";
import { decorateRequestState, type Principal } from "../../src/gateway/request-state.js";
import { installCors } from "../../src/http/cors.js";
import { httpRequest, type HttpResponse, multipartBody, reasonOf, startInProcess, syntheticInstance } from "../helpers/archive-harness.js";

const limitsOf = (limits: ConfigInput["limits"]) => parseConfig({ limits }).limits;

test("bucket table: refills at its rate up to the burst, forgets the least recently used key beyond its size", () => {
  const table = new BucketTable(2, 4, 3);
  const a = table.refill("a", 0);
  assert.equal(a.tokens, 4);
  a.tokens = 0;
  assert.equal(table.refill("a", 1).tokens, 2, "2 tokens per second");
  assert.equal(table.refill("a", 100).tokens, 4, "never above the burst");
  table.refill("a", 100).tokens = 0.5;
  assert.equal(table.retryAfter(table.refill("a", 100)), 1);
  table.refill("b", 100);
  table.refill("c", 100);
  table.refill("a", 100); // a is now the most recently used
  table.refill("d", 100); // evicts b
  assert.equal(table.size, 3);
  assert.equal(table.refill("a", 100).tokens, 0.5, "a was kept");
});

test("real server: per-IP search limit gives 429 with Retry-After and a reason; retrieve is not affected; the next window passes", async (t) => {
  const origin = "http://viewer.example";
  const s = await startInProcess(t, {
    corsOrigins: [origin],
    limits: { search: { perPrincipal: false, perIp: { rate: 2, burst: 3 } } },
  });
  const { body, contentType } = multipartBody([
    syntheticInstance({ studyUid: "1.2.3.88.1", seriesUid: "1.2.3.88.2", sopUid: "1.2.3.88.3" }),
  ]);
  assert.equal(
    (await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body })).status,
    200,
  );

  for (let i = 0; i < 3; i++) assert.equal((await httpRequest(`${s.dicomweb}/studies`)).status, 200, `search ${i + 1} of the burst`);
  const refused = await httpRequest(`${s.dicomweb}/studies?PatientName=X*`, { headers: { origin } });
  assert.equal(refused.status, 429);
  assert.equal(refused.headers["retry-after"], "1");
  assert.match(
    reasonOf(refused),
    /too many search requests per client address: the limit is 2\/s with bursts of 3 \(limits\.search\.perIp\)/,
  );
  assert.equal(refused.headers["access-control-allow-origin"], origin, "the viewer can read the 429 and its Retry-After");
  assert.match(String(refused.headers["access-control-expose-headers"]), /Retry-After/);
  // Other search URLs share the bucket, however they are spelled (the router decodes %73tudies to studies).
  for (const url of [`${s.dicomweb}/series`, `${s.dicomweb}/studies/1.2.3.88.1/series`, `${s.dicomweb}/%73tudies`]) {
    assert.equal((await httpRequest(url)).status, 429, url);
  }

  // Retrieve has its own buckets.
  assert.equal((await httpRequest(`${s.dicomweb}/studies/1.2.3.88.1/metadata`)).status, 200);
  assert.equal((await httpRequest(`${s.url}healthz`)).status, 200, "non-DICOMweb routes are not limited");

  // After Retry-After, a token is back.
  await sleep(1100);
  assert.equal((await httpRequest(`${s.dicomweb}/studies`)).status, 200);

  const metrics = (await httpRequest(`${s.url}metrics`)).text();
  const line = /voxelgate_rate_limited_total\{behaviour="search",key="ip"\} (\d+)/.exec(metrics);
  assert.ok(line && Number(line[1]) >= 1, "refusals are counted");
});

test("real server: STOW larger than limits.store.maxRequestBytes gets 413 (declared or streamed) and nothing is stored", async (t) => {
  const s = await startInProcess(t, { limits: { store: { maxRequestBytes: 10_000 } } });
  const instances = [1, 2, 3].map((n) =>
    syntheticInstance({ studyUid: "1.2.3.89.1", seriesUid: "1.2.3.89.2", sopUid: `1.2.3.89.3.${n}`, rows: 64, columns: 64 }),
  );
  const { body, contentType } = multipartBody(instances);
  assert.ok(body.length > 10_000);
  const declared = await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body });
  assert.equal(declared.status, 413);
  assert.match(reasonOf(declared), /larger than the 10000-byte limit \(limits\.store\.maxRequestBytes\)/);

  // Chunked (no Content-Length): counted as it streams.
  async function* chunks() {
    for (let i = 0; i < body.length; i += 4096) yield body.subarray(i, i + 4096);
  }
  const streamed = await httpRequest(`${s.dicomweb}/studies`, {
    method: "POST",
    headers: { "content-type": contentType, "transfer-encoding": "chunked" },
    body: chunks(),
  });
  assert.equal(streamed.status, 413);
  assert.match(reasonOf(streamed), /limits\.store\.maxRequestBytes.*nothing from this request was stored/);
  assert.deepEqual((await httpRequest(`${s.dicomweb}/studies`)).json(), []);

  const one = multipartBody(instances.slice(0, 1));
  assert.equal(
    (await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": one.contentType }, body: one.body })).status,
    200,
  );
});

test("voxelgate import --url waits out a 429 (Retry-After) and sends the batch again", async (t) => {
  const s = await startInProcess(t, { limits: { store: { perIp: { rate: 0.5, burst: 1 } } } });
  const item = (n: number): BatchFile => {
    const bytes = syntheticInstance({ studyUid: "1.2.3.92.1", seriesUid: "1.2.3.92.2", sopUid: `1.2.3.92.3.${n}` });
    return {
      item: {
        name: `f${n}.dcm`,
        baseName: `f${n}.dcm`,
        size: bytes.length,
        open: async () => Readable.from([bytes]),
        head: async () => bytes,
        release: () => {},
      },
      sopUid: `1.2.3.92.3.${n}`,
    };
  };
  assert.deepEqual(await sendBatch([item(1)], { url: s.dicomweb }), [{ kind: "stored" }]);
  // The bucket is empty now: a plain request is refused, the importer's batch waits and gets in.
  const { body, contentType } = multipartBody([
    syntheticInstance({ studyUid: "1.2.3.92.1", seriesUid: "1.2.3.92.2", sopUid: "1.2.3.92.9" }),
  ]);
  assert.equal(
    (await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body })).status,
    429,
  );
  assert.deepEqual(await sendBatch([item(2)], { url: s.dicomweb }), [{ kind: "stored" }]);
});

test("real server: a study retrieve holds its slot while it streams; the next one is refused when the queue is full", async (t) => {
  const s = await startInProcess(t, { limits: { concurrency: { studyRetrieve: 1, queue: 0 } } });
  const study = "1.2.3.90.1";
  // ~24 MB: more than the socket buffers hold, so a reader that stops reading keeps the response (and the slot) open.
  for (let batch = 0; batch < 4; batch++) {
    const files = [0, 1, 2, 3, 4, 5].map((n) =>
      syntheticInstance({ studyUid: study, seriesUid: "1.2.3.90.2", sopUid: `1.2.3.90.3.${batch}.${n}`, rows: 1024, columns: 1024 }),
    );
    const { body, contentType } = multipartBody(files);
    assert.equal(
      (await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body })).status,
      200,
    );
  }
  const url = `${s.dicomweb}/studies/${study}`;
  const accept = 'multipart/related; type="application/dicom"; transfer-syntax=*';
  const slow = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.get(url, { headers: { accept }, agent: false }, (res) => {
      res.pause(); // read nothing: the server blocks on back-pressure
      resolve(res);
    });
    req.on("error", reject);
  });
  assert.equal(slow.statusCode, 200);

  const busy = await httpRequest(url, { headers: { accept } });
  assert.equal(busy.status, 503);
  assert.ok(Number(busy.headers["retry-after"]) >= 1);
  assert.match(reasonOf(busy), /server busy: 1 studyRetrieve requests running and 0 waiting \(limits\.concurrency\.studyRetrieve/);
  // Frames and metadata are not capped.
  assert.equal((await httpRequest(`${url}/metadata`)).status, 200);

  slow.destroy(); // the client goes away: the slot is freed
  let after: HttpResponse | undefined;
  for (let i = 0; i < 50; i++) {
    after = await httpRequest(url, { headers: { accept } });
    if (after.status !== 503) break;
    await sleep(50);
  }
  assert.equal(after?.status, 200);
  assert.ok((after?.body.length ?? 0) > 24_000_000);
});

// ---------------------------------------------------------------------------------------------
// A small app: the real hooks, a test identity plugin, routes the test controls.

interface Gate {
  release(): void;
}

async function smallApp(t: TestContext, limits: ConfigInput["limits"]) {
  const app = Fastify();
  decorateRequestState(app);
  installCors(app, { origins: ["http://viewer.example"], credentials: false, maxAgeSeconds: 60 });
  // Test identity: X-Test-User names the principal (identity proper lives on another branch).
  app.addHook("onRequest", async (request) => {
    const user = request.headers["x-test-user"];
    if (typeof user === "string") {
      const principal: Principal = { kind: "user", subject: user, roles: [], scopes: [] };
      request.principal = principal;
    }
  });
  installRateLimits(app, { limits: limitsOf(limits), dicomwebPath: "/dicomweb" });
  const blocked: Gate[] = [];
  let started = 0;
  app.get("/dicomweb/studies", async () => []);
  app.get("/dicomweb/studies/:study", async () => {
    started++;
    await new Promise<void>((resolve) => blocked.push({ release: resolve }));
    return { done: true };
  });
  app.get("/dicomweb/studies/:study/metadata", async () => []);
  await app.listen({ host: "127.0.0.1", port: 0 });
  t.after(() => app.close());
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    base: `http://127.0.0.1:${port}/dicomweb`,
    blocked,
    started: () => started,
    /** Waits until `n` handlers are blocked (they start asynchronously). */
    async handlersRunning(n: number) {
      for (let i = 0; i < 200 && blocked.length < n; i++) await sleep(10);
      assert.equal(blocked.length, n, `${n} handlers running`);
    },
  };
}

test("per principal and per IP: each user has a bucket, all share the address's bucket, a refused request costs no token", async (t) => {
  const app = await smallApp(t, { search: { perPrincipal: { rate: 0.01, burst: 2 }, perIp: { rate: 0.01, burst: 5 } } });
  const search = (user?: string) => httpRequest(`${app.base}/studies`, { headers: user ? { "x-test-user": user } : {} });

  assert.equal((await search("alice")).status, 200);
  assert.equal((await search("alice")).status, 200);
  const alice = await search("alice");
  assert.equal(alice.status, 429);
  assert.match(reasonOf(alice), /per user.*limits\.search\.perPrincipal/);
  assert.equal(alice.headers["retry-after"], "100", "1 token at 0.01/s");

  // Bob has his own bucket; the address has 5 - 2 = 3 tokens left (alice's refusal took none).
  assert.equal((await search("bob")).status, 200);
  assert.equal((await search("bob")).status, 200);
  assert.equal((await search()).status, 200, "anonymous: keyed by address only");
  const anonymous = await search();
  assert.equal(anonymous.status, 429);
  assert.match(reasonOf(anonymous), /per client address.*limits\.search\.perIp/);
  const carol = await search("carol");
  assert.equal(carol.status, 429, "carol's own bucket is full but the address's is empty");
  assert.match(reasonOf(carol), /per client address/);
  // Retrieve: separate buckets.
  assert.equal((await httpRequest(`${app.base}/studies/1.2/metadata`, { headers: { "x-test-user": "alice" } })).status, 200);
});

test("concurrency cap: requests beyond the cap wait in order, a full queue is refused at once, a long wait times out", async (t) => {
  const app = await smallApp(t, { concurrency: { studyRetrieve: 1, queue: 1, queueTimeoutSeconds: 1 } });
  const retrieve = () => httpRequest(`${app.base}/studies/1.2`, { headers: { origin: "http://viewer.example" } });

  const first = retrieve();
  await app.handlersRunning(1);
  const second = retrieve(); // waits in the queue
  await sleep(100);
  assert.equal(app.started(), 1, "the second waits: its handler has not started");
  const third = await retrieve();
  assert.equal(third.status, 503);
  assert.match(reasonOf(third), /server busy: 1 studyRetrieve requests running and 1 waiting/);
  assert.equal(third.headers["access-control-allow-origin"], "http://viewer.example");
  assert.ok(Number(third.headers["retry-after"]) >= 1);

  app.blocked[0]?.release();
  assert.equal((await first).status, 200);
  await app.handlersRunning(2); // the slot went to the waiting request
  // The queue has room again, but nobody frees the slot within the timeout.
  const fourth = await retrieve();
  assert.equal(fourth.status, 503);
  assert.match(reasonOf(fourth), /waited 1 s for one of 1 studyRetrieve slots/);
  app.blocked[1]?.release();
  assert.equal((await second).status, 200);
  // Metadata on the same study is never capped.
  assert.equal((await httpRequest(`${app.base}/studies/1.2/metadata`)).status, 200);
});

test("limits.enabled false: no limit applies", async (t) => {
  const app = await smallApp(t, { enabled: false, search: { perIp: { rate: 0.01, burst: 1 } } });
  for (let i = 0; i < 5; i++) assert.equal((await httpRequest(`${app.base}/studies`)).status, 200);
});

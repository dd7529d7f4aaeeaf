/** Proxy mode pieces that need no upstream: circuit breaker, URL rewriting, settings from --upstream URLs, frame Accept for the upstream. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { httpRequest, reasonOf, spawnServer } from "../helpers/archive-harness.js";
import { freePort } from "../helpers/orthanc.js";
import { parseConfig } from "../../src/config.js";
import { classifyRequest, pathBelowDicomwebRoot } from "../../src/gateway/request-state.js";
import { buildApp } from "../../src/http/server.js";
import { openArchive } from "../../src/store/file-archive.js";
import { CircuitBreaker } from "../../src/gateway/upstream/breaker.js";
import { upstreamsFromUrls } from "../../src/gateway/upstream/settings.js";
import { frameAcceptForUpstream } from "../../src/gateway/upstream/upstream.js";
import { BASE_MARKER, normalizeDicomJson, normalizeUrl, withPublicBase } from "../../src/gateway/upstream/rewrite.js";
import { parseAccept } from "../../src/http/accept.js";
import { firstPart, openFirstPart } from "../../src/gateway/upstream/parts.js";
import { PassThrough, Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { UpstreamClient } from "../../src/gateway/upstream/client.js";
import { UpstreamSchema } from "../../src/gateway/upstream/settings.js";
import type { DicomJsonDataset } from "../../src/dicom/index.js";

describe("circuit breaker", () => {
  it("opens after N consecutive failures, lets one trial through after the reset time, closes on success", () => {
    let now = 1000;
    const breaker = new CircuitBreaker(3, 500, () => now);
    breaker.failure("a");
    breaker.failure("b");
    breaker.success();
    breaker.failure("c");
    breaker.failure("d");
    assert.equal(breaker.state, "closed", "failures must be consecutive");
    breaker.failure("e");
    assert.equal(breaker.state, "open");
    assert.equal(breaker.allow(), false);
    assert.equal(breaker.status().lastError, "e");
    now += 500;
    assert.equal(breaker.state, "half-open");
    assert.equal(breaker.allow(), true, "one trial");
    assert.equal(breaker.allow(), false, "only one");
    breaker.failure("trial failed");
    assert.equal(breaker.state, "open", "a failed trial opens it again at once");
    now += 500;
    assert.equal(breaker.allow(), true);
    breaker.success();
    assert.equal(breaker.state, "closed");
    assert.equal(breaker.allow(), true);
  });
});

describe("URL rewriting", () => {
  const root = "http://orthanc:8042/dicom-web";
  it("replaces the upstream's base, also under another host name, and leaves other values alone", () => {
    assert.equal(normalizeUrl(`${root}/studies/1.2`, root), `${BASE_MARKER}/studies/1.2`);
    assert.equal(normalizeUrl("http://10.0.0.7:8042/dicom-web/studies/1.2/series/3", root), `${BASE_MARKER}/studies/1.2/series/3`);
    assert.equal(normalizeUrl("urn:oid:1.2.3", root), "urn:oid:1.2.3");
    const json: DicomJsonDataset[] = [
      {
        "00081190": { vr: "UR", Value: [`${root}/studies/1.2`] },
        "7FE00010": { vr: "OB", BulkDataURI: `${root}/studies/1.2/series/3/instances/4/bulk/7fe00010` },
        "00081199": { vr: "SQ", Value: [{ "00081190": { vr: "UR", Value: [`${root}/studies/1.2/series/3/instances/4`] } }] },
        "00081030": { vr: "LO", Value: [`${root}/studies/not-a-url-attribute`] },
      },
    ];
    const text = withPublicBase(JSON.stringify(normalizeDicomJson(json, root)), "https://gw.example/dicomweb/");
    const out = JSON.parse(text) as Array<
      Record<string, { Value?: Array<string | Record<string, { Value: string[] }>>; BulkDataURI?: string }>
    >;
    assert.deepEqual(out[0]?.["00081190"]?.Value, ["https://gw.example/dicomweb/studies/1.2"]);
    assert.equal(out[0]?.["7FE00010"]?.BulkDataURI, "https://gw.example/dicomweb/studies/1.2/series/3/instances/4/bulk/7fe00010");
    const item = out[0]?.["00081199"]?.Value?.[0] as Record<string, { Value: string[] }>;
    assert.deepEqual(item["00081190"]?.Value, ["https://gw.example/dicomweb/studies/1.2/series/3/instances/4"]);
    assert.deepEqual(out[0]?.["00081030"]?.Value, [`${root}/studies/not-a-url-attribute`], "only URL attributes are rewritten");
  });
});

describe("upstream settings", () => {
  it("turns --upstream URLs into named upstreams, credentials in the URL into basic credentials", () => {
    const config = parseConfig({
      upstreams: upstreamsFromUrls(["http://alice:s%40cret@orthanc:8042/dicom-web/", "https://pacs.example/dicomweb"]),
    });
    assert.equal(config.upstreams.length, 2);
    assert.deepEqual(
      config.upstreams.map((u) => [u.name, u.url]),
      [
        ["upstream1", "http://orthanc:8042/dicom-web"],
        ["upstream2", "https://pacs.example/dicomweb"],
      ],
    );
    assert.deepEqual(config.upstreams[0]?.credentials, { type: "basic", username: "alice", password: "s@cret" });
    assert.deepEqual(config.upstreams[1]?.credentials, { type: "none" });
  });

  it("refuses duplicate names, bad URLs and unknown credential types with the setting's name", () => {
    assert.throws(
      () =>
        parseConfig({
          upstreams: [
            { name: "a", url: "http://x/dicomweb" },
            { name: "a", url: "http://y/dicomweb" },
          ],
        }),
      /upstreams: upstream names must be unique/,
    );
    assert.throws(() => parseConfig({ upstreams: [{ name: "a", url: "not a url" }] }), /upstreams\.0\.url/);
    assert.throws(
      () => parseConfig({ upstreams: [{ name: "a", url: "http://x/", credentials: { type: "kerberos" } }] }),
      /upstreams\.0\.credentials/,
    );
  });
});

describe("frame Accept for the upstream", () => {
  it("keeps multipart ranges and wraps single-part ones (upstreams answer frames as multipart)", () => {
    assert.equal(
      frameAcceptForUpstream(parseAccept('multipart/related; type="application/octet-stream"; transfer-syntax=*')),
      'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    );
    assert.equal(
      frameAcceptForUpstream(parseAccept("image/jphc, image/jls;q=0.5, image/jpeg;q=0")),
      'multipart/related; type="image/jphc", multipart/related; type="image/jls"',
    );
  });
});

describe("first part of an upstream's multipart answer", () => {
  const boundary = "b0undary-x";
  const type = `multipart/related; type="application/octet-stream"; boundary=${boundary}`;
  // The payload holds CRLFs and a near-delimiter, which must not end the part early.
  const payload = Buffer.concat([Buffer.from("\r\n--b0undary\r\n\r\n"), Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 256))]);
  const body = Buffer.concat([
    Buffer.from(
      `preamble\r\n--${boundary}\r\nContent-Location: x\r\ncontent-type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n`,
    ),
    payload,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const pieces = (size: number) => Array.from({ length: Math.ceil(body.length / size) }, (_, i) => body.subarray(i * size, (i + 1) * size));

  it("gives the part's bytes and Content-Type, whatever the chunking (delimiters split across chunks)", async () => {
    for (const size of [1, 7, 64, 4096, body.length]) {
      const part = await firstPart(Readable.from(pieces(size)), type);
      assert.ok(part, `chunks of ${size}`);
      assert.equal(part.contentType, "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1");
      assert.ok(part.bytes.equals(payload), `chunks of ${size}: ${part.bytes.length} bytes`);
    }
  });

  it("does not wait for the rest of the body once the part has ended", async () => {
    const stream = new PassThrough();
    stream.write(body.subarray(0, body.length - 4)); // the closing delimiter has arrived; the stream stays open
    const part = await firstPart(stream, type);
    assert.ok(part?.bytes.equals(payload));
    assert.ok(stream.destroyed, "the rest is discarded");
  });

  it("streams: the first bytes of the part are there before the upstream has sent the rest", async () => {
    const stream = new PassThrough();
    const half = body.length >> 1;
    stream.write(body.subarray(0, half));
    const part = await openFirstPart(stream, type);
    assert.ok(part);
    assert.equal(part.contentType, "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1");
    const early = await part.chunks.next();
    assert.ok(!early.done && early.value.length > 0, "bytes before the upstream finished");
    const got = [early.value as Buffer];
    stream.end(body.subarray(half));
    for await (const chunk of part.chunks) got.push(chunk);
    assert.ok(Buffer.concat(got).equals(payload));
  });

  it("a body cut before the part ends gives nothing (never a truncated frame)", async () => {
    assert.equal(await firstPart(Readable.from([body.subarray(0, body.length - 30)]), type), undefined);
    assert.equal(await firstPart(Readable.from([Buffer.from("no parts here")]), type), undefined);
  });
});

describe("upstream HTTP client", () => {
  it("asks for compressed JSON only when told to (auto: not on loopback), inflates it, and never asks for compressed pixels", async () => {
    const seen: Array<string | undefined> = [];
    const json = JSON.stringify([{ "0020000D": { vr: "UI", Value: ["1.2.3"] } }]);
    const server = http.createServer((req, res) => {
      seen.push(req.headers["accept-encoding"]);
      if (String(req.headers["accept-encoding"]).includes("gzip")) {
        res.writeHead(200, { "content-type": "application/dicom+json", "content-encoding": "gzip" }).end(gzipSync(json));
      } else res.writeHead(200, { "content-type": "application/dicom+json" }).end(json);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web`;
    try {
      for (const compressJson of ["auto", true] as const) {
        const client = new UpstreamClient(UpstreamSchema.parse({ name: "u", url, compressJson }));
        const r = await client.request({ path: "/studies", headers: { accept: "application/dicom+json" } });
        assert.equal(await r.text(), json);
        assert.equal(r.headers.get("content-encoding"), null, "the inflated body is not labelled compressed");
        const frame = await client.request({ path: "/studies/1/series/2/instances/3/frames/1", headers: { accept: "multipart/related" } });
        frame.discard();
        client.close();
      }
      assert.deepEqual(seen, ["identity", "identity", "gzip, deflate", "identity"]);
    } finally {
      server.close();
    }
  });
});

describe("voxelgate serve --upstream", () => {
  it("starts in proxy mode; an upstream nobody listens on is a 502 naming it, the gateway stays up", async (t) => {
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), "voxelgate-proxy-cli-"));
    t.after(() => rmSync(dataDir, { recursive: true, force: true }));
    const server = await spawnServer(dataDir, ["--upstream", `http://svc:pw@127.0.0.1:${port}/dicom-web`]);
    t.after(() => server.kill());
    const caps = (await httpRequest(`${server.url}api/capabilities`)).json() as {
      mode: string;
      upstreams: Array<{ name: string; url: string; credentials: string; paths: string[] }>;
    };
    assert.equal(caps.mode, "proxy");
    assert.deepEqual(caps.upstreams[0], {
      ...caps.upstreams[0],
      name: "upstream1",
      url: `http://127.0.0.1:${port}/dicom-web`,
      credentials: "basic",
      paths: ["/dicomweb", "/upstreams/upstream1/dicomweb"],
    });
    const res = await httpRequest(`${server.dicomweb}/studies`);
    assert.equal(res.status, 502);
    assert.match(
      reasonOf(res),
      new RegExp(`upstream "upstream1" \\(http://127\\.0\\.0\\.1:${port}/dicom-web\\) (refused the connection|is unavailable)`),
    );
    assert.equal((await httpRequest(`${server.url}healthz`)).status, 200);
  });
});

describe("proxy frames stream through and are cached only when whole", () => {
  // A gateway that waited for the whole frame would never see the client's go-ahead: the timeout turns that into a failure.
  it(
    "a cold frame reaches the client while the upstream sends it; a cut one is not cached and is fetched again",
    { timeout: 20_000 },
    async (t) => {
      const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) % 256));
      const boundary = "upstream-boundary";
      const partHead = Buffer.from(
        `--${boundary}\r\nContent-Type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1\r\nContent-Location: http://upstream/x\r\n\r\n`,
      );
      const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
      const requests: string[] = [];
      let release: () => void = () => undefined;
      let cutNext = false;
      const upstream = http.createServer((req, res) => {
        if (!/\/frames\/\d+$/.test(req.url ?? "")) return void res.writeHead(404).end();
        requests.push(req.url ?? "");
        res.writeHead(200, { "content-type": `multipart/related; type="application/octet-stream"; boundary=${boundary}` });
        res.write(Buffer.concat([partHead, payload.subarray(0, 100_000)]));
        if (cutNext) {
          cutNext = false;
          setTimeout(() => res.destroy(), 50);
          return;
        }
        release = () => res.end(Buffer.concat([payload.subarray(100_000), tail]));
      });
      await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
      t.after(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
      const dataDir = mkdtempSync(join(tmpdir(), "voxelgate-proxy-stream-"));
      t.after(() => rmSync(dataDir, { recursive: true, force: true }));
      const config = parseConfig({
        logLevel: "silent",
        data: dataDir,
        upstreams: [
          {
            name: "stand-in",
            url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/dicom-web`,
            probeIntervalMs: 0,
            retries: 0,
            capabilities: { frameMediaTypes: ["application/octet-stream; transfer-syntax=*"] },
          },
        ],
      });
      const archive = await openArchive({ dataDir, duplicatePolicy: config.duplicatePolicy, maxInstanceBytes: config.maxInstanceBytes });
      const app = await buildApp(config, archive);
      t.after(async () => {
        await app.close();
        await archive.close();
      });
      await app.listen({ port: 0, host: "127.0.0.1" });
      const gateway = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/dicomweb`;
      const accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
      /** GET a frame; `onFirst` runs once the client holds at least `early` bytes. */
      const getFrame = (frame: number, early = 0, onFirst: () => void = () => undefined) =>
        new Promise<{ status: number; body: Buffer; type: string; ended: boolean }>((resolve) => {
          const chunks: Buffer[] = [];
          let got = 0;
          let fired = false;
          http
            .get(`${gateway}/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/frames/${frame}`, { headers: { accept } }, (res) => {
              res.on("data", (c: Buffer) => {
                chunks.push(c);
                got += c.length;
                if (!fired && got >= early) {
                  fired = true;
                  onFirst();
                }
              });
              const done = (ended: boolean) =>
                resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), type: String(res.headers["content-type"]), ended });
              res.on("end", () => done(true));
              res.on("aborted", () => done(false));
              res.on("error", () => done(false));
            })
            .on("error", () => resolve({ status: 0, body: Buffer.concat(chunks), type: "", ended: false }));
        });
      const bodyOf = (r: { body: Buffer; type: string }) => {
        const gatewayBoundary = /boundary="?([^";]+)"?/.exec(r.type)?.[1] ?? "";
        const start = r.body.indexOf("\r\n\r\n") + 4;
        const end = r.body.indexOf(`\r\n--${gatewayBoundary}--`);
        return end < 0 ? undefined : r.body.subarray(start, end);
      };

      // 90,000 bytes of the frame reach the client while the upstream still holds back the rest.
      const cold = await getFrame(1, 90_000, () => release());
      assert.equal(cold.status, 200);
      assert.ok(bodyOf(cold)?.equals(payload), "the whole frame, framed by the gateway's own boundary");
      assert.ok(!cold.body.includes("http://upstream/x"), "no upstream part header leaks");
      const cached = await getFrame(1);
      assert.ok(bodyOf(cached)?.equals(payload));
      assert.equal(requests.length, 1, "the second request came from the cache");

      // The upstream dies in the middle of frame 2: the client sees a cut answer, and nothing is cached.
      cutNext = true;
      const cut = await getFrame(2);
      assert.equal(bodyOf(cut), undefined, "no closing delimiter: the client can tell it is incomplete");
      await new Promise((resolve) => setTimeout(resolve, 100));
      const again = getFrame(2, 1, () => release());
      assert.ok(bodyOf(await again)?.equals(payload));
      assert.equal(requests.length, 3, "the cut frame was fetched again");
    },
  );
});

describe("proxy routes and the gateway contract", () => {
  it("note the study/series/instance of what passes through (request.accessed), search results included", async (t) => {
    // A stand-in upstream answering DICOM JSON with its own URLs.
    const upstream = http.createServer((req, res) => {
      const base = `http://${req.headers.host}/dicom-web`;
      const ds = {
        "0020000D": { vr: "UI", Value: ["1.2.3"] },
        "0020000E": { vr: "UI", Value: ["1.2.3.4"] },
        "00080018": { vr: "UI", Value: ["1.2.3.4.5"] },
        "00100020": { vr: "LO", Value: ["PAT-7"] },
        "00081190": { vr: "UR", Value: [`${base}/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5`] },
      };
      res.writeHead(200, { "content-type": "application/dicom+json" }).end(JSON.stringify([ds]));
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    t.after(() => new Promise<void>((resolve) => upstream.close(() => resolve())));
    const port = (upstream.address() as AddressInfo).port;
    const dataDir = mkdtempSync(join(tmpdir(), "voxelgate-proxy-contract-"));
    t.after(() => rmSync(dataDir, { recursive: true, force: true }));
    const config = parseConfig({
      logLevel: "silent",
      data: dataDir,
      publicUrl: "https://gw.example",
      upstreams: [{ name: "stand-in", url: `http://127.0.0.1:${port}/dicom-web`, probeIntervalMs: 0 }],
    });
    const archive = await openArchive({ dataDir, duplicatePolicy: config.duplicatePolicy, maxInstanceBytes: config.maxInstanceBytes });
    const app = await buildApp(config, archive);
    t.after(async () => {
      await app.close();
      await archive.close();
    });
    const accessed: unknown[] = [];
    app.addHook("onResponse", async (request) => {
      accessed.push(...request.accessed);
    });
    const meta = await app.inject({ url: "/dicomweb/studies/1.2.3/series/1.2.3.4/metadata" });
    assert.equal(meta.statusCode, 200, meta.body);
    assert.deepEqual(accessed, [{ studyUid: "1.2.3", seriesUid: "1.2.3.4", sopUid: undefined }]);
    accessed.length = 0;
    const search = await app.inject({ url: "/dicomweb/studies/1.2.3/instances" });
    assert.equal(search.statusCode, 200);
    assert.deepEqual(accessed, [{ studyUid: "1.2.3", seriesUid: "1.2.3.4", sopUid: "1.2.3.4.5", patientId: "PAT-7" }]);
    const results = search.json<Array<Record<string, { Value: string[] }>>>();
    assert.deepEqual(results[0]?.["00081190"]?.Value, ["https://gw.example/dicomweb/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5"]);
  });
});

describe("pathBelowDicomwebRoot", () => {
  it("finds the DICOMweb path below the archive root and below each upstream's root", () => {
    assert.equal(pathBelowDicomwebRoot("/dicomweb/studies/1.2?limit=1", "/dicomweb"), "/studies/1.2");
    assert.equal(pathBelowDicomwebRoot("/upstreams/orthanc/dicomweb/studies/1.2/rendered", "/dicomweb"), "/studies/1.2/rendered");
    assert.deepEqual(
      classifyRequest("GET", pathBelowDicomwebRoot("/upstreams/pacs-2/dicomweb/studies/9/series/8/thumbnail", "/dicomweb") ?? ""),
      {
        behaviour: "render",
        studyUid: "9",
        seriesUid: "8",
        sopUid: undefined,
      },
    );
    assert.equal(pathBelowDicomwebRoot("/api/capabilities", "/dicomweb"), undefined);
    assert.equal(pathBelowDicomwebRoot("/dicomwebx/studies", "/dicomweb"), undefined);
  });
});
